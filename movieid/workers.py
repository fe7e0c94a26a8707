"""Worker processes that keep their state between tasks and end with their parent.

``WorkerPool(n, setup, *args)`` spawns ``n`` processes that each run ``setup(*args)`` once
(load a face model, say) and then run tasks ``fn(state, *task_args)``; with ``n <= 1`` the
same happens in this process, so serial and parallel runs share one code path.

A worker must never outlive the run: each asks the kernel to kill it when its parent dies
(``PR_SET_PDEATHSIG`` on Linux) and also watches its parent's pid, so ``kill -9`` of the
parent leaves nothing behind. Workers run at a lower CPU priority (``WORKER_NICENESS``): the
parent's threads, which decode the film and feed the GPU, come first when the cores are busy,
and the workers take the rest (on the H200 film of bench/film.py the whole annotate took 20.1 s
with them niced, 21.4 s without, one run each). Workers ignore Ctrl-C (the terminal sends it to
the whole process group): the parent alone handles it and stops them. Ctrl-C or SIGTERM during a
worker's start waits until the start is complete (see ``_signals_held``), so no half-started
worker prints a traceback.
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import resource_tracker
from typing import Any, Callable

from .errors import MovieIdError
from .stop_signals import STOP_SIGNALS

PR_SET_PDEATHSIG = 1
WORKER_NICENESS = 10
PARENT_CHECK_S = 1.0

_STATE: Any = None


@contextlib.contextmanager
def _signals_held():
    """While processes are started here, Ctrl-C and SIGTERM wait until the start is complete.

    The children inherit the blocked mask, so one still starting Python keeps them pending
    until it ignores them (no KeyboardInterrupt traceback from it). In this process they are
    recorded and raised again afterwards: a start cut half-way (the parent gone before it
    sent the child its task) leaves a child printing an EOFError traceback. Python runs
    signal handlers in the main thread only, so only there can they be deferred.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # multiprocessing's resource tracker unblocks SIGINT and SIGTERM after it starts its own
    # process (CPython's resource_tracker.ensure_running), which would let the workers started
    # after it inherit an open mask: start it before blocking them.
    resource_tracker.ensure_running()
    arrived: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: arrived.append(signum)) for s in STOP_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)     # what came while blocked is recorded now
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(arrived):
            signal.raise_signal(signum)


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:          # the parent died before the call above took effect
        os._exit(1)

    def watch() -> None:                # portable backstop: re-parented means orphaned
        while True:
            time.sleep(PARENT_CHECK_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _start_worker(parent: int, setup: Callable[..., Any], args: tuple) -> None:
    global _STATE
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)   # held since the start (see _signals_held)
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    _STATE = setup(*args)


def _run(fn: Callable[..., Any], args: tuple) -> Any:
    return fn(_STATE, *args)


class WorkerPool:
    """``n`` spawned processes holding ``setup(*args)``'s result, or this process when ``n <= 1``."""

    def __init__(self, processes: int, setup: Callable[..., Any], *args: Any):
        self.processes = max(1, processes)
        self._setup, self._args = setup, args
        self._state: Any = None
        self._ready = False
        self._executor: ProcessPoolExecutor | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run ``fn(state, *args)`` in a worker; ``fn`` must be a module-level function."""
        if self.processes == 1:
            future: Future = Future()
            try:
                if not self._ready:
                    self._state, self._ready = self._setup(*self._args), True
                future.set_result(fn(self._state, *args))
            except Exception as exc:  # delivered where the result is collected
                future.set_exception(exc)
            return future
        with _signals_held():   # the executor starts its processes (and a resource tracker) in here
            if self._executor is None:
                # spawn, not fork: the parent runs decoder threads, and forking them is unsafe.
                self._executor = ProcessPoolExecutor(self.processes,
                                                     mp_context=multiprocessing.get_context("spawn"),
                                                     initializer=_start_worker,
                                                     initargs=(os.getpid(), self._setup, self._args))
            return self._executor.submit(_run, fn, args)

    @property
    def state(self) -> Any:
        """The in-process state (serial pools only)."""
        return self._state

    def close(self, stop: bool = False) -> None:
        """Finish (or, with ``stop``, kill) the workers and wait for them to exit."""
        executor, self._executor = self._executor, None
        if executor is not None:
            if stop:
                # ProcessPoolExecutor has no public way to stop running tasks before 3.14.
                for process in list(getattr(executor, "_processes", {}).values()):
                    process.kill()
            executor.shutdown(wait=True, cancel_futures=True)
        closer = getattr(self._state, "close", None)
        if callable(closer):
            closer()
        self._state, self._ready = None, False

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(stop=exc_type is not None)


def result(future: Future) -> Any:
    """A task's result; a worker that died becomes a one-line error."""
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise MovieIdError(f"an analysis worker process died ({exc}); try --workers 1") from None
