"""Run a batch: analyse films (CPU stages) in workers, caption them with one engine, write
each film's outputs and record it in the journal as soon as it is done.

Three executors share that shape:
* serial: one process, models loaded once;
* ``--workers N``: N processes analyse films, each keeping its face backend and casts between
  films; the main process holds the caption engine, so on a GPU it captions one film while
  the workers analyse the next ones;
* ``--ray ADDRESS``: the same with Ray actors for the analysis and, for the VLM engine, one
  GPU actor per GPU holding the model; the journal and the outputs stay on the driver.
A film that fails is recorded with a one-line reason and the batch goes on.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

from .. import __version__
from ..errors import MovieIdError
from ..describe import AdOptions, describe_film
from ..pipeline import AnnotateOptions, Analyzer, Captioner, FilmAnalysis, load_cast_with_progress
from ..subtitles import TrackStyle
from ..writers import FORMATS, remove_stale_temp_files, write_outputs
from .jobs import Job, cast_fingerprint, find_jobs, fingerprint
from .journal import Journal

log = logging.getLogger(__name__)

CASTS_PER_WORKER = 4   # analysers (casts) a worker keeps loaded


@dataclass(frozen=True)
class BatchOptions:
    annotate: AnnotateOptions = field(default_factory=AnnotateOptions)
    formats: tuple[str, ...] = FORMATS
    workers: int = 1                  # films analysed at once (processes or Ray actors)
    ray: str | None = None            # Ray address: "auto", "local", "host:port", "ray://..."
    retry_failed: bool = False
    keep_going: bool = True
    style: TrackStyle = field(default_factory=TrackStyle)   # text-track conventions
    ad: AdOptions | None = None                            # audio description (formats then hold ad.*)


@dataclass
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
    if isinstance(exc, MovieIdError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"internal error: {type(exc).__name__}: {text}"


class FilmWorker:
    """Analyses films, keeping the face backend and the last few casts' analysers loaded."""

    def __init__(self, options: AnnotateOptions):
        from ..faces import load_backend

        self.options = options
        self.backend = load_backend(options.face_backend, options.face_models)
        self._analyzers: OrderedDict[str, Analyzer] = OrderedDict()

    def _analyzer(self, cast: Path | None) -> Analyzer:
        key = str(cast)
        if key not in self._analyzers:
            loaded = load_cast_with_progress(cast, self.backend, self.options, progress=False)
            self._analyzers[key] = Analyzer(self.options, loaded, self.backend, progress=False)
            while len(self._analyzers) > CASTS_PER_WORKER:
                self._analyzers.popitem(last=False)[1].close()
        self._analyzers.move_to_end(key)
        return self._analyzers[key]

    def analyze(self, job: Job) -> Outcome:
        start = time.perf_counter()
        try:
            analysis = self._analyzer(job.cast).analyze(job.film)
            return Outcome(job.key, analysis, None, time.perf_counter() - start)
        except Exception as exc:  # the batch goes on: the film is recorded as failed
            log.debug("film %s failed", job.film, exc_info=True)
            return Outcome(job.key, None, _reason(exc), time.perf_counter() - start)

    def close(self) -> None:
        for analyzer in self._analyzers.values():
            analyzer.close()


_WORKER: FilmWorker | None = None


def _init_worker(options: AnnotateOptions) -> None:
    global _WORKER
    _WORKER = FilmWorker(options)


def _analyze_in_worker(job: Job) -> Outcome:
    assert _WORKER is not None
    return _WORKER.analyze(job)


# ----------------------------------------------------------------------------- executors

Deliver = Callable[[Job, Outcome], None]
Start = Callable[[Job], None]


def _run_serial(jobs: list[Job], options: AnnotateOptions, start: Start, deliver: Deliver) -> None:
    worker = FilmWorker(options)
    try:
        for job in jobs:
            start(job)
            deliver(job, worker.analyze(job))
    finally:
        worker.close()


def _run_processes(jobs: list[Job], options: AnnotateOptions, workers: int, start: Start,
                   deliver: Deliver) -> None:
    by_key = {job.key: job for job in jobs}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(options,)) as pool:
        queue = iter(jobs)
        running: set[Future] = set()
        try:
            while True:
                while len(running) < 2 * workers:       # a bounded queue: analyses are kept small
                    job = next(queue, None)
                    if job is None:
                        break
                    start(job)
                    running.add(pool.submit(_analyze_in_worker, job))
                if not running:
                    return
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    outcome = future.result()
                    deliver(by_key[outcome.key], outcome)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _run_ray(jobs: list[Job], options: AnnotateOptions, workers: int, start: Start, deliver: Deliver) -> None:
    import ray
    from ray.util import ActorPool

    count = workers if workers > 1 else max(1, int(ray.available_resources().get("CPU", 1)))
    analysers = [ray.remote(num_cpus=1)(FilmWorker).remote(options) for _ in range(count)]
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
        except ImportError:
            raise MovieIdError("--ray needs Ray: pip install -e '.[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=None if address == "local" else address, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise MovieIdError(f"cannot reach a Ray cluster at {address!r} ({str(exc).splitlines()[0]})") \
                    from None

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


Captioned = tuple[Job, object, "str | None", float]   # job, FilmAnnotation (or None), error, seconds


class LocalCaptions:
    """Captions each film in this process as it arrives (the engine loaded once)."""

    def __init__(self, options: AnnotateOptions):
        self.captioner = Captioner(options, progress=False)
        self._done: list[Captioned] = []

    def submit(self, job: Job, analysis: FilmAnalysis) -> None:
        begin = time.perf_counter()
        try:
            self._done.append((job, self.captioner.caption(analysis), None, time.perf_counter() - begin))
        except Exception as exc:  # the batch goes on: the film is recorded as failed
            log.debug("captioning %s failed", job.film, exc_info=True)
            self._done.append((job, None, _reason(exc), time.perf_counter() - begin))

    def finished(self, wait_all: bool = False) -> list[Captioned]:
        done, self._done = self._done, []
        return done


class RayCaptioner:
    """One per GPU: the VLM engine loaded once, captioning films from any analysis actor."""

    def __init__(self, options: AnnotateOptions):
        self.captions = LocalCaptions(options)

    def caption(self, job: Job, analysis: FilmAnalysis) -> Captioned:
        self.captions.submit(job, analysis)
        return self.captions.finished()[0]


class RayCaptions:
    """Captions films on the GPU actors, all of them busy at once; results come back as ready."""

    def __init__(self, options: AnnotateOptions, gpus: int):
        import ray
        from ray.util import ActorPool

        # num_cpus=0: the GPU is what it needs; the CPUs are the analysis actors'.
        self.pool = ActorPool([ray.remote(num_gpus=1, num_cpus=0)(RayCaptioner).remote(options) for _ in range(gpus)])

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

def settings_digest(options: BatchOptions, cast: Path | None, backend_model: str) -> str:
    """What a film's outputs depend on besides the film: a changed value redoes the film."""
    data = {"tool": __version__, "options": options.annotate.to_json(), "formats": sorted(options.formats),
            "cast": cast_fingerprint(cast), "face_model": backend_model, "tracks": options.style.to_json(),
            "ad": None if options.ad is None else options.ad.to_json()}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class _Lock:
    """One batch at a time per output folder."""

    def __init__(self, out: Path):
        self.fh = open(out / ".movieid-batch.lock", "w")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise MovieIdError("another movieid batch is writing to this output folder", out) from None

    def release(self) -> None:
        self.fh.close()


def run_batch(source: Path, out: Path, cast: Path | None, options: BatchOptions,
              progress: bool | None = None) -> Summary:
    from ..faces import load_backend

    started = time.perf_counter()
    annotate = options.annotate
    annotate.validate()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MovieIdError(f"cannot create the output folder ({exc.strerror or exc})", out) from None
    lock = _Lock(out)
    journal = Journal(out)
    summary = Summary()
    try:
        remove_stale_temp_files(out)
        jobs = find_jobs(source, out, cast)
        journal.mark_gone({job.key for job in jobs})
        backend_model = load_backend(annotate.face_backend, annotate.face_models).model_id
        digests = {c: settings_digest(options, c, backend_model) for c in {j.cast for j in jobs}}
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
        if plan:
            _execute(plan, options, journal, summary, progress)
    finally:
        journal.close()
        lock.release()
    summary.seconds = time.perf_counter() - started
    return summary


class _Stop(Exception):
    """--fail-fast: a film failed."""


def _execute(plan, options: BatchOptions, journal: Journal, summary: Summary, progress: bool | None) -> None:
    annotate = options.annotate
    workers = max(1, options.workers)
    # Films analysed in parallel share the cores: each film's face analysis gets its share.
    if options.ray:
        face_workers = 1
    elif workers > 1:
        face_workers = max(1, (os.cpu_count() or 1) // workers)
    else:
        face_workers = annotate.workers
    worker_options = dataclasses.replace(annotate, workers=face_workers)
    fingerprints = {job.key: (fp, settings) for job, fp, settings in plan}
    session = _RaySession(options.ray) if options.ray else None
    bar = tqdm(total=len(plan), desc="films", unit="film", disable=True if progress is False else None,
               dynamic_ncols=True)

    def start(job: Job) -> None:
        journal.start(job, *fingerprints[job.key])

    def record(job: Job, seconds: float, reason: str | None, written: list[Path] = ()) -> None:
        journal.finish(job, seconds, list(written), reason)
        if reason is None:
            summary.done += 1
        else:
            summary.failed += 1
            summary.failures.append((job.key, reason))
            log.warning("%s", reason if str(job.film) in reason else f"{job.film}: {reason}")
        bar.update(1)
        if reason is not None and not options.keep_going:
            raise _Stop()

    def write(captioned: list[Captioned]) -> None:
        for job, annotation, reason, seconds in captioned:
            written: list[Path] = []
            if reason is None:
                try:
                    annotation.title = job.title
                    job.output_dir.mkdir(parents=True, exist_ok=True)
                    doc = annotation.to_json()
                    if options.ad is not None:
                        doc = describe_film(doc, job.film, options.ad, options.style, progress=False)
                    written = write_outputs(doc, job.outputs(options.formats), options.style, progress=False)
                except Exception as exc:  # the batch goes on: the film is recorded as failed
                    reason = _reason(exc)
            record(job, analysed[job.key] + seconds, reason, written)

    analysed: dict[str, float] = {}

    def deliver(job: Job, outcome: Outcome) -> None:
        if outcome.error is not None:
            record(job, outcome.seconds, outcome.error)
        else:
            analysed[job.key] = outcome.seconds
            captions.submit(job, outcome.analysis)
        write(captions.finished())

    jobs = [job for job, _, _ in plan]
    try:
        captions = _captions(options, worker_options)
        if options.ray:
            _run_ray(jobs, worker_options, workers, start, deliver)
        elif workers > 1:
            _run_processes(jobs, worker_options, workers, start, deliver)
        else:
            _run_serial(jobs, worker_options, start, deliver)
        write(captions.finished(wait_all=True))
    except _Stop:
        pass
    finally:
        bar.close()
        if session is not None:
            session.close()


def _captions(options: BatchOptions, worker_options: AnnotateOptions):
    """Where films are captioned: on Ray GPU actors for the VLM engine when the cluster has
    GPUs, else in this process."""
    if options.ray and options.annotate.engine != "faces":
        import ray

        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus:
            return RayCaptions(worker_options, gpus)
    return LocalCaptions(worker_options)


def status(out: Path) -> list:
    """The journal's entries (for ``movieid batch-status``)."""
    from .journal import JOURNAL_NAME

    if not (Path(out) / JOURNAL_NAME).is_file():
        raise MovieIdError("no batch journal here (run movieid batch with -o pointing to this folder)", out)
    journal = Journal(out)
    try:
        return journal.entries()
    finally:
        journal.close()


def summarise(entries: Iterable) -> dict[str, int]:
    counts = {"done": 0, "failed": 0, "running": 0, "pending": 0, "gone": 0}
    for entry in entries:
        counts[entry.state] = counts.get(entry.state, 0) + 1
    return counts
