"""The one exception type the pipeline raises for problems a user can fix.

The CLI prints it as a single line (``movieid: error: <path>: <problem>``) and exits 1;
anything else escaping the pipeline is a bug and keeps its traceback under ``-v``.
"""
from __future__ import annotations

from pathlib import Path


class MovieIdError(Exception):
    """A bad input or environment problem, described in one line that names the file."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
