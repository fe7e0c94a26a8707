"""What a batch has to do: the films (found in a folder or listed in a manifest), each with
its cast and its output paths, and the fingerprints that tell whether a film changed.

Films in a folder are found by content: a file is a film when its first bytes are those of
a video container (or it has a video file's extension) and ffprobe finds a video stream in
it. Outputs mirror the films' layout below the source folder, so films of the same name in
different folders never collide; two films of the same stem in one folder (``a.mp4``,
``a.mkv``) are told apart by their full names (``a.mp4.srt``, ``a.mkv.srt``).
"""
from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import MovieIdError
from ..files import check_input_file
from ..video import has_video_stream
from ..writers import output_paths

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m2v", ".ts", ".mts",
                  ".m2ts", ".vob", ".flv", ".wmv", ".asf", ".ogv", ".3gp", ".3g2", ".mxf", ".dv", ".y4m",
                  ".ivf", ".rm", ".rmvb", ".h264", ".264", ".hevc", ".265"}
MANIFEST_SUFFIXES = {".csv", ".jsonl"}


@dataclass(frozen=True)
class Job:
    key: str                 # stable identity in the journal: the film's path below the source
    film: Path
    cast: Path | None
    title: str | None
    output_dir: Path
    stem: str                # output files are <output_dir>/<stem>.<format>

    def outputs(self, formats) -> dict[str, Path]:
        return output_paths(self.output_dir, self.stem, formats)


# ----------------------------------------------------------------------------- content sniffing

def looks_like_video(head: bytes) -> bool:
    """Magic bytes of the common video containers (a cheap first look before ffprobe)."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return True                                            # MP4 / QuickTime / 3GP
    if head[:4] == b"\x1a\x45\xdf\xa3":                        # Matroska / WebM
        return True
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return True
    if head[:3] == b"FLV" or head[:4] in (b"OggS", b".RMF", b"DKIF", b"\x06\x0e\x2b\x34"):
        return True                                            # FLV, Ogg, RealMedia, IVF, MXF
    if head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":      # ASF / WMV
        return True
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3") or head[:9] == b"YUV4MPEG2":
        return True                                            # MPEG-PS / MPEG video / Y4M
    for packet in (188, 192):                                  # MPEG-TS and M2TS
        offset = 0 if packet == 188 else 4
        if len(head) >= offset + 2 * packet + 1 and all(head[offset + k * packet] == 0x47 for k in range(3)):
            return True
    return False


def _is_film(path: Path) -> bool:
    """Films by content. A file named like a video that ffprobe cannot read is kept, so the
    batch reports why it failed instead of silently passing it over; so is anything else named
    like one (a named pipe, a socket, a broken symbolic link), never opened here (opening a
    named pipe blocks until someone writes to it)."""
    if not path.is_file():
        return path.suffix.lower() in VIDEO_SUFFIXES
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return path.suffix.lower() in VIDEO_SUFFIXES
    named = path.suffix.lower() in VIDEO_SUFFIXES
    if not (named or looks_like_video(head)):
        return False
    found = has_video_stream(path)
    if found is None:
        return named
    if not found:
        log.info("%s: no video stream (audio or a still image); not a film", path)
    return found


def scan_folder(root: Path, skip: Path | None = None) -> list[Path]:
    """Every film below ``root`` (hidden files and folders, and ``skip``, left out)."""
    films = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (skip is None or (here / d).resolve() != skip.resolve()))
        for name in sorted(files):
            path = here / name
            if not name.startswith(".") and _is_film(path):
                films.append(path)
    return films


# ----------------------------------------------------------------------------- manifests

def read_manifest(path: Path) -> list[tuple[Path, Path | None, str | None]]:
    """(film, cast, title) rows of a CSV (header ``film,cast,title``) or JSONL manifest;
    relative paths are relative to the manifest's folder."""
    base = path.parent
    check_input_file(path, "manifest")   # a named pipe would block the read below
    rows: list[dict] = []
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "film" not in [f.strip().lower() for f in reader.fieldnames]:
                    raise MovieIdError("manifest needs a header row with a 'film' column "
                                       "(and optionally 'cast' and 'title')", path)
                rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
        else:
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise MovieIdError(f"line {number} is not JSON ({exc.msg})", path) from None
                    if not isinstance(row, dict):
                        raise MovieIdError(f"line {number} is not a JSON object", path)
                    rows.append(row)
    except (OSError, UnicodeDecodeError) as exc:
        raise MovieIdError(f"cannot read manifest ({exc})", path) from None
    out = []
    for number, row in enumerate(rows, 1):
        film = str(row.get("film") or "").strip()
        if not film:
            raise MovieIdError(f"entry {number} has no film", path)
        cast = str(row.get("cast") or "").strip()
        title = str(row.get("title") or "").strip() or None
        out.append((base / film, (base / cast) if cast else None, title))
    if not out:
        raise MovieIdError("manifest lists no films", path)
    return out


# ----------------------------------------------------------------------------- jobs

def _stems(paths: list[Path]) -> dict[Path, str]:
    """Output stems: the film's stem, or its full name where two films in a folder share a stem."""
    clashes = Counter((p.parent, p.stem) for p in paths)
    return {p: p.stem if clashes[(p.parent, p.stem)] == 1 else p.name for p in paths}


def find_jobs(source: Path, out: Path, cast: Path | None) -> list[Job]:
    """The films of ``source`` (a folder or a manifest) with their casts and outputs."""
    source = Path(source)
    if not source.exists():
        raise MovieIdError("no such folder or manifest", source)
    if source.is_dir():
        films = scan_folder(source, skip=out)
        rows = [(f, cast, None) for f in films]
        root = source
    elif source.suffix.lower() in MANIFEST_SUFFIXES:
        rows = [(f, c or cast, t) for f, c, t in read_manifest(source)]
        root = Path(os.path.commonpath([str(f.parent.resolve()) for f, _, _ in rows]))
    else:
        raise MovieIdError("is neither a folder nor a manifest (.csv or .jsonl)", source)
    stems = _stems([f for f, _, _ in rows])
    jobs, seen = [], set()
    for film, film_cast, title in rows:
        try:   # the folder resolved, not the film: a link keeps its own place (and may point nowhere)
            relative = (film.parent.resolve() / film.name).relative_to(root.resolve())
        except ValueError:
            relative = Path(film.name)
        key = relative.as_posix()
        if key in seen:
            raise MovieIdError(f"lists {film} twice", source)
        seen.add(key)
        jobs.append(Job(key=key, film=film, cast=film_cast, title=title,
                        output_dir=out / relative.parent, stem=stems[film]))
    return jobs
