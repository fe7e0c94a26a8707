"""The ``movieid`` command line: thin Click commands over the ``movieid`` library.

Exit codes: 0 ok, 1 runtime failure (bad input file, model problem, standard output not
writable), 2 usage error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 standard
output closed by its reader (``movieid shots film.mp4 | head -1``: quietly, as a command that
SIGPIPE ends). Every failure is one line on stderr (``-v`` adds the traceback of unexpected errors).
"""
from __future__ import annotations

import errno
import io
import os
import signal
import sys
import traceback

import click

from movieid import EXIT_LINES, __version__
from movieid.errors import InputError, internal_error, missing_dependency, printable
from movieid.stop_signals import Terminated, raise_stop

from .annotate import annotate, shots
from .batch import batch, batch_status
from .cast import cast
from .data import data
from .evaluate import evaluate
from .index import index
from .models import models
from .report import report
from .search import search
from .train import train


def _terminate(signum, frame):
    raise Terminated()


class _StdoutFailed(Exception):
    """A write to standard output failed (a full disk, a closed pipe): no input's fault, and not a bug."""

    def __init__(self, error: OSError):
        super().__init__(error.strerror or str(error))
        self.errno, self.strerror = error.errno, error.strerror or str(error)


class _GuardedStdout:
    """``sys.stdout`` whose write errors are told apart from every other ``OSError`` (those are
    the commands' to name their file, or bugs); the rest is the stream's own."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise _StdoutFailed(exc) from None

    def flush(self):
        try:
            return self._stream.flush()
        except OSError as exc:
            raise _StdoutFailed(exc) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _ClosedStdout(io.TextIOBase):
    """Standard output when the process started with none (``>&-``): writing to it fails, as it
    does for any command, instead of the output vanishing."""

    def write(self, text):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    def fileno(self):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))


EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE   # what a shell reports for a command SIGPIPE ended


class _Interrupted(BaseException):
    """Ctrl-C, carried past click's own handler (which writes a blank line before any line of ours)."""


class OneLineErrors(click.Group):
    """Report every failure as a single line and map it to the documented exit code."""

    def main(self, args=None, prog_name=None, **extra):  # noqa: D102
        args = list(sys.argv[1:] if args is None else args)
        verbose = any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in args)
        previous = signal.signal(signal.SIGTERM, _terminate)
        stdout = sys.stdout
        sys.stdout = _GuardedStdout(_ClosedStdout() if stdout is None else stdout)
        try:
            return super().main(args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "movieid"
            _error_line(f"{where}: error: {exc.format_message()} (see --help)")
            sys.exit(2)
        except (click.Abort, _Interrupted):   # click.Abort: Ctrl-C while click parses or prompts
            _quietly_exit(*EXIT_LINES[signal.SIGINT])
        except (KeyboardInterrupt, Terminated) as exc:
            _exit_if_stopped(exc)
        except _StdoutFailed as exc:
            _discard_stdout(stdout)
            if exc.errno == errno.EPIPE:    # the reader has all it wanted (| head)
                sys.exit(EXIT_BROKEN_PIPE)
            _error_line(f"movieid: cannot write to standard output: {exc.strerror}")
            sys.exit(1)
        except InputError as exc:   # MovieIdError and the models' own errors
            _exit_if_stopped(exc)
            _error_line(f"movieid: error: {exc}")
            sys.exit(1)
        except click.ClickException as exc:
            _error_line(f"movieid: error: {exc.format_message()}")
            sys.exit(exc.exit_code)
        except Exception as exc:  # a bug: keep it to one line unless asked for details
            _exit_if_stopped(exc)
            if verbose:
                traceback.print_exc()
            _error_line(f"movieid: {internal_error(exc)} (run with -v for the traceback)")
            sys.exit(1)
        finally:
            sys.stdout = stdout
            signal.signal(signal.SIGTERM, previous)

    def invoke(self, ctx):  # noqa: D102
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted() from exc
        except ModuleNotFoundError as exc:   # an optional package a command needs
            extra = optional_extra(exc.name, ctx.invoked_subcommand)
            if extra is None:
                raise
            raise missing_dependency(exc, f"movieid {ctx.invoked_subcommand}", extra) from None


# The extra that brings each optional package (setup.py's extras_require); a command that needs
# several (train: torch and peft) names its own extra.
OPTIONAL_PACKAGES = {"torch": "vlm", "tiktoken": "vlm", "safetensors": "vlm", "huggingface_hub": "vlm",
                     "transformers": "hf", "torchvision": "hf", "num2words": "hf", "peft": "train", "ray": "ray",
                     "silero_vad": "ad"}
COMMAND_EXTRAS = {"train": "train", "eval": "vlm"}


def optional_extra(module: str | None, command: str | None) -> str | None:
    """The extra to install for a missing ``module`` under ``command``, or None (not optional: a bug)."""
    top = (module or "").split(".")[0]
    if top not in OPTIONAL_PACKAGES:
        return None
    return COMMAND_EXTRAS.get(command or "", OPTIONAL_PACKAGES[top])


def _error_line(line: str) -> None:
    """A failure's one line on stderr. ``MovieIdError`` escapes the control characters of the
    paths it names; click's usage errors and the models' errors are made elsewhere, so here too."""
    click.echo(printable(line), err=True)


def _discard_stdout(stdout) -> None:
    """What is still buffered for a standard output that failed goes nowhere, so that Python's
    flush at exit does not fail again with a message of its own."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):   # not a file descriptor (a test's stream)
        pass


def _exit_if_stopped(exc: BaseException) -> None:
    """An error with a Ctrl-C or SIGTERM behind it (see ``raise_stop``) ends as they do."""
    try:
        raise_stop(exc)
    except KeyboardInterrupt:
        _quietly_exit(*EXIT_LINES[signal.SIGINT])
    except Terminated:
        _quietly_exit(*EXIT_LINES[signal.SIGTERM])


def _quietly_exit(line: str, code: int) -> None:
    """One line, then exit without Python printing anything more for signals that keep coming
    (a second Ctrl-C while workers shut down)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if code == EXIT_LINES[signal.SIGINT][1] and sys.stderr.isatty():
        click.echo(err=True)    # past the terminal's ^C
    click.echo(line, err=True)
    sys.exit(code)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"],
                                                  "max_content_width": 100})
@click.version_option(__version__, prog_name="movieid")
def cli():
    """Per-shot, character-aware captions for films: SRT, WebVTT and JSON.

    \b
    movieid annotate film.mp4 --cast cast/      captions next to the film
    movieid shots film.mp4                      the shot list
    movieid cast check cast/                    validate a cast folder
    movieid batch /archive --cast cast/ -o out  a whole archive, resumably
    movieid report film.json                    the review page of an annotation
    movieid cast suggest film.mp4 -o cast/      cast folders of the people the film shows
    movieid search out --person Alice           every shot of Alice in a batch's archive
    """


cli.add_command(annotate)
cli.add_command(shots)
cli.add_command(batch)
cli.add_command(batch_status)
cli.add_command(cast)
cli.add_command(report)
cli.add_command(models)
cli.add_command(train)
cli.add_command(data)
cli.add_command(evaluate)
cli.add_command(index)
cli.add_command(search)


def main() -> None:
    cli.main(prog_name="movieid")


if __name__ == "__main__":
    main()
