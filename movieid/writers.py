"""Write an annotation as SRT, WebVTT, JSON, and on request HTML, CSV, OTIO and
audio-description tracks, atomically.

Every renderer is a function of the annotation's JSON document (the dict the schema
describes), so ``movieid report`` re-renders an edited JSON the same way. Every file is
written to a temporary name in the output folder and renamed into place only when all of
them are complete, so a failure never leaves a half-written output.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .errors import MovieIdError
from .subtitles import TrackStyle, render_srt, render_vtt

if TYPE_CHECKING:
    from .annotation import FilmAnnotation

FORMATS = ("srt", "vtt", "json")                  # written by default
EXTRA_FORMATS = ("html", "csv", "otio")           # on request (--format)
AD_FORMATS = {"srt": "ad.srt", "vtt": "ad.vtt"}   # with --ad: a description track beside each caption track
CHOICES = FORMATS + EXTRA_FORMATS
ALL_FORMATS = CHOICES + tuple(AD_FORMATS.values())
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


@dataclass(frozen=True)
class RenderContext:
    path: Path                         # where the output goes
    style: TrackStyle = TrackStyle()   # text-track conventions
    film: Path | None = None           # the annotated film (default: the path the document records)
    progress: bool | None = None


def _json(doc: dict, ctx: RenderContext) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _html(doc: dict, ctx: RenderContext) -> str:
    from .report import render_html

    return render_html(doc, film=ctx.film, base=ctx.path.parent, style=ctx.style, progress=ctx.progress)


def _csv(doc: dict, ctx: RenderContext) -> str:
    from .exports import render_csv

    return render_csv(doc)


def _otio(doc: dict, ctx: RenderContext) -> str:
    from .exports import render_otio

    return render_otio(doc)


def _ad(render: str) -> Callable[[dict, RenderContext], str]:
    def renderer(doc: dict, ctx: RenderContext) -> str:
        from . import describe

        return getattr(describe, render)(doc, ctx.style)
    return renderer


RENDERERS: dict[str, Callable[[dict, RenderContext], str]] = {
    "srt": lambda doc, ctx: render_srt(doc, ctx.style),
    "vtt": lambda doc, ctx: render_vtt(doc, ctx.style),
    "json": _json, "html": _html, "csv": _csv, "otio": _otio,
    "ad.srt": _ad("render_ad_srt"), "ad.vtt": _ad("render_ad_vtt"),
}


def with_ad(formats: Sequence[str], ad: bool) -> tuple[str, ...]:
    """The formats to write: with ``ad``, a description track for each caption track chosen."""
    formats = tuple(dict.fromkeys(formats))
    return formats + tuple(AD_FORMATS[f] for f in formats if ad and f in AD_FORMATS)


def output_paths(out_dir: Path, stem: str, formats: Sequence[str]) -> dict[str, Path]:
    return {fmt: Path(out_dir) / f"{stem}.{fmt}" for fmt in formats}


def check_outputs(out_dir: Path, stem: str, formats: Sequence[str], overwrite: bool) -> dict[str, Path]:
    """Fail before any work if the outputs cannot be written (or exist and may not be replaced)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MovieIdError("output path is not a folder", out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".movieid-write-test-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise MovieIdError(f"output folder is not writable ({exc.strerror or exc})", out_dir) from None
    paths = output_paths(out_dir, stem, formats)
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise MovieIdError("output exists (pass --overwrite to replace it)", path)
    return paths


def write_outputs(annotation: "FilmAnnotation | dict", paths: dict[str, Path], style: TrackStyle = TrackStyle(),
                  film: Path | None = None, progress: bool | None = None) -> list[Path]:
    """Render every format of an annotation (or its JSON document), then move all files into place together."""
    doc = annotation if isinstance(annotation, dict) else annotation.to_json()
    staged: list[tuple[str, Path]] = []
    try:
        for fmt, path in paths.items():
            text = RENDERERS[fmt](doc, RenderContext(path, style, film, progress))
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, path in staged:
            os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600 files
            os.replace(tmp, path)
        staged = []
    except OSError as exc:
        raise MovieIdError(f"cannot write output ({exc.strerror or exc})", paths and next(iter(paths.values())).parent) from None
    finally:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return list(paths.values())


def remove_stale_temp_files(folder: Path) -> int:
    """Delete temporary files a killed run left behind (``.<name>.<random>.tmp`` beside outputs)."""
    removed = 0
    for fmt in ALL_FORMATS:
        for path in Path(folder).rglob(f".*.{fmt}.*.tmp"):
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    return removed
