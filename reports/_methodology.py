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
from computewatch.pue import READING_BUCKET
from computewatch.reports._model import COLUMNS, Report
from computewatch.topology import Tier
from computewatch.utilization import DEFINITIONS, IDLE_DEFINITION

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
    used = "used" if report.definition == "busy_fraction" else "not used by this report's " \
        "time_weighted definition; applies to busy_fraction"
    out = [
        Entry(topic, f"utilization ({report.definition})",
              f"{DEFINITIONS[report.definition]}, in {_minutes(report.window)} windows from the "
              "period's start. The period value is the sample-weighted mean of the windows "
              "that hold data (hub rows: of all the hub's sites); windows without data are "
              "not scored. Pass when the value is at least the minimum.", "",
              f"{METHOD} (computewatch/utilization.py)"),
        Entry(topic, "busy level", "utilization above which an accelerator-window counts as "
              f"busy ({used})", _pct(u.busy_level.value), u.busy_level.source),
        Entry(topic, "sustained_hours", "an underuse finding needs a shortfall lasting at least "
              "this long (the period verdict compares the period value)",
              f"{u.sustained_hours.value:g} h", u.sustained_hours.source),
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
    return out


def _pue(report: Report) -> list[Entry]:
    pue = report.policy.pue
    topic = "能效 PUE"

    def target(name: str, what: str, entry: Sourced) -> Entry:
        return Entry(topic, name, what, f"{entry.value:.2f}", entry.source)

    bucket = READING_BUCKET
    out = [Entry(topic, "PUE", f"{PUE_DEFINITION}. Readings are each meter's last counter value "
                 f"per {_minutes(bucket)} slot; a slot counts when every facility and IT meter "
                 f"of the site has readings around it at most {_minutes(2 * bucket)} apart. "
                 "Hub rows: the same over all the hub's meters. Pass when PUE <= target.",
                 "", "ISO/IEC 30134-2; GB 40879-2021 (RM2); computewatch/pue.py"),
           target("PUE target (default)", "PUE target where no regional target applies",
                  pue.default_target)]
    out += [target(f"PUE target, {region}", f"PUE target of sites in the {region} region",
                   entry) for region, entry in pue.targets.items()]
    out += [target(f"PUE target, {site}", f"PUE target of site {site}", entry)
            for site, entry in pue.sites.items()]
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
