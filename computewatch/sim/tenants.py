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

import zlib

import numpy as np

from computewatch.sim.fleet import Fleet

__all__ = ["CONTAINER", "HELD_IDLE_SHARE", "JOB_HOURS", "NAMESPACES", "job_lifetime", "job_pod",
           "job_start", "site_tenants"]

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


JOB_HOURS = (6, 12, 24, 48, 72)
"""How long a simulated job's pod lives, in hours (each namespace and node draws one): real
training jobs run for hours to days, so a card keeps one pod (one series) that long instead
of a new pod name every hour."""


def job_lifetime(namespace: str, node: str) -> tuple[int, int]:
    """(hours each pod of ``namespace`` on ``node`` lives, phase in hours): a fixed draw per
    pair from a hash of the names (no seed needed: the agent and the history must agree),
    the phase staggering the pods so they do not all restart at the same hour."""
    h = zlib.crc32(f"{namespace}/{node}".encode())
    hours = JOB_HOURS[h % len(JOB_HOURS)]
    return hours, (h // len(JOB_HOURS)) % hours


def job_start(hour: int | np.ndarray, hours: int | np.ndarray,
              phase: int | np.ndarray) -> int | np.ndarray:
    """The epoch hour the pod live at epoch hour ``hour`` started, for pods that live
    ``hours`` with ``phase`` (`job_lifetime`); works on ints and on numpy arrays, so the
    history can name a whole hour's pods at once."""
    return (hour + phase) // hours * hours - phase


def job_pod(namespace: str, node: str, hour: int) -> str:
    """The pod of ``namespace`` on ``node`` at epoch hour ``hour``: one pod per namespace,
    node and job holds every card the namespace has there (a multi-GPU job), and lives
    `job_lifetime` hours; it is named after the hour its job started."""
    start = job_start(hour, *job_lifetime(namespace, node))
    return f"{namespace}-{start:x}-{node.rsplit('-', 1)[-1]}"
