"""The batch journal: one SQLite file in the output folder, the single source of truth on
what each film's state is (pending, running, done, failed), with its input fingerprint and
the settings it was (or is being) made with.

Every change is one transaction in WAL mode with full sync, so killing the process at any
moment (SIGKILL included) leaves the journal consistent: at worst films marked ``running``,
which the next run redoes.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import MovieIdError
from .jobs import Job

JOURNAL_NAME = ".movieid-batch.sqlite"
SCHEMA_VERSION = 1
STATES = ("pending", "running", "done", "failed", "gone")   # gone: no longer in the source


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


class Journal:
    def __init__(self, out: Path):
        self.path = Path(out) / JOURNAL_NAME
        try:
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
        except sqlite3.DatabaseError as exc:
            raise MovieIdError(f"batch journal is unreadable ({exc})", self.path) from None
        if int(version) != SCHEMA_VERSION:
            raise MovieIdError(f"batch journal has schema {version}, this movieid writes {SCHEMA_VERSION}",
                               self.path)

    def close(self) -> None:
        self.db.close()

    def get(self, key: str) -> Entry | None:
        row = self.db.execute("SELECT key, film, state, reason, fingerprint, settings, attempts, seconds, "
                              "finished, outputs FROM films WHERE key = ?", (key,)).fetchone()
        return None if row is None else Entry(*row[:-1], json.loads(row[-1]))

    def entries(self) -> list[Entry]:
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
        return "run"   # pending, running (a run that was killed), or failed and retried

    def mark_gone(self, present: set[str]) -> int:
        """Films the journal knows that the source no longer has (kept, as history)."""
        gone = [e.key for e in self.entries() if e.key not in present and e.state != "gone"]
        with self.db:
            self.db.executemany("UPDATE films SET state='gone', reason='no longer in the source' WHERE key=?",
                                [(k,) for k in gone])
        return len(gone)

    def start(self, job: Job, fingerprint: str, settings: str) -> None:
        with self.db:
            self.db.execute(
                """INSERT INTO films (key, film, state, fingerprint, settings, attempts, started)
                   VALUES (?, ?, 'running', ?, ?, 1, ?)
                   ON CONFLICT(key) DO UPDATE SET film=excluded.film, state='running', reason=NULL,
                   fingerprint=excluded.fingerprint, settings=excluded.settings, attempts=attempts + 1,
                   started=excluded.started, finished=NULL, seconds=NULL""",
                (job.key, str(job.film), fingerprint, settings, time.time()))

    def finish(self, job: Job, seconds: float, outputs: list[Path] | None = None, reason: str | None = None) -> None:
        state = "failed" if reason is not None else "done"
        with self.db:
            self.db.execute("UPDATE films SET state=?, reason=?, finished=?, seconds=?, outputs=? WHERE key=?",
                            (state, reason, time.time(), seconds, json.dumps([str(p) for p in outputs or []]),
                             job.key))
