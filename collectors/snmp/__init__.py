"""Facility power meters over SNMP (UPSes, rack PDUs), one series per configured device.

Each `SnmpDevice` names a host and an OID *profile*: a YAML file that says where a device
keeps its power (``watts``) and energy (``joules_total``) and in what unit; the shipped ones
are in ``profiles/``.

This folder's README.md states the profile format, the decisions, the failure codes and the
metrics; sample.yaml is the sample configuration. Modules, one job each: `_profiles` (OID
profiles), `_config` (`SnmpDevice`), `_values` (SNMP answers as numbers, pysnmp's errors as
codes), `_collector` (polling every device at once). Loading the node config imports
neither pysnmp nor the collector: `SnmpCollector` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from computewatch.collectors.snmp._config import SnmpDevice
from computewatch.collectors.snmp._profiles import SnmpProfile, load_profile, shipped_profiles

if TYPE_CHECKING:
    from computewatch.collectors.snmp._collector import EMITTED, SnmpCollector
    from computewatch.collectors.snmp._values import ERROR_TYPES

__all__ = [
    "EMITTED",
    "ERROR_TYPES",
    "SnmpCollector",
    "SnmpDevice",
    "SnmpProfile",
    "load_profile",
    "shipped_profiles",
]


def __getattr__(name: str) -> object:
    """The collector and its value readers, imported on first use (the node config needs only
    `_config` and `_profiles`)."""
    if name in ("EMITTED", "SnmpCollector"):
        from computewatch.collectors.snmp import _collector as module
    elif name == "ERROR_TYPES":
        from computewatch.collectors.snmp import _values as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value
