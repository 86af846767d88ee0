"""Underused capacity: sites, clusters, hubs and provinces below their utilization minimum.

Two definitions, chosen by the caller and stated in every finding:

- ``time_weighted`` (default): the mean of the utilization samples in each window, weighted
  by samples, so a level's value is its accelerators' time-weighted mean utilization;
- ``busy_fraction``: the share of accelerator-windows whose mean utilization exceeds the
  policy's busy level (an accelerator counts as busy for a window, or it does not).

Both are defined, with their text, in the core (`computewatch.utilization`), which the
summary and the report use too.

Sustained-window semantics: a subject is flagged only for an episode of consecutive windows
(default 1 h) below its minimum lasting at least the policy's ``sustained_hours``; one
finding per episode, with its start and end. Severity follows the size of the gap: critical
below half the minimum, warning otherwise. Each finding carries the idle accelerator-hours
of the episode (`computewatch.utilization.IDLE_DEFINITION`: sum of (1 - utilization) x the
sampling interval) and the idle share (1 - the value), and its completeness: the share of the
episode's windows with data. Minimums come from the policy per level, region and subject.

All aggregation is pushed into the store: windowed queries per site (and per device), so
memory grows with sites x windows, not with samples.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from computewatch.findings import Finding, Period, Severity
from computewatch.pipelines._episodes import episodes
from computewatch.policy import Policy
from computewatch.store import Store
from computewatch.topology import Topology
from computewatch.utilization import (
    DEFINITIONS,
    LEVELS,
    Definition,
    utilization_windows,
    window_totals,
)

__all__ = ["run"]


def _region(topology: Topology, level: str, subject: str) -> str | None:
    try:
        if level == "site":
            return topology.region_of(subject)
        if level == "cluster":
            return topology.hub(topology.cluster(subject).hub).region
        if level == "hub":
            return topology.hub(subject).region
    except KeyError:
        return None
    return None


def _place(topology: Topology, level: str, subject: str) -> tuple[str, str, str]:
    """(hub, cluster, site) labels of a finding's subject."""
    if level == "site":
        s = topology.site(subject)
        return s.hub or "", s.cluster or "", s.id
    if level == "cluster":
        return topology.cluster(subject).hub, subject, ""
    if level == "hub":
        return subject, "", ""
    return "", "", ""


def run(store: Store, period: Period, policy: Policy, topology: Topology, *,
        definition: Definition = "time_weighted", window: timedelta = timedelta(hours=1),
        sustained_hours: float | None = None, levels: tuple[str, ...] = LEVELS) -> list[Finding]:
    """Underuse findings for every level, one per sustained episode below the minimum."""
    if definition not in DEFINITIONS:
        raise ValueError(f"unknown definition {definition!r} (use {', '.join(DEFINITIONS)})")
    busy = float(policy.utilization.busy_level.value)
    sustained = float(sustained_hours if sustained_hours is not None
                      else policy.utilization.sustained_hours.value)
    min_windows = max(1, int(np.ceil(timedelta(hours=sustained) / window)))
    by_level = utilization_windows(store, period, topology, window=window,
                                   definition=definition, busy_level=busy)
    grid = pd.date_range(period.start, period.end, freq=window, inclusive="left")
    findings = []
    for level in levels:
        frame = by_level[level]
        for subject, g in frame.groupby("subject"):
            entry = policy.utilization_minimum_entry(level, _region(topology, level, subject),
                                                     subject)
            threshold = float(entry.value)
            s = g.set_index("time").reindex(grid)
            bad = (s.value < threshold - 1e-9).to_numpy()  # not float rounding of a tie
            for ep in episodes(bad, min_windows):
                sl = s.iloc[ep.first: ep.last + 1]
                observed, idle_ah = window_totals(sl)
                hub, cluster, site = _place(topology, level, subject)
                start = grid[ep.first].to_pydatetime()
                end = (grid[ep.last] + window).to_pydatetime()
                sev = Severity.CRITICAL if observed < threshold / 2 else Severity.WARNING
                findings.append(Finding(
                    "underuse", f"{level}_below_minimum", level, str(subject), sev, observed,
                    threshold, "ratio", start, end,
                    completeness=float(sl.value.notna().mean()), hub=hub, cluster=cluster,
                    site=site,
                    definition=f"{DEFINITIONS[definition]}; below the {level} minimum for at "
                               f"least {sustained:g} h in {window / timedelta(minutes=1):g}-"
                               f"minute windows; minimum source: {entry.source}",
                    message=f"{level} {subject}: {observed:.1%} < {threshold:.0%} for "
                            f"{(end - start) / timedelta(hours=1):.1f} h, {idle_ah:,.0f} idle "
                            f"accelerator-hours ({1 - observed:.0%} of capacity idle)",
                    detail={"idle_accelerator_hours": idle_ah, "idle_share": 1 - observed,
                            "accelerators": float(sl.accelerators.max()),
                            "definition": definition}))
    return findings
