"""Exports: one module per wire format (Prometheus exposition, OTLP, line protocol), fed
only Samples; the durable on-disk buffer for remote writes lives here too."""

__all__: list[str] = []
