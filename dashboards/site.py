"""Site drill-down: one site's accelerators, facility and health, chosen by hub, cluster, site.

Where NOC staff go from the national map: every device's utilization, power, energy and
temperature, the site's PUE against its own target, and the health and error counters that
explain a device that stopped working.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, statushistory, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from computewatch.dashboards._panels import DATASOURCE, KWH, kwh, prom, steps
from computewatch.dashboards.national import pue_steps, utilization_steps
from computewatch.dashboards.query import (
    RANGE,
    RATE_INTERVAL,
    Agg,
    Match,
    Num,
    OverTime,
    Var,
    by_place,
    recorded,
    series,
)
from computewatch.i18n import _
from computewatch.policy import Policy
from computewatch.thresholds import pue_target_rules
from computewatch.topology import Topology

__all__ = ["UID", "site_dashboard"]

UID = "computewatch-site"
SITE = {"site": Var("site")}


def _variables() -> list[db.QueryVariable]:
    anchor = series("accelerator.health").promql()

    def var(name: str, label: str, query: str, *, include_all: bool) -> db.QueryVariable:
        v = (db.QueryVariable(name).label(label).datasource(DATASOURCE)
             .query(query)
             .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
             .sort(dm.VariableSort.ALPHABETICAL_ASC))
        if include_all:
            v = v.include_all(True).all_value(".*")
        return v

    return [
        var("hub", _("Hub"), f"label_values({anchor}, hub)", include_all=True),
        var("cluster", _("Cluster"), f'label_values({anchor}{{hub=~"$hub"}}, cluster)',
            include_all=True),
        var("site", _("Site"),
            f'label_values({anchor}{{hub=~"$hub", cluster=~"$cluster"}}, site)',
            include_all=False),
    ]


def _timeseries(title: str, description: str, unit: str) -> timeseries.Panel:
    return (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
            .unit(unit).height(8).span(12)
            .legend(cb.VizLegendOptions().show_legend(True)
                    .display_mode(cm.LegendDisplayMode.LIST)
                    .placement(cm.LegendPlacement.BOTTOM)))


def _summary(policy: Policy) -> list[stat.Panel]:
    def panel(title: str) -> stat.Panel:
        return (stat.Panel().title(title).datasource(DATASOURCE).height(4).span(6)
                .graph_mode(cm.BigValueGraphMode.AREA)
                .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"])))

    return [
        panel(_("Accelerators")).description(_("Accelerators of the site that report, by "
                                               "model."))
        .with_target(prom(Agg("count", series("accelerator.health", **SITE), by=("model",)),
                          legend="{{model}}"))
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).decimals(0),
        panel(_("Utilization")).description(_("Mean utilization of the site's "
                                              "accelerators."))
        .with_target(prom(recorded("site:accelerator_utilization_ratio:avg", **SITE),
                          legend=_("utilization")))
        .unit("percentunit").decimals(1).thresholds(utilization_steps(policy)),
        panel(_("PUE (last hour)")).description(_("Energy-based PUE over the last hour from "
                                                  "the site's meters: facility energy / IT "
                                                  "energy."))
        .with_target(prom(recorded("site:pue_energy_ratio:1h", **SITE), legend="PUE"))
        .decimals(3).thresholds(pue_steps(policy)),
        panel(_("Facility power")).description(_("Power through the site's facility "
                                                 "meters."))
        .with_target(prom(Agg("sum", series("facility_power.watts", scope="facility", **SITE)),
                          legend=_("facility")))
        .unit("watt"),
    ]


def _accelerators(policy: Policy) -> list[object]:
    dev = "{{node}} {{device}}"
    util = series("accelerator.utilization_ratio", **SITE)
    energy = OverTime("increase", series("accelerator.energy_joules_total", **SITE), RANGE)
    return [
        _timeseries(_("Utilization per device"), _("Share of time each accelerator's compute "
                                                   "engines were busy."), "percentunit")
        .with_target(prom(util, legend=dev)).min(0).max(1),
        _timeseries(_("Power per device"), _("Power drawn by each accelerator."), "watt")
        .with_target(prom(series("accelerator.power_watts", **SITE), legend=dev)),
        _timeseries(_("Temperature per device"), _("Die (GPU) or chip (NPU) temperature."),
                    "celsius")
        .with_target(prom(series("accelerator.temperature_celsius", **SITE), legend=dev)),
        bargauge.Panel().title(_("Energy per device")).datasource(DATASOURCE)
        .description(_("Energy each accelerator consumed over the selected period, from its "
                       "energy counter (resets handled), in kWh."))
        .with_target(prom(kwh(energy), legend=dev, instant=True)).unit(KWH).height(8).span(12)
        .display_mode(cm.BarGaugeDisplayMode.BASIC).orientation(cm.VizOrientation.HORIZONTAL)
        .min_viz_height(10).color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED)
                                         .fixed_color("purple")),
    ]


def _facility(topology: Topology, policy: Policy) -> list[object]:
    pue = recorded("site:pue_energy_ratio:1h", **SITE)
    target = by_place(pue, pue_target_rules(topology, policy))
    return [
        _timeseries(_("PUE against target"), _(
            "Energy-based PUE over each trailing hour, and the site's target from the policy "
            "(site override, else its region's, else the default)."), "none")
        .with_target(prom(pue, "A", legend=_("PUE (1 h)")))
        .with_target(prom(target, "B", legend=_("target")))
        .decimals(2)
        .override_by_name(_("target"), [
            dm.DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
            dm.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "red"})]),
        _timeseries(_("Power by meter scope"), _(
            "Power through the site's meters by what they feed: facility (the whole site), "
            "it, cooling, other."), "watt")
        .with_target(prom(Agg("sum", series("facility_power.watts", **SITE), by=("scope",)),
                          legend="{{scope}}")),
    ]


def _health() -> list[object]:
    health = Agg("min", series("accelerator.health", **SITE), by=("node",))
    xid = OverTime("increase", series("accelerator.xid_errors_total", **SITE), RATE_INTERVAL)
    ecc = OverTime("increase", series("accelerator.ecc_errors_total", **SITE), RATE_INTERVAL)
    throttled = series("accelerator.throttled", **SITE)
    unhealthy = Agg("sum", Num(1) - series("accelerator.health", **SITE), by=("node",))
    return [
        statushistory.Panel().title(_("Node health")).datasource(DATASOURCE)
        .description(_("Worst accelerator health on each node: green while every accelerator "
                       "answers and reports healthy, red while one is unhealthy or lost."))
        .with_target(prom(health, legend="{{node}}")).height(8).span(12)
        .mappings([dm.ValueMap({"1": dm.ValueMappingResult(text=_("healthy"), color="green"),
                                "0": dm.ValueMappingResult(text=_("unhealthy"),
                                                           color="red")})])
        .thresholds(steps("red", (1, "green"))),
        _timeseries(_("Unhealthy accelerators per node"), _(
            "Accelerators that report unhealthy or are lost, per node."), "short")
        .with_target(prom(unhealthy, legend="{{node}}"))
        .decimals(0),
        _timeseries(_("XID errors"), _(
            "NVIDIA XID errors per interval, by node and XID code (79: fell off the bus, 48: "
            "double-bit ECC, 63/64: row remapping)."), "short")
        .with_target(prom(Agg("sum", xid, by=("node", "xid")), legend="{{node}} XID {{xid}}")),
        _timeseries(_("ECC errors"), _("Device-memory ECC errors per interval, corrected and "
                                       "uncorrected."), "short")
        .with_target(prom(Agg("sum", ecc, by=("node", "error_type")),
                          legend="{{node}} {{error_type}}")),
        _timeseries(_("Clock throttling"), _("Accelerators whose clocks are held down, by "
                                             "reason."), "short")
        .with_target(prom(Agg("sum", throttled.where(reason=Match("!=", "")), by=("reason",)),
                          legend="{{reason}}")),
    ]


def site_dashboard(topology: Topology, policy: Policy) -> db.Dashboard:
    d = (db.Dashboard(_("computewatch · Site drill-down")).uid(UID)
         .tags(["computewatch", "site"]).time("now-6h", "now").refresh("1m")
         .timezone("browser").tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .description(_("One site's accelerators, facility power and PUE, and device "
                        "health."))
         .variables(_variables()))
    for p in _summary(policy):
        d = d.with_panel(p)
    rows = ((_("Accelerators"), _accelerators(policy)),
            (_("Facility"), _facility(topology, policy)), (_("Health and errors"), _health()))
    for title, panels in rows:
        row = db.Row(title)
        for p in panels:
            row = row.with_panel(p)
        d = d.with_row(row.collapsed(False))  # with_panel collapses the row; open it again
    return d
