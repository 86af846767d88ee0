"""A fake NVML at the pynvml function boundary, reading the NVIDIA GPUs of a simulated node.

`FakeNvml` has the pynvml functions the NVML collector calls, with pynvml's names, signatures
and return types: handles are real ``c_nvmlDevice_t`` pointers, utilization, memory, PCI and
event data are pynvml's own ctypes structures, and failures are real ``pynvml.NVMLError``
instances (so ``except pynvml.NVMLError_GpuIsLost`` works as with a driver). Constants and the
error classes are forwarded from pynvml; a pynvml function the fake does not implement raises
AttributeError instead of reaching a real library.

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

``calls`` counts every call by (function, device index or None).
"""

from __future__ import annotations

import ctypes
import hashlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pynvml

from computewatch.sim.node import DeviceReading, NodeSim

__all__ = ["FakeNvml", "marketing_name"]

_NAMES = {
    "a100": "NVIDIA A100-SXM4-80GB",
    "h100": "NVIDIA H100 80GB HBM3",
    "h20": "NVIDIA H20",
    "l20": "NVIDIA L20",
}
_MAX_MIG = 7  # MIG slots of an A100/H100
_MIB = 2**20
_SUPPORTED_EVENTS = (pynvml.nvmlEventTypeSingleBitEccError | pynvml.nvmlEventTypeDoubleBitEccError
                     | pynvml.nvmlEventTypePState | pynvml.nvmlEventTypeXidCriticalError
                     | pynvml.nvmlEventTypeClock)
_MIG_CALLS = {"nvmlDeviceGetUUID", "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo",
              "nvmlDeviceGetUtilizationRates"}  # what a MIG handle answers (utilization: N/S)
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
                 clock: Callable[[], datetime] | None = None) -> None:
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
        self.calls: Counter[tuple[str, int | str | None]] = Counter()
        # Real drivers refresh their readings about once a second (NVML averages power over
        # 1 s), so by default the fake's moment moves in whole seconds too.
        self._clock = clock or (lambda: datetime.now(UTC).replace(microsecond=0))
        self._queue: deque[tuple[int, int]] = deque(xid_events)
        self._init_count = 0
        self._event_sets: dict[int, set[int]] = {}
        self._gpus = node.of_vendor("nvidia")
        self._handles: dict[int, tuple[int, int | None]] = {}
        for i in range(len(self._gpus)):
            self._handles[_gpu_address(i)] = (i, None)
            for j in range(_MAX_MIG):
                self._handles[_mig_address(i, j)] = (i, j)
        if not legacy:  # functions newer bindings have
            self.nvmlDeviceGetCurrentClocksEventReasons = self._clock_reasons
            self.nvmlDeviceGetTemperatureV = self._temperature_v

    # --- pynvml's constants and error classes ---------------------------------------------

    def __getattr__(self, name: str) -> Any:
        value = getattr(pynvml, name, _MISSING) if not name.startswith("_") else _MISSING
        if value is _MISSING or (callable(value) and not (
                isinstance(value, type) and issubclass(value, Exception))):
            raise AttributeError(f"FakeNvml does not implement {name!r}")
        return value

    def __dir__(self) -> Iterable[str]:
        forwarded = (n for n in dir(pynvml) if not n.startswith("_") and (
            not callable(v := getattr(pynvml, n))
            or (isinstance(v, type) and issubclass(v, Exception))))
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
        return _pointer(_gpu_address(index), pynvml.c_nvmlDevice_t)

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
        r, i, j = self._device("nvmlDeviceGetMemoryInfo", handle)
        total, used = int(_need(r.memory_total_bytes)), int(_need(r.memory_used_bytes))
        if j is not None:
            slices = _MAX_MIG // self.mig[i]
            total = total * slices // 8 // _MIB * _MIB
            used = min(total, used // self.mig[i] // _MIB * _MIB)
        mem = pynvml.c_nvmlMemory_v2_t() if version else pynvml.c_nvmlMemory_t()
        if version:
            mem.version = version
        mem.total, mem.used, mem.free = total, used, total - used
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

    def nvmlDeviceGetFieldValues(self, handle: Any, fieldIds: list[int]) -> Any:
        r, i, j = self._device("nvmlDeviceGetFieldValues", handle)
        values = (pynvml.c_nvmlFieldValue_t * len(fieldIds))()
        stamp = int(self._clock().timestamp() * 1e6)
        for v, field_id in zip(values, fieldIds, strict=True):
            v.fieldId, v.timestamp = field_id, stamp
            v.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
            if field_id == pynvml.NVML_FI_DEV_MEMORY_TEMP and r.memory_temperature_c is not None \
                    and not self._unsupported_name("NVML_FI_DEV_MEMORY_TEMP", i, j):
                v.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                v.value.uiVal = round(r.memory_temperature_c)
                v.nvmlReturn = pynvml.NVML_SUCCESS
        return values

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
        r, _i, _ = self._device("nvmlDeviceGetRemappedRows", device)
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
        return _pointer(_mig_address(i, index), pynvml.c_nvmlDevice_t)

    def nvmlDeviceIsMigDeviceHandle(self, device: Any) -> int:
        _, _, j = self._device("nvmlDeviceIsMigDeviceHandle", device)
        return int(j is not None)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: Any) -> Any:
        _r, i, j = self._device("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", migDevice)
        if j is None:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _pointer(_gpu_address(i), pynvml.c_nvmlDevice_t)

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

    def _readings(self) -> list[DeviceReading]:
        """The node's NVIDIA readings at the fake's current moment (cached by the node)."""
        return self.node.readings_of("nvidia", self._clock())

    def _device(self, fn: str, handle: Any) -> tuple[DeviceReading, int, int | None]:
        """The reading behind a handle, after the failures the knobs and the node call for."""
        if self._init_count <= 0:
            self.calls[(fn, None)] += 1
            raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
        target = self._handles.get(_address(handle) or 0)
        if target is None:
            self.calls[(fn, None)] += 1
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        i, j = target
        self.calls[(fn, i if j is None else f"{i}:{j}")] += 1
        if j is not None and (j >= self.mig.get(i, 0) or fn not in _MIG_CALLS):
            self._check(fn, i, None)  # a lost parent answers lost before anything else
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED if j < self.mig.get(i, 0)
                         else pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._check(fn, i, j)
        return self._readings()[i], i, j

    def _check(self, fn: str, i: int, j: int | None) -> None:
        if self._readings()[i].lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        if self._unsupported_name(fn, i, j):
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self._fail_if_configured(fn, i if j is None else f"{i}:{j}")

    def _unsupported_name(self, name: str, i: int, j: int | None) -> bool:
        key: int | str = i if j is None else f"{i}:{j}"
        return name in self.unsupported or (key, name) in self.unsupported

    def _fail_if_configured(self, fn: str, key: int | str | None) -> None:
        code = self.errors.get((key, fn), self.errors.get((None, fn)))
        if code is not None:
            raise _error(code)


def _need(value: float | None) -> float:
    """A reading the simulator left empty is one the driver cannot give."""
    if value is None:
        raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
    return value
