"""The annotation document written as SRT, WebVTT, JSON and, on request, the review page
(HTML), CSV, OpenTimelineIO and audio-description tracks, all or nothing.

Each format is one function of the JSON document (``annotation.document``), so ``annotate``,
``batch`` and a re-render from an edited JSON (``movieid report``) share them; text tracks
follow the subtitle conventions of ``subtitles``. Files are rendered completely, then placed
together (``files.write_files``): a failure never leaves a half-written output, and without
``overwrite`` no existing file is replaced, also one that appeared during the run.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .config import ALL_FORMATS, OutputConfig
from .errors import MovieIdError
from .files import remove_temp_files, write_files
from .progress import Progress
from .subtitles import TrackStyle, render_srt, render_vtt


@dataclass(frozen=True)
class RenderContext:
    path: Path                         # where the output goes
    style: TrackStyle = TrackStyle()   # text-track conventions
    film: Path | None = None           # the annotated film (default: the path the document records)
    progress: Progress = None
    # Which cast photos the review page may embed: those of the run that made the document
    # (``annotate``), or only those under ``photos_from`` (a JSON from elsewhere names any file).
    own_run: bool = False
    photos_from: Path | None = None
    source: Path | None = None         # the JSON the document was read from (its folder is looked in)


def render_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _html(doc: dict, ctx: RenderContext) -> str:
    from .report import render_html

    return render_html(doc, film=ctx.film, base=ctx.path.parent, style=ctx.style, progress=ctx.progress,
                       photos=True if ctx.own_run else ctx.photos_from, source=ctx.source)


def _csv(doc: dict, ctx: RenderContext) -> str:
    from .exports import render_csv

    return render_csv(doc)


def _otio(doc: dict, ctx: RenderContext) -> str:
    from .exports import render_otio

    return render_otio(doc)


def _ad_srt(doc: dict, ctx: RenderContext) -> str:
    from .describe import render_ad_srt

    return render_ad_srt(doc, ctx.style)


def _ad_vtt(doc: dict, ctx: RenderContext) -> str:
    from .describe import render_ad_vtt

    return render_ad_vtt(doc, ctx.style)


RENDERERS: dict[str, Callable[[dict, RenderContext], str]] = {
    "srt": lambda doc, ctx: render_srt(doc, ctx.style),
    "vtt": lambda doc, ctx: render_vtt(doc, ctx.style),
    "json": lambda doc, ctx: render_json(doc),
    "html": _html, "csv": _csv, "otio": _otio, "ad.srt": _ad_srt, "ad.vtt": _ad_vtt,
}


def output_paths(out_dir: Path, stem: str, formats: Sequence[str]) -> dict[str, Path]:
    """Where each format of a film goes: ``<out_dir>/<stem>.<format>``."""
    return {fmt: Path(out_dir) / f"{stem}.{fmt}" for fmt in formats}


def check_outputs(paths: dict[str, Path], overwrite: bool) -> None:
    """Fail before any work if the outputs cannot be written (or exist and may not be replaced)."""
    out_dir = next(iter(paths.values())).parent
    if out_dir.exists() and not out_dir.is_dir():
        raise MovieIdError("output path is not a folder", out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # a name of its own: two runs probing one folder at once must not delete each other's probe
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".movieid-write-test-"):
            pass
    except OSError as exc:
        raise MovieIdError(f"output folder is not writable ({exc.strerror or exc})", out_dir) from None
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise MovieIdError("output exists (pass --overwrite to replace it)", path)


def write_outputs(doc: dict, paths: dict[str, Path], overwrite: bool, style: TrackStyle = TrackStyle(),
                  film: Path | None = None, progress: Progress = None, own_run: bool = False,
                  photos_from: Path | None = None, source: Path | None = None) -> list[Path]:
    """Render every format, then place all files together."""
    files = {path: RENDERERS[fmt](doc, RenderContext(path, style, film, progress, own_run, photos_from,
                                                     source)).encode("utf-8")
             for fmt, path in paths.items()}
    try:
        return write_files(files, replace=overwrite)
    except FileExistsError as exc:
        raise MovieIdError("output exists (pass --overwrite to replace it)", exc.filename) from None
    except OSError as exc:
        targets = {str(p) for p in paths.values()}
        where = next((name for name in (exc.filename2, exc.filename) if name in targets),
                     next(iter(paths.values())).parent)   # else a temporary file's: its folder
        raise MovieIdError(f"cannot write output ({exc.strerror or exc})", where) from None


def write_annotation(doc: dict, paths: dict[str, Path], outputs: OutputConfig, film: Path,
                     progress: Progress = None) -> list[Path]:
    """A film's outputs as ``outputs`` asks: with ``ad``, speech in ``film`` is found first and
    each shot's description placed around it (``describe``), in the JSON and its tracks."""
    style = TrackStyle(min_duration=outputs.min_duration)
    if outputs.ad:
        from .describe import AdOptions, describe_film

        doc = describe_film(doc, film, AdOptions(reading_speed=outputs.reading_speed), style, progress=progress)
    return write_outputs(doc, paths, outputs.overwrite, style, film=film, progress=progress, own_run=True)


def remove_stale_temp_files(folder: Path) -> int:
    """Delete temporary files a killed run left beside outputs."""
    return remove_temp_files(folder, [f"*.{fmt}" for fmt in ALL_FORMATS])
