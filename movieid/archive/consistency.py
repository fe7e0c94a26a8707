"""What a reader of the archive index may show: the films the batch journal records done, each
from the attempt the index holds (see ``build``'s docstring).

The journal is read here directly, read-only (its ``films`` table: ``movieid.batch.journal``),
so that reading an index never writes to a batch's folder and the archive does not import the
batch package (whose runner keeps the index)."""
from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MovieIdError
from .store import Index

JOURNAL_NAME = ".movieid-batch.sqlite"     # movieid.batch.journal.JOURNAL_NAME


def stamp_of(entry) -> str:
    """Which journal attempt of a film (a ``batch.journal.Entry``) a row comes from."""
    return stamp(entry.attempts, entry.fingerprint, entry.settings)


def stamp(attempts: int, fingerprint: str, settings: str) -> str:
    return f"{attempts}:{fingerprint[:16]}:{settings[:16]}"


@dataclass
class JournalView:
    """The journal's films as a reader of the index needs them (None: no journal here)."""

    done: dict[str, str] = field(default_factory=dict)      # key -> stamp of its done attempt
    known: set[str] = field(default_factory=set)


def read_journal(out: Path) -> JournalView | None:
    path = Path(out) / JOURNAL_NAME
    if not path.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            rows = db.execute("SELECT key, state, attempts, fingerprint, settings FROM films").fetchall()
    except sqlite3.Error as exc:
        raise MovieIdError(f"cannot read the batch journal ({exc})", path) from None
    view = JournalView()
    for key, state, attempts, fingerprint, settings in rows:
        view.known.add(key)
        if state == "done":
            view.done[key] = stamp(attempts, fingerprint, settings)
    return view


def visible_films(index: Index, out: Path, finishing: str | None = None) -> tuple[set[int] | None, int]:
    """The films a reader may show: those the journal records done with the attempt the index
    holds (None: all of them), and how many done films the index lacks. ``finishing``: the
    film a batch has just indexed, shown as the journal records it done next."""
    view = read_journal(out)
    if view is None:
        return None, 0
    with index.errors():
        rows = index.db.execute("SELECT id, key, stamp FROM films").fetchall()
    shown = {fid for fid, key, stamp in rows if key == finishing
             or (key in view.done and stamp == view.done[key]) or (stamp is None and key not in view.known)}
    lacking = len(set(view.done) - {key for fid, key, _ in rows if fid in shown})
    return (None if len(shown) == len(rows) else shown), lacking
