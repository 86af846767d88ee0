"""Register maps: where a meter family keeps its watts and energy, and how to decode them.

Registers are 0-based protocol addresses (what goes on the wire). Manuals that number
registers from 1 (Schneider's "Register 3060") or as ``3xxxx``/``4xxxx`` (Eastron's 30053) are
converted in the shipped maps (this folder's ``maps/``); each map's header says how. Units:
the map's ``W``/``kW`` become watts and ``Wh``/``kWh`` joules (x 3600 / x 3.6e6), after
``scale``. A bad map is a `ConfigError` that names the file, the line and the field.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from computewatch.config import ConfigError, PathError, load_yaml_model, suggest_known

__all__ = ["MAPS_DIR", "FrozenModel", "Register", "RegisterMap", "RegisterType", "Registers",
           "decode_registers", "is_map_path", "load_register_map", "shipped_maps"]

MAPS_DIR = Path(__file__).with_name("maps")
"""Where the shipped register maps live (package data)."""

RegisterType = Literal["uint16", "int16", "uint32", "int32", "uint64", "int64", "float32",
                       "float64"]
_FORMATS: dict[str, tuple[str, int]] = {  # struct code, registers
    "uint16": ("H", 1), "int16": ("h", 1), "uint32": ("I", 2), "int32": ("i", 2),
    "uint64": ("Q", 4), "int64": ("q", 4), "float32": ("f", 2), "float64": ("d", 4),
}
_TO_SI = {"W": 1.0, "kW": 1e3, "Wh": 3600.0, "kWh": 3.6e6}
_POWER_UNITS, _ENERGY_UNITS = ("W", "kW"), ("Wh", "kWh")


def _parse_modulus(value: object) -> object:
    """``2**32`` and ``10**8`` are easier to check against a manual than 4294967296."""
    if isinstance(value, str):
        if m := re.fullmatch(r"\s*(\d+)\s*\*\*\s*(\d+)\s*", value):
            return int(m.group(1)) ** int(m.group(2))
        if re.fullmatch(r"\s*\d+(\.\d*)?[eE]\+?\d+\s*", value):  # YAML 1.1 reads 1e8 as text
            number = float(value)
            return int(number) if number.is_integer() else number
        raise ValueError(f"not a modulus: {value!r} (write e.g. 4294967296, 2**32 or 1e8)")
    return value


class FrozenModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Register(FrozenModel):
    """Where one value lives in the meter and how to turn its registers into a number."""

    address: int = Field(ge=0, le=65535, description="0-based protocol address")
    table: Literal["holding", "input"]
    type: RegisterType
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    unit: Literal["W", "kW", "Wh", "kWh"]
    kind: Literal["gauge", "counter"] | None = None
    modulus: Annotated[int | float, BeforeValidator(_parse_modulus)] | None = Field(
        default=None, gt=0, description="rollover of the raw register, before scale")

    @property
    def words(self) -> int:
        return _FORMATS[self.type][1]

    @property
    def rollover(self) -> int | float | None:
        """The raw value at which the counter wraps to 0: declared, else 2**bits if unsigned."""
        if self.modulus is not None:
            return self.modulus
        if self.type.startswith("uint"):
            return 2 ** (16 * self.words)
        return None

    @property
    def to_si(self) -> float:
        """Raw register value -> watts or joules."""
        return self.scale * _TO_SI[self.unit]

    @model_validator(mode="after")
    def _fits(self) -> Register:
        if self.address + self.words > 65536:
            raise PathError(("address",), f"a {self.type} at {self.address} runs past register "
                            "65535", self.address)
        return self


class Registers(FrozenModel):
    """The catalogue fields a meter can give: at least one of them."""

    watts: Register | None = None
    joules_total: Register | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Registers:
        if self.watts is None and self.joules_total is None:
            raise ValueError("a map needs watts, joules_total or both")
        for name, reg, units, kind in (("watts", self.watts, _POWER_UNITS, "gauge"),
                                       ("joules_total", self.joules_total, _ENERGY_UNITS,
                                        "counter")):
            if reg is None:
                continue
            if reg.unit not in units:
                raise PathError((name, "unit"), f"must be one of {', '.join(units)} for "
                                f"{name}", reg.unit)
            if reg.kind not in (None, kind):
                raise PathError((name, "kind"), f"{name} is a {kind}", reg.kind)
            if reg.modulus is not None and kind != "counter":
                raise PathError((name, "modulus"), "only a counter has a rollover modulus",
                                reg.modulus)
        return self

    def items(self) -> Iterator[tuple[str, Register]]:
        """(catalogue field, register) for the fields this map has, watts first."""
        for name in ("watts", "joules_total"):
            reg = getattr(self, name)
            if reg is not None:
                yield name, reg


class RegisterMap(FrozenModel):
    """One meter family's registers for ``facility_power``."""

    description: str = ""
    registers: Registers


def shipped_maps() -> list[str]:
    """Names of the register maps that ship with computewatch (file names without .yaml)."""
    return sorted(p.stem for p in MAPS_DIR.glob("*.yaml"))


def is_map_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or ref.endswith((".yaml", ".yml"))


def load_register_map(ref: str | Path) -> RegisterMap:
    """A shipped map by name (``schneider-pm5000``) or a map file by path; ConfigError if bad."""
    text = str(ref)
    if isinstance(ref, Path) or is_map_path(text):
        return load_yaml_model(Path(ref), RegisterMap)
    if text not in shipped_maps():
        raise ConfigError("modbus", f"unknown register map {text!r} "
                          f"({suggest_known(text, shipped_maps())}); or give a path to a .yaml "
                          "file")
    return load_yaml_model(MAPS_DIR / f"{text}.yaml", RegisterMap)


def decode_registers(words: Sequence[int], type_: str, word_order: str = "big",
                     byte_order: str = "big") -> int | float:
    """The number that ``words`` (16-bit registers as read) hold, per the map's layout."""
    code, n = _FORMATS[type_]
    if len(words) != n:
        raise ValueError(f"{type_} needs {n} registers, got {len(words)}")
    ordered = list(words) if word_order == "big" else list(reversed(words))
    data = b"".join(int(w).to_bytes(2, "big" if byte_order == "big" else "little")
                    for w in ordered)
    return struct.unpack(f">{code}", data)[0]
