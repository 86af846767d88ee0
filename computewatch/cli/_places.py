"""`computewatch topology check`: validate a topology (and a policy against it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from computewatch.cli._common import PolicyOpt, load_places

__all__ = ["topology_check"]


def topology_check(
    path: Annotated[Path | None, typer.Argument(help="Topology YAML (default: shipped).")]
    = None,
    policy: PolicyOpt = None,
) -> None:
    """Validate a topology (and a policy against it); print what it holds."""
    topo, pol = load_places(path, policy)
    links = topo.links("full_mesh")
    tiers = {t: sum(1 for lk in links if lk.tier == t) for t in {lk.tier for lk in links}}
    outside = [s.id for s in topo.sites if s.hub is None]
    typer.echo(f"{path or 'shipped topology'}: {len(topo.hubs)} hubs, {len(topo.clusters)} "
               f"clusters, {len(topo.sites)} sites, {topo.accelerator_count:,} accelerators, "
               f"{len(links)} site pairs ("
               + ", ".join(f"{n} {t}" for t, n in sorted(tiers.items())) + ")"
               + (f"; outside every hub: {', '.join(outside)}" if outside else ""))
    for line in topo.membership_warnings():
        typer.echo(f"warning: {line}", err=True)
    impossible = [lk for lk in links if lk.fiber_min_rtt_s > pol.budget_rtt_s(lk.tier)]
    for lk in impossible:
        typer.echo(f"warning: link {lk.pair} ({lk.tier.value}, {lk.distance_km:,.0f} km): the "
                   f"fiber minimum {lk.fiber_min_rtt_s * 1e3:.1f} ms RTT exceeds the "
                   f"{pol.budget_rtt_s(lk.tier) * 1e3:g} ms budget; no route can meet it"
                   + (" (tier set by an override)" if lk.overridden else ""), err=True)
