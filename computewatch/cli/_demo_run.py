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

from computewatch.findings import Analysis, Period
from computewatch.pipelines import run_pipelines
from computewatch.policy import Policy
from computewatch.sim import GroundTruth, build_fleet, simulate
from computewatch.sim.scoring import Scorecard, score
from computewatch.store import Store
from computewatch.summary import NationalSummary, national_summary
from computewatch.topology import Topology

__all__ = ["DemoResult", "run_demo"]

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


def run_demo(store: Store, topology: Topology, policy: Policy, *, sites: int | None = None,
             accelerators: int | None = None, hours: int = 24, seed: int = 0,
             end: datetime | None = None, truth_path: Path | None = None,
             progress: Progress | None = None, analyze: bool = True) -> DemoResult:
    """Backfill ``hours`` of simulated history ending at ``end`` (default now) and summarize."""
    t0 = time.perf_counter()
    fleet = build_fleet(topology, sites=sites, accelerators=accelerators, seed=seed)
    if end is None:
        end = datetime.now(UTC).replace(second=0, microsecond=0)
    history = simulate(fleet, hours=hours, end=end, policy=policy)
    # A rerun replaces the demo's data instead of doubling it. The caller decides whether
    # the store may be emptied (the CLI refuses for a store it did not create).
    store.drop_before(end + timedelta(days=1))
    samples: dict[str, int] = {}
    rejected = 0
    done_hours = 0
    for measurement, frame in history.chunks():
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
    summary = national_summary(store, fleet.topology, policy, history.start, history.end)
    backfill_s = time.perf_counter() - t0
    analysis, analysis_s, scores = None, 0.0, None
    if analyze:
        t1 = time.perf_counter()
        period = Period(history.start, history.end)
        analysis = run_pipelines(store, period, policy, fleet.topology)
        analysis_s = time.perf_counter() - t1
        scores = score(analysis.findings, history.truth, period)
    return DemoResult(summary, history.truth, fleet.topology, fleet.n_devices, len(fleet.sites),
                      samples, rejected, backfill_s, analysis, analysis_s, scores)
