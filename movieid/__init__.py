"""movieid: per-shot, character-aware captions for films (SRT, WebVTT and JSON)."""

import signal as _signal

__version__ = "0.1.0"
# How the command line ends on Ctrl-C and SIGTERM: one line on stderr, and 128 + the signal's
# number. Here, not in the command line's modules, because ``movieid.__main__`` needs it before
# it imports anything else.
EXIT_LINES = {_signal.SIGINT: ("movieid: interrupted", 130), _signal.SIGTERM: ("movieid: terminated", 143)}
