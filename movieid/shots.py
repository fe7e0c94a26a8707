"""Split a film into shots with PySceneDetect, in one streaming pass over small frames.

The same pass records two numbers per frame (sharpness and brightness) that keyframe
selection uses later, so the film is decoded at analysis size exactly once. Shots are
yielded as soon as their closing cut is known, which lets face analysis of early shots
overlap detection of later ones. Long shots are cut into parts of at most
``max_shot_len`` seconds (each part gets its own caption); short shots are kept, however
short: a flash cut is still a shot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Literal

import cv2
import numpy as np

from .video import Film, scan

DETECTION_WIDTH = 256  # PySceneDetect's own default downscale target

DETECTOR_THRESHOLDS = {"adaptive": 3.0, "content": 27.0}


@dataclass(frozen=True)
class ShotOptions:
    detector: Literal["adaptive", "content"] = "adaptive"
    threshold: float | None = None     # detector default when None
    min_shot_len: float = 0.1          # seconds; shorter cuts are merged by the detector
    max_shot_len: float = 10.0         # seconds; longer shots are split into parts (0: never)

    def resolved_threshold(self) -> float:
        return DETECTOR_THRESHOLDS[self.detector] if self.threshold is None else self.threshold


@dataclass(frozen=True)
class Shot:
    """A run of frames [start_frame, end_frame) with presentation times [start, end)."""

    index: int          # position in the film's list (after long shots are split)
    start_frame: int
    end_frame: int      # exclusive
    start: float
    end: float
    cut: int            # number of the detected shot this belongs to
    part: int = 1       # 1-based part of a long shot
    parts: int = 1

    @property
    def frame_count(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def duration(self) -> float:
        return self.end - self.start


class FrameStats:
    """Per-frame sharpness and brightness, kept as two float32 arrays (8 bytes a frame)."""

    def __init__(self, frame_count: int):
        self.sharpness = np.zeros(frame_count, np.float32)
        self.brightness = np.zeros(frame_count, np.float32)

    def record(self, index: int, bgr: np.ndarray) -> None:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        self.sharpness[index] = cv2.Laplacian(gray, cv2.CV_32F).var()
        self.brightness[index] = gray.mean()


def _make_detector(options: ShotOptions, fps: float):
    from scenedetect import AdaptiveDetector, ContentDetector

    min_len = max(1, int(round(options.min_shot_len * fps)))
    if options.detector == "adaptive":
        return AdaptiveDetector(adaptive_threshold=options.resolved_threshold(), min_scene_len=min_len)
    if options.detector == "content":
        return ContentDetector(threshold=options.resolved_threshold(), min_scene_len=min_len)
    raise ValueError(f"unknown shot detector {options.detector!r}")


class ShotDetector:
    """Turns frames, pushed one at a time in order, into shots (no I/O of its own)."""

    def __init__(self, film: Film, options: ShotOptions):
        from scenedetect import FrameTimecode

        self._timecode = lambda index: FrameTimecode(index, film.fps)
        self._detector = _make_detector(options, film.fps)
        self._splitter = _ShotSplitter(film, options.max_shot_len)
        self._start = 0
        self._last = -1

    def _cuts(self, cuts, upto: int) -> list[Shot]:
        shots: list[Shot] = []
        for cut in cuts:
            frame = int(cut.frame_num)
            if self._start < frame <= upto:
                shots += self._splitter.close(self._start, frame)
                self._start = frame
        return shots

    def push(self, index: int, bgr: np.ndarray) -> list[Shot]:
        """Feed the next frame (small BGR); returns the shots this frame closed."""
        self._last = index
        return self._cuts(self._detector.process_frame(self._timecode(index), bgr), index)

    def finish(self) -> list[Shot]:
        """The remaining shots once every frame has been pushed."""
        if self._last < 0:
            return []
        shots = self._cuts(self._detector.post_process(self._timecode(self._last)), self._last)
        shots += self._splitter.close(self._start, self._last + 1)
        self._start = self._last + 1
        return shots


def iter_shots(film: Film, options: ShotOptions, stats: FrameStats | None = None,
               on_frame: Callable[[int], None] | None = None) -> Iterator[Shot]:
    """Yield the film's shots in order, each as soon as the cut that closes it is found."""
    detector = ShotDetector(film, options)
    for frame in scan(film, detection_size(film), fast=True):
        if stats is not None:
            stats.record(frame.index, frame.small)
        yield from detector.push(frame.index, frame.small)
        if on_frame is not None:
            on_frame(frame.index)
    yield from detector.finish()


def detection_size(film: Film) -> tuple[int, int]:
    width = min(DETECTION_WIDTH, film.width)
    height = max(2, int(round(film.height * width / film.width)))
    return width - width % 2, height - height % 2 or 2


class _ShotSplitter:
    """Turns detected cuts into numbered shots, splitting the long ones into equal parts."""

    def __init__(self, film: Film, max_len: float):
        self.film, self.max_len = film, max_len
        self.index = 0
        self.cut = 0

    def close(self, start: int, end: int) -> list[Shot]:
        film = self.film
        duration = film.end_time(end - 1) - film.time(start)
        parts = 1 if self.max_len <= 0 else max(1, math.ceil(duration / self.max_len - 1e-9))
        parts = min(parts, end - start)
        # Split at the frames nearest to equal time steps, so VFR parts are equal in time.
        times = film.timestamps[start:end]
        bounds = [start] + [start + int(np.searchsorted(times, film.time(start) + k * duration / parts))
                            for k in range(1, parts)] + [end]
        bounds = sorted(set(bounds))
        shots = []
        for part, (a, b) in enumerate(zip(bounds, bounds[1:]), 1):
            shots.append(Shot(index=self.index, start_frame=a, end_frame=b, start=film.time(a),
                              end=film.end_time(b - 1), cut=self.cut, part=part, parts=len(bounds) - 1))
            self.index += 1
        self.cut += 1
        return shots


def detect_shots(film: Film, options: ShotOptions = ShotOptions(), stats: FrameStats | None = None,
                 on_frame: Callable[[int], None] | None = None) -> list[Shot]:
    """All shots of a film (see ``iter_shots``)."""
    return list(iter_shots(film, options, stats, on_frame))
