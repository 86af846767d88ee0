"""Energy and PUE: each site's energy-based PUE against its target, and energy by meter scope.

PUE here is energy-based (facility energy / IT energy over the same period, ISO/IEC 30134-2,
GB 40879-2021 RM2), from the meters' energy counters, so a site is judged on the energy it
used, not on a power reading taken at one moment.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from computewatch.dashboards._panels import (
    BY_THRESHOLDS,
    DATASOURCE,
    KWH,
    hub_names,
    joined,
    kwh,
    place_table,
    prom,
    steps,
    with_place_names,
)
from computewatch.dashboards.national import pue_steps
from computewatch.dashboards.query import (
    INTERVAL,
    RANGE,
    Agg,
    Expr,
    OverTime,
    by_place,
    recorded,
    series,
)
from computewatch.dashboards.rules import PLACE
from computewatch.i18n import N_, _, current_language
from computewatch.place_names import place_name
from computewatch.policy import Policy
from computewatch.thresholds import pue_target_rules
from computewatch.topology import Topology

__all__ = ["UID", "energy_dashboard", "period_pue", "pue_target_text"]

UID = "computewatch-energy"


def period_pue(by: tuple[str, ...] = PLACE) -> Expr:
    """Energy-based PUE of each site over the dashboard's period, from the meters' counters."""
    joules = series("facility_power.joules_total")

    def energy(scope: str) -> Expr:
        return Agg("sum", OverTime("increase", joules.where(scope=scope), RANGE), by=by)

    return energy("facility") / energy("it")


REGIONS = {"east": N_("east"), "west": N_("west")}
"""The policy's PUE target regions (the hubs' ``region``), as the dashboards name them."""


def pue_target_text(policy: Policy, topology: Topology | None = None) -> str:
    """The PUE targets in one line: per region, elsewhere, then per site."""
    lang = current_language()
    parts = [f"{_(REGIONS.get(region, region))} {e.value:g}"
             for region, e in sorted(policy.pue.targets.items())]
    parts.append(_("elsewhere {value:g}").format(value=policy.pue.default_target.value))
    parts += [f"{place_name(topology, 'site', site, lang)} {e.value:g}"
              for site, e in sorted(policy.pue.sites.items())]
    return joined(parts)


def _pue_table(topology: Topology, policy: Policy) -> table.Panel:
    rules = pue_target_rules(topology, policy)
    pue = period_pue()
    target = by_place(pue, rules)
    excess = pue - target
    target_col, over_col = _("target"), _("over target")
    panel = (table.Panel().title(_("PUE per site against target")).datasource(DATASOURCE)
             .description(_("Energy-based PUE of each site over the selected period, its "
                            "target ({targets}) and the excess over it (red: over).").format(
                 targets=pue_target_text(policy, topology)))
             .height(12).span(10))
    panel = with_place_names(panel, topology)
    return (place_table(panel, [("A", "PUE", pue), ("B", target_col, target),
                                ("C", over_col, excess)])
            .sort_by([cb.TableSortByFieldState().display_name(over_col).desc(True)])
            .decimals(3).color_scheme(BY_THRESHOLDS)
            .override_by_name(over_col, [
                dm.DynamicConfigValue("custom.cellOptions", {"type": "color-background"}),
                dm.DynamicConfigValue("thresholds", steps("green", (0.0001, "red")).build())]))


def _pue_over_time() -> timeseries.Panel:
    return (timeseries.Panel().title(_("PUE per site (trailing hour)")).datasource(DATASOURCE)
            .description(_("Energy-based PUE over each trailing hour (recording rule {rule}).")
                         .format(rule="site:pue_energy_ratio:1h"))
            .height(12).span(14)
            .with_target(prom(recorded("site:pue_energy_ratio:1h"), legend="{{site}}"))
            .decimals(2)
            .legend(cb.VizLegendOptions().show_legend(True)
                    .display_mode(cm.LegendDisplayMode.TABLE)
                    .placement(cm.LegendPlacement.RIGHT).calcs(["mean", "max"])))


HUB_PUE = "hub:pue_energy_ratio:weighted1h"
"""alerts/rules/recording.yml: each hub's energy-weighted PUE of the last full hour, over the
sites whose hour is complete enough to state."""


def _pue_by_hub(topology: Topology, policy: Policy) -> timeseries.Panel:
    panel = (timeseries.Panel().title(_("PUE by hub (energy-weighted, last full hour)"))
             .datasource(DATASOURCE)
             .description(_("Each hub's PUE over the last full hour: the facility energy of "
                            "its sites / their IT energy, so a large site weighs more than a "
                            "small one (not a mean of site PUEs); sites whose hour is less "
                            "complete than the policy floor are left out. Recording rule "
                            "{rule}; colours at the policy's targets ({targets}).").format(
                 rule=HUB_PUE, targets=pue_target_text(policy, topology)))
             .height(8).span(24)
             .with_target(prom(recorded(HUB_PUE), legend="{{hub}}")))
    return (hub_names(panel, topology)
            .decimals(3).min(1).thresholds(pue_steps(policy))
            .thresholds_style(cb.GraphThresholdsStyleConfig()
                              .mode(cm.GraphThresholdsStyleMode.DASHED))
            .legend(cb.VizLegendOptions().show_legend(True)
                    .display_mode(cm.LegendDisplayMode.TABLE)
                    .placement(cm.LegendPlacement.RIGHT).calcs(["mean", "max", "lastNotNull"])))


def _energy_by_scope() -> timeseries.Panel:
    joules = series("facility_power.joules_total")
    acc = series("accelerator.energy_joules_total")
    return (timeseries.Panel().title(_("Energy by scope")).datasource(DATASOURCE)
            .description(_("Energy per interval through all meters by scope (facility: whole "
                           "sites; it, cooling, other), and the accelerators' own counters "
                           "(part of it), in kWh."))
            .height(9).span(14)
            .with_target(prom(kwh(Agg("sum", OverTime("increase", joules, INTERVAL),
                                      by=("scope",))), "A", legend="{{scope}}"))
            .with_target(prom(kwh(Agg("sum", OverTime("increase", acc, INTERVAL))), "B",
                              legend=_("accelerators (own counters)")))
            .unit(KWH).draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60))


def _energy_by_hub() -> bargauge.Panel:
    joules = series("facility_power.joules_total")
    return (bargauge.Panel().title(_("Energy by hub and scope")).datasource(DATASOURCE)
            .description(_("Energy each hub's meters recorded over the selected period, by "
                           "scope, in kWh (MWh and GWh where larger)."))
            .height(9).span(10)
            .with_target(prom(kwh(Agg("sum", OverTime("increase", joules, RANGE),
                                      by=("hub", "scope"))), instant=True,
                              legend="{{hub}} {{scope}}"))
            .unit(KWH).display_mode(cm.BarGaugeDisplayMode.GRADIENT)
            .orientation(cm.VizOrientation.HORIZONTAL)
            .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.CONTINUOUS_BL_PU)))


def energy_dashboard(topology: Topology, policy: Policy) -> db.Dashboard:
    return (db.Dashboard(_("computewatch · Energy and PUE")).uid(UID)
            .tags(["computewatch", "energy", "pue"]).time("now-24h", "now").refresh("5m")
            .timezone("browser").tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .description(_("Energy-based PUE of every site against its target, and where the "
                           "energy goes."))
            .with_panel(_pue_table(topology, policy)).with_panel(_pue_over_time())
            .with_panel(_pue_by_hub(topology, policy))
            .with_panel(_energy_by_scope()).with_panel(_energy_by_hub()))
