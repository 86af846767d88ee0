"""`ModbusCollector`: every endpoint polled in parallel, its meters one after another.

One TCP connection per endpoint (host, port), kept open across runs and shared by the meters
behind it: an RS-485 gateway serving many unit ids is the common case, and such gateways
accept only a few connections. The README states the decisions and the failure codes.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from computewatch import catalog
from computewatch.collectors import DriverAbsent, placement_labels, readings_or_no_data
from computewatch.collectors.modbus._config import ModbusMeter
from computewatch.collectors.modbus._maps import (
    Register,
    RegisterMap,
    decode_registers,
    load_register_map,
)
from computewatch.collectors.modbus._state import Endpoint, Failure, Meter, Unwrap
from computewatch.collectors.modbus._wire import (
    QUIET_FILTER,
    close_client,
    connect_endpoint,
    quiet_pymodbus,
    read_registers,
)
from computewatch.samples import Sample

__all__ = ["EMITTED", "ModbusCollector"]

log = logging.getLogger(__package__)  # one logger per collector, named as before the split

EMITTED: tuple[str, ...] = (
    "facility_power.watts",
    "facility_power.joules_total",
    "agent.collector_errors_total",
)
"""Every metric this collector can emit (``measurement.field``)."""

_MAX_WORKERS = 16


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
        endpoints: dict[tuple[str, int], Endpoint] = {}
        for spec in meters:
            if spec.map not in maps:
                maps[spec.map] = load_register_map(spec.map)
            regs = maps[spec.map].registers
            lab = {**site_labels, "meter": spec.meter, "scope": spec.scope,
                   "source": spec.source}
            counter = Unwrap(regs.joules_total.rollover) if regs.joules_total else None
            state = Meter(spec, regs, tuple(sorted(lab.items())), counter)
            ep = endpoints.setdefault((spec.host, spec.port),
                                      Endpoint(spec.host, spec.port, spec.timeout, []))
            ep.timeout = max(ep.timeout, spec.timeout)
            ep.meters.append(state)
        self._endpoints = list(endpoints.values())
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        pymodbus_log = logging.getLogger("pymodbus.logging")
        if QUIET_FILTER not in pymodbus_log.filters:
            pymodbus_log.addFilter(QUIET_FILTER)

    # --- the collector protocol -----------------------------------------------------------

    def describe(self) -> list[catalog.Metric]:
        """The catalogued metrics this collector may emit."""
        return [catalog.metric(name) for name in EMITTED]

    def collect(self) -> list[Sample]:
        """One reading of every meter; a meter's failure is counted, and `NoData` (carrying the
        counters) is raised only when no meter gave a reading."""
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
        return readings_or_no_data(samples, self._no_data_reason)

    def _no_data_reason(self) -> str:
        meters = [m for ep in self._endpoints for m in ep.meters]
        each = "; ".join(f"{m.spec.source} (meter {m.spec.meter}): "
                         f"{', '.join(sorted({t for _, t in m.episode})) or 'no reading'}"
                         for m in meters)
        n = len(meters)
        return (f"modbus: no reading from {'the' if n == 1 else f'any of {n}'} meter"
                f"{'' if n == 1 else 's'}: {each}")

    def close(self) -> None:
        """Close every connection and the worker threads; a later collect reconnects."""
        with self._lock:
            for ep in self._endpoints:
                close_client(ep)
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    # --- one endpoint, its meters one after another --------------------------------------

    def _poll(self, ep: Endpoint) -> list[Sample]:
        out: list[Sample] = []
        ep.down = None
        with quiet_pymodbus():
            for meter in ep.meters:
                out += self._read_meter(ep, meter)
        return out

    def _read_meter(self, ep: Endpoint, meter: Meter) -> list[Sample]:
        now = datetime.now(UTC)
        out: list[Sample] = []
        for name, reg in meter.registers.items():
            try:
                raw = self._read(ep, meter, reg)
                value = self._convert(meter, name, reg, raw)
            except Failure as exc:
                self._failed(meter, "*" if exc.drop_connection else name, exc.error_type,
                             str(exc))
                if exc.drop_connection:
                    close_client(ep)
                    break  # the meter is not answering: do not wait on its other registers
                continue
            self._recovered(meter, name)
            out.append(Sample("facility_power", name, value, meter.labels, now))
        return out

    def _read(self, ep: Endpoint, meter: Meter, reg: Register) -> list[int]:
        """The registers of one value; a connection the peer dropped is reopened once."""
        fresh = ep.client is None
        if fresh:
            ep.client = connect_endpoint(ep)
        try:
            return read_registers(ep.client, meter.spec, reg, ep.timeout)
        except Failure as exc:
            if fresh or exc.error_type != "modbus_unreachable":
                raise
        close_client(ep)  # an idle connection closed by the gateway: one more try on a new one
        ep.client = connect_endpoint(ep)
        return read_registers(ep.client, meter.spec, reg, ep.timeout)

    def _convert(self, meter: Meter, name: str, reg: Register, words: list[int]) -> float:
        raw = decode_registers(words, reg.type, reg.word_order, reg.byte_order)
        where = f"{reg.table} register {reg.address} ({name})"
        if isinstance(raw, float) and not math.isfinite(raw):
            raise Failure("modbus_bad_value", f"{where} reads {raw!r}", drop_connection=False)
        if name == "watts":
            value = raw * reg.to_si
            why = catalog.metric("facility_power.watts").check(value)
            if why is not None:
                raise Failure("modbus_bad_value", f"{where} reads {raw!r}: {why}",
                               drop_connection=False)
            return float(value)
        assert meter.counter is not None  # built with the map's joules_total
        modulus = meter.counter.modulus
        if raw < 0 or (modulus is not None and raw >= modulus):
            limit = f" (modulus {modulus})" if modulus is not None else ""
            raise Failure("modbus_bad_value", f"{where} reads {raw!r}, not an energy count"
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

    def _failed(self, meter: Meter, key: str, error_type: str, message: str) -> None:
        meter.errors[error_type] += 1
        if (key, error_type) not in meter.episode:
            meter.episode.add((key, error_type))
            log.warning("modbus %s (meter %s): %s", meter.spec.source, meter.spec.meter,
                        message)

    def _recovered(self, meter: Meter, name: str) -> None:
        ended = {k for k in meter.episode if k[0] in ("*", name)}
        if ended:
            meter.episode -= ended
            log.info("modbus %s (meter %s): %s read again after %s", meter.spec.source,
                     meter.spec.meter, name, ", ".join(sorted(e for _, e in ended)))
