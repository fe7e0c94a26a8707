"""Run a batch: analyse films (CPU stages) in workers, caption them with one engine, write
each film's outputs and record it in the journal as soon as it is done.

Two executors share that shape:
* ``--workers N`` (default: one per core): N processes analyse films, each keeping its face
  backend and casts between films (with 1, this process does); the main process holds the
  caption engine, so on a GPU it captions one film while the workers analyse the next ones;
* ``--ray ADDRESS``: the same with Ray actors for the analysis and, for the VLM engine, one
  GPU actor per GPU holding the model; the journal and the outputs stay on the driver.
A film that fails is recorded with a one-line reason and the batch goes on.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import signal
import stat
import time
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .. import __version__
from ..annotation import document
from ..archive.build import index_film, sync_with_journal
from ..cast import folder_digest
from ..config import Config
from ..errors import InputError, MovieIdError, first_line, internal_error, missing_dependency, printable
from ..face_stage import FaceAnalyzer
from ..faces import load_backend
from ..files import fingerprint
from ..engines import load_engine
from ..pipeline import FilmAnalysis, analyse, caption, cast_for
from ..progress import Progress, report
from ..records import FilmAnnotation
from ..stop_signals import STOP_SIGNALS, raise_stop
from ..video import probe
from ..workers import WorkerPool, result
from ..writers import remove_stale_temp_files, write_annotation
from .jobs import Job, find_jobs
from .journal import Journal

log = logging.getLogger(__name__)

CASTS_PER_WORKER = 4   # casts a film worker keeps loaded


@dataclass(frozen=True)
class BatchOptions:
    config: Config = field(default_factory=Config)   # config.workers: film processes (or Ray actors)
    ray: str | None = None            # Ray address: "auto", "local", "host:port", "ray://..."
    retry_failed: bool = False
    keep_going: bool = True


@dataclass(frozen=True, eq=False)
class Outcome:
    """A worker's answer for one film: its analysis, or why it failed."""

    key: str
    analysis: FilmAnalysis | None
    error: str | None
    seconds: float


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failed_before: int = 0      # failed in an earlier run, not retried (see --retry-failed)
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.failed_before == 0


# ----------------------------------------------------------------------------- workers

def _reason(exc: BaseException) -> str:
    """Why a film failed, in one line; a Ctrl-C or SIGTERM behind the error is raised instead
    (it stops the batch, it is not the film's failure)."""
    raise_stop(exc)
    if isinstance(exc, InputError):   # MovieIdError, and the models' own (a checkpoint, an image)
        return printable(exc)
    return internal_error(exc)


class FilmWorker:
    """Analyses whole films, keeping the face backend and the last few casts loaded; its face
    work runs in its own process (the batch runs films, not shots, in parallel)."""

    def __init__(self, config: Config):
        self.config = config.replace(workers=1)
        self.backend = load_backend(config.faces.backend, config.faces.models)
        self.faces = WorkerPool(1, FaceAnalyzer, self.backend)
        self._casts: OrderedDict[str, object] = OrderedDict()

    def _cast(self, cast: Path | None):
        key = str(cast)
        if key not in self._casts:
            self._casts[key] = cast_for(cast, self.backend, self.config)
            while len(self._casts) > CASTS_PER_WORKER:
                self._casts.popitem(last=False)
        self._casts.move_to_end(key)
        return self._casts[key]

    def analyze(self, job: Job) -> Outcome:
        start = time.perf_counter()
        try:
            film = probe(job.film)
            analysis = analyse(film, self._cast(job.cast), self.backend, self.config, self.faces)
            return Outcome(job.key, analysis, None, time.perf_counter() - start)
        except Exception as exc:  # the batch goes on: the film is recorded as failed
            log.debug("film %s failed", job.film, exc_info=True)
            return Outcome(job.key, None, _reason(exc), time.perf_counter() - start)

    def close(self) -> None:
        self.faces.close()


def _analyze(worker: FilmWorker, job: Job) -> Outcome:
    return worker.analyze(job)


# ----------------------------------------------------------------------------- executors

Deliver = Callable[[Job, Outcome], None]
Start = Callable[[Job], None]


def _run_processes(jobs: list[Job], config: Config, start: Start, deliver: Deliver) -> None:
    """Films analysed by ``config.workers`` processes (or this one), at most two per worker queued."""
    processes = config.workers or os.cpu_count() or 1
    by_key = {job.key: job for job in jobs}
    queue = iter(jobs)
    with WorkerPool(processes, FilmWorker, config) as pool:
        running: set[Future] = set()
        while True:
            while len(running) < 2 * pool.processes:       # a bounded queue: analyses are kept small
                job = next(queue, None)
                if job is None:
                    break
                start(job)
                running.add(pool.submit(_analyze, job))
            if not running:
                return
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                outcome = result(future)
                deliver(by_key[outcome.key], outcome)


def _run_ray(jobs: list[Job], config: Config, start: Start, deliver: Deliver) -> None:
    import ray
    from ray.util import ActorPool

    count = config.workers or max(1, int(ray.available_resources().get("CPU", 1)))
    analysers = [ray.remote(num_cpus=1)(FilmWorker).remote(config) for _ in range(count)]
    by_key = {job.key: job for job in jobs}

    def dispatch(actor, job: Job):
        start(job)
        return actor.analyze.remote(job)
    for outcome in ActorPool(analysers).map_unordered(dispatch, jobs):
        deliver(by_key[outcome.key], outcome)


class _RaySession:
    """Connect to (or start) Ray for the batch; shut it down after if we started it."""

    def __init__(self, address: str):
        try:
            import ray
        except ImportError as exc:
            raise missing_dependency(exc, "running on Ray", "ray") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=None if address == "local" else address, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise MovieIdError(f"cannot reach a Ray cluster at {address!r} ({first_line(exc)})") \
                    from None

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


@dataclass(frozen=True, eq=False)
class Captioned:
    job: Job
    annotation: FilmAnnotation | None
    error: str | None
    seconds: float


class LocalCaptions:
    """Captions each film in this process as it arrives (the engine loaded once)."""

    def __init__(self, config: Config):
        self.engine = load_engine(config.engine)
        self._done: list[Captioned] = []

    def submit(self, job: Job, analysis: FilmAnalysis) -> None:
        begin = time.perf_counter()
        try:
            self._done.append(Captioned(job, caption(analysis, self.engine), None, time.perf_counter() - begin))
        except Exception as exc:  # the batch goes on: the film is recorded as failed
            log.debug("captioning %s failed", job.film, exc_info=True)
            self._done.append(Captioned(job, None, _reason(exc), time.perf_counter() - begin))

    def finished(self, wait_all: bool = False) -> list[Captioned]:
        done, self._done = self._done, []
        return done


class RayCaptioner:
    """One per GPU: the VLM engine loaded once, captioning films from any analysis actor."""

    def __init__(self, config: Config):
        self.captions = LocalCaptions(config)

    def caption(self, job: Job, analysis: FilmAnalysis) -> Captioned:
        self.captions.submit(job, analysis)
        return self.captions.finished()[0]


class RayCaptions:
    """Captions films on the GPU actors, all of them busy at once; results come back as ready."""

    def __init__(self, config: Config, gpus: int):
        import ray
        from ray.util import ActorPool

        # num_cpus=0: the GPU is what it needs; the CPUs are the analysis actors'.
        self.pool = ActorPool([ray.remote(num_gpus=1, num_cpus=0)(RayCaptioner).remote(config) for _ in range(gpus)])

    def submit(self, job: Job, analysis: FilmAnalysis) -> None:
        self.pool.submit(lambda actor, item: actor.caption.remote(*item), (job, analysis))

    def finished(self, wait_all: bool = False) -> list[Captioned]:
        done = []
        while self.pool.has_next():
            try:
                done.append(self.pool.get_next_unordered(timeout=None if wait_all else 0))
            except TimeoutError:
                break
        return done


# ----------------------------------------------------------------------------- the batch

def settings_digest(config: Config, cast: Path | None, backend_model: str) -> str:
    """What a film's outputs depend on besides the film: a changed value redoes the film."""
    data = {"tool": __version__, "settings": config.to_json(), "outputs": config.outputs.to_json(),
            "cast": folder_digest(cast, backend_model)}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


LOCK_NAME = ".movieid-batch.lock"


class _Lock:
    """One batch at a time per output folder; a batch's films are ``running`` only while it
    holds this lock (the kernel drops it when the process dies, SIGKILL included)."""

    def __init__(self, out: Path):
        path = out / LOCK_NAME
        try:
            # O_NONBLOCK: a named pipe put here must not block the open; read-only is enough for flock
            try:
                self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not path.exists():
                    raise
                self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise MovieIdError(f"output folder is not writable ({exc.strerror or exc})", out) from None
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.close(self.fd)
            raise MovieIdError("is not a regular file (movieid keeps its batch lock here)", path)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise MovieIdError("another movieid batch is writing to this output folder", out) from None

    @classmethod
    def try_acquire(cls, out: Path) -> "_Lock | None":
        """The lock when no batch holds it, else None."""
        try:
            return cls(out)
        except MovieIdError:
            return None

    def release(self) -> None:
        os.close(self.fd)


def run_batch(source: Path, out: Path, cast: Path | None, options: BatchOptions,
              progress: Progress = None) -> Summary:
    started = time.perf_counter()
    config = options.config
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MovieIdError(f"cannot create the output folder ({exc.strerror or exc})", out) from None
    lock = _Lock(out)
    try:
        journal = Journal(out)
    except BaseException:
        lock.release()
        raise
    summary = Summary()
    try:
        journal.interrupt_running("its batch was stopped or killed")   # we hold the lock: nobody runs them
        remove_stale_temp_files(out)
        sync_with_journal(journal)     # the archive index (OUT/index.sqlite) holds the films done
        jobs = find_jobs(source, out, cast)
        journal.mark_gone({job.key for job in jobs})
        backend_model = load_backend(config.faces.backend, config.faces.models).model_id
        digests = {c: settings_digest(config, c, backend_model) for c in {j.cast for j in jobs}}
        plan: list[tuple[Job, str, str]] = []
        for job in jobs:
            fp, settings = fingerprint(job.film), digests[job.cast]
            decision = journal.decide(job, fp, settings, options.retry_failed)
            if decision == "skip":
                summary.skipped += 1
            elif decision == "failed":
                summary.failed_before += 1
                summary.failures.append((job.key, journal.get(job.key).reason or "failed"))
            else:
                plan.append((job, fp, settings))
        log.info("%d films: %d to do, %d done already, %d failed before", len(jobs), len(plan),
                 summary.skipped, summary.failed_before)
        journal.pending(plan)
        if plan:
            _execute(plan, options, journal, summary, progress)
            journal.interrupt_running("the batch stopped at the first failure (--fail-fast)")
    except BaseException:   # Ctrl-C, SIGTERM, a journal that cannot be written, a bug
        _mark_interrupted(journal)
        raise
    finally:
        journal.close()
        lock.release()
    summary.seconds = time.perf_counter() - started
    return summary


def _mark_interrupted(journal: Journal) -> None:
    """The films in flight become ``interrupted``, not left ``running``; a second Ctrl-C or
    SIGTERM waits until this is written (it is delivered right after)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        journal.interrupt_running()
    except MovieIdError as exc:
        log.debug("could not mark the films in flight as interrupted: %s", exc)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class _Stop(Exception):
    """--fail-fast: a film failed."""


def _execute(plan, options: BatchOptions, journal: Journal, summary: Summary, progress: Progress) -> None:
    config = options.config
    fingerprints = {job.key: (fp, settings) for job, fp, settings in plan}
    session = _RaySession(options.ray) if options.ray else None
    finished = 0

    def start(job: Job) -> None:
        journal.start(job, *fingerprints[job.key])

    def record(job: Job, seconds: float, reason: str | None, written: list[Path] = ()) -> None:
        nonlocal finished
        journal.finish(job, seconds, list(written), reason)
        if reason is None:
            summary.done += 1
        else:
            summary.failed += 1
            summary.failures.append((job.key, reason))
            film = printable(job.film)   # as the reason names it
            log.warning("%s", reason if film in reason else f"{film}: {reason}")
        finished += 1
        report(progress, "films", finished, len(plan))
        if reason is not None and not options.keep_going:
            raise _Stop()

    def write(captioned: list[Captioned]) -> None:
        for c in captioned:
            written: list[Path] = []
            reason = c.error
            if reason is None:
                try:
                    doc = document(dataclasses.replace(c.annotation, title=c.job.title))
                    c.job.output_dir.mkdir(parents=True, exist_ok=True)
                    written = write_annotation(doc, c.job.outputs(config.outputs.files),
                                               dataclasses.replace(config.outputs, overwrite=True), c.job.film)
                    index_film(journal, c.job, doc, c.annotation, written)   # before the journal says done
                except Exception as exc:  # the batch goes on: the film is recorded as failed
                    reason = _reason(exc)
            record(c.job, analysed[c.job.key] + c.seconds, reason, written)

    analysed: dict[str, float] = {}

    def deliver(job: Job, outcome: Outcome) -> None:
        if outcome.error is not None:
            record(job, outcome.seconds, outcome.error)
        else:
            analysed[job.key] = outcome.seconds
            captions.submit(job, outcome.analysis)
        write(captions.finished())

    jobs = [job for job, _, _ in plan]
    report(progress, "films", 0, len(plan))
    try:
        captions = _captions(options)
        if options.ray:
            _run_ray(jobs, config, start, deliver)
        else:
            _run_processes(jobs, config, start, deliver)
        write(captions.finished(wait_all=True))
    except _Stop:
        pass
    finally:
        if session is not None:
            session.close()


def _captions(options: BatchOptions):
    """Where films are captioned: on Ray GPU actors for the VLM engine when the cluster has
    GPUs, else in this process."""
    if options.ray and options.config.engine.name != "faces":
        import ray

        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus:
            return RayCaptions(options.config, gpus)
    return LocalCaptions(options.config)


def status(out: Path) -> list:
    """The journal's entries (for ``movieid batch-status``). Films ``running`` with no batch
    holding the folder's lock were interrupted: they are marked so (in the journal too, when
    it can be written)."""
    from .journal import JOURNAL_NAME

    path = Path(out) / JOURNAL_NAME
    if not (path.exists() or path.is_symlink()):
        raise MovieIdError("no batch journal here (run movieid batch with -o pointing to this folder)", out)
    journal = Journal(out)
    lock = _Lock.try_acquire(Path(out))
    try:
        if lock is not None:
            with contextlib.suppress(MovieIdError):
                journal.interrupt_running("its batch was stopped or killed")
        entries = journal.entries()
    finally:
        if lock is not None:
            lock.release()
        journal.close()
    if lock is None:
        return entries
    return [dataclasses.replace(e, state="interrupted") if e.state == "running" else e for e in entries]


def summarise(entries: Iterable) -> dict[str, int]:
    counts = {"done": 0, "failed": 0, "interrupted": 0, "running": 0, "pending": 0, "gone": 0}
    for entry in entries:
        counts[entry.state] = counts.get(entry.state, 0) + 1
    return counts
