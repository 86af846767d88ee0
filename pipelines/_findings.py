"""Findings: what a pipeline concludes, with the threshold, the observed value, the window and
the data completeness it rests on, so every line of a report can be checked.

Findings are written back to the store as the catalogue's ``finding`` measurement (one point
at the end of the finding's window, labels pipeline, rule, subject_type, subject, hub,
cluster, site) for dashboards and alerts, and returned as a DataFrame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum

import pandas as pd

from computewatch.store import Store

__all__ = ["FINDING_COLUMNS", "Finding", "Period", "Severity", "findings_frame",
           "write_findings"]


class Severity(IntEnum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True, slots=True)
class Period:
    """The half-open interval [start, end) a pipeline looks at (UTC)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a period's start and end must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"period end {self.end} is not after its start {self.start}")

    @property
    def hours(self) -> float:
        return (self.end - self.start) / timedelta(hours=1)

    @classmethod
    def last(cls, span: timedelta, end: datetime | None = None) -> Period:
        end = end or datetime.now(UTC)
        return cls(end - span, end)


@dataclass(frozen=True, slots=True)
class Finding:
    """One conclusion about one subject over one window."""

    pipeline: str  # underuse | latency | pue | anomaly | surplus
    rule: str  # e.g. site_below_minimum, p95_over_budget
    subject_type: str  # accelerator | node | site | cluster | hub | province | link | city
    subject: str
    severity: Severity
    observed: float
    threshold: float
    unit: str  # of observed and threshold: ratio, s, factor, accelerator_hours, ...
    start: datetime
    end: datetime
    completeness: float = 1.0
    hub: str = ""
    cluster: str = ""
    site: str = ""
    definition: str = ""  # the method in words, quoted by reports
    message: str = ""
    detail: dict = field(default_factory=dict)


FINDING_COLUMNS = [f for f in Finding.__dataclass_fields__]


def findings_frame(findings: Iterable[Finding]) -> pd.DataFrame:
    """Findings as a DataFrame, most severe and largest gap first."""
    rows = [asdict(f) for f in findings]
    df = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    if df.empty:
        return df
    df["severity"] = df.severity.astype(int)
    gap = (df.observed - df.threshold).abs() / df.threshold.abs().where(df.threshold != 0, 1)
    return df.assign(_gap=gap).sort_values(["severity", "_gap"], ascending=[False, False]) \
        .drop(columns="_gap").reset_index(drop=True)


def write_findings(store: Store, findings: Sequence[Finding]) -> int:
    """Write findings as ``finding`` points stamped at their window's end; returns rows."""
    if not findings:
        return 0
    frame = pd.DataFrame({
        "time": pd.to_datetime([f.end for f in findings], utc=True),
        "pipeline": [f.pipeline for f in findings], "rule": [f.rule for f in findings],
        "subject_type": [f.subject_type for f in findings],
        "subject": [f.subject for f in findings], "hub": [f.hub for f in findings],
        "cluster": [f.cluster for f in findings], "site": [f.site for f in findings],
        "severity": [float(f.severity) for f in findings],
        "observed": [float(f.observed) for f in findings],
        "threshold": [float(f.threshold) for f in findings],
        "completeness_ratio": [float(min(max(f.completeness, 0.0), 1.0)) for f in findings],
    })
    return store.write("finding", frame).rows
