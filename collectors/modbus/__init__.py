"""Facility power meters over Modbus TCP: one ``facility_power`` series per meter.

A meter is read through a *register map*: a YAML file naming, for ``watts`` and
``joules_total``, the register address, table, data type, word and byte order, scale, unit and
(for the energy counter) its rollover modulus. Maps for common meter families ship in
``maps/`` (`shipped_maps`); a site can point a meter at its own file. The device seam is the
network itself: tests and the simulator run a real pymodbus server on loopback, so the code
path is the one a real meter sees.

This folder's README.md states the decisions, the failure codes and the metrics; sample.yaml
is the sample configuration. Modules, one job each: `_maps` (register maps, decoding),
`_config` (`ModbusMeter`), `_state` (per meter and endpoint, counter unwrapping), `_wire`
(Modbus TCP requests through pymodbus), `_collector` (polling). Loading the node config
imports neither pymodbus nor the collector: `ModbusCollector` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from computewatch.collectors.modbus._config import ModbusMeter
from computewatch.collectors.modbus._maps import (
    MAPS_DIR,
    Register,
    RegisterMap,
    Registers,
    decode_registers,
    load_register_map,
    shipped_maps,
)

if TYPE_CHECKING:
    from computewatch.collectors.modbus._collector import EMITTED, ModbusCollector

__all__ = [
    "EMITTED",
    "MAPS_DIR",
    "ModbusCollector",
    "ModbusMeter",
    "Register",
    "RegisterMap",
    "Registers",
    "decode_registers",
    "load_register_map",
    "shipped_maps",
]


def __getattr__(name: str) -> object:
    """The collector itself, imported on first use (the node config needs only `_config` and
    `_maps`)."""
    if name not in ("EMITTED", "ModbusCollector"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from computewatch.collectors.modbus import _collector

    value = getattr(_collector, name)
    globals()[name] = value  # later look-ups skip this function
    return value
