"""Builds an agent from a node config: the collectors it enables and the exporters it feeds.

With ``simulate`` (a `NodeSim`), the drivers are replaced by the simulator's fakes (a fake
NVML module, a fake ``npu-smi``) and the placement labels come from the simulated node; the
collector code is the same as on real hardware.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from collectors.agent import Agent, Scheduled
from collectors.ascend import AscendCollector
from collectors.config import NodeConfig
from collectors.export._base import Exporter
from collectors.nvml import NvmlCollector

if TYPE_CHECKING:  # the simulator is only imported when --simulate asks for it
    from computewatch.sim.node import NodeSim

__all__ = ["build_agent", "build_collectors", "build_exporters"]


def build_collectors(config: NodeConfig, simulate: NodeSim | None = None) -> list[Scheduled]:
    labels = simulate.labels if simulate else config.labels
    out = []
    c = config.collectors
    if c.nvml.enabled:
        nvml = None
        if simulate is not None:
            from computewatch.sim.fake_nvml import FakeNvml

            nvml = FakeNvml(simulate)
        out.append(Scheduled(NvmlCollector(labels, nvml=nvml),
                             c.nvml.interval or config.interval,
                             c.nvml.timeout or config.timeout))
    if c.ascend.enabled:
        run = None
        if simulate is not None:
            from computewatch.sim.fake_npusmi import FakeNpuSmi

            run = FakeNpuSmi(simulate)
        out.append(Scheduled(AscendCollector(labels, run=run, npu_smi=c.ascend.npu_smi,
                                             timeout_s=c.ascend.command_timeout,
                                             detail=c.ascend.detail),
                             c.ascend.interval or config.interval,
                             c.ascend.timeout or config.timeout))
    return out


def build_exporters(config: NodeConfig, *, labels: dict[str, str] | None = None,
                    listen: str | None = None,
                    compat: Sequence[str] | None = None) -> list[Exporter]:
    from collectors.export.prometheus import PrometheusExporter

    e = config.exports
    out: list[Exporter] = []
    if e.prometheus.enabled or listen:
        out.append(PrometheusExporter(listen or e.prometheus.listen,
                                      compat if compat is not None else e.prometheus.compat))
    if e.otlp.enabled:
        from collectors.export.otlp import OtlpExporter

        labels = labels or config.labels
        resource = {"host.name": labels["node"], "service.name": "computewatch-agent",
                    **{f"computewatch.{k}": v for k, v in labels.items() if v and k != "node"}}
        out.append(OtlpExporter(e.otlp.endpoint, resource=resource, headers=e.otlp.headers,
                                timeout_s=e.otlp.timeout))
    if e.store.enabled:
        from collectors.export.store import StoreExporter

        out.append(StoreExporter(e.store.url))
    return out


def build_agent(config: NodeConfig, *, simulate: NodeSim | None = None,
                exporters: Sequence[Exporter] | None = None) -> Agent:
    labels = simulate.labels if simulate else config.labels
    if exporters is None:
        exporters = build_exporters(config, labels=labels)
    return Agent(build_collectors(config, simulate), exporters, labels)
