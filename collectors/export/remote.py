"""Remote write of line protocol to VictoriaMetrics or InfluxDB, through the durable queue.

`export` encodes the batch (`encode_samples`) and appends it to the on-disk queue
(`collectors.export.buffer`), so the collection loop never waits on the network; a sender
thread drains the queue in order through a `Writer` (`LineProtocolWriter` unless one is
given), one attempt per call:

- a retryable failure (no connection, timeout, 408/429, 5xx) keeps the batch and tries it
  again after an exponential backoff with jitter (0.5 s doubling up to ``max_backoff_s``,
  each wait drawn from [d/2, d]), so a fleet of agents does not hammer a store that is coming
  back; the store being down is logged once, and its return with the outage's retry count;
- a permanent failure (any other 4xx) is narrowed down record by record (one record is one
  collector run) and only the records the store still refuses are dropped, counted as
  ``rejected`` and logged once per episode;
- ``flush`` waits for the queue to drain (not while the store is down: the data is on disk
  and goes out after the restart); ``close`` stops the sender to a deadline.

URLs are read as the stores read them (`computewatch.lineprotocol.parse_write_url`):
``victoriametrics://host:8428`` (single node), ``victoriametrics://host:8480?tenant=0:0``
or ``victoriametrics://?insert=vminsert:8480&select=vmselect:8481&tenant=0`` (cluster:
written to vminsert's ``/insert/<tenant>/influx``),
``influxdb://host:8086?org=ORG&bucket=BUCKET`` (InfluxDB 2 or 3; the token from
``token_env=VAR``, ``token_file=PATH`` or ``INFLUX_TOKEN``, never from the URL), ``&tls=1``
for https; or a plain ``http(s)://`` base URL of any ``/api/v2/write`` endpoint.

The agent's own ``agent_buffer_*`` metrics (`self_samples`) report the queue: bytes on disk
and the bound, samples queued, samples sent, retries, corrupt segments, and samples dropped
by reason (``full``, ``corrupt``, ``rejected``; ``nan``: line protocol cannot carry NaN;
``invalid``: a sample whose line line protocol cannot carry, e.g. a label with a newline or a
control character, refused before it is queued and logged once: see
`computewatch.lineprotocol`). Only what was queued counts as sent once the store takes it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from math import isfinite
from pathlib import Path

from computewatch.collectors.export._base import ExportResult
from computewatch.collectors.export.buffer import DEFAULT_MAX_BYTES, Batch, DiskQueue, FsyncPolicy
from computewatch.lineprotocol import (
    WriteError,
    Writer,
    WriteTarget,
    check_write_url,
    encode_samples,
    parse_write_url,
)
from computewatch.redact import redact_url
from computewatch.samples import Sample

__all__ = [
    "DEFAULT_BATCH_SAMPLES",
    "DROP_REASONS",
    "RemoteExporter",
    "WriteTarget",
    "check_write_url",
    "parse_write_url",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SAMPLES = 10_000
"""Samples per write request at most: about 0.5-1 MB of line protocol before gzip."""

DROP_REASONS = ("full", "corrupt", "rejected", "nan", "invalid")
INITIAL_BACKOFF_S = 0.5


def _chunks(batch: Sequence[Sample], size: int) -> Iterator[Sequence[Sample]]:
    for i in range(0, len(batch), size):
        yield batch[i:i + size]


def _carried(chunk: Sequence[Sample]) -> int:
    """Samples the line protocol of ``chunk`` carries: finite values, one per field of a line."""
    return len({(s.measurement, s.labels, s.time, s.field) for s in chunk if isfinite(s.value)})


class _Sender(threading.Thread):
    """Drains the queue in order; one batch in flight, backoff with jitter while failing."""

    def __init__(self, queue: DiskQueue, writer: Writer, *, label: str, precision: str,
                 batch_max_samples: int, flush_interval_s: float, max_backoff_s: float) -> None:
        super().__init__(name=f"remote-write {label}", daemon=True)
        self.queue, self.writer, self.label, self.precision = queue, writer, label, precision
        self.batch_max_samples = batch_max_samples
        self.flush_interval_s = flush_interval_s
        self.max_backoff_s = max_backoff_s
        self.stop_event = threading.Event()
        self.hurry = threading.Event()  # set by flush: send now, do not wait to fill a batch
        self.sent = 0
        self.retries = 0
        self.failing = False
        self._episode_retries = 0
        self._failing_since = 0.0
        self._rejecting = False
        self._isolate = 0  # records still to be sent one at a time after a permanent error

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.queue.sync_if_due()
                if not self.queue.wait(self.flush_interval_s):
                    continue
                age = self.queue.oldest_age()
                if age < self.flush_interval_s and not self.hurry.is_set():
                    self.queue.wait(self.flush_interval_s - age, self.batch_max_samples)
                if self.stop_event.is_set():
                    break
                batch = self.queue.take(self.batch_max_samples, 1 if self._isolate else None)
                if batch is not None:
                    self._deliver(batch)
            except Exception:  # the sender must outlive anything; the data stays on disk
                log.exception("remote write %s: sender error; retrying", self.label)
                self.stop_event.wait(1.0)

    def _backoff(self, attempt: int) -> float:
        d = min(self.max_backoff_s, INITIAL_BACKOFF_S * 2 ** min(attempt, 30))
        return random.uniform(d / 2, d)

    def _deliver(self, batch: Batch) -> None:
        attempt = 0
        while True:
            try:
                self.writer.write(batch.payload, self.precision)
            except Exception as exc:
                if isinstance(exc, WriteError) and not exc.retryable:
                    self._refused(batch, exc)
                    return
                if not isinstance(exc, WriteError):  # not the store's answer: keep the data
                    log.exception("remote write %s: unexpected error", self.label)
                self._retry_later(exc)
                if self.stop_event.wait(self._backoff(attempt)):
                    self.queue.release(batch)
                    return
                attempt += 1
                continue
            self.queue.ack(batch)
            self.sent += batch.samples
            self._isolate = max(0, self._isolate - 1)
            self._rejecting = False
            if self.failing:
                log.warning("remote write %s: store reachable again after %d retries "
                            "(%.0f s); draining %d queued samples", self.label,
                            self._episode_retries, time.monotonic() - self._failing_since,
                            self.queue.pending_samples())
                self.failing = False
            return

    def _retry_later(self, exc: Exception) -> None:
        self.retries += 1
        self._episode_retries += 1
        if not self.failing:
            self.failing, self._failing_since, self._episode_retries = True, time.monotonic(), 1
            log.warning("remote write %s failing: %s; keeping data on disk and retrying with "
                        "backoff (up to %g s)", self.label, exc, self.max_backoff_s)

    def _refused(self, batch: Batch, exc: WriteError) -> None:
        self.failing = False
        if batch.records > 1:  # find the records the store refuses; send the others
            self.queue.release(batch)
            self._isolate = batch.records
            return
        self.queue.ack(batch, rejected=True)
        self._isolate = max(0, self._isolate - 1)
        if not self._rejecting:
            log.error("remote write %s: the store refused a batch for good (%s); dropping "
                      "%d samples, counted in agent_buffer_dropped_samples_total"
                      "{reason=\"rejected\"}; further refusals are only counted", self.label,
                      exc, batch.samples)
            self._rejecting = True


class RemoteExporter:
    """Line protocol to a remote store through a durable on-disk queue (see module doc)."""

    name = "remote"

    def __init__(self, url: str, buffer_dir: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 batch_max_samples: int = DEFAULT_BATCH_SAMPLES, flush_interval_s: float = 1.0,
                 fsync: FsyncPolicy = "always", fsync_interval_s: float = 1.0,
                 max_backoff_s: float = 30.0, timeout_s: float = 10.0, gzip: bool = True,
                 precision: str = "ns", writer: Writer | None = None) -> None:
        if batch_max_samples < 1:
            raise ValueError(f"batch_max_samples must be at least 1, got {batch_max_samples}")
        self.url = url
        self.shown_url = redact_url(url)  # what log lines show: no password or token
        target = parse_write_url(url)  # a bad URL or token fails before anything is opened
        self.queue = DiskQueue(buffer_dir, max_bytes, fsync=fsync,
                               fsync_interval_s=fsync_interval_s, name=str(buffer_dir))
        if writer is None:
            from computewatch.lineprotocol import LineProtocolWriter  # influxdb-client

            try:
                writer = LineProtocolWriter(target.base_url, token=target.token, org=target.org,
                                            bucket=target.bucket, gzip=gzip,
                                            timeout_s=timeout_s)
            except Exception:
                self.queue.close()
                raise
        self.writer = writer
        self.precision = precision
        self.batch_max_samples = batch_max_samples
        self.nan_dropped = 0
        self.invalid_dropped = 0
        self._lock = threading.Lock()
        self._sender = _Sender(self.queue, writer, label=self.shown_url, precision=precision,
                               batch_max_samples=batch_max_samples,
                               flush_interval_s=flush_interval_s, max_backoff_s=max_backoff_s)
        self._sender.start()

    def export(self, batch: Sequence[Sample], source: str = "") -> ExportResult:
        if not batch:
            return ExportResult.ok(0)
        queued = 0
        try:
            for chunk in _chunks(batch, self.batch_max_samples):
                enc = encode_samples(chunk, self.precision)
                carried = _carried(chunk) - enc.refused
                with self._lock:
                    self.nan_dropped += enc.skipped
                    first_invalid = enc.refused and not self.invalid_dropped
                    self.invalid_dropped += enc.refused
                if first_invalid:
                    log.error("remote write %s: %d samples of %s cannot be written as line "
                              "protocol (%s); dropped, counted in agent_buffer_dropped_samples_"
                              "total{reason=\"invalid\"}; further ones are only counted",
                              self.shown_url, enc.refused, source or "a batch", enc.problem)
                if enc.payload and self.queue.append(enc.payload, carried):
                    queued += carried
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            log.error("remote write %s: cannot queue a batch of %s: %s", self.shown_url,
                      source or "samples", exc)
            return ExportResult.failed(len(batch) - queued, "buffer_error")
        return ExportResult.ok(queued)

    def export_lines(self, payload: bytes, samples: int) -> bool:
        """Queue line protocol that is already encoded (e.g. by `encode_frame`)."""
        return self.queue.append(payload, samples)

    def self_samples(self, labels: Mapping[str, str], now: datetime | None = None
                     ) -> list[Sample]:
        """The ``agent_buffer_*`` metrics of this exporter, for the agent's own report."""
        now = now or datetime.now(UTC)
        lab = {**labels, "exporter": self.name}
        s = self.queue.stats()
        with self._lock:
            dropped = {**s.dropped, "nan": s.dropped.get("nan", 0) + self.nan_dropped,
                       "invalid": self.invalid_dropped}
        out = [Sample.of("agent.buffer_bytes", float(s.bytes), lab, now),
               Sample.of("agent.buffer_limit_bytes", float(s.limit_bytes), lab, now),
               Sample.of("agent.buffer_queued_samples", float(s.queued_samples), lab, now),
               Sample.of("agent.buffer_corrupt_segments_total", float(s.corrupt_segments),
                         lab, now),
               Sample.of("agent.buffer_sent_samples_total", float(self._sender.sent), lab, now),
               Sample.of("agent.buffer_retries_total", float(self._sender.retries), lab, now)]
        out += [Sample.of("agent.buffer_dropped_samples_total", float(dropped.get(r, 0)),
                          {**lab, "reason": r}, now) for r in DROP_REASONS]
        return out

    @property
    def failing(self) -> bool:
        """True while the store is unreachable (the sender is backing off)."""
        return self._sender.failing

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait for the queue to drain; gives up early while the store is down.

        "Down" means an attempt made during this flush failed: a sender still marked failing
        from before (backing off) gets its next attempt, which may find the store back.
        """
        deadline = time.monotonic() + timeout_s
        retries_before = self._sender.retries
        self._sender.hurry.set()
        self.queue.wake()
        try:
            while (left := deadline - time.monotonic()) > 0:
                if self.queue.wait_empty(min(left, 0.2)):
                    return True
                failed_now = self._sender.failing and self._sender.retries > retries_before
                if failed_now or not self._sender.is_alive():
                    return False
            return False
        finally:
            self._sender.hurry.clear()

    def close(self, timeout_s: float = 10.0) -> None:
        self._sender.stop_event.set()
        self.queue.wake()
        self._sender.join(timeout_s)
        try:
            self.writer.close()
        finally:
            self.queue.close()
