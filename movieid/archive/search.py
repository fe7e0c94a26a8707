"""Searching the archive index: shots by the people on screen together, by the words of their
captions and audio-description lines, by film."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import MovieIdError
from .consistency import visible_films
from .people import archive_label, parse_archive_label
from .store import NAME_SEPARATOR, Index


@dataclass(frozen=True)
class Query:
    persons: tuple[str, ...] = ()      # all of them on screen in the shot
    text: str | None = None            # words, all of them in the caption or the AD line
    film: str | None = None            # a glob over the films' keys (their paths below the archive)
    min_confidence: float = 0.0        # a cast member counts where the film named them this surely


@dataclass(frozen=True)
class Hit:
    film: str                          # the film's key
    start: float                       # seconds, the film's presentation time
    end: float
    names: list[str]                   # on screen, left to right; unknowns by their archive label
    caption: str
    shot: int                          # the shot's index in the film
    thumb_frame: int                   # a keyframe's frame
    film_path: str                     # as the sidecar records it
    review: str | None                 # the film's review page, relative to the index's folder

    def json(self) -> dict:
        return {"film": self.film, "start": self.start, "end": self.end, "names": self.names,
                "caption": self.caption}


def fts_query(words: str) -> str:
    """Every word of ``words`` as a quoted FTS5 term (all must occur): the user's text is
    never read as FTS5 syntax. Words are split where the index's tokenizer splits them (it
    keeps no positions, so a term must be one token)."""
    terms = re.findall(r"\w+", words)
    if not terms:
        raise MovieIdError("--text needs at least one word")
    return " ".join(f'"{t}"' for t in terms)


def _person_shots(name: str, min_confidence: float) -> tuple[str, list]:
    """SQL selecting the shots where ``name`` is on screen (a cast name, an archive label or a
    film's own Unknown label)."""
    number = parse_archive_label(name)
    if number is not None:
        return "SELECT pe.shot FROM people pe JOIN persons p ON p.id = pe.person WHERE p.archive = ?", [number]
    return ("SELECT pe.shot FROM persons p JOIN people pe ON pe.person = p.id WHERE p.name = ?"
            " AND (p.in_cast = 0 OR pe.confidence >= ?)", [name.strip(), min_confidence])


def search(index: Index, out: Path, query: Query, limit: int | None = None) -> tuple[list[Hit], int]:
    """The shots matching ``query``, by film and time; and how many films the batch journal
    records done that the index lacks (0 outside a batch)."""
    where, args = [], []
    if query.text is not None:
        where.append("s.id IN (SELECT rowid FROM shot_text WHERE shot_text MATCH ?)")
        args.append(fts_query(query.text))
    if query.persons:
        parts = [_person_shots(n, query.min_confidence) for n in query.persons]
        where.append("s.id IN (" + " INTERSECT ".join(sql for sql, _ in parts) + ")")
        args += [a for _, part in parts for a in part]
    if query.film is not None:
        where.append("f.key GLOB ?")
        args.append(query.film)
    shown, lacking = visible_films(index, out)
    if shown is not None:
        where.append(f"f.id IN ({','.join(str(int(i)) for i in shown) or 'NULL'})")
    sql = ('SELECT s.id, f.id, f.key, s.start, s."end", s.names, s.caption, s.id - f.first_shot,'
           " s.thumb_frame, f.path, f.review"
           # either side may lead: films by key (a glob), or shots by id (people, words)
           " FROM shots s JOIN films f ON f.id = s.film AND s.id BETWEEN f.first_shot AND f.first_shot + f.shot_count - 1" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY f.key, s.start" + (f" LIMIT {int(limit)}" if limit else ""))
    with index.errors():
        rows = index.db.execute(sql, args).fetchall()
        labels: dict[int, dict[str, str]] = {}
        for film in {r[1] for r in rows}:
            labels[film] = {name: archive_label(number) for name, number in index.db.execute(
                "SELECT name, archive FROM persons WHERE film = ? AND archive IS NOT NULL", (film,))}
    hits = [Hit(film=key, start=start, end=end, names=[labels[fid].get(n, n) for n in names.split(NAME_SEPARATOR) if n],
                caption=caption, shot=idx, thumb_frame=thumb, film_path=path, review=review)
            for _, fid, key, start, end, names, caption, idx, thumb, path, review in rows]
    return hits, lacking
