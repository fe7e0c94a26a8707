"""Pick the frames of a shot that are worth looking at.

While the film is decoded, ``FrameStats`` records each frame's sharpness and brightness. A
shot is cut into ``n`` equal segments so the keyframes spread over it; in each segment the sharpest well-exposed frame is the first candidate and the sharpest frame far enough
from it the second. Face analysis then keeps, per segment, the candidate where faces are
visible (``choose``), so a shot is described from frames where its people can be seen.
"""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import cv2
import numpy as np

from .records import Shot

DARK = 16.0   # mean grey level below which a frame is treated as black (fades, flashes)
EDGE_FRAMES = 2  # frames skipped at both ends of a long-enough shot: dissolves and cut blur


class FrameStats:
    """Per-frame sharpness and brightness, kept as two float32 arrays (8 bytes a frame)."""

    def __init__(self, frame_count: int):
        self.sharpness = np.zeros(frame_count, np.float32)
        self.brightness = np.zeros(frame_count, np.float32)

    def record(self, index: int, bgr: np.ndarray) -> None:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        self.sharpness[index] = cv2.Laplacian(gray, cv2.CV_32F).var()
        self.brightness[index] = gray.mean()


def candidates(shot: Shot, stats: FrameStats, n: int, step: int = 1) -> list[list[int]]:
    """Per segment, up to two candidate frames, best first.

    Only every ``step``-th frame of the film is eligible where a segment has one (the scan
    keeps those at full size); a segment shorter than that falls back to any frame.
    """
    start, end = shot.start_frame, shot.end_frame
    if end - start > 4 * EDGE_FRAMES + n:
        start, end = start + EDGE_FRAMES, end - EDGE_FRAMES
    n = max(1, min(n, end - start))
    bounds = np.linspace(start, end, n + 1).round().astype(int)
    result = []
    for a, b in zip(bounds, bounds[1:]):
        frames = np.arange(a, b)
        if step > 1 and (frames % step == 0).any():
            frames = frames[frames % step == 0]
        score = stats.sharpness[frames].astype(np.float64)
        score = np.where(stats.brightness[frames] < DARK, score * 1e-3 - 1.0, score)
        order = np.argsort(-score, kind="stable")
        first = int(frames[order[0]])
        min_gap = max(1, (b - a) // 3)
        second = next((int(frames[i]) for i in order[1:] if abs(int(frames[i]) - first) >= min_gap), None)
        result.append([first] if second is None else [first, second])
    return result


T = TypeVar("T")


def choose(segments: Sequence[Sequence[int]], faces_in: Callable[[int], Sequence[T]],
           face_area: Callable[[T], float]) -> list[int]:
    """One frame per segment: the first candidate, unless only the second shows faces.

    ``faces_in(frame)`` returns the faces found in a candidate frame (the caller caches it),
    so a second candidate is only analysed when the first shows nobody.
    """
    chosen = []
    for cands in segments:
        best = cands[0]
        if len(cands) > 1 and not faces_in(best):
            area = sum(face_area(f) for f in faces_in(cands[1]))
            if area > 0:
                best = cands[1]
        chosen.append(best)
    return sorted(set(chosen))
