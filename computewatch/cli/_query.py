"""`computewatch summary` and `computewatch surplus`: what a store holds, and where idle
capacity is within a latency circle of demand."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from computewatch.cli._common import (
    DEFAULT_STORE,
    FormatOpt,
    PolicyOpt,
    StoreOpt,
    TopologyOpt,
    UserError,
    load_places,
    open_existing,
    output_format,
    parse_duration,
    period_of,
)
from computewatch.i18n import N_, _, current_language

if TYPE_CHECKING:
    import pandas as pd

    from computewatch.topology import Topology

_SURPLUS_COLUMNS = {
    "site": N_("site"), "hub": N_("hub"), "cluster": N_("cluster"),
    "city_rtt_s": N_("RTT to the city (s)"), "rtt_source": N_("RTT from"),
    "tier_circle": N_("latency circle"), "ecosystem": N_("ecosystem"), "model": N_("model"),
    "accelerators": N_("accelerators"), "idle_cards": N_("idle cards"),
    "idle_accelerator_hours": N_("idle accelerator-hours"),
    "mean_utilization": N_("mean utilization"), "reclaimable_cards": N_("reclaimable cards"),
    "reclaimable_accelerator_hours": N_("reclaimable accelerator-hours"),
}
"""The surplus table's headers for people (JSON and CSV keep the field names)."""
_RTT_SOURCES = {"observed": N_("observed"), "estimated": N_("estimated")}

__all__ = ["summary", "surplus"]


def summary(
    store: StoreOpt = DEFAULT_STORE,
    since: Annotated[str, typer.Option(help="Period length back from --until, e.g. 24h.")]
    = "24h",
    until: Annotated[str | None, typer.Option(help="End of the period (ISO 8601, UTC); "
                                              "default: the last sample in the store.")] = None,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
    output: FormatOpt = "table",
) -> None:
    """Print the national summary of what a store holds."""
    from computewatch.render import render_summary
    from computewatch.summary import national_summary

    fmt = output_format(output)
    topo, pol = load_places(topology, policy)
    st = open_existing(store, read_only=True)  # it only reads: others may read beside
    try:
        period = period_of(st, since, until)
        result = national_summary(st, topo, pol, period.start, period.end)
    finally:
        st.close()
    render_summary(result, fmt, sys.stdout, places=topo)


def surplus(
    near: Annotated[str, typer.Option(help="Demand city, e.g. Shanghai.")],
    within: Annotated[str, typer.Option(help="Latency circle as RTT, e.g. 5ms.")] = "5ms",
    ecosystem: Annotated[str | None, typer.Option(help="cuda or cann.")] = None,
    model: Annotated[str | None, typer.Option(help="Accelerator model, e.g. 'Ascend 910B'.")]
    = None,
    since: Annotated[str, typer.Option(help="Period for idle accelerator-hours.")] = "24h",
    until: Annotated[str | None, typer.Option(help="End of the period (ISO 8601, UTC).")]
    = None,
    store: StoreOpt = DEFAULT_STORE,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
    output: FormatOpt = "table",
) -> None:
    """Idle accelerators within a latency circle of a demand city."""
    from computewatch.pipelines.surplus import surplus as find_surplus
    from computewatch.render import render_frame

    fmt = output_format(output)
    topo, pol = load_places(topology, policy)
    within_s = parse_duration(within, "--within").total_seconds()
    st = open_existing(store, read_only=True)  # it only reads: others may read beside
    try:
        period = period_of(st, since, until)
        try:
            df = find_surplus(st, period, pol, topo, near=near, within_s=within_s,
                              ecosystem=ecosystem, model=model)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    finally:
        st.close()
    if fmt.value == "table" and current_language() != "en":
        df = _surplus_for_people(df, topo)
    city = near
    if current_language() != "en":
        from computewatch.place_names import place_name

        city = place_name(topo, "city", near, current_language())
    render_frame(df, fmt, sys.stdout, title=_("Idle capacity within {within} of {city}").format(
        within=within, city=city))


def _surplus_for_people(df: pd.DataFrame, topo: Topology) -> pd.DataFrame:
    """The surplus table in the current language: places by name, words translated."""
    from computewatch.finding_text import TIER_NAMES, word
    from computewatch.place_names import place_name

    lang = current_language()
    out = df.copy()
    for col, kind in (("site", "site"), ("hub", "hub"), ("cluster", "cluster")):
        if col in out:
            out[col] = [place_name(topo, kind, str(v), lang) if v else v for v in out[col]]
    if "tier_circle" in out:
        out["tier_circle"] = [word(TIER_NAMES, v) for v in out["tier_circle"]]
    if "rtt_source" in out:
        out["rtt_source"] = [word(_RTT_SOURCES, v) for v in out["rtt_source"]]
    return out.rename(columns={c: _(t) for c, t in _SURPLUS_COLUMNS.items()})
