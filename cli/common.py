"""What every command shares: ``-v``/``-q``, logging, progress bars, finite numbers."""
from __future__ import annotations

import contextlib
import logging
import math
import warnings

import click


def echo(text: str = "", err: bool = False) -> None:
    """Lines of a command's output on a terminal, with any control character but the line breaks
    shown escaped: a cast folder named ``Evil\\e]0;pwned\\a`` must not set the terminal's title. A
    value that may hold a newline (a file name) is escaped where it is put in (``printable``).
    JSON output needs no such care: ``json.dumps`` escapes them itself."""
    from movieid.errors import printable

    click.echo("\n".join(printable(line) for line in str(text).split("\n")), err=err)


class _TerminalLog(logging.Handler):
    """Log lines on stderr: written above any progress bar (``tqdm.write`` clears the bars and
    draws them again below, where a plain write would overwrite a bar and leave it frozen), with
    the control characters of the names they quote escaped."""

    def emit(self, record: logging.LogRecord) -> None:
        import sys

        from tqdm import tqdm

        from movieid.errors import printable

        try:
            text = "\n".join(printable(line) for line in self.format(record).split("\n"))
            tqdm.write(text, file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if quiet:
        level = logging.ERROR
    handler = _TerminalLog()
    handler.setFormatter(logging.Formatter("movieid: %(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
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

    def __init__(self, minimum: float | None = None, maximum: float | None = None, min_open: bool = False,
                 max_open: bool = False):
        self.minimum, self.maximum, self.min_open, self.max_open = minimum, maximum, min_open, max_open

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        low, high = self.minimum, self.maximum
        if low is not None and (number < low or (self.min_open and number == low)):
            self.fail(f"{value} must be {'above' if self.min_open else 'at least'} {low:g}", param, ctx)
        if high is not None and (number > high or (self.max_open and number == high)):
            self.fail(f"{value} must be {'below' if self.max_open else 'at most'} {high:g}", param, ctx)
        return number
