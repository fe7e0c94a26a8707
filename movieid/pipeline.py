"""``annotate``: a film and a cast in, per-shot annotations out.

    probe ─▶ one decoding pass (shots, keyframe candidates) ─▶ faces and tracks (worker
    processes, overlapping the pass) ─▶ each shot's window ─▶ names and film-wide Unknown labels
          = analyse (CPU)
    ─▶ engine answers ─▶ captions (with the film-wide names) ─▶ FilmAnnotation
          = caption (engine)

``analyse`` and ``caption`` are separate so that a batch can analyse one film on the CPU while
the engine captions another on the GPU, each keeping its models between films. Within one
``annotate`` with a model engine the two overlap: a shot's window depends only on its own faces
(``windows``), so a caption thread has the engine answer windows in batches as the analysis
hands them over, while the main thread goes on decoding and feeding the face workers. Names
are decided film-wide once every shot is in; only then are answers made captions, so the
fallback caption of an empty answer and the check of the names a caption mentions use the
final names. Engines without pixels (``faces``) or whose prompt holds names (``vlm
--mark-faces``) caption after the analysis.
"""
from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .annotation import now
from .cast import count_photos, discover, empty_cast, load_cast
from .config import Config
from .engines import CaptionRequest, Engine, load_engine
from .files import check_unchanged, file_state
from .face_stage import analyse_faces, face_pool
from .faces import FaceBackend, load_backend
from .identity import identify
from .progress import Progress, report
from .records import Cast, Film, FilmAnnotation, ShotAnnotation, ShotPeople, Window
from .scan import KeptFrames, scan_film
from .stop_signals import StopSignals
from .video import YuvFrame, fit_size, probe
from .windows import build_window
from .workers import WorkerPool

log = logging.getLogger(__name__)

# Windows whose test frames are ready ahead of the engine (~8 MB a window at 3 frames of 1280x720
# RGB), and windows that may wait for the engine, read or not, with the frames the decoding pass
# handed over (half that, as YUV; beyond it the analysis waits for the engine).
READ_AHEAD = 64
HELD_AHEAD = 128
READ_CHUNK = 16   # windows whose frames are read in one sorted pass
# While an engine answers in threads beside the decoding pass, the interpreter hands its lock on
# every 0.5 ms instead of Python's 5: the caption thread's many short steps (kernel launches)
# otherwise each wait up to 5 ms behind the pass's work on a frame (bench/film.py, H200: the
# whole run 1.29 x the analysis alone before, 1.19 and 1.23 in two runs after).
SWITCH_INTERVAL_S = 0.0005

@dataclass(frozen=True, eq=False)
class FilmAnalysis:
    """What the CPU stages found in a film: everything the caption engine needs."""

    film: Film
    cast: Cast
    shots: tuple[ShotPeople, ...]
    windows: tuple[Window, ...]
    unknown_count: int
    settings: dict
    frame_size: tuple[int, int]   # the frames' size for face analysis, which engines see too


def annotate(film: str | Path | Film, cast_dir: str | Path | None = None, config: Config = Config(),
             progress: Progress = None, engine: Engine | None = None) -> FilmAnnotation:
    """Annotate one film with the cast in ``cast_dir`` (none: everyone is an Unknown); ``engine``:
    one already loaded (else ``config.engine``'s is loaded)."""
    film = film if isinstance(film, Film) else probe(film)
    backend = load_backend(config.faces.backend, config.faces.models)
    cast = cast_for(cast_dir, backend, config, progress)
    engine = engine or load_engine(config.engine)  # a bad model fails before the long analysis
    if not engine.needs_pixels or engine.names_in_prompt:
        with face_pool(config, backend) as pool:
            analysis = analyse(film, cast, backend, config, pool, progress)
        return caption(analysis, engine, progress)
    with Answers(film, cast, engine, analysis_size(film, config), progress) as answers:
        with face_pool(config, backend) as pool:
            analysis = analyse(film, cast, backend, config, pool, progress,
                               on_window=lambda window, frames: answers.add([window], frames=[frames]))
        return _annotation(analysis, engine, answers.wait())


def analysis_size(film: Film, config: Config) -> tuple[int, int]:
    """The size at which the film's frames are analysed (and shown to caption engines)."""
    return fit_size(film.width, film.height, config.faces.size)


def cast_for(cast_dir: str | Path | None, backend: FaceBackend, config: Config, progress: Progress = None) -> Cast:
    """The cast folder's members with their embeddings (an empty cast without a folder)."""
    if cast_dir is None:
        return empty_cast(backend.model_id)
    total = count_photos(discover(cast_dir))
    done = iter(range(1, total + 1))
    return load_cast(cast_dir, backend, strict=config.cast.strict,
                     cache_dir=None if config.cache_dir is None else Path(config.cache_dir),
                     on_photo=lambda _: report(progress, "cast", next(done), total))


def analyse(film: Film, cast: Cast, backend: FaceBackend, config: Config, pool: WorkerPool,
            progress: Progress = None,
            on_window: Callable[[Window, Mapping[int, YuvFrame]], None] | None = None) -> FilmAnalysis:
    """The CPU stages: shots, keyframes, faces, tracks, windows and names; ``on_window`` gets
    each shot's window as soon as the shot is analysed (in order), with those of its test frames
    the decoding pass kept (all but keyframes of shots shorter than its grid step)."""
    log.info("%s: %dx%d, %.3f fps%s, %d frames, reader %s", film.path, film.width, film.height,
             film.fps, " (VFR)" if film.vfr else "", film.frame_count, film.reader)
    face_size = analysis_size(film, config)
    before = file_state(film.path)
    scanned = scan_film(film, config.shots, config.windows.frames_per_shot, face_size,
                        on_frame=lambda n: report(progress, "shots", n, film.frame_count))
    shot_faces, windows = [], []
    for faces, shot in analyse_faces(scanned, film, face_size, config.faces.min_face, pool,
                                     on_shot=lambda n, total: report(progress, "faces", n, total),
                                     more_faces=config.faces.more_faces):
        shot_faces.append(faces)
        windows.append(build_window(faces, cast, config.windows, backend.match_threshold))
        if on_window is not None:
            tests = {image.frame for image in windows[-1].tests}
            on_window(windows[-1], {i: frame for i, frame in shot.frames.items() if i in tests})
    check_unchanged(film.path, before)
    shots, unknown_count = identify(shot_faces, cast, backend.match_threshold, config.identity.min_confidence,
                                    backend.cluster_threshold, backend.confidence_margin)
    log.info("%s: %d shots, %d people seen, %d unknown", film.path, len(shots),
             sum(len(s.people) for s in shots), unknown_count)
    settings = {**config.to_json(), "face_backend_used": backend.name}
    return FilmAnalysis(film, cast, tuple(shots), tuple(windows), unknown_count, settings, face_size)


def caption(analysis: FilmAnalysis, engine: Engine, progress: Progress = None) -> FilmAnnotation:
    """The caption stage: the engine answers every shot's window, in batches; the answers
    become captions with the shots' people."""
    with Answers(analysis.film, analysis.cast, engine, analysis.frame_size, progress) as answers:
        answers.add(analysis.windows, analysis.shots)
        return _annotation(analysis, engine, answers.wait())


def _annotation(analysis: FilmAnalysis, engine: Engine, answers: list[str]) -> FilmAnnotation:
    shots = tuple(ShotAnnotation(people, window, engine.finish(answer, people))
                  for window, people, answer in zip(analysis.windows, analysis.shots, answers, strict=True))
    return FilmAnnotation(film=analysis.film, cast=analysis.cast, engine=engine.settings(),
                          settings=analysis.settings, shots=shots, unknown_count=analysis.unknown_count,
                          created=now())


class Answers:
    """The engine's answers to a film's windows, worked out in threads of their own.

    Windows are added as they are ready, in shot order, with those of their test frames already
    decoded (within one ``annotate``, the decoding pass hands them over: no second decoding). A
    reader thread makes every window's test frames RGB ahead of the engine (up to
    ``READ_AHEAD`` windows, in chunks of ``READ_CHUNK``), reading those not handed over with
    ``KeptFrames`` (the same pixels); the caption thread holds the engine (``start`` and
    ``answer`` run there) and takes every window read, up to ``engine.batch_size``, as a batch:
    the engine keeps pace with a slower analysis in small batches (little is left to answer
    when the analysis ends) and fills its batches when it is the slower one; then ``add``
    waits while ``HELD_AHEAD`` windows wait with frames, so memory stays flat. Leaving the ``with``
    block early (Ctrl-C, SIGTERM, an error) stops both at the next chunk or batch boundary and
    waits for them (a batch cannot be cut), so nothing runs on after the run. The caption thread
    sees a Ctrl-C or SIGTERM as it comes (``StopSignals``), not when the main thread is next free
    to run its handler: it starts no batch and reports none meanwhile. An error in a thread is
    raised in the caller's thread, at the next ``add`` or at ``wait``.
    """

    def __init__(self, film: Film, cast: Cast, engine: Engine, frame_size: tuple[int, int], progress: Progress = None):
        self.film, self.cast, self.engine, self.frame_size, self.progress = film, cast, engine, frame_size, progress
        self._waiting: list[tuple[Window, ShotPeople | None, Mapping[int, YuvFrame]]] = []
        self._ready: list[tuple[Window, ShotPeople | None, dict]] = []
        self._answers: list[str] = []
        self._added = 0
        self._closed = self._stopped = self._all_read = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._switches = _QuickSwitches()
        self._signals = StopSignals()
        # Waited on instead of ``Thread.join``: a join that Ctrl-C interrupts marks the thread as
        # stopped while it still runs (CPython 3.11), and a thread left in torch when the
        # interpreter exits aborts the process.
        self._finished = [threading.Event(), threading.Event()]
        # Daemons, so that even threads never stopped (a signal before the ``with``) cannot keep
        # the interpreter alive; ``stop`` is what ends them.
        for target, name, done in ((self._read, "test frames", self._finished[0]),
                                   (self._run, "captions", self._finished[1])):
            threading.Thread(target=self._until_done, args=(target, done), name=name, daemon=True).start()

    def add(self, windows: Sequence[Window], people: Sequence[ShotPeople] | None = None,
            frames: Sequence[Mapping[int, YuvFrame]] | None = None) -> None:
        """Windows to answer, with their shots' people where the engine's prompt needs them and
        test frames already decoded (``frames``: per window, frame index -> frame; it waits while
        ``HELD_AHEAD`` windows wait for the engine)."""
        with self._changed:
            if frames is not None:
                while len(self._waiting) + len(self._ready) >= HELD_AHEAD and not self._halted():
                    self._changed.wait()
            self._raise_error()
            held = [{} for _ in windows] if frames is None or not self.engine.needs_pixels else list(frames)
            self._waiting += zip(windows, people or [None] * len(windows), held, strict=True)
            self._added += len(windows)
            self._changed.notify_all()

    def wait(self) -> list[str]:
        """Every window's answer, in order, once all are answered."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        for done in self._finished:
            done.wait()
        self._raise_error()
        return self._answers

    def stop(self) -> None:
        """Stop after the batch being answered; a Ctrl-C or SIGTERM meanwhile is raised after it."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        arrived = None
        while not all(done.is_set() for done in self._finished):
            try:
                for done in self._finished:
                    done.wait()
            except BaseException as exc:  # raised by a signal handler: the threads must end first
                arrived = exc
        self._switches.release()
        self._signals.close()
        if arrived is not None:
            raise arrived

    def __enter__(self) -> "Answers":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _until_done(self, target: Callable[[], None], done: threading.Event) -> None:
        try:
            target()
        except BaseException as exc:  # raised again in the caller's thread
            with self._changed:
                self._error = self._error or exc
                self._changed.notify_all()
        finally:
            done.set()

    def _halted(self) -> bool:
        return self._stopped or self._error is not None

    def _read(self) -> None:
        source = KeptFrames(self.film, self.frame_size) if self.engine.needs_pixels else None
        try:
            while True:
                with self._changed:
                    while not (self._halted() or (self._closed and not self._waiting)
                               or (self._waiting and len(self._ready) < READ_AHEAD)):
                        self._changed.wait()
                    if self._halted() or not self._waiting:
                        return
                    chunk = self._waiting[:READ_CHUNK]
                    del self._waiting[:len(chunk)]
                pixels = _test_frames(source, chunk) if source is not None else {}
                with self._changed:
                    self._ready += [(window, people, pixels) for window, people, _ in chunk]
                    self._changed.notify_all()
        finally:
            if source is not None:
                source.close()
            with self._changed:
                self._all_read = True
                self._changed.notify_all()

    def _run(self) -> None:
        self.engine.start(self.cast)
        while not self._signals.settle():   # a Ctrl-C or SIGTERM whose handler raised ends it
            with self._changed:
                while not (self._ready or self._all_read or self._halted()):
                    self._changed.wait()
                if self._halted() or not self._ready:
                    return
                batch = self._ready[:self.engine.batch_size]
                del self._ready[:len(batch)]
                self._changed.notify_all()  # room to read ahead, and to add windows with frames
            answers = self._answer(batch)
            if self._signals.settle():
                return
            with self._changed:
                self._answers += answers
                done, total, stopped = len(self._answers), self._added, self._stopped
            if not stopped:
                report(self.progress, "captions", done, total)

    def _answer(self, batch: list[tuple[Window, ShotPeople | None, dict]]) -> list[str]:
        pixels: dict = {}
        for chunk in {id(p): p for _, _, p in batch}.values():
            pixels.update(chunk)
        size = (self.film.width, self.film.height)
        answers = self.engine.answer([CaptionRequest(w, people, pixels, size) for w, people, _ in batch])
        if len(answers) != len(batch):
            raise RuntimeError(f"the {self.engine.name} engine gave {len(answers)} answers to {len(batch)} windows")
        return answers


class _QuickSwitches:
    """``SWITCH_INTERVAL_S`` while at least one holder has not released it; Python's interval
    (whatever it was) again after the last."""

    _lock = threading.Lock()
    _holders = 0
    _saved = 0.005

    def __init__(self):
        with self._lock:
            if _QuickSwitches._holders == 0:
                _QuickSwitches._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(SWITCH_INTERVAL_S, _QuickSwitches._saved))
            _QuickSwitches._holders += 1
        self._held = True

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                _QuickSwitches._holders -= 1
                if _QuickSwitches._holders == 0:
                    sys.setswitchinterval(_QuickSwitches._saved)


def _test_frames(source: KeptFrames, chunk: list[tuple[Window, ShotPeople | None, Mapping]]) -> dict[int, np.ndarray]:
    """The chunk's test frames as RGB: those handed over, and the others read from the film."""
    given = {i: frame for _, _, held in chunk for i, frame in held.items()}
    wanted = sorted({image.frame for window, _, _ in chunk for image in window.tests})
    given.update(source.read([i for i in wanted if i not in given]))
    return {i: given[i].rgb() if isinstance(given[i], YuvFrame) else given[i] for i in wanted}
