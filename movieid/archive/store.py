"""The archive index: one SQLite file (``OUT/index.sqlite``) holding every film's shots, the
people in each shot and the caption text (FTS5), built from the JSON sidecars.

Tables (``films``, ``shots``, ``people``, ``persons``) are the ones ``--parquet`` writes:
* ``films``: one row per film (``key``: its path below the archive, as the batch journal
  keys it; ``sidecar``: the JSON, relative to the index's folder), with ``stamp``, the journal
  attempt it came from (NULL outside a batch);
* ``shots``: times in seconds on the film's timeline (presentation times), caption and
  audio-description line;
* ``persons``: one row per film-wide person (a cast member or a film's ``Unknown n``), with
  the archive person (``archive``) an unknown belongs to across films and its embedding;
* ``people``: who is in each shot (``person``: a row of ``persons``), with confidence.

Every change is one transaction (a killed writer leaves the index as it was before it);
``movieid index`` builds a new file beside the old one and renames it into place.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Iterator

from .. import __version__
from ..errors import MovieIdError
from ..files import check_input_file

INDEX_NAME = "index.sqlite"
SCHEMA_VERSION = 1
ARCHIVE_PREFIX = "Archive unknown"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE films (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, sidecar TEXT, path TEXT NOT NULL, title TEXT,
    duration REAL NOT NULL, frame_count INTEGER NOT NULL, shot_count INTEGER NOT NULL, engine TEXT NOT NULL,
    face_model TEXT NOT NULL, created TEXT NOT NULL, sha256 TEXT NOT NULL, stamp TEXT, review TEXT,
    first_shot INTEGER NOT NULL);
CREATE TABLE shots (
    id INTEGER PRIMARY KEY, film INTEGER NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
    thumb_frame INTEGER NOT NULL, names TEXT NOT NULL, caption TEXT NOT NULL, description TEXT);
CREATE TABLE persons (
    id INTEGER PRIMARY KEY, film INTEGER NOT NULL, cluster INTEGER NOT NULL, name TEXT NOT NULL COLLATE NOCASE,
    in_cast INTEGER NOT NULL, shots INTEGER NOT NULL, seconds REAL NOT NULL, archive INTEGER,
    faces INTEGER NOT NULL DEFAULT 0, embedding BLOB, UNIQUE (film, cluster, name));
CREATE INDEX persons_name ON persons(name);
CREATE TABLE people (
    person INTEGER NOT NULL, shot INTEGER NOT NULL, confidence REAL NOT NULL,
    PRIMARY KEY (person, shot)) WITHOUT ROWID;
CREATE VIRTUAL TABLE shot_text USING fts5(caption, description, content='shots', content_rowid='id',
                                          columnsize=0, detail=column,
                                          tokenize='porter unicode61 remove_diacritics 2');
"""
NAME_SEPARATOR = "\x1f"     # shots.names: the names left to right, joined by the unit separator


def index_problem(exc: sqlite3.Error) -> str:
    """SQLite's failure as what a user can do about it."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name == "SQLITE_FULL":
        return "cannot write the archive index: the disk is full"
    if name.startswith("SQLITE_READONLY") or name.startswith("SQLITE_CANTOPEN"):
        return "cannot write the archive index (read-only file or folder)"
    if name == "SQLITE_NOTADB" or name.startswith("SQLITE_CORRUPT"):
        return "is not a movieid archive index: not an SQLite database, or damaged (rebuild it: movieid index)"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "the archive index is locked by another process"
    return f"archive index error ({exc})"


class Index:
    """An open archive index; ``create`` makes a new one, otherwise it must exist."""

    def __init__(self, path: Path, create: bool = False, readonly: bool = False):
        self.path = Path(path)
        self.db: sqlite3.Connection | None = None
        if not create or self.path.exists() or self.path.is_symlink():
            check_input_file(self.path, "archive index")   # a pipe or a folder: refused, never opened
        with self.errors():
            # a URI, so that read-only is asked for; '?' and '#' in a folder's name are quoted
            uri = "file:" + urllib.parse.quote(str(self.path.absolute())) + ("?mode=ro" if readonly else "")
            self.db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
            if not readonly:
                self.db.execute("PRAGMA synchronous=FULL")
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables and create and not readonly:
                with self.transaction():
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.executemany("INSERT INTO meta VALUES (?, ?)",
                                        [("schema_version", str(SCHEMA_VERSION)), ("tool_version", __version__)])
                tables = {"meta"}
            if "meta" not in tables:
                self.close()
                raise MovieIdError("is not a movieid archive index (no meta table)", self.path)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else None
        if version != SCHEMA_VERSION:
            self.close()
            if version is not None and version > SCHEMA_VERSION:
                raise MovieIdError(f"archive index has schema {version}, newer than this movieid's "
                                   f"{SCHEMA_VERSION}: use the newer movieid (nothing was changed)", self.path)
            raise MovieIdError(f"archive index has schema {row[0] if row else 'none'}, this movieid reads "
                               f"{SCHEMA_VERSION}: rebuild it with movieid index", self.path)

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise MovieIdError(index_problem(exc), self.path) from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction: all of it is written, or none (also when the process is killed)."""
        with self.errors():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close(self) -> None:
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            self.db = None

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def index_path(out: str | Path) -> Path:
    return Path(out) / INDEX_NAME


def open_index(out: str | Path) -> Index:
    """The index of an output folder, for reading (one line if there is none)."""
    path = index_path(out)
    if not (path.exists() or path.is_symlink()):
        if not Path(out).is_dir():
            raise MovieIdError("no such folder", out)
        raise MovieIdError("has no archive index (build it with: movieid index FOLDER)", out)
    return Index(path, readonly=not os.access(path, os.W_OK))
