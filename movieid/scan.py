"""The film's one decoding pass: shots, keyframe candidates and face-size frames together.

ffmpeg decodes the film once. Every frame goes small to the cut detector and into the frame
statistics; every ``step``-th frame is also kept at face-analysis size until its shot closes.
A shot is yielded as soon as the cut that closes it is found, with its keyframe candidates
and the kept frames among them, so face analysis of early shots overlaps decoding of later
ones, and memory holds only the frames of the shots still open. Besides the candidates, a
shot carries a few more kept frames spread over it (``samples``): face analysis looks at
them where the keyframes disagree on who is there. ``movieid shots`` and ``annotate`` both
run this pass, so they find the same shots.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import numpy as np

from . import keyframes
from .config import ShotConfig
from .keyframes import FrameStats
from .records import Film, Shot
from .shots import ShotDetector, detection_size
from .video import YuvFrame, scan

# Frames are kept at face-analysis size at about this rate: the keyframe candidates.
KEYFRAME_GRID_FPS = 5.0
# Extra frames a shot carries for face tracking: at most this many, at least this far apart.
# Each is 1.4 MB at 1280x720 (YUV) while its shot is in flight.
SAMPLES_PER_SHOT = 6
SAMPLE_GAP_S = 0.4
REPORT_EVERY = 64   # frames between progress reports


@dataclass(frozen=True, eq=False)
class ScannedShot:
    shot: Shot
    candidates: tuple[tuple[int, ...], ...]   # keyframe candidates per segment, best first
    frames: Mapping[int, YuvFrame]           # the candidates and samples kept at face-analysis size
    samples: tuple[int, ...] = ()             # more kept frames, spread over the shot, for tracking


def keyframe_step(film: Film) -> int:
    """Every how many frames a face-size frame is kept."""
    return max(1, round(film.fps / KEYFRAME_GRID_FPS))


def samples(kept: list[int], candidates: set[int], gap: int, count: int = SAMPLES_PER_SHOT) -> list[int]:
    """Up to ``count`` of the ``kept`` frames (ascending), evenly spread: each the nearest to
    its place in the shot that is at least ``gap`` frames from the candidates and the others."""
    if count <= 0 or not kept:
        return []
    picked: list[int] = []
    taken = sorted(candidates)
    reach = (kept[-1] - kept[0]) / (count + 1) / 2
    for target in np.linspace(kept[0], kept[-1], count + 2)[1:-1]:
        free = [i for i in kept if abs(i - target) <= reach and all(abs(i - t) >= gap for t in taken)]
        if free:
            picked.append(min(free, key=lambda i: abs(i - target)))
            taken.append(picked[-1])
    return sorted(picked)


def scan_film(film: Film, config: ShotConfig, frames_per_shot: int, face_size: tuple[int, int] | None = None,
              on_frame: Callable[[int], None] | None = None, stats: FrameStats | None = None) -> Iterator[ScannedShot]:
    """The film's shots in order, each as soon as it closes (``face_size`` None: keep no frames;
    ``stats``, if given, is filled in as the pass goes)."""
    step = keyframe_step(film)
    stats = FrameStats(film.frame_count) if stats is None else stats
    detector = ShotDetector(film, config)
    held: dict[int, YuvFrame] = {}

    def closed(shots: list[Shot]) -> Iterator[ScannedShot]:
        for shot in shots:
            segments = keyframes.candidates(shot, stats, frames_per_shot, step)
            wanted = {i for segment in segments for i in segment}
            in_shot = [i for i in held if shot.start_frame <= i < shot.end_frame]
            extra = samples(in_shot, wanted, max(1, round(SAMPLE_GAP_S * film.fps)))
            kept = {i: held[i] for i in [*wanted, *extra] if i in held}
            for i in [i for i in held if i < shot.end_frame]:
                del held[i]
            yield ScannedShot(shot, tuple(tuple(s) for s in segments), kept, tuple(extra))

    large_every = step if face_size is not None else 0
    for frame in scan(film, detection_size(film), large_size=face_size, large_every=large_every):
        stats.record(frame.index, frame.small)
        if frame.large is not None:
            held[frame.index] = frame.large
        yield from closed(detector.push(frame.index, frame.small))
        if on_frame is not None and frame.index % REPORT_EVERY == REPORT_EVERY - 1:
            on_frame(frame.index + 1)
    yield from closed(detector.finish())
    if on_frame is not None:
        on_frame(film.frame_count)
