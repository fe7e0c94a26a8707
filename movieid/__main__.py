"""The ``movieid`` console script and ``python -m movieid``.

The command line's own handlers end a run on Ctrl-C or SIGTERM with one line and exit code 130
or 143. Until they are in place, while Python still imports the command line (a second or so on
a cold start), Ctrl-C would print a ``KeyboardInterrupt`` traceback and SIGTERM kill without a
word: the handlers here say the same line and exit the same way (nothing has started yet that
would need stopping). A signal the caller ignores (``nohup``, a background job) stays ignored.
"""
import os
import signal

from movieid import EXIT_LINES


def _stop_early(signum, frame):
    for other in EXIT_LINES:
        signal.signal(other, signal.SIG_IGN)
    line, code = EXIT_LINES[signum]
    os.write(2, line.encode() + b"\n")
    os._exit(code)


def main() -> None:
    previous = {s: signal.signal(s, _stop_early) for s in EXIT_LINES if signal.getsignal(s) is not signal.SIG_IGN}
    from movieid.cli.main import main as run
    for signum, handler in previous.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)   # None: set outside Python
    try:
        run()
    except KeyboardInterrupt:   # between here and the command line's own handling
        _stop_early(signal.SIGINT, None)


if __name__ == "__main__":
    main()
