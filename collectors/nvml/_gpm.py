"""Profiling metrics through NVML's GPM interface (``nvmlGpm*``, Hopper and later).

GPM reports rates between two samples of a device's performance counters. Each device keeps
two sample buffers; every run takes a new sample and computes the metrics between it and the
previous run's, so a value is the average over the collector's interval (as DCGM's profiling
fields are over their update interval). On a device's first run there is no previous sample:
the reader takes one, waits ``warmup_s`` once for all such devices, and takes another, so even
``collect --once`` shows the profiling ratios.

Where GPM is not supported (before Hopper, ``nvmlGpmQueryDeviceSupport`` says so; a MIG
instance whose driver cannot sample it; one metric a device lacks, such as NVLink on a PCIe
card) the metrics are absent, never zero, and are not asked for again. Units as NVML states
them: utilizations in percent (-> ratios), byte rates in MiB/s (-> bytes/s, as DCGM
converts them).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from computewatch.collectors._base import Labels
from computewatch.collectors.nvml._calls import Dev, DriverCalls

__all__ = ["GPM_FIELDS", "GpmReader", "GpmTarget"]

GPM_FIELDS: tuple[tuple[str, str, float], ...] = (
    ("graphics_active_ratio", "NVML_GPM_METRIC_GRAPHICS_UTIL", 0.01),
    ("sm_active_ratio", "NVML_GPM_METRIC_SM_UTIL", 0.01),
    ("tensor_active_ratio", "NVML_GPM_METRIC_ANY_TENSOR_UTIL", 0.01),
    ("dram_active_ratio", "NVML_GPM_METRIC_DRAM_BW_UTIL", 0.01),
    ("pcie_transmit_bytes_per_second", "NVML_GPM_METRIC_PCIE_TX_PER_SEC", 2.0**20),
    ("pcie_receive_bytes_per_second", "NVML_GPM_METRIC_PCIE_RX_PER_SEC", 2.0**20),
    ("nvlink_transmit_bytes_per_second", "NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC", 2.0**20),
    ("nvlink_receive_bytes_per_second", "NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC", 2.0**20),
)
"""Catalogue field, NVML GPM metric id, and the factor from NVML's unit to the catalogue's."""

_RATIO_FIELDS = frozenset(f for f, _, scale in GPM_FIELDS if scale == 0.01)


@dataclass
class GpmTarget:
    """A device to profile this run: a GPU, or a MIG instance of it (``gpu_instance``)."""

    dev: Dev
    handle: Any  # the GPU's handle, also for a MIG instance
    labels: Labels  # sorted, as its samples carry them
    gpu_instance: int | None = None


@dataclass
class _Buffers:
    previous: Any
    current: Any
    primed: bool = False  # ``previous`` holds a sample
    fields: list[tuple[str, int, float]] = field(default_factory=list)
    request: Any = None  # the c_nvmlGpmMetricsGet_t, reused (477 metric slots, 19 kB)
    asked: tuple[str, ...] = ()  # the fields ``request`` is set up for


class GpmReader:
    """Keeps each device's GPM sample buffers across runs and turns them into field values."""

    def __init__(self, warmup_s: float = 0.1, sleep: Callable[[float], None] = time.sleep) -> None:
        self.warmup_s = warmup_s
        self._sleep = sleep
        self._buffers: dict[str, _Buffers] = {}
        self._supported: set[str] = set()  # devices GPM said yes to in this session

    def supported(self, nv: Any, calls: DriverCalls, dev: Dev, h: Any) -> bool:
        """Whether the GPU can be profiled, asked once per session (then remembered)."""
        if calls.skip(dev, "gpm"):
            return False
        if dev.index in self._supported:
            return True
        support = calls.call(nv, dev, "gpm", ("nvmlGpmQueryDeviceSupport",), h)
        if support is None or not support.isSupportedDevice:
            calls.unsupported.add((dev.index, "gpm"))
            return False
        self._supported.add(dev.index)
        return True

    def read(self, nv: Any, calls: DriverCalls,
             targets: list[GpmTarget]) -> list[tuple[GpmTarget, str, float]]:
        """One sample per target; the metrics since its previous one, as (target, field, value)."""
        ready = [t for t in targets if self._sample(nv, calls, t)]
        cold = [t for t in ready if not self._buffers[t.dev.index].primed]
        for t in cold:
            self._buffers[t.dev.index].primed = True
        if cold:
            self._sleep(self.warmup_s)
            for t in cold:
                self._sample(nv, calls, t)
        out = []
        for t in ready:
            buffers = self._buffers.get(t.dev.index)
            if buffers is not None and buffers.primed:
                out += self._metrics(nv, calls, t)
        return out

    def drop(self, nv: Any, index: str, *, with_instances: bool = False) -> None:
        """Free a device's buffers (it was lost, or its MIG mode changed: then also those of
        its MIG instances, ``<index>:<slot>``)."""
        self._supported.discard(index)
        for key in [k for k in self._buffers if k == index
                    or (with_instances and k.startswith(f"{index}:"))]:
            buffers = self._buffers.pop(key)
            for sample in (buffers.previous, buffers.current):
                with contextlib.suppress(nv.NVMLError):
                    nv.nvmlGpmSampleFree(sample)

    def forget(self) -> None:
        """A new NVML session: the old one's sample buffers are invalid, not to be freed."""
        self._buffers.clear()
        self._supported.clear()

    def close(self, nv: Any) -> None:
        for index in list(self._buffers):
            self.drop(nv, index)

    # --- internals ------------------------------------------------------------------------

    def _sample(self, nv: Any, calls: DriverCalls, t: GpmTarget) -> bool:
        """Swap the device's buffers and take a new sample into ``current``."""
        key = "gpm_sample"
        if calls.skip(t.dev, key):
            return False
        buffers = self._buffers.get(t.dev.index)
        if buffers is None:
            pair = [calls.call(nv, t.dev, key, ("nvmlGpmSampleAlloc",)) for _ in range(2)]
            if None in pair:
                for sample in pair:
                    if sample is not None:
                        nv.nvmlGpmSampleFree(sample)
                return False
            buffers = self._buffers[t.dev.index] = _Buffers(*pair)
            buffers.fields = [(name, getattr(nv, metric), scale) for name, metric, scale
                              in GPM_FIELDS if hasattr(nv, metric)]
        else:
            buffers.previous, buffers.current = buffers.current, buffers.previous
        if t.gpu_instance is None:
            got = calls.call(nv, t.dev, key, ("nvmlGpmSampleGet",), t.handle, buffers.current)
        else:
            got = calls.call(nv, t.dev, key, ("nvmlGpmMigSampleGet",), t.handle,
                             t.gpu_instance, buffers.current)
        if got is None:
            self.drop(nv, t.dev.index)
            return False
        return True

    def _metrics(self, nv: Any, calls: DriverCalls,
                 t: GpmTarget) -> list[tuple[GpmTarget, str, float]]:
        buffers = self._buffers[t.dev.index]
        wanted = [(name, mid, scale) for name, mid, scale in buffers.fields
                  if not calls.skip(t.dev, f"gpm:{name}")]
        if not wanted:
            return []
        request = buffers.request
        if request is None:
            request = buffers.request = nv.c_nvmlGpmMetricsGet_t()
            request.version = nv.NVML_GPM_METRICS_GET_VERSION
        if buffers.asked != tuple(name for name, _, _ in wanted):
            buffers.asked = tuple(name for name, _, _ in wanted)
            request.numMetrics = len(wanted)
            for k, (_, mid, _) in enumerate(wanted):
                request.metrics[k].metricId = mid
        request.sample1, request.sample2 = buffers.previous, buffers.current
        if calls.call(nv, t.dev, "gpm_metrics", ("nvmlGpmMetricsGet",), request) is None:
            return []
        out = []
        for k, (name, _, scale) in enumerate(wanted):
            metric = request.metrics[k]
            if metric.nvmlReturn != nv.NVML_SUCCESS:
                calls.failed(nv, t.dev, f"gpm:{name}", metric.nvmlReturn)
                continue
            value = metric.value * scale
            if value != value:  # NaN: no data for this interval
                continue
            if name in _RATIO_FIELDS:
                value = min(1.0, max(0.0, value))
            out.append((t, name, value))
        return out
