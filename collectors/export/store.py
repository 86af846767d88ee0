"""Writes each batch into any store chosen by URL, through the Store protocol.

Samples are pivoted into one frame per measurement (`samples_to_frames`), so a DuckDB file
gets one columnar insert per measurement per cycle and a line-protocol backend one request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from computewatch.collectors.export._base import ExportResult
from computewatch.samples import Sample, samples_to_frames
from computewatch.store import Store, StoreError, open_store

__all__ = ["StoreExporter"]

log = logging.getLogger(__name__)


class StoreExporter:
    name = "store"

    def __init__(self, url: str, store: Store | None = None) -> None:
        self.url = url
        self.store = store or open_store(url)
        self._lock = threading.Lock()

    def export(self, batch: Sequence[Sample], source: str = "") -> ExportResult:
        if not batch:
            return ExportResult.ok(0)
        rows = 0
        try:
            with self._lock:
                for measurement, frame in samples_to_frames(batch).items():
                    self.store.write(measurement, frame)
                    rows += frame.num_rows
        except (StoreError, OSError) as exc:
            return ExportResult.failed(len(batch), f"store {self.url}: {exc}")
        return ExportResult.ok(len(batch))

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            self.store.close()
