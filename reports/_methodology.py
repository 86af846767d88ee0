"""The methodology section: every definition and threshold the report applied, with its source.

Thresholds and their sources are read from the policy the report ran with, definitions from
the core modules that compute the numbers (`computewatch.utilization`, `computewatch.pue`,
`computewatch.compliance`), so the text cannot drift from what was applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from computewatch.compliance import COMPLIANCE_DEFINITION
from computewatch.policy import LEVELS, Sourced
from computewatch.pue import DEFINITION as PUE_DEFINITION
from computewatch.pue import (
    POWER_BUCKET,
    POWER_MAX_GAP,
    READING_BUCKET,
    RESET_PLAUSIBLE_FACTOR,
)
from computewatch.reports._model import COLUMNS, Report
from computewatch.topology import Tier
from computewatch.utilization import ALLOCATION_DEFINITION, DEFINITIONS, IDLE_DEFINITION

__all__ = ["Entry", "methodology"]

METHOD = "computewatch method"


@dataclass(frozen=True)
class Entry:
    """One line of the methodology: what, how it is defined, the value applied, its source."""

    topic: str
    name: str
    definition: str
    threshold: str
    source: str


def _minutes(td: timedelta) -> str:
    return f"{td / timedelta(minutes=1):g}-minute"


def _pct(x: float) -> str:
    return f"{x:.0%}" if round(x * 100, 6).is_integer() else f"{x:.1%}"


def _utilization(report: Report) -> list[Entry]:
    u = report.policy.utilization
    topic = "利用率 Utilization"
    hub_definition = report.hub_definition or report.definition
    used = "used" if "busy_fraction" in (report.definition, hub_definition) else \
        "not used by this report's time_weighted definition; applies to busy_fraction"
    if report.verdicts_from_findings:
        verdict = ("Fail when the underuse pipeline found the subject below its minimum for "
                   "at least sustained_hours in the period, on the rolling mean over that "
                   "long (the finding analyze reports, so the two agree); pass when it found "
                   "none and the data is complete enough.")
        sustained = "a site or hub fails when its shortfall lasts at least this long"
    else:
        verdict = "Pass when the period value is at least the minimum."
        sustained = ("an underuse finding needs a shortfall lasting at least this long (this "
                     "report's verdict compares the period value)")
    out = []
    for level, d in (("site", report.definition), ("hub", hub_definition)):
        out.append(Entry(
            topic, f"utilization of a {level} ({d})",
            f"{DEFINITIONS[d]}, in {_minutes(report.window)} windows from the period's start. "
            "The period value is the sample-weighted mean of the windows that hold data "
            "(hub rows: of all the hub's sites); windows without data are not scored. "
            + verdict, "",
            _definition_source(report, level)))
    out += [
        Entry(topic, "busy level", "utilization above which an accelerator-window counts as "
              f"busy ({used})", _pct(u.busy_level.value), u.busy_level.source),
        Entry(topic, "sustained_hours", sustained, f"{u.sustained_hours.value:g} h",
              u.sustained_hours.source),
    ]
    for level in LEVELS:
        rule = getattr(u.minimums, level)
        out.append(Entry(topic, f"{level} minimum", f"minimum utilization of a {level} "
                         "(default)", _pct(rule.default.value), rule.default.source))
        for region, entry in rule.regions.items():
            out.append(Entry(topic, f"{level} minimum, {region}", f"minimum utilization of a "
                             f"{level} in the {region} region", _pct(entry.value),
                             entry.source))
        for subject, entry in rule.subjects.items():
            out.append(Entry(topic, f"{level} minimum, {subject}",
                             f"minimum utilization of {level} {subject}", _pct(entry.value),
                             entry.source))
    out.append(Entry(topic, "idle accelerator-hours", IDLE_DEFINITION, "",
                     f"{METHOD} (computewatch/utilization.py)"))
    out.append(Entry(topic, "allocated and free",
                     ALLOCATION_DEFINITION.format(busy=u.busy_level.value), "",
                     f"{METHOD} (computewatch/utilization.py); allocation from the kubelet's "
                     "PodResources API"))
    return out


def _definition_source(report: Report, level: str) -> str:
    """Where a level's definition comes from: the policy (with its source) or the request."""
    entry = report.policy.utilization_definition_entry(level)
    chosen = report.definition if level == "site" else (report.hub_definition
                                                         or report.definition)
    if entry.value == chosen:
        return f"{METHOD} (computewatch/utilization.py); policy: {entry.source}"
    return f"{METHOD} (computewatch/utilization.py); --definition {chosen} (the policy says " \
           f"{entry.value})"


def _pue(report: Report) -> list[Entry]:
    pue = report.policy.pue
    topic = "能效 PUE"

    def target(name: str, what: str, entry: Sourced) -> Entry:
        return Entry(topic, name, what, f"{entry.value:.2f}", entry.source)

    bucket = READING_BUCKET
    iso = "ISO/IEC 30134-2:2016 (= EN 50600-4-2:2016)"
    out = [
        Entry(topic, "PUE", f"{PUE_DEFINITION}. PUE = E_DC / E_IT, total data-centre energy "
              "over IT equipment energy over the same period.", "",
              f"{iso}; GB 40879-2021 (RM2); computewatch/pue.py"),
        Entry(topic, "meters", "each site's declared meters (topology: id, scope, where it "
              "measures, expected interval) are expected in every slot: facility energy at the "
              "incomer (the data centre's boundary), IT energy at the UPS output, PDU output or "
              "IT equipment input; cooling and other sub-meters are no part of a PUE. A "
              "declared meter that is silent lowers the completeness and is named; a meter "
              "that reports but is not declared is left out. Sites that declare no meters use "
              "the meters that report.", "", f"{iso}; computewatch/pue.py"),
        Entry(topic, "energy from counters", "each counter's last and highest reading per "
              f"{_minutes(bucket)} slot; a reading below the one before is a reset (on the raw "
              "readings: a slot whose highest reading is above its last held one), after which "
              "the counter restarts from zero, so at most one reading's energy is lost (a "
              f"reading after a reset over {RESET_PLAUSIBLE_FACTOR:g}x the meter's typical draw "
              "did not restart from zero: that step is missing, not counted); a slot "
              "counts when every facility and IT meter of the site has readings around it at "
              f"most {_minutes(2 * bucket)} apart (or two of its expected intervals, if "
              "longer). Hub rows: the same over the declared meters of the hub's reporting "
              "sites.", "", "computewatch/pue.py"),
        Entry(topic, "energy from power-only meters", "a meter without an energy counter (every "
              "UPS-MIB UPS reports watts only) is read as its mean power per "
              f"{_minutes(POWER_BUCKET)} and integrated by the trapezoid rule; readings more "
              f"than {_minutes(POWER_MAX_GAP)} apart (or two expected intervals, if longer) "
              "leave the time between them missing, not estimated. Its energy adds to the "
              "counters' in the site's sums.", "", "computewatch/pue.py"),
        Entry(topic, "PUE category", "ISO/IEC 30134-2 measurement category from where IT "
              "energy is metered: category 1 at the UPS output, category 2 at the PDU output, "
              "category 3 at the IT equipment input; a site whose IT meters mix points states "
              "the lowest. Stated with every PUE (column pue_category).", "", iso),
        Entry(topic, "interim and 12-month PUE", "ISO/IEC 30134-2 defines PUE over 12 months; "
              "a shorter period gives an interim PUE, and every PUE of this report over a "
              "shorter period is labelled interim. When the store holds meter readings from 12 "
              "months before the period's end, the 12-month PUE ending there is stated too "
              "(column pue_12m).", "", iso),
        target("PUE target (default)", "PUE target where no regional target applies; pass when "
               "PUE <= target", pue.default_target)]
    out += [target(f"PUE target, {region}", f"PUE target of sites in the {region} region",
                   entry) for region, entry in pue.targets.items()]
    out += [target(f"PUE target, {site}", f"PUE target of site {site}", entry)
            for site, entry in pue.sites.items()]
    out += [target(f"GB 40879-2021 grade {grade}", f"energy-efficiency grade {grade}: PUE at "
                   f"most this{' (the limit value)' if grade == max(pue.grades) else ''}; "
                   "graded on 12-month figures, indicative for an interim PUE",
                   pue.grades[grade]) for grade in sorted(pue.grades)]
    return out


def _latency(report: Report) -> list[Entry]:
    lat = report.policy.latency
    topic = "时延 Latency tiers"
    metro_km, regional_km = report.topology.tier_distances_km
    tier_rule = {
        Tier.METRO: f"both sites in the same city or within {metro_km:g} km",
        Tier.REGIONAL: f"both sites in the same hub or within {regional_km:g} km (a site in "
                       "a province no hub covers belongs to none)",
        Tier.NATIONAL: "every other site pair (between hubs, or from a site outside them)",
    }
    out = []
    for tier in Tier:
        entry = getattr(lat.tiers, tier.value)
        out.append(Entry(topic, f"{tier.value} budget", f"{tier.value} tier: {tier_rule[tier]}",
                         f"{entry.value * 1e3:g} ms", entry.source))
    out += [
        *(Entry(topic, name, text, f"{entry.value:g} km", entry.source)
          for name, text, entry in (
              ("metro distance", "sites in different cities this close are one metro",
               lat.metro_max_km),
              ("regional distance", "sites of different hubs (or of none) this close are one "
               "region", lat.regional_max_km)) if entry is not None),
        Entry(topic, "RTT semantics", "how a budget is compared with the probes' round-trip "
              "times", lat.rtt_semantics.value, lat.rtt_semantics.source),
        Entry(topic, "tier compliance",
              COMPLIANCE_DEFINITION.format(window=_minutes(report.latency_window)), "",
              f"{METHOD} (computewatch/compliance.py); no official compliance share exists, so no "
              "verdict is stated"),
        Entry(topic, "route inflation limit", "minimum RTT / fiber minimum RTT above which a "
              "route_inflation finding is raised", f"{lat.route_inflation_limit.value:g}×",
              lat.route_inflation_limit.source),
    ]
    return out


def _completeness(report: Report) -> list[Entry]:
    floor = report.policy.pue.min_completeness
    topic = "数据完整性 Data completeness"
    return [
        Entry(topic, "completeness floor", "a verdict (utilization, PUE) is stated only when "
              "the data covers at least this share of the period; below it the row says "
              "incomplete and its value covers only the time the store holds",
              _pct(floor.value), floor.source),
        Entry(topic, "utilization completeness", COLUMNS["utilization_completeness"], "",
              METHOD),
        Entry(topic, "PUE completeness", COLUMNS["pue_completeness"], "", "computewatch/pue.py"),
        Entry(topic, "latency completeness", COLUMNS["latency_completeness"], "", METHOD),
    ]


def _findings(report: Report) -> list[Entry]:
    topic = "发现 Findings"
    out = [Entry(topic, "severity", "each pipeline grades its findings critical, warning or "
                 "info by the size or length of the breach, as its rule states", "", METHOD)]
    if report.findings.empty:
        return out
    firsts = report.findings.drop_duplicates(["pipeline", "rule"]).sort_values(
        ["pipeline", "rule"])
    for r in firsts.itertuples():
        out.append(Entry(topic, f"{r.pipeline}: {r.rule}", r.definition or "(not stated)", "",
                         f"{METHOD} (pipelines/{r.pipeline}.py)"))
    return out


def methodology(report: Report) -> list[Entry]:
    """Every definition and threshold of the report, in the order the report uses them."""
    return [*_utilization(report), *_pue(report), *_latency(report), *_completeness(report),
            *_findings(report)]
