"""Small helpers shared by the benchmarks: timing, memory, and the simulated frames."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

END = datetime(2026, 11, 2, tzinfo=UTC)


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def accelerator_hours(accelerators: int, hours: int, seed: int = 0) -> list[pa.Table]:
    """``hours`` simulated hours of accelerator frames for a fleet of that size."""
    from computewatch.sim import build_fleet, simulate
    from computewatch.topology import load_topology

    fleet = build_fleet(load_topology(), accelerators=accelerators, seed=seed)
    history = simulate(fleet, hours=hours, end=END)
    return [t for m, t in history.chunks() if m == "accelerator"]


def row(name: str, value: str, note: str = "") -> None:
    print(f"  {name:<44} {value:>18}  {note}")
