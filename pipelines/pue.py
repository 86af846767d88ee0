"""PUE compliance: energy-based PUE per site per day and per month against its target.

The energies come from the store through the core's `computewatch.pue.meter_readings` (each
meter's last counter reading per 15-minute bucket, stamped at the bucket's end: a push-down
query, meters x buckets rows) and go through the one derivation, `computewatch.pue.windowed_pue`
(resets, gaps and missing meters handled, completeness reported), which the summary and the
report state too. Findings:

- ``pue_over_target`` per site over the whole period, and per day and month the period covers
  whole (China time): the window's PUE above the site's
  regional target (policy, with its source); warning, critical more than 0.10 above;
- ``pue_incomplete``: completeness below the policy floor (0.90, after 1711号): the site is
  flagged as under-metered instead of being scored;
- ``pue_excursion``: hours whose PUE rises more than ``excursion`` above the site's own
  median over the period (a cooling fault, a failed chiller) for at least one hour, with the
  episode's start and end, so NOC staff see when it happened and not only that a day failed.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from computewatch.findings import Finding, Period, Severity
from computewatch.pipelines._episodes import episodes
from computewatch.policy import Policy
from computewatch.pue import DEFINITION, meter_readings, windowed_pue
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
        return []
    floor = float(policy.pue.min_completeness.value)
    places = readings.drop_duplicates("site").set_index("site")[["hub", "cluster"]]
    findings: list[Finding] = []
    incomplete: dict[tuple[str, str], list] = {}
    for name in windows:
        got = windowed_pue(readings, period, policy, name)
        for r in got.itertuples():
            if r.window_start < pd.Timestamp(period.start) or \
                    r.window_end > pd.Timestamp(period.end):
                continue  # only windows the period covers whole
            hub, cluster = places.at[r.site, "hub"], places.at[r.site, "cluster"]
            region = _region(topology, r.site, hub)
            entry = policy.pue_target_entry(region, r.site)
            common = dict(completeness=float(r.completeness), hub=hub, cluster=cluster,
                          site=r.site, start=r.window_start.to_pydatetime(),
                          end=r.window_end.to_pydatetime())
            if r.completeness < floor:
                incomplete.setdefault((r.site, name), []).append(r)
                continue
            if r.pue > entry.value:
                sev = Severity.CRITICAL if r.pue > entry.value + 0.10 else Severity.WARNING
                findings.append(Finding(
                    "pue", "pue_over_target", "site", r.site, sev, float(r.pue),
                    float(entry.value), "factor",
                    definition=f"{DEFINITION}; {name} window; target source: {entry.source}",
                    message=f"{r.site}: PUE {r.pue:.3f} > target {entry.value:.2f} over the "
                            f"{name} window", **common))
    for (site, name), rows in incomplete.items():
        findings.extend(_incomplete_findings(site, name, rows, floor,
                                             places.at[site, "hub"], places.at[site, "cluster"]))
    hourly = windowed_pue(readings, period, policy, "1h")
    for site, g in hourly.groupby("site"):
        pue = g.set_index("window_start").pue
        median = float(np.nanmedian(pue.to_numpy())) if pue.notna().any() else np.nan
        if np.isnan(median):
            continue
        for ep in episodes((pue > median + excursion).to_numpy(), 1):
            sl = pue.iloc[ep.first: ep.last + 1]
            findings.append(Finding(
                "pue", "pue_excursion", "site", str(site), Severity.WARNING,
                float(sl.max()), median + excursion, "factor",
                sl.index[0].to_pydatetime(), (sl.index[-1] + timedelta(hours=1)).to_pydatetime(),
                completeness=float(g.completeness.iloc[ep.first: ep.last + 1].mean()),
                hub=places.at[site, "hub"], cluster=places.at[site, "cluster"], site=str(site),
                definition=f"{DEFINITION}; hourly PUE more than {excursion} above the site's "
                           f"median over the period",
                message=f"{site}: hourly PUE up to {sl.max():.3f} against a median of "
                        f"{median:.3f}, {len(sl)} h"))
    return findings


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
        out.append(Finding(
            "pue", "pue_incomplete", "site", site, Severity.WARNING, completeness, floor,
            "ratio", run[0].window_start.to_pydatetime(), run[-1].window_end.to_pydatetime(),
            completeness=completeness, hub=hub, cluster=cluster, site=site,
            definition=DEFINITION,
            message=f"{site}: only {completeness:.0%} of {span} metered ({flags}); "
                    "PUE not stated"))
    return out
