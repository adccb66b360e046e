"""Progress lines for long steps (inference, generation): done/total, rate, time left.

A step reports its running counts with `update(computed, cached)`; a line goes to the log at most
every `every` seconds, and `finish()` always writes the last one. Cached records (found from an
earlier, interrupted run) count towards done but not towards the rate, so a resumed job's estimate
of the time left is about the work it still has to do. The clock is injected, for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

EVERY_SECONDS = 5.0  # at most one progress line this often (the final line is always written)


def _print(msg: str) -> None:
    print(msg, flush=True)  # flushed: a user following the job's log sees it at once


def duration(seconds: float) -> str:
    """12 s, 3 min 05 s, 1 h 02 min."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def rate_text(per_second: float, unit: str) -> str:
    """'3.2 questions/s', or '12.5 s per question' below one a second."""
    if per_second >= 1:
        return f"{per_second:.1f} {unit}s/s"
    return f"{1 / per_second:.1f} s per {unit}"


class Progress:
    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "question",
        log: Callable[[str], None] | None = None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label, self.total, self.unit = label, int(total), unit
        self.every = EVERY_SECONDS if every is None else every
        self.log, self.clock = log or _print, clock
        self.t0 = self.last = clock()
        self.computed = self.cached = 0

    def update(self, computed: int, cached: int = 0) -> None:
        """The step's running counts so far; writes a line if `every` seconds have passed since the last."""
        self.computed, self.cached = int(computed), int(cached)
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self.log(self.line(now))

    def finish(self) -> str:
        msg = self.line(self.clock(), final=True)
        self.log(msg)
        return msg

    def line(self, now: float, final: bool = False) -> str:
        elapsed = max(now - self.t0, 0.0)
        done = self.computed + self.cached
        rate = self.computed / elapsed if elapsed > 0 and self.computed else None
        counts = f"{done}/{self.total} {self.unit}s ({self.cached} cached, {self.computed} computed)"
        speed = f", {rate_text(rate, self.unit)}" if rate else ""
        if final:
            return f"[{self.label}] done: {counts} in {duration(elapsed)}{speed}"
        left = self.total - done
        eta = f", about {duration(left / rate)} left" if rate else ""
        return f"[{self.label}] {counts}{speed}{eta}"
