"""`RedfishCollector`: the per-run reads, and counting and logging failures.

Each endpoint is read in its own thread, so a hung or broken BMC delays or stops only its own
meters. The collector looks once where each meter keeps its readings (`_discovery`: a plan of
resource URIs and property paths), then GETs only those resources each run; it discovers again
after any failure and every hour. A run in which no endpoint gave a reading raises `NoData`.
The README states the failure codes and the chassis rules.
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
from computewatch.collectors import DriverAbsent, placement_labels, readings_or_no_data
from computewatch.collectors.redfish._client import (
    CONNECTION_CODES,
    PARSE_CODES,
    Client,
    Fail,
    default_session,
)
from computewatch.collectors.redfish._config import RedfishEndpoint
from computewatch.collectors.redfish._discovery import discover, reading_value
from computewatch.collectors.redfish._documents import ChassisPlan
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
        """One reading of every endpoint; failures are counted, and `NoData` (carrying the
        counters) is raised only when no endpoint gave a reading."""
        states = self._states
        if not states:
            raise DriverAbsent("redfish: no endpoints configured")
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

        def reason() -> str:
            each = "; ".join(f"{s.ep.source}: " + (" | ".join(
                f"{f.code}: {f'{f.chassis}: ' if f.chassis else ''}{f.message}"
                for f in r.failures) or "no meter") for s, r in zip(states, results, strict=True))
            n = len(states)
            return (f"redfish: no reading from {'the' if n == 1 else f'any of {n}'} endpoint"
                    f"{'' if n == 1 else 's'}: {each}")

        return readings_or_no_data(samples + self.error_samples(), reason)

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
            plans = discover(state.client, state.ep, cache, result.failures)
            state.plans = plans
            state.planned_at = time.monotonic()
        now = datetime.now(UTC)
        stale = bool(result.failures)
        for plan in state.plans:
            for field_, reading in (("watts", plan.watts), ("joules_total", plan.joules)):
                if reading is None:
                    continue
                try:
                    value = reading_value(state.client, reading, cache)
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

