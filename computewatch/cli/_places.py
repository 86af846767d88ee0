"""`computewatch topology check`: validate a topology (and a policy against it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from computewatch.cli._common import PolicyOpt, load_places
from computewatch.finding_text import TIER_NAMES, word
from computewatch.i18n import _
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
    typer.echo(_("{source}: {hubs} hubs, {clusters} clusters, {sites} sites, {accelerators} "
                 "accelerators, {pairs} site pairs ({tiers})").format(
        source=path or _("shipped topology"), hubs=len(topo.hubs),
        clusters=len(topo.clusters), sites=len(topo.sites),
        accelerators=f"{topo.accelerator_count:,}", pairs=len(links),
        tiers=", ".join(f"{n} {word(TIER_NAMES, t.value)}" for t, n in sorted(tiers.items())))
               + (_("; outside every hub: {sites}").format(sites=", ".join(outside))
                  if outside else ""))
    warning = _("warning:")
    for line in topo.membership_warnings():
        typer.echo(f"{warning} {line}", err=True)
    for line in untranslated_places(topo):
        typer.echo(f"{warning} {line}: zh-CN output shows its id or English name", err=True)
    impossible = [lk for lk in links if lk.fiber_min_rtt_s > pol.budget_rtt_s(lk.tier)]
    for lk in impossible:
        typer.echo(f"{warning} " + _(
            "link {pair} ({tier}, {km} km): the fiber minimum {fiber} ms RTT exceeds the "
            "{budget} ms budget; no route can meet it").format(
                pair=lk.pair, tier=word(TIER_NAMES, lk.tier.value),
                km=f"{lk.distance_km:,.0f}", fiber=f"{lk.fiber_min_rtt_s * 1e3:.1f}",
                budget=f"{pol.budget_rtt_s(lk.tier) * 1e3:g}")
                   + (_(" (tier set by an override)") if lk.overridden else ""), err=True)
    typer.echo(_meters_line(topo))


def _meters_line(topo: Topology) -> str:
    """What the sites declare of their meters, and which PUE category that gives."""
    declaring = [s for s in topo.sites if s.meters]
    meters = [m for s in declaring for m in s.meters]
    by_scope = {scope: sum(1 for m in meters if m.scope == scope)
                for scope in ("facility", "it", "cooling", "other")}
    cats: dict[tuple[int, int], int] = {}  # (0, category) or (1, 0) for "no IT meter"
    for s in declaring:
        it = [m.category for m in s.meters if m.scope == "it"]
        key = (0, min(it)) if it else (1, 0)
        cats[key] = cats.get(key, 0) + 1
    line = _("meters: {declaring} of {sites} sites declare {meters} ({scopes})").format(
        declaring=len(declaring), sites=len(topo.sites), meters=len(meters),
        scopes=", ".join(f"{n} {scope}" for scope, n in by_scope.items() if n))
    if cats:
        line += "; PUE " + ", ".join(
            (_("category {n}").format(n=cat) if none == 0 else _("no IT meter"))
            + _(": {n} sites").format(n=n) for (none, cat), n in sorted(cats.items()))
    no_fac = [s.id for s in declaring if not any(m.scope == "facility" for m in s.meters)]
    if no_fac:
        line += _("; no facility meter at {sites}: no PUE").format(sites=", ".join(no_fac))
    undeclared = len(topo.sites) - len(declaring)
    if undeclared:
        line += _("; {n} sites declare none (their PUE covers the meters that report and "
                  "states no category)").format(n=undeclared)
    return line
