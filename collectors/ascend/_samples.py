"""One chip's, card's and process's samples, from the table row and the per-chip view values.

- ``health`` is 1 only for ``OK``. ``Warning``, ``Alarm``, ``Critical`` and ``UNKNOWN`` are 0,
  as npu-exporter's ``npu_chip_info_health_status`` counts anything but healthy as unhealthy.
- npu-smi's "MB" are MiB (its totals are powers of two: 8192, 32768, 65536): bytes = MB x 2**20.
- Device memory is HBM where the chip has HBM, else DDR (label ``memory_type``);
  ``memory_utilization_ratio`` is the matching *bandwidth* rate, the catalogue's definition.
- ``model`` is ``Ascend <chip name>``: the table's name, then ``npu-smi info -m``, then the
  chip's own board view; never the card's MCU (`model_name`). The README states every rule.
- A card's MCU power is the card's (``accelerator_card``), never a chip's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from computewatch.collectors import (
    ParseError,
    placement_labels,
)
from computewatch.collectors._base import DeviceLabels, Labels, LabelSets, as_read
from computewatch.collectors.ascend._parse import ChipRow, ProcessRow, errors_or_raise, is_missing
from computewatch.collectors.ascend._views import norm_key
from computewatch.samples import Sample

__all__ = ["DETAIL_SOURCE", "MIB", "card_samples", "chip_labels", "chip_samples", "info_sample",
           "model_name", "norm_key", "process_samples", "vdie_id"]

MIB = 2**20
_HEALTH = {"OK": 1.0, "WARNING": 0.0, "ALARM": 0.0, "CRITICAL": 0.0, "UNKNOWN": 0.0}
_UNNAMED = frozenset({"XXX", "NA", "N/A", "-", "--", ""})
_CONTROLLERS = frozenset({"MCU", "3559"})


def model_name(name: str | None, chip_type: str | None = None) -> str | None:
    """``Ascend <name>`` from a table or view chip name; None when hidden, missing or an MCU."""
    if name is None or name.strip().upper() in _UNNAMED | _CONTROLLERS:
        return None
    name = name.strip()
    if name.lower().startswith("ascend"):
        rest = name[len("ascend"):].strip()
        if rest.upper() in _UNNAMED - {""} | _CONTROLLERS:
            return None  # "Ascend xxx": anonymised
        return f"Ascend {rest}" if rest else "Ascend"
    prefix = (chip_type or "Ascend").strip() or "Ascend"
    return f"{prefix} {name}"


def vdie_id(value: str | None) -> str | None:
    """npu-exporter's ``vdie_id`` from the board view's ``VDie ID`` (words joined with ``-``)."""
    if is_missing(value):
        return None
    assert value is not None
    return "-".join(w.upper() for w in value.split())


_UTIL_KEYS = ("aicoreusagerate(%)", "aicoreusage(%)", "npuutilization(%)", "npuusagerate(%)")
_VECTOR_KEYS = ("aivectorusagerate(%)", "aivectorusage(%)", "vectorcoreusagerate(%)")
_POWER_KEYS = ("powerdissipation(w)", "npureal-timepower(w)", "real-timepower(w)")
_TEMP_KEYS = ("temperature(c)", "nputemperature(c)", "chiptemperature(c)")
_CLOCK_KEYS = ("aicorecurfreq(mhz)", "aicorecurrentfreq(mhz)", "aicorecurrfreq(mhz)")
_ECC = {"single_bit": ("hbmsinglebiterrorcount", "hbmsinglebitaggregatetotalerrcnt",
                       "hbmsinglebitisolatedpagescount"),
        "double_bit": ("hbmdoublebiterrorcount", "hbmdoublebitaggregatetotalerrcnt",
                       "hbmdoublebitisolatedpagescount")}

def _series(lab: Mapping[str, str], label_sets: LabelSets | None) -> Labels:
    """A chip's labels as `Sample` keeps them, sorted once for all of the chip's samples and
    kept across runs in ``label_sets`` (the collector's; None: made afresh)."""
    return (label_sets or LabelSets()).of(lab["device"], lab)


DETAIL_SOURCE = "npu-smi info -t"
"""The ``source`` of errors in values merged from several per-chip views."""


def chip_labels(row: ChipRow, labels: Mapping[str, str], details: Mapping[str, str], *,
                fallback_model: str | None = None, phy_id: int | None = None,
                device_labels: DeviceLabels = as_read) -> dict[str, str]:
    """The labels every sample of this chip carries; ``details`` keys as `norm_key` gives;
    through ``device_labels``, the collector's `DeviceLabels` hook."""
    kv = details
    node = labels["node"]
    lab = {**placement_labels(labels), "vendor": "huawei", "ecosystem": "cann",
           "model": (model_name(row.name) or model_name(fallback_model)
                     or model_name(kv.get("chipname"), kv.get("chiptype")) or "Ascend"),
           "index": str(row.npu_id), "device": f"{node}-npu{row.npu_id}-chip{row.chip_id}"}
    bus = row.bus_id or (None if is_missing(kv.get("pciebusinfo")) else kv.get("pciebusinfo"))
    if bus:
        lab["pci_bus_id"] = bus
    if row.driver_version:
        lab["driver_version"] = row.driver_version
    if phy_id is not None:
        lab["phy_id"] = str(phy_id)
    if vd := vdie_id(kv.get("vdieid")):
        lab["vdie_id"] = vd
    return device_labels(lab)


def chip_samples(row: ChipRow, labels: Mapping[str, str],
                 details: Mapping[str, str] | None = None, *,
                 fallback_model: str | None = None, time: datetime | None = None,
                 errors: list[ParseError] | None = None, phy_id: int | None = None,
                 normalized: bool = False, device_labels: DeviceLabels = as_read,
                 label_sets: LabelSets | None = None) -> list[Sample]:
    """The ``accelerator`` samples of one chip: its table row, filled in from ``details``.

    ``labels`` are the placement labels (``node`` is required for the device id);
    ``details`` the chip's own values from its per-chip views (never its card's MCU);
    ``fallback_model`` the name from ``npu-smi info -m``, used when the table does not name
    the chip; ``phy_id`` npu-exporter's ``id``; ``normalized`` says the details' keys are
    already `norm_key`'s; ``device_labels`` the collector's `DeviceLabels` hook;
    ``label_sets`` the collector's `LabelSets` (None: tuples made afresh). A detail
    value that is not a number, or an unknown health, gives no sample and is reported to
    ``errors`` (raised when errors is None).
    """
    time = time or datetime.now(UTC)
    kv: Mapping[str, str] = (details or {}) if normalized else {
        norm_key(k): v for k, v in (details or {}).items()}
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

    lab = chip_labels(row, labels, kv, fallback_model=fallback_model, phy_id=phy_id,
                      device_labels=device_labels)
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
        lab["memory_type"] = "hbm"
    else:
        used, total = row.memory_used_mb, row.memory_total_mb
        if total is None:
            used, total = pick(("ddrusage(mb)",)), pick(("ddrcapacity(mb)",))
        bandwidth = pick(("ddrbandwidthusagerate(%)", "memorybandwidthusagerate(%)"))
        mem_clock, mem_temp = pick(("ddrclockspeed(mhz)",)), None
        if total or row.memory_total_mb is not None:
            lab["memory_type"] = "ddr"

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

    values: dict[str, float | None] = {
        "utilization_ratio": pct(util),
        "vector_utilization_ratio": pct(pick(_VECTOR_KEYS)),
        "overall_utilization_ratio": pct(pick(("npuutilization(%)",))),
        "cube_utilization_ratio": pct(pick(("aicubeusagerate(%)",))),
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
        "voltage_volts": pick(("voltage(v)",)),
    }
    enabled = kv.get("hbmecc-enablestatus", "").strip().lower()
    if enabled in ("true", "false"):
        values["hbm_ecc_enabled"] = float(enabled == "true")
    sets = label_sets or LabelSets()
    base = _series(lab, sets)
    out = [Sample("accelerator", f, float(v), base, time)
           for f, v in values.items() if v is not None]
    for kind, (now_key, total_key, pages_key) in _ECC.items():
        for field, key in (("hbm_ecc_errors", now_key), ("hbm_ecc_errors_total", total_key),
                           ("hbm_ecc_isolated_pages", pages_key)):
            if (v := pick((key,))) is not None:
                out.append(Sample("accelerator", field, v,
                                  sets.plus(base, (("error_type", kind),)), time))
    out += _error_codes(kv.get("errorcode"), base, sets, time, where, errors)
    return out


def _error_codes(text: str | None, base: Labels, sets: LabelSets, time: datetime, where: str,
                 errors: list[ParseError] | None) -> list[Sample]:
    """``Error Code : 80E01801 80CD8008`` (hex words; NA when none): one sample per code."""
    if is_missing(text):
        return []
    assert text is not None
    out = []
    for pos, word in enumerate(text.split()):
        try:
            code = int(word, 16)
        except ValueError:
            errors_or_raise(errors, ParseError(
                "npu-smi info -t health", f"{where}: error code {word!r} is not hexadecimal"))
            return []
        out.append(Sample("accelerator", "error_code", float(code),
                          sets.plus(base, (("position", str(pos)),)), time))
    return out


def info_sample(lab: Mapping[str, str], details: Mapping[str, str], card: Mapping[str, str],
                time: datetime, label_sets: LabelSets | None = None) -> Sample:
    """``accelerator.info`` = 1 with what the board and product views say about the chip."""
    extra = {"chip_name": details.get("chipname"), "chip_type": details.get("chiptype"),
             "chip_version": details.get("chipversion"),
             "serial_number": card.get("serialnumber"),
             "product_type": details.get("producttype") or card.get("producttype"),
             "firmware_version": details.get("firmwareversion") or card.get("firmwareversion")}
    labels = {**lab, **{k: v for k, v in extra.items() if not is_missing(v)}}
    return Sample("accelerator", "info", 1.0,
                  (label_sets or LabelSets()).of(("info", lab["device"]), labels), time)


def card_samples(npu_id: int, first: Mapping[str, str], mcu: Mapping[str, str],
                 time: datetime, errors: list[ParseError] | None = None,
                 label_sets: LabelSets | None = None) -> list[Sample]:
    """``accelerator_card`` from the card's MCU block: its power and board temperature.

    ``first`` are the labels of the card's first chip (placement, vendor, model, bus id).
    """
    lab = {k: v for k, v in first.items() if k in ("hub", "cluster", "site", "node", "vendor",
                                                   "model", "ecosystem", "pci_bus_id",
                                                   "driver_version")}
    lab |= {"index": str(npu_id), "device": f"{first['node']}-npu{npu_id}"}
    base = _series(lab, label_sets)
    out = []
    for field, keys in (("power_watts", _POWER_KEYS), ("temperature_celsius", _TEMP_KEYS)):
        for key in keys:
            value = mcu.get(key)
            if is_missing(value):
                continue
            assert value is not None
            try:
                out.append(Sample("accelerator_card", field, float(value), base, time))
            except ValueError:
                errors_or_raise(errors, ParseError(
                    "npu-smi info -t common", f"NPU {npu_id} MCU: {key} {value!r} is not a "
                    "number"))
            break
    return out


def process_samples(procs: Iterable[ProcessRow], lab: Mapping[str, str], top_n: int,
                    time: datetime, label_sets: LabelSets | None = None) -> list[Sample]:
    """``accelerator.processes`` (all of them) and the top ``top_n`` by memory, per chip."""
    procs = list(procs)
    sets = label_sets or LabelSets()
    base = _series(lab, sets)
    out = [Sample("accelerator", "processes", float(len({p.pid for p in procs})), base, time)]
    # Largest first; the same pid on one chip (npu-smi lists one row per context) summed.
    by_pid: dict[int, tuple[str, float]] = {}
    for p in procs:
        name, mem = by_pid.get(p.pid, (p.name, 0.0))
        by_pid[p.pid] = (name or p.name, mem + (p.memory_mb or 0.0))
    ranked = sorted(by_pid.items(), key=lambda kv: (-kv[1][1], kv[0]))[:max(0, top_n)]
    for pid, (name, mem) in ranked:
        out.append(Sample("accelerator_process", "memory_used_bytes", mem * MIB,
                          sets.plus(base, (("pid", str(pid)), ("process_name", name))), time))
    return out
