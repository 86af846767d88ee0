"""One chip's ``accelerator`` samples, from its table row and its per-chip views.

- ``health`` is 1 only for ``OK``. ``Warning``, ``Alarm``, ``Critical`` and ``UNKNOWN`` are 0,
  as npu-exporter's ``npu_chip_info_health_status`` counts anything but healthy as unhealthy.
- npu-smi's "MB" are MiB (its totals are powers of two: 8192, 32768, 65536): bytes = MB x 2**20.
- Device memory is HBM where the chip has HBM, else DDR; ``memory_utilization_ratio`` is the
  matching *bandwidth* rate, the catalogue's definition.
- ``model`` is ``Ascend <chip name>`` (`model_name`). The README states every rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from computewatch.collectors import (
    ParseError,
    placement_labels,
)
from computewatch.collectors.ascend._parse import ChipRow, errors_or_raise, is_missing
from computewatch.samples import Sample

__all__ = ["DETAIL_SOURCE", "MIB", "chip_samples", "model_name", "norm_key"]

MIB = 2**20
_HEALTH = {"OK": 1.0, "WARNING": 0.0, "ALARM": 0.0, "CRITICAL": 0.0, "UNKNOWN": 0.0}
_UNNAMED = frozenset({"XXX", "NA", "N/A", "-", "--", ""})


def model_name(name: str | None, chip_type: str | None = None) -> str | None:
    """``Ascend <name>`` from a table or view chip name; None when it is hidden or missing."""
    if name is None or name.strip().upper() in _UNNAMED:
        return None
    name = name.strip()
    if name.lower().startswith("ascend"):
        rest = name[len("ascend"):].strip()
        return f"Ascend {rest}" if rest else "Ascend"
    prefix = (chip_type or "Ascend").strip() or "Ascend"
    return f"{prefix} {name}"


def norm_key(key: str) -> str:
    return re.sub(r"\s+", "", key.lower())


_UTIL_KEYS = ("aicoreusagerate(%)", "aicoreusage(%)", "npuutilization(%)", "npuusagerate(%)")
_VECTOR_KEYS = ("aivectorusagerate(%)", "aivectorusage(%)", "vectorcoreusagerate(%)")
_POWER_KEYS = ("powerdissipation(w)", "npureal-timepower(w)", "real-timepower(w)")
_TEMP_KEYS = ("temperature(c)", "nputemperature(c)", "chiptemperature(c)")
_CLOCK_KEYS = ("aicorecurfreq(mhz)", "aicorecurrentfreq(mhz)", "aicorecurrfreq(mhz)")


DETAIL_SOURCE = "npu-smi info -t"
"""The ``source`` of errors in values merged from several per-chip views."""


def chip_samples(row: ChipRow, labels: Mapping[str, str],
                 details: Mapping[str, str] | None = None, *,
                 fallback_model: str | None = None, time: datetime | None = None,
                 errors: list[ParseError] | None = None) -> list[Sample]:
    """The ``accelerator`` samples of one chip: its table row, filled in from ``details``.

    ``labels`` are the placement labels (``node`` is required for the device id);
    ``details`` the merged key/values of its per-chip views; ``fallback_model`` the name
    from ``npu-smi info -m``, used when neither the table nor the views name the chip. A
    detail value that is not a number, or an unknown health, gives no sample and is reported
    to ``errors`` (raised when errors is None).
    """
    time = time or datetime.now(UTC)
    kv = {norm_key(k): v for k, v in (details or {}).items()}
    where = f"NPU {row.npu_id} chip {row.chip_id}"

    def pick(keys: Iterable[str]) -> float | None:
        for key in keys:
            if key in kv and not is_missing(kv[key]):
                try:
                    return float(kv[key])
                except ValueError:
                    errors_or_raise(errors, ParseError(
                        DETAIL_SOURCE, f"{where}: {key} {kv[key]!r} is not a number"))
        return None

    node = labels["node"]
    lab = {**placement_labels(labels), "vendor": "huawei", "ecosystem": "cann",
           "model": (model_name(row.name) or model_name(kv.get("chipname"), kv.get("chiptype"))
                     or model_name(fallback_model) or "Ascend"),
           "index": str(row.npu_id), "device": f"{node}-npu{row.npu_id}-chip{row.chip_id}"}
    bus = row.bus_id or (None if is_missing(kv.get("pciebusinfo")) else kv.get("pciebusinfo"))
    if bus:
        lab["pci_bus_id"] = bus
    if row.driver_version:
        lab["driver_version"] = row.driver_version

    if row.hbm_total_mb is not None:
        hbm_used, hbm_total = row.hbm_used_mb, row.hbm_total_mb
    else:
        hbm_used, hbm_total = pick(("hbmusage(mb)",)), pick(("hbmcapacity(mb)",))
    # An HBM cell that says NA is missing HBM figures, not a chip without HBM.
    has_hbm = bool(hbm_total) or (row.hbm_column and hbm_total is None)
    if has_hbm:
        used, total = hbm_used, hbm_total
        bandwidth = pick(("hbmbandwidthusagerate(%)",))
        mem_clock, mem_temp = pick(("hbmclockspeed(mhz)",)), pick(("hbmtemperature(c)",))
    else:
        used, total = row.memory_used_mb, row.memory_total_mb
        if total is None:
            used, total = pick(("ddrusage(mb)",)), pick(("ddrcapacity(mb)",))
        bandwidth = pick(("ddrbandwidthusagerate(%)",))
        mem_clock, mem_temp = pick(("ddrclockspeed(mhz)",)), None

    util = row.aicore_percent if row.aicore_percent is not None else pick(_UTIL_KEYS)
    health_text = row.health
    if health_text is None and not is_missing(kv.get("healthstatus")):
        health_text = kv["healthstatus"]
    health = _HEALTH.get(health_text.upper()) if health_text else None
    if health_text and health is None:
        errors_or_raise(errors, ParseError(
            "npu-smi info", f"{where}: unknown health {health_text!r}", row.line_no))

    def pct(v: float | None) -> float | None:
        return None if v is None else v / 100.0

    def scale(v: float | None, k: float) -> float | None:
        return None if v is None else v * k

    values = {
        "utilization_ratio": pct(util),
        "vector_utilization_ratio": pct(pick(_VECTOR_KEYS)),
        "memory_utilization_ratio": pct(bandwidth),
        "memory_used_bytes": scale(used, MIB),
        "memory_total_bytes": scale(total, MIB),
        "power_watts": row.power_w if row.power_w is not None else pick(_POWER_KEYS),
        "temperature_celsius": (row.temperature_c if row.temperature_c is not None
                                else pick(_TEMP_KEYS)),
        "memory_temperature_celsius": mem_temp,
        "sm_clock_hertz": scale(pick(_CLOCK_KEYS), 1e6),
        "memory_clock_hertz": scale(mem_clock, 1e6),
        "health": health,
    }
    return [Sample.of(f"accelerator.{f}", float(v), lab, time)
            for f, v in values.items() if v is not None]
