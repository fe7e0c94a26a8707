"""The film's one decoding pass: shots, keyframe candidates and face-size frames together.

ffmpeg decodes the film once. Every frame goes small to the cut detector and into the frame
statistics; every ``step``-th frame is also kept at face-analysis size until its shot closes.
A shot is yielded as soon as the cut that closes it is found, with its keyframe candidates
and the kept frames among them, so face analysis of early shots overlaps decoding of later
ones, and memory holds only the frames of the shots still open. ``movieid shots`` and
``annotate`` both run this pass, so they find the same shots.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from . import keyframes
from .config import ShotConfig
from .keyframes import FrameStats
from .records import Film, Shot
from .shots import ShotDetector, detection_size
from .video import YuvFrame, scan

# Frames are kept at face-analysis size at about this rate: the keyframe candidates.
KEYFRAME_GRID_FPS = 5.0
REPORT_EVERY = 64   # frames between progress reports


@dataclass(frozen=True, eq=False)
class ScannedShot:
    shot: Shot
    candidates: tuple[tuple[int, ...], ...]   # keyframe candidates per segment, best first
    frames: Mapping[int, YuvFrame]           # the candidates kept at face-analysis size


def keyframe_step(film: Film) -> int:
    """Every how many frames a face-size frame is kept."""
    return max(1, round(film.fps / KEYFRAME_GRID_FPS))


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
            kept = {i: held[i] for segment in segments for i in segment if i in held}
            for i in [i for i in held if i < shot.end_frame]:
                del held[i]
            yield ScannedShot(shot, tuple(tuple(s) for s in segments), kept)

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
