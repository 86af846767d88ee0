"""Underused capacity: sites, clusters, hubs and provinces below their utilization minimum.

Two definitions, chosen by the caller and stated in every finding:

- ``time_weighted`` (default): the mean of the utilization samples in each window, weighted
  by samples, so a level's value is its accelerators' time-weighted mean utilization;
- ``busy_fraction``: the share of accelerator-windows whose mean utilization exceeds the
  policy's busy level (an accelerator counts as busy for a window, or it does not).

Sustained-window semantics: a subject is flagged only for an episode of consecutive windows
(default 1 h) below its minimum lasting at least the policy's ``sustained_hours``; one
finding per episode, with its start and end. Severity follows the size of the gap: critical
below half the minimum, warning otherwise. Each finding carries the idle accelerator-hours
of the episode (accelerators x hours x (1 - utilization)) and the idle share of capacity, and
its completeness: the share of the episode's windows with data. Minimums come from the policy
per level, region and subject.

All aggregation is pushed into the store: one windowed query per site (and per device for
``busy_fraction``), so memory grows with sites x windows, not with samples.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import numpy as np
import pandas as pd

from computewatch.pipelines._episodes import episodes
from computewatch.pipelines._findings import Finding, Period, Severity
from computewatch.policy import Policy
from computewatch.store import Aggregate, Query, Store
from computewatch.topology import Topology

__all__ = ["DEFINITIONS", "IDLE_DEFINITION", "LEVELS", "run", "utilization_by",
           "window_totals"]

Definition = Literal["time_weighted", "busy_fraction"]
DEFINITIONS: dict[str, str] = {
    "time_weighted": "time-weighted mean utilization (mean of all utilization samples in "
                     "each window)",
    "busy_fraction": "busy fraction (share of accelerator-windows whose mean utilization "
                     "exceeds the busy level)",
}
LEVELS = ("site", "cluster", "hub", "province")
IDLE_DEFINITION = ("idle accelerator-hours = sum over windows of accelerators with data x "
                   "window hours x (1 - utilization, or busy share); windows without data "
                   "count for nothing")


def _site_windows(store: Store, period: Period, window: timedelta,
                  definition: Definition, busy_level: float) -> pd.DataFrame:
    """Per site and window: value (per definition), samples and accelerators with data."""
    q = dict(start=period.start, end=period.end, window=window)
    if definition == "time_weighted":
        mean = store.query(Query("accelerator", ("utilization_ratio",), group_by=("site",),
                                 agg=Aggregate.MEAN, **q))
        count = store.query(Query("accelerator", ("utilization_ratio",), group_by=("site",),
                                  agg=Aggregate.COUNT, **q))
        devices = store.query(Query("accelerator", ("utilization_ratio",),
                                    group_by=("site", "device"), agg=Aggregate.COUNT, **q))
        n_dev = devices.groupby(["time", "site"]).size().rename("accelerators")
        out = mean.merge(count, on=["time", "site"], suffixes=("", "_n"))
        out = out.rename(columns={"utilization_ratio": "value", "utilization_ratio_n": "weight"})
        return out.merge(n_dev.reset_index(), on=["time", "site"], how="left")
    per_dev = store.query(Query("accelerator", ("utilization_ratio",),
                                group_by=("site", "device"), agg=Aggregate.MEAN, **q))
    per_dev["busy"] = per_dev.utilization_ratio > busy_level
    g = per_dev.groupby(["time", "site"])
    return pd.DataFrame({"value": g.busy.mean(), "weight": g.size(),
                         "accelerators": g.size()}).reset_index()


def utilization_by(store: Store, period: Period, topology: Topology, *,
                   window: timedelta = timedelta(hours=1),
                   definition: Definition = "time_weighted",
                   busy_level: float = 0.10) -> dict[str, pd.DataFrame]:
    """Per level: a frame of (time, subject, value, weight, accelerators) windows."""
    sites = _site_windows(store, period, window, definition, busy_level)
    place = {s.id: (s.cluster or "", s.hub, s.province) for s in topology.sites}
    sites = sites[sites.site.isin(place)]
    sites = sites.assign(cluster=[place[s][0] for s in sites.site],
                         hub=[place[s][1] for s in sites.site],
                         province=[place[s][2] for s in sites.site])
    out = {"site": sites.rename(columns={"site": "subject"})[
        ["time", "subject", "value", "weight", "accelerators"]]}
    for level in ("cluster", "hub", "province"):
        d = sites[sites[level] != ""].assign(vw=lambda x: x.value * x.weight)
        g = d.groupby(["time", level])
        agg = pd.DataFrame({"vw": g.vw.sum(), "weight": g.weight.sum(),
                            "accelerators": g.accelerators.sum()}).reset_index()
        agg["value"] = agg.vw / agg.weight
        out[level] = agg.rename(columns={level: "subject"})[
            ["time", "subject", "value", "weight", "accelerators"]]
    return out


def window_totals(windows: pd.DataFrame, window: timedelta) -> tuple[float, float]:
    """(value, idle accelerator-hours) of some `utilization_by` windows of one subject.

    The value is the sample-weighted mean of the windows' values; windows without data (NaN)
    count for neither, so a partly covered span is not diluted by the time it lacks. Shared by
    the episodes here and the regulator report's period totals, so both state one number.
    """
    weight = float(windows.weight.sum())
    observed = float((windows.value * windows.weight).sum() / weight) if weight else float("nan")
    # Capacity left unused: accelerators x hours x (1 - utilization or busy share).
    idle_ah = float((windows.accelerators * (1 - windows.value)).sum()
                    * (window / timedelta(hours=1)))
    return observed, idle_ah


def _region(topology: Topology, level: str, subject: str) -> str | None:
    try:
        if level == "site":
            return topology.hub(topology.site(subject).hub).region
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
        return s.hub, s.cluster or "", s.id
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
    by_level = utilization_by(store, period, topology, window=window, definition=definition,
                              busy_level=busy)
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
                observed, idle_ah = window_totals(sl, window)
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
