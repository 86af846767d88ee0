"""Collectors: one module per telemetry source, each turning a device into Samples.

Collectors import only from ``computewatch`` (catalogue, samples, topology), never from
pipelines/. See `collectors._base` for the protocol and the error contract.
"""

from computewatch.collectors._base import (
    Collector,
    CollectorError,
    DriverAbsent,
    ParseError,
    ResultCode,
    placement_labels,
)

__all__ = ["Collector", "CollectorError", "DriverAbsent", "ParseError", "ResultCode",
           "placement_labels"]
