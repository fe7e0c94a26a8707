"""Write an annotation as SRT, WebVTT and JSON, atomically.

Every file is written to a temporary name in the output folder and renamed into place
only when all of them are complete, so a failure never leaves a half-written output.
"""
from __future__ import annotations

import json
import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Callable, Sequence

from .annotation import FilmAnnotation
from .errors import MovieIdError
from .video import format_time

FORMATS = ("srt", "vtt", "json")
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def _srt(annotation: FilmAnnotation) -> str:
    import srt

    cues = [srt.Subtitle(index=i, start=timedelta(seconds=s.shot.start), end=timedelta(seconds=s.shot.end),
                         content=s.caption.text)
            for i, s in enumerate(annotation.shots, 1)]
    return srt.compose(cues, reindex=False)


def _vtt(annotation: FilmAnnotation) -> str:
    import webvtt

    doc = webvtt.WebVTT()
    for s in annotation.shots:
        doc.captions.append(webvtt.Caption(format_time(s.shot.start), format_time(s.shot.end),
                                           s.caption.text, identifier=f"shot-{s.shot.index}"))
    return doc.content


def _json(annotation: FilmAnnotation) -> str:
    return json.dumps(annotation.to_json(), indent=2, ensure_ascii=False) + "\n"


RENDERERS: dict[str, Callable[[FilmAnnotation], str]] = {"srt": _srt, "vtt": _vtt, "json": _json}


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


def write_outputs(annotation: FilmAnnotation, paths: dict[str, Path]) -> list[Path]:
    """Render every format, then move all files into place together."""
    staged: list[tuple[str, Path]] = []
    try:
        for fmt, path in paths.items():
            text = RENDERERS[fmt](annotation)
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
    for fmt in FORMATS:
        for path in Path(folder).rglob(f".*.{fmt}.*.tmp"):
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    return removed
