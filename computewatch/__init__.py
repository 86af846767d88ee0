"""computewatch: telemetry and observability for national networks of compute centers."""

__all__ = ["__version__"]

__version__ = "0.1.0"
