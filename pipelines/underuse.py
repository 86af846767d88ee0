"""Underused capacity: sites, clusters, hubs and provinces below their utilization minimum.

Two definitions, both defined with their text in the core (`computewatch.utilization`, which
the summary and the report use too); the policy chooses one per level
(``utilization.minimums.<level>.definition``) and every finding states which it applied:

- ``time_weighted``: the mean of the utilization samples in each window, weighted by
  samples, so a level's value is its accelerators' time-weighted mean utilization;
- ``busy_fraction``: the share of accelerator-windows whose mean utilization exceeds the
  policy's busy level (an accelerator counts as busy for a window, or it does not).

Sustained shortfalls (`computewatch.pipelines._episodes.sustained_below`): in windows of
``window`` (default 1 h) from the period's start, a run of the policy's ``sustained_hours``
(6 h) whose weighted mean is below the minimum is below; overlapping below runs make one
episode, one finding. The rolling mean is what makes the rule robust: one busy hour from job
churn inside an underused day does not break it (a run that holds it stays below on average),
and windows without data count for nothing, so gaps lower the finding's completeness instead
of splitting or erasing it. An episode's ends are trimmed of busy windows while it stays
sustained, so it starts and ends on a shortfall. Severity: critical below half the minimum,
warning otherwise.

Each finding carries the episode's value over its windows (below the minimum by
construction), whether it is chronic (``detail["chronic"]``: the episode fills half the
period or more, or the subject averages below its minimum outside it too; else it is new,
acute, and the message says so), the idle accelerator-hours
(`computewatch.utilization.IDLE_DEFINITION`),
the idle share (1 - the value) and its completeness: the mean of its windows' completeness
(`computewatch.utilization.COMPLETENESS_DEFINITION`; a window without data counts 0, and a
cluster's, hub's or province's counts its silent member sites). Minimums come from the
policy per level, region and subject.

Idle capacity is split by allocation (`computewatch.utilization.ALLOCATION_DEFINITION`):
each finding's idle accelerator-hours come with their allocated part (cards pods held) and
their free part (``detail["allocated_idle_hours"]``, ``detail["free_idle_hours"]``; they
add up), and namespaces whose pods hold cards idle for the sustained hours get findings of
their own (rule ``allocated_idle``, `computewatch.pipelines._held_idle`).

All aggregation is pushed into the store: windowed queries per site and device, so memory
grows with devices x windows, not with samples.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd

from computewatch.findings import Finding, Period, Severity
from computewatch.pipelines._episodes import sustained_below
from computewatch.pipelines._held_idle import allocated_idle_findings
from computewatch.policy import Policy
from computewatch.rule_definitions import UNDERUSE
from computewatch.store import Store
from computewatch.topology import Topology
from computewatch.utilization import (
    COMPLETENESS_DEFINITION,
    DEFINITIONS,
    LEVELS,
    Definition,
    idle_split_windows,
    utilization_windows_by_definition,
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
        definition: Definition | None = None, window: timedelta = timedelta(hours=1),
        sustained_hours: float | None = None, levels: tuple[str, ...] = LEVELS) -> list[Finding]:
    """Underuse findings for every level, one per sustained episode below the minimum.

    ``definition`` overrides the policy's choice for every level (None: the policy's).
    """
    if definition is not None and definition not in DEFINITIONS:
        raise ValueError(f"unknown definition {definition!r} (use {', '.join(DEFINITIONS)})")
    busy = float(policy.utilization.busy_level.value)
    sustained = float(sustained_hours if sustained_hours is not None
                      else policy.utilization.sustained_hours.value)
    span = max(1, int(np.ceil(timedelta(hours=sustained) / window)))
    grid = pd.date_range(period.start, period.end, freq=window, inclusive="left")
    chosen = {level: definition or policy.utilization_definition_entry(level).value
              for level in levels}
    frames = utilization_windows_by_definition(store, period, topology,
                                               definitions=list(chosen.values()),
                                               window=window, busy_level=busy)
    findings = []
    for level in levels:
        for subject, g in frames[chosen[level]][level].groupby("subject"):
            findings.extend(_subject_findings(
                level, str(subject), g.set_index("time").reindex(grid), policy, topology,
                chosen[level], span, window, sustained))
    split = idle_split_windows(store, period, window=window)
    findings = [_with_split(split, f, topology) for f in findings]
    any_frame = next(iter(frames.values()))
    sites = any_frame["site"].groupby("subject").accelerators.max() \
        if "site" in any_frame else pd.Series(dtype=float)
    findings.extend(allocated_idle_findings(
        store, period, policy, topology, window=window, sustained_hours=sustained,
        site_accelerators={str(k): float(v) for k, v in sites.items()}))
    return findings


def _members(topology: Topology, level: str, subject: str) -> list[str]:
    """The topology sites a subject of ``level`` covers."""
    attr = {"site": "id", "cluster": "cluster", "hub": "hub", "province": "province"}[level]
    return [s.id for s in topology.sites if getattr(s, attr) == subject]


def _with_split(split: pd.DataFrame, f: Finding, topology: Topology) -> Finding:
    """The finding with its idle accelerator-hours split into allocated and free (the
    windows of its member sites inside its own window)."""
    members = _members(topology, f.subject_type, f.subject)
    if not members:
        return f
    split = split[split.site.isin(members) & (split.time >= pd.Timestamp(f.start))
                  & (split.time < pd.Timestamp(f.end))]
    held = float(split.allocated_idle_hours.sum())
    free = float(split.free_idle_hours.sum())
    message = f.message + (f"; {held:,.0f} of them held by pods, {free:,.0f} free"
                           if held > 0 else "")
    return replace(f, message=message, detail={**f.detail, "allocated_idle_hours": held,
                                               "free_idle_hours": free})


def _subject_findings(level: str, subject: str, s: pd.DataFrame, policy: Policy,
                      topology: Topology, definition: str, span: int, window: timedelta,
                      sustained: float) -> list[Finding]:
    """One finding per sustained episode of one subject's windows (laid on the full grid)."""
    entry = policy.utilization_minimum_entry(level, _region(topology, level, subject), subject)
    threshold = float(entry.value)
    out = []
    for ep in sustained_below(s.value.to_numpy(), s.weight.fillna(0).to_numpy(), threshold,
                              span):
        sl = s.iloc[ep.first: ep.last + 1]
        observed, idle_ah = window_totals(sl)
        hub, cluster, site = _place(topology, level, subject)
        start = s.index[ep.first].to_pydatetime()
        end = (s.index[ep.last] + window).to_pydatetime()
        hours = (end - start) / timedelta(hours=1)
        completeness = float(sl.completeness.fillna(0.0).mean())
        chronic = _standing(s, ep.first, ep.last, threshold)
        sev = Severity.CRITICAL if observed < threshold / 2 else Severity.WARNING
        word = "utilization" if definition == "time_weighted" else "busy share"
        out.append(Finding(
            "underuse", f"{level}_below_minimum", level, subject, sev, observed, threshold,
            "ratio", start, end, completeness=completeness, hub=hub, cluster=cluster,
            site=site,
            definition=UNDERUSE.format(
                utilization=DEFINITIONS[definition], level=level, hours=sustained,
                minutes=window / timedelta(minutes=1), completeness=COMPLETENESS_DEFINITION,
                source=entry.source),
            message=f"{level} {subject}: {'' if chronic else 'new: '}"
                    f"{word} {observed:.1%} < {threshold:.0%} for "
                    f"{hours:.1f} h, {idle_ah:,.0f} idle accelerator-hours ({1 - observed:.0%} "
                    f"of capacity idle)"
                    + (f"; {completeness:.0%} of the data" if completeness < 0.995 else ""),
            detail={"idle_accelerator_hours": idle_ah, "idle_share": 1 - observed,
                    "accelerators": float(sl.accelerators.max()), "definition": definition,
                    "windows_with_data": int(sl.value.notna().sum()),
                    "windows": len(sl), "chronic": chronic}))
    return out


def _standing(s: pd.DataFrame, first: int, last: int, threshold: float) -> bool:
    """Chronic (a standing condition) or acute (something that happened): chronic when the
    episode fills at least half of the period, or the subject's windows outside it average
    below the minimum too, or there are none; acute when the subject was at or above its
    minimum the rest of the time (a cluster that goes idle for an afternoon)."""
    if (last - first + 1) * 2 >= len(s):
        return True
    rest = pd.concat([s.iloc[:first], s.iloc[last + 1:]])
    weight = rest.weight.fillna(0.0)
    if weight.sum() <= 0:
        return True
    return float((rest.value.fillna(0.0) * weight).sum() / weight.sum()) < threshold - 1e-9
