"""OID profiles: which OIDs give a device's watts and joules, in which units.

Shipped profiles live in this folder's ``profiles/`` (`shipped_profiles`); any other path is a
user profile in the same form (the README shows one). Profile errors name the file, line and
field (`computewatch.config`). Units are converted to the catalogue's: ``0.1 kWh`` steps become
``360000 J``; the factor ``scale x unit`` is rounded to 12 significant digits, so 19516 x 0.1
kWh is exactly 7025760000 J rather than 7025760000.0000005.

A source is one OID or the sum of several ``parts`` (three phase columns, each with its own
scale); ``load_evidence`` names readings that show the device carries a load, so a source
that reads 0 beside one of them above 0 is "not measured", not 0. A shipped profile's
``detect`` says which devices ``profile: auto`` gives it to (`candidates`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from computewatch.config import (
    ConfigError,
    PathError,
    load_yaml_model,
    load_yaml_model_from_text,
    suggest_known,
)

__all__ = ["AUTO", "ENERGY_UNITS", "POWER_UNITS", "Detect", "EnergySource", "FrozenModel",
           "OidFactor", "Part", "PowerSource", "ProfileFields", "SnmpProfile", "Source",
           "auto_profiles", "is_profile_name", "load_profile", "shipped_profiles"]

AUTO = "auto"
"""The profile name that asks the collector to pick a shipped profile per device."""

POWER_UNITS: dict[str, float] = {"W": 1.0, "kW": 1e3, "MW": 1e6}
ENERGY_UNITS: dict[str, float] = {"J": 1.0, "kJ": 1e3, "MJ": 1e6, "Wh": 3600.0,
                                  "kWh": 3.6e6, "MWh": 3.6e9}

_PROFILE_DIR = "profiles"
_OID = re.compile(r"^[0-2](\.\d+)+$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _oid(value: object) -> str:
    """A numeric OID: MIB names would need the MIB files on every agent, so none are resolved."""
    if not isinstance(value, str):
        raise ValueError("write the OID as a quoted string, e.g. '1.3.6.1.2.1.33.1.4.4.1.4'")
    text = value.strip().lstrip(".")
    if not _OID.match(text):
        raise ValueError(f"not a numeric OID: {value!r} (dotted numbers such as "
                         "1.3.6.1.2.1.33.1.4.4.1.4; MIB names are not resolved)")
    return text


Oid = Annotated[str, BeforeValidator(_oid)]
Scale = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _as_list(value: object) -> object:
    """A single source may be written without the list around it."""
    return [value] if isinstance(value, Mapping) else value


class FrozenModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OidFactor(FrozenModel):
    """A second scalar multiplied into a reading, such as the rated watts a load % applies to."""

    oid: Oid
    scale: Scale = 1.0
    name: str = ""


class Part(FrozenModel):
    """One OID of a reading: a scalar, or a table column summed over its rows (``sum``)."""

    oid: Oid
    name: str = ""
    sum: bool = False
    scale: Scale = 1.0

    @property
    def label(self) -> str:
        return f"{self.name} ({self.oid})" if self.name else self.oid


class Source(FrozenModel):
    """Where one field is read: an OID (or a column to sum) or the sum of several ``parts``,
    its scale and its unit."""

    UNITS: ClassVar[dict[str, float]] = {}
    METRIC: ClassVar[str] = ""
    KIND: ClassVar[str] = ""

    oid: Oid | None = None
    parts: list[Part] | None = Field(None, min_length=1)
    name: str = ""
    mib: str = ""
    sum: bool = False
    scale: Scale = 1.0
    unit: str
    type: Literal["gauge", "counter"] | None = None
    times: OidFactor | None = None
    load_evidence: list[Part] | None = Field(None, min_length=1)

    @field_validator("load_evidence", mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        return _as_list(value)

    @model_validator(mode="after")
    def _one_form(self) -> Source:
        if (self.oid is None) == (self.parts is None):
            raise PathError(("oid",), "give oid (one OID) or parts (a sum of OIDs), not both "
                                      "and not neither")
        if self.parts is not None and self.sum:
            raise PathError(("sum",), "sum: true belongs on each part that is a table column")
        return self

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, value: str) -> str:
        if value not in cls.UNITS:
            raise ValueError(f"unit {value!r} is not one for {cls.METRIC} "
                             f"(use {', '.join(cls.UNITS)})")
        return value

    @field_validator("type")
    @classmethod
    def _matching_kind(cls, value: str | None) -> str | None:
        if value is not None and value != cls.KIND:
            other = "joules_total" if cls.METRIC == "watts" else "watts"
            raise ValueError(f"{cls.METRIC} is a {cls.KIND}; a {value} belongs under {other}")
        return value

    @property
    def factor(self) -> float:
        """Raw reading to SI unit, rounded so that 0.1 kWh is exactly 360000 J."""
        return float(f"{self.scale * self.UNITS[self.unit]:.12g}")

    def terms(self) -> list[Part]:
        """The OIDs added up: the parts, or the one OID (its scale is the source's)."""
        if self.parts is not None:
            return list(self.parts)
        assert self.oid is not None
        return [Part(oid=self.oid, name=self.name, sum=self.sum)]

    @property
    def label(self) -> str:
        if self.parts is None:
            return f"{self.name} ({self.oid})" if self.name else str(self.oid)
        summed = " + ".join(p.name or p.oid for p in self.parts)
        return f"{self.name} ({summed})" if self.name else summed


class PowerSource(Source):
    UNITS: ClassVar[dict[str, float]] = POWER_UNITS
    METRIC: ClassVar[str] = "watts"
    KIND: ClassVar[str] = "gauge"


class EnergySource(Source):
    UNITS: ClassVar[dict[str, float]] = ENERGY_UNITS
    METRIC: ClassVar[str] = "joules_total"
    KIND: ClassVar[str] = "counter"


class ProfileFields(FrozenModel):
    """The catalogue fields a profile fills, each from one source or a list of fallbacks."""

    watts: list[PowerSource] | None = Field(None, min_length=1)
    joules_total: list[EnergySource] | None = Field(None, min_length=1)

    @field_validator("watts", "joules_total", mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        return _as_list(value)

    @model_validator(mode="after")
    def _something(self) -> ProfileFields:
        if self.watts is None and self.joules_total is None:
            raise PathError((), "a profile reads watts, joules_total or both")
        return self

    def items(self) -> list[tuple[str, list[Source]]]:
        out: list[tuple[str, list[Source]]] = []
        if self.watts:
            out.append(("watts", list(self.watts)))
        if self.joules_total:
            out.append(("joules_total", list(self.joules_total)))
        return out


class Detect(FrozenModel):
    """Which devices ``profile: auto`` gives this profile to.

    A device qualifies when every ``requires`` OID has an instance under it (one GETNEXT per
    OID) and, with ``needs_sys_object_id``, its sysObjectID starts with a listed prefix (a
    vendor profile that reads a standard MIB). Qualifying profiles are ranked: a matching
    ``sys_object_id`` prefix first, then vendor profiles before the ``fallback`` ones
    (standard MIBs that many vendors fill badly), then the higher ``priority``.
    """

    requires: list[Oid] = Field(min_length=1)
    sys_object_id: list[Oid] = []
    needs_sys_object_id: bool = False
    fallback: bool = False
    priority: int = 0

    @model_validator(mode="after")
    def _prefix_given(self) -> Detect:
        if self.needs_sys_object_id and not self.sys_object_id:
            raise PathError(("needs_sys_object_id",), "needs the sys_object_id prefixes")
        return self

    @field_validator("requires", "sys_object_id", mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def matches(self, sys_object_id: str) -> int:
        """Length of the longest listed prefix of the device's sysObjectID (0: none)."""
        return max((len(p) for p in self.sys_object_id
                    if sys_object_id == p or sys_object_id.startswith(p + ".")), default=0)

    def rank(self, sys_object_id: str, present: set[str]) -> tuple[int, int, int, int] | None:
        """Sort key of a qualifying profile (larger is better), or None when it does not
        qualify for a device with this sysObjectID and these ``requires`` OIDs present."""
        matched = self.matches(sys_object_id)
        if not set(self.requires) <= present or (self.needs_sys_object_id and not matched):
            return None
        return (matched > 0, not self.fallback, self.priority, matched)


class SnmpProfile(FrozenModel):
    """An OID profile: which OIDs give a device's watts and joules, in which units."""

    name: str = ""
    description: str = ""
    mib: str = ""
    detect: Detect | None = None
    fields: ProfileFields

    def sources(self) -> list[Source]:
        return [src for _, sources in self.fields.items() for src in sources]

    def scalar_oids(self) -> tuple[str, ...]:
        """Every OID read with one GET (scalar parts, factors, load evidence), in order."""
        oids: list[str] = []
        for src in self.sources():
            parts = src.terms() + list(src.load_evidence or [])
            wanted = [p.oid for p in parts if not p.sum] + ([src.times.oid] if src.times else [])
            oids += [oid for oid in wanted if oid not in oids]
        return tuple(oids)

    def walks(self) -> int:
        """Table columns walked at most in one run (each a GETBULK walk)."""
        return sum(p.sum for src in self.sources()
                   for p in src.terms() + list(src.load_evidence or []))

    def mib_of(self, src: Source) -> str:
        return src.mib or self.mib


@cache
def shipped_profiles() -> tuple[str, ...]:
    """Names of the profiles shipped in ``collectors/snmp/profiles/``."""
    folder = resources.files("computewatch.collectors.snmp") / _PROFILE_DIR
    return tuple(sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                        if p.name.endswith(".yaml")))


def is_profile_name(ref: str) -> bool:
    return bool(_NAME.match(ref)) and not ref.endswith((".yaml", ".yml"))


@cache
def auto_profiles() -> tuple[SnmpProfile, ...]:
    """The shipped profiles that ``profile: auto`` chooses from (those with ``detect``)."""
    return tuple(p for p in map(load_profile, shipped_profiles()) if p.detect is not None)


def load_profile(ref: str) -> SnmpProfile:
    """A shipped profile by name, or a user profile from a YAML path; `ConfigError` if bad."""
    if is_profile_name(ref):
        known = list(shipped_profiles())
        if ref == AUTO:
            raise ConfigError(ref, "'auto' is chosen per device by the collector, not loaded")
        if ref not in known:
            raise ConfigError(ref, f"unknown SNMP profile ({suggest_known(ref, known)}); "
                                   "give a shipped name or a path to a YAML file")
        shipped = resources.files("computewatch.collectors.snmp") / _PROFILE_DIR / f"{ref}.yaml"
        text = shipped.read_text("utf-8")
        profile = load_yaml_model_from_text(text, SnmpProfile,
                                            source_name=f"collectors/snmp/{_PROFILE_DIR}/{ref}.yaml")
        stem = ref
    else:
        path = Path(ref).expanduser()
        profile = load_yaml_model(path, SnmpProfile)
        stem = path.stem
    return profile if profile.name else profile.model_copy(update={"name": stem})
