"""Cuts: PySceneDetect's detectors fed one frame at a time, and long shots split into parts.

``ShotDetector`` does no I/O: the film's one decoding pass (``scan.scan_film``) pushes small
frames into it and gets back each shot as soon as the cut that closes it is known, which
lets face analysis of early shots overlap detection of later ones. Long shots are cut into
parts of at most ``max_shot_len`` seconds (each part gets its own caption); short shots are
kept, however short: a flash cut is still a shot.
"""
from __future__ import annotations

import math

import numpy as np

from .config import ShotConfig
from .records import Film, Shot

DETECTION_WIDTH = 256  # PySceneDetect's own default downscale target


def detection_size(film: Film) -> tuple[int, int]:
    """The (even) size of the frames the detector sees."""
    width = min(DETECTION_WIDTH, film.width)
    height = max(2, int(round(film.height * width / film.width)))
    return width - width % 2, height - height % 2 or 2


def _make_detector(config: ShotConfig, fps: float):
    from scenedetect import AdaptiveDetector, ContentDetector

    min_len = max(1, int(round(config.min_shot_len * fps)))
    if config.detector == "adaptive":
        return AdaptiveDetector(adaptive_threshold=config.cut_threshold, min_scene_len=min_len)
    return ContentDetector(threshold=config.cut_threshold, min_scene_len=min_len)


class ShotDetector:
    """Turns frames, pushed one at a time in order, into shots."""

    def __init__(self, film: Film, config: ShotConfig):
        from scenedetect import FrameTimecode

        self._timecode = lambda index: FrameTimecode(index, film.fps)
        self._detector = _make_detector(config, film.fps)
        self._splitter = _ShotSplitter(film, config.max_shot_len)
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
