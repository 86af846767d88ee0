"""The report model: per site and hub, utilization against its minimum, PUE against its target,
the share of link windows within their tier budget, data completeness and findings.

Nothing here derives a metric: utilization windows and idle accelerator-hours come from the
core's `computewatch.utilization` (`utilization_windows`, `window_totals`), PUE from
`computewatch.pue` (`meter_readings`, `windowed_pue`), tier compliance from
`computewatch.compliance.window_compliance`, thresholds and sources from the policy, and the
findings and pipeline status from the `computewatch.findings.Analysis` the caller ran (the
pipelines' one runner; reports import no pipeline). This module lays them side by side for
one period and one scope.

A verdict (pass or fail) is stated only where the data covers at least the policy's
completeness floor (``pue.min_completeness``, 90% after 1711号) of the period; below it the
verdict is ``incomplete`` and the observed value is shown for the covered time alone, so time
the store does not hold is never scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from computewatch.compliance import window_compliance
from computewatch.config import suggest_known
from computewatch.findings import Analysis
from computewatch.policy import Policy
from computewatch.pue import meter_readings, windowed_pue
from computewatch.reports._period import ReportPeriod
from computewatch.store import Store
from computewatch.topology import Topology
from computewatch.utilization import DEFINITIONS, utilization_windows, window_totals

__all__ = ["COLUMNS", "SHIPPED_POLICY", "EmptyPeriodError", "Report", "build_report",
           "check_scope"]

COLUMNS: dict[str, str] = {
    "level": "site or hub",
    "id": "site or hub id (topology)",
    "name": "site or hub name",
    "hub": "hub id",
    "cluster": "cluster id, empty outside the 10 clusters (hub rows: empty)",
    "region": "east or west (the hub's region), which selects regional thresholds",
    "accelerators": "most accelerators reporting in any utilization window of the period",
    "accelerators_installed": "accelerators in the topology's inventory",
    "utilization": "utilization over the covered windows (ratio 0..1; definition in "
                   "utilization_definition)",
    "utilization_minimum": "the policy minimum for the level, region and subject (ratio)",
    "utilization_verdict": "pass (>= minimum), fail, incomplete (completeness below the "
                           "floor: not scored) or no_data",
    "utilization_completeness": "windows with accelerator data / windows in the period "
                                "(hub rows: the mean over the hub's sites)",
    "idle_accelerator_hours": "sum over utilization samples of (1 - utilization) x the "
                              "sampling interval (time without samples counts for nothing)",
    "pue": "energy-based PUE over the period (facility / IT energy); empty when not stated",
    "pue_target": "the policy PUE target for the region and site",
    "pue_verdict": "pass (<= target), fail, incomplete, no_it_meter, no_facility_meter or "
                   "no_data",
    "pue_completeness": "share of the period's 15-minute slots that every meter covers",
    "link_windows": "link windows in the period (links touching the subject x windows)",
    "link_windows_with_data": "those with probes",
    "link_windows_within_budget": "those whose p95 RTT over every probe <= the tier budget",
    "link_probes": "probes sent over the links touching the subject in the period",
    "link_probes_within_budget": "those answered within the tier budget",
    "latency_compliance": "link_probes_within_budget / link_probes: the share of probes "
                          "answered within the tier budget",
    "latency_completeness": "link_windows_with_data / link_windows",
    "findings_critical": "findings with the subject's site, or on a link from it (site "
                         "rows), or with its hub (hub rows), severity critical",
    "findings_warning": "the same, severity warning",
    "findings_info": "the same, severity info",
    "utilization_definition": "time_weighted or busy_fraction",
    "period": "the period as requested, e.g. 2026-10",
    "period_start": "start of the period, UTC (ISO 8601)",
    "period_end": "end of the period (exclusive), UTC (ISO 8601)",
}
"""The columns of the report's rows and CSV, in order, with what each holds."""

SHIPPED_POLICY = "the shipped policy, computewatch/data/policy.yaml"

Progress = Callable[[str], None]
"""Called with the name of each step as it starts."""


class EmptyPeriodError(ValueError):
    """The store holds nothing for the period (or the scope): there is nothing to report."""


@dataclass(frozen=True)
class Report:
    """Everything a rendering needs; the numbers are in ``rows`` (see `COLUMNS`)."""

    period: ReportPeriod
    hub: str | None
    store_url: str
    generated: datetime
    policy: Policy
    topology: Topology
    definition: str
    window: timedelta
    latency_window: timedelta
    rows: pd.DataFrame
    utilization_windows: pd.DataFrame  # site windows (computewatch.utilization.WINDOW_COLUMNS)
    links: pd.DataFrame  # window_compliance rows of the links in scope
    findings: pd.DataFrame  # findings_frame of the scope, most severe first
    pipelines: dict[str, str]  # pipeline -> "N findings" or "failed: ..." (Analysis.status)
    coverage: dict[str, object] = field(default_factory=dict)
    policy_name: str = SHIPPED_POLICY

    @property
    def sites(self) -> pd.DataFrame:
        return self.rows[self.rows.level == "site"]

    @property
    def hubs(self) -> pd.DataFrame:
        return self.rows[self.rows.level == "hub"]

    @property
    def floor(self) -> float:
        return float(self.policy.pue.min_completeness.value)


def _verdict(value: float, threshold: float, completeness: float, floor: float, *,
             higher_is_better: bool) -> str:
    if np.isnan(value) and completeness == 0:
        return "no_data"
    if completeness < floor or np.isnan(value):
        return "incomplete"
    ok = value >= threshold - 1e-9 if higher_is_better else value <= threshold + 1e-9
    return "pass" if ok else "fail"


def _utilization_row(frame: pd.DataFrame, n_windows: int) -> dict[str, float]:
    if frame.empty:
        return {"utilization": np.nan, "idle_accelerator_hours": 0.0,
                "utilization_completeness": 0.0, "accelerators": 0}
    value, idle = window_totals(frame)
    return {"utilization": value, "idle_accelerator_hours": idle,
            "utilization_completeness": float(frame.value.notna().sum()) / n_windows,
            "accelerators": int(frame.accelerators.max())}


def _pue_row(pue: pd.DataFrame, key: str, col: str) -> dict[str, object]:
    got = pue[pue[col] == key]
    if got.empty:
        return {"pue": np.nan, "pue_completeness": 0.0, "_pue_flag": "no_data"}
    r = got.iloc[0]
    return {"pue": float(r.pue), "pue_completeness": float(r.completeness),
            "_pue_flag": str(r.flag)}


def _pue_verdict(row: dict, floor: float) -> str:
    flag = row.pop("_pue_flag")
    if flag in ("no_data", "no_it_meter", "no_facility_meter"):
        return flag
    return _verdict(row["pue"], row["pue_target"], row["pue_completeness"], floor,
                    higher_is_better=False)


def _latency_row(links: pd.DataFrame) -> dict[str, float]:
    windows = int(links.windows.sum()) if len(links) else 0
    has = int(links.windows_with_data.sum()) if len(links) else 0
    within = int(links.windows_within_budget.sum()) if len(links) else 0
    probes = float(links.probes.sum()) if len(links) else 0.0
    probes_within = float(links.probes_within_budget.sum()) if len(links) else 0.0
    return {"link_windows": windows, "link_windows_with_data": has,
            "link_windows_within_budget": within, "link_probes": probes,
            "link_probes_within_budget": probes_within,
            "latency_compliance": probes_within / probes if probes else np.nan,
            "latency_completeness": has / windows if windows else 0.0}


def _of_site(findings: pd.DataFrame, site: str) -> pd.DataFrame:
    """The findings about a site: those with it as their site, and those on a link from it
    (a link is credited to both its ends)."""
    if findings.empty:
        return findings
    ends = findings.subject.astype(str).str.split("|")
    on_link = (findings.subject_type == "link") & ends.map(lambda e: site in e)
    return findings[(findings.site == site) | on_link]


def _severity_counts(findings: pd.DataFrame) -> dict[str, int]:
    sev = findings.severity.astype(int) if len(findings) else pd.Series(dtype=int)
    return {"findings_critical": int((sev == 2).sum()), "findings_warning": int((sev == 1).sum()),
            "findings_info": int((sev == 0).sum())}


def check_scope(topology: Topology, hub: str | None, definition: str) -> None:
    """Refuse an unknown hub or utilization definition (ValueError naming the option), so a
    caller can check a request before it runs the pipelines for it."""
    known = sorted(h.id for h in topology.hubs)
    if hub is not None and hub not in known:
        raise ValueError(f"--hub {hub!r}: unknown hub ({suggest_known(hub, known)})")
    if definition not in DEFINITIONS:
        raise ValueError(f"--definition {definition!r}: unknown (use {', '.join(DEFINITIONS)})")


def build_report(store: Store, topology: Topology, policy: Policy, period: ReportPeriod,
                 analysis: Analysis, *, hub: str | None = None,
                 definition: str = "time_weighted", window: timedelta = timedelta(hours=1),
                 latency_window: timedelta = timedelta(minutes=5),
                 policy_name: str = SHIPPED_POLICY, progress: Progress | None = None) -> Report:
    """The report of ``period`` for the whole network, or for one ``hub``.

    ``analysis`` is the pipelines' run over the same period (`computewatch.pipelines.
    run_pipelines`, usually with ``write=False``): its findings of the scope and every
    pipeline's status, a failed one included, are stated as they are.

    Raises ValueError for an unknown hub or definition, or an analysis of another period,
    and `EmptyPeriodError` when the store holds no accelerator, meter or link data in the
    period for the scope.
    """
    progress = progress or (lambda _step: None)
    check_scope(topology, hub, definition)
    p = period.period
    if analysis.period != p:
        raise ValueError(f"the analysis covers {analysis.period.start:%Y-%m-%d %H:%M} – "
                         f"{analysis.period.end:%Y-%m-%d %H:%M} UTC, not the report's period "
                         f"{period.label}")
    floor = float(policy.pue.min_completeness.value)
    sites = [s for s in topology.sites if hub is None or s.hub == hub]
    site_ids = {s.id for s in sites}
    hubs = [h for h in topology.hubs if hub is None or h.id == hub]
    n_windows = len(pd.date_range(p.start, p.end, freq=window, inclusive="left"))

    progress("utilization")
    by_level = utilization_windows(store, p, topology, window=window, definition=definition,
                                   busy_level=float(policy.utilization.busy_level.value))
    site_util = by_level["site"][by_level["site"].subject.isin(site_ids)]
    progress("pue")
    readings = meter_readings(store, p)
    site_pue = windowed_pue(readings, p, policy, "all") if len(readings) else pd.DataFrame(
        columns=["site", "pue", "completeness", "flag"])
    hub_pue = windowed_pue(readings, p, policy, "all", by=("hub",)) if len(readings) else \
        pd.DataFrame(columns=["hub", "pue", "completeness", "flag"])
    progress("latency")
    links = window_compliance(store, p, policy, topology, window=latency_window)
    links = links[links.budget_s.notna()]
    if hub is not None:
        links = links[(links.src_hub == hub) | (links.dst_hub == hub)]
    metered = bool(len(readings)) and bool(readings.site.isin(site_ids).any())
    if site_util.empty and not metered and links.empty:
        raise EmptyPeriodError(_empty_message(store, period, hub))

    findings = analysis.frame()
    status = {s.name: str(s) for s in analysis.status}
    if hub is not None and len(findings):
        findings = findings[findings.hub == hub].reset_index(drop=True)

    progress("tables")
    common = {"utilization_definition": definition, "period": period.label,
              "period_start": period.start.isoformat(), "period_end": period.end.isoformat()}
    rows = []
    for s in sites:
        region = topology.region_of(s.id)
        minimum = policy.utilization_minimum_entry("site", region, s.id)
        row = {"level": "site", "id": s.id, "name": s.name, "hub": s.hub or "",
               "cluster": s.cluster or "", "region": region,
               "accelerators_installed": s.accelerator_count,
               **_utilization_row(site_util[site_util.subject == s.id], n_windows),
               "utilization_minimum": float(minimum.value),
               **_pue_row(site_pue, s.id, "site"),
               "pue_target": float(policy.pue_target_entry(region, s.id).value),
               **_latency_row(links[(links.src_site == s.id) | (links.dst_site == s.id)]),
               **_severity_counts(_of_site(findings, s.id))}
        rows.append(row)
    hub_util = by_level["hub"]
    for h in hubs:
        minimum = policy.utilization_minimum_entry("hub", h.region, h.id)
        of_hub = [r for r in rows if r["level"] == "site" and r["hub"] == h.id]
        util = _utilization_row(hub_util[hub_util.subject == h.id], n_windows)
        # A hub is complete when all its sites are: a silent site must not hide behind the rest.
        util["utilization_completeness"] = float(np.mean(
            [r["utilization_completeness"] for r in of_hub])) if of_hub else 0.0
        row = {"level": "hub", "id": h.id, "name": f"{h.name} {h.name_zh}", "hub": h.id,
               "cluster": "", "region": h.region,
               "accelerators_installed": sum(r["accelerators_installed"] for r in of_hub),
               **util,
               "utilization_minimum": float(minimum.value),
               **_pue_row(hub_pue, h.id, "hub"),
               "pue_target": float(policy.pue_target_entry(h.region).value),
               **_latency_row(links[(links.src_hub == h.id) | (links.dst_hub == h.id)]),
               **_severity_counts(findings[findings.hub == h.id] if len(findings)
                                  else findings)}
        rows.append(row)
    for row in rows:
        row["utilization_verdict"] = _verdict(
            row["utilization"], row["utilization_minimum"], row["utilization_completeness"],
            floor, higher_is_better=True)
        row["pue_verdict"] = _pue_verdict(row, floor)
        row.update(common)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return Report(period, hub, store.url, datetime.now(UTC), policy, topology, definition,
                  window, latency_window, frame, site_util.reset_index(drop=True),
                  links.reset_index(drop=True), findings, status,
                  _coverage(store, site_util, readings, links, topology, len(sites),
                            n_windows),
                  policy_name)


def _empty_message(store: Store, period: ReportPeriod, hub: str | None) -> str:
    bounds = store.time_bounds("accelerator")
    held = (f"it holds accelerator data from {bounds[0]:%Y-%m-%d %H:%M} to "
            f"{bounds[1]:%Y-%m-%d %H:%M} UTC" if bounds else
            "it holds no accelerator data at all; run `computewatch demo` or an agent first")
    scope = f" for hub {hub}" if hub else ""
    return (f"{store.url}: no accelerator, meter or link data in {period.label} "
            f"({period.start:%Y-%m-%d %H:%M} – {period.end:%Y-%m-%d %H:%M} UTC){scope}; {held}")


def _coverage(store: Store, site_util: pd.DataFrame, readings: pd.DataFrame,
              links: pd.DataFrame, topology: Topology, n_sites: int,
              n_windows: int) -> dict[str, object]:
    """What the store holds of the period, and what was left out because the topology lacks it."""
    covered = int(site_util.value.notna().sum()) if len(site_util) else 0
    expected = n_sites * n_windows
    known = {s.id for s in topology.sites}
    stored = store.series("accelerator")
    unknown = sorted(set(stored.site.dropna()) - known) if "site" in stored else []
    return {
        "site_windows_with_data": covered, "site_windows": expected, "sites": n_sites,
        "windows": n_windows,
        # Every site of the scope is expected in every window: a silent site counts as missing.
        "period_completeness": covered / expected if expected else 0.0,
        "first_window": site_util.time.min() if len(site_util) else None,
        "last_window": site_util.time.max() if len(site_util) else None,
        "meters": int(readings.meter.nunique()) if len(readings) else 0,
        "links": len(links),
        "unknown_sites": unknown,
    }
