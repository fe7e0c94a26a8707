"""The annotation document written as SRT, WebVTT and JSON, all or nothing.

Each format is one function of the JSON document (``annotation.document``), so ``annotate``,
``batch`` and a re-render from an edited JSON share them. Files are rendered completely,
then placed together (``files.write_files``): a failure never leaves a half-written output,
and without ``overwrite`` no existing file is replaced, also one that appeared during the run.
"""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Callable, Sequence

from .config import FORMATS
from .errors import MovieIdError
from .files import remove_temp_files, write_files
from .video import format_time


def render_srt(doc: dict) -> str:
    import srt

    cues = [srt.Subtitle(index=i, start=timedelta(seconds=s["start"]), end=timedelta(seconds=s["end"]),
                         content=s["caption"]) for i, s in enumerate(doc["shots"], 1)]
    return srt.compose(cues, reindex=False)


def render_vtt(doc: dict) -> str:
    import webvtt

    vtt = webvtt.WebVTT()
    for s in doc["shots"]:
        vtt.captions.append(webvtt.Caption(format_time(s["start"]), format_time(s["end"]), s["caption"],
                                           identifier=f"shot-{s['index']}"))
    return vtt.content


def render_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


RENDERERS: dict[str, Callable[[dict], str]] = {"srt": render_srt, "vtt": render_vtt, "json": render_json}


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
        write_files({out_dir / ".movieid-write-test": b""}, replace=True)[0].unlink()
    except OSError as exc:
        raise MovieIdError(f"output folder is not writable ({exc.strerror or exc})", out_dir) from None
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise MovieIdError("output exists (pass --overwrite to replace it)", path)


def write_outputs(doc: dict, paths: dict[str, Path], overwrite: bool) -> list[Path]:
    """Render every format, then place all files together."""
    files = {path: RENDERERS[fmt](doc).encode("utf-8") for fmt, path in paths.items()}
    try:
        return write_files(files, replace=overwrite)
    except FileExistsError as exc:
        raise MovieIdError("output exists (pass --overwrite to replace it)", exc.filename) from None
    except OSError as exc:
        raise MovieIdError(f"cannot write output ({exc.strerror or exc})", next(iter(paths.values())).parent) from None


def remove_stale_temp_files(folder: Path) -> int:
    """Delete temporary files a killed run left beside outputs."""
    return remove_temp_files(folder, [f"*.{fmt}" for fmt in FORMATS])
