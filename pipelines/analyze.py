"""Runs the selected pipelines over a period, writes their findings back to the store.

The pipelines are independent: one that fails is logged with its name and the others still
run (a report states which pipelines produced nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from importlib import import_module

import pandas as pd

from computewatch.pipelines._findings import Finding, Period, findings_frame, write_findings
from computewatch.policy import Policy
from computewatch.store import Store
from computewatch.topology import Topology

__all__ = ["PIPELINES", "analyze"]

log = logging.getLogger(__name__)

PIPELINES = ("underuse", "latency", "pue", "anomaly", "surplus")


def _runner(name: str) -> Callable[..., list[Finding]]:
    return import_module(f"computewatch.pipelines.{name}").run


def analyze(store: Store, period: Period, policy: Policy, topology: Topology, *,
            only: Sequence[str] | None = None, write: bool = True) -> pd.DataFrame:
    """Findings of every selected pipeline, most severe first; written as ``finding``.

    ``attrs["pipelines"]`` and ``attrs["failed_pipelines"]`` say which ran and which failed."""
    names = list(only or PIPELINES)
    unknown = [n for n in names if n not in PIPELINES]
    if unknown:
        raise ValueError(f"unknown pipeline {unknown[0]!r} (choose from {', '.join(PIPELINES)})")
    findings: list[Finding] = []
    failed: list[str] = []
    for name in names:
        try:
            findings.extend(_runner(name)(store, period, policy, topology))
        except Exception:
            log.exception("pipeline %s failed; the others still ran", name)
            failed.append(name)
    if write:
        write_findings(store, findings)
    df = findings_frame(findings)
    # Which pipelines ran and which failed: alerts must not resolve a failed pipeline's.
    df.attrs.update(pipelines=names, failed_pipelines=failed)
    return df
