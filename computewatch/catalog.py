"""The metric catalogue: every metric computewatch emits or stores, declared once.

Exposition names, line-protocol fields, OTel instruments, compatibility names, store columns,
dashboards and alert rules are all derived from (or checked against) this table, so a metric
is renamed in exactly one place. Units are SI base units as Prometheus and OpenTelemetry ask:
ratios are 0..1 (never percent), power in watts, energy in joules, memory in bytes, time in
seconds, temperature in degrees Celsius, clocks in hertz.

The Prometheus name of a metric is ``{measurement}_{field}``: that is also the series name
VictoriaMetrics gives a line-protocol field, so the scraped path and the written path agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "CATALOG",
    "UNITS",
    "Kind",
    "Measurement",
    "Metric",
    "UnitSpec",
    "UnknownMetricError",
    "measurement",
    "measurements",
    "metric",
]


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """A unit's UCUM code (as OTel writes it), its Prometheus suffix and its valid range."""

    code: str
    prometheus_suffix: str
    low: float
    high: float
    description: str


UNITS: dict[str, UnitSpec] = {
    u.code: u
    for u in (
        UnitSpec("1", "ratio", 0.0, 1.0, "ratio 0..1"),
        UnitSpec("W", "watts", 0.0, math.inf, "watts"),
        UnitSpec("J", "joules", 0.0, math.inf, "joules"),
        UnitSpec("By", "bytes", 0.0, math.inf, "bytes"),
        UnitSpec("s", "seconds", 0.0, math.inf, "seconds"),
        UnitSpec("Cel", "celsius", -273.15, math.inf, "degrees Celsius"),
        UnitSpec("Hz", "hertz", 0.0, math.inf, "hertz"),
        UnitSpec("{count}", "", 0.0, math.inf, "a count of events or items"),
        UnitSpec("{state}", "", 0.0, math.inf, "an enumeration code (see the metric's help)"),
        UnitSpec("{factor}", "", 0.0, math.inf, "a dimensionless factor such as PUE"),
        UnitSpec("{value}", "", -math.inf, math.inf, "a value whose unit the labels state"),
    )
}


@dataclass(frozen=True, slots=True)
class Metric:
    """One catalogued metric. ``compat_scale`` converts our SI value into the compat unit."""

    measurement: str
    field: str
    unit: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    otel: str | None = None
    dcgm: str | None = None
    npu_exporter: str | None = None
    compat_scale: float = 1.0
    nan_ok: bool = False
    low: float | None = None
    high: float | None = None
    histogram: str | None = None
    """Set on the ``_bucket`` (label ``le``), ``_count`` and ``_sum`` parts of a histogram:
    the family name they are exposed under together (Prometheus histogram type)."""

    @property
    def name(self) -> str:
        """The key used everywhere in code and logs: ``measurement.field``."""
        return f"{self.measurement}.{self.field}"

    @property
    def prometheus(self) -> str:
        return f"{self.measurement}_{self.field}"

    @property
    def valid_range(self) -> tuple[float, float]:
        spec = UNITS[self.unit]
        low = spec.low if self.low is None else self.low
        high = spec.high if self.high is None else self.high
        return low, high

    def check(self, value: float) -> str | None:
        """Return why ``value`` is not acceptable for this metric, or None when it is."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"not a number: {value!r}"
        if math.isnan(value):
            return None if self.nan_ok else "NaN not allowed"
        if math.isinf(value):  # no reading is infinite, whatever the unit's range
            return f"{value!r} is not a finite reading"
        low, high = self.valid_range
        if value < low or value > high:
            return f"{value!r} outside [{low:g}, {high:g}] ({UNITS[self.unit].description})"
        return None


class UnknownMetricError(KeyError):
    """Raised for a measurement or field that the catalogue does not declare."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


# Label sets shared by several metrics.
_PLACE = ("hub", "cluster", "site")
_DEVICE = (*_PLACE, "node", "device", "index", "vendor", "model", "ecosystem",
           "pci_bus_id", "driver_version", "parent")
_METER = (*_PLACE, "meter", "scope", "source")
_LINK = ("src_site", "dst_site", "src_hub", "dst_hub", "tier", "probe")


def _acc(field_: str, unit: str, kind: Kind, help_: str, *, labels: tuple[str, ...] = (),
         **kw: object) -> Metric:
    return Metric("accelerator", field_, unit, kind, (*_DEVICE, *labels), help_, **kw)  # type: ignore[arg-type]


CATALOG: tuple[Metric, ...] = (
    # --- accelerator: one series per GPU, MIG instance or NPU chip -------------------------
    _acc("utilization_ratio", "1", Kind.GAUGE,
         "Share of time the compute engines were busy over the driver's sample period.",
         otel="hw.gpu.utilization", dcgm="DCGM_FI_DEV_GPU_UTIL",
         npu_exporter="npu_chip_info_utilization", compat_scale=100.0),
    _acc("memory_utilization_ratio", "1", Kind.GAUGE,
         "Share of time device memory was being read or written (NVML memory utilization; "
         "npu-smi HBM bandwidth usage). Not OTel's hw.gpu.memory.utilization, which is "
         "usage / limit.",
         dcgm="DCGM_FI_DEV_MEM_COPY_UTIL", compat_scale=100.0),
    _acc("vector_utilization_ratio", "1", Kind.GAUGE,
         "Ascend AI-vector unit usage (npu-smi Aivector Usage Rate); absent on NVIDIA.",
         npu_exporter="npu_chip_info_vector_utilization", compat_scale=100.0),
    _acc("memory_used_bytes", "By", Kind.GAUGE, "Device memory in use.",
         otel="hw.gpu.memory.usage", dcgm="DCGM_FI_DEV_FB_USED",
         npu_exporter="npu_chip_info_hbm_used_memory", compat_scale=1 / 2**20),
    _acc("memory_total_bytes", "By", Kind.GAUGE, "Device memory installed.",
         otel="hw.gpu.memory.limit", npu_exporter="npu_chip_info_hbm_total_memory",
         compat_scale=1 / 2**20),
    _acc("power_watts", "W", Kind.GAUGE, "Power drawn by the device.",
         otel="hw.power", dcgm="DCGM_FI_DEV_POWER_USAGE", npu_exporter="npu_chip_info_power"),
    _acc("energy_joules_total", "J", Kind.COUNTER,
         "Energy consumed by the device since the driver loaded.",
         otel="hw.energy", dcgm="DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", compat_scale=1000.0),
    _acc("temperature_celsius", "Cel", Kind.GAUGE, "Device (GPU die or NPU chip) temperature.",
         otel="hw.temperature", dcgm="DCGM_FI_DEV_GPU_TEMP",
         npu_exporter="npu_chip_info_temperature"),
    _acc("memory_temperature_celsius", "Cel", Kind.GAUGE, "Device memory (HBM) temperature.",
         dcgm="DCGM_FI_DEV_MEMORY_TEMP"),
    _acc("sm_clock_hertz", "Hz", Kind.GAUGE,
         "Streaming-multiprocessor (NVIDIA) or AI-core (Ascend) clock.",
         dcgm="DCGM_FI_DEV_SM_CLOCK", npu_exporter="npu_chip_info_aicore_current_freq",
         compat_scale=1e-6),
    _acc("memory_clock_hertz", "Hz", Kind.GAUGE, "Device memory clock.",
         dcgm="DCGM_FI_DEV_MEM_CLOCK", compat_scale=1e-6),
    _acc("health", "{state}", Kind.GAUGE,
         "1 when the device answers and reports healthy, 0 when it is unhealthy or lost.",
         otel="hw.status", npu_exporter="npu_chip_info_health_status", high=1.0),
    _acc("pcie_replays_total", "{count}", Kind.COUNTER, "PCIe replay events.",
         dcgm="DCGM_FI_DEV_PCIE_REPLAY_COUNTER"),
    _acc("xid_errors_total", "{count}", Kind.COUNTER,
         "XID errors seen since the agent started, one series per XID code.", labels=("xid",)),
    _acc("ecc_errors_total", "{count}", Kind.COUNTER,
         "ECC errors since the driver loaded, by error_type corrected|uncorrected.",
         otel="hw.errors", labels=("error_type",)),
    _acc("remapped_rows", "{count}", Kind.GAUGE,
         "Memory rows remapped, by error_type correctable|uncorrectable.", labels=("error_type",)),
    _acc("throttled", "{state}", Kind.GAUGE,
         "1 while the clocks are held down for the labelled reason, else 0.", labels=("reason",),
         high=1.0),
    # --- facility_power: one series per meter ---------------------------------------------
    Metric("facility_power", "watts", "W", Kind.GAUGE, _METER,
           "Power through the meter; scope says what it feeds (facility | it | cooling | other).",
           otel="hw.host.power"),
    Metric("facility_power", "joules_total", "J", Kind.COUNTER, _METER,
           "Energy through the meter since it was installed or last reset.",
           otel="hw.host.energy"),
    # --- pue: derived per site and window ---------------------------------------------------
    Metric("pue", "energy_ratio", "{factor}", Kind.GAUGE, (*_PLACE, "window"),
           "Energy-based PUE over the window: facility energy / IT energy (ISO/IEC 30134-2).",
           low=1.0, nan_ok=True),
    Metric("pue", "power_ratio", "{factor}", Kind.GAUGE, (*_PLACE, "window"),
           "Instantaneous power ratio facility W / IT W; noisier than the energy-based PUE.",
           low=1.0, nan_ok=True),
    Metric("pue", "completeness_ratio", "1", Kind.GAUGE, (*_PLACE, "window"),
           "Share of the expected meter readings that arrived in the window."),
    Metric("pue", "facility_joules", "J", Kind.GAUGE, (*_PLACE, "window"),
           "Facility energy in the window (the numerator of the energy-based PUE).",
           nan_ok=True),
    Metric("pue", "it_joules", "J", Kind.GAUGE, (*_PLACE, "window"),
           "IT energy in the window (the denominator of the energy-based PUE).", nan_ok=True),
    # --- link_latency: one series per probed site pair, one point per window ---------------
    Metric("link_latency", "rtt_min_seconds", "s", Kind.GAUGE, _LINK, "Minimum RTT in the window.",
           nan_ok=True),
    Metric("link_latency", "rtt_p50_seconds", "s", Kind.GAUGE, _LINK, "Median RTT in the window.",
           nan_ok=True),
    Metric("link_latency", "rtt_p95_seconds", "s", Kind.GAUGE, _LINK,
           "95th percentile RTT in the window.", nan_ok=True),
    Metric("link_latency", "rtt_p99_seconds", "s", Kind.GAUGE, _LINK,
           "99th percentile RTT in the window.", nan_ok=True),
    Metric("link_latency", "rtt_max_seconds", "s", Kind.GAUGE, _LINK, "Maximum RTT in the window.",
           nan_ok=True),
    Metric("link_latency", "loss_ratio", "1", Kind.GAUGE, _LINK,
           "Share of probes in the window that got no reply."),
    Metric("link_latency", "jitter_seconds", "s", Kind.GAUGE, _LINK,
           "Interarrival jitter in the window (RFC 3550 estimator).", nan_ok=True),
    Metric("link_latency", "samples", "{count}", Kind.GAUGE, _LINK,
           "Probes sent in the window."),
    Metric("link_latency", "replies_within_budget", "{count}", Kind.GAUGE, _LINK,
           "Probes in the window answered within the link's tier budget (budget_seconds); "
           "lost and late probes are not. Summed with samples over any window, it gives the "
           "share of probes within budget, and so whether that window's p95 is."),
    Metric("link_latency", "fiber_min_seconds", "s", Kind.GAUGE, _LINK,
           "Physical minimum RTT over the great-circle distance (10 µs per km)."),
    Metric("link_latency", "budget_seconds", "s", Kind.GAUGE, _LINK,
           "The link's tier budget as an RTT (policy), for comparison with the percentiles."),
    Metric("link_latency", "route_inflation", "{factor}", Kind.GAUGE, _LINK,
           "Measured minimum RTT / fiber minimum; the MIIT plan limits direct links to 1.5.",
           nan_ok=True),
    Metric("link_latency", "late", "{count}", Kind.GAUGE, _LINK,
           "Replies in the window that came after the probe timeout (counted as lost)."),
    Metric("link_latency", "duplicates", "{count}", Kind.GAUGE, _LINK,
           "Replies in the window for a probe already answered."),
    Metric("link_latency", "reordered", "{count}", Kind.GAUGE, _LINK,
           "Replies in the window that arrived after a later probe's reply."),
    Metric("link_latency", "requests_total", "{count}", Kind.COUNTER, _LINK,
           "Probes sent since the prober started (smokeping_requests_total)."),
    Metric("link_latency", "rtt_seconds_bucket", "{count}", Kind.COUNTER, (*_LINK, "le"),
           "RTT of probe replies since the prober started, as a histogram (le: upper bound "
           "in seconds, smokeping_prober's buckets).",
           histogram="link_latency_rtt_seconds"),
    Metric("link_latency", "rtt_seconds_count", "{count}", Kind.COUNTER, _LINK,
           "Replies received since the prober started.", histogram="link_latency_rtt_seconds"),
    Metric("link_latency", "rtt_seconds_sum", "s", Kind.COUNTER, _LINK,
           "Sum of the RTTs of all replies since the prober started.",
           histogram="link_latency_rtt_seconds"),
    # --- finding: pipeline results written back for dashboards and alerts ------------------
    Metric("finding", "severity", "{state}", Kind.GAUGE,
           ("pipeline", "rule", "subject_type", "subject", *_PLACE),
           "0 info, 1 warning, 2 critical.", high=2.0),
    Metric("finding", "observed", "{value}", Kind.GAUGE,
           ("pipeline", "rule", "subject_type", "subject", *_PLACE),
           "The value the pipeline measured (unit per rule)."),
    Metric("finding", "threshold", "{value}", Kind.GAUGE,
           ("pipeline", "rule", "subject_type", "subject", *_PLACE),
           "The policy threshold the value was compared with."),
    Metric("finding", "completeness_ratio", "1", Kind.GAUGE,
           ("pipeline", "rule", "subject_type", "subject", *_PLACE),
           "Share of the expected data that the finding is based on."),
    # --- agent: the node agent's own health, one series per collector or exporter ------------
    Metric("agent", "collector_up", "{state}", Kind.GAUGE, ("node", *_PLACE, "collector"),
           "1 when the collector's last run succeeded, else 0.", high=1.0),
    Metric("agent", "collector_result_code", "{state}", Kind.GAUGE,
           ("node", *_PLACE, "collector"),
           "Outcome of the last run: 0 ok, 1 absent (no driver or device), 2 parse error, "
           "3 timeout, 4 other error.", high=4.0),
    Metric("agent", "collector_duration_seconds", "s", Kind.GAUGE,
           ("node", *_PLACE, "collector"), "Wall time of the collector's last run."),
    Metric("agent", "collector_errors_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "collector", "error_type"),
           "Failed runs by error_type (absent, parse_error, timeout, error), and per-field "
           "driver errors such as nvml_no_permission."),
    Metric("agent", "parse_errors_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "collector", "source"),
           "Device outputs that could not be parsed, by the command or file they came from."),
    Metric("agent", "samples_collected_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "collector"), "Samples the collector produced."),
    Metric("agent", "samples_exported_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "exporter"), "Samples an exporter delivered."),
    Metric("agent", "samples_dropped_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "exporter", "reason"),
           "Samples an exporter could not deliver and gave up on, by reason."),
    # The remote-write exporter's durable on-disk queue (collectors/export/remote.py).
    Metric("agent", "buffer_bytes", "By", Kind.GAUGE, ("node", *_PLACE, "exporter"),
           "Bytes of segment files in the exporter's on-disk queue."),
    Metric("agent", "buffer_limit_bytes", "By", Kind.GAUGE, ("node", *_PLACE, "exporter"),
           "The on-disk queue's bound; at the bound the oldest segments are dropped."),
    Metric("agent", "buffer_queued_samples", "{count}", Kind.GAUGE,
           ("node", *_PLACE, "exporter"),
           "Samples on disk not yet acknowledged by the store (including the batch in flight)."),
    Metric("agent", "buffer_dropped_samples_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "exporter", "reason"),
           "Samples the queue gave up on: full (oldest dropped at the bound), corrupt (a "
           "record failed its checksum), rejected (the store refused them for good), nan "
           "(line protocol cannot carry NaN)."),
    Metric("agent", "buffer_corrupt_segments_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "exporter"),
           "Segment files found torn or with a bad checksum; the bad part is skipped."),
    Metric("agent", "buffer_sent_samples_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "exporter"), "Samples the store acknowledged."),
    Metric("agent", "buffer_retries_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "exporter"),
           "Write attempts that failed with a retryable error and were tried again later."),
    # --- alert_bridge: the Alertmanager-to-chat bridge's own health (alerts/bridge) --------
    Metric("alert_bridge", "notifications_received_total", "{count}", Kind.COUNTER,
           ("receiver",), "Alertmanager webhook notifications accepted and queued."),
    Metric("alert_bridge", "requests_rejected_total", "{count}", Kind.COUNTER,
           ("receiver", "reason"),
           "Webhook requests refused, by reason: unauthorized, unknown_receiver, "
           "length_required, too_large, malformed_json, invalid_payload, queue_full."),
    Metric("alert_bridge", "messages_delivered_total", "{count}", Kind.COUNTER,
           ("target", "kind"), "Messages the target accepted."),
    Metric("alert_bridge", "delivery_failures_total", "{count}", Kind.COUNTER,
           ("target", "kind", "reason"),
           "Failed delivery attempts, by reason (timeout, connection_error, http_500, "
           "rate_limited, rejected, ...)."),
    Metric("alert_bridge", "delivery_retries_total", "{count}", Kind.COUNTER,
           ("target", "kind", "reason"),
           "Delivery attempts scheduled again after a failure, by the failure's reason."),
    Metric("alert_bridge", "messages_dead_lettered_total", "{count}", Kind.COUNTER,
           ("target", "kind", "reason"),
           "Messages given up on and written to the dead-letter log, by reason."),
    Metric("alert_bridge", "dead_letter_errors_total", "{count}", Kind.COUNTER,
           ("target", "kind"),
           "Dead-letter records that could not be written (logged in full instead)."),
    Metric("alert_bridge", "messages_truncated_total", "{count}", Kind.COUNTER,
           ("target", "kind"), "Messages cut to the target's size limit (a link kept)."),
    Metric("alert_bridge", "rate_limit_waits_total", "{count}", Kind.COUNTER,
           ("target", "kind"), "Sends held back to stay within the target's rate limit."),
    Metric("alert_bridge", "queue_depth", "{count}", Kind.GAUGE, ("target", "kind"),
           "Messages waiting in the target's queue."),
    # --- computewatch: the stack's own health -----------------------------------------------
    Metric("computewatch", "samples_rejected_total", "{count}", Kind.COUNTER,
           ("component", "measurement", "field", "reason"),
           "Samples refused by catalogue validation (unknown metric, out of range, NaN)."),
)


@dataclass(frozen=True, slots=True)
class Measurement:
    """A measurement's schema: the union of its metrics' labels, and its fields in order."""

    name: str
    labels: tuple[str, ...]
    metrics: tuple[Metric, ...] = field(repr=False)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(m.field for m in self.metrics)

    def metric(self, field_: str) -> Metric:
        for m in self.metrics:
            if m.field == field_:
                return m
        raise UnknownMetricError(
            f"unknown field {field_!r} of measurement {self.name!r} "
            f"(known: {', '.join(self.fields)})"
        )


def _build_measurements(metrics: Iterable[Metric]) -> dict[str, Measurement]:
    grouped: dict[str, list[Metric]] = {}
    for m in metrics:
        grouped.setdefault(m.measurement, []).append(m)
    out = {}
    for name, ms in grouped.items():
        labels: list[str] = []
        for m in ms:
            labels.extend(lab for lab in m.labels if lab not in labels)
        out[name] = Measurement(name, tuple(labels), tuple(ms))
    return out


_MEASUREMENTS = _build_measurements(CATALOG)


def measurements() -> Iterator[Measurement]:
    return iter(_MEASUREMENTS.values())


def measurement(name: str) -> Measurement:
    try:
        return _MEASUREMENTS[name]
    except KeyError:
        raise UnknownMetricError(
            f"unknown measurement {name!r} (known: {', '.join(_MEASUREMENTS)})"
        ) from None


_BY_NAME = {m.name: m for m in CATALOG}
LABEL_SETS: dict[str, frozenset[str]] = {m.name: frozenset(m.labels) for m in CATALOG}
"""Each metric's allowed labels as a set, for validation on the agent's hot path."""


def metric(name: str) -> Metric:
    """Look a metric up by ``measurement.field``."""
    found = _BY_NAME.get(name)
    if found is not None:
        return found
    meas, _, field_ = name.partition(".")
    if not field_:
        raise UnknownMetricError(f"unknown metric {name!r}: expected 'measurement.field'")
    return measurement(meas).metric(field_)
