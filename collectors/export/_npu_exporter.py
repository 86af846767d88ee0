"""npu-exporter's names for Ascend samples, as npu-exporter writes them (``--compat npu-exporter``).

Facts from Ascend/mind-cluster ``component/npu-exporter`` (collector/metrics/*.go, common/
constants.go): every series is a gauge with the labels ``id`` (the chip's physical id,
``PhyId``), ``model_name`` (``<name>-<type>-<version>``, ``common.GetNpuName``), ``vdie_id``,
``pcie_bus_info``, ``namespace``, ``pod_name``, ``container_name`` (empty outside a pod), in
npu-exporter's units: percent, MB, MHz, W, V, MB/s.

Names come from the catalogue's ``npu_exporter`` column and ``compat_scale``; the rules that
a column cannot state are here, each as npu-exporter has it:

- memory is ``npu_chip_info_used_memory``/``_total_memory`` on DDR chips (``memory_type``
  ``ddr``: 310/310P, collector_for_ddr.go) and ``npu_chip_info_hbm_*`` on HBM chips
  (collector_for_hbm.go), where also ``_hbm_utilization`` (used / total, %) and
  ``_hbm_bandwidth_utilization``;
- ``npu_chip_info_power`` of a chip without a power reading of its own is its card's MCU
  power (collector_for_npu.go ``collectPower``: "Ascend310P use cardPower to replace
  chipPower"), so each chip of a 310P card shows the card's power, as npu-exporter does;
- error codes are ``npu_chip_info_error_code``, ``_error_code_1``, ... by position;
- HBM ECC counts by ``error_type`` (single_bit, double_bit) get one name each;
- ``npu_chip_info_name{name}``, ``_serial_number{serial_number}`` and
  ``_product_type{product_type}`` are 1 with the value in a label;
  ``npu_chip_info_process_info{process_id, container_id}`` is one process's memory;
- ``machine_npu_nums`` counts the chips, ``npu_exporter_version_info`` is 1. Its version
  label is ``exporter_version``, not npu-exporter's camelCase ``exporterVersion``: the
  exposition stays clean under ``promtool check metrics`` (DCGM's own camelCase labels, which
  dashboards query, are the only warnings it gives).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.core import Metric

from computewatch import __version__, catalog
from computewatch.samples import Sample

__all__ = ["VERSION", "npu_exporter_families"]

VERSION = f"computewatch-{__version__}"
"""``exporter_version`` of ``npu_exporter_version_info``."""

_DDR = {"memory_used_bytes": "npu_chip_info_used_memory",
        "memory_total_bytes": "npu_chip_info_total_memory"}
_ECC = {("hbm_ecc_errors", "single_bit"): "npu_chip_info_hbm_ecc_single_bit_error_cnt",
        ("hbm_ecc_errors", "double_bit"): "npu_chip_info_hbm_ecc_double_bit_error_cnt",
        ("hbm_ecc_errors_total", "single_bit"):
            "npu_chip_info_hbm_ecc_total_single_bit_error_cnt",
        ("hbm_ecc_errors_total", "double_bit"):
            "npu_chip_info_hbm_ecc_total_double_bit_error_cnt",
        ("hbm_ecc_isolated_pages", "single_bit"):
            "npu_chip_info_hbm_ecc_single_bit_isolated_pages_cnt",
        ("hbm_ecc_isolated_pages", "double_bit"):
            "npu_chip_info_hbm_ecc_double_bit_isolated_pages_cnt"}
_HELP = {
    "npu_chip_info_used_memory": "the npu used memory (DDR), unit is 'MB'",
    "npu_chip_info_total_memory": "the npu total memory (DDR), unit is 'MB'",
    "npu_chip_info_hbm_utilization": "the npu hbm utilization, unit is '%'",
    "npu_chip_info_name": "the Ascend npu name with value '1'",
    "npu_chip_info_serial_number": "the npu serial number information",
    "npu_chip_info_product_type": "the npu product_type information",
    "machine_npu_nums": "Amount of npu installed on the machine.",
    "npu_exporter_version_info": "exporter version with value '1'",
}
_MIB = 2.0**20


@dataclass
class _Chip:
    labels: dict[str, str]
    samples: list[Sample] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    processes: list[Sample] = field(default_factory=list)


def npu_exporter_families(samples: Iterable[Sample]) -> list[Metric]:
    """npu-exporter's families for the Huawei samples among ``samples`` (none if none)."""
    chips: dict[str, _Chip] = {}
    cards: dict[tuple[str, str], float] = {}  # (node, NPU id) -> the card's MCU power
    for s in samples:
        if s.label("vendor") != "huawei":
            continue
        if s.measurement == "accelerator_card":
            if s.field == "power_watts":
                cards[(s.label("node") or "", s.label("index") or "")] = s.value
            continue
        if s.measurement not in ("accelerator", "accelerator_process"):
            continue
        dev = s.label("device") or ""
        chip = chips.get(dev)
        if chip is None:
            chip = chips[dev] = _Chip(dict(s.labels))
        if s.measurement == "accelerator_process":
            chip.processes.append(s)
        elif s.field == "info":
            chip.info = dict(s.labels)
        else:
            chip.samples.append(s)
    if not chips:
        return []
    out: dict[str, Metric] = {}

    def add(name: str, labels: dict[str, str], value: float, help_: str | None = None) -> None:
        fam = out.get(name)
        if fam is None:
            fam = out[name] = Metric(name, help_ or _HELP.get(name, name), "gauge")
        fam.add_sample(name, labels, value)

    for chip in chips.values():
        card = _card_labels(chip)
        by_field: dict[str, Sample] = {}
        for s in chip.samples:
            by_field.setdefault(s.field, s)
            _translate(s, chip, card, add)
        ddr = chip.labels.get("memory_type") == "ddr"
        used, total = by_field.get("memory_used_bytes"), by_field.get("memory_total_bytes")
        if not ddr and used is not None and total is not None and total.value > 0:
            add("npu_chip_info_hbm_utilization", card, 100.0 * used.value / total.value)
        if "power_watts" not in by_field:
            power = cards.get((chip.labels.get("node", ""), chip.labels.get("index", "")))
            if power is not None:  # npu-exporter's 310P rule: the card's power on each chip
                add("npu_chip_info_power", card, power, "the npu power")
        named = {("name" if k == "model_name" else k): v for k, v in card.items()}
        add("npu_chip_info_name", named, 1.0)  # its label is `name`, not `model_name`
        if serial := chip.info.get("serial_number"):
            add("npu_chip_info_serial_number", {**card, "serial_number": serial}, 1.0)
        if product := chip.info.get("product_type"):
            add("npu_chip_info_product_type", {**card, "product_type": product}, 1.0)
        for p in chip.processes:
            add("npu_chip_info_process_info",
                {**card, "process_id": p.label("pid") or "", "container_id": ""},
                p.value / _MIB, "the npu process info, unit is 'MB'")
    add("machine_npu_nums", {}, float(len(chips)))
    add("npu_exporter_version_info", {"exporter_version": VERSION}, 1.0)
    return [out[name] for name in sorted(out)]


def _translate(s: Sample, chip: _Chip, card: dict[str, str],
               add: Callable[..., None]) -> None:
    ddr = chip.labels.get("memory_type") == "ddr"
    m = catalog.metric(s.name)
    if s.field == "error_code":
        pos = s.label("position") or "0"
        name = m.npu_exporter or ""
        add(name if pos == "0" else f"{name}_{pos}", card, s.value, "the npu error code")
        return
    if (s.field, s.label("error_type")) in _ECC:
        add(_ECC[(s.field, s.label("error_type") or "")], card, s.value, m.help)
        return
    if ddr and s.field in _DDR:
        add(_DDR[s.field], card, s.value * m.compat_scale)
        return
    if ddr and s.field == "memory_utilization_ratio":
        return  # npu-exporter has no DDR bandwidth name
    if m.npu_exporter:
        add(m.npu_exporter, card, s.value * m.compat_scale,
            f"{m.help} (npu-exporter name and unit)")


def _card_labels(chip: _Chip) -> dict[str, str]:
    lab, info = chip.labels, chip.info
    parts = [info.get("chip_name"), info.get("chip_type"), info.get("chip_version")]
    model = "-".join(p or "" for p in parts) if any(parts) else lab.get("model", "")
    return {"id": lab.get("phy_id") or lab.get("index", ""), "model_name": model,
            "vdie_id": lab.get("vdie_id", ""), "pcie_bus_info": lab.get("pci_bus_id", ""),
            "namespace": lab.get("namespace", ""), "pod_name": lab.get("pod", ""),
            "container_name": lab.get("container", "")}

