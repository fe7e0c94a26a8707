"""StopSignals: a thread beside the main one learns of Ctrl-C and SIGTERM while the main thread
is inside a C call that the signal does not interrupt (here ``time.sleep`` with the signal
blocked in the main thread, so that the kernel hands it to another thread)."""
import os
import signal
import socket
import threading
import time

import pytest

from movieid.stop_signals import StopSignals

BUSY_S = 0.6
# The kernel may hand the signal to another thread (torch's, say), whose C handler then runs when
# that thread is next scheduled, after ``kill`` has returned: settle once it has surely run.
DELIVERY_S = 0.1


def _signal_while_busy(stops: StopSignals, signum: int, seen: dict) -> None:
    """The main thread inside one C call that ``signum`` cannot interrupt while a thread sends
    ``signum`` to this process and then calls ``settle``: what it said and when, in ``seen``."""
    busy = threading.Event()

    def run():
        busy.wait(5)
        os.kill(os.getpid(), signum)
        time.sleep(DELIVERY_S)
        seen["raised"] = stops.settle()
        seen["at"] = time.monotonic()
    seen["thread"] = threading.Thread(target=run)   # made before the block: a thread inherits it
    seen["thread"].start()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
    try:
        seen["began"] = time.monotonic()
        busy.set()
        time.sleep(BUSY_S)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_thread_waits_for_the_main_threads_handler_and_learns_that_it_raised(signum):
    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped()
    previous = signal.signal(signum, stop)
    stops = StopSignals()
    seen: dict = {}
    try:
        with pytest.raises(Stopped):
            _signal_while_busy(stops, signum, seen)
            time.sleep(5)         # not reached: the handler raises as soon as the main thread is free
        seen["thread"].join(5)
    finally:
        stops.close()
        signal.signal(signum, previous)
    assert seen["raised"] is True
    assert seen["at"] - seen["began"] >= BUSY_S * 0.9      # it waited for the handler, not answered at once


def test_a_handler_that_returns_lets_the_thread_go_on():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    stops = StopSignals()
    seen: dict = {}
    try:
        _signal_while_busy(stops, signal.SIGINT, seen)
        seen["thread"].join(5)
        assert stops.settle() is False
    finally:
        stops.close()
        signal.signal(signal.SIGINT, previous)
    assert calls == [signal.SIGINT] and seen["raised"] is False
    assert seen["at"] - seen["began"] >= BUSY_S * 0.9


def test_close_puts_back_the_handlers_and_passes_on_other_signals_to_the_previous_wakeup_fd():
    ours, theirs = socket.socketpair()
    for end in (ours, theirs):
        end.setblocking(False)
    usr1 = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    old_fd = signal.set_wakeup_fd(theirs.fileno())
    handler = signal.getsignal(signal.SIGINT)
    try:
        stops = StopSignals()
        assert signal.getsignal(signal.SIGINT) is not handler
        signal.raise_signal(signal.SIGUSR1)
        assert stops.settle() is False
        stops.close()
        assert signal.getsignal(signal.SIGINT) is handler
        assert signal.set_wakeup_fd(theirs.fileno()) == theirs.fileno()
        assert ours.recv(16) == bytes([signal.SIGUSR1])     # not lost to our socket
    finally:
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGUSR1, usr1)
        ours.close()
        theirs.close()


def test_made_outside_the_main_thread_it_changes_nothing():
    handler = signal.getsignal(signal.SIGINT)
    made = []
    thread = threading.Thread(target=lambda: made.append(StopSignals()))
    thread.start()
    thread.join(5)
    assert signal.getsignal(signal.SIGINT) is handler and made[0].settle() is False
    made[0].close()

