"""Keeping the archive index: a film added as a batch finishes it, the index brought in line
with the batch journal when a batch starts, and ``movieid index`` rebuilding it from the
sidecars of a folder (a batch's output, or ``annotate`` outputs gathered in one place).

Consistency with the journal: each film's row carries the journal attempt it came from
(``stamp``). The batch adds a film in one transaction before the journal records it done; a
reader shows only films the journal records done with the same attempt (``visible_films``),
and the next batch drops or adds rows until the index holds exactly those films. So a batch
killed at any moment leaves an index that, as read, matches the films recorded done.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import MovieIdError, printable
from ..files import check_input_file
from ..records import FilmAnnotation
from .consistency import read_journal, stamp_of
from .people import person_embeddings, recluster
from .store import INDEX_NAME, Index, index_path

log = logging.getLogger(__name__)

READS_MAJOR = "1"                         # annotation schema versions this index reads: 1.x


# ----------------------------------------------------------------------------- sidecars

def read_sidecar(path: Path) -> tuple[dict, str]:
    """A movieid annotation JSON and the SHA-256 of its bytes, or one line saying why not.
    The check is of what the index reads (the full schema check is ``movieid report``'s: it
    would cost more than the indexing of a large archive)."""
    check_input_file(path, "annotation file")   # a named pipe is refused, never opened
    try:
        data = path.read_bytes()
        doc = json.loads(data)
    except OSError as exc:
        raise MovieIdError(f"cannot read annotation ({exc.strerror or exc})", path) from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise MovieIdError("is not a movieid annotation (not JSON)", path) from None
    check_annotation(doc, path)
    return doc, hashlib.sha256(data).hexdigest()


def check_annotation(doc, path: Path) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("tool"), dict) or doc["tool"].get("name") != "movieid":
        raise MovieIdError("is not a movieid annotation (no \"tool\": {\"name\": \"movieid\"})", path)
    version = str(doc.get("schema_version", ""))
    if version.split(".")[0] != READS_MAJOR:
        raise MovieIdError(f"annotation has schema {version or 'none'}; this movieid reads {READS_MAJOR}.x", path)
    try:
        film, shots = doc["film"], doc["shots"]
        float(film["duration"]), str(film["path"])
        for number, shot in enumerate(shots):
            where = f"shots[{number}]"
            if not (isinstance(shot["caption"], str) and isinstance(shot["names"], list)
                    and isinstance(shot["people"], list)):
                raise TypeError(where)
            float(shot["start"]), float(shot["end"])
            for person in shot["people"]:
                str(person["name"]), int(person.get("cluster", -1))
    except (KeyError, TypeError, ValueError) as exc:
        raise MovieIdError(f"is not a movieid annotation (missing or malformed: {exc})", path) from None


def film_key(out: Path, sidecar: Path, doc: dict) -> str:
    """The film's path below the archive as the batch journal keys it: the sidecar's place
    below ``out`` with the film's extension (``s1/ep1.json`` of ``ep1.mp4``: ``s1/ep1.mp4``;
    a batch names ``a.mp4.json`` where two films share a stem)."""
    relative = sidecar.relative_to(out).with_suffix("")
    suffix = Path(doc["film"]["path"]).suffix
    return relative.as_posix() if relative.name.endswith(suffix) else relative.as_posix() + suffix


# ----------------------------------------------------------------------------- rows

def _first_line_of(shot: dict) -> str | None:
    description = shot.get("description")
    return description.get("text") if isinstance(description, dict) else None


def _thumb_frame(shot: dict) -> int:
    """The shot's middle keyframe (its first frame where none is listed)."""
    keyframes = shot.get("keyframes") or []
    if keyframes:
        return int(keyframes[len(keyframes) // 2]["frame"])
    return int(shot.get("start_frame", 0))


def insert_film(db: sqlite3.Connection, out: Path, key: str, sidecar: Path | None, doc: dict, sha256: str,
                stamp: str | None, embeddings: dict | None = None) -> int:
    """One film's rows (replacing any of the same key): ``embeddings`` maps a film-wide person
    (cluster, name) to (unit vector, faces) for the people not in the cast."""
    delete_film(db, key)
    review = None
    if sidecar is not None and sidecar.with_suffix(".html").is_file():
        review = sidecar.with_suffix(".html").relative_to(out).as_posix()
    film = doc["film"]
    cur = db.execute(
        "INSERT INTO films (key, sidecar, path, title, duration, frame_count, shot_count, engine, face_model, created,"
        " sha256, stamp, review) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (key, None if sidecar is None else sidecar.relative_to(out).as_posix(), str(film["path"]),
         film.get("title"), float(film["duration"]), int(film.get("frame_count", 0)), len(doc["shots"]), str(doc.get("engine", {}).get("name", "")),
         str(doc.get("cast", {}).get("face_model", "")), str(doc.get("created", "")), sha256, stamp, review))
    film_id = cur.lastrowid
    shots = doc["shots"]
    first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM shots").fetchone()[0]
    db.executemany(
        'INSERT INTO shots (id, film, idx, start, "end", thumb_frame, names, caption, description)'
        " VALUES (?,?,?,?,?,?,?,?,?)",
        [(first + n, film_id, int(s.get("index", n)), float(s["start"]), float(s["end"]), _thumb_frame(s),
          json.dumps(s["names"], ensure_ascii=False), s["caption"], _first_line_of(s)) for n, s in enumerate(shots)])
    db.execute("INSERT INTO shot_text (rowid, caption, description) SELECT id, caption, description FROM shots"
               " WHERE film = ?", (film_id,))
    # film-wide people: one row each, with the shots they are in and their screen time
    persons: dict[tuple[int, str], dict] = {}
    for n, shot in enumerate(shots):
        seconds = max(0.0, float(shot["end"]) - float(shot["start"]))
        for person in shot["people"]:
            name = str(person["name"])
            entry = persons.setdefault((int(person.get("cluster", -1)), name),
                                       {"in_cast": bool(person.get("in_cast")), "shots": {}})
            confidence = float(person.get("confidence", 1.0 if person.get("in_cast") else 0.0))
            if n not in entry["shots"]:
                entry["shots"][n] = [confidence, seconds]
            else:
                entry["shots"][n][0] = max(entry["shots"][n][0], confidence)
    embeddings = embeddings or {}
    for (cluster, name), entry in persons.items():
        vector, faces = embeddings.get((cluster, name), (None, 0))
        person_id = db.execute(
            "INSERT INTO persons (film, cluster, name, in_cast, shots, seconds, faces, embedding)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (film_id, cluster, name, int(entry["in_cast"]), len(entry["shots"]),
             sum(s for _, s in entry["shots"].values()), faces,
             None if vector is None else vector.astype("<f4").tobytes())).lastrowid
        db.executemany("INSERT OR REPLACE INTO people (shot, person, confidence) VALUES (?,?,?)",
                       [(first + n, person_id, c) for n, (c, _) in entry["shots"].items()])
    return film_id


def delete_film(db: sqlite3.Connection, key: str) -> None:
    row = db.execute("SELECT id FROM films WHERE key = ?", (key,)).fetchone()
    if row is None:
        return
    # an external-content FTS table is told what it indexed before the rows go
    db.execute("INSERT INTO shot_text (shot_text, rowid, caption, description)"
               " SELECT 'delete', id, caption, description FROM shots WHERE film = ?", (row[0],))
    db.execute("DELETE FROM films WHERE id = ?", (row[0],))


# ----------------------------------------------------------------------------- the batch's hooks

def _entry_sidecar(out: Path, entry) -> Path | None:
    """The JSON a done film's attempt wrote: where the journal says, or at its place below
    ``out`` (the folder may have been moved since)."""
    recorded = next((Path(o) for o in entry.outputs if o.endswith(".json")), None)
    if recorded is None:
        return None
    key = Path(entry.key)
    for candidate in (recorded, out / key.with_suffix(".json"), out / f"{entry.key}.json"):
        if candidate.is_file():
            return candidate
    return recorded


def sync_with_journal(journal) -> None:
    """At a batch's start (the folder's lock held): the index holds exactly the films the
    journal records done, each from its done attempt; films it lacks come from their sidecars."""
    out = journal.path.parent
    entries = journal.entries()
    done = {e.key: e for e in entries if e.state == "done"}
    with Index(index_path(out), create=True) as index:
        with index.errors():
            held = dict(index.db.execute("SELECT key, stamp FROM films").fetchall())
        stale = [k for k, stamp in held.items() if k not in done or stamp != stamp_of(done[k])]
        missing = [e for k, e in done.items() if k not in held or k in stale]
        if not stale and not missing:
            return
        with index.transaction() as db:
            for key in stale:
                delete_film(db, key)
            for entry in missing:
                sidecar = _entry_sidecar(out, entry)
                if sidecar is None:
                    continue
                try:
                    doc, sha = read_sidecar(sidecar)
                except MovieIdError as exc:
                    log.warning("%s (not in the archive index)", exc)
                    continue
                insert_film(db, out, entry.key, sidecar, doc, sha, stamp_of(entry))
            recluster(db)
    write_overview(out)


def index_film(journal, job, doc: dict, annotation: FilmAnnotation | None, written: Iterable[Path]) -> None:
    """A batch's film, added as soon as its outputs are written (before the journal records it
    done: see the module's docstring)."""
    out = journal.path.parent
    entry = journal.get(job.key)
    sidecar = next((Path(p) for p in written if Path(p).suffix == ".json"), None)
    sha = hashlib.sha256(sidecar.read_bytes()).hexdigest() if sidecar is not None else ""
    with Index(index_path(out), create=True) as index, index.transaction() as db:
        insert_film(db, out, job.key, sidecar, doc, sha, stamp_of(entry),
                    person_embeddings(annotation) if annotation is not None else None)
        recluster(db)
    write_overview(out, finishing=job.key)


def write_overview(out: Path, finishing: str | None = None) -> None:
    from .pages import write_overview as write

    write(out, finishing)


# ----------------------------------------------------------------------------- movieid index

@dataclass
class Rebuilt:
    films: int = 0
    shots: int = 0
    problems: list[str] = field(default_factory=list)


def _sidecars(out: Path) -> list[Path]:
    """Every ``*.json`` below ``out`` (hidden files and folders left out), sorted."""
    found = []
    for folder, dirs, files in os.walk(out):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in sorted(files) if f.endswith(".json") and not f.startswith(".")]
    return found


def _kept_embeddings(path: Path) -> dict[tuple[str, str], dict]:
    """The embeddings an existing index holds, by film key and sidecar hash (they are not in the
    sidecars: a batch stores them from the analysis)."""
    if not path.is_file():
        return {}
    try:
        with Index(path, readonly=True) as old, old.errors():
            rows = old.db.execute("SELECT f.key, f.sha256, p.cluster, p.name, p.embedding, p.faces FROM persons p"
                                  " JOIN films f ON f.id = p.film WHERE p.embedding IS NOT NULL").fetchall()
    except MovieIdError as exc:
        if "newer than" in str(exc):
            raise
        log.warning("%s: its face embeddings are not kept", exc)
        return {}
    import numpy as np

    kept: dict[tuple[str, str], dict] = {}
    for key, sha, cluster, name, blob, faces in rows:
        kept.setdefault((key, sha), {})[(cluster, name)] = (np.frombuffer(blob, "<f4"), faces)
    return kept


def rebuild(out: Path, progress=None) -> Rebuilt:
    """A new index of every annotation JSON below ``out``, written beside the old one and
    renamed into place. In a batch's folder only the films the journal records done are
    indexed (with their attempt); a file that is not a movieid annotation is one problem line
    and the rest is indexed. Face embeddings of an unchanged sidecar are kept from the old index."""
    from ..progress import report

    out = Path(out)
    if not out.is_dir():
        raise MovieIdError("no such folder" if not out.exists() else "is not a folder", out)
    final = index_path(out)
    kept = _kept_embeddings(final)
    journal = read_journal(out)
    result = Rebuilt()
    temp = out / f".{INDEX_NAME}.{os.getpid()}.tmp"
    temp.unlink(missing_ok=True)
    try:
        with Index(temp, create=True) as index:
            sidecars = _sidecars(out)
            with index.transaction() as db:
                for number, sidecar in enumerate(sidecars, 1):
                    report(progress, "sidecars", number, len(sidecars))
                    try:
                        doc, sha = read_sidecar(sidecar)
                    except MovieIdError as exc:
                        result.problems.append(str(exc))
                        continue
                    key = film_key(out, sidecar, doc)
                    stamp = None if journal is None else journal.done.get(key)
                    if journal is not None and stamp is None:
                        log.info("%s: not a film the batch journal records done; left out", printable(sidecar))
                        continue
                    insert_film(db, out, key, sidecar, doc, sha, stamp, kept.get((key, sha)))
                    result.films += 1
                    result.shots += len(doc["shots"])
                recluster(db)
            with index.errors():
                index.db.execute("PRAGMA optimize")
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    write_overview(out)
    return result
