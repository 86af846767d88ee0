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

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from types import SimpleNamespace

import numpy as np
import pandas as pd

from computewatch import __version__
from computewatch.compliance import window_compliance
from computewatch.config import suggest_known
from computewatch.findings import Analysis, Period
from computewatch.i18n import N_
from computewatch.policy import Policy, policy_sha256
from computewatch.pue import CHINA_TZ, PUE_COLUMNS, meter_readings, windowed_pue
from computewatch.reports._period import ReportPeriod, readable_period
from computewatch.store import Store, resolution
from computewatch.topology import Topology
from computewatch.utilization import (
    DEFINITIONS,
    FREE,
    allocation_totals,
    held_idle_windows,
    idle_split,
    read_ahead,
    sampling_interval,
    utilization_windows_by_definition,
    window_totals,
)

__all__ = ["COLUMNS", "NAMESPACE_COLUMNS", "SHIPPED_POLICY", "EmptyPeriodError", "Report",
           "build_report", "check_scope"]

COLUMNS: dict[str, str] = {
    "level": N_("site or hub"),
    "id": N_("site or hub id (topology)"),
    "name": N_("site or hub name"),
    "hub": N_("hub id"),
    "cluster": N_("cluster id, empty outside the 10 clusters (hub rows: empty)"),
    "region": N_("east or west (the hub's region), which selects regional thresholds"),
    "accelerators": N_("most accelerators reporting in any utilization window of the period"),
    "accelerators_installed": N_("accelerators in the topology's inventory"),
    "utilization": N_("utilization over the covered windows (ratio 0..1; definition in "
                   "utilization_definition)"),
    "utilization_minimum": N_("the policy minimum for the level, region and subject (ratio)"),
    "utilization_verdict": N_("fail (the underuse pipeline found the subject below its minimum "
                           "for at least sustained_hours in the period: the finding analyze "
                           "reports), pass (no such finding and completeness at least the "
                           "floor), incomplete (no finding, completeness below the floor: not "
                           "scored) or no_data; with a --definition other than the policy's, "
                           "the period value against the minimum"),
    "utilization_shortfall_hours": N_("hours of the period inside the subject's underuse "
                                   "findings (empty when the verdict is not from them)"),
    "utilization_completeness": N_("windows with accelerator data / windows in the period "
                                "(hub rows: the mean over the hub's sites, a silent one at 0)"),
    "idle_accelerator_hours": N_("sum over utilization samples of (1 - utilization) x the "
                              "sampling interval (time without samples counts for nothing)"),
    "allocated_idle_hours": N_("the part of idle_accelerator_hours from accelerators a pod held "
                            "(Kubernetes: the namespace label is set): capacity tenants held "
                            "and left unused"),
    "free_idle_hours": N_("the part of idle_accelerator_hours from accelerators no pod held: "
                       "capacity others could use (allocated_idle_hours + free_idle_hours = "
                       "idle_accelerator_hours)"),
    "pue": N_("energy-based PUE over the period (facility / IT energy); empty when not stated"),
    "pue_target": N_("the policy PUE target for the region and site"),
    "pue_verdict": N_("pass (<= target), fail, incomplete, no_it_meter, no_facility_meter or "
                   "no_data"),
    "pue_completeness": N_("share of the period's 15-minute slots that every declared facility "
                        "and IT meter covers (hub rows: of the hub's reporting sites)"),
    "pue_category": N_("ISO/IEC 30134-2 category from where IT energy is metered: 1 UPS output, "
                    "2 PDU output, 3 IT equipment input (the lowest when meters mix); 0 when "
                    "the meters' points are not declared"),
    "pue_interim": N_("true when the period is shorter than 12 months: the PUE is an interim PUE "
                   "(ISO/IEC 30134-2)"),
    "pue_grade": N_("GB 40879-2021 energy-efficiency grade the stated PUE meets (1, 2, 3; "
                 "over_limit above grade 3, the limit value); empty when no PUE is stated. "
                 "The standard grades 12-month figures: for an interim PUE it is indicative"),
    "facility_energy_kwh": N_("facility energy (the incomer meters) over the slots the PUE "
                           "covers, kWh (3.6 MJ); empty when no PUE slot is covered"),
    "it_energy_kwh": N_("IT energy over the same slots, kWh"),
    "pue_silent_meters": N_("declared meters that did not cover the whole period, with the share "
                         "of it they covered (e.g. 's1-aux 0%')"),
    "pue_12m": N_("the 12-month PUE ending at the period's end, when the store holds meter "
               "readings from 12 months before it (ISO/IEC 30134-2's PUE proper); empty "
               "otherwise or below the completeness floor"),
    "pue_12m_completeness": N_("completeness of the 12-month PUE; empty when the store holds less "
                            "than 12 months"),
    "link_windows": N_("link windows in the period (links touching the subject x windows)"),
    "link_windows_with_data": N_("those with probes"),
    "link_windows_within_budget": N_("those whose p95 RTT over every probe <= the tier budget"),
    "link_probes": N_("probes sent over the links touching the subject in the period"),
    "link_probes_within_budget": N_("those answered within the tier budget"),
    "latency_compliance": N_("link_probes_within_budget / link_probes: the share of probes "
                          "answered within the tier budget"),
    "latency_completeness": N_("link_windows_with_data / link_windows"),
    "findings_critical": N_("findings about the site (site rows: its own, and a link's at "
                         "either end) or the hub (hub rows: of its sites, and a link's with "
                         "either end in it), severity critical"),
    "findings_warning": N_("the same, severity warning"),
    "findings_info": N_("the same, severity info"),
    "utilization_definition": N_("time_weighted or busy_fraction: the policy's for the level "
                              "(utilization.minimums.<level>.definition) unless overridden"),
    "period": N_("the period as requested, e.g. 2026-10"),
    "period_start": N_("start of the period, UTC (ISO 8601)"),
    "period_end": N_("end of the period (exclusive), UTC (ISO 8601)"),
}
"""The columns of the report's rows and CSV, in order, with what each holds."""

NAMESPACE_COLUMNS: dict[str, str] = {
    "site": N_("the site"), "hub": N_("its hub"), "namespace": N_("the Kubernetes namespace"),
    "allocated_idle_hours": N_("idle accelerator-hours of the accelerators its pods held"),
    "held_idle_card_hours": N_("hours its pods held accelerators whose window mean utilization "
                            "was at most the busy level (a held card counts whole)"),
    "cards_held_idle": N_("accelerators its pods held idle in at least one window"),
    "hours_holding_idle": N_("windows in which it held at least one idle accelerator x the "
                          "window length: for how long it held idle cards"),
}
"""The columns of the report's per-namespace table, with what each holds."""

SHIPPED_POLICY = "the shipped policy, computewatch/data/policy.yaml"

JOULES_PER_KWH = 3.6e6

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
    hub_definition: str = ""
    """The hub rows' utilization definition (``definition`` is the site rows')."""
    verdicts_from_findings: bool = False
    """True when the utilization verdicts are the underuse findings of the analysis."""
    namespaces: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=list(NAMESPACE_COLUMNS)))
    """Who holds idle accelerators: one row per site and namespace (`NAMESPACE_COLUMNS`)."""
    province: str | None = None
    """The province the report is scoped to (its English name, as the topology writes it);
    then it has site rows only: a hub row would pool sites outside the province."""
    policy_sha256: str = ""
    """SHA-256 of the policy file the report ran with (`computewatch.policy.policy_sha256`);
    empty when the caller could not name the file."""
    software_version: str = ""
    """The computewatch version that built the report."""

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


_UTILIZATION_USED = ("value", "weight", "idle_hours", "completeness", "accelerators")
"""The columns of the utilization windows `_utilization_row` reads (numbers only: picking a
subject's rows with the label strings too cost the report more than the sums)."""


def _utilization_row(windows: SimpleNamespace, n_windows: int,
                     by_quarter: bool = False) -> dict[str, float]:
    """A subject's period values from its windows (`_rows_by`'s arrays); completeness the
    share of windows with data (quarter windows: the share of each the samples cover,
    `_site_completeness`)."""
    if not len(windows.value):
        return {"utilization": np.nan, "idle_accelerator_hours": 0.0,
                "utilization_completeness": 0.0, "accelerators": 0}
    value, idle = window_totals(windows)
    covered = np.nansum(windows.completeness) if by_quarter else \
        np.count_nonzero(~np.isnan(windows.value))
    return {"utilization": value, "idle_accelerator_hours": idle,
            "utilization_completeness": float(covered) / n_windows,
            "accelerators": int(np.nanmax(windows.accelerators))}


def _rows_by(frame: pd.DataFrame, *columns: str,
             values: Sequence[str]) -> Callable[[str], SimpleNamespace]:
    """``frame``'s ``values`` columns, as arrays, at the rows whose value in any of
    ``columns`` is the key asked, in ``frame``'s order, as a boolean mask per key selects
    them, but from positions found once: the report asks once per site and hub (a month's
    link windows are 36,750 rows), and sums them with numpy as pandas would (NaN skipped,
    the same values in the same order), without a frame per key (0.1 s of a month's 2 s)."""
    where = [frame.groupby(c, sort=False, observed=True).indices if len(frame) else {}
             for c in columns]
    arrays = {c: frame[c].to_numpy() for c in values}

    def rows(key: str) -> SimpleNamespace:
        hits = [idx[key] for idx in where if key in idx]
        at = np.unique(np.concatenate(hits)) if hits else np.empty(0, np.intp)
        return SimpleNamespace(**{c: a[at] for c, a in arrays.items()})
    return rows


def _first_by(frame: pd.DataFrame, column: str) -> dict[object, dict]:
    """Each ``column`` value's first row of ``frame`` as a record (what ``frame[frame[column]
    == key].iloc[0]`` holds), looked up once per site and hub."""
    return {r[column]: r for r in reversed(frame.to_dict("records"))}


def _pue_row(got: dict | None, annual: Mapping[object, dict] | None, key: str,
             policy: Policy) -> dict[str, object]:
    """A site's or hub's PUE values from its `_first_by` record of the period's PUE (None:
    none) and the 12-month PUE's records (None: no 12-month PUE)."""
    twelve = {"pue_12m": np.nan, "pue_12m_completeness": np.nan}
    if annual is not None:
        a = annual.get(key)
        twelve = ({"pue_12m": float(a["pue"]), "pue_12m_completeness": float(a["completeness"])}
                  if a is not None else {"pue_12m": np.nan, "pue_12m_completeness": 0.0})
    if got is None:
        return {"pue": np.nan, "pue_completeness": 0.0, "_pue_flag": "no_data",
                "facility_energy_kwh": np.nan, "it_energy_kwh": np.nan,
                "pue_category": 0, "pue_interim": True, "pue_grade": "",
                "pue_silent_meters": "", **twelve}
    coverage = dict(got["meter_coverage"])
    return {"pue": float(got["pue"]), "pue_completeness": float(got["completeness"]),
            "facility_energy_kwh": _kwh(got["facility_joules"]),
            "it_energy_kwh": _kwh(got["it_joules"]),
            "_pue_flag": str(got["flag"]), "pue_category": int(got["category"]),
            "pue_interim": bool(got["interim"]), "pue_grade": _grade(policy, float(got["pue"])),
            "pue_silent_meters": "; ".join(f"{m} {coverage[m]:.0%}"
                                           for m in got["silent_meters"]),
            **twelve}


def _kwh(joules: object) -> float:
    """Joules (the counters' SI unit) as kWh, the unit energy is billed and regulated in;
    NaN when nothing was covered."""
    value = float(joules) if joules is not None else np.nan
    return value / JOULES_PER_KWH if value == value and value > 0 else np.nan


def _grade(policy: Policy, pue: float) -> str:
    if pue != pue or not policy.pue.grades:
        return ""
    grade = policy.pue_grade(pue)
    return "over_limit" if grade is None else str(grade)


def _site_and_hub_pue(readings: pd.DataFrame, period: Period, policy: Policy,
                      topology: Topology) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The period's PUE per site and per hub (`computewatch.pue.windowed_pue`)."""
    if readings.empty:
        return (pd.DataFrame(columns=["site", *PUE_COLUMNS]),
                pd.DataFrame(columns=["hub", *PUE_COLUMNS]))
    return (windowed_pue(readings, period, policy, "all", topology=topology),
            windowed_pue(readings, period, policy, "all", by=("hub",), topology=topology))


def _twelve_months(store: Store, period: Period, policy: Policy, topology: Topology
                   ) -> tuple[pd.DataFrame, pd.DataFrame] | tuple[None, None]:
    """The 12-month PUE per site and hub ending at the period's end, when the store holds
    meter readings from 12 months (China time) before that end; else (None, None)."""
    bounds = store.time_bounds("facility_power")
    start = (pd.Timestamp(period.end).tz_convert(CHINA_TZ) - pd.DateOffset(years=1)
             ).tz_convert("UTC").to_pydatetime()
    if bounds is None or bounds[0] > start:
        return None, None
    # Read as the store can answer it (a start inside daily rollups: the next UTC midnight).
    twelve = readable_period(store, ReportPeriod("12m", start, period.end)).period
    return _site_and_hub_pue(meter_readings(store, twelve), twelve, policy, topology)


def _pue_verdict(row: dict, floor: float) -> str:
    flag = row.pop("_pue_flag")
    if flag in ("no_data", "no_it_meter", "no_facility_meter"):
        return flag
    return _verdict(row["pue"], row["pue_target"], row["pue_completeness"], floor,
                    higher_is_better=False)


_LINK_SUMS = ("windows", "windows_with_data", "windows_within_budget", "probes",
              "probes_within_budget")
"""The columns of the link windows `_latency_row` sums."""


def _latency_row(links: SimpleNamespace) -> dict[str, float]:
    """A subject's link windows (`_rows_by`'s arrays) summed."""
    windows, has, within = (int(np.nansum(links.windows)), int(np.nansum(links.windows_with_data)),
                            int(np.nansum(links.windows_within_budget)))
    probes = float(np.nansum(links.probes))
    probes_within = float(np.nansum(links.probes_within_budget))
    return {"link_windows": windows, "link_windows_with_data": has,
            "link_windows_within_budget": within, "link_probes": probes,
            "link_probes_within_budget": probes_within,
            "latency_compliance": probes_within / probes if probes else np.nan,
            "latency_completeness": has / windows if windows else 0.0}


def _link_sites(subject: str) -> set[str]:
    """The sites a link finding's subject names ("a|b", either order)."""
    return {part.strip() for part in re.split(r"[|↔]", subject) if part.strip()}


def _touching(findings: pd.DataFrame, sites: set[str]) -> pd.DataFrame:
    """Findings about any of ``sites``: their own, and a link's with either end among them
    (a link finding names one site as its own, but it is as much the other end's)."""
    if findings.empty:
        return findings
    own = findings.site.isin(sites)
    link = (findings.subject_type == "link") & findings.subject.map(
        lambda subject: bool(_link_sites(str(subject)) & sites))
    return findings[own | link]


def _shortfalls(analysis: Analysis) -> dict[tuple[str, str], float]:
    """Hours of each (level, subject)'s underuse findings in the analysis."""
    out: dict[tuple[str, str], float] = {}
    for f in analysis.findings:
        if f.pipeline == "underuse" and f.rule == f"{f.subject_type}_below_minimum":
            key = (f.subject_type, f.subject)
            out[key] = out.get(key, 0.0) + (f.end - f.start) / timedelta(hours=1)
    return out


def _verdict_from_findings(row: dict, shortfall: float | None, floor: float) -> str:
    """The utilization verdict analyze gives: a sustained shortfall found is a fail."""
    if shortfall:
        return "fail"
    if np.isnan(row["utilization"]) and row["utilization_completeness"] == 0:
        return "no_data"
    return "pass" if row["utilization_completeness"] >= floor else "incomplete"


def _severity_counts(findings: pd.DataFrame) -> dict[str, int]:
    if findings.empty:
        return {"findings_critical": 0, "findings_warning": 0, "findings_info": 0}
    sev = findings.severity.astype(int)
    return {"findings_critical": int((sev == 2).sum()), "findings_warning": int((sev == 1).sum()),
            "findings_info": int((sev == 0).sum())}


def check_scope(topology: Topology, hub: str | None, definition: str | None, *,
                province: str | None = None) -> str | None:
    """Refuse an unknown hub, province or utilization definition (ValueError naming the
    option), so a caller can check a request before it runs the pipelines for it. A
    definition of None means the policy's, per level. Returns the province as the topology
    writes it (``hebei`` and 河北 are Hebei), or None."""
    known = sorted(h.id for h in topology.hubs)
    if hub is not None and hub not in known:
        raise ValueError(f"--hub {hub!r}: unknown hub ({suggest_known(hub, known)})")
    if definition is not None and definition not in DEFINITIONS:
        raise ValueError(f"--definition {definition!r}: unknown (use {', '.join(DEFINITIONS)})")
    if province is None:
        return None
    found = resolve_province(topology, province)
    if hub is not None and not any(s.hub == hub and s.province == found
                                   for s in topology.sites):
        raise ValueError(f"--province {province!r} and --hub {hub!r}: no site of the topology "
                         f"is in both")
    return found


def resolve_province(topology: Topology, text: str) -> str:
    """The province of the topology's sites that ``text`` names: its English name in any
    case, or its Chinese name where the topology gives one (with or without 省, 市, 自治区)."""
    wanted = text.strip().casefold()
    names = sorted({s.province for s in topology.sites})
    chinese: dict[str, str] = {}
    for p in getattr(topology, "provinces", []) or []:
        zh = str(getattr(p, "name_zh", "") or "")
        if zh:
            chinese[zh] = p.name
            chinese[re.sub(r"(省|市|自治区|壮族自治区|回族自治区|维吾尔自治区|特别行政区)$", "",
                           zh)] = p.name
    for name in names:
        if name.casefold() == wanted:
            return name
    if text.strip() in chinese and chinese[text.strip()] in names:
        return chinese[text.strip()]
    raise ValueError(f"--province {text!r}: no site of the topology is in it "
                     f"({suggest_known(text, names)})")


def build_report(store: Store, topology: Topology, policy: Policy, period: ReportPeriod,
                 analysis: Analysis, *, hub: str | None = None,
                 province: str | None = None, definition: str | None = None,
                 window: timedelta = timedelta(hours=1),
                 latency_window: timedelta = timedelta(minutes=5),
                 policy_name: str = SHIPPED_POLICY, policy_digest: str | None = None,
                 progress: Progress | None = None) -> Report:
    """The report of ``period`` for the whole network, or for one ``hub`` or ``province``
    (both: the hub's sites in the province). A province scope has site rows only.

    ``policy_digest`` is the SHA-256 of the policy file (None: the shipped file's when
    ``policy_name`` is `SHIPPED_POLICY`, else not stated).

    ``analysis`` is the pipelines' run over the same period (`computewatch.pipelines.
    run_pipelines`, usually with ``write=False``): its findings of the scope and every
    pipeline's status, a failed one included, are stated as they are, and where its underuse
    pipeline ran, the utilization verdicts are its findings (so the report and analyze agree
    on every site and hub). ``definition`` None applies the policy's definition per level;
    another one overrides it for every row, and then the verdict compares the period value.

    Raises ValueError for an unknown hub or definition, or an analysis of another period,
    and `EmptyPeriodError` when the store holds no accelerator, meter or link data in the
    period for the scope.
    """
    progress = progress or (lambda _step: None)
    province = check_scope(topology, hub, definition, province=province)
    if policy_digest is None:
        policy_digest = policy_sha256() if policy_name == SHIPPED_POLICY else ""
    p = period.period
    if analysis.period != p:
        raise ValueError(f"the analysis covers {analysis.period.start:%Y-%m-%d %H:%M} – "
                         f"{analysis.period.end:%Y-%m-%d %H:%M} UTC, not the report's period "
                         f"{period.label}")
    floor = float(policy.pue.min_completeness.value)
    # History kept as rollups answers windows of their grain at the finest (an hour, or a
    # day where only daily rollups hold the start): utilization windows widen to it.
    window = max(window, resolution(store, "accelerator", p.start))
    sites = [s for s in topology.sites if (hub is None or s.hub == hub)
             and (province is None or s.province == province)]
    site_ids = {s.id for s in sites}
    hubs = [h for h in topology.hubs if (hub is None or h.id == hub) and province is None]
    n_windows = len(pd.date_range(p.start, p.end, freq=window, inclusive="left"))

    progress("utilization")
    chosen = {level: definition or policy.utilization_definition_entry(level).value
              for level in ("site", "hub")}
    step = sampling_interval(store, p.start, p.end)
    long = p.end - p.start > LONG_PERIOD or \
        resolution(store, "accelerator", p.start) >= timedelta(days=1)
    pieces = _quarters(store, p) if long else None
    if pieces is None or len(pieces) == 1:  # every utilization read below is over p
        read_ahead(store, p, window=window if pieces is None else _one_window(store, p))
    if pieces is None:
        by_level = _utilization_levels(store, p, topology, chosen, window, policy, step)
    else:  # one window per calendar quarter (a month's or a quarter's: one window)
        n_windows = len(pieces)
        window = max(q.end - q.start for q in pieces)
        parts = [_utilization_levels(store, q, topology, chosen, _one_window(store, q), policy,
                                     step) for q in pieces]
        by_level = {level: pd.concat([part[level] for part in parts], ignore_index=True)
                    for level in chosen}
    site_util = by_level["site"][by_level["site"].subject.isin(site_ids)]
    progress("pue")
    readings = meter_readings(store, p)
    site_pue, hub_pue = _site_and_hub_pue(readings, p, policy, topology)
    site_12m, hub_12m = _twelve_months(store, p, policy, topology)
    progress("latency")
    links = window_compliance(store, p, policy, topology, window=latency_window)
    links = links[links.budget_s.notna()]
    if province is not None:
        links = links[links.src_site.isin(site_ids) | links.dst_site.isin(site_ids)]
    elif hub is not None:
        links = links[(links.src_hub == hub) | (links.dst_hub == hub)]
    metered = bool(len(readings)) and bool(readings.site.isin(site_ids).any())
    if site_util.empty and not metered and links.empty:
        raise EmptyPeriodError(_empty_message(store, period, hub, province))

    progress("allocation")
    per = allocation_totals(store, p.start, p.end, by=("site",), interval=step)
    split = _split_rows(idle_split(store, p.start, p.end, by=("site",), interval=step,
                                   totals=per).set_index("site"))
    namespaces = _namespaces(store, p, policy, topology, site_ids,
                             window if pieces is None else _one_window(store, p), step, per)

    findings = analysis.frame()
    status = {s.name: str(s) for s in analysis.status}
    if (hub is not None or province is not None) and len(findings):
        findings = _touching(findings, site_ids).reset_index(drop=True)
    # The verdicts are analyze's where its underuse pipeline ran with the same definitions.
    by_findings = "underuse" in analysis.succeeded and definition is None
    shortfalls = _shortfalls(analysis) if by_findings else {}

    progress("tables")
    common = {"period": period.label, "period_start": period.start.isoformat(),
              "period_end": period.end.isoformat()}
    util_of = _rows_by(site_util, "subject", values=_UTILIZATION_USED)
    hub_util_of = _rows_by(by_level["hub"], "subject", values=_UTILIZATION_USED)
    links_of_site = _rows_by(links, "src_site", "dst_site", values=_LINK_SUMS)
    links_of_hub = _rows_by(links, "src_hub", "dst_hub", values=_LINK_SUMS)
    pue_of = {"site": _first_by(site_pue, "site"), "hub": _first_by(hub_pue, "hub")}
    twelve_of = {"site": None if site_12m is None else _first_by(site_12m, "site"),
                 "hub": None if hub_12m is None else _first_by(hub_12m, "hub")}
    rows = []
    for s in sites:
        region = topology.region_of(s.id)
        minimum = policy.utilization_minimum_entry("site", region, s.id)
        row = {"level": "site", "id": s.id, "name": s.name, "hub": s.hub or "",
               "cluster": s.cluster or "", "region": region,
               "accelerators_installed": s.accelerator_count,
               **_utilization_row(util_of(s.id), n_windows, pieces is not None),
               **split([s.id]),
               "utilization_minimum": float(minimum.value),
               **_pue_row(pue_of["site"].get(s.id), twelve_of["site"], s.id, policy),
               "pue_target": float(policy.pue_target_entry(region, s.id).value),
               **_latency_row(links_of_site(s.id)),
               **_severity_counts(_touching(findings, {s.id})),
               "utilization_definition": chosen["site"]}
        rows.append(row)
    for h in hubs:
        minimum = policy.utilization_minimum_entry("hub", h.region, h.id)
        of_hub = [r for r in rows if r["level"] == "site" and r["hub"] == h.id]
        util = _utilization_row(hub_util_of(h.id), n_windows, pieces is not None)
        # A hub is complete when all its sites are: a silent site must not hide behind the rest.
        util["utilization_completeness"] = float(np.mean(
            [r["utilization_completeness"] for r in of_hub])) if of_hub else 0.0
        row = {"level": "hub", "id": h.id, "name": f"{h.name} {h.name_zh}", "hub": h.id,
               "cluster": "", "region": h.region,
               "accelerators_installed": sum(r["accelerators_installed"] for r in of_hub),
               **util,
               **split([x["id"] for x in of_hub]),
               "utilization_minimum": float(minimum.value),
               **_pue_row(pue_of["hub"].get(h.id), twelve_of["hub"], h.id, policy),
               "pue_target": float(policy.pue_target_entry(h.region).value),
               **_latency_row(links_of_hub(h.id)),
               **_severity_counts(_touching(findings, {x["id"] for x in of_hub})
                                  if of_hub else findings.iloc[0:0]),
               "utilization_definition": chosen["hub"]}
        rows.append(row)
    for row in rows:
        if by_findings:
            hours = shortfalls.get((row["level"], row["id"]), 0.0)
            row["utilization_shortfall_hours"] = hours
            row["utilization_verdict"] = _verdict_from_findings(row, hours, floor)
        else:
            row["utilization_shortfall_hours"] = np.nan
            row["utilization_verdict"] = _verdict(
                row["utilization"], row["utilization_minimum"],
                row["utilization_completeness"], floor, higher_is_better=True)
        row["pue_verdict"] = _pue_verdict(row, floor)
        row.update(common)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return Report(period, hub, store.url, datetime.now(UTC), policy, topology, chosen["site"],
                  window, latency_window, frame, site_util.reset_index(drop=True),
                  links.reset_index(drop=True), findings, status,
                  {**_coverage(set(per.site) if len(per) else set(), site_util, readings,
                               links, topology, len(sites), n_windows, pieces is not None),
                   "period_note": period.note},
                  policy_name, hub_definition=chosen["hub"], verdicts_from_findings=by_findings,
                  namespaces=namespaces, province=province, policy_sha256=policy_digest,
                  software_version=__version__)


LONG_PERIOD = timedelta(days=92)
"""Periods longer than a quarter (and any period over history kept as daily rollups) are
evaluated per calendar quarter (China time), one window each, not per hour: a year of a
national fleet per card and hour is billions of rows, and regulators read utilization by
quarter (a month inside daily rollups: one window)."""


def _quarters(store: Store, period: Period) -> list[Period]:
    """``period`` cut at the starts of calendar quarters in China time; a cut inside history
    kept as daily rollups (UTC days) moves to the next UTC midnight (`readable_period`)."""
    local = pd.Timestamp(period.start).tz_convert(CHINA_TZ)
    cuts = [period.start]
    q = pd.Timestamp(year=local.year, month=3 * ((local.month - 1) // 3) + 1, day=1,
                     tz=CHINA_TZ)
    while True:
        q = q + pd.DateOffset(months=3)
        t = q.tz_convert("UTC").to_pydatetime()
        if resolution(store, "accelerator", t) >= timedelta(days=1) and t.hour:
            t = t.replace(hour=0) + timedelta(days=1)
        if t >= period.end:
            break
        cuts.append(t)
    cuts.append(period.end)
    return [Period(a, b) for a, b in pairwise(cuts)]


def _one_window(store: Store, period: Period) -> timedelta:
    """A window holding all of ``period``, in whole units of the store's resolution there
    (rollups answer whole hours or days; the query's end clips the window)."""
    span = period.end - period.start
    unit = resolution(store, "accelerator", period.start)
    return -(-span // unit) * unit if unit > timedelta(0) else span


def _utilization_levels(store: Store, period: Period, topology: Topology,
                        chosen: dict[str, str], window: timedelta, policy: Policy,
                        step: timedelta) -> dict[str, pd.DataFrame]:
    """The site and hub utilization windows under each level's chosen definition."""
    by_definition = utilization_windows_by_definition(
        store, period, topology, definitions=list(chosen.values()), window=window,
        busy_level=float(policy.utilization.busy_level.value), interval=step)
    return {level: by_definition[chosen[level]][level] for level in chosen}


def _split_rows(split: pd.DataFrame) -> Callable[[Sequence[str]], dict[str, float]]:
    """The allocated and free parts of some sites' idle accelerator-hours (0 without data),
    summed as ``split[split.index.isin(sites)]`` sums them (``split``'s order, NaN as 0),
    from positions found once: the report asks once per site and hub."""
    at: dict[object, list[int]] = {}
    for i, site in enumerate(split.index):
        at.setdefault(site, []).append(i)
    parts = {c: split[c].to_numpy(float) for c in ("allocated_idle_hours", "free_idle_hours")}

    def row(sites: Sequence[str]) -> dict[str, float]:
        rows = np.sort(np.array([i for s in set(sites) for i in at.get(s, ())], np.intp))
        return {c: float(np.nansum(v[rows])) for c, v in parts.items()}
    return row


def _namespaces(store: Store, period: Period, policy: Policy, topology: Topology,
                site_ids: set[str], window: timedelta, step: timedelta,
                per: pd.DataFrame) -> pd.DataFrame:
    """`NAMESPACE_COLUMNS` rows of the scope's sites, most held-idle card-hours first
    (``per``: `allocation_totals` of the period by site)."""
    cols = list(NAMESPACE_COLUMNS)
    per = per[(per.namespace != FREE) & per.site.isin(site_ids)]
    if per.empty:
        return pd.DataFrame(columns=cols)
    held = held_idle_windows(store, period, busy_level=float(policy.utilization.busy_level.value),
                             window=window, interval=step)
    held = held[held.site.isin(site_ids)]
    g = held.groupby(["site", "namespace"])
    stats = pd.DataFrame({"held_idle_card_hours": g.hours.sum(),
                          "cards_held_idle": g.device.nunique(),
                          "hours_holding_idle": g.time.nunique() * (window / timedelta(hours=1))
                          }).reset_index()
    out = per.rename(columns={"idle_accelerator_hours": "allocated_idle_hours"}).merge(
        stats, on=["site", "namespace"], how="left")
    out[["held_idle_card_hours", "hours_holding_idle"]] = out[
        ["held_idle_card_hours", "hours_holding_idle"]].fillna(0.0)
    out["cards_held_idle"] = out.cards_held_idle.fillna(0).astype(int)
    out["hub"] = [topology.site(s).hub or "" for s in out.site]
    out = out.sort_values(["held_idle_card_hours", "allocated_idle_hours", "site", "namespace"],
                          ascending=[False, False, True, True], kind="stable")
    return out[cols].reset_index(drop=True)


def _empty_message(store: Store, period: ReportPeriod, hub: str | None,
                   province: str | None = None) -> str:
    bounds = store.time_bounds("accelerator")
    held = (f"it holds accelerator data from {bounds[0]:%Y-%m-%d %H:%M} to "
            f"{bounds[1]:%Y-%m-%d %H:%M} UTC" if bounds else
            "it holds no accelerator data at all; run `computewatch demo` or an agent first")
    scope = (f" for hub {hub}" if hub else "") + (f" in {province}" if province else "")
    return (f"{store.url}: no accelerator, meter or link data in {period.label} "
            f"({period.start:%Y-%m-%d %H:%M} – {period.end:%Y-%m-%d %H:%M} UTC){scope}; {held}")


def _coverage(stored: set[str], site_util: pd.DataFrame, readings: pd.DataFrame,
              links: pd.DataFrame, topology: Topology, n_sites: int,
              n_windows: int, by_quarter: bool = False) -> dict[str, object]:
    """What the store holds of the period, and what was left out because the topology lacks it."""
    covered = int(site_util.value.notna().sum()) if len(site_util) else 0
    if by_quarter and len(site_util):  # how much of each quarter window the data covers
        covered = float(site_util.completeness.fillna(0.0).sum())
    expected = n_sites * n_windows
    known = {s.id for s in topology.sites}
    unknown = sorted({s for s in stored if isinstance(s, str)} - known)
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
