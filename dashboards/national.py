"""National overview: the map of China with every site, cluster and hub, and the headline figures.

What NOC staff look at all day: where capacity sits idle, where PUE runs high, which links
break their latency tier, and how each hub's utilization moves through the day.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, stat, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from computewatch.dashboards._panels import (
    BY_THRESHOLDS,
    DATASOURCE,
    GAZETTEER,
    dashboard_link,
    hub_names,
    merge,
    organize,
    place_table,
    prom,
    source,
    steps,
    value_field,
    with_place_names,
)
from computewatch.dashboards.basemap import MapTiles, basemap
from computewatch.dashboards.query import (
    RANGE,
    RANGE_SECONDS,
    Agg,
    Bin,
    Expr,
    OverTime,
    by_place,
    recorded,
    series,
)
from computewatch.dashboards.rules import (
    IDLE_CAPACITY,
    IDLE_CAPACITY_ALLOCATED,
    IDLE_CAPACITY_FREE,
    PLACE,
)
from computewatch.i18n import _
from computewatch.policy import Policy
from computewatch.thresholds import site_minimum_rules, tier_budget_rules
from computewatch.topology import Topology

__all__ = ["UID", "national_dashboard", "pue_steps", "utilization_steps"]

UID = "computewatch-national"
SITE_DASHBOARD = "computewatch-site"


def utilization_steps(policy: Policy) -> db.ThresholdsConfig:
    """Red below the site minimum, orange below the cluster/hub minimum, green above."""
    site_min = policy.utilization.minimums.site.default.value
    hub_min = policy.utilization.minimums.hub.default.value
    return steps("red", (site_min, "orange"), (hub_min, "green"))


def pue_steps(policy: Policy) -> db.ThresholdsConfig:
    """PUE bands anchored on the policy's targets: green within the tightest (western) target,
    yellow within the eastern one, orange within the default, red beyond it."""
    targets = sorted({e.value for e in policy.pue.targets.values()})
    colors = ["yellow", "orange"][: len(targets)]
    levels = list(zip(targets, colors, strict=False))
    default = policy.pue.default_target.value
    return steps("green", *levels, (default, "red")) if default not in targets else \
        steps("green", *levels)


def idle_accelerator_hours(where: dict | None = None) -> Expr:
    """Mean idle capacity over the range; x the range's hours: idle accelerator-hours."""
    idle = recorded(IDLE_CAPACITY, **(where or {}))
    return OverTime("avg_over_time", idle, RANGE)


def energy_weighted_pue() -> Expr:
    joules = series("facility_power.joules_total")
    return (Agg("sum", OverTime("increase", joules.where(scope="facility"), RANGE))
            / Agg("sum", OverTime("increase", joules.where(scope="it"), RANGE)))


def links_in_violation(policy: Policy) -> Expr:
    p95 = series("link_latency.rtt_p95_seconds")
    return Agg("count", p95.gt(by_place(p95, tier_budget_rules(policy))))


def _site_link() -> list[db.DashboardLink]:
    # The site id only: a link reads the value as shown, and hubs and clusters are shown by
    # name in zh-CN (the drill-down's hub and cluster variables default to all).
    return [db.DashboardLink(_("Open site drill-down")).url(dashboard_link(
        SITE_DASHBOARD, "var-site=${__data.fields.site}"))]


def _stats(policy: Policy) -> list[stat.Panel]:
    def panel(title: str, description: str, span: int = 5) -> stat.Panel:
        return (stat.Panel().title(title).description(description).datasource(DATASOURCE)
                .height(4).span(span)
                .graph_mode(cm.BigValueGraphMode.AREA).color_mode(cm.BigValueColorMode.VALUE))

    online = Agg("sum", series("accelerator.health"), by=("ecosystem",))
    return [
        panel(_("Accelerators online"), _("Accelerators reporting healthy now, by software "
                                          "ecosystem: cuda (NVIDIA) and cann (Huawei Ascend)."))
        .with_target(prom(online, legend="{{ecosystem}}"))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).unit("short").decimals(0)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("blue")),
        panel(_("National mean utilization"), _(
            "Mean utilization of every accelerator over the selected period (recording rule "
            "{rule}).").format(rule="national:accelerator_utilization_ratio:avg"))
        .with_target(prom(recorded("national:accelerator_utilization_ratio:avg"),
                          legend=_("national mean")))
        .reduce_options(cb.ReduceDataOptions().calcs(["mean"]))
        .unit("percentunit").decimals(1).min(0).max(1).thresholds(utilization_steps(policy)),
        panel(_("Idle accelerator-hours"), _(
            "Capacity left unused over the selected period: the sum over utilization samples "
            "of (1 - utilization) x the sampling interval, i.e. the mean unused capacity times "
            "the period's hours (the summary's and the report's definition)."))
        .with_target(prom(Agg("sum", idle_accelerator_hours()) * RANGE_SECONDS / 3600,
                          instant=True, legend=_("idle accelerator-hours")))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        .graph_mode(cm.BigValueGraphMode.NONE).unit("short").decimals(0)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("orange")),
        panel(_("Energy-weighted PUE"), _(
            "National PUE over the selected period: all facility energy / all IT energy from "
            "the meters' counters, so each site weighs by its energy (ISO/IEC 30134-2)."))
        .with_target(prom(energy_weighted_pue(), instant=True, legend="PUE"))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        .graph_mode(cm.BigValueGraphMode.NONE).decimals(3).thresholds(pue_steps(policy)),
        panel(_("Links in violation"), _(
            "Site pairs whose latest p95 RTT exceeds their tier's budget (metro {metro:g} ms, "
            "regional {regional:g} ms, national {national:g} ms, round trip).").format(
            **{m["tier"]: v * 1e3 for m, v in tier_budget_rules(policy)}), span=4)
        .with_target(prom(links_in_violation(policy), legend=_("links")))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        .no_value("0").decimals(0).thresholds(steps("green", (1, "red"))),
    ]


def _marker_layer(name: str, ref: str, lookup: str, color_field: str, *, size: int,
                  symbol: str, opacity: float, text: bool) -> cb.MapLayerOptions:
    style: dict[str, object] = {
        "color": {"field": color_field, "fixed": "blue"},
        "opacity": opacity,
        "size": {"fixed": size, "min": size, "max": size},
        "symbol": {"fixed": f"img/icons/marker/{symbol}.svg", "mode": "fixed"},
        "symbolAlign": {"horizontal": "center", "vertical": "center"},
    }
    if text:
        style["text"] = {"field": lookup, "fixed": "", "mode": "field"}
        style["textConfig"] = {"fontSize": 11, "offsetX": size, "offsetY": 0,
                               "textAlign": "left", "textBaseline": "middle"}
    return (cb.MapLayerOptions().type("markers").name(name).tooltip(True)
            .location(cb.FrameGeometrySource().mode(cm.FrameGeometrySourceMode.LOOKUP)
                      .lookup(lookup).gazetteer(GAZETTEER))
            .filter_data({"id": "byRefId", "options": ref})
            .config({"showLegend": True, "style": style}))


def _map(topology: Topology, policy: Policy, tiles: MapTiles | None) -> geomap.Panel:
    queries = [
        ("C", _("Hubs: utilization"), recorded("hub:accelerator_utilization_ratio:avg"),
         "hub"),
        ("D", _("Clusters: utilization"), recorded("cluster:accelerator_utilization_ratio:avg"),
         "cluster"),
        ("B", _("Sites: PUE (last hour)"), recorded("site:pue_energy_ratio:1h"), "site"),
        ("A", _("Sites: utilization"), recorded("site:accelerator_utilization_ratio:avg"),
         "site"),
    ]
    n = len(queries)
    looks = {"C": (34, "circle", 0.25, True), "D": (12, "triangle", 0.8, True),
             "B": (16, "circle", 0.5, False), "A": (7, "circle", 1.0, False)}
    panel = (geomap.Panel().title(_("Sites, clusters and hubs")).datasource(DATASOURCE)
             .description(_(
                 "Each site's inner dot is its accelerators' mean utilization now (red below "
                 "the site minimum, orange below the cluster and hub minimum, green above); its "
                 "halo is the site's energy-based PUE over the last hour (green within the "
                 "western target, yellow within the eastern one, orange within the default, "
                 "red beyond). Triangles are the clusters, large circles the hubs, colored by "
                 "utilization and labelled. No map tiles: the base is a 5-degree graticule "
                 "served by Grafana itself (see the README to add a licensed tile service)."))
             .height(15).span(16)
             .view(geomap.MapViewConfig().id("coords").lat(35).lon(105).zoom(4))
             .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True)
                       .show_scale(True))
             .basemap(basemap(tiles, _("Base layer")))
             .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
             .unit("percentunit").decimals(1).thresholds(utilization_steps(policy))
             .color_scheme(BY_THRESHOLDS).data_links(_site_link())
             .override_by_name(value_field("B", n), [
                 dm.DynamicConfigValue("unit", "none"), dm.DynamicConfigValue("decimals", 2),
                 dm.DynamicConfigValue("thresholds", pue_steps(policy).build())]))
    for ref, _name, expr, _lookup in queries:
        panel = panel.with_target(prom(expr, ref, instant=True, table=True))
    panel = with_place_names(panel, topology, ("hub", "cluster"))  # the labels
    return panel.layers([
        _marker_layer(name, ref, lookup, value_field(ref, n), size=looks[ref][0],
                      symbol=looks[ref][1], opacity=looks[ref][2], text=looks[ref][3])
        for ref, name, _, lookup in queries])


def _underused_table(topology: Topology, policy: Policy) -> table.Panel:
    rules = site_minimum_rules(topology, policy)
    mean = OverTime("avg_over_time", recorded("site:accelerator_utilization_ratio:avg"), RANGE)
    threshold = by_place(mean, rules)
    below = mean.lt(threshold)
    minimum = threshold & below
    idle_hours = Agg("sum", idle_accelerator_hours(), by=PLACE) * RANGE_SECONDS / 3600
    idle = (idle_hours & below).matching(PLACE)
    entry = policy.utilization.minimums.site.default
    utilization, minimum_col, idle_col = _("utilization"), _("minimum"), _("idle acc-h")
    panel = (table.Panel().title(_("Underused sites")).datasource(DATASOURCE)
             .description(_("Sites whose mean utilization over the selected period is below "
                            "their policy minimum (default {value:g}: {source}), with the idle "
                            "accelerator-hours of the period.").format(
                 value=entry.value, source=source(entry)))
             .height(15).span(8))
    panel = with_place_names(panel, topology, ("hub", "cluster"))
    return (place_table(panel, [("A", utilization, below), ("B", minimum_col, minimum),
                                ("C", idle_col, idle)])
            .sort_by([cb.TableSortByFieldState().display_name(utilization)])
            .color_scheme(BY_THRESHOLDS).data_links(_site_link())
            .override_by_name(utilization, [
                dm.DynamicConfigValue("unit", "percentunit"),
                dm.DynamicConfigValue("decimals", 1),
                dm.DynamicConfigValue("custom.cellOptions", {"type": "color-text"}),
                dm.DynamicConfigValue("thresholds", utilization_steps(policy).build())])
            .override_by_name(minimum_col, [dm.DynamicConfigValue("unit", "percentunit"),
                                            dm.DynamicConfigValue("decimals", 0)])
            .override_by_name(idle_col, [dm.DynamicConfigValue("decimals", 0)]))


def _hub_utilization(topology: Topology, policy: Policy) -> timeseries.Panel:
    hub_min = policy.utilization.minimums.hub.default
    return (hub_names(timeseries.Panel(), topology).title(_("Utilization by hub"))
            .datasource(DATASOURCE)
            .description(_("Mean accelerator utilization of each hub; the dashed line is the "
                           "hub minimum ({value:g}: {source}).").format(
                value=hub_min.value, source=source(hub_min)))
            .height(9).span(24)
            .with_target(prom(recorded("hub:accelerator_utilization_ratio:avg"),
                              legend="{{hub}}"))
            .unit("percentunit").min(0).max(1)
            .thresholds(steps("transparent", (hub_min.value, "red")))
            .thresholds_style(cb.GraphThresholdsStyleConfig()
                              .mode(cm.GraphThresholdsStyleMode.DASHED))
            .legend(cb.VizLegendOptions().show_legend(True)
                    .display_mode(cm.LegendDisplayMode.TABLE)
                    .placement(cm.LegendPlacement.RIGHT).calcs(["mean", "min", "max"])))


def _idle_split() -> timeseries.Panel:
    """Idle capacity now, free versus held by pods, nationally."""
    free = Agg("sum", recorded(IDLE_CAPACITY_FREE))
    held = Agg("sum", recorded(IDLE_CAPACITY_ALLOCATED))
    return (timeseries.Panel().title(_("Idle capacity: free vs held by pods"))
            .datasource(DATASOURCE)
            .description(_("Unused accelerator capacity (the sum of 1 - utilization, in "
                           "accelerators) split by Kubernetes allocation: free accelerators, "
                           "which others could use, and accelerators a pod holds but leaves "
                           "unused. The two add up to the idle capacity; their mean over a "
                           "period times its hours is the idle accelerator-hours of the "
                           "report."))
            .height(9).span(12)
            .with_target(prom(free, "A", legend=_("free")))
            .with_target(prom(held, "B", legend=_("held by pods")))
            .unit("short").min(0)
            .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
            .fill_opacity(30))


def _namespace_table(topology: Topology) -> table.Panel:
    """Who holds idle accelerators: idle accelerator-hours held, per site and namespace."""
    # The mean over the rule's evaluations, counting those in which the namespace held
    # nothing (no series then) as zero: its sum over the range / the evaluations of the
    # site's idle capacity, which is recorded at every one.
    held = Agg("sum", OverTime("sum_over_time", recorded(IDLE_CAPACITY_ALLOCATED), RANGE),
               by=(*PLACE, "namespace"))
    evaluations = OverTime("count_over_time", recorded(IDLE_CAPACITY), RANGE)
    hours = Bin("/", held, evaluations).matching(PLACE, ()) * RANGE_SECONDS / 3600
    held_col = _("idle acc-h held")
    panel = (table.Panel().title(_("Allocated but idle, by namespace")).datasource(DATASOURCE)
             .description(_("Per site and Kubernetes namespace: the idle accelerator-hours of "
                            "the accelerators its pods held over the selected period (capacity "
                            "a tenant holds and leaves unused; the surplus pipeline does not "
                            "offer it). Most first. The report's namespace table adds how long "
                            "each held idle cards."))
             .height(9).span(12))
    panel = with_place_names(panel, topology, ("hub", "cluster"))
    panel = (panel.with_target(prom(hours, "A", instant=True, table=True))
             .with_transformation(merge())
             .with_transformation(organize({"Value #A": held_col},
                                           order=("site", "namespace", "hub", "cluster",
                                                  held_col))))
    return (panel.sort_by([cb.TableSortByFieldState().display_name(held_col).desc(True)])
            .data_links(_site_link())
            .override_by_name(held_col, [dm.DynamicConfigValue("decimals", 0)]))


def national_dashboard(topology: Topology, policy: Policy,
                       tiles: MapTiles | None = None) -> db.Dashboard:
    d = (db.Dashboard(_("computewatch · National overview")).uid(UID)
         .tags(["computewatch", "national"]).time("now-24h", "now").refresh("1m")
         .timezone("browser").tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .description(_("China's national compute network at a glance: utilization, PUE "
                        "and latency compliance of every hub, cluster and site.")))
    for p in _stats(policy):
        d = d.with_panel(p)
    return (d.with_panel(_map(topology, policy, tiles))
            .with_panel(_underused_table(topology, policy))
            .with_panel(_hub_utilization(topology, policy)).with_panel(_idle_split())
            .with_panel(_namespace_table(topology)))
