"""Prometheus exposition of the latest samples, through a prometheus-client custom collector.

Names, types and help come from the catalogue: ``{measurement}_{field}``, counters exposed
with ``_total``. ``compat`` adds the names existing dashboards query: DCGM-exporter's for
NVIDIA devices (``DCGM_FI_DEV_GPU_UTIL{gpu,UUID,pci_bus_id,device,modelName,Hostname}`` in
DCGM's units: %, MiB, MHz, mJ) and npu-exporter's for Ascend devices
(``npu_chip_info_utilization{id,model_name,pcie_bus_info}``), each converted with the
metric's ``compat_scale``. Label values are escaped by prometheus-client's exposition code.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import Metric

from computewatch import catalog
from computewatch.addresses import parse_listen
from computewatch.collectors.export._base import ExportResult
from computewatch.samples import Sample

__all__ = ["COMPAT_CHOICES", "PrometheusExporter", "SnapshotCollector", "exposition"]

COMPAT_CHOICES = ("dcgm", "npu-exporter")


def _family(m: catalog.Metric, name: str | None = None, help_: str | None = None) -> Metric:
    typ = "counter" if m.kind is catalog.Kind.COUNTER else "gauge"
    base = name or m.prometheus
    if typ == "counter" and base.endswith("_total"):
        base = base[: -len("_total")]
    return Metric(base, help_ or m.help, typ)


def _sample_name(family: Metric) -> str:
    return family.name + "_total" if family.type == "counter" else family.name


def _dcgm_labels(labels: dict[str, str]) -> dict[str, str]:
    out = {"gpu": labels.get("index", ""), "UUID": labels.get("device", ""),
           "pci_bus_id": labels.get("pci_bus_id", ""),
           "device": f"nvidia{labels.get('index', '')}", "modelName": labels.get("model", ""),
           "Hostname": labels.get("node", "")}
    if labels.get("parent"):
        out["UUID"], out["GPU_I_ID"] = labels["parent"], labels.get("index", "")
    return out


def _npu_labels(labels: dict[str, str]) -> dict[str, str]:
    return {"id": labels.get("index", ""), "model_name": labels.get("model", ""),
            "pcie_bus_info": labels.get("pci_bus_id", ""), "node": labels.get("node", "")}


def families(samples: Iterable[Sample], compat: Sequence[str] = ()) -> list[Metric]:
    """Metric families in catalogue order, one per metric (plus compat names when asked)."""
    by_metric: dict[str, list[Sample]] = {}
    for s in samples:
        by_metric.setdefault(s.name, []).append(s)
    out = []
    histograms: dict[str, Metric] = {}
    for m in catalog.CATALOG:
        group = by_metric.get(m.name)
        if not group:
            continue
        if m.histogram:  # _bucket, _count and _sum parts go into one histogram family
            fam = histograms.get(m.histogram)
            if fam is None:
                # The family's help is its first part's (the _bucket entry, by catalogue order).
                fam = histograms[m.histogram] = Metric(m.histogram, m.help, "histogram")
                out.append(fam)
            for s in group:
                fam.add_sample(m.prometheus, dict(s.labels), s.value)
            continue
        fam = _family(m)
        for s in group:
            fam.add_sample(_sample_name(fam), dict(s.labels), s.value)
        out.append(fam)
        for vendor, want, name, relabel in (("nvidia", "dcgm", m.dcgm, _dcgm_labels),
                                            ("huawei", "npu-exporter", m.npu_exporter,
                                             _npu_labels)):
            if want not in compat or not name:
                continue
            picked = [s for s in group if s.label("vendor") == vendor]
            if not picked:
                continue
            cfam = _family(m, name, f"{m.help} ({want}-compatible name and unit)")
            for s in picked:
                cfam.add_sample(_sample_name(cfam), relabel(dict(s.labels)),
                                s.value * m.compat_scale)
            out.append(cfam)
    return out


class SnapshotCollector:
    """A prometheus-client collector serving the latest complete sample set."""

    def __init__(self, compat: Sequence[str] = ()) -> None:
        unknown = set(compat) - set(COMPAT_CHOICES)
        if unknown:
            raise ValueError(f"unknown --compat {', '.join(sorted(unknown))!r} "
                             f"(choose from {', '.join(COMPAT_CHOICES)})")
        self.compat = tuple(compat)
        self._samples: dict[str, list[Sample]] = {}
        self._lock = threading.Lock()

    def update(self, source: str, samples: Sequence[Sample]) -> None:
        """Replace what ``source`` (a collector) last reported."""
        with self._lock:
            self._samples[source] = list(samples)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            current = [s for group in self._samples.values() for s in group]
        yield from families(current, self.compat)


def exposition(samples: Iterable[Sample], compat: Sequence[str] = ()) -> bytes:
    """The text exposition format (0.0.4) of ``samples``."""
    registry = CollectorRegistry(auto_describe=False)
    snap = SnapshotCollector(compat)
    snap.update("all", list(samples))
    registry.register(snap)
    return generate_latest(registry)


class PrometheusExporter:
    """Serves ``/metrics`` on ``listen`` (host:port); `export` just swaps the snapshot."""

    name = "prometheus"

    def __init__(self, listen: str = "127.0.0.1:9400", compat: Sequence[str] = ()) -> None:
        host, port = parse_listen(listen)  # a ValueError naming the text
        self.snapshot = SnapshotCollector(compat)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.snapshot)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._server, self._thread = start_http_server(port, addr=host,
                                                       registry=self.registry)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_port)

    def export(self, batch: Sequence[Sample], source: str = "all") -> ExportResult:
        self.snapshot.update(source, batch)
        return ExportResult.ok(len(batch))

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
