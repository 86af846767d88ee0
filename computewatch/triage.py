"""Findings grouped by root cause: the one screen a NOC reads before the rows, the ``group``
label that lets Alertmanager send one notification per cause, and the JSON columns.

A group is one cause as far as the findings' own fields show it:

- Acute findings (`computewatch.findings.is_acute`) join when their windows overlap and their
  places are one: the same site; a site and its cluster (or two findings naming the same
  cluster); a link and either of its sites; a device only with itself. Joined transitively,
  so a cluster going idle (underuse on the cluster and its sites, anomalies on the sites) is
  one group. The group is named after its broadest member (``cluster:helinger``,
  ``site:bj-ai``, ``link:a|b``).
- Chronic findings group by pipeline and rule (``chronic:underuse:
  site_below_minimum``): standing conditions are one planning digest per kind, not one page
  per subject.

Nothing here decides what is true; it only orders and gathers what the pipelines found.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from computewatch.findings import (
    FINDING_COLUMNS,
    Analysis,
    Finding,
    Period,
    Severity,
    incident_id,
    is_acute,
    most_urgent_first,
)

__all__ = ["JSON_COLUMNS", "RootCause", "group_ids", "root_causes", "triage_frame"]

JSON_COLUMNS = [*(c for c in FINDING_COLUMNS if c != "detail"), "incident", "group", "acute",
                "detail"]
"""The columns of ``analyze --format json``: the finding's fields in their order, then its
incident id, its root-cause group, whether it is acute, and its rule's attributes."""

_BREADTH = {"hub": 0, "province": 1, "hub_pair": 1, "cluster": 2, "city": 3, "site": 4,
            "link": 5, "node": 6, "accelerator": 7, "device": 7}
"""Broader subjects name a group before narrower ones."""

_SLACK = timedelta(minutes=15)
"""Windows this close count as overlapping: one cause seen by pipelines on other grids."""


def _places(f: Finding) -> set[str]:
    """The places a finding is about, as ``kind:id`` keys that another finding may share.
    A device or node is a place of its own: a card that fell off the bus is not explained by
    its site's utilization, nor the other way round."""
    if f.subject_type in ("accelerator", "device", "node"):
        return {f"{f.subject_type}:{f.subject}"}
    out = set()
    if f.subject_type == "link":
        out |= {f"site:{s}" for s in f.subject.split("|") if s}
    if f.site:
        out.add(f"site:{f.site}")
    if f.cluster:
        out.add(f"cluster:{f.cluster}")
    if f.subject_type in ("site", "cluster", "hub", "province", "city", "link"):
        out.add(f"{f.subject_type}:{f.subject}")
    return out


def _overlap(a: Finding, b: Finding) -> bool:
    return a.start < b.end + _SLACK and b.start < a.end + _SLACK


def group_ids(findings: Sequence[Finding], period: Period | None = None) -> list[str]:
    """Each finding's root-cause group (see the module docstring), in the given order."""
    parent = list(range(len(findings)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    acute = [is_acute(f, period) for f in findings]
    places = [_places(f) for f in findings]
    by_place: dict[str, list[int]] = {}
    for i in range(len(findings)):
        if acute[i]:
            for p in places[i]:
                by_place.setdefault(p, []).append(i)
    for members in by_place.values():
        for x, i in enumerate(members):
            for j in members[x + 1:]:
                if _overlap(findings[i], findings[j]):
                    parent[find(i)] = find(j)
    components: dict[int, list[Finding]] = {}
    for i, f in enumerate(findings):
        if acute[i]:
            components.setdefault(find(i), []).append(f)
    names = {r: _name(members) for r, members in components.items()}
    return [names[find(i)] if acute[i] else f"chronic:{f.pipeline}:{f.rule}"
            for i, f in enumerate(findings)]


def _name(members: list[Finding]) -> str:
    """A group's name: its broadest area finding (hub, province, cluster); else the one site
    all its findings touch; else the cluster all its sites share; else its broadest member."""
    def rank(f: Finding) -> tuple:
        return _BREADTH.get(f.subject_type, 9), f.start, -int(f.severity), f.subject

    areas = [f for f in members if _BREADTH.get(f.subject_type, 9) <= _BREADTH["cluster"]]
    if areas:
        best = min(areas, key=rank)
        return f"{best.subject_type}:{best.subject}"
    sites = {f.site for f in members if f.site}
    clusters = {f.cluster for f in members}
    if len(members) > 1 and len(sites) == 1:
        return f"site:{sites.pop()}"
    if len(members) > 1 and len(clusters) == 1 and "" not in clusters:
        return f"cluster:{clusters.pop()}"
    best = min(members, key=rank)
    return f"{best.subject_type}:{best.subject}"


@dataclass(frozen=True, slots=True)
class RootCause:
    """One group of findings: its name, whether it is acute, its worst severity, when, and
    what the pipelines said (rules with their counts, and the most urgent finding)."""

    group: str
    acute: bool
    severity: Severity
    start: datetime
    end: datetime
    findings: int
    rules: tuple[tuple[str, int], ...]
    headline: Finding


def root_causes(findings: Sequence[Finding], period: Period | None = None) -> list[RootCause]:
    """The groups of ``findings``, most urgent first (by each group's most urgent finding)."""
    ordered = most_urgent_first(findings, period)
    ids = group_ids(ordered, period)
    members: dict[str, list[Finding]] = {}
    for gid, f in zip(ids, ordered, strict=True):
        members.setdefault(gid, []).append(f)  # first seen = most urgent
    out = []
    for gid, fs in members.items():
        rules = Counter(f"{f.pipeline}/{f.rule}" for f in fs)
        out.append(RootCause(gid, is_acute(fs[0], period), max(f.severity for f in fs),
                             min(f.start for f in fs), max(f.end for f in fs), len(fs),
                             tuple(rules.most_common()), fs[0]))
    return out


def _jsonable(value: object) -> object:
    """detail values as JSON can carry them: numpy scalars as numbers, NaN as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def triage_frame(analysis: Analysis) -> pd.DataFrame:
    """The analysis' findings most urgent first with `JSON_COLUMNS`: incident id, root-cause
    group and acute beside the finding's fields."""
    findings = list(analysis.findings)
    df = analysis.frame()
    if df.empty:
        return pd.DataFrame(columns=JSON_COLUMNS)
    ordered = most_urgent_first(findings, analysis.period)
    df = df.assign(incident=[incident_id(f) for f in ordered],
                   group=group_ids(ordered, analysis.period),
                   acute=[is_acute(f, analysis.period) for f in ordered],
                   detail=[_jsonable(f.detail) for f in ordered])
    return df[JSON_COLUMNS]
