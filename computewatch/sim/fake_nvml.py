"""A fake NVML at the pynvml function boundary, reading the NVIDIA GPUs of a simulated node.

`FakeNvml` has the pynvml functions the NVML collector calls, with pynvml's names, signatures
and return types: handles are real ``c_nvmlDevice_t`` pointers, utilization, memory, PCI and
event data are pynvml's own ctypes structures, and failures are real ``pynvml.NVMLError``
instances (so ``except pynvml.NVMLError_GpuIsLost`` works as with a driver). Constants and the
error classes (and the binding's ctypes structures, which callers fill in) are forwarded from
pynvml; a pynvml function the fake does not implement raises AttributeError instead of
reaching a real library.

Values come from `NodeSim.readings` (converted to NVML's units: %, mW, mJ, MHz); what a
reading does not carry is NVML's quiet default: no PCIe replays, no ECC errors, no remapped
rows. A device `NodeSim.lose` took answers "GPU is lost" to every call that names it (handle
lookup included, as ``nvidia-smi`` shows on a GPU that fell off the bus); an unhealthy one
reports one uncorrected ECC error and a failed row remapping, as a card that needs replacing
does. Knobs, all optional:

- ``unsupported``: pynvml function names (every device) or ``(index, name)`` pairs (one GPU;
  index ``"<gpu>:<mig>"`` for a MIG device) that answer NVML_ERROR_NOT_SUPPORTED; a field-id
  constant name such as ``"NVML_FI_DEV_MEMORY_TEMP"`` makes that value of
  ``nvmlDeviceGetFieldValues`` unsupported (NVML reports it per value, not per call).
- ``errors``: ``{(index, name): NVML_ERROR_*}`` raises any other error instead of answering;
  index None means every device, and is the key for ``nvmlInit`` and the system calls.
- ``mig``: ``{gpu_index: instances}`` enables MIG on those GPUs (1..7 instances).
- ``xid_events``: ``[(gpu_index, xid), ...]`` queued for the event set; `FakeNvml.xid` adds more.
- ``driver_missing``: ``nvmlInit`` raises NVML_ERROR_LIBRARY_NOT_FOUND while it is True.
- ``legacy``: behave like an old binding: strings as bytes, and no
  ``nvmlDeviceGetCurrentClocksEventReasons`` / ``nvmlDeviceGetTemperatureV``.
- ``clock``: the time readings are taken at (default: now), so tests can pin it.
- ``processes``: ``{gpu_index: [(pid, name, bytes or None), ...]}`` replaces the node's
  processes on those GPUs (None: memory not available, as NVML reports under WDDM).
- ``field_values``: ``{(gpu_index, NVML_FI_* name): value}`` overrides a field value
  (e.g. NVLink error counters, 0 by default).

What a model supports follows its architecture (`ARCH`): GPM (``nvmlGpm*``, Hopper and
later, also per MIG instance) gives the profiling ratios and byte rates of the reading;
NVLink counters exist where the model has NVLink; page retirement before Ampere, row
remapping from Ampere on. Anything else answers NVML_ERROR_NOT_SUPPORTED, as a driver does.
MIG devices have real GPU instance ids (`nvmlDeviceGetGpuInstanceId`), which are not their
slot numbers.

``calls`` counts every call by (function, device index or None), and every field asked of
``nvmlDeviceGetFieldValues`` by (its NVML_FI_* name, device index).
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pynvml

from computewatch.sim.node import DeviceReading, NodeSim

__all__ = ["ARCH", "FakeNvml", "marketing_name"]

_NAMES = {
    "a100": "NVIDIA A100-SXM4-80GB",
    "h100": "NVIDIA H100 80GB HBM3",
    "h20": "NVIDIA H20",
    "l20": "NVIDIA L20",
}
ARCH: dict[str, tuple[str, int]] = {
    "v100": ("volta", 6),
    "a100": ("ampere", 12),
    "h100": ("hopper", 18),
    "h20": ("hopper", 18),
    "l20": ("ada", 0),
}
"""Model -> (architecture, NVLink links); unknown models are treated as Hopper with NVLink."""
_GPM_ARCHS = {"hopper", "blackwell"}
_MAX_MIG = 7  # MIG slots of an A100/H100
_GI_IDS = {7: (0,), 3: (1, 2), 2: (3, 4, 5), 1: (7, 8, 9, 10, 11, 12, 13)}
"""GPU instance ids NVML assigns by profile size in slices (1g: 7..13, 2g: 3..5, ...)."""
_NVLINK_FIELDS = ("NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
                  "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
                  "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
                  "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
                  "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX")
_RETIREMENT_FIELDS = ("NVML_FI_DEV_RETIRED_SBE", "NVML_FI_DEV_RETIRED_DBE",
                      "NVML_FI_DEV_RETIRED_PENDING")
_GPM_PERCENT = {pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL: "graphics_active",
                pynvml.NVML_GPM_METRIC_SM_UTIL: "sm_active",
                pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: "tensor_active",
                pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: "dram_active"}
_GPM_MIB_PER_S = {pynvml.NVML_GPM_METRIC_PCIE_TX_PER_SEC: "pcie_tx_bytes_per_s",
                  pynvml.NVML_GPM_METRIC_PCIE_RX_PER_SEC: "pcie_rx_bytes_per_s",
                  pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC: "nvlink_tx_bytes_per_s",
                  pynvml.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC: "nvlink_rx_bytes_per_s"}
_MIB = 2**20
_SUPPORTED_EVENTS = (pynvml.nvmlEventTypeSingleBitEccError | pynvml.nvmlEventTypeDoubleBitEccError
                     | pynvml.nvmlEventTypePState | pynvml.nvmlEventTypeXidCriticalError
                     | pynvml.nvmlEventTypeClock)
_MIG_CALLS = {"nvmlDeviceGetUUID", "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo",
              "nvmlDeviceGetUtilizationRates",  # what a MIG handle answers (utilization: N/S)
              "nvmlDeviceGetGpuInstanceId"}
_MISSING = object()


def marketing_name(model: str) -> str:
    """What nvmlDeviceGetName says for a simulator model: ``H100`` -> ``NVIDIA H100 80GB HBM3``."""
    return _NAMES.get(model.lower(), f"NVIDIA {model}")


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


def _address(handle: object) -> int | None:
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (ctypes.ArgumentError, TypeError):
        return None


def _pointer(address: int, kind: Any) -> Any:
    return ctypes.cast(ctypes.c_void_p(address), kind)


def _gpu_address(i: int) -> int:
    return 0x1000 * (i + 1)


def _mig_address(i: int, j: int) -> int:
    return 0x1000 * (i + 1) + 0x10 * (j + 1)


class FakeNvml:
    """The pynvml functions the NVML collector calls, answered from a `NodeSim`."""

    def __init__(self, node: NodeSim, *,
                 unsupported: Iterable[str | tuple[int | str, str]] = (),
                 errors: Mapping[tuple[int | str | None, str], int] | None = None,
                 mig: Mapping[int, int] | None = None,
                 xid_events: Iterable[tuple[int, int]] = (),
                 driver_missing: bool = False,
                 legacy: bool = False,
                 clock: Callable[[], datetime] | None = None,
                 processes: Mapping[int, list[tuple[int, str, int | None]]] | None = None,
                 field_values: Mapping[tuple[int, str], float] | None = None) -> None:
        self.node = node
        self.unsupported: set[str | tuple[int | str, str]] = set(unsupported)
        self.errors: dict[tuple[int | str | None, str], int] = dict(errors or {})
        self.mig: dict[int, int] = dict(mig or {})
        for i, n in self.mig.items():
            if not 1 <= n <= _MAX_MIG:
                raise ValueError(f"FakeNvml: mig={{{i}: {n}}}: a GPU holds 1..{_MAX_MIG} "
                                 "MIG devices")
        self.driver_missing = driver_missing
        self.legacy = legacy
        self.processes: dict[int, list[tuple[int, str, int | None]]] = dict(processes or {})
        self.field_values: dict[tuple[int, str], float] = dict(field_values or {})
        self.calls: Counter[tuple[str, int | str | None]] = Counter()
        # Real drivers refresh their readings about once a second (NVML averages power over
        # 1 s), so by default the fake's moment moves in whole seconds too.
        self._clock = clock or self._whole_second
        self._second: tuple[int, datetime] = (0, datetime.now(UTC))
        self._queue: deque[tuple[int, int]] = deque(xid_events)
        self._init_count = 0
        self._event_sets: dict[int, set[int]] = {}
        self._gpm_samples: dict[int, tuple[int, int | None, datetime] | None] = {}
        self._gpus = node.of_vendor("nvidia")
        self._handles: dict[int, tuple[int, int | None]] = {}
        self._handle_objects: dict[int, Any] = {}
        self._handle_ids: dict[int, int] = {}
        for i in range(len(self._gpus)):
            self._handles[_gpu_address(i)] = (i, None)
            for j in range(_MAX_MIG):
                self._handles[_mig_address(i, j)] = (i, j)
        if not legacy:  # functions newer bindings have
            self.nvmlDeviceGetCurrentClocksEventReasons = self._clock_reasons
            self.nvmlDeviceGetTemperatureV = self._temperature_v

    def _whole_second(self) -> datetime:
        """Now, to the second (computed once per second: the fake is called thousands of
        times a second by a collector's run)."""
        second = int(time.time())
        if second != self._second[0]:
            self._second = (second, datetime.fromtimestamp(second, UTC))
        return self._second[1]

    # --- pynvml's constants and error classes ---------------------------------------------

    def __getattr__(self, name: str) -> Any:
        value = getattr(pynvml, name, _MISSING) if not name.startswith("_") else _MISSING
        if value is _MISSING or (callable(value) and not isinstance(value, type)):
            raise AttributeError(f"FakeNvml does not implement {name!r}")
        self.__dict__[name] = value  # found directly from now on: callers ask thousands of times
        return value  # constants, error classes and the binding's ctypes structures

    def __dir__(self) -> Iterable[str]:
        forwarded = (n for n in dir(pynvml) if not n.startswith("_") and (
            not callable(v := getattr(pynvml, n)) or isinstance(v, type)))
        return sorted(set(super().__dir__()) | set(forwarded))

    # --- test controls --------------------------------------------------------------------

    def xid(self, gpu_index: int, code: int) -> None:
        """Queue a critical XID event on a GPU, delivered by the next nvmlEventSetWait."""
        self._queue.append((gpu_index, code))

    # --- library and system ---------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls[("nvmlInit", None)] += 1
        if self.driver_missing:
            raise _error(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self._fail_if_configured("nvmlInit", None)
        self._init_count += 1

    def nvmlShutdown(self) -> None:
        self._system("nvmlShutdown")
        self._init_count -= 1

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self._system("nvmlSystemGetDriverVersion")
        return self._str(self.node.driver_version)

    def nvmlDeviceGetCount(self) -> int:
        self._system("nvmlDeviceGetCount")
        return len(self._gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._system("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self._gpus):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._check("nvmlDeviceGetHandleByIndex", index, None)
        return self._handle(_gpu_address(index))

    # --- identity -------------------------------------------------------------------------

    def nvmlDeviceGetName(self, handle: Any) -> str | bytes:
        r, i, j = self._device("nvmlDeviceGetName", handle)
        name = marketing_name(r.model)
        if j is not None:
            slices = _MAX_MIG // self.mig[i]
            name += f" MIG {slices}g.{int(r.memory_total_bytes or 0) // 2**30 * slices // 8}gb"
        return self._str(name)

    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes:
        r, _i, j = self._device("nvmlDeviceGetUUID", handle)
        if j is None:
            return self._str(r.uuid)
        h = hashlib.blake2b(f"{r.uuid}/mig{j}".encode(), digest_size=16).hexdigest()
        return self._str(f"MIG-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}")

    def nvmlDeviceGetPciInfo(self, handle: Any) -> pynvml.nvmlPciInfo_t:
        r, _i, _ = self._device("nvmlDeviceGetPciInfo", handle)
        info = pynvml.nvmlPciInfo_t()
        domain, bus, rest = r.pci_bus_id.split(":")
        info.busId = r.pci_bus_id.encode()
        info.busIdLegacy = f"{int(domain, 16) & 0xFFFF:04X}:{bus}:{rest}".encode()
        info.domain, info.bus = int(domain, 16), int(bus, 16)
        info.device = int(rest.split(".")[0], 16)
        info.pciDeviceId = 0x233010DE  # H100 SXM5
        return info

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        _r, i, _ = self._device("nvmlDeviceGetIndex", handle)
        return i

    # --- readings -------------------------------------------------------------------------

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> pynvml.c_nvmlUtilization_t:
        r, i, j = self._device("nvmlDeviceGetUtilizationRates", handle)
        if j is not None or i in self.mig:  # N/A on MIG handles and their parent
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        util = pynvml.c_nvmlUtilization_t()
        util.gpu = round(_need(r.utilization) * 100)
        util.memory = round(_need(r.memory_utilization) * 100)
        return util

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        """v1: used = total - free (the reservation included); v2 splits the reservation out."""
        r, i, j = self._device("nvmlDeviceGetMemoryInfo", handle)
        total, used = int(_need(r.memory_total_bytes)), int(_need(r.memory_used_bytes))
        reserved = int(r.memory_reserved_bytes or 0)
        if j is not None:
            slices = _MAX_MIG // self.mig[i]
            total = total * slices // 8 // _MIB * _MIB
            reserved = reserved * slices // 8 // _MIB * _MIB
            used = min(total - reserved, used // self.mig[i] // _MIB * _MIB)
        if version:
            if version != pynvml.nvmlMemory_v2:
                raise _error(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
            mem = pynvml.c_nvmlMemory_v2_t()
            mem.version = version
            mem.total, mem.reserved, mem.used = total, reserved, used
            mem.free = total - reserved - used
            return mem
        mem = pynvml.c_nvmlMemory_t()
        mem.total, mem.used, mem.free = total, used + reserved, total - used - reserved
        return mem

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        r, _i, _ = self._device("nvmlDeviceGetPowerUsage", handle)
        return round(_need(r.power_w) * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        r, _i, _ = self._device("nvmlDeviceGetTotalEnergyConsumption", handle)
        return round(_need(r.energy_j) * 1000)

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        return self._temperature("nvmlDeviceGetTemperature", handle, sensor)

    def _temperature_v(self, handle: Any, sensor: int,
                       version: int = pynvml.nvmlTemperature_v1) -> int:
        if version != pynvml.nvmlTemperature_v1:
            raise _error(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return self._temperature("nvmlDeviceGetTemperatureV", handle, sensor)

    def _temperature(self, fn: str, handle: Any, sensor: int) -> int:
        r, _i, _ = self._device(fn, handle)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return round(_need(r.temperature_c))

    def nvmlDeviceGetFieldValues(self, handle: Any, fieldIds: list[Any]) -> Any:
        """Each value answers for itself: unsupported ones carry NVML_ERROR_NOT_SUPPORTED."""
        r, i, j = self._device("nvmlDeviceGetFieldValues", handle)
        values = (pynvml.c_nvmlFieldValue_t * len(fieldIds))()
        stamp = int(self._clock().timestamp() * 1e6)
        for v, wanted in zip(values, fieldIds, strict=True):
            field_id, scope = wanted if isinstance(wanted, tuple) else (wanted, 0)
            v.fieldId, v.scopeId, v.timestamp = field_id, scope, stamp
            v.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
            name = _FIELD_NAMES.get(field_id, "")
            self.calls[(name or str(field_id), i)] += 1  # which fields were asked for
            value = self._field(r, i, name)
            if value is None or self._unsupported_name(name, i, j):
                continue
            if name == "NVML_FI_DEV_MEMORY_TEMP":
                v.valueType, v.value.uiVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, int(value)
            else:
                v.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                v.value.ullVal = int(value)
            v.nvmlReturn = pynvml.NVML_SUCCESS
        return values

    def _field(self, r: DeviceReading, i: int, name: str) -> float | None:
        """A field's value for GPU ``i``, None where its architecture has no such counter."""
        arch, links = self._arch(i)
        if (i, name) in self.field_values:
            return self.field_values[(i, name)]
        if name == "NVML_FI_DEV_MEMORY_TEMP":
            return None if r.memory_temperature_c is None else round(r.memory_temperature_c)
        if name in _NVLINK_FIELDS and links:
            if name.endswith("_TX"):
                return None if r.nvlink_tx_bytes is None else r.nvlink_tx_bytes // 1024
            if name.endswith("_RX"):
                return None if r.nvlink_rx_bytes is None else r.nvlink_rx_bytes // 1024
            return 0
        if name in _RETIREMENT_FIELDS and arch == "volta":
            return 1 if name == "NVML_FI_DEV_RETIRED_DBE" and not r.healthy else 0
        return None

    def nvmlDeviceGetEncoderUtilization(self, handle: Any) -> list[int]:
        r, _i, _ = self._device("nvmlDeviceGetEncoderUtilization", handle)
        return [round(_need(r.encoder_utilization) * 100), 167_000]  # %, sampling period µs

    def nvmlDeviceGetDecoderUtilization(self, handle: Any) -> list[int]:
        r, _i, _ = self._device("nvmlDeviceGetDecoderUtilization", handle)
        return [round(_need(r.decoder_utilization) * 100), 167_000]

    def nvmlDeviceGetClockInfo(self, handle: Any, type: int) -> int:
        r, _i, _ = self._device("nvmlDeviceGetClockInfo", handle)
        if type in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS):
            return round(_need(r.sm_clock_hz) / 1e6)
        if type == pynvml.NVML_CLOCK_MEM:
            return round(_need(r.memory_clock_hz) / 1e6)
        raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetPcieReplayCounter(self, handle: Any) -> int:
        self._device("nvmlDeviceGetPcieReplayCounter", handle)
        return 0

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, errorType: int,
                                    counterType: int) -> int:
        r, _i, _ = self._device("nvmlDeviceGetTotalEccErrors", handle)
        if errorType not in (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
                             pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED) or counterType not in (
                pynvml.NVML_VOLATILE_ECC, pynvml.NVML_AGGREGATE_ECC):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return int(errorType == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED and not r.healthy)

    def nvmlDeviceGetRemappedRows(self, device: Any) -> tuple[int, int, int, int]:
        r, i, _ = self._device("nvmlDeviceGetRemappedRows", device)
        if self._arch(i)[0] == "volta":  # page retirement instead
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return (0, 0, 0, 0) if r.healthy else (0, 1, 0, 1)

    def _clock_reasons(self, handle: Any) -> int:
        return self._reasons("nvmlDeviceGetCurrentClocksEventReasons", handle)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any) -> int:
        return self._reasons("nvmlDeviceGetCurrentClocksThrottleReasons", handle)

    def _reasons(self, fn: str, handle: Any) -> int:
        r, i, _ = self._device(fn, handle)
        spec = self._gpus[i].spec
        mask = 0
        if _need(r.utilization) <= 0.2:
            mask |= pynvml.nvmlClocksEventReasonGpuIdle
        if _need(r.power_w) >= 0.98 * spec.tdp_w:
            mask |= pynvml.nvmlClocksEventReasonSwPowerCap
        return mask

    # --- MIG ------------------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, device: Any) -> list[int]:
        _r, i, _ = self._device("nvmlDeviceGetMigMode", device)
        on = pynvml.NVML_DEVICE_MIG_ENABLE if i in self.mig else \
            pynvml.NVML_DEVICE_MIG_DISABLE
        return [on, on]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: Any) -> int:
        _r, i, _ = self._device("nvmlDeviceGetMaxMigDeviceCount", device)
        return _MAX_MIG if i in self.mig else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: Any, index: int) -> Any:
        _r, i, _ = self._device("nvmlDeviceGetMigDeviceHandleByIndex", device)
        if not 0 <= index < _MAX_MIG:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if index >= self.mig.get(i, 0):
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)
        return self._handle(_mig_address(i, index))

    def nvmlDeviceGetGpuInstanceId(self, device: Any) -> int:
        _r, i, j = self._device("nvmlDeviceGetGpuInstanceId", device)
        if j is None:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._gi_id(i, j)

    def nvmlDeviceIsMigDeviceHandle(self, device: Any) -> int:
        _, _, j = self._device("nvmlDeviceIsMigDeviceHandle", device)
        return int(j is not None)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: Any) -> Any:
        _r, i, j = self._device("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", migDevice)
        if j is None:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _pointer(_gpu_address(i), pynvml.c_nvmlDevice_t)

    # --- processes ------------------------------------------------------------------------

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        """pynvml's friendly objects of ``c_nvmlProcessInfo_t``: pid, usedGpuMemory (None
        when not available), gpuInstanceId and computeInstanceId (~0 without MIG)."""
        r, i, _ = self._device("nvmlDeviceGetComputeRunningProcesses", handle)
        out = []
        for pid, _name, used in self._processes(r, i):
            info = pynvml.c_nvmlProcessInfo_t()
            info.pid = pid
            info.usedGpuMemory = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value \
                if used is None else used
            gi = self._gi_id(i, 0) if i in self.mig else 0xFFFFFFFF
            info.gpuInstanceId, info.computeInstanceId = gi, 0 if i in self.mig else 0xFFFFFFFF
            obj = pynvml.nvmlStructToFriendlyObject(info)
            if used is None:
                obj.usedGpuMemory = None  # as pynvml does for NVML_VALUE_NOT_AVAILABLE
            out.append(obj)
        return out

    def nvmlSystemGetProcessName(self, pid: int) -> bytes:
        """The process's name as pynvml returns it (bytes); NOT_FOUND once it has exited."""
        self._system("nvmlSystemGetProcessName")
        for i, r in enumerate(self._readings()):
            for p, name, _used in self._processes(r, i):
                if p == pid:
                    return name.encode()
        raise _error(pynvml.NVML_ERROR_NOT_FOUND)

    def _processes(self, r: DeviceReading, i: int) -> list[tuple[int, str, int | None]]:
        return self.processes[i] if i in self.processes else list(r.processes)

    # --- GPM (GPU performance monitoring, Hopper and later) --------------------------------

    def nvmlGpmQueryDeviceSupport(self, device: Any) -> Any:
        _r, i, j = self._device("nvmlGpmQueryDeviceSupport", device)
        support = pynvml.c_nvmlGpmSupport_t()
        support.version = pynvml.NVML_GPM_SUPPORT_VERSION
        support.isSupportedDevice = int(j is None and self._gpm(i))
        return support

    def nvmlGpmSampleAlloc(self) -> Any:
        self._system("nvmlGpmSampleAlloc")
        address = 0xA000000 + 0x10 * (len(self._gpm_samples) + 1)
        while address in self._gpm_samples:
            address += 0x10
        self._gpm_samples[address] = None
        return _pointer(address, pynvml.c_nvmlGpmSample_t)

    def nvmlGpmSampleFree(self, gpmSample: Any) -> None:
        self._system("nvmlGpmSampleFree")
        if self._gpm_samples.pop(_address(gpmSample) or 0, _MISSING) is _MISSING:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def nvmlGpmSampleGet(self, device: Any, gpmSample: Any) -> Any:
        _r, i, j = self._device("nvmlGpmSampleGet", device)
        if j is not None or not self._gpm(i):
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self._take(gpmSample, i, None)

    def nvmlGpmMigSampleGet(self, device: Any, gpuInstanceId: int, gpmSample: Any) -> Any:
        _r, i, j = self._device("nvmlGpmMigSampleGet", device)
        if j is not None or not self._gpm(i):
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        slots = [k for k in range(self.mig.get(i, 0)) if self._gi_id(i, k) == gpuInstanceId]
        if not slots:
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)
        return self._take(gpmSample, i, slots[0])

    def nvmlGpmMetricsGet(self, metricsGet: Any) -> Any:
        """Rates between two samples of one device: the reading at the later sample's moment."""
        self._system("nvmlGpmMetricsGet")
        if metricsGet.version != pynvml.NVML_GPM_METRICS_GET_VERSION:
            raise _error(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        first = self._gpm_samples.get(_address(metricsGet.sample1) or 0)
        second = self._gpm_samples.get(_address(metricsGet.sample2) or 0)
        if first is None or second is None or first[:2] != second[:2] or second[2] < first[2]:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        i, _j, moment = second
        r = self.node.readings_of("nvidia", moment)[i]
        if r.lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        for k in range(metricsGet.numMetrics):
            metric = metricsGet.metrics[k]
            percent, rate = _GPM_PERCENT.get(metric.metricId), _GPM_MIB_PER_S.get(metric.metricId)
            value = getattr(r, percent or rate or "", None)
            if value is None or (rate and "nvlink" in rate and not self._arch(i)[1]):
                metric.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            metric.value = value * 100.0 if percent else value / _MIB
            metric.nvmlReturn = pynvml.NVML_SUCCESS
        return metricsGet

    def _take(self, sample: Any, i: int, j: int | None) -> Any:
        address = _address(sample) or 0
        if address not in self._gpm_samples:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._gpm_samples[address] = (i, j, self._clock())
        return sample

    # --- events ---------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> Any:
        self._system("nvmlEventSetCreate")
        address = 0xE0000 + 0x10 * len(self._event_sets)
        self._event_sets[address] = set()
        return _pointer(address, pynvml.c_nvmlEventSet_t)

    def nvmlDeviceGetSupportedEventTypes(self, handle: Any) -> int:
        _, _, j = self._device("nvmlDeviceGetSupportedEventTypes", handle)
        return _SUPPORTED_EVENTS if j is None else 0

    def nvmlDeviceRegisterEvents(self, handle: Any, eventTypes: int,
                                 eventSet: Any) -> None:
        _r, i, j = self._device("nvmlDeviceRegisterEvents", handle)
        if j is not None or eventTypes & ~_SUPPORTED_EVENTS:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self._event_set(eventSet).add(i)

    def nvmlEventSetWait(self, eventSet: Any, timeoutms: int) -> Any:
        """The next queued XID of a registered GPU; never blocks (TIMEOUT when none is left)."""
        self._system("nvmlEventSetWait")
        registered = self._event_set(eventSet)
        while self._queue:
            gpu, code = self._queue.popleft()
            if gpu in registered:  # an unregistered GPU's events are not recorded, as in NVML
                data = pynvml.c_nvmlEventData_t()
                data.device = _pointer(_gpu_address(gpu), pynvml.c_nvmlDevice_t)
                data.eventType = pynvml.nvmlEventTypeXidCriticalError
                data.eventData = code
                return data
        raise _error(pynvml.NVML_ERROR_TIMEOUT)

    def nvmlEventSetFree(self, eventSet: Any) -> None:
        self._system("nvmlEventSetFree")
        self._event_sets.pop(_address(eventSet) or 0, None)

    # --- plumbing -------------------------------------------------------------------------

    def _str(self, text: str) -> str | bytes:
        return text.encode() if self.legacy else text

    def _system(self, fn: str) -> None:
        self.calls[(fn, None)] += 1
        if fn in self.unsupported:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self._fail_if_configured(fn, None)
        if self._init_count <= 0:
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)

    def _event_set(self, event_set: Any) -> set[int]:
        try:
            return self._event_sets[_address(event_set) or 0]
        except KeyError:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT) from None

    def _handle(self, address: int) -> Any:
        """The device handle at ``address``: one object per device, as NVML's handle value is
        fixed, so looking it up again does not need a ctypes cast every call."""
        handle = self._handle_objects.get(address)
        if handle is None:
            handle = self._handle_objects[address] = _pointer(address, pynvml.c_nvmlDevice_t)
            self._handle_ids[id(handle)] = address
        return handle

    def _arch(self, i: int) -> tuple[str, int]:
        return ARCH.get(self._gpus[i].spec.model.lower(), ("hopper", 18))

    def _gpm(self, i: int) -> bool:
        return self._arch(i)[0] in _GPM_ARCHS

    def _gi_id(self, i: int, j: int) -> int:
        return _GI_IDS[_MAX_MIG // self.mig[i]][j]

    def _readings(self) -> list[DeviceReading]:
        """The node's NVIDIA readings at the fake's current moment (cached by the node)."""
        return self.node.readings_of("nvidia", self._clock())

    def _device(self, fn: str, handle: Any) -> tuple[DeviceReading, int, int | None]:
        """The reading behind a handle, after the failures the knobs and the node call for."""
        if self._init_count <= 0:
            self.calls[(fn, None)] += 1
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
        address = self._handle_ids.get(id(handle))
        if address is None or self._handle_objects[address] is not handle:
            address = _address(handle) or 0
        target = self._handles.get(address)
        if target is None:
            self.calls[(fn, None)] += 1
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        i, j = target
        self.calls[(fn, i if j is None else f"{i}:{j}")] += 1
        if j is not None and (j >= self.mig.get(i, 0) or fn not in _MIG_CALLS):
            self._check(fn, i, None)  # a lost parent answers lost before anything else
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED if j < self.mig.get(i, 0)
                         else pynvml.NVML_ERROR_INVALID_ARGUMENT)
        reading = self._check(fn, i, j)
        return reading, i, j

    def _check(self, fn: str, i: int, j: int | None) -> DeviceReading:
        reading = self._readings()[i]
        if reading.lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        if self._unsupported_name(fn, i, j):
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self._fail_if_configured(fn, i if j is None else f"{i}:{j}")
        return reading

    def _unsupported_name(self, name: str, i: int, j: int | None) -> bool:
        if not self.unsupported:
            return False
        key: int | str = i if j is None else f"{i}:{j}"
        return name in self.unsupported or (key, name) in self.unsupported

    def _fail_if_configured(self, fn: str, key: int | str | None) -> None:
        if not self.errors:
            return
        code = self.errors.get((key, fn), self.errors.get((None, fn)))
        if code is not None:
            raise _error(code)


_FIELD_NAMES = {getattr(pynvml, n): n for n in ("NVML_FI_DEV_MEMORY_TEMP", *_NVLINK_FIELDS,
                                                  *_RETIREMENT_FIELDS)}


def _need(value: float | None) -> float:
    """A reading the simulator left empty is one the driver cannot give."""
    if value is None:
        raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
    return value
