"""`RedfishCollector`: discovery, the per-run reads, and counting and logging failures.

Each endpoint is read in its own thread, so a hung or broken BMC delays or stops only its own
meters. The collector looks once where each chassis keeps its readings (discovery: a plan of
resource URIs and property paths), then GETs only those resources each run; it discovers again
after any failure and every hour. The README states the failure codes and the chassis rules.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from computewatch import catalog
from computewatch.collectors import placement_labels
from computewatch.collectors.redfish._client import (
    CONNECTION_CODES,
    PARSE_CODES,
    SERVICE_ROOT,
    Client,
    Fail,
    default_session,
)
from computewatch.collectors.redfish._config import RedfishEndpoint
from computewatch.collectors.redfish._documents import (
    ChassisPlan,
    Reading,
    Term,
    absent,
    dig,
    environment_readings,
    last_segment,
    legacy_psu_input_watts,
    number,
    odata_link,
    power_control_watts,
    sensor_reading,
)
from computewatch.samples import Sample

if TYPE_CHECKING:  # requests is imported when the collector first connects
    import requests

__all__ = ["EMITTED", "RedfishCollector"]

log = logging.getLogger(__package__)  # one logger per collector, named as before the split

EMITTED: tuple[str, ...] = (
    "facility_power.watts",
    "facility_power.joules_total",
    "agent.collector_errors_total",
    "agent.parse_errors_total",
)
"""Every metric this collector can emit (``measurement.field``)."""

_REPLAN_S = 3600.0  # look for the readings again this often, in case the BMC changed
_MAX_PARALLEL = 16  # endpoints read at once


@dataclass(eq=False)
class _State:
    """What the collector keeps per endpoint between runs."""

    ep: RedfishEndpoint
    client: Client
    plans: list[ChassisPlan] | None = None
    planned_at: float = 0.0
    logged: set[tuple[str, str]] = field(default_factory=set)  # failures of this episode


@dataclass
class _Result:
    samples: list[Sample] = field(default_factory=list)
    failures: list[Fail] = field(default_factory=list)


class RedfishCollector:
    """Reads chassis power and energy from Redfish services, one meter per chassis."""

    name = "redfish"

    def __init__(self, labels: Mapping[str, str], endpoints: Sequence[RedfishEndpoint],
                 session_factory: Callable[[], requests.Session] | None = None) -> None:
        self._place = placement_labels(labels)
        self._meter_place = {k: v for k, v in self._place.items() if k != "node"}
        factory = session_factory or default_session
        self._states = [_State(ep, Client(ep, factory)) for ep in endpoints]
        self._errors: Counter[str] = Counter()  # code -> count, since the agent started
        self._parse_errors: Counter[str] = Counter()  # source -> count

    def __repr__(self) -> str:
        return f"RedfishCollector({[s.ep.url for s in self._states]!r})"

    def describe(self) -> list[catalog.Metric]:
        """The catalogued metrics this collector may emit."""
        return [catalog.metric(name) for name in EMITTED]

    def collect(self) -> list[Sample]:
        """One reading of every endpoint; failures are counted, never raised."""
        states = self._states
        if len(states) <= 1:
            results = [self._run(s) for s in states]
        else:
            with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL, len(states)),
                                    thread_name_prefix="redfish") as pool:
                results = list(pool.map(self._run, states))
        samples: list[Sample] = []
        for state, result in zip(states, results, strict=True):
            samples += result.samples
            self._account(state, result.failures)
        return samples + self.error_samples()

    def error_samples(self, time: datetime | None = None) -> list[Sample]:
        """The failure counters, cumulative since the collector started."""
        time = time or datetime.now(UTC)
        out = [Sample.of("agent.collector_errors_total", float(n),
                         {**self._place, "collector": self.name,
                          "error_type": f"redfish_{code}"}, time)
               for code, n in sorted(self._errors.items())]
        out += [Sample.of("agent.parse_errors_total", float(n),
                          {**self._place, "collector": self.name, "source": src}, time)
                for src, n in sorted(self._parse_errors.items())]
        return out

    def close(self) -> None:
        """Log out of every session; a later collect logs in again."""
        for state in self._states:
            state.client.close()

    # --- one endpoint -------------------------------------------------------------------

    def _run(self, state: _State) -> _Result:
        result = _Result()
        try:
            self._read_endpoint(state, result)
        except Fail as exc:
            result.failures.append(exc)
        except Exception as exc:  # a surprise in one endpoint's answer must not stop the rest
            log.debug("redfish: %s: unexpected failure", state.ep.source, exc_info=True)
            result.failures.append(Fail("error", f"{type(exc).__name__}: {exc}"))
            state.plans = None
        return result

    def _read_endpoint(self, state: _State, result: _Result) -> None:
        cache: dict[str, dict[str, Any]] = {}
        if state.plans is None or time.monotonic() - state.planned_at > _REPLAN_S:
            state.plans = None
            plans = self._discover(state, cache, result.failures)
            state.plans = plans
            state.planned_at = time.monotonic()
        now = datetime.now(UTC)
        stale = bool(result.failures)
        for plan in state.plans:
            for field_, reading in (("watts", plan.watts), ("joules_total", plan.joules)):
                if reading is None:
                    continue
                try:
                    value = self._value(state.client, reading, cache)
                except Fail as exc:
                    if exc.code in CONNECTION_CODES:
                        raise
                    exc.chassis = plan.chassis
                    result.failures.append(exc)
                    stale = True
                    continue
                labels = {**self._meter_place, "meter": plan.meter, "scope": state.ep.scope,
                          "source": state.ep.source}
                result.samples.append(Sample.of(f"facility_power.{field_}", value, labels, now))
        if stale:
            state.plans = None  # look again next run: the BMC may have moved its readings

    def _value(self, client: Client, reading: Reading, cache: dict[str, dict[str, Any]],
               ) -> float:
        total = 0.0
        for term in reading.terms:
            doc = cache.get(term.uri)
            if doc is None:
                doc = cache[term.uri] = client.get(term.uri)
            raw = dig(doc, term.path)
            value = number(raw)
            if value is None:
                where = ".".join(f"[{p}]" if isinstance(p, int) else p for p in term.path)
                raise Fail("missing_field", f"{reading.what}: {where} is {raw!r}, not a "
                            "reading", client.absolute(term.uri))
            total += value * term.scale
        return total

    # --- discovery ----------------------------------------------------------------------

    def _discover(self, state: _State, cache: dict[str, dict[str, Any]],
                  failures: list[Fail]) -> list[ChassisPlan]:
        """Find every chassis to read and where its readings are."""
        client, ep = state.client, state.ep
        root = client.get(SERVICE_ROOT)
        chassis_uri = odata_link(root, "Chassis")
        if chassis_uri is None:
            raise Fail("missing_field", "the service root has no Chassis link",
                        client.absolute(SERVICE_ROOT))
        by_id = {last_segment(u): u for u in client.members(chassis_uri)}
        wanted = ep.chassis or list(by_id)
        plans: list[ChassisPlan] = []
        parents: dict[str, str | None] = {}
        for cid in wanted:
            uri = by_id.get(cid)
            if uri is None:
                failures.append(Fail("missing_field", f"no chassis {cid!r} (the service has: "
                                      f"{', '.join(by_id) or 'none'})",
                                      client.absolute(chassis_uri), cid))
                continue
            try:
                plan = self._plan_chassis(client, cid, uri, cache)
            except Fail as exc:
                if exc.code in CONNECTION_CODES:
                    raise
                exc.chassis = cid
                failures.append(exc)
                continue
            parents[cid] = plan.contained_by
            if plan.watts is None and plan.joules is None:
                if ep.chassis:
                    failures.append(Fail("missing_field", "the chassis reports no power or "
                                          "energy (looked at EnvironmentMetrics, Sensors, "
                                          "Power, PowerSubsystem)", client.absolute(uri), cid))
                else:
                    log.debug("redfish: %s: chassis %s reports no power; skipped", ep.source,
                              cid)
                continue
            plans.append(plan)
        if not ep.chassis:
            plans = _outermost(plans, parents)
            if not plans and not failures:
                failures.append(Fail("missing_field", "no chassis reports power (looked at: "
                                      f"{', '.join(by_id) or 'none'})",
                                      client.absolute(chassis_uri)))
        for plan in plans:
            if ep.meter is None:
                plan.meter = f"{ep.source}/{plan.chassis}"
            else:
                # Decided by the config alone, so a chassis failing discovery renames nothing.
                plan.meter = ep.meter if len(ep.chassis) == 1 else f"{ep.meter}/{plan.chassis}"
        return plans

    def _plan_chassis(self, client: Client, cid: str, uri: str,
                      cache: dict[str, dict[str, Any]]) -> ChassisPlan:
        """Where the chassis' watts and energy are; a source that fails is passed over."""
        def get(u: str) -> dict[str, Any]:
            if u not in cache:
                cache[u] = client.get(u)
            return cache[u]

        doc = get(uri)
        plan = ChassisPlan(cid, uri)
        container = odata_link(doc, "Links", "ContainedBy")
        plan.contained_by = last_segment(container) if container else None
        sources: list[tuple[str, Callable[[str], tuple[Reading | None, Reading | None]]]] = [
            ("EnvironmentMetrics", lambda u: environment_readings(u, get(u))),
            ("Sensors", lambda u: self._sensor_readings(client, u, get)),
            ("Power", lambda u: (power_control_watts(u, get(u))
                                 or legacy_psu_input_watts(u, get(u)), None)),
            ("PowerSubsystem", lambda u: self._psu_readings(client, u, get)),
        ]
        passed_over: list[Fail] = []
        for prop, read in sources:
            if plan.watts is not None and plan.joules is not None:
                break
            found = odata_link(doc, prop)
            if found is None:
                continue
            try:
                watts, joules = read(found)
            except Fail as exc:
                if exc.code in CONNECTION_CODES:
                    raise
                passed_over.append(exc)
                continue
            plan.watts, plan.joules = plan.watts or watts, plan.joules or joules
        if passed_over:
            if plan.watts is None and plan.joules is None:
                raise passed_over[0]
            for exc in passed_over:
                log.debug("redfish: %s: chassis %s: passed over: %s [%s]", client.ep.source,
                          cid, exc.message, exc.url)
        return plan

    def _sensor_readings(self, client: Client, uri: str,
                         get: Callable[[str], dict[str, Any]],
                         ) -> tuple[Reading | None, Reading | None]:
        """The best whole-chassis power and energy sensors of a Sensors collection."""
        best: dict[str, tuple[int, Reading]] = {}
        for member in client.members(uri, get(uri)):
            try:
                doc = get(member)
            except Fail as exc:
                if exc.code in CONNECTION_CODES:
                    raise
                log.debug("redfish: %s: sensor %s skipped: %s", client.ep.source, member,
                          exc.message)
                continue  # one broken sensor must not hide the others
            found = sensor_reading(member, doc)
            if found is not None:
                kind, rank, reading = found
                if kind not in best or rank < best[kind][0]:
                    best[kind] = (rank, reading)
        return (best["watts"][1] if "watts" in best else None,
                best["joules"][1] if "joules" in best else None)

    def _psu_readings(self, client: Client, uri: str, get: Callable[[str], dict[str, Any]],
                      ) -> tuple[Reading | None, Reading | None]:
        """Sums over the present PSUs of a PowerSubsystem; None where any PSU lacks one."""
        supplies = odata_link(get(uri), "PowerSupplies")
        if supplies is None:
            return None, None
        terms: dict[str, list[Term]] = {"InputPowerWatts": [], "EnergykWh": []}
        complete = dict.fromkeys(terms, True)
        for member in client.members(supplies, get(supplies)):
            psu = get(member)
            if absent(psu):
                continue
            metrics_uri = odata_link(psu, "Metrics")
            metrics = get(metrics_uri) if metrics_uri is not None else {}
            for prop in terms:
                if metrics_uri is not None and number(dig(metrics, (prop, "Reading"))) \
                        is not None:
                    terms[prop].append(Term(metrics_uri, (prop, "Reading"),
                                             3.6e6 if prop == "EnergykWh" else 1.0))
                else:
                    complete[prop] = False
        watts, joules = (
            Reading(f"PowerSupplies {prop}", tuple(terms[prop]))
            if complete[prop] and terms[prop] else None for prop in terms)
        return watts, joules

    # --- counting and logging -----------------------------------------------------------

    def _account(self, state: _State, failures: list[Fail]) -> None:
        """Count every failure; log each once per episode, and the recovery."""
        source = state.ep.source
        now_failing: set[tuple[str, str]] = set()
        for f in failures:
            self._errors[f.code] += 1
            if f.code in PARSE_CODES:
                self._parse_errors[source] += 1
            key = (f.code, f.chassis)
            where = f" [{f.url}]" if f.url else ""
            chassis = f" chassis {f.chassis}:" if f.chassis else ""
            if key in state.logged or key in now_failing:
                log.debug("redfish: %s:%s %s%s", source, chassis, f.message, where)
            else:
                log.warning("redfish: %s:%s %s%s (counted as error_type redfish_%s; logged "
                            "once until it recovers)", source, chassis, f.message, where, f.code)
            now_failing.add(key)
        if state.logged and not now_failing:
            log.warning("redfish: %s: recovered", source)
        state.logged = now_failing


def _outermost(plans: list[ChassisPlan], parents: Mapping[str, str | None],
               ) -> list[ChassisPlan]:
    """Drop chassis contained, at any depth, in another chassis that is read."""
    read = {p.chassis for p in plans}
    keep = []
    for p in plans:
        seen, up = {p.chassis}, parents.get(p.chassis)
        while up is not None and up not in seen and up not in read:
            seen.add(up)
            up = parents.get(up)
        if up is None or up in seen:
            keep.append(p)
    return keep
