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

import hashlib
import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from collections import deque
from typing import Iterable, Iterator

from ..errors import MovieIdError, printable
from ..files import check_input_file
from ..records import FilmAnnotation
from ..workers import WorkerPool
from ..workers import result as outcome
from .consistency import read_journal, stamp_of
from .people import person_embeddings, recluster
from .store import INDEX_NAME, NAME_SEPARATOR, Index, index_path

log = logging.getLogger(__name__)

PER_WORKER = 16      # sidecars per worker process below which reading them here is quicker than starting one

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


@dataclass(frozen=True)
class Prepared:
    """A sidecar's rows before they have ids (made in worker processes for a large rebuild)."""

    film: tuple                 # path, title, duration, frame_count, shot_count, engine, face_model, created
    shots: list[tuple]          # start, end, thumb_frame, names, caption, description
    persons: dict               # (cluster, name) -> (in_cast, {shot number: confidence}, seconds)


def prepare(doc: dict) -> Prepared:
    film, shots = doc["film"], doc["shots"]
    rows, persons = [], {}
    for n, shot in enumerate(shots):
        start, end = float(shot["start"]), float(shot["end"])
        rows.append((start, end, _thumb_frame(shot), NAME_SEPARATOR.join(shot["names"]), shot["caption"],
                     _first_line_of(shot)))
        for person in shot["people"]:
            in_cast = bool(person.get("in_cast"))
            in_shots, seconds = persons.setdefault((int(person.get("cluster", -1)), str(person["name"])),
                                                   (in_cast, {}, [0.0]))[1:]
            confidence = float(person.get("confidence", 1.0 if in_cast else 0.0))
            if n not in in_shots:
                seconds[0] += max(0.0, end - start)
            in_shots[n] = max(confidence, in_shots.get(n, 0.0))
    return Prepared((str(film["path"]), film.get("title"), float(film["duration"]), int(film.get("frame_count", 0)),
                     len(shots), str(doc.get("engine", {}).get("name", "")),
                     str(doc.get("cast", {}).get("face_model", "")), str(doc.get("created", ""))),
                    rows, {k: (c, sh, sec[0]) for k, (c, sh, sec) in persons.items()})


def insert_film(db: sqlite3.Connection, out: Path, key: str, sidecar: Path | None, rows: Prepared, sha256: str,
                stamp: str | None, embeddings: dict | None = None) -> int:
    """One film's rows (replacing any of the same key): ``embeddings`` maps a film-wide person
    (cluster, name) to (unit vector, faces) for the people not in the cast. A film's shots get
    consecutive ids (``films.first_shot``), so no index on shots.film is needed."""
    delete_film(db, key)
    review = None
    if sidecar is not None and sidecar.with_suffix(".html").is_file():
        review = sidecar.with_suffix(".html").relative_to(out).as_posix()
    first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM shots").fetchone()[0]
    film_id = db.execute(
        "INSERT INTO films (key, sidecar, path, title, duration, frame_count, shot_count, engine, face_model, created,"
        " sha256, stamp, review, first_shot) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (key, None if sidecar is None else sidecar.relative_to(out).as_posix(), *rows.film, sha256, stamp, review,
         first)).lastrowid
    db.executemany('INSERT INTO shots (id, film, start, "end", thumb_frame, names, caption, description)'
                   " VALUES (?,?,?,?,?,?,?,?)", [(first + n, film_id, *r) for n, r in enumerate(rows.shots)])
    db.execute("INSERT INTO shot_text (rowid, caption, description) SELECT id, caption, description FROM shots"
               " WHERE id >= ?", (first,))
    embeddings = embeddings or {}
    for (cluster, name), (in_cast, in_shots, seconds) in rows.persons.items():
        vector, faces = embeddings.get((cluster, name), (None, 0))
        person_id = db.execute(
            "INSERT INTO persons (film, cluster, name, in_cast, shots, seconds, faces, embedding)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (film_id, cluster, name, int(in_cast), len(in_shots), seconds, faces,
             None if vector is None else vector.astype("<f4").tobytes())).lastrowid
        db.executemany("INSERT INTO people (person, shot, confidence) VALUES (?,?,?)",
                       [(person_id, first + n, c) for n, c in in_shots.items()])
    return film_id


def delete_film(db: sqlite3.Connection, key: str) -> None:
    row = db.execute("SELECT id, first_shot, shot_count FROM films WHERE key = ?", (key,)).fetchone()
    if row is None:
        return
    film, first, count = row
    # an external-content FTS table is told what it indexed before the rows go
    db.execute("INSERT INTO shot_text (shot_text, rowid, caption, description)"
               " SELECT 'delete', id, caption, description FROM shots WHERE id BETWEEN ? AND ?",
               (first, first + count - 1))
    db.execute("DELETE FROM people WHERE person IN (SELECT id FROM persons WHERE film = ?)", (film,))
    db.execute("DELETE FROM persons WHERE film = ?", (film,))
    db.execute("DELETE FROM shots WHERE id BETWEEN ? AND ?", (first, first + count - 1))
    db.execute("DELETE FROM films WHERE id = ?", (film,))


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
                insert_film(db, out, entry.key, sidecar, prepare(doc), sha, stamp_of(entry))
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
        insert_film(db, out, job.key, sidecar, prepare(doc), sha, stamp_of(entry),
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


def _no_state() -> None:
    return None


def _read(_state, out: Path, sidecar: Path) -> tuple[str, Prepared, str] | str:
    """(key, rows, SHA-256) of a sidecar, or why it is not indexed (run in a worker process)."""
    try:
        doc, sha = read_sidecar(sidecar)
    except MovieIdError as exc:
        return str(exc)
    return film_key(out, sidecar, doc), prepare(doc), sha


def _read_all(out: Path, sidecars: list[Path]) -> Iterator[tuple[Path, tuple | str]]:
    """Each sidecar read and prepared, in order; by one worker process per core for many files
    (reading JSON is most of an index's time)."""
    processes = min(os.cpu_count() or 1, len(sidecars) // PER_WORKER)
    with WorkerPool(processes, _no_state) as pool:
        pending: deque = deque()
        for sidecar in [*sidecars, None]:
            if sidecar is not None:
                pending.append((sidecar, pool.submit(_read, out, sidecar)))
            while pending and (sidecar is None or len(pending) > 2 * max(1, processes)):
                path, future = pending.popleft()
                yield path, outcome(future)


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
                for number, (sidecar, read) in enumerate(_read_all(out, sidecars), 1):
                    report(progress, "sidecars", number, len(sidecars))
                    if isinstance(read, str):
                        result.problems.append(read)
                        continue
                    key, rows, sha = read
                    stamp = None if journal is None else journal.done.get(key)
                    if journal is not None and stamp is None:
                        log.info("%s: not a film the batch journal records done; left out", printable(sidecar))
                        continue
                    insert_film(db, out, key, sidecar, rows, sha, stamp, kept.get((key, sha)))
                    result.films += 1
                    result.shots += len(rows.shots)
                recluster(db)
            with index.errors():
                index.db.execute("PRAGMA optimize")
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    write_overview(out)
    return result
