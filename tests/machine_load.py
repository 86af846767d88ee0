"""How busy this machine's cores are, from ``/proc/stat``, for the tests that time real
clocks (probe round trips, schedules): what they measure is the machine's own timing, which
another busy process distorts. CI's 2-core runner once gave every probe 0.3-0.5 ms more and
held the probe loop up 21 times in a 5 s window; run alone, the same module passed. Such a
test waits for the cores to be quiet, measures how busy the machine was while it ran, and
takes its window again when something else held the cores."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Busy", "busy_meter", "wait_for_quiet"]

_TICKS = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    """Busy jiffies of all cores together since boot (idle and iowait left out)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, f.readline().split()[1:9])
    return user + nice + system + irq + softirq + steal


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Busy:
    """Cores busy over a span: the whole machine's, and this process' own (all its threads)."""

    machine: float = 0.0
    own: float = 0.0

    @property
    def others(self) -> float:
        """Cores held by everything but this process (its children included)."""
        return max(self.machine - self.own, 0.0)

    def __str__(self) -> str:
        return f"{self.machine:.2f} cores busy ({self.own:.2f} this process)"


@contextmanager
def busy_meter() -> Iterator[Busy]:
    """``with busy_meter() as busy: ...``; ``busy`` holds the span's figures at the end."""
    busy = Busy()
    wall0, own0, busy0 = time.monotonic(), _own_cpu_s(), _busy_ticks()
    try:
        yield busy
    finally:
        wall = max(time.monotonic() - wall0, 1e-3)
        busy.machine = (_busy_ticks() - busy0) / _TICKS / wall
        busy.own = (_own_cpu_s() - own0) / wall


def wait_for_quiet(max_cores: float, limit_s: float, step_s: float = 0.5) -> None:
    """Wait until other processes hold at most ``max_cores`` for ``step_s``, or ``limit_s``
    has passed (the caller measures its own span and judges it)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with busy_meter() as busy:
            time.sleep(step_s)
        if busy.others <= max_cores:
            return
