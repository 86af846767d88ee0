"""Latency: which site pairs keep their tier's budget, the worst links over time, route inflation,
and the planning findings (links over budget by design, per hub pair and tier).

The national plan promises latency circles (1 ms city, 5 ms region, 20 ms cross-hub); the
probes measure each pair's RTT percentiles per window. Budgets come from the policy's tiers
and the route-inflation limit from its MIIT figure. The planning table reads the latency
pipeline's planning findings (``finding`` series written by ``computewatch analyze``): what a
network plan must answer, which pages no one.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from computewatch.dashboards._panels import (
    BY_THRESHOLDS,
    DATASOURCE,
    joined,
    merge,
    organize,
    prom,
    source,
    steps,
)
from computewatch.dashboards.query import (
    RANGE,
    Agg,
    Expr,
    OverTime,
    Var,
    by_place,
    re_any,
    series,
)
from computewatch.i18n import N_, _
from computewatch.policy import Policy
from computewatch.thresholds import tier_budget_rules
from computewatch.topology import Tier, Topology

__all__ = ["UID", "latency_dashboard"]

UID = "computewatch-latency"
PAIR = ("src_site", "dst_site")
TIER = {"tier": Var("tier")}
LINK_LEGEND = "{{src_site}} → {{dst_site}} ({{tier}})"
TIER_NAMES = {"metro": N_("metro"), "regional": N_("regional"), "national": N_("national")}
"""The latency circles' names (时延圈: 城市内, 区域, 枢纽间 in zh-CN)."""
RTT_SEMANTICS = {"round_trip": N_("round trip"), "one_way": N_("one way, doubled for RTT")}


def _p95_share_of_budget(policy: Policy, *, at_end: bool = False) -> Expr:
    """Each pair's p95 of its window p95s over the period, as a share of its tier's budget."""
    p95 = series("link_latency.rtt_p95_seconds", **TIER)
    over_period = OverTime("quantile_over_time", p95, RANGE, param=0.95, at_end=at_end)
    return over_period / by_place(over_period, tier_budget_rules(policy))


def _tier_variable() -> db.CustomVariable:
    return (db.CustomVariable("tier").label(_("Tier")).values(",".join(t.value for t in Tier))
            .include_all(True).all_value(".*").multi(True)
            .current(dm.VariableOption(selected=True, text=_("All"), value="$__all")))


def _stats(policy: Policy) -> list[stat.Panel]:
    p95 = series("link_latency.rtt_p95_seconds", **TIER)
    over = Agg("count", p95.gt(by_place(p95, tier_budget_rules(policy))), by=("tier",))
    probed = Agg("count", p95, by=("tier",))
    budgets = joined([f"{_(TIER_NAMES[m['tier']])} {v * 1e3:g} ms"
                      for m, v in tier_budget_rules(policy)])
    semantics = _(RTT_SEMANTICS.get(policy.latency.rtt_semantics.value,
                                    policy.latency.rtt_semantics.value))
    return [
        stat.Panel().title(_("Links probed")).datasource(DATASOURCE).height(4).span(12)
        .description(_("Site pairs with a latency window now, by tier."))
        .with_target(prom(probed, legend="{{tier}}"))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).decimals(0)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("blue")),
        stat.Panel().title(_("Links over budget")).datasource(DATASOURCE).height(4).span(12)
        .description(_("Site pairs whose latest p95 RTT exceeds the tier budget ({budgets}; "
                       "{semantics}).").format(budgets=budgets, semantics=semantics))
        .with_target(prom(over, legend="{{tier}}"))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).decimals(0).no_value("0")
        .thresholds(steps("green", (1, "red"))),
    ]


def _matrix(policy: Policy) -> table.Panel:
    return (table.Panel().title(_("Tier compliance by site pair")).datasource(DATASOURCE)
            .description(_("Rows are source sites, columns destination sites; each cell is "
                           "the pair's 95th percentile of window p95 RTT over the selected "
                           "period as a share of its tier's budget: green under 80%, yellow "
                           "under 100%, red over budget."))
            .height(14).span(24)
            .with_target(prom(_p95_share_of_budget(policy), instant=True, table=True))
            .with_transformation(dm.DataTransformerConfig(id_val="groupingToMatrix", options={
                "columnField": "dst_site", "rowField": "src_site", "valueField": "Value",
                "emptyValue": "null"}))
            .unit("percentunit").decimals(0)
            .thresholds(steps("green", (0.8, "yellow"), (1.0, "red"))).color_scheme(BY_THRESHOLDS)
            .cell_options(cm.TableColoredBackgroundCellOptions()))


def _worst_links(policy: Policy) -> timeseries.Panel:
    p95 = series("link_latency.rtt_p95_seconds", **TIER)
    worst = Agg("topk", _p95_share_of_budget(policy, at_end=True), param=10)
    return (timeseries.Panel().title(_("p95 RTT of the worst links")).datasource(DATASOURCE)
            .description(_("Window p95 RTT of the ten pairs with the highest p95 as a share "
                           "of their budget over the selected period."))
            .height(10).span(14)
            .with_target(prom((p95 & worst).matching(PAIR), legend=LINK_LEGEND))
            .unit("s")
            .legend(cb.VizLegendOptions().show_legend(True)
                    .display_mode(cm.LegendDisplayMode.TABLE)
                    .placement(cm.LegendPlacement.BOTTOM).calcs(["mean", "max"])))


def _route_inflation(policy: Policy) -> bargauge.Panel:
    limit = policy.latency.route_inflation_limit
    rtt_min = OverTime("min_over_time", series("link_latency.rtt_min_seconds", **TIER), RANGE)
    fiber = OverTime("min_over_time", series("link_latency.fiber_min_seconds", **TIER), RANGE)
    return (bargauge.Panel().title(_("Route inflation")).datasource(DATASOURCE)
            .description(_("Lowest RTT over the selected period / the fiber minimum over the "
                           "great-circle distance, for the 15 most inflated pairs; the limit "
                           "is {value:g} ({source}).").format(value=limit.value,
                                                             source=source(limit)))
            .height(10).span(10)
            .with_target(prom(Agg("topk", rtt_min / fiber, param=15), instant=True,
                              legend="{{src_site}} → {{dst_site}}"))
            .display_mode(cm.BarGaugeDisplayMode.BASIC).orientation(cm.VizOrientation.HORIZONTAL)
            .decimals(2).min(1)
            .thresholds(steps("green", (limit.value, "red"))))


def _loss() -> timeseries.Panel:
    loss = series("link_latency.loss_ratio", **TIER)
    worst = Agg("topk", OverTime("max_over_time", loss, RANGE, at_end=True), param=10)
    return (timeseries.Panel().title(_("Packet loss of the lossiest links"))
            .datasource(DATASOURCE)
            .description(_("Share of probes without a reply per window, for the ten pairs "
                           "with the highest loss over the selected period."))
            .height(8).span(24)
            .with_target(prom((loss & worst).matching(PAIR), legend=LINK_LEGEND))
            .unit("percentunit"))


PLANNING_RULES = ("tier_budget_unmet", "route_inflation", "budget_below_physics")
"""The latency pipeline's planning rules (computewatch.pipelines.latency.RULES, less the one
that pages)."""


def _planning() -> table.Panel:
    def last(field: str) -> Expr:
        return OverTime("last_over_time", series(f"finding.{field}", pipeline="latency",
                                                 rule=re_any(PLANNING_RULES)), RANGE)

    return (table.Panel().title(_("Planning: links over their budget by design, per hub pair"))
            .datasource(DATASOURCE)
            .description(_("The latency pipeline's planning findings over the selected "
                           "period, one row per hub pair (and tier) and rule: "
                           "`tier_budget_unmet` counts the links over their tier budget "
                           "through most of the period (threshold 0); `route_inflation` gives "
                           "the worst route's inflation against the limit; "
                           "`budget_below_physics` the largest fiber minimum against the "
                           "budget. Not paged: a route that cannot meet its budget is a "
                           "design problem."))
            .height(10).span(24)
            .with_target(prom(last("observed"), "A", instant=True, table=True))
            .with_target(prom(last("threshold"), "B", instant=True, table=True))
            .with_transformation(merge())
            .with_transformation(organize(
                {"subject": _("hub pair"), "Value #A": _("observed"),
                 "Value #B": _("threshold")},
                exclude=("Time", "__name__", "pipeline", "subject_type", "cluster", "site"),
                order=("rule", "subject", "hub", "Value #A", "Value #B")))
            .decimals(3))


def latency_dashboard(topology: Topology, policy: Policy) -> db.Dashboard:
    d = (db.Dashboard(_("computewatch · Latency")).uid(UID)
         .tags(["computewatch", "latency"]).time("now-24h", "now").refresh("1m")
         .timezone("browser").tooltip(dm.DashboardCursorSync.CROSSHAIR)
         .description(_("Inter-site RTT against the national plan's latency tiers."))
         .with_variable(_tier_variable()))
    for p in _stats(policy):
        d = d.with_panel(p)
    return (d.with_panel(_matrix(policy)).with_panel(_worst_links(policy))
            .with_panel(_route_inflation(policy)).with_panel(_loss())
            .with_panel(_planning()))
