"""The exception the pipeline raises for problems a user can fix.

It shares its base (``movieid.models.errors.InputError``) with the model packages' own errors,
so the command line prints any of them as one line (``movieid: error: <path>: <problem>``) and
exits 1; anything else escaping the pipeline is a bug and keeps its traceback under ``-v``.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from .models.errors import InputError, first_line, install_hint

__all__ = ["InputError", "MovieIdError", "first_line", "install_hint", "internal_error", "has_control_characters", "missing_dependency",
           "printable", "shell_command"]

# C0 and C1 controls (newline, tab, ESC, ...) and Unicode's line and paragraph separators: every
# character after which ``str.splitlines`` breaks a line, or that a terminal acts on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str | Path) -> str:
    """``text`` with its control characters as Python writes them escaped (``a\\nb.mp4``): a file
    name holding a newline or an escape sequence must not split a one-line message or drive the
    terminal. Backslashes stay as they are, so escaping twice changes nothing."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


class MovieIdError(InputError):
    """A bad input or environment problem of the pipeline, in one line that names the file
    (control characters in the path, or in a name the problem quotes, escaped)."""

    def __init__(self, problem: str, path: str | Path | None = None):
        super().__init__(printable(problem), None if path is None else printable(path))


def shell_command(*words: str | Path) -> str:
    """A command line to show a user for pasting into a POSIX shell: every word quoted as needed
    (a film named ``My Film.mp4`` or ``$(rm -rf ~).mp4`` stays one harmless argument)."""
    return shlex.join(str(w) for w in words)


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def internal_error(exc: BaseException) -> str:
    """A bug in one line: its type and the first line of its message."""
    text = first_line(exc)
    return f"internal error: {type(exc).__name__}" + ("" if text == type(exc).__name__ else f": {text}")


def missing_dependency(exc: ImportError, what: str, extra: str) -> MovieIdError:
    """The one-line error for an optional dependency that is not installed."""
    return MovieIdError(f"{what} needs {exc.name or 'a package'}, which is not installed: {install_hint(extra)}")
