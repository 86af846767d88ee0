"""Pure reading of Redfish documents: where a chassis keeps its watts and energy.

A reading is a sum of terms, each one number in one resource (``doc[path] * scale``), so the
collector can remember where the readings are (a plan) and GET only those resources each run.
The README's "How a chassis reading is found" states the order of the sources and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

__all__ = ["EQUIPMENT_KINDS", "PART_CONTEXTS", "THERMAL_KINDS", "ChassisPlan", "Efficiency",
           "Reading", "Term", "absent", "dig", "distribution_readings", "environment_readings",
           "is_sensor_collection", "last_segment", "legacy_psu_input_watts",
           "legacy_psu_readings", "links", "number", "odata_link", "power_control_watts",
           "psu_metrics_input", "sensor_reading"]

PART_CONTEXTS = frozenset({
    "CPU", "CPUSubsystem", "GPU", "GPUSubsystem", "FPGA", "Accelerator", "ASIC", "Memory",
    "MemorySubsystem", "StorageDevice", "StorageSubsystem", "NetworkingDevice",
    "ExpansionSubsystem", "Backplane", "Board", "VoltageRegulator", "Fan", "CoolingSubsystem",
    "Pump", "Transceiver", "Battery", "TrustedModule", "Switch", "Manager",
})
"""``PhysicalContext`` values of a part inside a chassis: PowerControl entries with one of
these are a breakdown of the chassis power, not added to it."""
_ENERGY_SCALE = {"EnergyJoules": 1.0, "EnergyWh": 3600.0, "EnergykWh": 3.6e6}
EQUIPMENT_KINDS = ("RackPDUs", "FloorPDUs", "TransferSwitches", "PowerShelves", "Switchgear")
"""The ``PowerEquipment`` collections of ``PowerDistribution`` resources, each a meter."""
THERMAL_KINDS = ("CDUs", "HeatExchangers", "ImmersionUnits", "RPUs")
"""The ``ThermalEquipment`` collections of ``CoolingUnit`` resources (read through their
EnvironmentMetrics), each a meter."""


@dataclass(frozen=True, slots=True)
class Efficiency:
    """How a power supply's DC output becomes an estimate of its input: divided by the
    efficiency the PSU states, measured (``path``: its EfficiencyPercent, read each run) or
    rated (``curve``: EfficiencyRatings' (LoadPercent, EfficiencyPercent), interpolated at
    the load output / ``capacity_w``)."""

    path: tuple[str | int, ...] = ()
    curve: tuple[tuple[float, float], ...] = ()
    capacity_w: float | None = None

    def percent(self, doc: Any, output_w: float) -> float | None:
        if self.path:
            value = number(dig(doc, self.path))
            return value if value else None
        points = sorted(self.curve)
        if not points:
            return None
        if len(points) == 1 or self.capacity_w is None:
            return points[0][1] if len(points) == 1 else None
        load = 100.0 * output_w / self.capacity_w
        if load <= points[0][0]:
            return points[0][1]
        for (l0, e0), (l1, e1) in pairwise(points):
            if load <= l1:
                return e0 + (e1 - e0) * (load - l0) / (l1 - l0)
        return points[-1][1]


@dataclass(frozen=True, slots=True)
class Term:
    """One number in one resource: ``doc[path...] * scale``, divided by the PSU's efficiency
    (percent) where the number is a DC output standing in for the input."""

    uri: str
    path: tuple[str | int, ...]
    scale: float = 1.0
    efficiency: Efficiency | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """A quantity as the sum of terms, and where it came from (for messages)."""

    what: str
    terms: tuple[Term, ...]


@dataclass(slots=True)
class ChassisPlan:
    """A meter: a chassis, or a power distribution unit (``chassis`` is then its
    ``<collection>/<id>``, e.g. ``RackPDUs/1``); where its readings are and what it sits in."""

    chassis: str
    uri: str
    meter: str = ""
    watts: Reading | None = None
    joules: Reading | None = None
    contained_by: str | None = None
    inside: set[str] = field(default_factory=set)  # URIs it is contained in, powered or fed by
    systems: frozenset[str] = frozenset()  # the ComputerSystems it links
    covers: tuple[str, ...] = ()  # equipment: the chassis URIs that are this same device
    notes: list[str] = field(default_factory=list)  # why a source gave nothing, in its terms


def number(value: Any) -> float | None:
    """A finite, non-negative reading; numeric strings (some old firmware) are accepted."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def dig(doc: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(doc, list) or not -len(doc) <= part < len(doc):
                return None
            doc = doc[part]
        elif isinstance(doc, Mapping):
            doc = doc.get(part)
        else:
            return None
    return doc


def odata_link(doc: Mapping[str, Any], *path: str) -> str | None:
    """The ``@odata.id`` of a navigation property, or None."""
    target = dig(doc, path)
    uri = target.get("@odata.id") if isinstance(target, Mapping) else None
    return uri if isinstance(uri, str) and uri else None


def links(doc: Mapping[str, Any], *path: str) -> list[str]:
    """The ``@odata.id`` of each member of a navigation array (or of a single link)."""
    target = dig(doc, path)
    items = target if isinstance(target, list) else [target]
    out = [item.get("@odata.id") for item in items if isinstance(item, Mapping)]
    return [u for u in out if isinstance(u, str) and u]


def is_sensor_collection(doc: Mapping[str, Any]) -> bool:
    """Whether a document is a SensorCollection (some services link one as PowerSubsystem)."""
    return "SensorCollection" in str(doc.get("@odata.type", ""))


def absent(doc: Any) -> bool:
    """Whether a resource or array member says it is not installed."""
    return dig(doc, ("Status", "State")) == "Absent"


def last_segment(uri: str) -> str:
    return uri.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def environment_readings(uri: str, doc: Mapping[str, Any]) -> tuple[Reading | None,
                                                                    Reading | None]:
    """Watts and energy of an EnvironmentMetrics resource, where it has them."""
    watts = joules = None
    if number(dig(doc, ("PowerWatts", "Reading"))) is not None:
        watts = Reading("EnvironmentMetrics PowerWatts",
                         (Term(uri, ("PowerWatts", "Reading")),))
    for prop, scale in (("EnergyJoules", 1.0), ("EnergykWh", 3.6e6)):  # finer one first
        if number(dig(doc, (prop, "Reading"))) is not None:
            joules = Reading(f"EnvironmentMetrics {prop}", (Term(uri, (prop, "Reading"),
                                                                   scale),))
            break
    return watts, joules


def sensor_reading(uri: str, doc: Mapping[str, Any]) -> tuple[str, int, Reading] | None:
    """(``watts`` | ``joules``, rank, reading) for a whole-chassis power or energy sensor.

    Rank 0 is ``ElectricalContext`` Total, 1 none; per-line or per-phase sensors are parts.
    """
    if doc.get("PhysicalContext") != "Chassis" or absent(doc):
        return None
    if number(doc.get("Reading")) is None:
        return None
    electrical = doc.get("ElectricalContext")
    if electrical not in (None, "Total"):
        return None
    rank = 0 if electrical == "Total" else 1
    kind = doc.get("ReadingType")
    name = f"sensor {last_segment(uri)}"
    if kind == "Power":
        return "watts", rank, Reading(name, (Term(uri, ("Reading",)),))
    if isinstance(kind, str) and kind in _ENERGY_SCALE:  # a list or object is no unit
        return "joules", rank, Reading(name, (Term(uri, ("Reading",), _ENERGY_SCALE[kind]),))
    return None


def _entries(doc: Mapping[str, Any], key: str) -> list[Any]:
    """The array at ``doc[key]``; anything else (absent, an object, a number) is none."""
    value = doc.get(key)
    return value if isinstance(value, list) else []


def power_control_watts(uri: str, doc: Mapping[str, Any]) -> Reading | None:
    """Sum of the legacy PowerControl entries that describe the whole chassis."""
    terms = []
    for i, entry in enumerate(_entries(doc, "PowerControl")):
        if not isinstance(entry, Mapping) or absent(entry):
            continue
        if str(entry.get("PhysicalContext")) in PART_CONTEXTS:
            continue
        if number(entry.get("PowerConsumedWatts")) is not None:
            terms.append(Term(uri, ("PowerControl", i, "PowerConsumedWatts")))
    return Reading("Power PowerControl PowerConsumedWatts", tuple(terms)) if terms else None


def legacy_psu_input_watts(uri: str, doc: Mapping[str, Any]) -> Reading | None:
    """Sum of the legacy PowerSupplies[].PowerInputWatts, if every present PSU has one."""
    reading, _ = legacy_psu_readings(uri, doc)
    if reading is None or any(t.efficiency is not None for t in reading.terms):
        return None
    return reading


def legacy_psu_readings(uri: str, doc: Mapping[str, Any]) -> tuple[Reading | None, str]:
    """The legacy PowerSupplies[] as the chassis input: each present PSU's PowerInputWatts,
    or its DC output (PowerOutputWatts, LastPowerOutputWatts) divided by its measured
    EfficiencyPercent; None, and why in the schema's terms, when a PSU has neither."""
    terms: list[Term] = []
    estimated = False
    for i, psu in enumerate(_entries(doc, "PowerSupplies")):
        if not isinstance(psu, Mapping) or absent(psu):
            continue
        if number(psu.get("PowerInputWatts")) is not None:
            terms.append(Term(uri, ("PowerSupplies", i, "PowerInputWatts")))
            continue
        output = next((p for p in ("PowerOutputWatts", "LastPowerOutputWatts")
                       if number(psu.get(p)) is not None), None)
        if output is None:
            return None, "Power.PowerSupplies report no PowerInputWatts"
        if not number(psu.get("EfficiencyPercent")):
            shown = ", ".join(f"{p.get(output):g} W" for p in _entries(doc, "PowerSupplies")
                              if isinstance(p, Mapping) and number(p.get(output)) is not None)
            return None, (f"Power.PowerSupplies report only DC output ({output} {shown}), "
                          "no PowerInputWatts, and no EfficiencyPercent to estimate the input")
        terms.append(Term(uri, ("PowerSupplies", i, output),
                          efficiency=Efficiency(path=("PowerSupplies", i, "EfficiencyPercent"))))
        estimated = True
    if not terms:
        return None, "Power lists no present PowerSupplies"
    what = ("Power PowerSupplies DC output / EfficiencyPercent (an estimate of the input)"
            if estimated else "Power PowerSupplies PowerInputWatts")
    return Reading(what, tuple(terms)), ""


def psu_metrics_input(psu: Mapping[str, Any], metrics_uri: str, metrics: Mapping[str, Any],
                      ) -> tuple[Term | None, bool, str]:
    """A PowerSubsystem PSU's input power: InputPowerWatts, or OutputPowerWatts divided by
    its rated EfficiencyRatings (an estimate, flagged); None and why otherwise."""
    if number(dig(metrics, ("InputPowerWatts", "Reading"))) is not None:
        return Term(metrics_uri, ("InputPowerWatts", "Reading")), False, ""
    output = number(dig(metrics, ("OutputPowerWatts", "Reading")))
    if output is None:
        return None, False, "no InputPowerWatts or OutputPowerWatts"
    ratings = tuple((float(r["LoadPercent"]), float(r["EfficiencyPercent"]))
                    for r in psu.get("EfficiencyRatings") or []
                    if isinstance(r, Mapping) and number(r.get("LoadPercent")) is not None
                    and number(r.get("EfficiencyPercent")))
    capacity = number(psu.get("PowerCapacityWatts"))
    efficiency = Efficiency(curve=ratings, capacity_w=capacity)
    if efficiency.percent({}, output) is None:
        return None, False, ("only OutputPowerWatts (DC output), no InputPowerWatts, and no "
                             "EfficiencyRatings (with PowerCapacityWatts) to estimate the input")
    return Term(metrics_uri, ("OutputPowerWatts", "Reading"), efficiency=efficiency), True, ""


def distribution_readings(uri: str, doc: Mapping[str, Any]) -> tuple[Reading | None,
                                                                     Reading | None]:
    """Watts and energy of a PowerDistributionMetrics resource (a PDU's own totals)."""
    watts = joules = None
    if number(dig(doc, ("PowerWatts", "Reading"))) is not None:
        watts = Reading("PowerDistributionMetrics PowerWatts",
                        (Term(uri, ("PowerWatts", "Reading")),))
    if number(dig(doc, ("EnergykWh", "Reading"))) is not None:
        joules = Reading("PowerDistributionMetrics EnergykWh",
                         (Term(uri, ("EnergykWh", "Reading"), 3.6e6),))
    return watts, joules
