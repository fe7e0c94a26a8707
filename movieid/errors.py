"""The exception the pipeline raises for problems a user can fix.

It shares its base (``movieid.models.errors.InputError``) with the model packages' own errors,
so the command line prints any of them as one line (``movieid: error: <path>: <problem>``) and
exits 1; anything else escaping the pipeline is a bug and keeps its traceback under ``-v``.
"""
from __future__ import annotations

from .models.errors import InputError, first_line

__all__ = ["InputError", "MovieIdError", "first_line", "internal_error", "missing_dependency"]


class MovieIdError(InputError):
    """A bad input or environment problem of the pipeline, in one line that names the file."""


def internal_error(exc: BaseException) -> str:
    """A bug in one line: its type and the first line of its message."""
    text = first_line(exc)
    return f"internal error: {type(exc).__name__}" + ("" if text == type(exc).__name__ else f": {text}")


def missing_dependency(exc: ImportError, what: str, extra: str) -> MovieIdError:
    """The one-line error for an optional dependency that is not installed."""
    return MovieIdError(f"{what} needs {exc.name or 'a package'}, which is not installed: "
                        f"pip install -e '.[{extra}]'")
