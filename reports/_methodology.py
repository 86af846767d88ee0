"""The methodology section: every definition and threshold the report applied, with its source.

Thresholds and their sources are read from the policy the report ran with, definitions from
the core modules that compute the numbers (`computewatch.utilization`, `computewatch.pue`,
`computewatch.compliance`), so the text cannot drift from what was applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from computewatch.compliance import COMPLIANCE_DEFINITION, P95
from computewatch.finding_text import PIPELINE_NAMES, rule_title, word
from computewatch.i18n import N_, _, current_language
from computewatch.policy import LEVELS, Sourced
from computewatch.pue import DEFINITION as PUE_DEFINITION
from computewatch.pue import (
    POWER_BUCKET,
    POWER_MAX_GAP,
    READING_BUCKET,
    RESET_PLAUSIBLE_FACTOR,
)
from computewatch.reports._model import COLUMNS, Report
from computewatch.rule_definitions import definition_in_language
from computewatch.topology import Tier
from computewatch.utilization import ALLOCATION_DEFINITION, DEFINITIONS, IDLE_DEFINITION

__all__ = ["Entry", "methodology"]

METHOD = N_("computewatch method")

_LEVELS = {"accelerator": N_("accelerator"), "node": N_("node"), "site": N_("site"),
           "cluster": N_("cluster"), "hub": N_("hub"), "province": N_("province")}
_REGIONS = {"east": N_("east"), "west": N_("west")}
_TIERS = {Tier.METRO: N_("metro"), Tier.REGIONAL: N_("regional"), Tier.NATIONAL: N_("national")}


def _src(entry: Sourced) -> str:
    """A policy value's source as the report's language quotes it."""
    return entry.source_in(current_language())


def _w(table: dict, key: object) -> str:
    return _(table[key]) if key in table else str(key)


def _method(where: str = "") -> str:
    """"computewatch method (computewatch/x.py)" in the current language."""
    return _(METHOD) + (f" ({where})" if where else "")


@dataclass(frozen=True)
class Entry:
    """One line of the methodology: what, how it is defined, the value applied, its source."""

    topic: str
    name: str
    definition: str
    threshold: str
    source: str


def _minutes(td: timedelta) -> str:
    return _("{n}-minute").format(n=f"{td / timedelta(minutes=1):g}")


def _pct(x: float) -> str:
    return f"{x:.0%}" if round(x * 100, 6).is_integer() else f"{x:.1%}"


def _utilization(report: Report) -> list[Entry]:
    u = report.policy.utilization
    topic = _("Utilization")
    hub_definition = report.hub_definition or report.definition
    used = _("used") if "busy_fraction" in (report.definition, hub_definition) else \
        _("not used by this report's time_weighted definition; applies to busy_fraction")
    if report.verdicts_from_findings:
        verdict = _("Fail when the underuse pipeline found the subject below its minimum for "
                    "at least sustained_hours in the period, on the rolling mean over that "
                    "long (the finding analyze reports, so the two agree); pass when it found "
                    "none and the data is complete enough.")
        sustained = _("a site or hub fails when its shortfall lasts at least this long")
    else:
        verdict = _("Pass when the period value is at least the minimum.")
        sustained = _("an underuse finding needs a shortfall lasting at least this long (this "
                      "report's verdict compares the period value)")
    out = []
    for level, d in (("site", report.definition), ("hub", hub_definition)):
        out.append(Entry(
            topic, _("utilization of a {level} ({definition})").format(
                level=_w(_LEVELS, level), definition=d),
            _("{definition}, in {minutes} windows from the period's start. The period value is "
              "the sample-weighted mean of the windows that hold data (hub rows: of all the "
              "hub's sites); windows without data are not scored.").format(
                definition=_(DEFINITIONS[d]), minutes=_minutes(report.window)) + " " + verdict,
            "", _definition_source(report, level)))
    out += [
        Entry(topic, _("busy level"), _("utilization above which an accelerator-window counts "
                                        "as busy ({used})").format(used=used),
              _pct(u.busy_level.value), _src(u.busy_level)),
        Entry(topic, "sustained_hours", sustained, f"{u.sustained_hours.value:g} h",
              _src(u.sustained_hours)),
    ]
    for level in LEVELS:
        rule = getattr(u.minimums, level)
        name = _w(_LEVELS, level)
        out.append(Entry(topic, _("{level} minimum").format(level=name),
                         _("minimum utilization of a {level} (default)").format(level=name),
                         _pct(rule.default.value), _src(rule.default)))
        for region, entry in rule.regions.items():
            out.append(Entry(topic, _("{level} minimum, {region}").format(
                level=name, region=_w(_REGIONS, region)),
                _("minimum utilization of a {level} in the {region} region").format(
                    level=name, region=_w(_REGIONS, region)), _pct(entry.value), _src(entry)))
        for subject, entry in rule.subjects.items():
            out.append(Entry(topic, _("{level} minimum, {subject}").format(
                level=name, subject=subject),
                _("minimum utilization of {level} {subject}").format(level=name, subject=subject),
                _pct(entry.value), _src(entry)))
    out.append(Entry(topic, _("idle accelerator-hours"), _(IDLE_DEFINITION), "",
                     _method("computewatch/utilization.py")))
    out.append(Entry(topic, _("allocated and free"),
                     _(ALLOCATION_DEFINITION).format(busy=u.busy_level.value), "",
                     _method("computewatch/utilization.py") + "; "
                     + _("allocation from the kubelet's PodResources API")))
    return out


def _definition_source(report: Report, level: str) -> str:
    """Where a level's definition comes from: the policy (with its source) or the request."""
    entry = report.policy.utilization_definition_entry(level)
    chosen = report.definition if level == "site" else (report.hub_definition
                                                         or report.definition)
    if entry.value == chosen:
        return _method("computewatch/utilization.py") + "; " + _("policy: {source}").format(
            source=_src(entry))
    return _method("computewatch/utilization.py") + "; " + _(
        "--definition {chosen} (the policy says {value})").format(chosen=chosen,
                                                                 value=entry.value)


def _pue(report: Report) -> list[Entry]:
    pue = report.policy.pue
    topic = _("PUE")

    def target(name: str, what: str, entry: Sourced) -> Entry:
        return Entry(topic, name, what, f"{entry.value:.2f}", _src(entry))

    bucket = READING_BUCKET
    iso = "ISO/IEC 30134-2:2016 (= EN 50600-4-2:2016)"
    out = [
        Entry(topic, "PUE", _(PUE_DEFINITION) + ". " + _(
            "PUE = E_DC / E_IT, total data-centre energy over IT equipment energy over the "
            "same period."), "", f"{iso}; GB 40879-2021 (RM2); computewatch/pue.py"),
        Entry(topic, _("meters"), _(
            "each site's declared meters (topology: id, scope, where it measures, expected "
            "interval) are expected in every slot: facility energy at the incomer (the data "
            "centre's boundary), IT energy at the UPS output, PDU output or IT equipment input; "
            "cooling and other sub-meters are no part of a PUE. A declared meter that is silent "
            "lowers the completeness and is named; a meter that reports but is not declared is "
            "left out. Sites that declare no meters use the meters that report."), "",
            f"{iso}; computewatch/pue.py"),
        Entry(topic, _("energy from counters"), _(
            "each counter's last and highest reading per {slot} slot; a reading below the one "
            "before is a reset (on the raw readings: a slot whose highest reading is above its "
            "last held one), after which the counter restarts from zero, so at most one "
            "reading's energy is lost (a reading after a reset over {factor}x the meter's "
            "typical draw did not restart from zero: that step is missing, not counted); a slot "
            "counts when every facility and IT meter of the site has readings around it at "
            "most {gap} apart (or two of its expected intervals, if longer). Hub rows: the same "
            "over the declared meters of the hub's reporting sites. Energy is stated in kWh "
            "(1 kWh = 3.6 MJ) and MWh.").format(
                slot=_minutes(bucket), factor=f"{RESET_PLAUSIBLE_FACTOR:g}",
                gap=_minutes(2 * bucket)), "", "computewatch/pue.py"),
        Entry(topic, _("energy from power-only meters"), _(
            "a meter without an energy counter (every UPS-MIB UPS reports watts only) is read "
            "as its mean power per {bucket} and integrated by the trapezoid rule; readings "
            "more than {gap} apart (or two expected intervals, if longer) leave the time "
            "between them missing, not estimated. Its energy adds to the counters' in the "
            "site's sums.").format(bucket=_minutes(POWER_BUCKET), gap=_minutes(POWER_MAX_GAP)),
            "", "computewatch/pue.py"),
        Entry(topic, _("PUE category"), _(
            "ISO/IEC 30134-2 measurement category from where IT energy is metered: category 1 "
            "at the UPS output, category 2 at the PDU output, category 3 at the IT equipment "
            "input; a site whose IT meters mix points states the lowest. Stated with every PUE "
            "(column pue_category)."), "", iso),
        Entry(topic, _("interim and 12-month PUE"), _(
            "ISO/IEC 30134-2 defines PUE over 12 months; a shorter period gives an interim PUE, "
            "and every PUE of this report over a shorter period is labelled interim. When the "
            "store holds meter readings from 12 months before the period's end, the 12-month "
            "PUE ending there is stated too (column pue_12m)."), "", iso),
        target(_("PUE target (default)"), _("PUE target where no regional target applies; "
                                            "pass when PUE <= target"), pue.default_target)]
    out += [target(_("PUE target, {region}").format(region=_w(_REGIONS, region)),
                   _("PUE target of sites in the {region} region").format(
                       region=_w(_REGIONS, region)), entry)
            for region, entry in pue.targets.items()]
    out += [target(_("PUE target, {site}").format(site=site),
                   _("PUE target of site {site}").format(site=site), entry)
            for site, entry in pue.sites.items()]
    limit = max(pue.grades) if pue.grades else None
    out += [target(_("GB 40879-2021 grade {grade}").format(grade=grade),
                   (_("energy-efficiency grade {grade}: PUE at most this (the limit value); "
                      "graded on 12-month figures, indicative for an interim PUE")
                    if grade == limit else
                    _("energy-efficiency grade {grade}: PUE at most this; graded on 12-month "
                      "figures, indicative for an interim PUE")).format(grade=grade),
                   pue.grades[grade]) for grade in sorted(pue.grades)]
    return out


def _latency(report: Report) -> list[Entry]:
    lat = report.policy.latency
    topic = _("Latency tiers")
    metro_km, regional_km = report.topology.tier_distances_km
    tier_rule = {
        Tier.METRO: _("both sites in the same city or within {km} km").format(
            km=f"{metro_km:g}"),
        Tier.REGIONAL: _("both sites in the same hub or within {km} km (a site in a province "
                         "no hub covers belongs to none)").format(km=f"{regional_km:g}"),
        Tier.NATIONAL: _("every other site pair (between hubs, or from a site outside them)"),
    }
    out = []
    for tier in Tier:
        entry = getattr(lat.tiers, tier.value)
        out.append(Entry(topic, _("{tier} budget").format(tier=_w(_TIERS, tier)),
                         _("{tier} tier: {rule}").format(tier=_w(_TIERS, tier),
                                                         rule=tier_rule[tier]),
                         f"{entry.value * 1e3:g} ms", _src(entry)))
    out += [
        *(Entry(topic, name, text, f"{entry.value:g} km", _src(entry))
          for name, text, entry in (
              (_("metro distance"), _("sites in different cities this close are one metro"),
               lat.metro_max_km),
              (_("regional distance"), _("sites of different hubs (or of none) this close are "
                                         "one region"), lat.regional_max_km))
          if entry is not None),
        Entry(topic, _("RTT semantics"), _("how a budget is compared with the probes' "
                                           "round-trip times"),
              lat.rtt_semantics.value, _src(lat.rtt_semantics)),
        Entry(topic, _("tier compliance"),
              _(COMPLIANCE_DEFINITION).format(window=_minutes(report.latency_window),
                                              share=f"{P95:.0%}"), "",
              _method("computewatch/compliance.py") + "; " + _(
                  "no official compliance share exists, so no verdict is stated")),
        Entry(topic, _("route inflation limit"), _(
            "minimum RTT / fiber minimum RTT above which a route_inflation finding is raised"),
            f"{lat.route_inflation_limit.value:g}×", _src(lat.route_inflation_limit)),
    ]
    return out


def _completeness(report: Report) -> list[Entry]:
    floor = report.policy.pue.min_completeness
    topic = _("Data completeness")
    return [
        Entry(topic, _("completeness floor"), _(
            "a verdict (utilization, PUE) is stated only when the data covers at least this "
            "share of the period; below it the row says incomplete and its value covers only "
            "the time the store holds"), _pct(floor.value), _src(floor)),
        Entry(topic, _("utilization completeness"), _(COLUMNS["utilization_completeness"]), "",
              _method()),
        Entry(topic, _("PUE completeness"), _(COLUMNS["pue_completeness"]), "",
              "computewatch/pue.py"),
        Entry(topic, _("latency completeness"), _(COLUMNS["latency_completeness"]), "",
              _method()),
    ]


def _findings(report: Report) -> list[Entry]:
    topic = _("Findings")
    out = [Entry(topic, _("severity"), _("each pipeline grades its findings critical, warning "
                                         "or info by the size or length of the breach, as its "
                                         "rule states"), "", _method())]
    if report.findings.empty:
        return out
    firsts = report.findings.drop_duplicates(["pipeline", "rule"]).sort_values(
        ["pipeline", "rule"])
    english = current_language() == "en"
    sources = report.policy.sources_in(current_language())
    for r in firsts.itertuples():
        if english:  # the pipeline's own definition, with the values it applied
            out.append(Entry(topic, f"{r.pipeline}: {r.rule}", r.definition or "(not stated)",
                             "", _method(f"pipelines/{r.pipeline}.py")))
            continue
        # The pipelines store their definitions in English with the values they applied;
        # the report restates each in its language when it is rendered (not when analysed).
        out.append(Entry(topic, f"{word(PIPELINE_NAMES, r.pipeline)}: {rule_title(r.rule)}",
                         definition_in_language(r.definition, sources) if r.definition
                         else _("(not stated)"), "", _method(f"pipelines/{r.pipeline}.py")))
    return out


def methodology(report: Report) -> list[Entry]:
    """Every definition and threshold of the report, in the order the report uses them."""
    return [*_utilization(report), *_pue(report), *_latency(report), *_completeness(report),
            *_findings(report)]
