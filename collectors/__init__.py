"""Collectors: one module per telemetry source, each turning a device into Samples.

A large collector is a folder of its own, as Telegraf's ``plugins/inputs/<name>/``: private
modules split by job, a public ``__init__``, a README.md with its Metrics table and a
sample.yaml (``latency/``, ``redfish/``, ``snmp/``, ``modbus/``, ``ascend/``, ``nvml/``); a
small one is one module (``rapl.py``, ``pue.py``). Collectors import only from
``computewatch`` (catalogue, samples, topology), never from pipelines/. See
`collectors._base` for the protocol and the error contract.
"""

from computewatch.collectors._base import (
    Collector,
    CollectorError,
    DriverAbsent,
    NoData,
    ParseError,
    ResultCode,
    placement_labels,
)

__all__ = ["Collector", "CollectorError", "DriverAbsent", "NoData", "ParseError", "ResultCode",
           "placement_labels"]
