"""`computewatch summary` and `computewatch surplus`: what a store holds, and where idle
capacity is within a latency circle of demand."""

from __future__ import annotations

import sys
from typing import Annotated

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
    st = open_existing(store)
    try:
        period = period_of(st, since, until)
        result = national_summary(st, topo, pol, period.start, period.end)
    finally:
        st.close()
    render_summary(result, fmt, sys.stdout)


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
    st = open_existing(store)
    try:
        period = period_of(st, since, until)
        try:
            df = find_surplus(st, period, pol, topo, near=near, within_s=within_s,
                              ecosystem=ecosystem, model=model)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    finally:
        st.close()
    render_frame(df, fmt, sys.stdout, title=f"Idle capacity within {within} of {near}")
