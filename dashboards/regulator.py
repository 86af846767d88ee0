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

from computewatch.dashboards._panels import BY_THRESHOLDS, DATASOURCE, place_table, prom, steps
from computewatch.dashboards.energy import period_pue, pue_target_text
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
        ("A", "utilization", util),
        ("B", "minimum", by_place(util, minimum)),
        ("C", "utilization ok", util.ge(by_place(util, minimum), bool_=True)),
        ("D", "utilization data", completeness(series("accelerator.utilization_ratio"), "device")),
        ("E", "PUE", pue),
        ("F", "PUE target", by_place(pue, target)),
        ("G", "PUE ok", pue.le(by_place(pue, target), bool_=True)),
        ("H", "meter data", completeness(meters, "meter")),
    ]


def _verdict_mapping() -> list[dm.ValueMap]:
    return [dm.ValueMap({"1": dm.ValueMappingResult(text="meets", color="green"),
                         "0": dm.ValueMappingResult(text="fails", color="red")})]


def _compliance_table(topology: Topology, policy: Policy) -> table.Panel:
    floor = policy.pue.min_completeness.value
    queries = _queries(topology, policy)
    panel = (table.Panel().title("Compliance per site").datasource(DATASOURCE)
             .description("Per site over the selected period: time-weighted mean utilization "
                          "against the site minimum, energy-based PUE against the target, and "
                          "the share of expected samples behind each (accelerator samples; "
                          "facility and IT meter readings). A verdict resting on less than "
                          f"{floor:.0%} of the expected data is not a finding (the completeness "
                          "cell turns red).")
             .height(16).span(24))
    panel = (place_table(panel, queries)
             .sort_by([cb.TableSortByFieldState().display_name("site")]).decimals(3)
             .color_scheme(BY_THRESHOLDS))
    for name in ("utilization", "minimum"):
        panel = panel.override_by_name(name, [dm.DynamicConfigValue("unit", "percentunit"),
                                              dm.DynamicConfigValue("decimals", 1)])
    for name in ("utilization ok", "PUE ok"):
        panel = panel.override_by_name(name, [
            dm.DynamicConfigValue("mappings", _verdict_mapping()),
            dm.DynamicConfigValue("custom.cellOptions", {"type": "color-background"})])
    for name in ("utilization data", "meter data"):
        panel = panel.override_by_name(name, [
            dm.DynamicConfigValue("unit", "percentunit"), dm.DynamicConfigValue("decimals", 1),
            dm.DynamicConfigValue("custom.cellOptions", {"type": "color-text"}),
            dm.DynamicConfigValue("thresholds", steps("red", (floor, "green")).build())])
    return panel


def _share_stats(topology: Topology, policy: Policy) -> list[stat.Panel]:
    queries = {ref: expr for ref, _name, expr in _queries(topology, policy)}

    def share(title: str, description: str, verdict: Expr) -> stat.Panel:
        return (stat.Panel().title(title).description(description).datasource(DATASOURCE)
                .with_target(prom(Agg("avg", verdict), instant=True, legend="share"))
                .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
                .graph_mode(cm.BigValueGraphMode.NONE).unit("percentunit").decimals(0)
                .thresholds(steps("red", (0.5, "orange"), (0.9, "green"))).height(5).span(6))

    return [
        share("Sites meeting the utilization minimum", "Share of sites whose mean utilization "
              "over the period is at or above their minimum.", queries["C"]),
        share("Sites meeting the PUE target", "Share of sites whose energy-based PUE over the "
              "period is at or below their target.", queries["G"]),
    ]


def _method(policy: Policy) -> text.Panel:
    u, p = policy.utilization, policy.pue
    site = u.minimums.site
    lines = [
        "### Method and thresholds",
        "",
        "- **Utilization**: time-weighted mean of the accelerators' utilization samples over "
        "the period (the `time_weighted` definition of `computewatch.utilization`), per site.",
        f"- **Site minimum**: {site.default.value:g}. Source: {site.default.source.strip()}",
        *(f"  - {s}: {e.value:g} ({e.source.strip()})" for s, e in sorted(site.subjects.items())),
        "- **Idle accelerator-hours**: the capacity left unused, the sum over utilization "
        "samples of (1 - utilization) x the sampling interval (the summary's and the "
        "report's definition).",
        "- **PUE**: energy-based, facility energy / IT energy from the meters' counters over "
        "the period (ISO/IEC 30134-2; GB 40879-2021 RM2).",
        f"- **PUE targets**: {pue_target_text(policy)}.",
        *(f"  - {region}: {e.source.strip()}" for region, e in sorted(p.targets.items())),
        f"  - default: {p.default_target.source.strip()}",
        f"- **Data completeness floor**: {p.min_completeness.value:.0%}. "
        f"Source: {p.min_completeness.source.strip()}",
        "- **Completeness** is samples received / (series seen × period / the expected "
        "sample interval chosen above).",
    ]
    return (text.Panel().title("Method").mode(tm.TextMode.MARKDOWN).content("\n".join(lines))
            .height(10).span(12))


def regulator_dashboard(topology: Topology, policy: Policy) -> db.Dashboard:
    interval = (db.CustomVariable("sample_interval").label("Expected sample interval (s)")
                .values(",".join(SAMPLE_INTERVALS))
                .current(dm.VariableOption(selected=True, text=SAMPLE_INTERVALS[0],
                                           value=SAMPLE_INTERVALS[0])))
    d = (db.Dashboard("computewatch · Regulator view").uid(UID)
         .tags(["computewatch", "regulator"]).time("now-7d", "now")
         .timezone("Asia/Shanghai")
         .description("Utilization and PUE compliance per site for a chosen period, with the "
                      "data completeness behind each verdict and the thresholds' sources.")
         .with_variable(interval))
    for p in _share_stats(topology, policy):
        d = d.with_panel(p)
    return d.with_panel(_method(policy)).with_panel(_compliance_table(topology, policy))
