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
    topo, _ = load_places(path, policy)
    links = topo.links("full_mesh")
    tiers = {t: sum(1 for lk in links if lk.tier == t) for t in {lk.tier for lk in links}}
    typer.echo(f"{path or 'shipped topology'}: {len(topo.hubs)} hubs, {len(topo.clusters)} "
               f"clusters, {len(topo.sites)} sites, {topo.accelerator_count:,} accelerators, "
               f"{len(links)} site pairs ("
               + ", ".join(f"{n} {t}" for t, n in sorted(tiers.items())) + ")")
