"""`computewatch demo`'s job: build the simulated fleet, backfill the store, summarize, run the
pipelines and score their findings against the simulator's ground truth. Wiring over the
simulator, the store, the summary and the pipelines' runner, so it lives with the command line
(the one package that may import every layer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from computewatch.findings import Analysis, Period
from computewatch.pipelines import run_pipelines
from computewatch.policy import Policy
from computewatch.sim import GroundTruth, build_fleet, simulate
from computewatch.sim.backfill import rollup_frames
from computewatch.sim.scoring import Scorecard, score
from computewatch.store import Store
from computewatch.summary import NationalSummary, national_summary
from computewatch.topology import Topology

__all__ = ["ROLLUP_DAYS_FROM", "DemoResult", "backfill_grain", "run_demo"]

Progress = Callable[[int, int, int], None]
"""Called after each hour: (hours done, hours total, samples written so far)."""


@dataclass(frozen=True)
class DemoResult:
    summary: NationalSummary
    truth: GroundTruth
    topology: Topology
    accelerators: int
    sites: int
    samples: dict[str, int]
    rejected: int
    seconds: float
    analysis: Analysis | None = None
    analysis_seconds: float = 0.0
    scores: Scorecard | None = None
    """Every rule's findings scored against the simulator's ground truth (with analysis)."""


ROLLUP_DAYS_FROM = 20_000_000
"""Accelerator-hours of backfill above which history is written as daily rollups (a year of
the default fleet is 247 M accelerator-hours: hourly rows would take the demo an hour)."""


def backfill_grain(devices: int, hours: int) -> timedelta:
    """The rollup grain of a backfill: hours, or UTC days for a large fleet's long history."""
    return timedelta(days=1) if devices * hours > ROLLUP_DAYS_FROM else timedelta(hours=1)


def run_demo(store: Store, topology: Topology, policy: Policy, *, sites: int | None = None,
             accelerators: int | None = None, hours: int = 24, seed: int = 0,
             end: datetime | None = None, truth_path: Path | None = None,
             progress: Progress | None = None, analyze: bool = True,
             raw_hours: int | None = None) -> DemoResult:
    """Backfill ``hours`` of simulated history ending at ``end`` (default now) and summarize.

    ``raw_hours`` (None: all of them) keeps only the last hours as 1-minute samples; the
    hours before are written as rollups (`computewatch.sim.backfill`, `backfill_grain`),
    the way a store holds history past its raw retention. Then ``end`` (default now) is
    floored to the hour, or to the UTC day when the backfill is daily."""
    t0 = time.perf_counter()
    fleet = build_fleet(topology, sites=sites, accelerators=accelerators, seed=seed)
    rolled_hours = 0 if raw_hours is None else max(hours - raw_hours, 0)
    grain = backfill_grain(fleet.n_devices, rolled_hours)
    if end is None:
        end = datetime.now(UTC).replace(second=0, microsecond=0)
    if rolled_hours:
        unit = "day" if grain == timedelta(days=1) else "hour"
        end = pd.Timestamp(end).floor("D" if unit == "day" else "h").to_pydatetime()
        if unit == "day" and rolled_hours % 24:
            raise ValueError(f"a daily backfill needs whole days: {hours} hours with "
                             f"{raw_hours} raw")
    history = simulate(fleet, hours=hours, end=end, policy=policy)
    # A rerun replaces the demo's data instead of doubling it. The caller decides whether
    # the store may be emptied (the CLI refuses for a store it did not create).
    store.drop_before(end + timedelta(days=1))
    expire = getattr(store, "expire", None)
    if expire is not None and hasattr(store, "write_rollup"):  # rollups of an earlier run
        tick = timedelta(microseconds=1)
        expire(tick, tick, now=end + timedelta(days=1))
    samples: dict[str, int] = {}
    rejected = 0
    done_hours = 0
    if rolled_hours:
        write_rollup = getattr(store, "write_rollup", None)
        if write_rollup is None:
            raise ValueError(f"{store.url}: this store keeps no rollups; a backfill of "
                             f"history as rollups needs the embedded DuckDB store")
        step = 24 if grain == timedelta(days=1) else 1
        for measurement, frame, g in rollup_frames(history, rolled_hours, grain):
            rows = write_rollup(measurement, frame, g)
            samples[f"{measurement} rollup rows"] = samples.get(
                f"{measurement} rollup rows", 0) + rows
            if measurement == "accelerator":
                done_hours += step
                if progress:
                    progress(done_hours, hours, sum(samples.values()))
    for measurement, frame in history.chunks(rolled_hours):
        result = store.write(measurement, frame)
        samples[measurement] = samples.get(measurement, 0) + result.rows
        rejected += result.rejected
        if measurement == "accelerator":
            done_hours += 1
            if progress:
                progress(done_hours, hours, sum(samples.values()))
    if truth_path is not None:
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        history.truth.save(truth_path)
    # The summary and the pipelines read the raw hours (a year's are the report's job:
    # `computewatch report --period 2026`).
    shown = Period(history.start + timedelta(hours=rolled_hours), history.end)
    summary = national_summary(store, fleet.topology, policy, shown.start, shown.end)
    backfill_s = time.perf_counter() - t0
    analysis, analysis_s, scores = None, 0.0, None
    if analyze:
        t1 = time.perf_counter()
        period = shown
        analysis = run_pipelines(store, period, policy, fleet.topology)
        analysis_s = time.perf_counter() - t1
        scores = score(analysis.findings, history.truth, period)
    return DemoResult(summary, history.truth, fleet.topology, fleet.n_devices, len(fleet.sites),
                      samples, rejected, backfill_s, analysis, analysis_s, scores)
