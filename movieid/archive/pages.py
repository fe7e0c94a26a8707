"""The archive's pages: the overview (``OUT/index.html``: films, people across films) and a page
of search hits with thumbnails. Both are self-contained HTML that opens from disk; links to
the films' review pages are relative, so keep the folder together."""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

from ..errors import MovieIdError
from ..files import write_file
from ..video import FrameReader, format_time, probe
from .consistency import visible_films
from .people import archive_label
from .search import Hit
from .store import Index, index_path

log = logging.getLogger(__name__)

OVERVIEW_NAME = "index.html"
THUMB_SIDE = 240


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("movieid.archive", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["clock"] = format_time
    return env


def _link(target: str | None, out: Path, page_dir: Path) -> str | None:
    """``target`` (relative to ``out``) as a link from a page in ``page_dir``."""
    if target is None:
        return None
    return Path(os.path.relpath(out / target, page_dir)).as_posix()


def overview(index: Index, out: Path, page_dir: Path, finishing: str | None = None) -> dict:
    """What the overview shows: films (duration, shots, people) and people across the films;
    ``finishing``: a batch's film that the journal is about to record done."""
    shown, lacking = visible_films(index, out, finishing)
    with index.errors():
        films = index.db.execute("SELECT id, key, title, duration, shot_count, review, sidecar FROM films"
                                 " ORDER BY key").fetchall()
        persons = index.db.execute("SELECT film, name, in_cast, archive, shots, seconds FROM persons").fetchall()
    films = [f for f in films if shown is None or f[0] in shown]
    keys = {f[0]: f[1] for f in films}
    people: dict[str, dict] = {}
    by_film: dict[int, set[str]] = {}
    for film, name, in_cast, archive, shots, seconds in persons:
        if film not in keys:
            continue
        label = name if in_cast else archive_label(archive) if archive is not None else f"{name} ({keys[film]})"
        by_film.setdefault(film, set()).add(label)
        entry = people.setdefault(label, {"name": label, "in_cast": bool(in_cast), "films": {}, "seconds": 0.0,
                                          "shots": 0})
        entry["films"][keys[film]] = entry["films"].get(keys[film], 0.0) + seconds
        entry["seconds"] += seconds
        entry["shots"] += shots
    links = {f[1]: _link(f[5] or f[6], out, page_dir) for f in films}   # the review page, else the JSON
    for p in people.values():
        p["films"] = [{"key": k, "seconds": s, "link": links[k]} for k, s in sorted(p["films"].items())]
    return {
        "films": [{"key": key, "title": title, "duration": duration, "shots": count, "link": links[key],
                   "people": sorted(by_film.get(fid, ()))} for fid, key, title, duration, count, _, _ in films],
        "people": sorted(people.values(), key=lambda p: (not p["in_cast"], -p["seconds"], p["name"])),
        "lacking": lacking,
    }


def write_overview(out: Path, finishing: str | None = None) -> Path:
    """``OUT/index.html`` from the index (replaced atomically)."""
    out = Path(out).absolute()
    with Index(index_path(out), readonly=True) as index:
        data = overview(index, out, out, finishing)
    page = out / OVERVIEW_NAME
    html = _environment().get_template("overview.html.j2").render(**data)
    try:
        return write_file(page, html.encode("utf-8"))
    except OSError as exc:
        raise MovieIdError(f"cannot write the archive overview ({exc.strerror or exc})", page) from None


def _thumbnails(hits: list[Hit], frame_counts: dict[str, int]) -> dict[tuple[str, int], str]:
    """A JPEG data URI per hit whose film can be read (and is the film that was annotated)."""
    from ..report.pages import data_uri

    thumbs: dict[tuple[str, int], str] = {}
    for path in dict.fromkeys(h.film_path for h in hits):
        frames = sorted({h.thumb_frame for h in hits if h.film_path == path})
        try:
            film = probe(path)
            if film.frame_count != frame_counts[path]:
                raise MovieIdError("is not the film that was annotated (its frame count differs)", path)
            with FrameReader(film, max_side=THUMB_SIDE) as reader:
                for frame, pixels in zip(frames, reader.read(frames)):
                    thumbs[(path, frame)] = data_uri(pixels)
        except MovieIdError as exc:
            log.warning("%s: no thumbnails", exc)
    return thumbs


def write_hits_page(index: Index, out: Path, hits: list[Hit], page: Path, query: str) -> Path:
    """A page of search hits: thumbnail, film, times, names, caption, a link to the shot on the
    film's review page."""
    page, out = Path(page).absolute(), Path(out).absolute()
    with index.errors():
        counts = dict(index.db.execute("SELECT path, frame_count FROM films"))
    thumbs = _thumbnails(hits, counts)
    rows = [{"film": h.film, "start": h.start, "end": h.end, "names": h.names, "caption": h.caption,
             "thumb": thumbs.get((h.film_path, h.thumb_frame)),
             "link": None if h.review is None else f"{_link(h.review, out, page.parent)}#shot-{h.shot}"}
            for h in hits]
    html = _environment().get_template("hits.html.j2").render(hits=rows, query=query,
                                                            overview=_link(OVERVIEW_NAME, out, page.parent),
                                                            data=[h.json() for h in hits])
    try:
        return write_file(page, html.encode("utf-8"))
    except OSError as exc:
        raise MovieIdError(f"cannot write the page ({exc.strerror or exc})", page) from None
