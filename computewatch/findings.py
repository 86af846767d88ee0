"""Findings: what a pipeline concludes, with the threshold, the observed value, the window and
the data completeness it rests on, so every line of a report can be checked.

A core type: pipelines produce findings, and the alert push, the report and the command line
read them, without importing each other. `Analysis` is one run of the pipelines over one
period: its findings, most urgent first (`most_urgent_first`: acute critical, acute warning,
then chronic and informational), and what each pipeline did (ran, failed and why).

Findings are written back to the store as the catalogue's ``finding`` measurement (one point
at the end of the finding's window, labels pipeline, rule, subject_type, subject, hub,
cluster, site and key, `finding_key`) for dashboards and alerts, and shown as a DataFrame by
`findings_frame`. Every finding is its own series, so a rerun of an analysis writes the same
series at the same times; with ``replace`` a rerun replaces the findings it made before on a
store that can delete (see `write_findings`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum

import pandas as pd

from computewatch.store import Store

__all__ = ["CHRONIC_SPAN", "FINDING_COLUMNS", "Analysis", "Finding", "Period", "PipelineStatus",
           "Severity", "finding_key", "findings_frame", "incident_id", "is_acute",
           "most_severe_first", "most_urgent_first", "write_findings"]

log = logging.getLogger(__name__)


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
    rule: str  # e.g. site_below_minimum, link_degraded
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
    """Rule-specific attributes; ``detail["chronic"]`` (bool), where a pipeline states it,
    says whether the finding is a standing condition (chronic) or something new (acute)."""


FINDING_COLUMNS = [f for f in Finding.__dataclass_fields__]


def _gap(f: Finding) -> float:
    """How far the observed value is from the threshold, relative to the threshold."""
    scale = abs(f.threshold) if f.threshold != 0 else 1.0
    return abs(f.observed - f.threshold) / scale


def most_severe_first(findings: Iterable[Finding]) -> list[Finding]:
    """Most severe first, then the largest relative gap; a gap that is not a number last.

    Stable, so findings that tie keep the order their pipelines gave them."""

    def key(f: Finding) -> tuple[int, bool, float]:
        gap = _gap(f)
        return -int(f.severity), math.isnan(gap), -gap if not math.isnan(gap) else 0.0

    return sorted(findings, key=key)


CHRONIC_SPAN = 0.9
"""A finding that does not say whether it is chronic, and lasts 90% of the analysed period or
more, is a standing condition (chronic); a shorter one began or ended inside it (acute)."""


def is_acute(f: Finding, period: Period | None = None) -> bool:
    """Something new (acute) rather than a standing condition (chronic): as the pipeline
    states it in ``detail["chronic"]``; else by `CHRONIC_SPAN` of ``period``; else acute."""
    stated = f.detail.get("chronic") if isinstance(f.detail, dict) else None
    if isinstance(stated, bool):
        return not stated
    if period is None:
        return True
    return (f.end - f.start) < CHRONIC_SPAN * (period.end - period.start)


def _urgency(f: Finding, period: Period | None) -> int:
    if is_acute(f, period) and f.severity >= Severity.WARNING:
        return 0 if f.severity == Severity.CRITICAL else 1
    return 2


def most_urgent_first(findings: Iterable[Finding], period: Period | None = None) -> list[Finding]:
    """Acute critical, acute warning, then chronic and informational findings (each part in
    `most_severe_first` order): what pages comes before what plans."""
    return sorted(most_severe_first(findings), key=lambda f: _urgency(f, period))


def incident_id(f: Finding) -> str:
    """A short stable id of one finding (pipeline, rule, subject and start): the same
    episode keeps it from one run to the next."""
    key = "\x1f".join((f.pipeline, f.rule, f.subject_type, f.subject,
                       pd.Timestamp(f.start).isoformat()))
    return "inc-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]


def findings_frame(findings: Iterable[Finding], period: Period | None = None) -> pd.DataFrame:
    """Findings as a DataFrame (`FINDING_COLUMNS`), in `most_urgent_first` order."""
    rows = [asdict(f) for f in most_urgent_first(findings, period)]
    df = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    if df.empty:
        return df
    df["severity"] = df.severity.astype(int)
    return df


def finding_key(f: Finding) -> str:
    """What tells a finding apart from the others of its rule and subject stamped at the same
    time: its window's start (UTC, to the second), and ``detail["variant"]`` where the
    pipeline reports one subject and window several ways (a surplus finding's circle)."""
    key = f.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    variant = f.detail.get("variant")
    return f"{key}/{variant}" if variant not in (None, "") else key


def _series_keys(findings: Sequence[Finding]) -> list[str]:
    """`finding_key` of each finding, made unique within the batch: a second finding with the
    same labels and time gets a digest of its content, the same on every rerun."""
    keys, seen = [], set()
    for f in findings:
        key = finding_key(f)
        ident = (f.pipeline, f.rule, f.subject_type, f.subject, f.hub, f.cluster, f.site,
                 f.end, key)
        if ident in seen:
            digest = hashlib.sha1(f"{f.observed!r}|{f.threshold!r}|{f.message}".encode())
            key = f"{key}~{digest.hexdigest()[:8]}"
            log.warning("findings %s %s %s share labels and time; key %s keeps them apart",
                        f.pipeline, f.rule, f.subject, key)
            ident = (*ident[:-1], key)
        seen.add(ident)
        keys.append(key)
    return keys


def write_findings(store: Store, findings: Sequence[Finding], *,
                   replace: tuple[Period, Sequence[str]] | None = None) -> int:
    """Write findings as ``finding`` points stamped at their window's end; returns rows.

    ``replace`` = (period, pipelines): the findings of those pipelines stamped within the
    period (after its start, up to and including its end: a finding is stamped at its
    window's end, so one stamped at the start belongs to the window before) are deleted first,
    where the store can delete (``store.delete``: DuckDB), so a rerun over the same window
    replaces what the previous run wrote instead of adding to it. A store that cannot delete
    (VictoriaMetrics, Prometheus, InfluxDB here) gets the same series at the same times:
    InfluxDB overwrites the point, VictoriaMetrics keeps one sample per series and time
    when run with ``-dedup.minScrapeInterval`` (as docker-compose.yml runs it), and a
    finding the rerun no longer makes stays there until retention removes it.
    """
    if replace is not None:
        period, pipelines = replace
        delete = getattr(store, "delete", None)
        if callable(delete) and pipelines:
            tick = timedelta(microseconds=1)  # stamped in (start, end]: a window's end
            delete("finding", period.start + tick, period.end + tick,
                   where={"pipeline": list(pipelines)})
    if not findings:
        return 0
    frame = pd.DataFrame({
        "time": pd.to_datetime([f.end for f in findings], utc=True),
        "pipeline": [f.pipeline for f in findings], "rule": [f.rule for f in findings],
        "subject_type": [f.subject_type for f in findings],
        "subject": [f.subject for f in findings], "hub": [f.hub for f in findings],
        "cluster": [f.cluster for f in findings], "site": [f.site for f in findings],
        "key": _series_keys(findings),
        "severity": [float(f.severity) for f in findings],
        "observed": [float(f.observed) for f in findings],
        "threshold": [float(f.threshold) for f in findings],
        "completeness_ratio": [float(min(max(f.completeness, 0.0), 1.0)) for f in findings],
    })
    return store.write("finding", frame).rows


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    """What one pipeline did in a run: how many findings, or why it failed."""

    name: str
    findings: int = 0
    error: str | None = None  # "TypeError: ..." when the pipeline raised

    @property
    def ok(self) -> bool:
        return self.error is None

    def __str__(self) -> str:
        return f"{self.findings} findings" if self.ok else f"failed: {self.error}"


@dataclass(frozen=True, slots=True)
class Analysis:
    """One run of the pipelines over ``period``: the findings of every pipeline that ran,
    most urgent first (`most_urgent_first`), and each selected pipeline's status in run order.

    A failed pipeline has no findings here, and is not in `succeeded`: an alert push must not
    resolve its alerts, and a report states that it failed.
    """

    period: Period
    findings: tuple[Finding, ...]
    status: tuple[PipelineStatus, ...]

    @classmethod
    def of(cls, period: Period, findings: Iterable[Finding],
           status: Iterable[PipelineStatus]) -> Analysis:
        """An analysis with ``findings`` put in `most_urgent_first` order."""
        return cls(period, tuple(most_urgent_first(findings, period)), tuple(status))

    @property
    def pipelines(self) -> tuple[str, ...]:
        """Every pipeline selected for the run, in run order."""
        return tuple(s.name for s in self.status)

    @property
    def succeeded(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.status if s.ok)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.status if not s.ok)

    def frame(self) -> pd.DataFrame:
        """The findings as `findings_frame` gives them for this period."""
        return findings_frame(self.findings, self.period)
