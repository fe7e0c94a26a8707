"""The base of every "bad input" error the models and the app raise.

A problem a user can fix (a missing file, a checkpoint that does not fit, an unreadable image)
is described in one line that names the file; the command line prints it as it is and exits 1.
Anything else escaping is a bug and keeps its traceback.
"""
from __future__ import annotations

from pathlib import Path


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none), for a one-line report."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def install_hint(extra: str | None = None) -> str:
    """The command that installs movieid with ``extra`` (setup.py's extras_require) from its
    checkout, as the README's quick start does: movieid is not on the package index."""
    target = "." if extra is None else f"'.[{extra}]'"
    return f"pip install -c constraints.txt -e {target} (in the movieid checkout)"


class InputError(ValueError):
    """A bad input or environment problem, described in one line that names the file."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
