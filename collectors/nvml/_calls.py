"""One NVML call, and what its failure means: the error contract of the NVML collector.

"Not supported" (or a function the binding or library lacks) makes the field absent, never
zero, and is remembered per (device, field key) so the driver is not asked again every run;
"GPU is lost" marks the device lost for the rest of the run; any other error leaves the field
out and is counted per NVML error name (``nvml_no_permission``, ...), logged once per
(device, field, error).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Dev", "DriverCalls"]

log = logging.getLogger("computewatch.collectors.nvml")

_VALUE_ATTR = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")  # by valueType


@dataclass
class Dev:
    """One GPU or MIG device during one run: its key and whether it was lost."""

    index: str
    lost: bool = False


class DriverCalls:
    """Calls NVML functions for the collector, remembering what each device cannot answer."""

    def __init__(self) -> None:
        self.unsupported: set[tuple[str, str]] = set()  # (device index, field key)
        self.missing: set[str] = set()  # functions the binding or library lacks
        self.errors: Counter[str] = Counter()  # nvml_<error> -> count, since agent start
        self._warned: set[tuple[str, str, int]] = set()
        self._error_names: dict[int, str] = {}

    def reset(self) -> None:
        """A new NVML session (driver reloaded): ask again what the old one did not support."""
        self.unsupported.clear()
        self.missing.clear()

    def forget(self, index: str) -> None:
        """A GPU whose MIG mode changed: forget what it and its MIG devices did not support."""
        self.unsupported = {(d, k) for d, k in self.unsupported
                            if d != index and not d.startswith(f"{index}:")}

    def skip(self, dev: Dev, key: str) -> bool:
        return dev.lost or (dev.index, key) in self.unsupported

    def call(self, nv: Any, dev: Dev, key: str, names: tuple[str, ...], *args: Any) -> Any:
        """The first of ``names`` the binding and library have, called; None if it failed."""
        if self.skip(dev, key):
            return None
        for fn_name in names:
            if fn_name in self.missing:
                continue
            fn = getattr(nv, fn_name, None)
            if fn is None:
                self.missing.add(fn_name)
                continue
            try:
                return fn(*args)
            except nv.NVMLError as exc:
                if exc.value == nv.NVML_ERROR_FUNCTION_NOT_FOUND:  # driver older than binding
                    self.missing.add(fn_name)
                    continue
                self.failed(nv, dev, key, exc.value)
                return None
        self.unsupported.add((dev.index, key))
        return None

    def field_values(self, nv: Any, dev: Dev, h: Any, wanted: Sequence[tuple[str, Any]],
                     stamps: dict[str, float] | None = None) -> dict[str, float]:
        """One nvmlDeviceGetFieldValues call for the fields not known to be unsupported;
        each value's own return code counts as that field's call. ``stamps`` receives each
        value's timestamp (µs since the epoch, the driver's)."""
        ask = [(key, fid) for key, fid in wanted if not self.skip(dev, key)]
        if not ask:
            return {}
        values = self.call(nv, dev, ask[0][0] if len(ask) == 1 else "field_values",
                           ("nvmlDeviceGetFieldValues",), h, [fid for _, fid in ask])
        if values is None:
            return {}
        out = {}
        for (key, _), value in zip(ask, values, strict=True):
            if value.nvmlReturn != nv.NVML_SUCCESS:
                self.failed(nv, dev, key, value.nvmlReturn)
                continue
            out[key] = float(getattr(value.value, _VALUE_ATTR[value.valueType]))
            if stamps is not None:
                stamps[key] = float(value.timestamp)
        return out

    def failed(self, nv: Any, dev: Dev, key: str, code: int) -> None:
        if code == nv.NVML_ERROR_NOT_SUPPORTED:
            self.unsupported.add((dev.index, key))
            log.debug("nvml: GPU %s: %s not supported", dev.index, key)
        elif code in (nv.NVML_ERROR_GPU_IS_LOST, nv.NVML_ERROR_RESET_REQUIRED):
            dev.lost = True
        else:
            self.count(nv, dev.index, key, code)

    def count(self, nv: Any, index: str, key: str, code: int) -> None:
        if not self._error_names:
            self._error_names = _error_names(nv)
        name = self._error_names.get(code, f"error_{code}")
        self.errors[f"nvml_{name}"] += 1
        if (index, key, code) not in self._warned:
            self._warned.add((index, key, code))
            log.warning("nvml: GPU %s: reading %s failed: NVML error %s (%s); leaving it out",
                        index or "-", key, code, name)


def _error_names(nv: Any) -> dict[int, str]:
    """NVML error codes by label-friendly name: 4 -> ``no_permission``."""
    return {getattr(nv, attr): attr.removeprefix("NVML_ERROR_").lower()
            for attr in dir(nv) if attr.startswith("NVML_ERROR_")}
