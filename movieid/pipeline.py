"""``annotate``: a film and a cast in, per-shot annotations out.

    probe ─▶ one decoding pass (shots, keyframe candidates) ─▶ faces and tracks (worker
    processes, overlapping the pass) ─▶ names and film-wide Unknown labels ─▶ windows
          = analyse (CPU)
    ─▶ engine captions ─▶ FilmAnnotation
          = caption (engine)

``annotate`` runs the stages in order. ``analyse`` and ``caption`` are separate so that a
batch can analyse one film on the CPU while the engine captions another on the GPU, each
keeping its models between films.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .annotation import now
from .cast import count_photos, discover, empty_cast, load_cast
from .config import Config
from .engines import CaptionRequest, Engine, load_engine
from .engines.base import ENGINE_FRAME_SIDE
from .face_stage import analyse_faces, face_pool
from .faces import FaceBackend, load_backend
from .identity import identify
from .progress import Progress, report
from .records import Cast, Film, FilmAnnotation, ShotAnnotation, ShotPeople, Window
from .scan import scan_film
from .video import FrameReader, fit_size, probe
from .windows import build_window
from .workers import WorkerPool

log = logging.getLogger(__name__)

@dataclass(frozen=True, eq=False)
class FilmAnalysis:
    """What the CPU stages found in a film: everything the caption engine needs."""

    film: Film
    cast: Cast
    shots: tuple[ShotPeople, ...]
    windows: tuple[Window, ...]
    unknown_count: int
    settings: dict


def annotate(film: str | Path | Film, cast_dir: str | Path | None = None, config: Config = Config(),
             progress: Progress = None) -> FilmAnnotation:
    """Annotate one film with the cast in ``cast_dir`` (none: everyone is an Unknown)."""
    film = film if isinstance(film, Film) else probe(film)
    backend = load_backend(config.faces.backend, config.faces.models)
    cast = cast_for(cast_dir, backend, config, progress)
    engine = load_engine(config.engine)            # a bad model fails before the long analysis
    with face_pool(config, backend) as pool:
        analysis = analyse(film, cast, backend, config, pool, progress)
    return caption(analysis, engine, progress)


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
            progress: Progress = None) -> FilmAnalysis:
    """The CPU stages: shots, keyframes, faces, tracks, names and windows."""
    log.info("%s: %dx%d, %.3f fps%s, %d frames, reader %s", film.path, film.width, film.height,
             film.fps, " (VFR)" if film.vfr else "", film.frame_count, film.reader)
    face_size = fit_size(film.width, film.height, config.faces.size)
    scanned = scan_film(film, config.shots, config.windows.frames_per_shot, face_size,
                        on_frame=lambda n: report(progress, "shots", n, film.frame_count))
    shot_faces = analyse_faces(scanned, film, face_size, config.faces.min_face, pool,
                               on_shot=lambda n, total: report(progress, "faces", n, total))
    shots, unknown_count = identify(shot_faces, cast, backend.match_threshold, config.identity.min_confidence,
                                    backend.cluster_threshold, backend.confidence_margin)
    windows = tuple(build_window(shot, cast, config.windows) for shot in shots)
    log.info("%s: %d shots, %d people seen, %d unknown", film.path, len(shots),
             sum(len(s.people) for s in shots), unknown_count)
    settings = {**config.to_json(), "face_backend_used": backend.name}
    return FilmAnalysis(film, cast, tuple(shots), windows, unknown_count, settings)


def caption(analysis: FilmAnalysis, engine: Engine, progress: Progress = None) -> FilmAnnotation:
    """The caption stage: the engine describes every shot's window, in batches."""
    engine.start(analysis.cast)
    pairs = list(zip(analysis.windows, analysis.shots))
    captions = []
    reader = FrameReader(analysis.film, max_side=ENGINE_FRAME_SIDE) if engine.needs_pixels else None
    try:
        for start in range(0, len(pairs), engine.batch_size):
            batch = pairs[start:start + engine.batch_size]
            pixels = _test_frames(reader, [w for w, _ in batch]) if reader is not None else {}
            size = (analysis.film.width, analysis.film.height)
            captions += engine.caption([CaptionRequest(w, people, pixels, size) for w, people in batch])
            report(progress, "captions", len(captions), len(pairs))
    finally:
        if reader is not None:
            reader.close()
    shots = tuple(ShotAnnotation(people, window, c) for (window, people), c in zip(pairs, captions))
    return FilmAnnotation(film=analysis.film, cast=analysis.cast, engine=engine.settings(),
                          settings=analysis.settings, shots=shots, unknown_count=analysis.unknown_count,
                          created=now())


def _test_frames(reader: FrameReader, windows: list[Window]) -> dict:
    wanted = sorted({image.frame for w in windows for image in w.tests})
    return dict(zip(wanted, reader.read(wanted)))
