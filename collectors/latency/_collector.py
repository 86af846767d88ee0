"""`LatencyCollector`: a `Prober` in a background thread, read by the agent.

Sample times: the window's results carry the window's end (UTC), so the same window written
twice is one point; the cumulative series carry the collection time. One prober per site:
link series carry no node label, so two nodes of one site probing the same peers would write
the same series.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from computewatch import catalog
from computewatch.collectors import CollectorError, placement_labels
from computewatch.collectors.latency._prober import Prober, Resolver
from computewatch.collectors.latency._targets import ProbeTarget
from computewatch.collectors.latency._windows import LE
from computewatch.samples import Sample

__all__ = ["EMITTED", "LatencyCollector"]

log = logging.getLogger(__package__)  # one logger per collector, named as before the split

EMITTED: tuple[str, ...] = (
    "link_latency.rtt_min_seconds",
    "link_latency.rtt_p50_seconds",
    "link_latency.rtt_p95_seconds",
    "link_latency.rtt_p99_seconds",
    "link_latency.rtt_max_seconds",
    "link_latency.loss_ratio",
    "link_latency.jitter_seconds",
    "link_latency.samples",
    "link_latency.replies_within_budget",
    "link_latency.fiber_min_seconds",
    "link_latency.budget_seconds",
    "link_latency.route_inflation",
    "link_latency.late",
    "link_latency.duplicates",
    "link_latency.reordered",
    "link_latency.requests_total",
    "link_latency.rtt_seconds_bucket",
    "link_latency.rtt_seconds_count",
    "link_latency.rtt_seconds_sum",
    "agent.collector_errors_total",
)
"""Every metric this collector can emit (``measurement.field``)."""


class LatencyCollector:
    """Runs a `Prober` in a background thread; `collect` reads its latest windows.

    ``labels`` are the agent's placement labels (they go on ``agent.collector_errors_total``;
    link series carry only the catalogue's link labels). `start` is implicit in the first
    `collect`; `close` stops the thread. Collect at least once per window: each collect
    returns the last completed window only. ``key``: the deployment's shared probe key
    (`read_probe_key`), when its responders require signed probes.
    """

    name = "latency"

    def __init__(self, labels: Mapping[str, str], targets: Iterable[ProbeTarget],
                 window_s: float | str = 60.0, interval_s: float | str = 1.0,
                 timeout_s: float | str = 1.0, *, align_windows: bool = True,
                 resolver: Resolver | None = None, key: bytes | None = None) -> None:
        self._place = placement_labels(labels)
        targets = list(targets)
        seen: dict[tuple[str, str, str], ProbeTarget] = {}
        for t in targets:
            series = (t.src_site, t.dst_site, t.kind)
            if series in seen:
                raise ValueError(f"{t} and {seen[series]} would write the same link_latency "
                                 "series: probe each site pair once per probe kind")
            seen[series] = t
        self.prober = Prober(targets, interval_s=interval_s, timeout_s=timeout_s,
                             window_s=window_s, align_windows=align_windows, resolver=resolver,
                             key=key)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None

    def describe(self) -> list[catalog.Metric]:
        """The catalogued metrics this collector may emit."""
        return [catalog.metric(name) for name in EMITTED]

    def start(self) -> None:
        """Start probing in a background thread with its own event loop (idempotent)."""
        if self._thread is not None:
            return
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            try:
                self._loop, self._stop = loop, asyncio.Event()
                ready.set()
                loop.run_until_complete(self.prober.run(self._stop))
            except BaseException as exc:  # reported by the next collect()
                self._failure = exc
                log.exception("latency: the prober stopped")
            finally:
                ready.set()
                loop.close()

        self._thread = threading.Thread(target=main, name="latency-prober", daemon=True)
        self._thread.start()
        ready.wait()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the probes and wait for the thread (up to ``timeout_s``)."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(timeout_s)

    def __enter__(self) -> LatencyCollector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collect(self) -> list[Sample]:
        """The last completed window per target, the cumulative series and the errors."""
        self.start()
        if self._failure is not None:
            raise CollectorError(f"latency: the prober stopped: {self._failure!r}")
        if self._thread is not None and not self._thread.is_alive():
            raise CollectorError("latency: the prober thread has stopped")
        now = datetime.now(UTC)
        samples: list[Sample] = []
        for result in self.prober.latest():
            samples += result.to_samples()
        for target, requests, cumulative, count, total in self.prober.histograms():
            lab = target.labels
            samples.append(Sample.of("link_latency.requests_total", float(requests), lab, now))
            for le, n in zip(LE, cumulative, strict=True):
                samples.append(Sample.of("link_latency.rtt_seconds_bucket", float(n),
                                         {**lab, "le": le}, now))
            samples.append(Sample.of("link_latency.rtt_seconds_count", float(count), lab, now))
            samples.append(Sample.of("link_latency.rtt_seconds_sum", total, lab, now))
        for error_type, n in sorted(self.prober.errors().items()):
            samples.append(Sample.of("agent.collector_errors_total", float(n),
                                     {**self._place, "collector": self.name,
                                      "error_type": error_type}, now))
        return samples
