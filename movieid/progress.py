"""Progress of the long steps, reported through one callback: ``progress(step, done, total)``.

The library only calls the callback (``step`` is "cast", "shots", "faces", "captions",
"films", "speech", "thumbnails" or "suggest"; ``done`` and ``total`` count that step's units; ``total`` may grow while the step
runs). ``Bars`` turns the calls into tqdm bars for the command line; ``None`` means silence.
While ``annotate`` runs a model engine, "captions" calls come from its caption thread and the
others from the caller's: a callback must take calls from two threads (``Bars`` does).
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

from tqdm import tqdm

Progress = Optional[Callable[[str, int, int], None]]

UNITS = {"cast": "photo", "shots": "frame", "faces": "shot", "captions": "shot", "films": "film", "speech": "s",
         "thumbnails": "frame", "suggest": "person"}


def report(progress: Progress, step: str, done: int, total: int) -> None:
    if progress is not None:
        progress(step, done, total)


class Bars:
    """One tqdm bar per step, kept until ``close``; bars disable themselves when stderr is not a
    terminal."""

    def __init__(self, leave: bool = False):
        self.leave = leave
        self._bars: dict[str, tqdm] = {}
        self._lock = threading.Lock()

    def __call__(self, step: str, done: int, total: int) -> None:
        with self._lock:
            self._show(step, done, total)

    def _show(self, step: str, done: int, total: int) -> None:
        bar = self._bars.get(step)
        if bar is not None and done < bar.n:      # the step starts again (the next film)
            bar.close()
            bar = None
        if bar is None:
            bar = self._bars[step] = tqdm(total=total, desc=step, unit=UNITS.get(step, "it"), leave=self.leave,
                                          dynamic_ncols=True, disable=None)
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)
        if done >= total:
            bar.refresh()   # the last count is shown, not the last one tqdm's rate limit let through

    def close(self) -> None:
        """The bars closed lowest first, so that the top one, closing last, leaves the cursor at
        the start of its line (closed top first, the cursor went back up to the first line at its
        last column, and the next line printed started there)."""
        with self._lock:
            for bar in reversed(list(self._bars.values())):
                bar.close()
            self._bars.clear()

