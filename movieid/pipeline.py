"""``annotate``: a film and a cast in, per-shot annotations out.

    probe ─▶ shots (one decoding pass: small frames for cuts, keyframe candidates kept)
          ─▶ faces (worker processes, overlapping the pass) ─▶ names per shot
          ─▶ film-wide Unknown labels ─▶ windows                       = Analyzer (CPU)
          ─▶ engine captions ─▶ FilmAnnotation                          = Captioner (engine)

The two stages are separate so a batch can analyse one film on the CPU while the engine
captions another on the GPU. Both keep their models between films; ``Annotator`` joins them
for one cast.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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
from .faces import FaceBackend, load_backend
from .identity import ShotFaces, label_unknowns, link_people, name_people
from .shots import FrameStats, Shot, ShotDetector, ShotOptions, detection_size
from .video import Film, FrameReader, YuvFrame, fit_size, probe, scan
from .windows import Window, build_window

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


@dataclass
class FilmAnalysis:
    """What the CPU stages found in a film: everything the caption engine needs."""

    film: Film
    cast: Cast
    shots: list[ShotFaces]
    windows: list[Window]
    unknown_count: int
    settings: dict


def _bar(progress: bool | None, **kwargs) -> tqdm:
    return tqdm(disable=True if progress is False else None, leave=False, dynamic_ncols=True, **kwargs)


def load_cast_with_progress(cast_dir, backend, options: AnnotateOptions, progress: bool | None = None) -> Cast:
    """The cast folder's members with their embeddings (none without a folder)."""
    from .cast import count_photos, discover

    if cast_dir is None:
        return empty_cast(backend.model_id)
    with _bar(progress, total=count_photos(discover(cast_dir)), desc="cast", unit="photo") as bar:
        return load_cast(cast_dir, backend, strict=options.cast_strict,
                         cache_dir=None if options.cache_dir is None else Path(options.cache_dir),
                         on_photo=lambda _: bar.update())


class Analyzer:
    """The CPU stages for one cast: shots, keyframes, faces, names, windows."""

    def __init__(self, options: AnnotateOptions, cast: Cast, backend: FaceBackend | None = None,
                 progress: bool | None = None):
        options.validate()
        self.options, self.cast, self.progress = options, cast, progress
        self.backend = backend or load_backend(options.face_backend, options.face_models)
        self._pool: ProcessPoolExecutor | None = None
        self._local: FaceAnalyzer | None = None

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

    def analyze(self, film: str | Path | Film) -> FilmAnalysis:
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
        log.info("%s: %d shots, %d people seen, %d unknown", film.path, len(shot_faces),
                 sum(len(sf.people) for sf in shot_faces), unknowns)
        settings = options.to_json()
        settings["face_backend_used"] = self.backend.name
        return FilmAnalysis(film, self.cast, shot_faces, windows, unknowns, settings)

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

        with _bar(self.progress, total=film.frame_count, desc="shots", unit="frame") as frames_bar, \
                _bar(self.progress, total=0, desc="faces", unit="shot") as faces_bar:
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

class Captioner:
    """The caption stage: one engine, loaded once, for any number of films and casts."""

    def __init__(self, options: AnnotateOptions, progress: bool | None = None):
        self.engine: Engine = load_engine(options.engine, **options.engine_options)
        self.progress = progress

    def caption(self, analysis: FilmAnalysis) -> FilmAnnotation:
        engine = self.engine
        engine.start(analysis.cast)
        captions = []
        reader = FrameReader(analysis.film, max_side=ENGINE_FRAME_SIDE) if engine.needs_pixels else None
        pairs = list(zip(analysis.windows, analysis.shots))
        try:
            with _bar(self.progress, total=len(pairs), desc="captions", unit="shot") as bar:
                for start in range(0, len(pairs), engine.batch_size):
                    batch = [CaptionRequest(w, sf) for w, sf in pairs[start:start + engine.batch_size]]
                    if reader is not None:
                        _attach_frames(reader, batch)
                    captions.extend(engine.caption(batch))
                    bar.update(len(batch))
        finally:
            if reader is not None:
                reader.close()
        shots = [ShotAnnotation(sf, w, c) for (w, sf), c in zip(pairs, captions)]
        return FilmAnnotation(film=analysis.film, cast=analysis.cast, engine=engine.settings(),
                              settings=analysis.settings, shots=shots, unknown_count=analysis.unknown_count)


class Annotator:
    """Annotates films with one cast and one set of options, reusing models between films."""

    def __init__(self, options: AnnotateOptions = AnnotateOptions(), cast_dir: str | Path | None = None,
                 progress: bool | None = None):
        options.validate()   # before loading the cast: Analyzer checks again, cheaply
        backend = load_backend(options.face_backend, options.face_models)
        cast = load_cast_with_progress(cast_dir, backend, options, progress)
        self.analyzer = Analyzer(options, cast, backend, progress)
        self.captioner = Captioner(options, progress)

    @property
    def cast(self) -> Cast:
        return self.analyzer.cast

    def annotate(self, film: str | Path | Film) -> FilmAnnotation:
        return self.captioner.caption(self.analyzer.analyze(film))

    def close(self) -> None:
        self.analyzer.close()

    def __enter__(self) -> "Annotator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _attach_frames(reader: FrameReader, batch: Iterable[CaptionRequest]) -> None:
    batch = list(batch)
    wanted = sorted({img.frame for r in batch for img in r.window.tests})
    pixels = dict(zip(wanted, reader.read(wanted)))
    for r in batch:
        r.frames = [pixels[img.frame] for img in r.window.tests]
        r.source_size = (reader.film.width, reader.film.height)


def _result(future: Future) -> list[ShotFaceResult]:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise MovieIdError(f"a face-analysis worker died ({exc}); try --workers 1") from None


def annotate(film_path: str | Path, cast_dir: str | Path | None = None,
             options: AnnotateOptions = AnnotateOptions(), progress: bool | None = None) -> FilmAnnotation:
    """Annotate one film (see ``Annotator`` to annotate many with the same models)."""
    with Annotator(options, cast_dir, progress) as annotator:
        return annotator.annotate(film_path)
