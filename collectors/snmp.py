"""Facility power meters over SNMP (UPSes, rack PDUs), one series per configured device.

Each `SnmpDevice` names a host and an OID *profile*: a YAML file that says where a device
keeps its power (``watts``) and energy (``joules_total``) and in what unit. Shipped profiles
live in ``collectors/snmp_profiles/``: ``ups_mib`` (RFC 1628), ``apc_rpdu2`` and ``apc_rpdu``
(APC rack PDUs), ``apc_ups`` (APC PowerNet UPS), ``eaton_xups`` (Eaton XUPS-MIB),
``tripplite_ups`` and ``tripplite_pdu``. Any other path is a user profile in the same form::

    name: site_meter
    fields:
      watts:                       # one source, or a list tried in order
        oid: 1.3.6.1.4.1.99999.1.2.0
        scale: 0.1                 # raw x scale is in `unit`
        unit: kW                   # W, kW, MW (watts); J, kJ, MJ, Wh, kWh, MWh (joules_total)
      joules_total:
        - oid: 1.3.6.1.4.1.99999.1.3   # a table column ...
          sum: true                    # ... summed over its rows (one per phase, line, PDU)
          unit: kWh
          type: counter

A source may also multiply in a second scalar (``times: {oid, scale}``), for "load share x
rated watts". Profile errors name the file, line and field (`computewatch.config`).

`SnmpCollector.collect` is synchronous, as the agent wants; inside, every device is queried at
once on a private asyncio loop (pysnmp's asyncio API), each with its own SNMP engine kept
between runs. A run lasts as long as the slowest device: at most ``timeout x (retries + 1)``
per request, one GET for every scalar of the profile and one GETBULK walk per summed column.

Decisions:

- The first source of a field that answers with a number wins; later ones are fallbacks
  (APC rPDU2 power, then the legacy rPDU watts). A summed column must answer for every row.
- A negative reading means "not measured" (APC answers -1 for what a model does not meter):
  the next source is tried; if none measures the field, it is absent, logged once and not
  counted: it is a property of the device, not a failure.
- Units are converted to the catalogue's: ``0.1 kWh`` steps become ``360000 J``. The factor
  ``scale x unit`` is rounded to 12 significant digits, so 19516 x 0.1 kWh is exactly
  7025760000 J rather than 7025760000.0000005.
- Energy counters are reported as the device counts them. A Counter32 wraps at 2**32 steps,
  an Integer32 at 2**31 - 1, and APC and Eaton let operators reset their meters: this
  collector does not unwrap; the PUE derivation treats any decrease as a wrap or reset.
- Numbers sent as text (DisplayString "12.5") are accepted; other non-numeric types are
  ``bad_value``.
- ``source`` is ``snmp://host:port``; ``meter`` defaults to the host. Two devices behind one
  address (different communities or contexts) need distinct meters.
- A run raises only `DriverAbsent` (no devices configured). Dead meters do not make the
  collector "down": they are counted below, and a meter whose ``facility_power`` series
  stops is the per-meter signal (the error counter has no per-device label).

Failures, per device and never stopping the others, each counted in
``agent.collector_errors_total{collector="snmp", error_type=...}`` (one per device and run,
or one per failed field and run) and logged once per episode, naming the source:

- ``snmp_timeout``: no answer within ``timeout x (retries + 1)``: host down, port closed or
  filtered, or, in SNMPv2c, a wrong community (agents drop such requests silently, so it is
  indistinguishable from a timeout).
- ``snmp_unresolved``: the host name does not resolve.
- ``snmp_auth``: SNMPv3 wrong key, unknown user, unsupported security level or context.
- ``snmp_no_such_object``: no source of a field exists on the device (noSuchObject,
  noSuchInstance, an empty table column); the other fields are still reported.
- ``snmp_bad_value``: a value that is not a number, or not finite after scaling.
- ``snmp_error``: anything else (an SNMP error status such as genErr, a pysnmp failure).

The error types are prefixed ``snmp_`` (as the NVML collector's are ``nvml_``) because the
agent itself counts whole-run failures of this collector as
``collector_errors_total{collector="snmp", error_type="timeout"}``: two producers must not
write one series.

SNMPv3 privacy (``priv_protocol``) needs the ``cryptography`` package; without it the
collector refuses the configuration at start rather than failing every run.

Metrics
-------

- facility_power
  - tags:
    - hub, cluster, site (placement, from the agent's labels; no node: a meter is not a node)
    - meter (the device's ``meter``, default its host), scope (``facility`` | ``it`` |
      ``cooling`` | ``other``), source (``snmp://host:port``)
  - fields:
    - watts (float, watts): output power; every profile
    - joules_total (float, joules, counter): energy as the device counts it (may reset or
      wrap); apc_rpdu2, apc_ups, eaton_xups and user profiles with an energy source
- agent
  - tags: node, hub, cluster, site, collector (``snmp``), error_type (``snmp_timeout``,
    ``snmp_unresolved``, ``snmp_auth``, ``snmp_no_such_object``, ``snmp_bad_value``,
    ``snmp_error``)
  - fields:
    - collector_errors_total (float, count, counter): failed device polls and fields since
      the agent started

Example output (line protocol)::

    facility_power,hub=jjj,meter=pdu-r01-a,scope=it,site=bj-ai,source=snmp://10.8.0.21:161 joules_total=7025760000,watts=1210 1772416800000000000

Raw output for a bug report: ``snmpwalk -v2c -c <community> <host> <oid of the profile>``,
or a recording: ``snmpsim-record-commands --agent-udpv4-endpoint=<host> --community=<c>``.
"""  # noqa: E501 (the example line is one line of line protocol)

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from computewatch import catalog
from computewatch.collectors._base import DriverAbsent, placement_labels
from computewatch.collectors._settings import Duration
from computewatch.config import (
    ConfigError,
    PathError,
    load_yaml_model,
    load_yaml_model_from_text,
    suggest_known,
)
from computewatch.samples import Sample

__all__ = [
    "EMITTED",
    "ERROR_TYPES",
    "SnmpCollector",
    "SnmpDevice",
    "SnmpProfile",
    "load_profile",
    "shipped_profiles",
]

log = logging.getLogger(__name__)

EMITTED: tuple[str, ...] = (
    "facility_power.watts",
    "facility_power.joules_total",
    "agent.collector_errors_total",
)
"""Every metric this collector can emit (``measurement.field``)."""

ERROR_TYPES: tuple[str, ...] = (
    "snmp_timeout",
    "snmp_unresolved",
    "snmp_auth",
    "snmp_no_such_object",
    "snmp_bad_value",
    "snmp_error",
)
"""The ``error_type`` values of ``agent.collector_errors_total{collector="snmp"}``."""

POWER_UNITS: dict[str, float] = {"W": 1.0, "kW": 1e3, "MW": 1e6}
ENERGY_UNITS: dict[str, float] = {"J": 1.0, "kJ": 1e3, "MJ": 1e6, "Wh": 3600.0,
                                  "kWh": 3.6e6, "MWh": 3.6e9}

_PROFILE_DIR = "snmp_profiles"
_MAX_ROWS = 4096  # a summed column is a few phases or PDUs, not a whole MIB
_MAX_REPETITIONS = 25
_OID = re.compile(r"^[0-2](\.\d+)+$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- profiles -------------------------------------------------------------------------------

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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OidFactor(_Model):
    """A second scalar multiplied into a reading, such as the rated watts a load % applies to."""

    oid: Oid
    scale: Scale = 1.0
    name: str = ""


class _Source(_Model):
    """Where one field is read: an OID (or a column to sum), its scale and its unit."""

    UNITS: ClassVar[dict[str, float]] = {}
    METRIC: ClassVar[str] = ""
    KIND: ClassVar[str] = ""

    oid: Oid
    name: str = ""
    sum: bool = False
    scale: Scale = 1.0
    unit: str
    type: Literal["gauge", "counter"] | None = None
    times: OidFactor | None = None

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

    @property
    def label(self) -> str:
        return f"{self.name} ({self.oid})" if self.name else self.oid


class PowerSource(_Source):
    UNITS: ClassVar[dict[str, float]] = POWER_UNITS
    METRIC: ClassVar[str] = "watts"
    KIND: ClassVar[str] = "gauge"


class EnergySource(_Source):
    UNITS: ClassVar[dict[str, float]] = ENERGY_UNITS
    METRIC: ClassVar[str] = "joules_total"
    KIND: ClassVar[str] = "counter"


class ProfileFields(_Model):
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

    def items(self) -> list[tuple[str, list[_Source]]]:
        out: list[tuple[str, list[_Source]]] = []
        if self.watts:
            out.append(("watts", list(self.watts)))
        if self.joules_total:
            out.append(("joules_total", list(self.joules_total)))
        return out


class SnmpProfile(_Model):
    """An OID profile: which OIDs give a device's watts and joules, in which units."""

    name: str = ""
    description: str = ""
    fields: ProfileFields

    def scalar_oids(self) -> tuple[str, ...]:
        """Every OID read with one GET (non-summed sources and their factors), in order."""
        oids: list[str] = []
        for _, sources in self.fields.items():
            for src in sources:
                for oid in ([] if src.sum else [src.oid]) + ([src.times.oid] if src.times else []):
                    if oid not in oids:
                        oids.append(oid)
        return tuple(oids)

    def walks(self) -> int:
        return sum(src.sum for _, sources in self.fields.items() for src in sources)


@cache
def shipped_profiles() -> tuple[str, ...]:
    """Names of the profiles shipped in ``collectors/snmp_profiles/``."""
    folder = resources.files("computewatch.collectors") / _PROFILE_DIR
    return tuple(sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                        if p.name.endswith(".yaml")))


def _is_name(ref: str) -> bool:
    return bool(_NAME.match(ref)) and not ref.endswith((".yaml", ".yml"))


def load_profile(ref: str) -> SnmpProfile:
    """A shipped profile by name, or a user profile from a YAML path; `ConfigError` if bad."""
    if _is_name(ref):
        known = list(shipped_profiles())
        if ref not in known:
            raise ConfigError(ref, f"unknown SNMP profile ({suggest_known(ref, known)}); "
                                   "give a shipped name or a path to a YAML file")
        shipped = resources.files("computewatch.collectors") / _PROFILE_DIR / f"{ref}.yaml"
        text = shipped.read_text("utf-8")
        profile = load_yaml_model_from_text(text, SnmpProfile,
                                            source_name=f"collectors/{_PROFILE_DIR}/{ref}.yaml")
        stem = ref
    else:
        path = Path(ref).expanduser()
        profile = load_yaml_model(path, SnmpProfile)
        stem = path.stem
    return profile if profile.name else profile.model_copy(update={"name": stem})


# --- device configuration ----------------------------------------------------------------

AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "3DES", "AES", "AES192", "AES256"]


class SnmpDevice(_Model):
    """One SNMP meter: where it answers, how to authenticate, which profile reads it.

    Secrets never sit in the model's repr: the community is a `SecretStr`, and SNMPv3 keys
    are only ever named by the environment variables that hold them.
    """

    host: str = Field(min_length=1)
    port: int = Field(161, ge=1, le=65535)
    version: Literal["2c", "3"] = "2c"
    community: SecretStr | None = None
    community_env: str | None = None
    user: str | None = None
    auth_protocol: AuthProtocol | None = None
    auth_key_env: str | None = None
    priv_protocol: PrivProtocol | None = None
    priv_key_env: str | None = None
    context: str = ""
    profile: str = Field(min_length=1)
    meter: str | None = None
    scope: Literal["facility", "it", "cooling", "other"] = "facility"
    timeout: Duration = 2.0
    retries: int = Field(1, ge=0, le=10)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: object) -> object:
        """YAML reads ``version: 3`` as a number and people write ``v2c``: both are meant."""
        text = str(value).strip().lower().removeprefix("v") if value is not None else value
        return text if text in ("2c", "3") else value

    @field_validator("community_env", "auth_key_env", "priv_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV.match(value):
            raise ValueError(f"not an environment variable name: {value!r}")
        return value

    @field_validator("profile")
    @classmethod
    def _profile_ref(cls, value: str) -> str:
        if _is_name(value):
            known = list(shipped_profiles())
            if value not in known:
                raise ValueError(f"unknown SNMP profile {value!r} ({suggest_known(value, known)};"
                                 " or a path to a YAML file)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SnmpDevice:
        if self.community is not None and self.community_env is not None:
            raise PathError(("community_env",), "give community or community_env, not both")
        v3 = ("user", "auth_protocol", "auth_key_env", "priv_protocol", "priv_key_env")
        if self.version == "2c":
            for key in v3:
                if getattr(self, key) is not None:
                    raise PathError((key,), "is for SNMPv3 (version: '3')")
            return self
        if self.community is not None or self.community_env is not None:
            key = "community" if self.community is not None else "community_env"
            raise PathError((key,), "is for SNMPv2c; SNMPv3 authenticates with user and keys")
        if not self.user:
            raise PathError(("user",), "SNMPv3 needs a user")
        for proto, env in (("auth_protocol", "auth_key_env"), ("priv_protocol", "priv_key_env")):
            if (getattr(self, proto) is None) != (getattr(self, env) is None):
                missing = env if getattr(self, env) is None else proto
                raise PathError((missing,), f"{proto} and {env} go together")
        if self.priv_protocol is not None and self.auth_protocol is None:
            raise PathError(("priv_protocol",), "SNMPv3 privacy needs authentication too "
                                                "(auth_protocol, auth_key_env)")
        return self

    @property
    def source(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"snmp://{host}:{self.port}"


# --- reading values -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Problem:
    """Why a source gave no value: no_such_object, bad_value or not_measured, and detail."""

    kind: str
    detail: str


_WORST = {"bad_value": 2, "no_such_object": 1, "not_measured": 0}


class _DeviceFailure(Exception):
    """The device as a whole did not answer a request; ends its poll for this run."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _number(value: Any, what: str) -> tuple[float | None, _Problem | None]:
    """An SNMP value as a number, or why not."""
    from pyasn1.type import univ
    from pysnmp.proto import rfc1902, rfc1905

    if value is None or isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance
                                   | rfc1905.EndOfMibView):
        kind = type(value).__name__ if value is not None else "no value"
        hint = ("; a scalar needs its instance suffix (.0), a table column needs sum: true"
                if isinstance(value, rfc1905.NoSuchInstance | rfc1905.NoSuchObject) else "")
        return None, _Problem("no_such_object", f"{what}: {kind}{hint}")
    if isinstance(value, rfc1902.IpAddress | rfc1902.Opaque | rfc1902.Bits):
        return None, _Problem("bad_value", f"{what}: a {type(value).__name__}, not a number")
    if isinstance(value, univ.Integer):
        number = float(int(value))
    elif isinstance(value, univ.OctetString):
        text = bytes(value).decode("utf-8", "replace").strip()
        try:
            number = float(text)
        except ValueError:
            return None, _Problem("bad_value", f"{what}: text {text[:40]!r}, not a number")
        if not math.isfinite(number):
            return None, _Problem("bad_value", f"{what}: {text!r} is not a finite number")
    else:
        return None, _Problem("bad_value", f"{what}: a {type(value).__name__}, not a number")
    if number < 0:
        return None, _Problem("not_measured", f"{what} = {number:g} (not measured)")
    return number, None


def _error_type(indication: object) -> str:
    """pysnmp's errorIndication as one of `ERROR_TYPES`."""
    name = type(indication).__name__
    if name == "RequestTimedOut":
        return "snmp_timeout"
    if name in {"WrongDigest", "UnknownUserName", "UnknownSecurityName", "AuthenticationError",
                "AuthenticationFailure", "UnsupportedSecurityLevel", "NotInTimeWindow",
                "DecryptionError", "EncryptionError", "UnsupportedAuthProtocol",
                "UnsupportedPrivProtocol", "NoSuchContext", "NoSuchView", "NotInView",
                "NoAccessEntry", "NoGroupName"}:
        return "snmp_auth"
    return "snmp_error"


@cache
def _hlapi() -> Any:
    """pysnmp's asyncio high-level API, imported on first use: the agent may never need it."""
    import pysnmp.hlapi.v3arch.asyncio as hlapi

    return hlapi


_AUTH = {"MD5": "usmHMACMD5AuthProtocol", "SHA": "usmHMACSHAAuthProtocol",
         "SHA224": "usmHMAC128SHA224AuthProtocol", "SHA256": "usmHMAC192SHA256AuthProtocol",
         "SHA384": "usmHMAC256SHA384AuthProtocol", "SHA512": "usmHMAC384SHA512AuthProtocol"}
_PRIV = {"DES": "usmDESPrivProtocol", "3DES": "usm3DESEDEPrivProtocol",
         "AES": "usmAesCfb128Protocol", "AES192": "usmAesCfb192Protocol",
         "AES256": "usmAesCfb256Protocol"}


@dataclass
class _Device:
    """One configured device during the collector's life: config, secrets, engine, episodes."""

    cfg: SnmpDevice
    profile: SnmpProfile
    secrets: dict[str, str]
    labels: dict[str, str]
    name: str
    engine: Any = None
    failing: dict[str, str] = field(default_factory=dict)  # episode key -> error kind

    def auth(self) -> Any:
        hl = _hlapi()
        if self.cfg.version == "2c":
            return hl.CommunityData(self.secrets["community"], mpModel=1)
        auth = _AUTH[self.cfg.auth_protocol] if self.cfg.auth_protocol else "usmNoAuthProtocol"
        priv = _PRIV[self.cfg.priv_protocol] if self.cfg.priv_protocol else "usmNoPrivProtocol"
        return hl.UsmUserData(self.cfg.user, self.secrets.get("auth"), self.secrets.get("priv"),
                              authProtocol=getattr(hl, auth), privProtocol=getattr(hl, priv))

    def budget_s(self) -> float:
        """A safety net over pysnmp's own timeouts: every request timing out on every try,
        plus slack for a busy loop."""
        requests = 1 + self.profile.walks()
        return self.cfg.timeout * (self.cfg.retries + 1) * requests + 2.0


def _secret(cfg: SnmpDevice, env: str, what: str) -> str:
    value = os.environ.get(env)
    if not value:
        raise ConfigError(f"snmp device {cfg.source}",
                          f"environment variable {env} ({what}) is not set or empty")
    return value


def _secrets(cfg: SnmpDevice) -> dict[str, str]:
    """Read the device's secrets from the environment once, at start; never logged."""
    if cfg.version == "2c":
        if cfg.community_env:
            return {"community": _secret(cfg, cfg.community_env, "community")}
        return {"community": cfg.community.get_secret_value() if cfg.community else "public"}
    out = {}
    if cfg.auth_key_env:
        out["auth"] = _secret(cfg, cfg.auth_key_env, "SNMPv3 authentication key")
    if cfg.priv_key_env:
        if importlib.util.find_spec("cryptography") is None:
            raise ConfigError(f"snmp device {cfg.source}",
                              f"SNMPv3 privacy ({cfg.priv_protocol}) needs the 'cryptography' "
                              "package: pip install cryptography")
        out["priv"] = _secret(cfg, cfg.priv_key_env, "SNMPv3 privacy key")
    return out


# --- the collector --------------------------------------------------------------------------

class SnmpCollector:
    """Reads every configured SNMP meter at once; a dead meter never delays or stops the others."""

    name = "snmp"

    def __init__(self, labels: Mapping[str, str], devices: Sequence[SnmpDevice]) -> None:
        place = placement_labels(labels)
        self._agent_labels = {**place, "collector": self.name}
        facility = {k: v for k, v in place.items() if k != "node"}  # a meter is not a node
        profiles: dict[str, SnmpProfile] = {}
        self._devices: list[_Device] = []
        seen: set[tuple[str, str]] = set()
        for cfg in devices:
            if cfg.profile not in profiles:
                profiles[cfg.profile] = load_profile(cfg.profile)
            meter = cfg.meter or cfg.host
            if (cfg.source, meter) in seen:  # one series for two devices: refuse at start
                raise ConfigError(f"snmp device {cfg.source}",
                                  f"two devices with meter {meter!r} at this address; give "
                                  "each a distinct meter")
            seen.add((cfg.source, meter))
            self._devices.append(_Device(
                cfg, profiles[cfg.profile], _secrets(cfg),
                {**facility, "meter": meter, "scope": cfg.scope, "source": cfg.source},
                f"{cfg.source} (meter {meter}, profile {profiles[cfg.profile].name})"))
        self._errors: Counter[str] = Counter()  # error_type -> count since agent start
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = threading.Lock()  # held by a run; close() must not pull the loop away
        self._close_when_done = False

    # --- the collector protocol -----------------------------------------------------------

    def describe(self) -> list[catalog.Metric]:
        """The catalogued metrics this collector may emit."""
        return [catalog.metric(name) for name in EMITTED]

    def collect(self) -> list[Sample]:
        """One reading of every device, queried concurrently; call it from a thread with no
        running event loop (the agent's worker threads have none)."""
        if not self._devices:
            raise DriverAbsent("snmp: no devices configured")
        with self._running:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
            try:
                per_device = self._loop.run_until_complete(self._poll_all())
            finally:
                if self._close_when_done:
                    self._close_now()
        samples = [s for found in per_device for s in found]
        now = datetime.now(UTC)
        for error_type, n in sorted(self._errors.items()):
            samples.append(Sample.of("agent.collector_errors_total", float(n),
                                     {**self._agent_labels, "error_type": error_type}, now))
        return samples

    def close(self) -> None:
        """Close the SNMP engines' sockets and the private loop; a later collect reopens them.

        Called while a run is in flight (the agent shutting down), it leaves the closing to
        that run, which does it as soon as it ends.
        """
        if not self._running.acquire(blocking=False):
            self._close_when_done = True
            return
        try:
            self._close_now()
        finally:
            self._running.release()

    def _close_now(self) -> None:
        self._close_when_done = False
        loop, self._loop = self._loop, None
        for dev in self._devices:
            engine, dev.engine = dev.engine, None
            if engine is not None:
                try:
                    engine.close_dispatcher()
                except Exception as exc:  # closing must not raise into the agent's shutdown
                    log.debug("snmp: %s: closing the engine: %s", dev.name, exc)
        if loop is not None and not loop.is_closed():
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    # --- one run ------------------------------------------------------------------------------

    async def _poll_all(self) -> list[list[Sample]]:
        hl = _hlapi()
        for dev in self._devices:  # ~70 ms of CPU each: before any poll's clock starts
            if dev.engine is None:
                dev.engine = hl.SnmpEngine()
        return list(await asyncio.gather(*(self._guarded(dev) for dev in self._devices)))

    async def _guarded(self, dev: _Device) -> list[Sample]:
        """One device's poll; whatever happens is counted here and goes no further."""
        out: list[Sample] = []
        try:
            await asyncio.wait_for(self._poll(dev, out), dev.budget_s())
        except _DeviceFailure as exc:
            self._failed(dev, "device", exc.error_type, str(exc))
        except TimeoutError:
            self._failed(dev, "device", "snmp_timeout",
                         f"no complete answer within {dev.budget_s():g} s")
        except Exception as exc:  # a pysnmp or collector bug must not stop the other devices
            if dev.failing.get("device") != "snmp_error":
                log.exception("snmp: %s: poll failed", dev.name)
            self._failed(dev, "device", "snmp_error", f"{type(exc).__name__}: {exc}")
        else:
            self._recovered(dev, "device")
        return out

    async def _poll(self, dev: _Device, out: list[Sample]) -> None:
        hl = _hlapi()
        cfg = dev.cfg
        from pysnmp.error import PySnmpError

        try:
            target = await hl.UdpTransportTarget.create((cfg.host, cfg.port),
                                                        timeout=cfg.timeout, retries=cfg.retries)
        except PySnmpError as exc:
            raise _DeviceFailure("snmp_unresolved", f"cannot resolve {cfg.host!r}: {exc}") from None
        auth, context = dev.auth(), hl.ContextData(contextName=cfg.context)
        scalars = dev.profile.scalar_oids()
        got: dict[str, Any] = {}
        if scalars:
            indication, status, index, binds = await hl.get_cmd(
                dev.engine, auth, target, context,
                *(hl.ObjectType(hl.ObjectIdentity(oid)) for oid in scalars), lookupMib=False)
            self._check(dev, indication, status, index, "GET")
            got = {str(oid): value for oid, value in binds}
        now = datetime.now(UTC)  # one time per device: its fields land on one row of a frame
        for metric, sources in dev.profile.fields.items():
            value = await self._field(dev, target, auth, context, got, metric, sources)
            if value is not None:
                out.append(Sample.of(f"facility_power.{metric}", value, dev.labels, now))

    async def _field(self, dev: _Device, target: Any, auth: Any, context: Any,
                     got: dict[str, Any], metric: str, sources: list[_Source]) -> float | None:
        """The field from its first source that measures it; counts and logs when none does."""
        problems: list[_Problem] = []
        for src in sources:
            if src.sum:
                raw, why = await self._sum(dev, target, auth, context, src)
            else:
                raw, why = _number(got.get(src.oid), src.label)
            if why is None and src.times is not None:
                factor, why = _number(got.get(src.times.oid),
                                      src.times.name or src.times.oid)
                if factor is not None and raw is not None:
                    raw *= factor * src.times.scale
            if why is None and raw is not None:
                value = raw * src.factor
                if math.isfinite(value):
                    self._recovered(dev, metric)
                    return value
                why = _Problem("bad_value", f"{src.label}: {value!r} after scaling")
            problems.append(why or _Problem("bad_value", f"{src.label}: no value"))
        worst = max(problems, key=lambda p: _WORST[p.kind])
        detail = "; ".join(p.detail for p in problems)
        if worst.kind == "not_measured":
            if dev.failing.get(metric) != "not_measured":
                log.info("snmp: %s: %s absent: the device does not measure it (%s)",
                         dev.name, metric, detail)
                dev.failing[metric] = "not_measured"
            return None
        self._failed(dev, metric, f"snmp_{worst.kind}", f"{metric}: {detail}")
        return None

    async def _sum(self, dev: _Device, target: Any, auth: Any, context: Any,
                   src: _Source) -> tuple[float | None, _Problem | None]:
        """Walk a table column (GETBULK) and add its rows; every row must be a number."""
        hl = _hlapi()
        total, rows = 0.0, 0
        # On an error pysnmp's walk yields the error again and again; _check raises on the
        # first one, which ends the walk.
        async for indication, status, index, binds in hl.bulk_walk_cmd(
                dev.engine, auth, target, context, 0, _MAX_REPETITIONS,
                hl.ObjectType(hl.ObjectIdentity(src.oid)), lexicographicMode=False,
                lookupMib=False):
            self._check(dev, indication, status, index, f"GETBULK {src.oid}")
            for oid, value in binds:
                number, why = _number(value, f"{src.name or src.oid} row {oid}")
                if why is not None:
                    if why.kind == "no_such_object":  # endOfMibView: the walk is over
                        break
                    return None, why
                total += number  # type: ignore[operator]
                rows += 1
            if rows > _MAX_ROWS:
                return None, _Problem("bad_value", f"{src.label}: more than {_MAX_ROWS} rows; "
                                                   "is it a table column?")
        if rows == 0:
            return None, _Problem("no_such_object", f"{src.label}: no rows (sum: true walks a "
                                                    "table column)")
        return total, None

    def _check(self, dev: _Device, indication: Any, status: Any, index: Any, what: str) -> None:
        """Raise `_DeviceFailure` for a request the device as a whole did not answer."""
        if indication:
            error_type = _error_type(indication)
            message = f"{what}: {indication}"
            if error_type == "snmp_timeout":
                tries = dev.cfg.retries + 1
                message = (f"{what}: no answer within {dev.cfg.timeout:g} s x {tries} "
                           f"{'try' if tries == 1 else 'tries'}: host down, port closed or "
                           "filtered" + (", or a wrong community (SNMPv2c agents drop those "
                                         "silently)" if dev.cfg.version == "2c" else ""))
            raise _DeviceFailure(error_type, message)
        if status and int(status):
            raise _DeviceFailure("snmp_error", f"{what}: error status {status.prettyPrint()} "
                                               f"at varbind {index}")

    # --- counting and logging -------------------------------------------------------------

    def _failed(self, dev: _Device, key: str, error_type: str, message: str) -> None:
        """Count one failure; log it when an episode starts (or changes kind)."""
        self._errors[error_type] += 1
        if dev.failing.get(key) != error_type:
            log.warning("snmp: %s: %s [%s]", dev.name, message, error_type)
            dev.failing[key] = error_type

    def _recovered(self, dev: _Device, key: str) -> None:
        previous = dev.failing.pop(key, None)
        if previous is not None and previous != "not_measured":
            log.info("snmp: %s: %s answers again (after %s)", dev.name, key, previous)
