"""`SnmpCollector`: every configured device queried at once, each failure counted apart.

`SnmpCollector.collect` is synchronous, as the agent wants; inside, every device is queried at
once on a private asyncio loop (pysnmp's asyncio API), each with its own SNMP engine kept
between runs. A run lasts as long as the slowest device: at most ``timeout x (retries + 1)``
per request, one GET for every scalar of the profile and one GETBULK walk per summed column
(plus, for ``profile: auto`` until a profile fits, one GET of sysObjectID and one GETNEXT
of every shipped profile's ``requires``). The first source of a field that answers with a
number wins; later ones are fallbacks. A run in which no device gave a reading raises
`NoData` with each device's reason.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import os
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from computewatch import catalog
from computewatch.collectors import DriverAbsent, placement_labels, readings_or_no_data
from computewatch.collectors.snmp._config import SnmpDevice
from computewatch.collectors.snmp._profiles import (
    AUTO,
    Part,
    SnmpProfile,
    Source,
    auto_profiles,
    load_profile,
)
from computewatch.collectors.snmp._values import (
    WORST,
    DeviceFailure,
    Problem,
    as_number,
    error_type_of,
    hlapi,
)
from computewatch.config import (
    ConfigError,
)
from computewatch.samples import Sample

__all__ = ["EMITTED", "SnmpCollector"]

log = logging.getLogger(__package__)  # one logger per collector, named as before the split

EMITTED: tuple[str, ...] = (
    "facility_power.watts",
    "facility_power.joules_total",
    "agent.collector_errors_total",
)
"""Every metric this collector can emit (``measurement.field``)."""

_MAX_ROWS = 4096  # a summed column is a few phases or PDUs, not a whole MIB
_MAX_REPETITIONS = 25
SYS_DESCR, SYS_OBJECT_ID = "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0"


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
    profile: SnmpProfile | None  # None: profile auto, not chosen yet
    secrets: dict[str, str]
    labels: dict[str, str]
    meter: str
    engine: Any = None
    failing: dict[str, str] = field(default_factory=dict)  # episode key -> error kind
    sys_object_id: str = ""
    sys_descr: str = ""
    why: list[str] = field(default_factory=list)  # this run: why a field gave no reading

    @property
    def auto(self) -> bool:
        return self.cfg.profile == AUTO

    @property
    def name(self) -> str:
        chosen = self.profile.name if self.profile is not None else "not chosen yet"
        shown = f"auto: {chosen}" if self.auto else chosen
        return f"{self.cfg.source} (meter {self.meter}, profile {shown})"

    def auth(self) -> Any:
        hl = hlapi()
        if self.cfg.version == "2c":
            return hl.CommunityData(self.secrets["community"], mpModel=1)
        auth = _AUTH[self.cfg.auth_protocol] if self.cfg.auth_protocol else "usmNoAuthProtocol"
        priv = _PRIV[self.cfg.priv_protocol] if self.cfg.priv_protocol else "usmNoPrivProtocol"
        return hl.UsmUserData(self.cfg.user, self.secrets.get("auth"), self.secrets.get("priv"),
                              authProtocol=getattr(hl, auth), privProtocol=getattr(hl, priv))

    def budget_s(self) -> float:
        """A safety net over pysnmp's own timeouts: every request timing out on every try,
        plus slack for a busy loop."""
        profiles = [self.profile] if self.profile is not None else list(auto_profiles())
        requests = 1 + max(p.walks() for p in profiles) + (2 if self.profile is None else 0)
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
            if cfg.profile == AUTO:
                auto_profiles()  # a broken shipped profile fails at start, not in a run
            elif cfg.profile not in profiles:
                profiles[cfg.profile] = load_profile(cfg.profile)
            meter = cfg.meter or cfg.host
            if (cfg.source, meter) in seen:  # one series for two devices: refuse at start
                raise ConfigError(f"snmp device {cfg.source}",
                                  f"two devices with meter {meter!r} at this address; give "
                                  "each a distinct meter")
            seen.add((cfg.source, meter))
            self._devices.append(_Device(
                cfg, profiles.get(cfg.profile), _secrets(cfg),
                {**facility, "meter": meter, "scope": cfg.scope, "source": cfg.source}, meter))
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
        running event loop (the agent's worker threads have none). `NoData` when no device
        gave a reading (it carries the error counters)."""
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
        return readings_or_no_data(samples, self._no_data_reason)

    def _no_data_reason(self) -> str:
        n = len(self._devices)
        each = "; ".join(f"{dev.name}: {', '.join(dev.why) or 'no reading'}"
                         for dev in self._devices)
        return f"snmp: no reading from {'the' if n == 1 else f'any of {n}'} device" \
               f"{'' if n == 1 else 's'}: {each}"

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
        hl = hlapi()
        for dev in self._devices:  # ~70 ms of CPU each: before any poll's clock starts
            if dev.engine is None:
                dev.engine = hl.SnmpEngine()
        return list(await asyncio.gather(*(self._guarded(dev) for dev in self._devices)))

    async def _guarded(self, dev: _Device) -> list[Sample]:
        """One device's poll; whatever happens is counted here and goes no further."""
        out: list[Sample] = []
        dev.why = []
        try:
            await asyncio.wait_for(self._poll(dev, out), dev.budget_s())
        except DeviceFailure as exc:
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
        hl = hlapi()
        cfg = dev.cfg
        from pysnmp.error import PySnmpError

        try:
            target = await hl.UdpTransportTarget.create((cfg.host, cfg.port),
                                                        timeout=cfg.timeout, retries=cfg.retries)
        except PySnmpError as exc:
            raise DeviceFailure("snmp_unresolved", f"cannot resolve {cfg.host!r}: {exc}") from None
        conn = _Conn(dev, target, dev.auth(), hl.ContextData(contextName=cfg.context))
        if dev.profile is None and not await self._detect(conn):
            return
        profile = dev.profile
        assert profile is not None
        ident = () if dev.sys_object_id else (SYS_OBJECT_ID, SYS_DESCR)  # for the messages
        got = await self._get(conn, ident + profile.scalar_oids())
        if ident:
            self._identify(dev, got)
        now = datetime.now(UTC)  # one time per device: its fields land on one row of a frame
        missing = 0
        for metric, sources in profile.fields.items():
            value, kind = await self._field(conn, got, metric, sources)
            missing += kind == "no_such_object"
            if value is not None:
                out.append(Sample.of(f"facility_power.{metric}", value, dev.labels, now))
        if dev.auto and missing == len(profile.fields.items()):
            log.info("snmp: %s: none of the profile's OIDs answers: choosing a profile again "
                     "next run", dev.name)
            dev.profile = None

    async def _get(self, conn: _Conn, oids: tuple[str, ...]) -> dict[str, Any]:
        if not oids:
            return {}
        hl = hlapi()
        indication, status, index, binds = await hl.get_cmd(
            conn.dev.engine, conn.auth, conn.target, conn.context,
            *(hl.ObjectType(hl.ObjectIdentity(oid)) for oid in oids), lookupMib=False)
        self._check(conn.dev, indication, status, index, "GET")
        return {str(oid): value for oid, value in binds}

    @staticmethod
    def _identify(dev: _Device, got: Mapping[str, Any]) -> None:
        from pyasn1.type import univ

        oid, descr = got.get(SYS_OBJECT_ID), got.get(SYS_DESCR)
        dev.sys_object_id = str(oid) if isinstance(oid, univ.ObjectIdentifier) else "unknown"
        if isinstance(descr, univ.OctetString):
            text = " ".join(bytes(descr).decode("utf-8", "replace").split())
            dev.sys_descr = text[:60] + ("..." if len(text) > 60 else "")

    # --- profile: auto ------------------------------------------------------------------------

    async def _detect(self, conn: _Conn) -> bool:
        """Choose the device's profile (`Detect.rank`); False, counted, when none fits."""
        hl = hlapi()
        dev = conn.dev
        self._identify(dev, await self._get(conn, (SYS_OBJECT_ID, SYS_DESCR)))
        profiles = auto_profiles()
        detects = [(p, p.detect) for p in profiles if p.detect is not None]
        requires = sorted({oid for _, d in detects for oid in d.requires})
        indication, status, index, binds = await hl.next_cmd(
            dev.engine, conn.auth, conn.target, conn.context,
            *(hl.ObjectType(hl.ObjectIdentity(oid)) for oid in requires), lookupMib=False)
        self._check(dev, indication, status, index, "GETNEXT")
        present = {req for req, (oid, value) in zip(requires, binds, strict=True)
                   if str(oid).startswith(req + ".") and _is_value(value)}
        ranked = sorted(((rank, p.name, p) for p, d in detects
                         if (rank := d.rank(dev.sys_object_id, present)) is not None),
                        key=lambda t: (t[0], t[1]), reverse=True)
        if not ranked:
            self._failed(dev, "profile", "snmp_unsupported", _unsupported(dev, profiles))
            return False
        dev.profile = ranked[0][2]
        self._recovered(dev, "profile")
        log.info("snmp: %s: chosen for sysObjectID %s (%s)", dev.name, dev.sys_object_id,
                 ", ".join(sorted(present)))
        return True

    # --- one field ------------------------------------------------------------------------------

    async def _field(self, conn: _Conn, got: dict[str, Any], metric: str,
                     sources: list[Source]) -> tuple[float | None, str]:
        """The field from its first source that measures it, and the kind of failure when
        none does (counted and logged here)."""
        dev = conn.dev
        problems: list[Problem] = []
        for src in sources:
            raw, why = await self._read(conn, got, src)
            if why is None and raw == 0 and src.load_evidence:
                why = await self._loaded(conn, got, src)
            if why is None and raw is not None:
                value = raw * src.factor
                if math.isfinite(value):
                    self._recovered(dev, metric)
                    return value, ""
                why = Problem("bad_value", f"{src.label}: {value!r} after scaling")
            problems.append(why or Problem("bad_value", f"{src.label}: no value"))
        worst = max(problems, key=lambda p: WORST[p.kind])
        detail = "; ".join(p.detail for p in problems)
        dev.why.append(f"{metric} {worst.kind.replace('_', ' ')} ({detail})")
        if worst.kind == "not_measured":
            if dev.failing.get(metric) != "not_measured":
                log.info("snmp: %s: %s absent: the device does not measure it (%s)",
                         dev.name, metric, detail)
                dev.failing[metric] = "not_measured"
            return None, worst.kind
        where = f"; sysObjectID {dev.sys_object_id}" if worst.kind == "no_such_object" else ""
        self._failed(dev, metric, f"snmp_{worst.kind}", f"{metric}: {detail}{where}")
        return None, worst.kind

    async def _read(self, conn: _Conn, got: dict[str, Any], src: Source,
                    ) -> tuple[float | None, Problem | None]:
        """The source's raw reading: its parts added up (each with its scale), times its
        factor; the source's scale and unit are applied by the caller."""
        mib = conn.dev.profile.mib_of(src) if conn.dev.profile is not None else ""
        total = 0.0
        for part in src.terms():
            rows, why = await self._part(conn, got, part, mib)
            if why is not None:
                return None, why
            total += sum(rows) * part.scale
        if src.times is not None:
            factor, why = as_number(got.get(src.times.oid), src.times.name or src.times.oid,
                                    src.times.oid)
            if why is not None or factor is None:
                return None, why
            total *= factor * src.times.scale
        return total, None

    async def _part(self, conn: _Conn, got: dict[str, Any], part: Part, mib: str,
                    ) -> tuple[list[float], Problem | None]:
        """A scalar's value, or a column's rows (GETBULK walk); every row must be a number."""
        what = f"{mib} {part.label}" if mib else part.label
        if not part.sum:
            number, why = as_number(got.get(part.oid), what, part.oid)
            return ([number] if number is not None else []), why
        hl = hlapi()
        dev = conn.dev
        rows: list[float] = []
        # On an error pysnmp's walk yields the error again and again; _check raises on the
        # first one, which ends the walk.
        async for indication, status, index, binds in hl.bulk_walk_cmd(
                dev.engine, conn.auth, conn.target, conn.context, 0, _MAX_REPETITIONS,
                hl.ObjectType(hl.ObjectIdentity(part.oid)), lexicographicMode=False,
                lookupMib=False):
            self._check(dev, indication, status, index, f"GETBULK {part.oid}")
            for oid, value in binds:
                number, why = as_number(value, f"{part.name or part.oid} row {oid}")
                if why is not None:
                    if why.kind == "no_such_object":  # endOfMibView: the walk is over
                        break
                    return [], why
                rows.append(number)  # type: ignore[arg-type]
            if len(rows) > _MAX_ROWS:
                return [], Problem("bad_value", f"{part.label}: more than {_MAX_ROWS} rows; "
                                                "is it a table column?")
        if not rows:
            return [], Problem("no_such_object", f"the device does not implement {what}: no "
                                                 "rows (sum: true walks a table column)")
        return rows, None

    async def _loaded(self, conn: _Conn, got: dict[str, Any], src: Source) -> Problem | None:
        """Why a 0 is not a reading: the first load evidence above 0, or None (a real 0)."""
        for part in src.load_evidence or []:
            rows, why = await self._part(conn, got, part, "")
            if why is None and any(r > 0 for r in rows):
                shown = ", ".join(f"{r:g}" for r in rows)
                return Problem("not_measured", f"{src.label} reads 0 while "
                                               f"{part.name or part.oid} reads {shown}")
        return None

    def _check(self, dev: _Device, indication: Any, status: Any, index: Any, what: str) -> None:
        """Raise `DeviceFailure` for a request the device as a whole did not answer."""
        if indication:
            error_type = error_type_of(indication)
            message = f"{what}: {indication}"
            if error_type == "snmp_timeout":
                tries = dev.cfg.retries + 1
                message = (f"{what}: no answer within {dev.cfg.timeout:g} s x {tries} "
                           f"{'try' if tries == 1 else 'tries'}: host down, port closed or "
                           "filtered" + (", or a wrong community (SNMPv2c agents drop those "
                                         "silently)" if dev.cfg.version == "2c" else ""))
            raise DeviceFailure(error_type, message)
        if status and int(status):
            raise DeviceFailure("snmp_error", f"{what}: error status {status.prettyPrint()} "
                                               f"at varbind {index}")

    # --- counting and logging -------------------------------------------------------------

    def _failed(self, dev: _Device, key: str, error_type: str, message: str) -> None:
        """Count one failure; log it when an episode starts (or changes kind)."""
        self._errors[error_type] += 1
        if key in ("device", "profile"):
            dev.why.append(f"{error_type.removeprefix('snmp_')}: {message}")
        if dev.failing.get(key) != error_type:
            log.warning("snmp: %s: %s [%s]", dev.name, message, error_type)
            dev.failing[key] = error_type

    def _recovered(self, dev: _Device, key: str) -> None:
        previous = dev.failing.pop(key, None)
        if previous is not None and previous != "not_measured":
            log.info("snmp: %s: %s answers again (after %s)", dev.name, key, previous)


@dataclass(frozen=True, slots=True)
class _Conn:
    """What one poll of one device talks through."""

    dev: _Device
    target: Any
    auth: Any
    context: Any


def _is_value(value: Any) -> bool:
    from pysnmp.proto import rfc1905

    return not isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance
                          | rfc1905.EndOfMibView)


def _unsupported(dev: _Device, profiles: Sequence[SnmpProfile]) -> str:
    """What a device that no shipped profile fits lacks, in the MIBs' terms."""
    standard = [f"{p.mib} {p.fields.watts[0].name} ({p.detect.requires[0]})"
                for p in profiles if p.detect is not None and p.detect.fallback and p.fields.watts]
    vendors = sorted({p.mib for p in profiles
                      if p.detect is not None and not p.detect.fallback and p.mib}
                     - {p.mib for p in profiles if p.detect is not None and p.detect.fallback})
    described = f", sysDescr {dev.sys_descr!r}" if dev.sys_descr else ""
    return (f"profile auto: no shipped profile fits: the device does not implement "
            f"{' or '.join(standard)} nor the power objects of {', '.join(vendors)}; "
            f"sysObjectID {dev.sys_object_id}{described}; read it with a profile of your own "
            "(collectors/snmp/README.md)")
