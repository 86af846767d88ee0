"""Collectors: one module per telemetry source, each turning a device into Samples.

A collector is any object with ``collect() -> Iterable[Sample]`` (and an optional
``describe()``). Collectors import only from ``computewatch`` (catalogue, samples, topology),
never from pipelines/. The NVML, npu-smi, Redfish, SNMP, Modbus, RAPL and latency collectors
and the node agent land here.
"""

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from computewatch.samples import Sample

__all__ = ["Collector"]


@runtime_checkable
class Collector(Protocol):
    name: str

    def collect(self) -> Iterable[Sample]: ...
