"""Face analysis of shots: choose keyframes, detect and embed faces.

Runs in worker processes (one face backend per process, kept across tasks and films) or
in-process when there is a single worker. A task is a chunk of consecutive shots with the
candidate frames the film scan kept (as YUV, half the bytes of RGB); a candidate the scan
did not keep (in a shot shorter than the scan's step) is read from the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import keyframes
from .faces import load_backend
from .faces.base import Face, FaceBackend
from .identity import Sighting
from .keyframes import Keyframe
from .shots import Shot
from .video import Film, FrameReader, YuvFrame


@dataclass(frozen=True)
class BackendSpec:
    name: str
    models_dir: str | None = None


@dataclass
class FaceTask:
    film: Film
    size: tuple[int, int]                   # frame size for face analysis
    min_face: float                         # pixels at that size
    shots: list[tuple[Shot, list[list[int]]]]  # each shot with its keyframe candidates
    frames: dict[int, YuvFrame] = field(default_factory=dict)  # candidates the scan kept; others are read


@dataclass
class ShotFaceResult:
    shot: Shot
    keyframes: list[Keyframe]
    sightings: list[Sighting]


class FaceAnalyzer:
    """Holds a backend and an open reader; analyses tasks of any film."""

    def __init__(self, backend: FaceBackend):
        self.backend = backend
        self._reader: FrameReader | None = None

    def _reader_for(self, film: Film, size: tuple[int, int]) -> FrameReader:
        r = self._reader
        if r is None or r.film.path != film.path or r.size != size or r.film.size_bytes != film.size_bytes:
            if r is not None:
                r.close()
            self._reader = FrameReader(film, size=size, threads=1)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def analyze(self, task: FaceTask) -> list[ShotFaceResult]:
        detected: dict[int, list[Face]] = {}
        frames: dict[int, np.ndarray] = {}

        def load(indices) -> None:
            wanted = sorted({i for i in indices if i not in frames})
            frames.update((i, task.frames[i].rgb()) for i in wanted if i in task.frames)
            missing = [i for i in wanted if i not in task.frames]
            if missing:
                frames.update(zip(missing, self._reader_for(task.film, task.size).read(missing)))

        def faces_in(frame: int) -> list[Face]:
            if frame not in detected:
                load([frame])
                detected[frame] = [f for f in self.backend.detect(frames[frame]) if f.box.size >= task.min_face]
            return detected[frame]

        # First candidates of every shot in one forward pass; second ones only where needed.
        load(seg[0] for _, segs in task.shots for seg in segs)
        for _, segs in task.shots:
            for seg in segs:
                faces_in(seg[0])
        load(seg[1] for _, segs in task.shots for seg in segs if len(seg) > 1 and not detected[seg[0]])

        scale = task.film.width / task.size[0]
        results = []
        for shot, segs in task.shots:
            chosen = keyframes.choose(segs, faces_in, lambda f: f.box.area)
            sightings = []
            for frame in chosen:
                faces = self.backend.embed(frames[frame], detected[frame]) if detected[frame] else []
                time = task.film.time(frame)
                sightings += [Sighting(frame=frame, time=time, box=f.box.scaled(scale), score=f.score,
                                       embedding=f.embedding) for f in faces]
            results.append(ShotFaceResult(shot, [Keyframe(f, task.film.time(f)) for f in chosen], sightings))
        return results


# ----------------------------------------------------------------------------- worker processes

_ANALYZER: FaceAnalyzer | None = None


def init_worker(spec: BackendSpec) -> None:
    """Process-pool initializer: load the face backend once per worker."""
    global _ANALYZER
    _ANALYZER = FaceAnalyzer(load_backend(spec.name, spec.models_dir))


def analyze_in_worker(task: FaceTask) -> list[ShotFaceResult]:
    assert _ANALYZER is not None, "init_worker did not run"
    return _ANALYZER.analyze(task)

