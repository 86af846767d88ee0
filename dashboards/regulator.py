"""Regulator view: utilization and PUE compliance per site for a chosen period, with completeness.

A regulator picks the period with the time picker and gets, per site, the measured value, the
threshold applied, whether it is met, and how much of the expected data the verdict rests on;
a text panel states the method and each threshold's source, as the reports do.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, table, text
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import text as tm

from computewatch.dashboards._panels import (
    BY_THRESHOLDS,
    DATASOURCE,
    LABEL_COLUMNS,
    place_table,
    prom,
    source,
    steps,
    with_place_names,
)
from computewatch.dashboards.energy import REGIONS, period_pue, pue_target_text
from computewatch.dashboards.query import (
    RANGE,
    RANGE_SECONDS,
    Agg,
    Expr,
    Fn,
    Macro,
    OverTime,
    Selector,
    by_place,
    re_any,
    recorded,
    series,
)
from computewatch.dashboards.rules import PLACE
from computewatch.i18n import _, current_language
from computewatch.place_names import place_name
from computewatch.policy import Policy
from computewatch.thresholds import pue_target_rules, site_minimum_rules
from computewatch.topology import Topology

__all__ = ["SAMPLE_INTERVALS", "UID", "completeness", "regulator_dashboard"]

UID = "computewatch-regulator"
SAMPLE_INTERVAL = Macro("$sample_interval")
SAMPLE_INTERVALS = ("60", "15", "30", "300")
"""Choices for the expected seconds between samples (60: the demo's resolution; 15: the
agent's default collection interval)."""


def completeness(selector: Selector, unit: str) -> Expr:
    """Share of the expected samples that arrived over the period, per site: samples received
    / (``unit``s seen (devices, meters) x period / expected interval), capped at 1. Units,
    not series: a card whose pod changed has a series per pod, and is still one card."""
    received = Agg("sum", OverTime("count_over_time", selector, RANGE), by=PLACE)
    seen = Agg("count", Agg("count", OverTime("count_over_time", selector, RANGE),
                            by=(*PLACE, unit)), by=PLACE)
    return Fn("clamp_max", received / (seen * RANGE_SECONDS / SAMPLE_INTERVAL), (1,))


def _queries(topology: Topology, policy: Policy) -> list[tuple[str, str, Expr]]:
    util = OverTime("avg_over_time", recorded("site:accelerator_utilization_ratio:avg"), RANGE)
    minimum = site_minimum_rules(topology, policy)
    pue = period_pue()
    target = pue_target_rules(topology, policy)
    meters = series("facility_power.joules_total").where(scope=re_any(["facility", "it"]))
    return [
        ("A", _("utilization"), util),
        ("B", _("minimum"), by_place(util, minimum)),
        ("C", _("utilization ok"), util.ge(by_place(util, minimum), bool_=True)),
        ("D", _("utilization data"),
         completeness(series("accelerator.utilization_ratio"), "device")),
        ("E", "PUE", pue),
        ("F", _("PUE target"), by_place(pue, target)),
        ("G", _("PUE ok"), pue.le(by_place(pue, target), bool_=True)),
        ("H", _("meter data"), completeness(meters, "meter")),
    ]


def _verdict_mapping() -> list[dm.ValueMap]:
    return [dm.ValueMap({"1": dm.ValueMappingResult(text=_("meets"), color="green"),
                         "0": dm.ValueMappingResult(text=_("fails"), color="red")})]


def _compliance_table(topology: Topology, policy: Policy) -> table.Panel:
    floor = policy.pue.min_completeness.value
    queries = _queries(topology, policy)
    panel = (table.Panel().title(_("Compliance per site")).datasource(DATASOURCE)
             .description(_("Per site over the selected period: time-weighted mean "
                            "utilization against the site minimum, energy-based PUE against "
                            "the target, and the share of expected samples behind each "
                            "(accelerator samples; facility and IT meter readings). A verdict "
                            "resting on less than {floor:.0%} of the expected data is not a "
                            "finding (the completeness cell turns red).").format(floor=floor))
             .height(16).span(24))
    panel = with_place_names(panel, topology)
    site_col = LABEL_COLUMNS["site"]
    panel = (place_table(panel, queries)
             .sort_by([cb.TableSortByFieldState().display_name(_(site_col))]).decimals(3)
             .color_scheme(BY_THRESHOLDS))
    names = {ref: name for ref, name, _expr in queries}
    for name in (names["A"], names["B"]):
        panel = panel.override_by_name(name, [dm.DynamicConfigValue("unit", "percentunit"),
                                              dm.DynamicConfigValue("decimals", 1)])
    for name in (names["C"], names["G"]):
        panel = panel.override_by_name(name, [
            dm.DynamicConfigValue("mappings", _verdict_mapping()),
            dm.DynamicConfigValue("custom.cellOptions", {"type": "color-background"})])
    for name in (names["D"], names["H"]):
        panel = panel.override_by_name(name, [
            dm.DynamicConfigValue("unit", "percentunit"), dm.DynamicConfigValue("decimals", 1),
            dm.DynamicConfigValue("custom.cellOptions", {"type": "color-text"}),
            dm.DynamicConfigValue("thresholds", steps("red", (floor, "green")).build())])
    return panel


def _share_stats(topology: Topology, policy: Policy) -> list[stat.Panel]:
    queries = {ref: expr for ref, _name, expr in _queries(topology, policy)}

    def share(title: str, description: str, verdict: Expr) -> stat.Panel:
        return (stat.Panel().title(title).description(description).datasource(DATASOURCE)
                .with_target(prom(Agg("avg", verdict), instant=True, legend=_("share")))
                .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
                .graph_mode(cm.BigValueGraphMode.NONE).unit("percentunit").decimals(0)
                .thresholds(steps("red", (0.5, "orange"), (0.9, "green"))).height(5).span(6))

    return [
        share(_("Sites meeting the utilization minimum"), _(
            "Share of sites whose mean utilization over the period is at or above their "
            "minimum."), queries["C"]),
        share(_("Sites meeting the PUE target"), _(
            "Share of sites whose energy-based PUE over the period is at or below their "
            "target."), queries["G"]),
    ]


def _method(topology: Topology, policy: Policy) -> text.Panel:
    u, p = policy.utilization, policy.pue
    site = u.minimums.site
    lang = current_language()
    lines = [
        "### " + _("Method and thresholds"),
        "",
        _("- **Utilization**: time-weighted mean of the accelerators' utilization samples "
          "over the period (the `time_weighted` definition of `computewatch.utilization`), "
          "per site."),
        _("- **Site minimum**: {value:g}. Source: {source}").format(
            value=site.default.value, source=source(site.default)),
        *(f"  - {place_name(topology, 'site', s, lang)}: {e.value:g} ({source(e)})"
          for s, e in sorted(site.subjects.items())),
        _("- **Idle accelerator-hours**: the capacity left unused, the sum over utilization "
          "samples of (1 - utilization) x the sampling interval (the summary's and the "
          "report's definition)."),
        _("- **PUE**: energy-based, facility energy / IT energy from the meters' counters "
          "over the period (ISO/IEC 30134-2; GB 40879-2021 RM2)."),
        _("- **PUE targets**: {targets}.").format(targets=pue_target_text(policy, topology)),
        *(f"  - {_(REGIONS.get(region, region))}: {source(e)}"
          for region, e in sorted(p.targets.items())),
        _("  - default: {source}").format(source=source(p.default_target)),
        _("- **Data completeness floor**: {floor:.0%}. Source: {source}").format(
            floor=p.min_completeness.value, source=source(p.min_completeness)),
        _("- **Completeness** is samples received / (series seen × period / the expected "
          "sample interval chosen above)."),
    ]
    return (text.Panel().title(_("Method")).mode(tm.TextMode.MARKDOWN)
            .content("\n".join(lines)).height(10).span(12))


def regulator_dashboard(topology: Topology, policy: Policy) -> db.Dashboard:
    interval = (db.CustomVariable("sample_interval").label(_("Expected sample interval (s)"))
                .values(",".join(SAMPLE_INTERVALS))
                .current(dm.VariableOption(selected=True, text=SAMPLE_INTERVALS[0],
                                           value=SAMPLE_INTERVALS[0])))
    d = (db.Dashboard(_("computewatch · Regulator view")).uid(UID)
         .tags(["computewatch", "regulator"]).time("now-7d", "now")
         .timezone("Asia/Shanghai")
         .description(_("Utilization and PUE compliance per site for a chosen period, with "
                        "the data completeness behind each verdict and the thresholds' "
                        "sources."))
         .with_variable(interval))
    for p in _share_stats(topology, policy):
        d = d.with_panel(p)
    return (d.with_panel(_method(topology, policy))
            .with_panel(_compliance_table(topology, policy)))
