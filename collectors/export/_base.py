"""The exporter contract: the agent decides when, an exporter decides where.

``export(batch, source)`` receives one collector run's Samples (``source`` names the
collector, so a pull exporter can replace just that collector's part of its snapshot) and
returns an `ExportResult`
instead of raising (as the OpenTelemetry SDK's exporters do), so a broken destination never
reaches the collection loop; ``flush`` and ``close`` take deadlines. An exporter with state of
its own to report (the remote-write queue) may also have ``self_samples(labels, now) ->
list[Sample]``; the agent adds those to its own metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

from computewatch.samples import Sample

__all__ = ["ExportOutcome", "ExportResult", "Exporter"]


class ExportOutcome(Enum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class ExportResult:
    """Outcome of one export: samples delivered, and samples given up on with the reason."""

    outcome: ExportOutcome
    exported: int = 0
    dropped: int = 0
    reason: str = ""

    @classmethod
    def ok(cls, n: int) -> ExportResult:
        return cls(ExportOutcome.SUCCESS, exported=n)

    @classmethod
    def failed(cls, dropped: int, reason: str) -> ExportResult:
        return cls(ExportOutcome.FAILURE, dropped=dropped, reason=reason)


@runtime_checkable
class Exporter(Protocol):
    name: str

    def export(self, batch: Sequence[Sample], source: str = "") -> ExportResult: ...

    def flush(self, timeout_s: float = 10.0) -> bool: ...

    def close(self, timeout_s: float = 10.0) -> None: ...
