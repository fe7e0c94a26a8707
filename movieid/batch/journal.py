"""The batch journal: one SQLite file in the output folder, the single source of truth on
what each film's state is, with its input fingerprint and the settings it was (or is being)
made with. States:

    pending      found at the start of a run, not started yet
    running      being analysed or captioned by the batch that holds the folder's lock
    interrupted  was running when its batch stopped (Ctrl-C, SIGTERM, a kill, a crash)
    done, failed finished (failed with a one-line reason)
    gone         no longer in the source (kept, as history)

Every change is one transaction in WAL mode with full sync, so killing the process at any
moment (SIGKILL included) leaves the journal consistent: at worst films marked ``running``
with no batch behind them, which the next look (a run or ``batch-status``) marks
``interrupted`` and the next run redoes. SQLite's failures (a full disk, a read-only file
system) come back as one line each.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import MovieIdError
from ..files import check_input_file
from .jobs import Job

JOURNAL_NAME = ".movieid-batch.sqlite"
SCHEMA_VERSION = 1      # "interrupted" is a new value of the same column: version 1 readers redo such films
STATES = ("pending", "running", "interrupted", "done", "failed", "gone")


@dataclass(frozen=True)
class Entry:
    key: str
    film: str
    state: str
    reason: str | None
    fingerprint: str
    settings: str
    attempts: int
    seconds: float | None
    finished: float | None
    outputs: list[str]


def journal_problem(exc: sqlite3.Error, path: Path) -> str:
    """SQLite's failure as what a user can do about it."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name == "SQLITE_FULL":
        return "cannot write the batch journal: the disk is full"
    writable = os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
    if name.startswith("SQLITE_READONLY") or (name.startswith("SQLITE_CANTOPEN") and not writable):
        return "batch journal is not writable (read-only file or file system)"
    if name.startswith("SQLITE_CANTOPEN"):
        return "cannot open the batch journal (is the output folder writable?)"
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or name.startswith("SQLITE_CORRUPT"):
        return f"batch journal is unreadable: not an SQLite database, or damaged ({exc})"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "batch journal is locked by another process"
    if name.startswith("SQLITE_IOERR"):
        return f"cannot read or write the batch journal (disk I/O error: {exc})"
    return f"batch journal error ({exc})"


class Journal:
    def __init__(self, out: Path):
        self.path = Path(out) / JOURNAL_NAME
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.stat(self.path).st_mode):
                check_input_file(self.path, "batch journal")    # a pipe or folder: refused, never opened
        self.db = None
        try:
            with self._errors():
                self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                with self.db:
                    self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
                    self.db.execute("""CREATE TABLE IF NOT EXISTS films (
                        key TEXT PRIMARY KEY, film TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
                        fingerprint TEXT NOT NULL, settings TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                        started REAL, finished REAL, seconds REAL, outputs TEXT NOT NULL DEFAULT '[]')""")
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                version = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        except MovieIdError:
            self.close()
            raise
        if int(version) != SCHEMA_VERSION:
            self.close()
            raise MovieIdError(f"batch journal has schema {version}, this movieid writes {SCHEMA_VERSION}",
                               self.path)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise MovieIdError(journal_problem(exc, self.path), self.path) from None

    def close(self) -> None:
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            self.db = None

    def get(self, key: str) -> Entry | None:
        with self._errors():
            row = self.db.execute("SELECT key, film, state, reason, fingerprint, settings, attempts, seconds, "
                                  "finished, outputs FROM films WHERE key = ?", (key,)).fetchone()
        return None if row is None else Entry(*row[:-1], json.loads(row[-1]))

    def entries(self) -> list[Entry]:
        with self._errors():
            keys = [r[0] for r in self.db.execute("SELECT key FROM films ORDER BY key")]
        return [self.get(k) for k in keys]

    def decide(self, job: Job, fingerprint: str, settings: str, retry_failed: bool) -> str:
        """``run``, ``skip`` (done with the same input and settings) or ``failed`` (failed
        before with the same input and settings, and not retried)."""
        entry = self.get(job.key)
        if entry is None or entry.fingerprint != fingerprint or entry.settings != settings:
            return "run"
        if entry.state == "done":
            return "skip"
        if entry.state == "failed" and not retry_failed:
            return "failed"
        return "run"   # pending, interrupted, running (a killed run), or failed and retried

    def mark_gone(self, present: set[str]) -> int:
        """Films the journal knows that the source no longer has (kept, as history)."""
        gone = [e.key for e in self.entries() if e.key not in present and e.state != "gone"]
        with self._errors(), self.db:
            self.db.executemany("UPDATE films SET state='gone', reason='no longer in the source' WHERE key=?",
                                [(k,) for k in gone])
        return len(gone)

    def pending(self, planned: Iterable[tuple[Job, str, str]]) -> None:
        """Record the films a run is about to do, before it starts any (``batch-status`` then
        shows the whole plan)."""
        with self._errors(), self.db:
            self.db.executemany(
                """INSERT INTO films (key, film, state, fingerprint, settings) VALUES (?, ?, 'pending', ?, ?)
                   ON CONFLICT(key) DO UPDATE SET film=excluded.film, state='pending', reason=NULL,
                   fingerprint=excluded.fingerprint, settings=excluded.settings""",
                [(job.key, str(job.film), fp, settings) for job, fp, settings in planned])

    def interrupt_running(self, reason: str = "the batch stopped before this film was finished") -> int:
        """Films marked ``running`` become ``interrupted``: call it only while holding the
        output folder's lock (no batch is running them then, apart from the caller)."""
        with self._errors(), self.db:
            return self.db.execute("UPDATE films SET state='interrupted', reason=? WHERE state='running'",
                                   (reason,)).rowcount

    def start(self, job: Job, fingerprint: str, settings: str) -> None:
        with self._errors(), self.db:
            self.db.execute(
                """INSERT INTO films (key, film, state, fingerprint, settings, attempts, started)
                   VALUES (?, ?, 'running', ?, ?, 1, ?)
                   ON CONFLICT(key) DO UPDATE SET film=excluded.film, state='running', reason=NULL,
                   fingerprint=excluded.fingerprint, settings=excluded.settings, attempts=attempts + 1,
                   started=excluded.started, finished=NULL, seconds=NULL""",
                (job.key, str(job.film), fingerprint, settings, time.time()))

    def finish(self, job: Job, seconds: float, outputs: list[Path] | None = None, reason: str | None = None) -> None:
        state = "failed" if reason is not None else "done"
        with self._errors(), self.db:
            self.db.execute("UPDATE films SET state=?, reason=?, finished=?, seconds=?, outputs=? WHERE key=?",
                            (state, reason, time.time(), seconds, json.dumps([str(p) for p in outputs or []]),
                             job.key))
