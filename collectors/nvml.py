"""NVIDIA GPUs through NVML (the ``pynvml`` module of nvidia-ml-py), one series per GPU or MIG.

The one seam is the NVML module itself: `NvmlCollector` takes any object with pynvml's function
names, signatures, return types and ``NVMLError``, so the simulator's
`computewatch.sim.fake_nvml.FakeNvml` runs exactly the code path a real driver does.

Failure handling, from the whole run down to one field:

- No ``pynvml``, or ``nvmlInit`` answering "library not found" / "driver not loaded": the run
  raises `DriverAbsent` (the agent logs it once and keeps the other collectors going); the next
  run tries ``nvmlInit`` again, so a driver loaded later is picked up. Any other init failure
  raises `CollectorError`. A driver that reports no GPU at all is `DriverAbsent` too.
- A GPU that answers "GPU is lost" (or "reset required") to any call reports ``health`` 0 plus
  whatever it gave before; it is not asked again in that run. The other GPUs are unaffected.
- "Not supported" (or a function the binding or library lacks) makes that field absent, never
  zero, and is remembered per (GPU, field) so the driver is not asked again every run. A GPU
  whose MIG mode changes gets its memory of unsupported fields cleared.
- Any other NVML error on a field leaves the field absent and is counted, per NVML error name,
  in ``agent.collector_errors_total{collector="nvml", error_type="nvml_<error>"}`` (e.g.
  ``nvml_no_permission``, ``nvml_unknown``): a counter since the agent started.

Decisions:

- ``ecc_errors_total`` reads the VOLATILE counters (since the driver loaded, as the catalogue's
  help says, and as energy is counted); the aggregate counters live in the infoROM and are
  updated lazily by the driver, so they can lag the errors an operator is being paged for.
- ``health`` is 0 when the GPU is lost or its handle cannot be had, when row remapping has
  failed (``nvmlDeviceGetRemappedRows`` failure flag), or when a volatile uncorrected ECC error
  has been seen since the driver loaded: each of these means the GPU needs a reset or a
  replacement. XID errors do not change ``health``: they are counted per code instead.
- ``memory_used_bytes`` is ``nvmlDeviceGetMemoryInfo`` v1 ``used`` (it includes the driver's
  reservation, as ``total - free``); ``memory_temperature_celsius`` comes from
  ``nvmlDeviceGetFieldValues(NVML_FI_DEV_MEMORY_TEMP)``, NVML has no dedicated call.
- ``throttled`` has one series per reason in `THROTTLE_REASONS`, always all of them (0 or 1),
  from ``nvmlDeviceGetCurrentClocksEventReasons`` or, on bindings or drivers older than 535,
  ``nvmlDeviceGetCurrentClocksThrottleReasons``.
- ``xid_errors_total{xid}`` counts critical XID events per GPU and code since the agent
  started, from an NVML event set drained (timeout 0) on every run. Where events are not
  supported the counter is simply never emitted (logged once). Events of MIG instances are
  counted on their parent GPU.
- MIG: when ``nvmlDeviceGetMigMode`` says enabled, each MIG device is its own series
  (``device`` = MIG UUID, ``parent`` = GPU UUID, ``index`` = ``<gpu>:<mig>``) with the memory
  fields and ``health``; utilization is asked for but real drivers answer "not supported" for
  MIG handles (and for the parent while MIG is on). Power, energy, temperatures, clocks and
  errors stay on the parent GPU's series only, so sums over series do not count a card twice.
- ``model`` is the full ``nvmlDeviceGetName`` string (``NVIDIA H100 80GB HBM3``), not a short
  family name. A GPU lost before its identity was ever read is labelled ``device=nvidia<index>``.
- Older bindings return ``bytes`` for names, UUIDs and versions, and PCI ``busId`` is always a
  ``c_char`` array (``bytes``): every string is decoded.

Metrics
-------

- accelerator
  - tags:
    - node, site, cluster, hub (placement, from the agent's labels)
    - vendor (``nvidia``), ecosystem (``cuda``)
    - model (``nvmlDeviceGetName`` in full, ``NVIDIA H100 80GB HBM3``; a MIG device's own
      name, ``NVIDIA H100 80GB HBM3 MIG 1g.10gb``)
    - device (GPU UUID ``GPU-...``, MIG UUID ``MIG-...``; ``nvidia<index>`` for a GPU lost
      before its UUID was read), index (NVML index; ``<gpu>:<mig>`` for a MIG device)
    - parent (MIG devices only: the GPU's UUID)
    - pci_bus_id (``00000000:18:00.0``; a MIG device carries its GPU's), driver_version
    - error_type (ecc_errors_total: ``corrected`` | ``uncorrected``; remapped_rows:
      ``correctable`` | ``uncorrectable``), reason (throttled: `THROTTLE_REASONS`),
      xid (xid_errors_total: the XID code)
  - fields:
    - utilization_ratio (float, ratio 0..1): compute busy; GPUs without MIG
    - memory_utilization_ratio (float, ratio 0..1): memory read/write busy; GPUs without MIG
    - memory_used_bytes (float, bytes): memory in use incl. the driver's; GPUs and MIG
    - memory_total_bytes (float, bytes): memory installed; GPUs and MIG devices
    - power_watts (float, watts): board power; GPUs
    - energy_joules_total (float, joules, counter): since the driver loaded; Volta and later
    - temperature_celsius (float, degrees Celsius): GPU die; GPUs
    - memory_temperature_celsius (float, degrees Celsius): HBM; data-center GPUs with HBM
    - sm_clock_hertz (float, hertz): SM clock; GPUs
    - memory_clock_hertz (float, hertz): memory clock; GPUs
    - pcie_replays_total (float, count, counter): PCIe replays; GPUs
    - ecc_errors_total (float, count, counter): volatile ECC errors; GPUs with ECC enabled
    - remapped_rows (float, count): rows remapped; Ampere and later
    - throttled (float, state 0|1): one series per reason, always all of them; GPUs
    - xid_errors_total (float, count, counter): since the agent started, codes seen only;
      where NVML events are supported
    - health (float, state 0|1): 1 healthy, 0 lost or failed; GPUs and MIG devices
- agent
  - tags: node, site, cluster, hub, collector (``nvml``), error_type (``nvml_<NVML error>``,
    e.g. ``nvml_no_permission``)
  - fields:
    - collector_errors_total (float, count, counter): NVML errors on single fields

Example output (line protocol)::

    accelerator,device=GPU-b221ee4b-9d5e-3975-41ef-b0053f5a3365,driver_version=550.127.08,ecosystem=cuda,hub=jjj,index=0,model=NVIDIA\\ H100\\ 80GB\\ HBM3,node=bj-ai-mixed0,pci_bus_id=00000000:18:00.0,site=bj-ai,vendor=nvidia energy_joules_total=793449424.776,health=1,memory_clock_hertz=2619000000,memory_temperature_celsius=55,memory_total_bytes=85899345920,memory_used_bytes=69256347648,memory_utilization_ratio=0.5,pcie_replays_total=0,power_watts=608.8,sm_clock_hertz=1980000000,temperature_celsius=57,utilization_ratio=0.83 1772416800000000000

Raw output for a bug report: ``nvidia-smi -q -x`` and
``nvidia-smi -q -d ECC,ROW_REMAPPER,PERFORMANCE``.
"""  # noqa: E501 (the example line is one line of line protocol)

from __future__ import annotations

import ctypes
import importlib
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from computewatch import catalog
from computewatch.collectors._base import CollectorError, DriverAbsent, placement_labels
from computewatch.samples import Sample

__all__ = ["EMITTED", "THROTTLE_REASONS", "NvmlCollector"]

log = logging.getLogger(__name__)

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
)
"""Every metric this collector can emit (``measurement.field``)."""

_MAX_EVENTS_PER_RUN = 10_000  # an XID storm must not keep one run draining forever
_VALUE_ATTR = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")  # by valueType


def _text(value: object) -> str:
    """Older bindings return bytes, newer ones str; labels want str."""
    if isinstance(value, bytes):
        return value.split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(value)


def _handle_key(handle: object) -> object:
    """A hashable identity for a handle: ctypes pointers compare by object, not address."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (ctypes.ArgumentError, TypeError):
        return handle


@dataclass
class _Dev:
    """One GPU or MIG device during one run: its key and what went wrong reading it."""

    index: str
    lost: bool = False


@dataclass
class _Session:
    """What holds while NVML stays initialised; dropped when it must be initialised again."""

    driver_version: str = ""
    identity: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # uuid, name, pci
    missing: set[str] = field(default_factory=set)  # functions the binding or library lacks
    event_set: Any = None
    events_off: bool = False
    registered: dict[object, str] = field(default_factory=dict)  # handle key -> gpu index


class NvmlCollector:
    """Reads every NVIDIA GPU (and MIG device) on the node through NVML."""

    name = "nvml"

    def __init__(self, labels: Mapping[str, str], nvml: Any | None = None) -> None:
        self._place = placement_labels(labels)
        self._injected = nvml
        self._nv: Any = None
        self._session: _Session | None = None
        self._unsupported: set[tuple[str, str]] = set()  # (device index, field key)
        self._mig_mode: dict[str, int] = {}
        self._errors: Counter[str] = Counter()  # nvml_<error> -> count, since agent start
        self._warned: set[tuple[str, str, int]] = set()
        self._xid: Counter[tuple[str, int]] = Counter()  # (gpu index, xid) -> count
        self._labels: dict[str, dict[str, str]] = {}  # gpu index -> labels of its last series
        self._error_names: dict[int, str] = {}

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
        for i in range(count):
            samples += self._collect_gpu(nv, session, i, now)
        self._drain_xid(nv, session)
        for (idx, xid), n in sorted(self._xid.items()):
            if idx in self._labels:
                samples.append(Sample.of("accelerator.xid_errors_total", float(n),
                                         {**self._labels[idx], "xid": str(xid)}, now))
        for error_type, n in sorted(self._errors.items()):
            samples.append(Sample.of("agent.collector_errors_total", float(n),
                                     {**self._place, "collector": self.name,
                                      "error_type": error_type}, now))
        return samples

    def close(self) -> None:
        """Free the event set and shut NVML down; a later collect initialises it again."""
        if self._session is None:
            return
        nv, session, self._session = self._nv, self._session, None
        try:
            if session.event_set is not None:
                nv.nvmlEventSetFree(session.event_set)
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
        session = _Session()
        try:
            session.driver_version = _text(nv.nvmlSystemGetDriverVersion())
        except nv.NVMLError as exc:
            self._count(nv, "", "driver_version", exc.value)
        self._unsupported.clear()  # a new driver may support what the old one did not
        self._mig_mode.clear()
        self._create_event_set(nv, session)
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

    def _collect_gpu(self, nv: Any, session: _Session, i: int, now: datetime) -> list[Sample]:
        dev = _Dev(str(i))
        handle = None
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(i)
        except nv.NVMLError as exc:
            if exc.value in (nv.NVML_ERROR_GPU_IS_LOST, nv.NVML_ERROR_RESET_REQUIRED):
                dev.lost = True
            else:
                self._count(nv, dev.index, "handle", exc.value)
        uuid, model, pci = self._identity(nv, session, dev, handle)
        labels = {**self._place, "vendor": "nvidia", "ecosystem": "cuda", "model": model,
                  "device": uuid or f"nvidia{i}", "index": dev.index, "pci_bus_id": pci,
                  "driver_version": session.driver_version}
        labels = {k: v for k, v in labels.items() if v}
        self._labels[dev.index] = labels
        out: list[Sample] = []
        healthy = handle is not None
        if handle is not None:
            self._register_xid(nv, session, dev, handle)
            mig = self._mig_enabled(nv, dev, handle)  # first: a change resets what we skip
            healthy = self._gpu_fields(nv, dev, handle, labels, now, out)
            if mig:
                out += self._collect_migs(nv, dev, handle, labels, now)
        out.append(Sample.of("accelerator.health", 1.0 if healthy and not dev.lost else 0.0,
                             labels, now))
        return out

    def _identity(self, nv: Any, session: _Session, dev: _Dev,
                  handle: Any) -> tuple[str, str, str]:
        """UUID, name and PCI bus id: fixed while the driver stays loaded, so read once."""
        if dev.index in session.identity or handle is None:
            return session.identity.get(dev.index, ("", "", ""))
        uuid = self._call(nv, dev, "uuid", ("nvmlDeviceGetUUID",), handle)
        name = self._call(nv, dev, "name", ("nvmlDeviceGetName",), handle)
        pci = self._call(nv, dev, "pci_info", ("nvmlDeviceGetPciInfo",), handle)
        ident = (_text(uuid) if uuid is not None else "",
                 _text(name) if name is not None else "",
                 _text(pci.busId) if pci is not None else "")
        if all(ident):
            session.identity[dev.index] = ident
        return ident

    def _gpu_fields(self, nv: Any, dev: _Dev, h: Any, labels: dict[str, str], now: datetime,
                    out: list[Sample]) -> bool:
        """Append the GPU's fields to ``out``; return False when they say it is unhealthy."""
        base = tuple(sorted(labels.items()))  # sorted once per GPU, not once per sample

        def emit(name: str, value: float, **extra: str) -> None:
            lab = tuple(sorted({**labels, **extra}.items())) if extra else base
            out.append(Sample("accelerator", name, float(value), lab, now))

        healthy = True
        self._common_fields(nv, dev, h, emit)
        power = self._call(nv, dev, "power", ("nvmlDeviceGetPowerUsage",), h)
        if power is not None:
            emit("power_watts", power / 1000.0)
        energy = self._call(nv, dev, "energy", ("nvmlDeviceGetTotalEnergyConsumption",), h)
        if energy is not None:
            emit("energy_joules_total", energy / 1000.0)
        temp = self._call(nv, dev, "temperature",
                          ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"),
                          h, nv.NVML_TEMPERATURE_GPU)
        if temp is not None:
            emit("temperature_celsius", temp)
        mem_temp = self._field_value(nv, dev, "memory_temperature", h,
                                     nv.NVML_FI_DEV_MEMORY_TEMP)
        if mem_temp is not None:
            emit("memory_temperature_celsius", mem_temp)
        for key, clock, name in (("sm_clock", nv.NVML_CLOCK_SM, "sm_clock_hertz"),
                                 ("memory_clock", nv.NVML_CLOCK_MEM, "memory_clock_hertz")):
            mhz = self._call(nv, dev, key, ("nvmlDeviceGetClockInfo",), h, clock)
            if mhz is not None:
                emit(name, mhz * 1e6)
        replays = self._call(nv, dev, "pcie_replays", ("nvmlDeviceGetPcieReplayCounter",), h)
        if replays is not None:
            emit("pcie_replays_total", replays)
        for key, kind, error_type in (
                ("ecc_corrected", nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, "corrected"),
                ("ecc_uncorrected", nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, "uncorrected")):
            n = self._call(nv, dev, key, ("nvmlDeviceGetTotalEccErrors",), h, kind,
                           nv.NVML_VOLATILE_ECC)
            if n is not None:
                emit("ecc_errors_total", n, error_type=error_type)
                healthy &= not (error_type == "uncorrected" and n > 0)
        rows = self._call(nv, dev, "remapped_rows", ("nvmlDeviceGetRemappedRows",), h)
        if rows is not None:
            correctable, uncorrectable, _pending, failure = rows
            emit("remapped_rows", correctable, error_type="correctable")
            emit("remapped_rows", uncorrectable, error_type="uncorrectable")
            healthy &= not failure
        reasons = self._call(nv, dev, "throttled",
                             ("nvmlDeviceGetCurrentClocksEventReasons",
                              "nvmlDeviceGetCurrentClocksThrottleReasons"), h)
        if reasons is not None:
            for reason, bit in THROTTLE_REASONS:
                emit("throttled", 1.0 if reasons & bit else 0.0, reason=reason)
        return healthy

    def _common_fields(self, nv: Any, dev: _Dev, h: Any, emit: Any) -> None:
        """The fields a GPU and a MIG device share: utilization and memory."""
        util = self._call(nv, dev, "utilization", ("nvmlDeviceGetUtilizationRates",), h)
        if util is not None:
            emit("utilization_ratio", util.gpu / 100.0)
            emit("memory_utilization_ratio", util.memory / 100.0)
        mem = self._call(nv, dev, "memory", ("nvmlDeviceGetMemoryInfo",), h)
        if mem is not None:
            emit("memory_used_bytes", mem.used)
            emit("memory_total_bytes", mem.total)

    def _field_value(self, nv: Any, dev: _Dev, key: str, h: Any, field_id: int) -> float | None:
        """One nvmlDeviceGetFieldValues value; its per-value return code counts as the call's."""
        values = self._call(nv, dev, key, ("nvmlDeviceGetFieldValues",), h, [field_id])
        if values is None:
            return None
        value = values[0]
        if value.nvmlReturn != nv.NVML_SUCCESS:
            self._failed(nv, dev, key, value.nvmlReturn)
            return None
        return float(getattr(value.value, _VALUE_ATTR[value.valueType]))

    # --- MIG ------------------------------------------------------------------------------

    def _mig_enabled(self, nv: Any, dev: _Dev, h: Any) -> bool:
        """Whether MIG is on; when that changed, forget what the GPU did not support."""
        mode = self._call(nv, dev, "mig_mode", ("nvmlDeviceGetMigMode",), h)
        current = int(mode[0]) if mode is not None else nv.NVML_DEVICE_MIG_DISABLE
        previous = self._mig_mode.get(dev.index)
        self._mig_mode[dev.index] = current
        if previous is not None and previous != current:
            self._unsupported = {(d, k) for d, k in self._unsupported
                                 if d != dev.index and not d.startswith(f"{dev.index}:")}
        return current == nv.NVML_DEVICE_MIG_ENABLE

    def _collect_migs(self, nv: Any, parent: _Dev, h: Any, parent_labels: dict[str, str],
                      now: datetime) -> list[Sample]:
        n = self._call(nv, parent, "mig_count", ("nvmlDeviceGetMaxMigDeviceCount",), h) or 0
        out: list[Sample] = []
        for j in range(int(n)):
            if parent.lost:
                break
            try:
                mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
            except nv.NVMLError as exc:
                if exc.value != nv.NVML_ERROR_NOT_FOUND:  # NOT_FOUND: an empty slot
                    self._failed(nv, parent, "mig_handle", exc.value)
                continue
            dev = _Dev(f"{parent.index}:{j}")
            uuid = self._call(nv, dev, "uuid", ("nvmlDeviceGetUUID",), mh)
            name = self._call(nv, dev, "name", ("nvmlDeviceGetName",), mh)
            labels = {**parent_labels,
                      "device": _text(uuid) if uuid is not None else
                      f"{parent_labels['device']}/mig{j}",
                      "index": dev.index, "parent": parent_labels["device"]}
            if name is not None:
                labels["model"] = _text(name)

            def emit(metric: str, value: float, _labels: dict[str, str] = labels) -> None:
                out.append(Sample.of(f"accelerator.{metric}", float(value), _labels, now))

            self._common_fields(nv, dev, mh, emit)
            emit("health", 0.0 if dev.lost else 1.0)
        return out

    # --- XID events -----------------------------------------------------------------------

    def _create_event_set(self, nv: Any, session: _Session) -> None:
        create = getattr(nv, "nvmlEventSetCreate", None)
        if create is None or not hasattr(nv, "nvmlEventTypeXidCriticalError"):
            session.events_off = True
            log.info("nvml: this pynvml has no event API; XID errors will not be counted")
            return
        try:
            session.event_set = create()
        except nv.NVMLError as exc:
            session.events_off = True
            if exc.value not in (nv.NVML_ERROR_NOT_SUPPORTED, nv.NVML_ERROR_FUNCTION_NOT_FOUND):
                self._count(nv, "", "event_set", exc.value)
            log.info("nvml: NVML events unavailable (%s); XID errors will not be counted", exc)

    def _register_xid(self, nv: Any, session: _Session, dev: _Dev, h: Any) -> None:
        if session.events_off or dev.index in session.registered.values() \
                or (dev.index, "xid_events") in self._unsupported:
            return
        try:
            nv.nvmlDeviceRegisterEvents(h, nv.nvmlEventTypeXidCriticalError, session.event_set)
        except nv.NVMLError as exc:
            self._failed(nv, dev, "xid_events", exc.value)
            return
        session.registered[_handle_key(h)] = dev.index

    def _drain_xid(self, nv: Any, session: _Session) -> None:
        """Take every pending event without waiting; count critical XIDs per GPU and code."""
        if session.events_off or not session.registered:
            return
        for _ in range(_MAX_EVENTS_PER_RUN):
            try:
                data = nv.nvmlEventSetWait(session.event_set, 0)
            except nv.NVMLError as exc:
                if exc.value != nv.NVML_ERROR_TIMEOUT:  # TIMEOUT: nothing pending
                    self._count(nv, "", "event_wait", exc.value)
                return
            if not data.eventType & nv.nvmlEventTypeXidCriticalError:
                continue
            idx = session.registered.get(_handle_key(data.device))
            if idx is None:
                log.debug("nvml: XID %d from an unregistered device", data.eventData)
                continue
            self._xid[(idx, int(data.eventData))] += 1

    # --- one call, and what its failure means ---------------------------------------------

    def _call(self, nv: Any, dev: _Dev, key: str, names: tuple[str, ...], *args: Any) -> Any:
        """The first of ``names`` the binding and library have, called; None if it failed."""
        if dev.lost or (dev.index, key) in self._unsupported:
            return None
        missing = self._session.missing if self._session is not None else set()
        for fn_name in names:
            if fn_name in missing:
                continue
            fn = getattr(nv, fn_name, None)
            if fn is None:
                missing.add(fn_name)
                continue
            try:
                return fn(*args)
            except nv.NVMLError as exc:
                if exc.value == nv.NVML_ERROR_FUNCTION_NOT_FOUND:  # driver older than binding
                    missing.add(fn_name)
                    continue
                self._failed(nv, dev, key, exc.value)
                return None
        self._unsupported.add((dev.index, key))
        return None

    def _failed(self, nv: Any, dev: _Dev, key: str, code: int) -> None:
        if code == nv.NVML_ERROR_NOT_SUPPORTED:
            self._unsupported.add((dev.index, key))
            log.debug("nvml: GPU %s: %s not supported", dev.index, key)
        elif code in (nv.NVML_ERROR_GPU_IS_LOST, nv.NVML_ERROR_RESET_REQUIRED):
            dev.lost = True
        else:
            self._count(nv, dev.index, key, code)

    def _count(self, nv: Any, index: str, key: str, code: int) -> None:
        if not self._error_names:
            self._error_names = _error_names(nv)
        name = self._error_names.get(code, f"error_{code}")
        self._errors[f"nvml_{name}"] += 1
        if (index, key, code) not in self._warned:
            self._warned.add((index, key, code))
            log.warning("nvml: GPU %s: reading %s failed: NVML error %s (%s); leaving it out",
                        index or "-", key, code, name)


def _error_names(nv: Any) -> dict[int, str]:
    """NVML error codes by label-friendly name: 4 -> ``no_permission``."""
    return {getattr(nv, attr): attr.removeprefix("NVML_ERROR_").lower()
            for attr in dir(nv) if attr.startswith("NVML_ERROR_")}
