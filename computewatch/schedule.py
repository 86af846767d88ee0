"""Run a job again and again on a fixed grid, for commands with ``--every``.

The grid is fixed (start + k x interval), so runs do not drift by their own duration; a run
that overruns skips the ticks it missed instead of running back to back. A run that raises
is logged and the next one still happens: one bad run (a store briefly down) never ends the
schedule.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["run_every", "write_heartbeat"]

log = logging.getLogger(__name__)


def run_every(interval_s: float, job: Callable[[], object], stop: threading.Event, *,
              name: str = "job", max_runs: int | None = None,
              clock: Callable[[], float] = time.monotonic) -> int:
    """Call ``job`` now and every ``interval_s`` until ``stop`` is set; returns the runs."""
    if interval_s <= 0:
        raise ValueError(f"interval must be positive, got {interval_s!r}")
    start = clock()
    runs = 0
    while not stop.is_set():
        try:
            job()
        except Exception:
            log.exception("%s failed; the next run is still scheduled", name)
        runs += 1
        if max_runs is not None and runs >= max_runs:
            break
        elapsed = clock() - start
        next_tick = (int(elapsed // interval_s) + 1) * interval_s
        if stop.wait(max(0.0, next_tick - elapsed)):
            break
    return runs


def write_heartbeat(path: Path) -> None:
    """Record that a scheduled run completed: the file's time is what a health check reads.

    Written to a temporary file and renamed, so a reader never sees a half-written one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(datetime.now(UTC).isoformat() + "\n", encoding="utf-8")
    os.replace(tmp, path)
