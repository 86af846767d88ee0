"""Tenants of the simulated fleet: the namespaces whose pods hold accelerators.

A card the history runs a job on is held by a pod of one of its site's namespaces; a card
running no job is still held, idle, with probability `HELD_IDLE_SHARE` (a notebook, a
reservation, a job waiting on data), else it is free. Both draws are made per card and
hour, from streams of their own, so the load the history generated before tenants existed
is unchanged. Namespaces are cluster-scoped, as in Kubernetes: the same name at two sites is
two tenants, and every count is kept per (site, namespace).

The fake drivers (`computewatch.sim.node`) and the history (`computewatch.sim.history`)
both name pods and namespaces through here, so an agent reading a simulated node and the
backfilled store agree on who holds what.
"""

from __future__ import annotations

import numpy as np

from computewatch.sim.fleet import Fleet

__all__ = ["CONTAINER", "HELD_IDLE_SHARE", "NAMESPACES", "job_pod", "site_tenants"]

NAMESPACES = ("llm-pretrain", "llm-finetune", "vision", "speech", "recsys", "autodrive",
              "bio-fold", "weather", "edu-lab", "fin-risk")
"""Every namespace a simulated site can host (AI tenants of a national compute centre)."""

HELD_IDLE_SHARE = 0.2
"""Share of the cards running no job in an hour that a pod holds anyway (allocated, idle)."""

CONTAINER = "main"
"""The container every simulated pod runs (one per pod, as most training jobs do)."""

_TENANTS_PER_SITE = (2, 5)  # at least 2, fewer than 5 namespaces per site


def site_tenants(fleet: Fleet) -> list[tuple[int, ...]]:
    """Per site (fleet order): the indices into `NAMESPACES` of the namespaces it hosts."""
    rng = np.random.default_rng([fleet.seed, 6])
    out = []
    for _ in fleet.sites:
        k = int(rng.integers(*_TENANTS_PER_SITE))
        out.append(tuple(sorted(int(i) for i in rng.choice(len(NAMESPACES), k,
                                                            replace=False))))
    return out


def job_pod(namespace: str, node: str, hour: int) -> str:
    """The pod of ``namespace`` on ``node`` in epoch hour ``hour``: one pod per namespace,
    node and hour holds every card the namespace has there (a multi-GPU job)."""
    return f"{namespace}-{hour:x}-{node.rsplit('-', 1)[-1]}"
