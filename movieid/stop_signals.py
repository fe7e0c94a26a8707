"""Ctrl-C and SIGTERM, seen at once by the threads that work beside the main one.

Python runs signal handlers in the main thread only, between two of its bytecodes. While that
thread is inside a C call (a lock wait that the signal did not interrupt because the kernel
handed it to another thread, worker processes starting with the signals held, a frame being
decoded), a caption thread would go on answering batches, and reporting them, for a run that is
already stopping. ``StopSignals`` lets such a thread learn at once that a signal came: C's own
handler, which runs in whichever thread the kernel picked, writes the signal's number to the
socket given to ``signal.set_wakeup_fd``. The thread then waits until the main thread's handler
has run: if it raised (``KeyboardInterrupt``, the command line's ``Terminated``), the run is
stopping; if it returned, the run goes on.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from typing import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The longest a thread waits for the main thread to handle a signal that came; past it (the
# handler replaced by one that never returns control here), it goes on.
HANDLER_WAIT_S = 10.0


class Terminated(BaseException):
    """SIGTERM, as the command line's handler raises it. Like ``KeyboardInterrupt`` it is no
    ``Exception``: no ``except Exception`` (a film's failure, a decoder's error) can take it."""


def raise_stop(error: BaseException) -> None:
    """Raise the Ctrl-C or SIGTERM behind ``error``, if one is: one that comes while a C
    extension is imported becomes its ``ImportError("initialization failed")``, with the stop
    as the cause; one during another error's handling is its context."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, (KeyboardInterrupt, Terminated)):
            raise cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__


class StopSignals:
    """Made in the main thread, it wraps the Python handlers of Ctrl-C and SIGTERM until ``close``;
    ``settle()``, from any thread, says whether one of them raised. Made elsewhere (where Python
    cannot change handlers), ``settle()`` is always False: the caller's thread would have run
    the handlers itself."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._arrived = self._handled = 0
        self._raised = False
        self._wrapped: dict[int, tuple[Callable, Callable]] = {}   # signal -> (the original, ours)
        self._socket: socket.socket | None = None
        self._peer: socket.socket | None = None
        self._previous_fd = -1
        if threading.current_thread() is threading.main_thread():
            self._install()

    def _install(self) -> None:
        handlers = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        handlers = {s: h for s, h in handlers.items() if callable(h)}   # not SIG_DFL or SIG_IGN
        if not handlers:
            return
        self._socket, self._peer = socket.socketpair()
        for end in (self._socket, self._peer):
            end.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._peer.fileno(), warn_on_full_buffer=False)
        for signum, original in handlers.items():
            ours = self._wrap(original)
            self._wrapped[signum] = (original, ours)
            signal.signal(signum, ours)

    def _wrap(self, original: Callable) -> Callable:
        def handle(signum, frame):
            self._drain()
            try:
                original(signum, frame)
            except BaseException:
                with self._changed:
                    self._raised = True
                    self._changed.notify_all()
                raise
            with self._changed:
                self._handled = self._arrived
                self._changed.notify_all()
        return handle

    def _drain(self) -> None:
        """Count the stop signals written to the socket; others go on to the previous wakeup fd
        (asyncio's, say), which would otherwise miss them."""
        with self._changed:
            while self._socket is not None:
                try:
                    data = self._socket.recv(256)
                except OSError:   # nothing more to read (or closed meanwhile)
                    return
                if not data:
                    return
                self._arrived += sum(1 for byte in data if byte in self._wrapped)
                if self._previous_fd >= 0:
                    with contextlib.suppress(OSError):
                        os.write(self._previous_fd, data)

    def settle(self) -> bool:
        """Whether a Ctrl-C or SIGTERM has come whose handler raised; while one that came waits
        for the main thread's handler, this waits too (up to ``HANDLER_WAIT_S``)."""
        if self._socket is None:
            return False
        self._drain()
        with self._changed:
            if not self._changed.wait_for(lambda: self._raised or self._handled >= self._arrived, HANDLER_WAIT_S):
                self._handled = self._arrived   # not handled in time: do not wait for it again
            return self._raised

    def close(self) -> None:
        """Put back the handlers and the wakeup fd (those still ours: later changes stay)."""
        if self._socket is None:
            return
        for signum, (original, ours) in self._wrapped.items():
            if signal.getsignal(signum) is ours:
                signal.signal(signum, original)
        current = signal.set_wakeup_fd(self._previous_fd)
        if current != self._peer.fileno():
            signal.set_wakeup_fd(current)
        with self._changed:
            for end in (self._socket, self._peer):
                end.close()
            self._socket = self._peer = None
