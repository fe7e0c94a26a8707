"""Face analysis of shots: keyframes chosen, faces detected and embedded, linked into tracks.

Shots arrive from the decoding pass (``scan.scan_film``) as they close and go to the face
workers in small tasks: a few consecutive shots with the candidate frames the pass kept (as
YUV, half the bytes of RGB); a candidate it did not keep (in a shot shorter than the pass's
step) is read from the file. Faces are found in the keyframes; where the keyframes disagree
on who is there, also in the shot's other samples (``scan.ScannedShot.samples``), so a face
missed or poor in the keyframes gets its track from the frames between, and a track seen in
just one sample (no keyframe) is dropped as a likely false detection. Where the keyframes
show nobody, the backend takes a second, costlier look for tilted faces (``detect_tilted``).
With more than two tasks per worker in flight the pass waits, so memory stays flat when
faces are slower than decoding. Analysed shots come back in order, each as soon as its task
is done, so the caption engine can start on them (``pipeline``).
"""
from __future__ import annotations

import collections
import os
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from . import keyframes, tracks
from .config import Config
from .faces import load_backend
from .faces.base import Detection, FaceBackend
from .records import Face, Film, Keyframe, ShotFaces
from .scan import ScannedShot
from .video import FrameReader
from .workers import WorkerPool, result

# A second detector's face is one ``detect`` found already where their boxes overlap this much
# (the two detectors frame a face differently).
SAME_FACE_IOU = 0.3
# A task holds this many shots (or this much film): enough to keep a worker busy, few
# enough frames (a dozen or two) to keep memory low.
TASK_SHOTS = 4
TASK_SECONDS = 20.0


@dataclass(frozen=True, eq=False)
class FaceTask:
    film: Film
    size: tuple[int, int]           # frame size for face analysis
    min_face: float                 # smallest face analysed, pixels at that size
    shots: tuple[ScannedShot, ...]
    more_faces: str = "needed"      # where the second detector runs (config.FaceConfig.more_faces)


class FaceAnalyzer:
    """Holds a backend and an open reader; analyses tasks of any film (one per process)."""

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

    def analyze(self, task: FaceTask) -> list[ShotFaces]:
        detected: dict[int, list[Detection]] = {}
        frames: dict[int, np.ndarray] = {}
        kept = {i: f for s in task.shots for i, f in s.frames.items()}

        def load(indices) -> None:
            wanted = sorted({i for i in indices if i not in frames})
            frames.update((i, kept[i].rgb()) for i in wanted if i in kept)
            missing = [i for i in wanted if i not in kept]
            if missing:
                frames.update(zip(missing, self._reader_for(task.film, task.size).read(missing)))

        def big_enough(found: list[Detection]) -> list[Detection]:
            return [f for f in found if f.box.size >= task.min_face]

        def faces_in(frame: int) -> list[Detection]:
            if frame not in detected:
                load([frame])
                detected[frame] = big_enough(self.backend.detect(frames[frame]))
            return detected[frame]

        # First candidates of every shot in one forward pass; second ones only where needed.
        load(seg[0] for s in task.shots for seg in s.candidates)
        for s in task.shots:
            for seg in s.candidates:
                faces_in(seg[0])
        load(seg[1] for s in task.shots for seg in s.candidates if len(seg) > 1 and not detected[seg[0]])

        scale = task.film.width / task.size[0]

        def embedded(frame: int) -> list[Face]:
            if not detected[frame]:
                return []
            image = frames[frame]
            embeddings = self.backend.embed(image, detected[frame])
            return [Face(frame, task.film.time(frame), d.box.scaled(scale), d.score, e, contrast(image, d.box))
                    for d, e in zip(detected[frame], embeddings)]

        looked: set[int] = set()

        def more_faces(frame: int) -> bool:
            """The second detector's faces added to those ``detect`` found in the frame; False if
            the backend has no second detector."""
            looked.add(frame)
            more = self.backend.detect_more(frames[frame])
            if more is None:
                return False
            have = detected[frame]
            detected[frame] = have + [d for d in big_enough(more) if all(d.box.iou(h.box) < SAME_FACE_IOU for h in have)]
            return True

        def second_look(chosen: list[int]) -> None:
            """Where the keyframes show nobody, or disagree on how many people there are, the second
            detector on those with fewer faces than the most any has, until they agree: on the middle
            keyframe first where none has any, and no other if it finds nobody there either. Without
            a second detector, where the keyframes show nobody, a look for tilted faces."""
            middle = chosen[len(chosen) // 2]
            if not any(detected[f] for f in chosen):
                if task.more_faces == "off" or not more_faces(middle):
                    return tilted_look(chosen, middle)
                if not detected[middle]:
                    return
            while True:
                most = max(len(detected[f]) for f in chosen)
                todo = [f for f in chosen if f not in looked and len(detected[f]) < most]
                if not todo:
                    return
                for frame in todo:
                    more_faces(frame)

        def tilted_look(chosen: list[int], middle: int) -> None:
            """HOG on turned frames: in the middle keyframe, and in the others only if it finds any."""
            for frame in [middle] + [f for f in chosen if f != middle]:
                detected[frame] = big_enough(self.backend.detect_tilted(frames[frame]))
                if frame == middle and not detected[frame]:
                    return

        results = []
        for s in task.shots:
            chosen = keyframes.choose(s.candidates, faces_in, lambda f: f.box.area)
            if task.more_faces == "every-frame" and all(more_faces(f) for f in chosen):
                pass
            elif task.more_faces != "off" or not any(detected[f] for f in chosen):
                second_look(chosen)
            faces = [face for frame in chosen for face in embedded(frame)]
            found = tracks.link(faces, self.backend.match_threshold)
            if any(len(detected[f]) < len(found) for f in chosen):
                # The keyframes disagree on who is there (someone turned, covered, entering or
                # leaving): the shot's samples fill in the frames between them.
                load(s.samples)
                for frame in s.samples:
                    faces_in(frame)
                    if task.more_faces == "every-frame":
                        more_faces(frame)
                    faces += embedded(frame)
                found = tuple(t for t in tracks.link(faces, self.backend.match_threshold)
                              if len(t.faces) > 1 or t.frames & set(chosen))
            results.append(ShotFaces(s.shot, tuple(Keyframe(f, task.film.time(f)) for f in chosen), found))
        return results


LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def contrast(image: np.ndarray, box) -> float:
    """The standard deviation of the brightness (BT.601 luma, grey levels) inside ``box`` of an RGB
    image: how much a face stands out of the dark or the flat (``identity`` weighs its evidence by it)."""
    h, w = image.shape[:2]
    x1, y1 = max(0, int(box.x1)), max(0, int(box.y1))
    x2, y2 = min(w, int(round(box.x2))), min(h, int(round(box.y2)))
    if x2 <= x1 or y2 <= y1:
        return 0.0
    return float((image[y1:y2, x1:x2].astype(np.float32) @ LUMA).std())


def _analyze(analyzer: FaceAnalyzer, task: FaceTask) -> list[ShotFaces]:
    return analyzer.analyze(task)


def _analyzer_in_worker(backend: str, models: str | None) -> FaceAnalyzer:
    return FaceAnalyzer(load_backend(backend, models))


def face_pool(config: Config, backend: FaceBackend) -> WorkerPool:
    """The face workers of one run: ``config.workers`` processes, or this process (and its
    already loaded ``backend``) when there is one."""
    processes = config.workers or os.cpu_count() or 1
    if processes <= 1:
        return WorkerPool(1, FaceAnalyzer, backend)
    return WorkerPool(processes, _analyzer_in_worker, config.faces.backend, config.faces.models)


def analyse_faces(scanned: Iterable[ScannedShot], film: Film, size: tuple[int, int], min_face: float,
                  pool: WorkerPool, on_shot: Callable[[int, int], None] | None = None, more_faces: str = "needed"
                  ) -> Iterator[tuple[ShotFaces, ScannedShot]]:
    """Every scanned shot's keyframes, faces and tracks, with the shot as scanned (its kept
    frames), in order, each as soon as its task is done (so later stages can start on the
    first shots); tasks overlap the scan."""
    pending: list[ScannedShot] = []
    in_flight: collections.deque[tuple[Future, tuple[ScannedShot, ...]]] = collections.deque()
    done = submitted = 0

    def finished(final: bool) -> Iterator[tuple[ShotFaces, ScannedShot]]:
        nonlocal done
        while in_flight and (len(in_flight) > 2 * pool.processes or final or in_flight[0][0].done()):
            future, shots = in_flight.popleft()
            faces = result(future)
            done += len(faces)
            if on_shot is not None:
                on_shot(done, submitted)
            yield from zip(faces, shots, strict=True)

    def flush(final: bool = False) -> Iterator[tuple[ShotFaces, ScannedShot]]:
        nonlocal submitted
        if pending and (final or len(pending) >= TASK_SHOTS
                        or pending[-1].shot.end - pending[0].shot.start >= TASK_SECONDS):
            shots = tuple(pending)
            in_flight.append((pool.submit(_analyze, FaceTask(film, size, min_face, shots, more_faces)), shots))
            submitted += len(pending)
            pending.clear()
        yield from finished(final)

    for shot in scanned:
        pending.append(shot)
        yield from flush()
    yield from flush(final=True)
