"""Exports: one module per wire format (Prometheus exposition, OTLP, line protocol to a
store), fed only Samples. See `collectors.export._base` for the contract."""

from computewatch.collectors.export._base import Exporter, ExportOutcome, ExportResult

__all__ = ["ExportOutcome", "ExportResult", "Exporter"]
