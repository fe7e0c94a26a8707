"""The film's one decoding pass: shots, keyframe candidates and face-size frames together.

ffmpeg decodes the film once. Every frame goes small to the cut detector and into the frame
statistics; every ``step``-th frame is also kept at face-analysis size until its shot closes.
A shot is yielded as soon as the cut that closes it is found, with its keyframe candidates
and the kept frames among them, so face analysis of early shots overlaps decoding of later
ones, and memory holds only the frames of the shots still open. Besides the candidates, a
shot carries a few more kept frames spread over it (``samples``): face analysis looks at
them where the keyframes disagree on who is there. ``movieid shots`` and ``annotate`` both
run this pass, so they find the same shots. ``KeptFrames`` reads frames again later, pixel for
pixel as this pass kept them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, Iterator, Mapping

import numpy as np

from . import keyframes
from .config import ShotConfig
from .keyframes import FrameStats
from .records import Film, Shot
from .shots import ShotDetector, detection_size
from .video import FrameReader, YuvFrame, scan

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


class KeptFrames:
    """A film's frames at face-analysis size, read again later exactly as the decoding pass kept
    them, so that a caption engine sees the pixels the face analysis saw (whether the frames come
    from the pass itself, as within one ``annotate``, or are read again, as in a batch).

    Frames on the pass's grid come from a forward pass through the same ffmpeg filters (decoding
    is deterministic, so they are equal to the pass's); others (keyframes of shots shorter than
    the grid step, which the face workers read themselves) from ``FrameReader`` at that size, as
    the workers read them. Reads in ascending order cost one decoding of the film; an earlier
    grid frame than the last one read restarts the pass. Not thread-safe.
    """

    def __init__(self, film: Film, size: tuple[int, int]):
        self.film, self.size, self.step = film, size, keyframe_step(film)
        self._pass: Generator | None = None
        self._next = 0   # the first frame the running pass has not yet yielded
        self._reader: FrameReader | None = None

    def read(self, indices: list[int]) -> dict[int, YuvFrame | np.ndarray]:
        """``indices`` -> their frames: YUV on the grid, RGB arrays off it."""
        wanted = sorted(set(indices))
        grid = [i for i in wanted if i % self.step == 0]
        frames: dict[int, YuvFrame | np.ndarray] = {}
        if grid:
            on_grid = set(grid)
            if self._pass is None or grid[0] < self._next:
                self.close()
                self._pass = scan(self.film, (8, 8), large_size=self.size, large_every=self.step)
            for frame in self._pass:
                self._next = frame.index + 1
                if frame.index in on_grid:
                    frames[frame.index] = frame.large
                if frame.index >= grid[-1]:
                    break
            if grid[-1] not in frames:
                raise IndexError(f"frame {grid[-1]} is not in the film's {self.film.frame_count} frames")
        off_grid = [i for i in wanted if i % self.step]
        if off_grid:
            self._reader = self._reader or FrameReader(self.film, size=self.size, threads=1)
            frames.update(zip(off_grid, self._reader.read(off_grid)))
        return frames

    def close(self) -> None:
        """Stop the running pass (its ffmpeg process) and reader."""
        if self._pass is not None:
            self._pass.close()
            self._pass, self._next = None, 0
        if self._reader is not None:
            self._reader.close()
            self._reader = None
