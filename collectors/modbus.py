"""Facility power meters over Modbus TCP: one ``facility_power`` series per meter.

A meter is read through a *register map*: a YAML file naming, for ``watts`` and
``joules_total``, the register address, table, data type, word and byte order, scale, unit and
(for the energy counter) its rollover modulus. Maps for common meter families ship in
``collectors/modbus_maps/`` (`shipped_maps`); a site can point a meter at its own file. Maps are
validated by pydantic when the collector is built, and a bad one is a `ConfigError` that names
the file, the line and the field.

The device seam is the network itself: tests and the simulator run a real pymodbus server on
loopback, so the code path is the one a real meter sees.

Decisions:

- One TCP connection per *endpoint* (host, port), kept open across runs and shared by the
  meters behind it, read one after another: an RS-485 gateway serving many unit ids is the
  common case in machine rooms, and such gateways accept only a few connections. A meter
  alone on its own address gets one connection of its own. Endpoints are polled in parallel,
  so one dead endpoint costs the others nothing. A connection that fails (refused, reset, no
  answer) is closed and opened again on the next run; a connection the peer dropped while
  idle is reopened at once and the read retried, once. An endpoint that refuses a connection
  is not tried again for its other meters in the same run. Meters behind one endpoint share
  the longest of their timeouts; a meter that does not answer is not asked for its other
  registers in that run, so a run lasts at most about one timeout per silent meter behind a
  gateway: keep the agent's timeout for this collector above that.
- Registers are 0-based protocol addresses (what goes on the wire). Manuals that number
  registers from 1 (Schneider's "Register 3060") or as ``3xxxx``/``4xxxx`` (Eastron's 30053)
  are converted in the shipped maps; each map's header says how.
- Units: the map's ``W``/``kW`` become watts and ``Wh``/``kWh`` joules (x 3600 / x 3.6e6),
  after ``scale``.
- Energy counters and rollover: ``joules_total`` is the meter's register, unwrapped. A counter
  declared with a modulus (default 2**bits for unsigned integer types; none for signed and
  floating types, whose registers do not wrap in practice) that drops by *more* than
  7/8 of its modulus is taken as a wrap: the modulus is added to every later reading, so the
  series keeps increasing by exactly what the meter counted. Any other drop is a counter
  *reset* (an operator cleared the meter, the meter was replaced): it is logged, the wraps
  seen so far are forgotten, and the series restarts from the register's new value, as a
  Prometheus counter does after a restart; the PUE derivation takes increases reset-aware.
  The unwrapping state is per meter and lives in the agent: after an agent restart the
  series restarts from the raw register, which downstream sees as one more reset.
- Values the catalogue refuses are not emitted: a NaN or infinite float (Schneider meters
  answer NaN for a quantity they do not measure), negative power, a negative or
  out-of-modulus energy register. Each is counted as ``modbus_bad_value``.
- Failures are counted in ``agent.collector_errors_total{collector="modbus"}``, summed over
  meters (the catalogue gives that metric no meter or source label), and logged once per
  episode per meter with its ``source``; the recovery is logged too. ``error_type``:
  ``modbus_unreachable`` (no TCP connection: refused, no route, connect timeout, reset),
  ``modbus_timeout`` (connected, but no valid answer within the meter's timeout),
  ``modbus_exception`` (the meter answered with a Modbus exception, e.g. illegal data
  address for a register it does not have: the other fields are still read) and
  ``modbus_bad_value``. The names carry the ``modbus_`` prefix so that they never collide
  with the agent's own whole-run ``timeout``/``error`` series for this collector. A run never
  raises for a meter's failure; it raises `DriverAbsent` only when no meter is configured.
- pymodbus logs every failed request at ERROR; while this collector talks to a meter those
  records are dropped (for its own thread only) in favour of the one line per episode above.

Metrics
-------

- facility_power
  - tags:
    - hub, cluster, site (placement, from the agent's labels; ``node`` is not a meter label)
    - meter (the configured meter id, unique within the site)
    - scope (``facility`` | ``it`` | ``cooling`` | ``other``, from the meter's config)
    - source (``modbus://{host}:{port}/{unit_id}``)
  - fields:
    - watts (float, watts): power through the meter; where the map has ``watts``
    - joules_total (float, joules, counter): energy through the meter, unwrapped across
      register rollovers; where the map has ``joules_total``
- agent
  - tags: node, site, cluster, hub, collector (``modbus``), error_type (``modbus_unreachable``
    | ``modbus_timeout`` | ``modbus_exception`` | ``modbus_bad_value``)
  - fields:
    - collector_errors_total (float, count, counter): failed meter reads since the agent
      started, summed over meters

Example output (line protocol)::

    facility_power,hub=jjj,meter=bj-ai-hv-incomer-1,scope=facility,site=bj-ai,source=modbus://10.20.0.15:502/1 joules_total=444444440400,watts=1250000 1772416800000000000

Raw registers for a bug report: ``pymodbus.console tcp --host HOST --port 502`` then
``client.read_holding_registers address=3059 count=2 device_id=1`` (or
``read_input_registers``), with the map file.
"""  # noqa: E501 (the example line is one line of line protocol)

from __future__ import annotations

import logging
import math
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from computewatch import catalog
from computewatch.collectors._base import DriverAbsent, placement_labels
from computewatch.collectors._settings import Duration
from computewatch.config import ConfigError, PathError, load_yaml_model, suggest_known
from computewatch.samples import Sample

if TYPE_CHECKING:  # pymodbus is imported when a meter is first contacted
    from pymodbus.client import ModbusTcpClient

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

log = logging.getLogger(__name__)

EMITTED: tuple[str, ...] = (
    "facility_power.watts",
    "facility_power.joules_total",
    "agent.collector_errors_total",
)
"""Every metric this collector can emit (``measurement.field``)."""

MAPS_DIR = Path(__file__).with_name("modbus_maps")
"""Where the shipped register maps live (package data)."""

RegisterType = Literal["uint16", "int16", "uint32", "int32", "uint64", "int64", "float32",
                       "float64"]
_FORMATS: dict[str, tuple[str, int]] = {  # struct code, registers
    "uint16": ("H", 1), "int16": ("h", 1), "uint32": ("I", 2), "int32": ("i", 2),
    "uint64": ("Q", 4), "int64": ("q", 4), "float32": ("f", 2), "float64": ("d", 4),
}
_TO_SI = {"W": 1.0, "kW": 1e3, "Wh": 3600.0, "kWh": 3.6e6}
_POWER_UNITS, _ENERGY_UNITS = ("W", "kW"), ("Wh", "kWh")
_WRAP_SHARE = 1 / 8
"""A drop counts as a rollover when the counter then stands less than this share of its
modulus above where it was (mod the modulus); any bigger jump is a reset."""
_MAX_WORKERS = 16
_EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                    4: "device failure", 5: "acknowledge", 6: "device busy",
                    10: "gateway path unavailable", 11: "gateway target failed to respond"}


# --- register maps ------------------------------------------------------------------------

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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Register(_Model):
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


class Registers(_Model):
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


class RegisterMap(_Model):
    """One meter family's registers for ``facility_power``."""

    description: str = ""
    registers: Registers


def shipped_maps() -> list[str]:
    """Names of the register maps that ship with computewatch (file names without .yaml)."""
    return sorted(p.stem for p in MAPS_DIR.glob("*.yaml"))


def _is_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or ref.endswith((".yaml", ".yml"))


def load_register_map(ref: str | Path) -> RegisterMap:
    """A shipped map by name (``schneider-pm5000``) or a map file by path; ConfigError if bad."""
    text = str(ref)
    if isinstance(ref, Path) or _is_path(text):
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


# --- config -------------------------------------------------------------------------------

class ModbusMeter(_Model):
    """One meter: where it answers, which map reads it, and what it measures."""

    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    map: str = Field(min_length=1, description="shipped map name or path to a map file")
    meter: str = Field(min_length=1, description="the meter's id, unique within its site")
    scope: Literal["facility", "it", "cooling", "other"]
    timeout: Duration = 2.0

    @field_validator("map")
    @classmethod
    def _known_map(cls, value: str) -> str:
        if not _is_path(value) and value not in shipped_maps():
            raise ValueError(f"unknown register map {value!r} "
                             f"({suggest_known(value, shipped_maps())}); or give a path to a "
                             ".yaml file")
        return value

    @property
    def source(self) -> str:
        return f"modbus://{self.host}:{self.port}/{self.unit_id}"


# --- per-meter state ----------------------------------------------------------------------

class _Unwrap:
    """A raw energy register made monotonic across rollovers; resets are passed on."""

    def __init__(self, modulus: int | float | None) -> None:
        self.modulus = modulus
        self.last: int | float | None = None
        self.wraps = 0

    def update(self, raw: int | float) -> tuple[int | float, str | None]:
        """The unwrapped raw value, and ``"wrap"`` or ``"reset"`` when the register dropped."""
        event = None
        if self.last is not None and raw < self.last:
            m = self.modulus
            if m is not None and (raw - self.last) % m < m * _WRAP_SHARE:
                self.wraps += 1
                event = "wrap"
            else:
                self.wraps = 0
                event = "reset"
        self.last = raw
        return raw + self.wraps * (self.modulus or 0), event


@dataclass
class _Meter:
    spec: ModbusMeter
    registers: Registers
    labels: tuple[tuple[str, str], ...]
    counter: _Unwrap | None
    errors: Counter[str] = field(default_factory=Counter)
    episode: set[tuple[str, str]] = field(default_factory=set)  # (field or "*", error_type)


@dataclass
class _Endpoint:
    host: str
    port: int
    timeout: float
    meters: list[_Meter]
    client: ModbusTcpClient | None = None
    down: _Failure | None = None  # this run's connect failure: the other meters skip it


class _Failure(Exception):
    """One failed read: its error_type, and whether the connection is now unusable."""

    def __init__(self, error_type: str, message: str, *, drop_connection: bool) -> None:
        super().__init__(message)
        self.error_type, self.drop_connection = error_type, drop_connection


class _QuietPymodbus(logging.Filter):
    """Drops pymodbus's own records in threads that are talking to a meter for us."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "on", False)


_QUIET = _QuietPymodbus()


@contextmanager
def _quiet() -> Iterator[None]:
    _QUIET.local.on = True
    try:
        yield
    finally:
        _QUIET.local.on = False


# --- the collector ------------------------------------------------------------------------

class ModbusCollector:
    """Reads facility, IT and cooling meters over Modbus TCP."""

    name = "modbus"

    def __init__(self, labels: Mapping[str, str], meters: Sequence[ModbusMeter]) -> None:
        self._place = placement_labels(labels)
        site_labels = {k: v for k, v in self._place.items() if k != "node"}
        ids = [m.meter for m in meters]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"modbus: meter ids must be unique, repeated: {', '.join(dupes)}")
        maps: dict[str, RegisterMap] = {}
        endpoints: dict[tuple[str, int], _Endpoint] = {}
        for spec in meters:
            if spec.map not in maps:
                maps[spec.map] = load_register_map(spec.map)
            regs = maps[spec.map].registers
            lab = {**site_labels, "meter": spec.meter, "scope": spec.scope,
                   "source": spec.source}
            counter = _Unwrap(regs.joules_total.rollover) if regs.joules_total else None
            state = _Meter(spec, regs, tuple(sorted(lab.items())), counter)
            ep = endpoints.setdefault((spec.host, spec.port),
                                      _Endpoint(spec.host, spec.port, spec.timeout, []))
            ep.timeout = max(ep.timeout, spec.timeout)
            ep.meters.append(state)
        self._endpoints = list(endpoints.values())
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        pymodbus_log = logging.getLogger("pymodbus.logging")
        if _QUIET not in pymodbus_log.filters:
            pymodbus_log.addFilter(_QUIET)

    # --- the collector protocol -----------------------------------------------------------

    def describe(self) -> list[catalog.Metric]:
        """The catalogued metrics this collector may emit."""
        return [catalog.metric(name) for name in EMITTED]

    def collect(self) -> list[Sample]:
        """One reading of every meter; a meter's failure is counted, never raised."""
        if not self._endpoints:
            raise DriverAbsent("modbus: no meters configured")
        with self._lock:
            if len(self._endpoints) == 1:
                per_endpoint = [self._poll(self._endpoints[0])]
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=min(_MAX_WORKERS, len(self._endpoints)),
                        thread_name_prefix="modbus")
                per_endpoint = list(self._pool.map(self._poll, self._endpoints))
            samples = [s for batch in per_endpoint for s in batch]
            totals: Counter[str] = Counter()
            for ep in self._endpoints:
                for m in ep.meters:
                    totals.update(m.errors)
        now = datetime.now(UTC)
        for error_type, n in sorted(totals.items()):
            samples.append(Sample.of("agent.collector_errors_total", float(n),
                                     {**self._place, "collector": self.name,
                                      "error_type": error_type}, now))
        return samples

    def close(self) -> None:
        """Close every connection and the worker threads; a later collect reconnects."""
        with self._lock:
            for ep in self._endpoints:
                _drop(ep)
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    # --- one endpoint, its meters one after another --------------------------------------

    def _poll(self, ep: _Endpoint) -> list[Sample]:
        out: list[Sample] = []
        ep.down = None
        with _quiet():
            for meter in ep.meters:
                out += self._read_meter(ep, meter)
        return out

    def _read_meter(self, ep: _Endpoint, meter: _Meter) -> list[Sample]:
        now = datetime.now(UTC)
        out: list[Sample] = []
        for name, reg in meter.registers.items():
            try:
                raw = self._read(ep, meter, reg)
                value = self._convert(meter, name, reg, raw)
            except _Failure as exc:
                self._failed(meter, "*" if exc.drop_connection else name, exc.error_type,
                             str(exc))
                if exc.drop_connection:
                    _drop(ep)
                    break  # the meter is not answering: do not wait on its other registers
                continue
            self._recovered(meter, name)
            out.append(Sample("facility_power", name, value, meter.labels, now))
        return out

    def _read(self, ep: _Endpoint, meter: _Meter, reg: Register) -> list[int]:
        """The registers of one value; a connection the peer dropped is reopened once."""
        fresh = ep.client is None
        if fresh:
            ep.client = _connect(ep)
        try:
            return _request(ep.client, meter.spec, reg, ep.timeout)
        except _Failure as exc:
            if fresh or exc.error_type != "modbus_unreachable":
                raise
        _drop(ep)  # an idle connection closed by the gateway: one more try on a new one
        ep.client = _connect(ep)
        return _request(ep.client, meter.spec, reg, ep.timeout)

    def _convert(self, meter: _Meter, name: str, reg: Register, words: list[int]) -> float:
        raw = decode_registers(words, reg.type, reg.word_order, reg.byte_order)
        where = f"{reg.table} register {reg.address} ({name})"
        if isinstance(raw, float) and not math.isfinite(raw):
            raise _Failure("modbus_bad_value", f"{where} reads {raw!r}", drop_connection=False)
        if name == "watts":
            value = raw * reg.to_si
            why = catalog.metric("facility_power.watts").check(value)
            if why is not None:
                raise _Failure("modbus_bad_value", f"{where} reads {raw!r}: {why}",
                               drop_connection=False)
            return float(value)
        assert meter.counter is not None  # built with the map's joules_total
        modulus = meter.counter.modulus
        if raw < 0 or (modulus is not None and raw >= modulus):
            limit = f" (modulus {modulus})" if modulus is not None else ""
            raise _Failure("modbus_bad_value", f"{where} reads {raw!r}, not an energy count"
                           f"{limit}", drop_connection=False)
        before = meter.counter.last
        unwrapped, event = meter.counter.update(raw)
        if event == "reset":
            log.warning("modbus %s (meter %s): energy counter reset: %s dropped from %r to %r; "
                        "joules_total restarts from the register", meter.spec.source,
                        meter.spec.meter, where, before, raw)
        elif event == "wrap":
            log.info("modbus %s (meter %s): energy counter rolled over at %r (%r -> %r)",
                     meter.spec.source, meter.spec.meter, modulus, before, raw)
        return float(unwrapped * reg.to_si)

    # --- failures, once per episode -------------------------------------------------------

    def _failed(self, meter: _Meter, key: str, error_type: str, message: str) -> None:
        meter.errors[error_type] += 1
        if (key, error_type) not in meter.episode:
            meter.episode.add((key, error_type))
            log.warning("modbus %s (meter %s): %s", meter.spec.source, meter.spec.meter,
                        message)

    def _recovered(self, meter: _Meter, name: str) -> None:
        ended = {k for k in meter.episode if k[0] in ("*", name)}
        if ended:
            meter.episode -= ended
            log.info("modbus %s (meter %s): %s read again after %s", meter.spec.source,
                     meter.spec.meter, name, ", ".join(sorted(e for _, e in ended)))


def _connect(ep: _Endpoint) -> ModbusTcpClient:
    """A client on a socket we opened ourselves, so that the OS's reason reaches our log."""
    from pymodbus.client import ModbusTcpClient

    if ep.down is not None:  # already refused this run: do not wait on it once per meter
        raise _Failure(ep.down.error_type, str(ep.down), drop_connection=True)
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=ep.timeout)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"connect timed out after {ep.timeout:g} s"
        ep.down = _Failure("modbus_unreachable", f"cannot connect to {ep.host}:{ep.port}: "
                           f"{reason}", drop_connection=True)
        raise ep.down from None
    client = ModbusTcpClient(ep.host, port=ep.port, timeout=ep.timeout, retries=0)
    client.socket = sock  # connect() keeps a socket it already has
    return client


def _request(client: Any, spec: ModbusMeter, reg: Register, timeout: float) -> list[int]:
    from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

    read = (client.read_holding_registers if reg.table == "holding"
            else client.read_input_registers)
    where = f"{reg.table} register {reg.address}"
    try:
        resp = read(reg.address, count=reg.words, device_id=spec.unit_id)
    except ConnectionException as exc:
        raise _Failure("modbus_unreachable", f"connection lost reading {where}: {exc}",
                       drop_connection=True) from None
    except ModbusIOException:
        raise _Failure("modbus_timeout", f"no answer within {timeout:g} s reading {where}",
                       drop_connection=True) from None
    except ModbusException as exc:
        raise _Failure("modbus_exception", f"{where}: {exc}", drop_connection=True) from None
    except OSError as exc:
        raise _Failure("modbus_unreachable", f"{where}: {exc}", drop_connection=True) from None
    except Exception as exc:  # pymodbus's less common failures are not all typed
        raise _Failure("modbus_exception", f"{where}: {type(exc).__name__}: {exc}",
                       drop_connection=True) from None
    if resp.isError():
        code = getattr(resp, "exception_code", None)
        name = _EXCEPTION_NAMES.get(code, "unknown") if isinstance(code, int) else "unknown"
        raise _Failure("modbus_exception", f"exception {code} ({name}) reading {where} "
                       f"x{reg.words}", drop_connection=False)
    words = list(resp.registers)
    if len(words) != reg.words:
        raise _Failure("modbus_exception", f"{where}: asked for {reg.words} registers, got "
                       f"{len(words)}", drop_connection=True)
    return words


def _drop(ep: _Endpoint) -> None:
    if ep.client is not None:
        try:
            ep.client.close()
        finally:
            ep.client = None
