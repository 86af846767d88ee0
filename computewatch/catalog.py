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
    "ALLOCATION_LABELS",
    "CATALOG",
    "UNITS",
    "CompatPart",
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
        UnitSpec("V", "volts", 0.0, math.inf, "volts"),
        UnitSpec("By/s", "bytes_per_second", 0.0, math.inf, "bytes per second"),
    )
}


@dataclass(frozen=True, slots=True)
class CompatPart:
    """The name another exporter gives to the part of a metric whose ``label`` is ``value``.

    dcgm-exporter splits what the catalogue keeps as one metric with a label into one name
    per label value (``remapped_rows{error_type="correctable"}`` is
    ``DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS``); the part is converted with the metric's
    ``compat_scale`` and exposed with its ``compat_kind``.
    """

    exporter: str  # "dcgm" | "npu-exporter", as --compat names them
    label: str
    value: str
    name: str


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
    compat_kind: Kind | None = None
    """The TYPE the compatible exporter declares where it differs from ``kind``
    (dcgm-exporter's counters without ``_total``, such as its remapped-row counts)."""
    compat_parts: tuple[CompatPart, ...] = ()
    """Compatible names for parts of this metric, selected by a label value."""

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
_FINDING = ("pipeline", "rule", "subject_type", "subject", *_PLACE, "key")
_DEVICE = (*_PLACE, "node", "device", "index", "vendor", "model", "ecosystem",
           "pci_bus_id", "driver_version", "parent")
# Ascend: npu-exporter's per-chip ids (its `id` is the physical id; `vdie_id` from the chip's
# board view), and which memory the memory metrics describe (hbm | ddr; npu-exporter names
# them differently).
_DEVICE = (*_DEVICE, "phy_id", "vdie_id", "memory_type")
_DEVICE = (*_DEVICE, "gpu_instance_id", "gpu_instance_profile")  # MIG devices (NVML)
# Kubernetes: the pod holding the device, as the kubelet's PodResources API names it (the
# labels dcgm-exporter adds); empty while no pod holds it or where the node has no kubelet.
ALLOCATION_LABELS = ("pod", "namespace", "container")
_DEVICE = (*_DEVICE, *ALLOCATION_LABELS)
_METER = (*_PLACE, "meter", "scope", "source")
_LINK = ("src_site", "dst_site", "src_hub", "dst_hub", "tier", "probe")
# Where the kubelet's API is out of reach, the pod's UID from the cgroup of a process on the
# device (collectors/kubernetes): the cgroup names no pod, namespace or container.
_DEVICE = (*_DEVICE, "pod_uid")


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
         dcgm="DCGM_FI_DEV_MEM_COPY_UTIL", npu_exporter="npu_chip_info_hbm_bandwidth_utilization",
         compat_scale=100.0),
    _acc("vector_utilization_ratio", "1", Kind.GAUGE,
         "Ascend AI-vector unit usage (npu-smi Aivector Usage Rate); absent on NVIDIA.",
         npu_exporter="npu_chip_info_vector_utilization", compat_scale=100.0),
    _acc("memory_used_bytes", "By", Kind.GAUGE,
         "Device memory in use (Ascend: HBM where the chip has it, else DDR; memory_type says).",
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
         dcgm="DCGM_FI_DEV_MEMORY_TEMP", npu_exporter="npu_chip_info_hbm_temperature"),
    _acc("sm_clock_hertz", "Hz", Kind.GAUGE,
         "Streaming-multiprocessor (NVIDIA) or AI-core (Ascend) clock.",
         dcgm="DCGM_FI_DEV_SM_CLOCK", npu_exporter="npu_chip_info_aicore_current_freq",
         compat_scale=1e-6),
    _acc("memory_clock_hertz", "Hz", Kind.GAUGE, "Device memory clock.",
         dcgm="DCGM_FI_DEV_MEM_CLOCK", compat_scale=1e-6),
    _acc("health", "{state}", Kind.GAUGE,
         "1 when the device answers and reports healthy, 0 when it is unhealthy or lost.",
         otel="hw.status", npu_exporter="npu_chip_info_health_status", high=1.0),
    _acc("allocated", "{state}", Kind.GAUGE,
         "1 while a pod holds the device (the kubelet's PodResources API; the pod, namespace "
         "and container labels name it), 0 while none does; absent where the node has no "
         "kubelet.", high=1.0),
    _acc("pcie_replays_total", "{count}", Kind.COUNTER, "PCIe replay events.",
         dcgm="DCGM_FI_DEV_PCIE_REPLAY_COUNTER"),
    _acc("xid_errors_total", "{count}", Kind.COUNTER,
         "XID errors seen since the agent started, one series per XID code.", labels=("xid",)),
    _acc("ecc_errors_total", "{count}", Kind.COUNTER,
         "ECC errors since the driver loaded, by error_type corrected|uncorrected.",
         otel="hw.errors", labels=("error_type",)),
    _acc("remapped_rows", "{count}", Kind.GAUGE,
         "Memory rows remapped, by error_type correctable|uncorrectable.", labels=("error_type",),
         compat_kind=Kind.COUNTER, compat_parts=(
             CompatPart("dcgm", "error_type", "correctable",
                        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS"),
             CompatPart("dcgm", "error_type", "uncorrectable",
                        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"))),
    _acc("throttled", "{state}", Kind.GAUGE,
         "1 while the clocks are held down for the labelled reason, else 0.", labels=("reason",),
         high=1.0),
    # --- accelerator: processes (NVML's running compute processes, npu-smi's process table) --
    _acc("processes", "{count}", Kind.GAUGE,
         "Processes using the device, all of them (accelerator_process lists the top N by "
         "memory).", npu_exporter="npu_chip_info_process_info_num"),
    Metric("accelerator_process", "memory_used_bytes", "By", Kind.GAUGE,
           (*_DEVICE, "pid", "process_name"),
           "Device memory used by one process; only the top N processes per device by memory "
           "(bounded cardinality; accelerator_processes counts them all).",
           npu_exporter="npu_chip_info_process_info", compat_scale=1 / 2**20),
    # --- accelerator: Ascend detail views (npu-smi info -t ...) and hccn_tool ----------------
    _acc("overall_utilization_ratio", "1", Kind.GAUGE,
         "Ascend NPU utilization over all its engines (npu-smi NPU Utilization, 910B/A3).",
         npu_exporter="npu_chip_info_overall_utilization", compat_scale=100.0),
    _acc("cube_utilization_ratio", "1", Kind.GAUGE,
         "Ascend AI-cube unit usage (npu-smi Aicube Usage Rate, 910B/A3).",
         npu_exporter="npu_chip_info_cube_utilization", compat_scale=100.0),
    _acc("voltage_volts", "V", Kind.GAUGE, "Ascend chip supply voltage (npu-smi -t volt).",
         npu_exporter="npu_chip_info_voltage"),
    _acc("error_code", "{value}", Kind.GAUGE,
         "An error code the chip reports (npu-smi -t health), one series per position in its "
         "list; absent while it reports none.", labels=("position",),
         npu_exporter="npu_chip_info_error_code"),
    _acc("hbm_ecc_enabled", "{state}", Kind.GAUGE,
         "1 when HBM ECC detection is enabled (npu-smi -t ecc).", high=1.0,
         npu_exporter="npu_chip_info_hbm_ecc_enable_flag"),
    _acc("hbm_ecc_errors", "{count}", Kind.GAUGE,
         "HBM ECC errors now counted by the chip, by error_type single_bit|double_bit.",
         labels=("error_type",)),
    _acc("hbm_ecc_errors_total", "{count}", Kind.COUNTER,
         "HBM ECC errors over the chip's life (aggregate), by error_type single_bit|double_bit.",
         labels=("error_type",)),
    _acc("hbm_ecc_isolated_pages", "{count}", Kind.GAUGE,
         "HBM pages isolated after ECC errors, by error_type single_bit|double_bit.",
         labels=("error_type",)),
    _acc("info", "{state}", Kind.GAUGE,
         "Always 1; its labels describe the device (chip name, type and version, serial "
         "number, product type, firmware).", high=1.0,
         labels=("chip_name", "chip_type", "chip_version", "serial_number", "product_type",
                 "firmware_version")),
    _acc("network_health", "{state}", Kind.GAUGE,
         "1 when the chip's network (RoCE) health check passes (hccn_tool -net_health: "
         "Success or Init), else 0.", high=1.0, npu_exporter="npu_chip_info_network_status"),
    _acc("network_link_up", "{state}", Kind.GAUGE,
         "1 while the chip's network port is up (hccn_tool -link), else 0.", high=1.0,
         npu_exporter="npu_chip_info_link_status"),
    _acc("network_transmit_bytes_per_second", "By/s", Kind.GAUGE,
         "Bytes per second the chip's network port sends (hccn_tool -bandwidth; MB = 10^6 B).",
         npu_exporter="npu_chip_info_bandwidth_tx", compat_scale=1e-6),
    _acc("network_receive_bytes_per_second", "By/s", Kind.GAUGE,
         "Bytes per second the chip's network port receives (hccn_tool -bandwidth).",
         npu_exporter="npu_chip_info_bandwidth_rx", compat_scale=1e-6),
    _acc("network_rx_fcs_errors_total", "{count}", Kind.COUNTER,
         "Frames received with a bad FCS (hccn_tool -stat mac_rx_fcs_err_pkt_num).",
         npu_exporter="npu_chip_info_rx_fcs_num"),
    _acc("network_rx_ecn_packets_total", "{count}", Kind.COUNTER,
         "RoCE ECN-marked packets received (hccn_tool -stat roce_ecn_db_num).",
         npu_exporter="npu_chip_info_rx_ecn_num"),
    # --- accelerator_card: a card or board holding several chips (the Ascend MCU) ----------
    Metric("accelerator_card", "power_watts", "W", Kind.GAUGE,
           (*_PLACE, "node", "device", "index", "vendor", "model", "ecosystem", "pci_bus_id",
            "driver_version"),
           "Power of the whole card from its board controller (an Ascend card's MCU), "
           "counted once per card, never per chip."),
    Metric("accelerator_card", "temperature_celsius", "Cel", Kind.GAUGE,
           (*_PLACE, "node", "device", "index", "vendor", "model", "ecosystem", "pci_bus_id",
            "driver_version"),
           "Board temperature from the card's controller (an Ascend card's MCU)."),
    # NVIDIA through NVML: memory split, media engines, errors, links, profiling (GPM), and
    # the processes on a device. DCGM names as dcgm-exporter's default counters have them.
    _acc("memory_free_bytes", "By", Kind.GAUGE,
         "Device memory free (NVML: total = used + reserved + free).",
         dcgm="DCGM_FI_DEV_FB_FREE", compat_scale=1 / 2**20),
    _acc("memory_reserved_bytes", "By", Kind.GAUGE,
         "Device memory the driver and firmware reserve; not counted in memory_used_bytes.",
         dcgm="DCGM_FI_DEV_FB_RESERVED", compat_scale=1 / 2**20),
    _acc("encoder_utilization_ratio", "1", Kind.GAUGE,
         "Share of time the video encoder (NVENC) was busy over the driver's sample period.",
         dcgm="DCGM_FI_DEV_ENC_UTIL", compat_scale=100.0),
    _acc("decoder_utilization_ratio", "1", Kind.GAUGE,
         "Share of time the video decoder (NVDEC) was busy over the driver's sample period.",
         dcgm="DCGM_FI_DEV_DEC_UTIL", compat_scale=100.0),
    _acc("graphics_active_ratio", "1", Kind.GAUGE,
         "Share of time the graphics or compute engine was active over the collector's "
         "interval (NVML GPM; Hopper and later).",
         dcgm="DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
    _acc("sm_active_ratio", "1", Kind.GAUGE,
         "Share of streaming multiprocessors busy over the collector's interval (NVML GPM).",
         dcgm="DCGM_FI_PROF_SM_ACTIVE"),
    _acc("tensor_active_ratio", "1", Kind.GAUGE,
         "Share of time the tensor cores were active over the collector's interval (NVML GPM).",
         dcgm="DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"),
    _acc("dram_active_ratio", "1", Kind.GAUGE,
         "Device memory bandwidth used over its peak, over the collector's interval (NVML GPM).",
         dcgm="DCGM_FI_PROF_DRAM_ACTIVE"),
    _acc("pcie_transmit_bytes_per_second", "By/s", Kind.GAUGE,
         "PCIe bytes sent by the device per second, headers included (NVML GPM).",
         dcgm="DCGM_FI_PROF_PCIE_TX_BYTES"),
    _acc("pcie_receive_bytes_per_second", "By/s", Kind.GAUGE,
         "PCIe bytes received by the device per second, headers included (NVML GPM).",
         dcgm="DCGM_FI_PROF_PCIE_RX_BYTES"),
    _acc("nvlink_transmit_bytes_per_second", "By/s", Kind.GAUGE,
         "NVLink bytes sent per second over all links (NVML GPM).",
         dcgm="DCGM_FI_PROF_NVLINK_TX_BYTES"),
    _acc("nvlink_receive_bytes_per_second", "By/s", Kind.GAUGE,
         "NVLink bytes received per second over all links (NVML GPM).",
         dcgm="DCGM_FI_PROF_NVLINK_RX_BYTES"),
    _acc("nvlink_data_bytes_per_second", "By/s", Kind.GAUGE,
         "NVLink data bytes sent plus received per second over all links, averaged over the "
         "collector's interval from NVML's throughput counters (DCGM's bandwidth total).",
         dcgm="DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", compat_scale=1 / 1024 / 1000,
         compat_kind=Kind.COUNTER),
    _acc("nvlink_errors_total", "{count}", Kind.COUNTER,
         "NVLink errors over all links since the driver loaded, by error_type crc_flit|"
         "crc_data|replay|recovery.", labels=("error_type",)),
    _acc("retired_pages_total", "{count}", Kind.COUNTER,
         "Memory pages retired, by error_type single_bit|double_bit (page retirement: "
         "before Ampere; later GPUs remap rows).", labels=("error_type",)),
    _acc("retired_pages_pending", "{state}", Kind.GAUGE,
         "1 while a page retirement waits for the next driver reload, else 0.", high=1.0),
    _acc("row_remap_failed", "{state}", Kind.GAUGE,
         "1 when a row remapping has failed (the GPU needs service), else 0.", high=1.0,
         dcgm="DCGM_FI_DEV_ROW_REMAP_FAILURE"),
    _acc("last_xid", "{state}", Kind.GAUGE,
         "The code of the last critical XID error seen since the agent started, 0 while "
         "none; where NVML events are supported (DCGM's XID_ERRORS).",
         dcgm="DCGM_FI_DEV_XID_ERRORS"),
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
    # ``key`` tells apart findings of one rule and subject stamped at one time (the window's
    # start, and what else the pipeline varies, e.g. a surplus finding's latency circle), so
    # every finding is its own series and a rerun writes the same series at the same time.
    Metric("finding", "severity", "{state}", Kind.GAUGE, _FINDING,
           "0 info, 1 warning, 2 critical.", high=2.0),
    Metric("finding", "observed", "{value}", Kind.GAUGE, _FINDING,
           "The value the pipeline measured (unit per rule)."),
    Metric("finding", "threshold", "{value}", Kind.GAUGE, _FINDING,
           "The policy threshold the value was compared with."),
    Metric("finding", "completeness_ratio", "1", Kind.GAUGE, _FINDING,
           "Share of the expected data that the finding is based on."),
    # --- agent: the node agent's own health, one series per collector or exporter ------------
    Metric("agent", "collector_up", "{state}", Kind.GAUGE, ("node", *_PLACE, "collector"),
           "1 when the collector's last run succeeded, else 0.", high=1.0),
    Metric("agent", "collector_result_code", "{state}", Kind.GAUGE,
           ("node", *_PLACE, "collector"),
           "Outcome of the last run: 0 ok, 1 absent (no driver or device), 2 parse error, "
           "3 timeout, 4 other error, 5 no data (the device answered with nothing to read, or "
           "devices are configured and none gave a reading).",
           high=5.0),
    Metric("agent", "collector_duration_seconds", "s", Kind.GAUGE,
           ("node", *_PLACE, "collector"), "Wall time of the collector's last run."),
    Metric("agent", "collector_errors_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "collector", "error_type"),
           "Failed runs by error_type (absent, parse_error, timeout, error, no_data; each "
           "from the first cycle, at 0), and per-field driver errors such as "
           "nvml_no_permission."),
    Metric("agent", "parse_errors_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "collector", "source"),
           "Device outputs that could not be parsed, by the command or file they came from."),
    # Device commands a collector runs (npu-smi, hccn_tool): how many, how long.
    Metric("agent", "collector_commands", "{count}", Kind.GAUGE,
           ("node", *_PLACE, "collector"),
           "Device commands (npu-smi, hccn_tool) the collector's last run started."),
    Metric("agent", "command_duration_seconds", "s", Kind.GAUGE,
           ("node", *_PLACE, "collector", "command"),
           "Wall time of the slowest call of the command (without ids, e.g. `npu-smi info -t "
           "usages`) that finished in the collector's last run."),
    Metric("agent", "command_calls_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "collector", "command"),
           "Calls of the command that finished, since the collector started."),
    Metric("agent", "command_seconds_total", "s", Kind.COUNTER,
           ("node", *_PLACE, "collector", "command"),
           "Wall time of all finished calls of the command; / command_calls_total: the mean."),
    Metric("agent", "samples_collected_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "collector"), "Samples the collector produced."),
    Metric("agent", "samples_exported_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "exporter"), "Samples an exporter delivered."),
    Metric("agent", "samples_dropped_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "exporter", "reason"),
           "Samples an exporter could not deliver and gave up on, by reason."),
    # Workload attribution (collectors/kubernetes): the kubelet's PodResources API.
    Metric("agent", "kubelet_up", "{state}", Kind.GAUGE, ("node", *_PLACE),
           "1 when the kubelet's PodResources List answered at the last refresh, else 0.",
           high=1.0),
    Metric("agent", "kubelet_errors_total", "{count}", Kind.COUNTER,
           ("node", *_PLACE, "reason"),
           "PodResources List calls that failed, by reason: absent (no socket), unavailable, "
           "timeout, unimplemented, error."),
    Metric("agent", "attributed_devices", "{count}", Kind.GAUGE, ("node", *_PLACE, "source"),
           "Devices labelled with a pod in the last batch, by source: podresources (the "
           "kubelet's answer) or cgroup (a process on the device, through its cgroup)."),
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
           "(line protocol cannot carry NaN), invalid (a name or label line protocol cannot "
           "carry, e.g. a newline)."),
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
           "length_required, too_large, malformed_json, invalid_payload, too_deep, "
           "body_timeout, queue_full; before a receiver is known (receiver _unknown): "
           "header_timeout, connection_limit, bad_request."),
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


RTT_HISTOGRAM = ("link_latency", "rtt_seconds_bucket")
"""The probes' RTT histogram (measurement, field: cumulative replies per ``le`` bound): the
one latency quantity whose quantiles merge over any span, so a month's p95 is read from it
where a store keeps no quantile state of window p95s."""


def metric(name: str) -> Metric:
    """Look a metric up by ``measurement.field``."""
    found = _BY_NAME.get(name)
    if found is not None:
        return found
    meas, _, field_ = name.partition(".")
    if not field_:
        raise UnknownMetricError(f"unknown metric {name!r}: expected 'measurement.field'")
    return measurement(meas).metric(field_)
