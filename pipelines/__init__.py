"""Analytics pipelines: each module's ``run(store, period, policy, topology, ...)`` reads
windowed aggregates from a Store and returns `Finding`s.

Pipelines import only from ``computewatch`` (store, catalogue, topology, policy, pue), never
from collectors/. Aggregation is pushed down into the store's windowed queries, so memory
grows with subjects x windows, not with raw samples.
"""

from computewatch.pipelines._findings import (
    FINDING_COLUMNS,
    Finding,
    Period,
    Severity,
    findings_frame,
    write_findings,
)

__all__ = ["FINDING_COLUMNS", "Finding", "Period", "Severity", "findings_frame",
           "write_findings"]
