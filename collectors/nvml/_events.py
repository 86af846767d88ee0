"""XID errors from NVML's event API: a counter per GPU and code, and the last code seen.

Every GPU is registered for critical XID events in one event set, which each run drains
without waiting (timeout 0). ``xid_errors_total{xid}`` counts events per GPU and code since
the agent started; ``last_xid`` is the code of the latest one (0 while none), which is what
DCGM's ``DCGM_FI_DEV_XID_ERRORS`` reports. Events of MIG instances count on their parent GPU.
Where events are not supported neither is emitted (logged once).
"""

from __future__ import annotations

import ctypes
import logging
from collections import Counter
from typing import Any

from computewatch.collectors.nvml._calls import Dev, DriverCalls

__all__ = ["XidEvents"]

log = logging.getLogger("computewatch.collectors.nvml")

_MAX_EVENTS_PER_RUN = 10_000  # an XID storm must not keep one run draining forever


def _handle_key(handle: object) -> object:
    """A hashable identity for a handle: ctypes pointers compare by object, not address."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (ctypes.ArgumentError, TypeError):
        return handle


class XidEvents:
    """The event set of one NVML session and the XID counts, which outlive sessions."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()  # (gpu index, xid) -> count
        self.last: dict[str, int] = {}  # gpu index -> last xid
        self._event_set: Any = None
        self._off = False
        self._registered: dict[object, str] = {}  # handle key -> gpu index

    def open(self, nv: Any, calls: DriverCalls) -> None:
        """Create the event set of a new NVML session."""
        self._event_set, self._off, self._registered = None, False, {}
        create = getattr(nv, "nvmlEventSetCreate", None)
        if create is None or not hasattr(nv, "nvmlEventTypeXidCriticalError"):
            self._off = True
            log.info("nvml: this pynvml has no event API; XID errors will not be counted")
            return
        try:
            self._event_set = create()
        except nv.NVMLError as exc:
            self._off = True
            if exc.value not in (nv.NVML_ERROR_NOT_SUPPORTED, nv.NVML_ERROR_FUNCTION_NOT_FOUND):
                calls.count(nv, "", "event_set", exc.value)
            log.info("nvml: NVML events unavailable (%s); XID errors will not be counted", exc)

    def register(self, nv: Any, calls: DriverCalls, dev: Dev, h: Any) -> None:
        if self._off or dev.index in self._registered.values() \
                or calls.skip(dev, "xid_events"):
            return
        try:
            nv.nvmlDeviceRegisterEvents(h, nv.nvmlEventTypeXidCriticalError, self._event_set)
        except nv.NVMLError as exc:
            calls.failed(nv, dev, "xid_events", exc.value)
            return
        self._registered[_handle_key(h)] = dev.index

    def watched(self, index: str) -> bool:
        """Whether the GPU's XIDs are being counted (so ``last_xid`` 0 means none)."""
        return not self._off and index in self._registered.values()

    def drain(self, nv: Any, calls: DriverCalls) -> None:
        """Take every pending event without waiting; count critical XIDs per GPU and code."""
        if self._off or not self._registered:
            return
        for _ in range(_MAX_EVENTS_PER_RUN):
            try:
                data = nv.nvmlEventSetWait(self._event_set, 0)
            except nv.NVMLError as exc:
                if exc.value != nv.NVML_ERROR_TIMEOUT:  # TIMEOUT: nothing pending
                    calls.count(nv, "", "event_wait", exc.value)
                return
            if not data.eventType & nv.nvmlEventTypeXidCriticalError:
                continue
            idx = self._registered.get(_handle_key(data.device))
            if idx is None:
                log.debug("nvml: XID %d from an unregistered device", data.eventData)
                continue
            self.counts[(idx, int(data.eventData))] += 1
            self.last[idx] = int(data.eventData)

    def close(self, nv: Any) -> None:
        if self._event_set is not None:
            nv.nvmlEventSetFree(self._event_set)
        self._event_set, self._registered = None, {}
