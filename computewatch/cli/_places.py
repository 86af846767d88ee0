"""`computewatch topology check`: validate a topology (and a policy against it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from computewatch.cli._common import PolicyOpt, load_places
from computewatch.place_names import untranslated_places
from computewatch.topology import Topology

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
    for line in untranslated_places(topo):
        typer.echo(f"warning: {line}: zh-CN output shows its id or English name", err=True)
    impossible = [lk for lk in links if lk.fiber_min_rtt_s > pol.budget_rtt_s(lk.tier)]
    for lk in impossible:
        typer.echo(f"warning: link {lk.pair} ({lk.tier.value}, {lk.distance_km:,.0f} km): the "
                   f"fiber minimum {lk.fiber_min_rtt_s * 1e3:.1f} ms RTT exceeds the "
                   f"{pol.budget_rtt_s(lk.tier) * 1e3:g} ms budget; no route can meet it"
                   + (" (tier set by an override)" if lk.overridden else ""), err=True)
    typer.echo(_meters_line(topo))


def _meters_line(topo: Topology) -> str:
    """What the sites declare of their meters, and which PUE category that gives."""
    declaring = [s for s in topo.sites if s.meters]
    meters = [m for s in declaring for m in s.meters]
    by_scope = {scope: sum(1 for m in meters if m.scope == scope)
                for scope in ("facility", "it", "cooling", "other")}
    cats: dict[str, int] = {}
    for s in declaring:
        it = [m.category for m in s.meters if m.scope == "it"]
        key = f"category {min(it)}" if it else "no IT meter"
        cats[key] = cats.get(key, 0) + 1
    line = (f"meters: {len(declaring)} of {len(topo.sites)} sites declare {len(meters)} ("
            + ", ".join(f"{n} {scope}" for scope, n in by_scope.items() if n) + ")")
    if cats:
        line += "; PUE " + ", ".join(f"{k}: {n} sites" for k, n in sorted(cats.items()))
    no_fac = [s.id for s in declaring if not any(m.scope == "facility" for m in s.meters)]
    if no_fac:
        line += f"; no facility meter at {', '.join(no_fac)}: no PUE"
    undeclared = len(topo.sites) - len(declaring)
    if undeclared:
        line += (f"; {undeclared} sites declare none (their PUE covers the meters that report "
                 "and states no category)")
    return line
