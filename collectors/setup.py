"""Builds an agent from a node config: the collectors it enables and the exporters it feeds.

With ``simulate`` (a `NodeSim`), the drivers are replaced by the simulator's fakes (a fake
NVML module, a fake ``npu-smi``) and the placement labels come from the simulated node; the
collector code is the same as on real hardware.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from computewatch.collectors._settings import CollectorConfig
from computewatch.collectors.agent import Agent, Scheduled
from computewatch.collectors.ascend import AscendCollector
from computewatch.collectors.config import NodeConfig
from computewatch.collectors.export import Exporter
from computewatch.collectors.nvml import NvmlCollector

if TYPE_CHECKING:  # the simulator is only imported when --simulate asks for it
    from pathlib import Path

    from computewatch.sim.node import NodeSim

__all__ = ["build_agent", "build_attribution", "build_collectors", "build_exporters"]


def build_collectors(config: NodeConfig, simulate: NodeSim | None = None) -> list[Scheduled]:
    labels = simulate.labels if simulate else config.labels
    out = []
    c = config.collectors
    if c.nvml.enabled:
        nvml = None
        if simulate is not None:
            from computewatch.sim.fake_nvml import FakeNvml

            nvml = FakeNvml(simulate)
        out.append(Scheduled(NvmlCollector(labels, nvml=nvml,
                                           top_processes=c.nvml.top_processes),
                             c.nvml.interval or config.interval,
                             c.nvml.timeout or config.timeout))
    if c.ascend.enabled:
        run = None
        if simulate is not None:
            from computewatch.sim.fake_npusmi import FakeNpuSmi

            run = FakeNpuSmi(simulate)
        a = c.ascend
        hccn_run = None
        if simulate is not None:
            from computewatch.sim.fake_hccn import FakeHccnTool

            hccn_run = FakeHccnTool(simulate)
        timeout = a.timeout or config.timeout
        out.append(Scheduled(AscendCollector(
            labels, run=run, npu_smi=a.npu_smi, timeout_s=a.command_timeout, detail=a.detail,
            detail_every=a.detail_every, detail_budget_s=a.detail_budget,
            detail_concurrency=a.detail_concurrency, views=a.views, slow_views=a.slow_views,
            slow_every=a.slow_every, run_timeout_s=timeout,
            hccn_tool=a.hccn_tool, hccn_run=hccn_run, hccn_queries=a.hccn_queries,
            max_processes=a.max_processes), a.interval or config.interval, timeout))
    out += _power_collectors(config, labels)
    if (latency := _latency_collector(config, labels)) is not None:
        out.append(latency)
    return out


def _power_collectors(config: NodeConfig, labels: dict[str, str]) -> list[Scheduled]:
    c = config.collectors
    out = []

    def sched(collector: object, cfg: CollectorConfig) -> Scheduled:
        return Scheduled(collector, cfg.interval or config.interval,  # type: ignore[arg-type]
                         cfg.timeout or config.timeout)

    if c.redfish.enabled and c.redfish.endpoints:
        from computewatch.collectors.redfish import RedfishCollector

        out.append(sched(RedfishCollector(labels, c.redfish.endpoints), c.redfish))
    if c.snmp.enabled and c.snmp.devices:
        from computewatch.collectors.snmp import SnmpCollector

        out.append(sched(SnmpCollector(labels, c.snmp.devices), c.snmp))
    if c.modbus.enabled and c.modbus.meters:
        from computewatch.collectors.modbus import ModbusCollector

        out.append(sched(ModbusCollector(labels, c.modbus.meters), c.modbus))
    if c.rapl.enabled:
        from computewatch.collectors.rapl import RaplCollector

        out.append(sched(RaplCollector(labels, c.rapl.root), c.rapl))
    return out


def _latency_collector(config: NodeConfig, labels: dict[str, str]) -> Scheduled | None:
    lat = config.collectors.latency
    if not (lat.enabled and lat.peers):
        return None
    from computewatch.collectors.latency import (
        LatencyCollector,
        read_probe_key,
        targets_from_topology,
    )
    from computewatch.policy import load_policy
    from computewatch.topology import load_topology

    topology = load_topology(lat.topology)
    policy = load_policy(lat.policy, topology=topology)
    if not labels.get("site"):
        raise ValueError("collectors.latency needs the node's `site` to know its links")
    targets = targets_from_topology(topology, policy, labels["site"], lat.peers, lat.mode,
                                    lat.kind)
    try:
        key = read_probe_key(lat.key_file, lat.key_env)
    except ValueError as exc:
        raise ValueError(f"collectors.latency: {exc}") from None
    collector = LatencyCollector(labels, targets, window_s=lat.window,
                                 interval_s=lat.probe_interval, timeout_s=lat.probe_timeout,
                                 key=key)
    return Scheduled(collector, lat.interval or config.interval, lat.timeout or config.timeout)


def build_exporters(config: NodeConfig, *, labels: dict[str, str] | None = None,
                    listen: str | None = None,
                    compat: Sequence[str] | None = None,
                    web_config: Path | None = None) -> list[Exporter]:
    from computewatch.collectors.export.prometheus import PrometheusExporter

    e = config.exports
    out: list[Exporter] = []
    if e.prometheus.enabled or listen:
        out.append(PrometheusExporter(listen or e.prometheus.listen,
                                      compat if compat is not None else e.prometheus.compat,
                                      web_config or e.prometheus.web_config_file))
    if e.otlp.enabled:
        from computewatch.collectors.export.otlp import OtlpExporter

        labels = labels or config.labels
        resource = {"host.name": labels["node"], "service.name": "computewatch-agent",
                    **{f"computewatch.{k}": v for k, v in labels.items() if v and k != "node"}}
        out.append(OtlpExporter(e.otlp.endpoint, resource=resource, headers=e.otlp.headers,
                                timeout_s=e.otlp.timeout))
    if e.store.enabled:
        from computewatch.collectors.export.store import StoreExporter

        out.append(StoreExporter(e.store.url))
    if e.remote.enabled:
        from computewatch.collectors.export.remote import RemoteExporter

        r = e.remote
        try:
            out.append(RemoteExporter(r.url, r.buffer_dir, max_bytes=int(r.buffer_max_bytes),
                                      batch_max_samples=r.batch_max_samples,
                                      flush_interval_s=r.flush_interval, fsync=r.buffer_fsync,
                                      fsync_interval_s=r.buffer_fsync_interval,
                                      max_backoff_s=r.max_backoff, timeout_s=r.timeout,
                                      gzip=r.gzip))
        except ValueError as exc:
            raise ValueError(f"exports.remote: {exc}") from None
    return out


def _declared_meters(path: Path | None, site: str) -> dict[str, list]:
    """This site's declared meters from the topology at ``path`` (none without one)."""
    if path is None:
        return {}
    from computewatch.pue import declared_meters
    from computewatch.topology import load_topology

    declared = declared_meters(load_topology(path))
    if site not in declared:
        raise ValueError(f"collectors.pue.topology: {path} declares no meters for site "
                         f"{site!r}")
    return {site: declared[site]}


def build_agent(config: NodeConfig, *, simulate: NodeSim | None = None,
                exporters: Sequence[Exporter] | None = None) -> Agent:
    labels = simulate.labels if simulate else config.labels
    if exporters is None:
        exporters = build_exporters(config, labels=labels)
    collectors = build_collectors(config, simulate)
    power = {"redfish", "snmp", "modbus", "rapl"} & {s.name for s in collectors}
    if power and config.collectors.pue.enabled:
        from computewatch.collectors.pue import MeterTap, PueCollector

        p = config.collectors.pue
        tap = MeterTap()
        exporters = [*exporters, tap]
        collectors.append(Scheduled(PueCollector(tap, p.windows, p.min_completeness,
                                                 timedelta(seconds=p.max_gap),
                                                 meters=_declared_meters(p.topology,
                                                                         labels["site"])),
                                    config.interval, config.timeout))
    relabel = device_labels = None
    if config.kubernetes.enabled:
        attribution = build_attribution(config, labels)
        collectors.insert(0, attribution)  # first: its answer is in before the devices' runs
        relabel = attribution.collector.relabel  # type: ignore[attr-defined]
        device_labels = attribution.collector.device_labels  # type: ignore[attr-defined]
    return Agent(collectors, exporters, labels, relabel=relabel, device_labels=device_labels)


def build_attribution(config: NodeConfig, labels: dict[str, str]) -> Scheduled:
    """The ``kubernetes`` collector: runs every ``interval`` (a few µs when nothing is due)
    and asks the kubelet every ``refresh``, or sooner when the devices' processes change."""
    from computewatch.collectors.kubernetes import PodAttribution, PodResourcesClient

    k = config.kubernetes
    client = PodResourcesClient(k.pod_resources_socket, k.timeout)
    return Scheduled(PodAttribution(labels, client, proc_root=k.proc_root,
                                    cgroup_fallback=k.cgroup_fallback,
                                    refresh_s=k.refresh),
                     min(config.interval, k.refresh), k.timeout + 1.0)
