"""Pure reading of Redfish documents: where a chassis keeps its watts and energy.

A reading is a sum of terms, each one number in one resource (``doc[path] * scale``), so the
collector can remember where the readings are (a plan) and GET only those resources each run.
The README's "How a chassis reading is found" states the order of the sources and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PART_CONTEXTS", "ChassisPlan", "Reading", "Term", "absent", "dig",
           "environment_readings", "last_segment", "legacy_psu_input_watts", "number", "odata_link",
           "power_control_watts", "sensor_reading"]

PART_CONTEXTS = frozenset({
    "CPU", "CPUSubsystem", "GPU", "GPUSubsystem", "FPGA", "Accelerator", "ASIC", "Memory",
    "MemorySubsystem", "StorageDevice", "StorageSubsystem", "NetworkingDevice",
    "ExpansionSubsystem", "Backplane", "Board", "VoltageRegulator", "Fan", "CoolingSubsystem",
    "Pump", "Transceiver", "Battery", "TrustedModule", "Switch", "Manager",
})
"""``PhysicalContext`` values of a part inside a chassis: PowerControl entries with one of
these are a breakdown of the chassis power, not added to it."""
_ENERGY_SCALE = {"EnergyJoules": 1.0, "EnergyWh": 3600.0, "EnergykWh": 3.6e6}


@dataclass(frozen=True, slots=True)
class Term:
    """One number in one resource: ``doc[path...] * scale``."""

    uri: str
    path: tuple[str | int, ...]
    scale: float = 1.0


@dataclass(frozen=True, slots=True)
class Reading:
    """A quantity as the sum of terms, and where it came from (for messages)."""

    what: str
    terms: tuple[Term, ...]


@dataclass(slots=True)
class ChassisPlan:
    chassis: str
    uri: str
    meter: str = ""
    watts: Reading | None = None
    joules: Reading | None = None
    contained_by: str | None = None


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
    terms = []
    for i, psu in enumerate(_entries(doc, "PowerSupplies")):
        if not isinstance(psu, Mapping) or absent(psu):
            continue
        if number(psu.get("PowerInputWatts")) is None:
            return None
        terms.append(Term(uri, ("PowerSupplies", i, "PowerInputWatts")))
    return Reading("Power PowerSupplies PowerInputWatts", tuple(terms)) if terms else None
