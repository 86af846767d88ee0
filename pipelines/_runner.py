"""The one analyze runner: runs the selected pipelines over a period, each on its own.

The pipelines are independent: one that fails is logged with its name, its status says why,
and the others still run. The command line (`analyze`, `report`, `demo`), the alert push and
the report all work from the `Analysis` this returns.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence

from computewatch.findings import Analysis, Finding, Period, PipelineStatus, write_findings
from computewatch.pipelines._shared import SharedScan
from computewatch.policy import Policy
from computewatch.store import Store
from computewatch.topology import Topology

__all__ = ["PIPELINES", "Pipeline", "run_pipelines"]

log = logging.getLogger(__name__)

Pipeline = Callable[[Store, Period, Policy, Topology], list[Finding]]
"""A pipeline's entry point: ``run(store, period, policy, topology) -> findings``."""


class _Registry(Mapping[str, Pipeline]):
    """Pipeline name -> its module's ``run``, read-only; a module is imported when its
    pipeline is first looked up, so a run of some (a report over daily rollups runs none)
    does not import the others."""

    def __init__(self, names: Sequence[str]) -> None:
        self._names = tuple(names)

    def __getitem__(self, name: str) -> Pipeline:
        if name not in self._names:
            raise KeyError(name)
        return importlib.import_module(f"{__package__}.{name}").run

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


PIPELINES: Mapping[str, Pipeline] = _Registry(("underuse", "latency", "pue", "anomaly",
                                               "surplus"))
"""Every pipeline by name, in the order a full run runs them."""


def run_pipelines(store: Store, period: Period, policy: Policy, topology: Topology, *,
                  only: Sequence[str] | None = None, write: bool = True,
                  progress: Callable[[str], None] | None = None,
                  registry: Mapping[str, Pipeline] = PIPELINES) -> Analysis:
    """Run the pipelines named in ``only``, in that order (default: all of ``registry``,
    which is `PIPELINES` unless a caller brings its own).

    Raises ValueError for an unknown name before anything runs. With ``write`` the findings
    are written to the store as ``finding``, replacing those the same pipelines wrote for
    the same period before (`computewatch.findings.write_findings`), so re-running an
    analysis leaves one copy of each finding. ``progress`` is called with each pipeline's
    name as it starts. The pipelines read the store through `SharedScan`, so the period's
    utilization is scanned once for all of them.
    """
    names = list(registry) if only is None else list(dict.fromkeys(only))
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown pipeline {unknown[0]!r} (choose from {', '.join(registry)})")
    findings: list[Finding] = []
    status: list[PipelineStatus] = []
    shared = SharedScan(store, period)  # one read of the period's utilization for all
    for name in names:
        if progress is not None:
            progress(name)
        try:
            got = registry[name](shared, period, policy, topology)
        except Exception as exc:  # one broken pipeline never stops the others
            log.exception("pipeline %s failed; the others still ran", name)
            status.append(PipelineStatus(name, error=f"{type(exc).__name__}: {exc}"))
            continue
        findings.extend(got)
        status.append(PipelineStatus(name, len(got)))
    if write:
        # A rerun over the same window replaces what the pipelines that ran wrote before; a
        # failed pipeline's earlier findings stay.
        write_findings(store, findings,
                       replace=(period, [s.name for s in status if s.ok]))
    return Analysis.of(period, findings, status)
