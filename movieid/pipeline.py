"""``annotate``: a film and a cast in, per-shot annotations out.

    probe ─▶ shots (streaming, one decode at analysis size) ─▶ keyframe candidates
          ─▶ faces (worker processes, overlapping the shot pass) ─▶ names per shot
          ─▶ film-wide Unknown labels ─▶ windows ─▶ engine captions ─▶ FilmAnnotation

An ``Annotator`` keeps the face backend, the cast, the engine and the worker pool between
films, so batch jobs load each model once.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from . import keyframes
from .annotation import FilmAnnotation, ShotAnnotation
from .cast import Cast, empty_cast, load_cast
from .engines import CaptionRequest, Engine, load_engine
from .errors import MovieIdError
from .face_stage import BackendSpec, FaceAnalyzer, FaceTask, ShotFaceResult, analyze_in_worker, init_worker
from .faces import load_backend
from .identity import ShotFaces, label_unknowns, link_people, name_people
from .shots import FrameStats, Shot, ShotDetector, ShotOptions, detection_size
from .video import Film, FrameReader, YuvFrame, fit_size, probe, scan
from .windows import build_window

log = logging.getLogger(__name__)

# A face task holds this many shots (or this much film): enough to keep a worker busy,
# few enough frames (a dozen or two) to keep memory low.
TASK_SHOTS = 4
TASK_SECONDS = 20.0
# The scan keeps frames at face-analysis size at about this rate: keyframe candidates.
KEYFRAME_GRID_FPS = 5.0
IDA_VLM_MAX_IMAGES = 8     # as the model was trained (models.ida_vlm.MAX_IMAGES; not imported: torch)
ENGINE_FRAME_SIDE = 896   # test frames for model engines: enough for a 448 px model input


@dataclass(frozen=True)
class AnnotateOptions:
    shots: ShotOptions = field(default_factory=ShotOptions)
    frames_per_shot: int = 3          # test frames (keyframes) per shot
    max_images: int = 8               # images per window, cast ID images included
    face_backend: str = "auto"
    face_models: str | None = None
    face_size: int = 1280             # longest side of frames for face analysis
    min_face: int = 40                # smallest face (shorter side, px at face_size) analysed
    cast_strict: bool = True
    workers: int = 0                  # face worker processes; 0: one per CPU core
    cache_dir: str | None = None
    engine: str = "faces"
    engine_options: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("cache_dir")
        data.pop("workers")
        return data

    def validate(self) -> None:
        if self.frames_per_shot < 1:
            raise MovieIdError("--frames-per-shot must be at least 1")
        if self.max_images < 2:
            raise MovieIdError("--max-images must be at least 2 (an ID image and a test frame)")
        if self.face_size < 64:
            raise MovieIdError("--face-size must be at least 64 pixels")
        if self.engine == "ida-vlm" and self.max_images > IDA_VLM_MAX_IMAGES:
            raise MovieIdError(f"--max-images: IDA-VLM takes at most {IDA_VLM_MAX_IMAGES} images per window")


class Annotator:
    """Annotates films with one cast and one set of options, reusing models between films."""

    def __init__(self, options: AnnotateOptions = AnnotateOptions(), cast_dir: str | Path | None = None,
                 progress: bool | None = None):
        options.validate()
        self.options = options
        self.progress = progress
        self.backend = load_backend(options.face_backend, options.face_models)
        self.cast = self._load_cast(cast_dir) if cast_dir is not None else empty_cast(self.backend.model_id)
        self.engine: Engine = load_engine(options.engine, **options.engine_options)
        self.engine.start(self.cast)
        self._pool: ProcessPoolExecutor | None = None
        self._local: FaceAnalyzer | None = None

    # ------------------------------------------------------------------ resources

    def _load_cast(self, cast_dir) -> Cast:
        from .cast import count_photos, discover

        total = count_photos(discover(cast_dir))
        with self._bar(total=total, desc="cast", unit="photo") as bar:
            return load_cast(cast_dir, self.backend, strict=self.options.cast_strict,
                             cache_dir=None if self.options.cache_dir is None else Path(self.options.cache_dir),
                             on_photo=lambda _: bar.update())

    @property
    def workers(self) -> int:
        return self.options.workers or os.cpu_count() or 1

    def _submit(self, task: FaceTask) -> Future:
        if self.workers <= 1:
            if self._local is None:
                self._local = FaceAnalyzer(self.backend)
            future: Future = Future()
            try:
                future.set_result(self._local.analyze(task))
            except BaseException as exc:  # delivered where results are collected
                future.set_exception(exc)
            return future
        if self._pool is None:
            spec = BackendSpec(self.options.face_backend, self.options.face_models)
            # spawn: the parent has decoder threads running; forking them is unsafe.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=init_worker, initargs=(spec,))
        return self._pool.submit(analyze_in_worker, task)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._local is not None:
            self._local.close()
            self._local = None

    def __enter__(self) -> "Annotator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _bar(self, **kwargs) -> tqdm:
        return tqdm(disable=True if self.progress is False else None, leave=False, dynamic_ncols=True, **kwargs)

    # ------------------------------------------------------------------ the pipeline

    def annotate(self, film: str | Path | Film) -> FilmAnnotation:
        options = self.options
        film = film if isinstance(film, Film) else probe(film)
        log.info("%s: %dx%d, %.3f fps%s, %d frames, reader %s", film.path, film.width, film.height,
                 film.fps, " (VFR)" if film.vfr else "", film.frame_count, film.reader)
        shot_faces = self._faces(film)
        threshold = self.backend.match_threshold
        for sf in shot_faces:
            name_people(sf, self.cast, threshold)
        unknowns = label_unknowns(shot_faces, threshold)
        windows = [build_window(sf, self.cast, options.max_images, options.frames_per_shot) for sf in shot_faces]
        captions = self._captions(film, shot_faces, windows)
        shots = [ShotAnnotation(sf, w, c) for sf, w, c in zip(shot_faces, windows, captions)]
        log.info("%s: %d shots, %d people seen, %d unknown", film.path, len(shots),
                 sum(len(sf.people) for sf in shot_faces), unknowns)
        settings = options.to_json()
        settings["face_backend_used"] = self.backend.name
        return FilmAnnotation(film=film, cast=self.cast, engine=self.engine.settings(),
                              settings=settings, shots=shots, unknown_count=unknowns)

    def _faces(self, film: Film) -> list[ShotFaces]:
        """One decoding pass: shots are detected on small frames while every ``step``-th
        frame is kept at face-analysis size until its shot closes. Closed shots go to the
        face workers in small tasks with their candidate frames; with more than two tasks
        per worker in flight the scan waits, so memory stays flat when faces are slower."""
        options = self.options
        size = fit_size(film.width, film.height, options.face_size)
        step = max(1, round(film.fps / KEYFRAME_GRID_FPS))
        stats = FrameStats(film.frame_count)
        detector = ShotDetector(film, options.shots)
        held: dict[int, YuvFrame] = {}
        pending: list[tuple[Shot, list[list[int]], dict[int, YuvFrame]]] = []
        in_flight: collections.deque[Future] = collections.deque()
        results: list[ShotFaceResult] = []

        with self._bar(total=film.frame_count, desc="shots", unit="frame") as frames_bar, \
                self._bar(total=0, desc="faces", unit="shot") as faces_bar:
            def close(shots: list[Shot]) -> None:
                for shot in shots:
                    segs = keyframes.candidates(shot, stats, options.frames_per_shot, step)
                    pending.append((shot, segs, {i: held[i] for seg in segs for i in seg if i in held}))
                    for i in [i for i in held if i < shot.end_frame]:
                        del held[i]

            def flush(final: bool = False) -> None:
                if not pending or not (final or len(pending) >= TASK_SHOTS
                                       or pending[-1][0].end - pending[0][0].start >= TASK_SECONDS):
                    return
                task = FaceTask(film, size, options.min_face, [(shot, segs) for shot, segs, _ in pending],
                                {i: f for _, _, frames in pending for i, f in frames.items()})
                future = self._submit(task)
                faces_bar.total += len(pending)
                faces_bar.refresh()
                future.add_done_callback(lambda _f, n=len(pending): faces_bar.update(n))
                pending.clear()
                in_flight.append(future)
                while len(in_flight) > 2 * self.workers or (final and in_flight):
                    results.extend(_result(in_flight.popleft()))

            for frame in scan(film, detection_size(film), large_size=size, large_every=step):
                stats.record(frame.index, frame.small)
                if frame.large is not None:
                    held[frame.index] = frame.large
                close(detector.push(frame.index, frame.small))
                flush()
                if frame.index % 64 == 63:
                    frames_bar.update(64)
            close(detector.finish())
            frames_bar.update(film.frame_count - frames_bar.n)
            flush(final=True)
        threshold = self.backend.match_threshold
        return [ShotFaces(r.shot, r.keyframes, link_people(r.sightings, threshold)) for r in results]

    def _captions(self, film: Film, shot_faces: list[ShotFaces], windows) -> list:
        engine = self.engine
        captions = []
        reader = FrameReader(film, max_side=ENGINE_FRAME_SIDE) if engine.needs_pixels else None
        try:
            with self._bar(total=len(windows), desc="captions", unit="shot") as bar:
                for start in range(0, len(windows), engine.batch_size):
                    batch = [CaptionRequest(w, sf) for w, sf in
                             zip(windows[start:start + engine.batch_size], shot_faces[start:start + engine.batch_size])]
                    if reader is not None:
                        _attach_frames(reader, batch)
                    captions.extend(engine.caption(batch))
                    bar.update(len(batch))
        finally:
            if reader is not None:
                reader.close()
        return captions


def _attach_frames(reader: FrameReader, batch: Iterable[CaptionRequest]) -> None:
    batch = list(batch)
    wanted = sorted({img.frame for r in batch for img in r.window.tests})
    pixels = dict(zip(wanted, reader.read(wanted)))
    for r in batch:
        r.frames = [pixels[img.frame] for img in r.window.tests]


def _result(future: Future) -> list[ShotFaceResult]:
    try:
        return future.result()
    except MovieIdError:
        raise
    except Exception as exc:
        if type(exc).__name__ == "BrokenProcessPool":
            raise MovieIdError(f"a face-analysis worker died ({exc}); try --workers 1") from None
        raise


def annotate(film_path: str | Path, cast_dir: str | Path | None = None,
             options: AnnotateOptions = AnnotateOptions(), progress: bool | None = None) -> FilmAnnotation:
    """Annotate one film (see ``Annotator`` to annotate many with the same models)."""
    with Annotator(options, cast_dir, progress) as annotator:
        return annotator.annotate(film_path)
