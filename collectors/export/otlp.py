"""OTLP/HTTP export of each batch of samples, through the OpenTelemetry SDK.

Names follow the OpenTelemetry hardware semantic conventions wherever the catalogue gives a
metric an ``otel`` name (``hw.gpu.utilization``, ``hw.power``, ``hw.energy``, ...). A metric
without one is still sent, as ``computewatch.<measurement>.<field>`` with the catalogue's
unit and kind, so switching an agent from Prometheus to OTLP loses nothing.

How a batch becomes one POST. A `MeterProvider` holds one *observable* instrument per metric
and a reader, `_OnDemandReader`, that collects only when asked. ``export(batch)`` stages the
batch, asks the reader to collect (the instruments' callbacks observe exactly the staged
values) and the reader hands the result to the SDK's OTLP/HTTP protobuf exporter. Observable
instruments are used throughout because they report values read from a device, which is what
we have: an observable counter reports the device's own running total as a cumulative
monotonic Sum (a synchronous counter would add it up again), and observable gauges and sums
are reset by the SDK after every collection, so a device that vanished is not re-sent with a
stale value. Temporality is pinned to cumulative whatever ``OTEL_EXPORTER_OTLP_METRICS_
TEMPORALITY_PREFERENCE`` says. Data points carry the collection time, not the sample's time
(the OTel API has no timestamped observations); export follows collection within the cycle.

Instruments by semantic-convention name:

============================  ======================  ========  ===========================
name                          instrument              unit      extra attributes
============================  ======================  ========  ===========================
hw.gpu.utilization            observable gauge        1         hw.gpu.task=general|encoder|
                                                                decoder
hw.gpu.memory.utilization     observable gauge        1
hw.gpu.memory.usage / .limit  observable up-down ctr  By        (semconv: UpDownCounter)
hw.power                      observable gauge        W
hw.energy                     observable counter      J         cumulative monotonic Sum
hw.temperature                observable gauge        Cel
hw.errors                     observable counter      {error}   error.type (from error_type)
hw.status                     observable up-down ctr  1         hw.state=ok|failed, 1 or 0
hw.host.power / .energy       gauge / counter         W / J
computewatch.<meas>.<field>   gauge or counter        catalogue
============================  ======================  ========  ===========================

Memory usage and limit are levels read from the driver; semconv declares them UpDownCounters,
and the asynchronous UpDownCounter is the instrument for an absolute level observed in a
callback, so they are sent as non-monotonic cumulative Sums (a gauge would be a semconv
mismatch; Prometheus-style backends show either as a gauge). ``accelerator.health`` (1
healthy, 0 unhealthy or lost) becomes the ``hw.status`` state set: ``ok`` = health and
``failed`` = 1 - health.

Attributes: the resource carries the agent's place (``host.name``, ``computewatch.site``,
``.cluster``, ``.hub``, ``service.name``). Each point carries ``hw.id`` (the ``device``
label, or a meter's ``meter``), ``hw.type=gpu`` on accelerators (semconv has no other type
for NPUs), ``hw.vendor``, ``hw.model``, ``hw.driver_version``, ``hw.parent`` (a MIG
instance's GPU), ``error.type``; the pod holding a device as ``k8s.namespace.name``,
``k8s.pod.name``, ``k8s.container.name`` and ``k8s.pod.uid`` (Kubernetes semantic
conventions); every other label as ``computewatch.<label>`` (``index``, ``ecosystem``,
``pci_bus_id``, ...). Placement labels equal to the resource's are not repeated on points;
ones that differ are kept as ``computewatch.node`` etc. Empty label values are omitted (as
Prometheus treats them).

Failures never raise: a refused connection, a timeout or an HTTP error status returns
``ExportResult.failed(len(batch), reason)``, logged once per failure episode (then at debug
until a POST succeeds). The SDK's own per-attempt log lines are held back during our export
and used as the reason when nothing better is known. Note the SDK retries a refused
connection with backoff until ``timeout_s``, so one export blocks at most about that long.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import requests
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource

import computewatch
from computewatch import catalog
from computewatch.collectors.export._base import ExportOutcome, ExportResult
from computewatch.redact import redact_url, register_secret
from computewatch.samples import Sample

__all__ = ["DEFAULT_ENDPOINT", "OtlpExporter", "resource_attributes"]

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/metrics"
SERVICE_NAME = "computewatch-agent"

# --- names: catalogue -> OTel -------------------------------------------------------------
_UP_DOWN = frozenset({"hw.gpu.memory.usage", "hw.gpu.memory.limit", "hw.status"})
"""Semconv UpDownCounters: levels, sent as non-monotonic sums."""
_SEMCONV_UNITS = {"hw.errors": "{error}", "hw.status": "1"}
"""Where semconv's unit differs from the catalogue's generic {count} / {state}."""
_EXTRA_ATTRIBUTES = {"hw.gpu.utilization": (("hw.gpu.task", "general"),)}
_GPU_TASKS = {"accelerator.encoder_utilization_ratio": "encoder",
              "accelerator.decoder_utilization_ratio": "decoder"}
"""Utilizations semconv sends as ``hw.gpu.utilization`` of another ``hw.gpu.task``."""
_HW_TYPE = {"accelerator": "gpu"}
_ATTRIBUTE_NAMES = {
    "device": "hw.id", "meter": "hw.id", "vendor": "hw.vendor", "model": "hw.model",
    "driver_version": "hw.driver_version", "parent": "hw.parent", "error_type": "error.type",
    # The pod holding a device (collectors/kubernetes), in the k8s semantic conventions.
    "namespace": "k8s.namespace.name", "pod": "k8s.pod.name", "container": "k8s.container.name",
    "pod_uid": "k8s.pod.uid",
}
_PLACEMENT = {"node": "host.name", "site": "computewatch.site",
              "cluster": "computewatch.cluster", "hub": "computewatch.hub"}
"""Agent placement labels and the resource attributes that carry them."""
_STATUS = "hw.status"
_NAME_RE = re.compile(r"[a-zA-Z][-_./a-zA-Z0-9]{0,254}")  # the OTel API's instrument-name rule
_CUMULATIVE = {cls: AggregationTemporality.CUMULATIVE for cls in (
    Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter,
    ObservableGauge)}

_Kind = Literal["gauge", "counter", "up_down"]


@dataclass(frozen=True, slots=True)
class _Instrument:
    """How one catalogued metric is sent: instrument name, kind, unit, fixed attributes."""

    name: str
    kind: _Kind
    unit: str
    description: str
    fixed: tuple[tuple[str, str], ...] = ()


def _instrument_for(sample_name: str) -> _Instrument:
    """Derive the instrument from the catalogue; uncatalogued metrics go out as gauges."""
    try:
        m = catalog.metric(sample_name)
    except catalog.UnknownMetricError:
        return _Instrument(f"computewatch.{sample_name}", "gauge", "",
                           "Not in the computewatch catalogue.")
    if m.name in _GPU_TASKS:
        return _Instrument("hw.gpu.utilization", "gauge", "1", m.help,
                           (("hw.type", "gpu"), ("hw.gpu.task", _GPU_TASKS[m.name])))
    name = m.otel or f"computewatch.{m.name}"
    kind: _Kind = ("up_down" if name in _UP_DOWN
                  else "counter" if m.kind is catalog.Kind.COUNTER else "gauge")
    fixed = _EXTRA_ATTRIBUTES.get(name, ())
    if m.measurement in _HW_TYPE:
        fixed = (("hw.type", _HW_TYPE[m.measurement]), *fixed)
    return _Instrument(name, kind, _SEMCONV_UNITS.get(name, m.unit), m.help, fixed)


def resource_attributes(placement: Mapping[str, str]) -> dict[str, str]:
    """Resource attributes from an agent's placement labels (node, site, cluster, hub)."""
    out = {_PLACEMENT[k]: str(v) for k, v in placement.items() if k in _PLACEMENT and v}
    out.setdefault("service.name", SERVICE_NAME)
    return out


# --- plumbing around the SDK exporter ------------------------------------------------------
class _RecordingSession(requests.Session):
    """Remembers why the last POST failed: the SDK exporter only says SUCCESS or FAILURE."""

    def __init__(self) -> None:
        super().__init__()
        self.last_error: str | None = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        try:
            response = super().request(method, url, *args, **kwargs)
        except Exception as exc:
            cause = getattr(exc.args[0], "reason", None) if exc.args else None  # urllib3's
            self.last_error = f"{type(exc).__name__}: {cause or exc}"
            raise
        self.last_error = (None if response.status_code < 400 else
                           f"HTTP {response.status_code} {response.reason or ''}".rstrip())
        return response


class _HoldBack(logging.Filter):
    """Holds back the SDK exporter's per-attempt log lines during our export, on our thread.

    We log once per failure episode instead; the last held-back warning is kept as a reason.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()
        self.last: str | None = None

    @contextmanager
    def holding(self) -> Iterator[None]:
        self._local.on, self.last = True, None
        try:
            yield
        finally:
            self._local.on = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(self._local, "on", False):
            return True
        if record.levelno >= logging.WARNING:
            self.last = record.getMessage()
        return False


class _OnDemandReader(MetricReader):
    """Collects only when asked (once per batch) and pushes through ``exporter`` at once.

    The agent decides when; a periodic reader's thread would only add a second schedule
    and a final export of stale data at shutdown.
    """

    def __init__(self, exporter: MetricExporter) -> None:
        super().__init__(preferred_temporality=_CUMULATIVE)
        self._exporter = exporter
        self.result: MetricExportResult | None = None

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
                         **kwargs: Any) -> None:
        self.result = self._exporter.export(metrics_data, timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._exporter.shutdown(timeout_millis=timeout_millis)


_Staged = dict[str, dict[tuple[tuple[str, str], ...], float]]
"""Instrument name -> attribute set -> value, for the batch being exported."""


class OtlpExporter:
    """Pushes each batch of samples to an OTLP/HTTP receiver as one protobuf POST."""

    name = "otlp"

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT,
                 resource: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None, timeout_s: float = 10.0) -> None:
        attrs = {"service.name": SERVICE_NAME, **(resource or {})}
        attrs.setdefault("host.name", socket.gethostname())
        self.endpoint = endpoint
        self.shown_endpoint = redact_url(endpoint)  # what log lines show: no password
        for value in (headers or {}).values():  # e.g. Authorization: never in a log line
            register_secret(value)
            register_secret(value.rpartition(" ")[2])
        self.timeout_s = timeout_s
        self._resource_attrs: dict[str, str] = {k: str(v) for k, v in attrs.items()}
        self._session = _RecordingSession()
        self._sdk_exporter = OTLPMetricExporter(
            endpoint=endpoint, headers=dict(headers or {}), timeout=timeout_s,
            session=self._session, preferred_temporality=_CUMULATIVE)
        self._reader = _OnDemandReader(self._sdk_exporter)
        self._provider = MeterProvider(metric_readers=[self._reader],
                                       resource=Resource.create(self._resource_attrs),
                                       shutdown_on_exit=False)
        self._meter = self._provider.get_meter("computewatch", computewatch.__version__)
        self._hold_back = _HoldBack()
        self._sdk_logger = logging.getLogger(OTLPMetricExporter.__module__)
        self._sdk_logger.addFilter(self._hold_back)
        self._lock = threading.Lock()
        self._specs: dict[str, _Instrument | None] = {}
        self._created: set[str] = set()
        self._staged: _Staged = {}
        self._failed_exports = 0
        self._closed = False

    # -- the exporter contract ----------------------------------------------------------
    def export(self, batch: Sequence[Sample], source: str = "") -> ExportResult:
        """Send ``batch`` as one POST; ``source`` (the collector) only names it in logs."""
        try:
            with self._lock:
                if self._closed:
                    return ExportResult.failed(len(batch), "exporter closed")
                return self._export(batch, source)
        except Exception as exc:  # never reach the collection loop
            return self._failure(len(batch), f"internal error: {exc!r}", source)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Nothing is buffered: every export is pushed before it returns."""
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Shut the SDK down (no final export: a batch is sent when it is exported)."""
        got = self._lock.acquire(timeout=max(timeout_s, 0.0))
        try:
            if self._closed:
                return
            self._closed = True
            try:
                self._provider.shutdown(timeout_millis=max(timeout_s, 0.0) * 1000)
            except Exception as exc:
                log.warning("OTLP exporter to %s did not shut down cleanly: %s",
                            self.shown_endpoint, exc)
            self._sdk_logger.removeFilter(self._hold_back)
        finally:
            if got:
                self._lock.release()

    # -- inside ---------------------------------------------------------------------------
    def _export(self, batch: Sequence[Sample], source: str) -> ExportResult:
        staged, dropped = self._stage(batch)
        delivered = len(batch) - len(dropped)
        why_dropped = "; ".join(sorted(set(dropped)))
        if not staged:
            if dropped:
                return self._failure(len(dropped), why_dropped, source)
            return ExportResult.ok(0)
        self._staged, self._reader.result, self._session.last_error = staged, None, None
        try:
            with self._hold_back.holding():
                self._reader.collect(timeout_millis=self.timeout_s * 1000)
        finally:
            self._staged = {}
        if self._reader.result is not MetricExportResult.SUCCESS:
            reason = (self._session.last_error or self._hold_back.last
                      or "the OTLP exporter reported failure")
            return self._failure(len(batch), reason, source)
        if self._failed_exports:
            log.info("OTLP export to %s recovered after %d failed exports", self.shown_endpoint,
                     self._failed_exports)
            self._failed_exports = 0
        return ExportResult(ExportOutcome.SUCCESS, exported=delivered, dropped=len(dropped),
                            reason=why_dropped)

    def _failure(self, n: int, reason: str, source: str) -> ExportResult:
        """Log once per failure episode, then at debug until an export succeeds."""
        self._failed_exports += 1
        what = f" ({source})" if source else ""
        if self._failed_exports == 1:
            log.warning("OTLP export to %s failing%s: %s; further failures logged at debug "
                        "until it recovers", self.shown_endpoint, what, reason)
        else:
            log.debug("OTLP export to %s failed%s: %s", self.shown_endpoint, what, reason)
        return ExportResult.failed(n, reason)

    def _stage(self, batch: Iterable[Sample]) -> tuple[_Staged, list[str]]:
        """Group the batch by instrument and attribute set; the last value of a series wins.

        One value per series matters: the SDK sums repeated observations of an observable
        counter within one collection, and a device counter must go out as read.
        """
        staged: _Staged = {}
        dropped: list[str] = []
        for s in batch:
            spec = self._instrument(s.name)
            if spec is None:
                dropped.append(f"{s.name}: not a valid OTel instrument name or unit")
                continue
            attrs = self._attributes(s, spec)
            series = staged.setdefault(spec.name, {})
            if spec.name == _STATUS:
                series[(*attrs, ("hw.state", "ok"))] = s.value
                series[(*attrs, ("hw.state", "failed"))] = 1.0 - s.value
            else:
                series[attrs] = s.value
        return staged, dropped

    def _attributes(self, s: Sample, spec: _Instrument) -> tuple[tuple[str, str], ...]:
        out = dict(spec.fixed)
        for key, value in s.labels:
            if value == "":
                continue
            if key in _PLACEMENT:
                if self._resource_attrs.get(_PLACEMENT[key]) != value:
                    out[f"computewatch.{key}"] = value
                continue
            out[_ATTRIBUTE_NAMES.get(key, f"computewatch.{key}")] = value
        return tuple(sorted(out.items()))

    def _instrument(self, sample_name: str) -> _Instrument | None:
        """The instrument for a metric, created in the SDK on first use; None if it cannot be."""
        if sample_name in self._specs:
            return self._specs[sample_name]
        spec: _Instrument | None = _instrument_for(sample_name)
        if spec is not None and spec.name not in self._created:
            create = {"gauge": self._meter.create_observable_gauge,
                      "counter": self._meter.create_observable_counter,
                      "up_down": self._meter.create_observable_up_down_counter}[spec.kind]
            try:
                if not _NAME_RE.fullmatch(spec.name):
                    raise ValueError(spec.name)
                create(spec.name, callbacks=[self._observer(spec.name)], unit=spec.unit,
                       description=spec.description)
                self._created.add(spec.name)
            except Exception:
                spec = None
        self._specs[sample_name] = spec
        return spec

    def _observer(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, dict(a)) for a, v in self._staged.get(name, {}).items()]
        return observe
