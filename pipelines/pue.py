"""PUE compliance: energy-based PUE per site per day and per month against its target.

The energies come from the store through the core's `computewatch.pue.meter_readings` (each
counter's last and highest reading per 15-minute bucket, so resets are seen on the raw
readings; power-only meters as their mean per minute) and go through the one derivation,
`computewatch.pue.windowed_pue` over the topology's declared meters (resets, gaps, power-only
meters and silent meters handled, completeness reported), which the summary and the report
state too. Findings, one per site and window (a window that coincides with another, such as
the whole period and the one China day it spans, is reported once, under the calendar name):

- ``pue_over_target`` per site over the whole period, and per day and month the period covers
  whole (China time): the window's PUE above the site's regional target (policy, with its
  source); warning, critical more than 0.10 above. Its ``detail`` states the ISO/IEC 30134-2
  label (``category``, ``interim``, ``label``) and the GB 40879-2021 ``grade``;
- ``pue_incomplete``: completeness below the policy floor (0.90, after 1711号): the site is
  flagged as under-metered instead of being scored, naming the declared meters that were
  silent (``detail["silent_meters"]``, each meter's share in ``detail["meter_coverage"]``).
  A site none of whose meters reported in the period is no finding here: the report lists it
  as ``no_data`` (and the agents' own alerts say the site stopped reporting);
- ``pue_excursion``: hours whose PUE rises more than ``excursion`` above the site's own
  median over the period (a cooling fault, a failed chiller) for at least one hour, with the
  episode's start and end, so NOC staff see when it happened and not only that a day failed.

The rule names and ``subject_type="site"`` with the window's start and end are what scorers
match on (site and period overlap).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from computewatch.findings import Finding, Period, Severity
from computewatch.pipelines._episodes import episodes
from computewatch.policy import Policy
from computewatch.pue import DEFINITION, meter_readings, pue_label, windowed_pue
from computewatch.rule_definitions import PUE_EXCURSION, PUE_OVER_TARGET
from computewatch.store import Store
from computewatch.topology import Topology

__all__ = ["run"]


def _region(topology: Topology, site: str, hub: str) -> str | None:
    """The site's region (its own where it belongs to no hub), else its hub's, else None."""
    try:
        return topology.region_of(site)
    except KeyError:
        return topology.hub(hub).region if hub in {h.id for h in topology.hubs} else None


def run(store: Store, period: Period, policy: Policy, topology: Topology, *,
        excursion: float = 0.15,
        windows: tuple[str, ...] = ("all", "1d", "month")) -> list[Finding]:
    readings = meter_readings(store, period)
    if readings.empty:
        return []  # no meter data at all: nothing to say about PUE
    floor = float(policy.pue.min_completeness.value)
    places = _places(readings, topology)
    findings: list[Finding] = []
    incomplete: dict[tuple[str, str], list] = {}
    spans: set[tuple[str, pd.Timestamp, pd.Timestamp]] = set()
    for name in sorted(windows, key=lambda n: n == "all"):  # calendar names first
        got = windowed_pue(readings, period, policy, name, topology=topology)
        for r in got.itertuples():
            if r.window_start < pd.Timestamp(period.start) or \
                    r.window_end > pd.Timestamp(period.end):
                continue  # only windows the period covers whole
            if (r.site, r.window_start, r.window_end) in spans:
                continue  # one finding per site and window
            spans.add((r.site, r.window_start, r.window_end))
            hub, cluster = places.get(r.site, ("", ""))
            region = _region(topology, r.site, hub)
            entry = policy.pue_target_entry(region, r.site)
            common = dict(completeness=float(r.completeness), hub=hub, cluster=cluster,
                          site=r.site, start=r.window_start.to_pydatetime(),
                          end=r.window_end.to_pydatetime())
            if r.flag == "no_data":
                continue  # no meter of the site reported: a no-data row, not a finding
            if r.completeness < floor:
                incomplete.setdefault((r.site, name), []).append(r)
                continue
            if r.pue > entry.value:
                sev = Severity.CRITICAL if r.pue > entry.value + 0.10 else Severity.WARNING
                label = pue_label(int(r.category), bool(r.interim))
                findings.append(Finding(
                    "pue", "pue_over_target", "site", r.site, sev, float(r.pue),
                    float(entry.value), "factor",
                    definition=PUE_OVER_TARGET.format(pue=DEFINITION, window=name,
                                                      source=entry.source),
                    message=f"{r.site}: {label} {r.pue:.3f} > target {entry.value:.2f} over "
                            f"the {name} window" + _grade_text(policy, float(r.pue)),
                    detail={**_labels(r, policy), "window": name}, **common))
    seen: set[tuple[str, object, object]] = set()
    for (site, name), rows in incomplete.items():
        for f in _incomplete_findings(site, name, rows, floor, *places.get(site, ("", ""))):
            if (f.site, f.start, f.end) not in seen:  # merged runs may span another window
                seen.add((f.site, f.start, f.end))
                findings.append(f)
    findings.extend(_excursions(readings, period, policy, topology, places, excursion))
    return findings


def _places(readings: pd.DataFrame, topology: Topology) -> dict[str, tuple[str, str]]:
    """Site -> (hub, cluster): the topology's, else the readings' labels."""
    out = {s.id: (s.hub, s.cluster or "") for s in topology.sites}
    for r in readings.drop_duplicates("site").itertuples():
        out.setdefault(r.site, (r.hub, r.cluster))
    return out


def _labels(r, policy: Policy) -> dict:
    """What a PUE finding states beside the number: ISO/IEC 30134-2 label, GB 40879 grade,
    and the meters that were not there all the time."""
    return {"category": int(r.category), "interim": bool(r.interim),
            "label": pue_label(int(r.category), bool(r.interim)),
            "grade": policy.pue_grade(float(r.pue)), "silent_meters": list(r.silent_meters),
            "meter_coverage": dict(r.meter_coverage),
            "undeclared_meters": list(r.undeclared_meters),
            "facility_joules": float(r.facility_joules), "it_joules": float(r.it_joules),
            "resets": int(r.resets)}


def _grade_text(policy: Policy, pue: float) -> str:
    if not policy.pue.grades:
        return ""
    grade = policy.pue_grade(pue)
    return (f"; GB 40879-2021 grade {grade}" if grade is not None
            else "; above the GB 40879-2021 limit value")


def _silent_text(rows: list) -> str:
    """The silent meters of a run of windows with their least coverage: 's1-aux 0%'."""
    worst: dict[str, float] = {}
    for r in rows:
        for meter, share in dict(r.meter_coverage).items():
            if share < 1.0:
                worst[meter] = min(share, worst.get(meter, 1.0))
    if not worst:
        return ""
    names = ", ".join(f"{m} {worst[m]:.0%}" for m in sorted(worst, key=lambda m: (worst[m], m)))
    return f"; silent meters (share of time reporting): {names}"


def _incomplete_findings(site: str, name: str, rows: list, floor: float, hub: str,
                         cluster: str) -> list[Finding]:
    """One ``pue_incomplete`` finding per run of adjacent under-metered windows.

    A month of which the store holds one day would otherwise raise thirty daily findings for
    one fact (the meters were not read); the run's completeness is the mean of its windows'.
    """
    runs: list[list] = []
    for r in rows:  # windows come in time order
        if runs and runs[-1][-1].window_end == r.window_start:
            runs[-1].append(r)
        else:
            runs.append([r])
    out = []
    for run in runs:
        completeness = float(np.mean([r.completeness for r in run]))
        flags = ", ".join(sorted({str(r.flag) for r in run}))
        span = f"the {name} window" if len(run) == 1 else f"{len(run)} consecutive {name} windows"
        silent = sorted({m for r in run for m in r.silent_meters})
        coverage = {m: float(np.mean([dict(r.meter_coverage).get(m, 0.0) for r in run]))
                    for m in silent}
        what = f"only {completeness:.0%} of {span} metered ({flags})"
        out.append(Finding(
            "pue", "pue_incomplete", "site", site, Severity.WARNING, completeness, floor,
            "ratio", run[0].window_start.to_pydatetime(), run[-1].window_end.to_pydatetime(),
            completeness=completeness, hub=hub, cluster=cluster, site=site,
            definition=DEFINITION,
            message=f"{site}: {what}{_silent_text(run)}; PUE not stated",
            detail={"window": name, "silent_meters": silent, "meter_coverage": coverage,
                    "flags": flags}))
    return out


def _excursions(readings: pd.DataFrame, period: Period, policy: Policy, topology: Topology,
                places: dict[str, tuple[str, str]], excursion: float) -> list[Finding]:
    """Hourly PUE episodes more than ``excursion`` above the site's median of the period."""
    out = []
    hourly = windowed_pue(readings, period, policy, "1h", topology=topology)
    for site, g in hourly.groupby("site"):
        pue = g.set_index("window_start").pue
        median = float(np.nanmedian(pue.to_numpy())) if pue.notna().any() else np.nan
        if np.isnan(median):
            continue
        hub, cluster = places.get(str(site), ("", ""))
        for ep in episodes((pue > median + excursion).to_numpy(), 1):
            sl = pue.iloc[ep.first: ep.last + 1]
            out.append(Finding(
                "pue", "pue_excursion", "site", str(site), Severity.WARNING,
                float(sl.max()), median + excursion, "factor",
                sl.index[0].to_pydatetime(), (sl.index[-1] + timedelta(hours=1)).to_pydatetime(),
                completeness=float(g.completeness.iloc[ep.first: ep.last + 1].mean()),
                hub=hub, cluster=cluster, site=str(site),
                definition=PUE_EXCURSION.format(pue=DEFINITION, excursion=excursion),
                message=f"{site}: hourly PUE up to {sl.max():.3f} against a median of "
                        f"{median:.3f}, {len(sl)} h",
                detail={"median": median, "hours": len(sl)}))
    return out
