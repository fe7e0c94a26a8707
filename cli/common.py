"""What every command shares: ``-v``/``-q``, logging, progress bars, finite numbers."""
from __future__ import annotations

import contextlib
import logging
import math
import warnings

import click


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="movieid: %(levelname)s: %(message)s", force=True)
    logging.captureWarnings(True)
    if verbose < 2:
        warnings.filterwarnings("ignore")


def common(func):
    """``-v`` and ``--quiet`` on every command (they work before or after the arguments)."""
    func = click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")(func)
    func = click.option("-q", "--quiet", is_flag=True, help="No progress bars, warnings or summary.")(func)
    return func


@contextlib.contextmanager
def progress_bars(quiet: bool):
    """The library's progress callback as tqdm bars (none with ``--quiet``)."""
    if quiet:
        yield None
        return
    from movieid.progress import Bars

    bars = Bars()
    try:
        yield bars
    finally:
        bars.close()


class FiniteFloat(click.ParamType):
    """A finite number (``nan`` and ``inf`` are refused: they are not JSON and mean nothing here)."""

    name = "number"

    def __init__(self, minimum: float | None = None):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.minimum is not None and number < self.minimum:
            self.fail(f"{value} is smaller than the minimum {self.minimum:g}", param, ctx)
        return number
