"""`NvmlCollector`: every NVIDIA GPU and MIG device on the node, one run at a time.

The one seam is the NVML module itself: the collector takes any object with pynvml's function
names, signatures, return types and ``NVMLError``, so the simulator's
`computewatch.sim.fake_nvml.FakeNvml` runs exactly the code path a real driver does. The
decisions (units, health, MIG, failures) are stated in this folder's README.md.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from computewatch import catalog
from computewatch.collectors._base import (
    CollectorError,
    DeviceLabels,
    DriverAbsent,
    Labels,
    LabelSets,
    as_read,
    placement_labels,
)
from computewatch.collectors.nvml._calls import Dev, DriverCalls
from computewatch.collectors.nvml._events import XidEvents
from computewatch.collectors.nvml._gpm import GpmReader, GpmTarget
from computewatch.collectors.nvml._processes import ProcessReader
from computewatch.samples import Sample

__all__ = ["EMITTED", "THROTTLE_REASONS", "NvmlCollector"]

log = logging.getLogger("computewatch.collectors.nvml")

THROTTLE_REASONS: tuple[tuple[str, int], ...] = (
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sync_boost", 0x10),
    ("sw_thermal_slowdown", 0x20),
    ("hw_thermal_slowdown", 0x40),
    ("hw_power_brake_slowdown", 0x80),
    ("display_clock_setting", 0x100),
)
"""The ``reason`` label values of ``accelerator.throttled`` and their NVML clock-event bits."""

EMITTED: tuple[str, ...] = (
    "accelerator.utilization_ratio",
    "accelerator.memory_utilization_ratio",
    "accelerator.memory_used_bytes",
    "accelerator.memory_total_bytes",
    "accelerator.power_watts",
    "accelerator.energy_joules_total",
    "accelerator.temperature_celsius",
    "accelerator.memory_temperature_celsius",
    "accelerator.sm_clock_hertz",
    "accelerator.memory_clock_hertz",
    "accelerator.pcie_replays_total",
    "accelerator.ecc_errors_total",
    "accelerator.remapped_rows",
    "accelerator.throttled",
    "accelerator.xid_errors_total",
    "accelerator.health",
    "agent.collector_errors_total",
    # issue 16: memory split, media engines, errors, links, profiling, processes
    "accelerator.memory_free_bytes",
    "accelerator.memory_reserved_bytes",
    "accelerator.encoder_utilization_ratio",
    "accelerator.decoder_utilization_ratio",
    "accelerator.graphics_active_ratio",
    "accelerator.sm_active_ratio",
    "accelerator.tensor_active_ratio",
    "accelerator.dram_active_ratio",
    "accelerator.pcie_transmit_bytes_per_second",
    "accelerator.pcie_receive_bytes_per_second",
    "accelerator.nvlink_transmit_bytes_per_second",
    "accelerator.nvlink_receive_bytes_per_second",
    "accelerator.nvlink_data_bytes_per_second",
    "accelerator.nvlink_errors_total",
    "accelerator.retired_pages_total",
    "accelerator.retired_pages_pending",
    "accelerator.row_remap_failed",
    "accelerator.last_xid",
    "accelerator.processes",
    "accelerator_process.memory_used_bytes",
)
"""Every metric this collector can emit (``measurement.field``)."""

_ALL_LINKS = 0xFFFFFFFF  # scopeId for "every NVLink of the GPU"
_LINK_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    # (field key, NVML field id, catalogue field, error_type label)
    ("nvlink_crc_flit", "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "nvlink_errors_total",
     "crc_flit"),
    ("nvlink_crc_data", "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", "nvlink_errors_total",
     "crc_data"),
    ("nvlink_replay", "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "nvlink_errors_total",
     "replay"),
    ("nvlink_recovery", "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "nvlink_errors_total",
     "recovery"),
    ("retired_sbe", "NVML_FI_DEV_RETIRED_SBE", "retired_pages_total", "single_bit"),
    ("retired_dbe", "NVML_FI_DEV_RETIRED_DBE", "retired_pages_total", "double_bit"),
    ("retired_pending", "NVML_FI_DEV_RETIRED_PENDING", "retired_pages_pending", ""),
)
_THROUGHPUT_FIELDS = (("nvlink_tx_kib", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX"),
                      ("nvlink_rx_kib", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX"))


def _text(value: object) -> str:
    """Older bindings return bytes, newer ones str; labels want str."""
    if isinstance(value, bytes):
        return value.split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(value)


def _mig_profile(name: str) -> str:
    """``NVIDIA H100 80GB HBM3 MIG 1g.10gb`` -> ``1g.10gb`` (what DCGM calls GPU_I_PROFILE)."""
    _, sep, profile = name.rpartition(" MIG ")
    return profile.strip() if sep else ""


@dataclass
class _Session:
    """What holds while NVML stays initialised; dropped when it must be initialised again."""

    driver_version: str = ""
    identity: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # uuid, name, pci
    memory_v1: bool = False  # the binding or driver has no nvmlDeviceGetMemoryInfo_v2
    links: dict[str, tuple[float, float]] = field(default_factory=dict)  # gpu -> (KiB, µs)


class NvmlCollector:
    """Reads every NVIDIA GPU (and MIG device) on the node through NVML."""

    name = "nvml"

    def __init__(self, labels: Mapping[str, str], nvml: Any | None = None, *,
                 top_processes: int = 5, gpm_warmup_s: float = 0.1,
                 sleep: Callable[[float], None] | None = None) -> None:
        self._place = placement_labels(labels)
        self._injected = nvml
        self._nv: Any = None
        self._session: _Session | None = None
        self._calls = DriverCalls()
        self._xid = XidEvents()
        self._gpm = GpmReader(gpm_warmup_s, sleep) if sleep else GpmReader(gpm_warmup_s)
        self._procs = ProcessReader(top_processes)
        self._mig_mode: dict[str, int] = {}
        self._labels: dict[str, Labels] = {}  # gpu index -> labels of its last series
        self._sets = LabelSets()
        self._device_labels: DeviceLabels = as_read

    # --- the collector protocol -----------------------------------------------------------

    def describe(self) -> list[catalog.Metric]:
        """The catalogued metrics this collector may emit."""
        return [catalog.metric(name) for name in EMITTED]

    def collect(self) -> list[Sample]:
        """One reading of every GPU; raises DriverAbsent when there is no driver or GPU."""
        nv, session = self._ensure_init()
        now = datetime.now(UTC)
        try:
            count = int(nv.nvmlDeviceGetCount())
        except nv.NVMLError as exc:
            self._run_failed("nvmlDeviceGetCount", exc)
        if count == 0:
            raise DriverAbsent("nvml: the NVIDIA driver is loaded but reports no GPU")
        samples: list[Sample] = []
        gpm_targets: list[GpmTarget] = []
        for i in range(count):
            samples += self._collect_gpu(nv, session, i, now, gpm_targets)
        for target, name, value in self._gpm.read(nv, self._calls, gpm_targets):
            samples.append(Sample("accelerator", name, value, target.labels, now))
        self._procs.end_run()
        self._xid.drain(nv, self._calls)
        for idx, labels in self._labels.items():
            if self._xid.watched(idx):
                samples.append(Sample("accelerator", "last_xid",
                                      float(self._xid.last.get(idx, 0)), labels, now))
        for (idx, xid), n in sorted(self._xid.counts.items()):
            if idx in self._labels:
                samples.append(Sample("accelerator", "xid_errors_total", float(n),
                                      self._sets.plus(self._labels[idx], (("xid", str(xid)),)),
                                      now))
        return samples

    def set_device_labels(self, hook: DeviceLabels) -> None:
        """Pass each GPU's and MIG device's labels through ``hook`` (`DeviceLabels`)."""
        self._device_labels = hook

    def self_samples(self, now: datetime) -> list[Sample]:
        """This collector's own error counters (NVML errors on single fields, by error): the
        agent reports them every cycle, whatever the run's outcome, so they never vanish from
        a scrape while NVML is down."""
        return [Sample.of("agent.collector_errors_total", float(n),
                          {**self._place, "collector": self.name, "error_type": error_type}, now)
                for error_type, n in sorted(dict.copy(self._calls.errors).items())]

    def close(self) -> None:
        """Free the GPM samples and the event set, shut NVML down; a later run starts again."""
        if self._session is None:
            return
        nv, self._session = self._nv, None
        try:
            self._gpm.close(nv)
            self._xid.close(nv)
            nv.nvmlShutdown()
        except nv.NVMLError as exc:
            log.debug("nvml: shutdown: %s", exc)

    # --- initialisation and whole-run failures --------------------------------------------

    def _module(self) -> Any:
        if self._injected is not None:
            return self._injected
        try:
            return importlib.import_module("pynvml")
        except ImportError as exc:
            raise DriverAbsent(f"nvml: the pynvml module is not installed ({exc}); "
                               "install nvidia-ml-py to read NVIDIA GPUs") from None

    def _ensure_init(self) -> tuple[Any, _Session]:
        if self._session is not None:
            return self._nv, self._session
        nv = self._nv = self._module()
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            if exc.value == nv.NVML_ERROR_LIBRARY_NOT_FOUND:
                raise DriverAbsent(
                    f"nvml: no NVIDIA driver on this node ({exc}: libnvidia-ml.so.1 could not "
                    "be loaded); install the driver or disable the nvml collector here; "
                    "retrying on the next run") from None
            if exc.value == nv.NVML_ERROR_DRIVER_NOT_LOADED:
                raise DriverAbsent(
                    f"nvml: the NVIDIA kernel driver is not loaded ({exc}); check "
                    "`nvidia-smi` and `lsmod | grep nvidia`; retrying on the next run") from None
            raise CollectorError(f"nvml: nvmlInit failed: {exc} "
                                 f"(NVML error {exc.value})") from None
        session = _Session(memory_v1=not hasattr(nv, "nvmlMemory_v2"))
        try:
            session.driver_version = _text(nv.nvmlSystemGetDriverVersion())
        except nv.NVMLError as exc:
            self._calls.count(nv, "", "driver_version", exc.value)
        self._calls.reset()  # a new driver may support what the old one did not
        self._mig_mode.clear()
        self._gpm.forget()  # the old session's samples are gone with it
        self._xid.open(nv, self._calls)
        self._session = session
        return nv, session

    def _run_failed(self, call: str, exc: Any) -> NoReturn:
        nv = self._nv
        if exc.value in (nv.NVML_ERROR_UNINITIALIZED, nv.NVML_ERROR_DRIVER_NOT_LOADED,
                         nv.NVML_ERROR_LIBRARY_NOT_FOUND):
            self._session = None  # initialise again next run
            raise DriverAbsent(f"nvml: {call}: the NVIDIA driver went away ({exc}); "
                               "retrying on the next run") from None
        raise CollectorError(f"nvml: {call} failed: {exc} (NVML error {exc.value})") from None

    # --- one GPU --------------------------------------------------------------------------

    def _collect_gpu(self, nv: Any, session: _Session, i: int, now: datetime,
                     gpm_targets: list[GpmTarget]) -> list[Sample]:
        dev = Dev(str(i))
        handle = None
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(i)
        except nv.NVMLError as exc:
            if exc.value in (nv.NVML_ERROR_GPU_IS_LOST, nv.NVML_ERROR_RESET_REQUIRED):
                dev.lost = True
            else:
                self._calls.count(nv, dev.index, "handle", exc.value)
        uuid, model, pci = self._identity(nv, session, dev, handle)
        labels = {**self._place, "vendor": "nvidia", "ecosystem": "cuda", "model": model,
                  "device": uuid or f"nvidia{i}", "index": dev.index, "pci_bus_id": pci,
                  "driver_version": session.driver_version}
        read = {k: v for k, v in labels.items() if v}  # a MIG device's start from these
        labels = self._sets.of(dev.index, self._device_labels(read))
        self._labels[dev.index] = labels
        out: list[Sample] = []
        healthy = handle is not None
        if handle is not None:
            self._xid.register(nv, self._calls, dev, handle)
            mig = self._mig_enabled(nv, dev, handle)  # first: a change resets what we skip
            healthy = self._gpu_fields(nv, session, dev, handle, labels, now, out)
            migs = self._collect_migs(nv, session, dev, handle, read, now, out,
                                      gpm_targets) if mig else {}
            procs = self._procs.read(nv, self._calls, dev, handle)
            if procs is not None:
                by_instance: dict[int, list[Any]] = {gi: [] for gi in migs}
                own = []
                for p in procs:
                    by_instance.get(getattr(p, "gpuInstanceId", None), own).append(p)
                out += self._procs.samples(nv, own, labels, now, self._sets)
                for gi, mig_labels in migs.items():
                    out += self._procs.samples(nv, by_instance[gi], mig_labels, now, self._sets)
            if not mig and not dev.lost and self._gpm.supported(nv, self._calls, dev, handle):
                gpm_targets.append(GpmTarget(dev, handle, labels))
        if dev.lost:
            self._gpm.drop(nv, dev.index)
        out.append(Sample("accelerator", "health", 1.0 if healthy and not dev.lost else 0.0,
                          labels, now))
        return out

    def _identity(self, nv: Any, session: _Session, dev: Dev,
                  handle: Any) -> tuple[str, str, str]:
        """UUID, name and PCI bus id: fixed while the driver stays loaded, so read once."""
        if dev.index in session.identity or handle is None:
            return session.identity.get(dev.index, ("", "", ""))
        call = self._calls.call
        uuid = call(nv, dev, "uuid", ("nvmlDeviceGetUUID",), handle)
        name = call(nv, dev, "name", ("nvmlDeviceGetName",), handle)
        pci = call(nv, dev, "pci_info", ("nvmlDeviceGetPciInfo",), handle)
        ident = (_text(uuid) if uuid is not None else "",
                 _text(name) if name is not None else "",
                 _text(pci.busId) if pci is not None else "")
        if all(ident):
            session.identity[dev.index] = ident
        return ident

    def _gpu_fields(self, nv: Any, session: _Session, dev: Dev, h: Any,
                    base: Labels, now: datetime, out: list[Sample]) -> bool:
        """Append the GPU's fields to ``out``; return False when they say it is unhealthy."""
        call = self._calls.call
        plus = self._sets.plus

        def emit(name: str, value: float, **extra: str) -> None:
            lab = plus(base, tuple(extra.items())) if extra else base
            out.append(Sample("accelerator", name, float(value), lab, now))

        healthy = True
        self._common_fields(nv, session, dev, h, emit)
        power = call(nv, dev, "power", ("nvmlDeviceGetPowerUsage",), h)
        if power is not None:
            emit("power_watts", power / 1000.0)
        energy = call(nv, dev, "energy", ("nvmlDeviceGetTotalEnergyConsumption",), h)
        if energy is not None:
            emit("energy_joules_total", energy / 1000.0)
        temp = call(nv, dev, "temperature",
                    ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"),
                    h, nv.NVML_TEMPERATURE_GPU)
        if temp is not None:
            emit("temperature_celsius", temp)
        for key, clock, name in (("sm_clock", nv.NVML_CLOCK_SM, "sm_clock_hertz"),
                                 ("memory_clock", nv.NVML_CLOCK_MEM, "memory_clock_hertz")):
            mhz = call(nv, dev, key, ("nvmlDeviceGetClockInfo",), h, clock)
            if mhz is not None:
                emit(name, mhz * 1e6)
        for key, fn, name in (("encoder", "nvmlDeviceGetEncoderUtilization",
                               "encoder_utilization_ratio"),
                              ("decoder", "nvmlDeviceGetDecoderUtilization",
                               "decoder_utilization_ratio")):
            util = call(nv, dev, key, (fn,), h)
            if util is not None:
                emit(name, util[0] / 100.0)
        replays = call(nv, dev, "pcie_replays", ("nvmlDeviceGetPcieReplayCounter",), h)
        if replays is not None:
            emit("pcie_replays_total", replays)
        for key, kind, error_type in (
                ("ecc_corrected", nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, "corrected"),
                ("ecc_uncorrected", nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, "uncorrected")):
            n = call(nv, dev, key, ("nvmlDeviceGetTotalEccErrors",), h, kind,
                     nv.NVML_VOLATILE_ECC)
            if n is not None:
                emit("ecc_errors_total", n, error_type=error_type)
                healthy &= not (error_type == "uncorrected" and n > 0)
        rows = call(nv, dev, "remapped_rows", ("nvmlDeviceGetRemappedRows",), h)
        if rows is not None:
            correctable, uncorrectable, _pending, failure = rows
            emit("remapped_rows", correctable, error_type="correctable")
            emit("remapped_rows", uncorrectable, error_type="uncorrectable")
            emit("row_remap_failed", 1.0 if failure else 0.0)
            healthy &= not failure
        self._field_values(nv, session, dev, h, emit)
        reasons = call(nv, dev, "throttled", ("nvmlDeviceGetCurrentClocksEventReasons",
                                              "nvmlDeviceGetCurrentClocksThrottleReasons"), h)
        if reasons is not None:
            for reason, bit in THROTTLE_REASONS:
                emit("throttled", 1.0 if reasons & bit else 0.0, reason=reason)
        return healthy

    def _common_fields(self, nv: Any, session: _Session, dev: Dev, h: Any,
                       emit: Callable[..., None]) -> None:
        """The fields a GPU and a MIG device share: utilization and memory."""
        util = self._calls.call(nv, dev, "utilization", ("nvmlDeviceGetUtilizationRates",), h)
        if util is not None:
            emit("utilization_ratio", util.gpu / 100.0)
            emit("memory_utilization_ratio", util.memory / 100.0)
        mem = None
        if not session.memory_v1:
            mem = self._memory_v2(nv, session, dev, h)
        if session.memory_v1:
            mem = self._calls.call(nv, dev, "memory", ("nvmlDeviceGetMemoryInfo",), h)
        if mem is not None:
            emit("memory_used_bytes", mem.used)
            emit("memory_total_bytes", mem.total)
            emit("memory_free_bytes", mem.free)
            if hasattr(mem, "reserved"):
                emit("memory_reserved_bytes", mem.reserved)

    def _memory_v2(self, nv: Any, session: _Session, dev: Dev, h: Any) -> Any:
        """Memory info v2 (used without the driver's reservation); v1 where it is missing."""
        if self._calls.skip(dev, "memory"):
            return None
        try:
            return nv.nvmlDeviceGetMemoryInfo(h, nv.nvmlMemory_v2)
        except nv.NVMLError as exc:
            if exc.value in (nv.NVML_ERROR_FUNCTION_NOT_FOUND,
                             nv.NVML_ERROR_ARGUMENT_VERSION_MISMATCH):
                session.memory_v1 = True  # drivers before 510
                return None
            self._calls.failed(nv, dev, "memory", exc.value)
            return None

    def _field_values(self, nv: Any, session: _Session, dev: Dev, h: Any,
                      emit: Callable[..., None]) -> None:
        """Memory temperature, NVLink errors and throughput, retired pages: the fields NVML has
        no dedicated call for, in one nvmlDeviceGetFieldValues call."""
        wanted = [("memory_temperature", nv.NVML_FI_DEV_MEMORY_TEMP)]
        wanted += [(key, getattr(nv, fid)) for key, fid, _, _ in _LINK_FIELDS]
        wanted += [(key, (getattr(nv, fid), _ALL_LINKS)) for key, fid in _THROUGHPUT_FIELDS]
        stamps: dict[str, float] = {}
        got = self._calls.field_values(nv, dev, h, wanted, stamps)
        if "memory_temperature" in got:
            emit("memory_temperature_celsius", got["memory_temperature"])
        for key, _, name, error_type in _LINK_FIELDS:
            if key in got:
                if error_type:
                    emit(name, got[key], error_type=error_type)
                else:
                    emit(name, got[key])
        if "nvlink_tx_kib" in got and "nvlink_rx_kib" in got:
            now_us = max(stamps["nvlink_tx_kib"], stamps["nvlink_rx_kib"])  # as DCGM times it
            kib = got["nvlink_tx_kib"] + got["nvlink_rx_kib"]
            before = session.links.get(dev.index)
            session.links[dev.index] = (kib, now_us)
            if before is not None and now_us > before[1] and kib >= before[0]:
                emit("nvlink_data_bytes_per_second",
                     (kib - before[0]) * 1024.0 / ((now_us - before[1]) / 1e6))

    # --- MIG ------------------------------------------------------------------------------

    def _mig_enabled(self, nv: Any, dev: Dev, h: Any) -> bool:
        """Whether MIG is on; when that changed, forget what the GPU did not support."""
        mode = self._calls.call(nv, dev, "mig_mode", ("nvmlDeviceGetMigMode",), h)
        current = int(mode[0]) if mode is not None else nv.NVML_DEVICE_MIG_DISABLE
        previous = self._mig_mode.get(dev.index)
        self._mig_mode[dev.index] = current
        if previous is not None and previous != current:
            self._calls.forget(dev.index)
            self._gpm.drop(nv, dev.index, with_instances=True)
        return current == nv.NVML_DEVICE_MIG_ENABLE

    def _collect_migs(self, nv: Any, session: _Session, parent: Dev, h: Any,
                      parent_labels: dict[str, str], now: datetime, out: list[Sample],
                      gpm_targets: list[GpmTarget]) -> dict[int, Labels]:
        """Append each MIG device's series; return their labels by GPU instance id.
        ``parent_labels`` are the GPU's as read, not through the hook: a MIG device has a
        holder of its own."""
        call = self._calls.call
        n = call(nv, parent, "mig_count", ("nvmlDeviceGetMaxMigDeviceCount",), h) or 0
        gpm = self._gpm.supported(nv, self._calls, parent, h)
        by_instance: dict[int, Labels] = {}
        for j in range(int(n)):
            if parent.lost:
                break
            try:
                mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
            except nv.NVMLError as exc:
                if exc.value != nv.NVML_ERROR_NOT_FOUND:  # NOT_FOUND: an empty slot
                    self._calls.failed(nv, parent, "mig_handle", exc.value)
                continue
            dev = Dev(f"{parent.index}:{j}")
            uuid = call(nv, dev, "uuid", ("nvmlDeviceGetUUID",), mh)
            name = call(nv, dev, "name", ("nvmlDeviceGetName",), mh)
            instance = call(nv, dev, "gpu_instance", ("nvmlDeviceGetGpuInstanceId",), mh)
            labels = {**parent_labels,
                      "device": _text(uuid) if uuid is not None else
                      f"{parent_labels['device']}/mig{j}",
                      "index": dev.index, "parent": parent_labels["device"]}
            if name is not None:
                labels["model"] = _text(name)
                profile = _mig_profile(labels["model"])
                if profile:
                    labels["gpu_instance_profile"] = profile
            if instance is not None:
                labels["gpu_instance_id"] = str(int(instance))
            base = self._sets.of(dev.index, self._device_labels(labels))
            if instance is not None:
                by_instance[int(instance)] = base
                if gpm:
                    gpm_targets.append(GpmTarget(dev, h, base, int(instance)))

            def emit(metric: str, value: float, _labels: Labels = base) -> None:
                out.append(Sample("accelerator", metric, float(value), _labels, now))

            self._common_fields(nv, session, dev, mh, emit)
            emit("health", 0.0 if dev.lost else 1.0)
        return by_instance
