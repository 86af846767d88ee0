"""Incidents the simulator injects, and the ground truth the pipelines are checked against.

Besides the incidents (a cluster going idle, a cooling fault, a degraded link, a GPU falling
off the bus, a tenant holding cards idle for hours) the ground truth records what the
simulator configured on purpose: the sites set up as chronically underused; every site's,
cluster's, hub's and province's expected load hour by hour with the minimum and definition
the policy applies to it; every link's route factor and whether its tier budget is reachable
at all over that route; each site's typical PUE and its target; the RTT a demand city can
expect to each site; and, as the history writes them, the samples of the cards each
namespace held and of the free ones. The scorer (`computewatch.sim.scoring`) judges findings
by these alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["AllocationTruth", "GroundTruth", "Incident", "LinkTruth", "UtilizationTruth"]


@dataclass(frozen=True, slots=True)
class Incident:
    """One injected fault over the half-open interval [start, end)."""

    kind: str  # cluster_idle | cooling_fault | link_degraded | device_lost | tenant_idle
    subject_type: str  # cluster | site | link | device | namespace
    subject: str
    start: datetime
    end: datetime
    detail: dict[str, Any] = field(default_factory=dict)

    def active(self, t: datetime) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class LinkTruth:
    """One simulated link as configured: its route and what that route makes of its RTT.

    ``typical_min_rtt_s`` is the RTT floor (fiber minimum x route factor + equipment delay),
    ``typical_p95_s`` the p95 of a minute at the day's mean load (the floor plus three times
    the typical queueing scale), ``inflation_limit`` the route inflation the simulation's
    policy allows. The link's pair is ``src|dst`` sorted (`pair`)."""

    src: str
    dst: str
    tier: str
    fiber_min_rtt_s: float
    route_factor: float
    budget_rtt_s: float
    typical_p95_s: float
    typical_min_rtt_s: float = float("nan")
    inflation_limit: float = float("nan")

    @property
    def pair(self) -> str:
        return f"{self.src}|{self.dst}" if self.src <= self.dst else f"{self.dst}|{self.src}"

    @property
    def over_budget_by_design(self) -> bool:
        """True when the route alone puts the link's typical p95 over its tier budget."""
        return self.typical_p95_s > self.budget_rtt_s

    @property
    def budget_margin(self) -> float:
        """typical p95 / budget - 1: how far over (> 0) or under (< 0) its budget the route
        puts the link; near 0 the link crosses its budget with the daily load."""
        return self.typical_p95_s / self.budget_rtt_s - 1.0

    @property
    def inflation(self) -> float:
        """The route inflation a probe measures: RTT floor / fiber minimum (the route factor
        plus the equipment delay's share, which weighs on short links)."""
        return self.typical_min_rtt_s / self.fiber_min_rtt_s


@dataclass(frozen=True, slots=True)
class UtilizationTruth:
    """The load the simulator configured for one subject, hour by hour from the truth's start.

    Every hour each accelerator is allocated to a job, or not, with its site's probability;
    ``allocated`` is the expected share of the subject's accelerators allocated in each hour
    (incidents included: an idled cluster's cards are allocated to nothing), and
    ``allocated_var`` the variance of that share, since the draws are independent per card
    and hour (a 4-card site's share moves by 25 points when one job ends).
    ``accelerators`` is the expected number reporting in each hour (a lost card stops).
    ``minimum`` and ``definition`` are what the simulation's policy applies at this level.
    """

    level: str  # site | cluster | hub | province
    subject: str
    minimum: float
    definition: str  # time_weighted | busy_fraction
    accelerators: list[float]
    allocated: list[float]
    allocated_var: list[float]


@dataclass(frozen=True, slots=True)
class AllocationTruth:
    """What the history wrote for the cards one namespace held at one site, hour by hour
    from the truth's start (``namespace`` "" for the cards no pod held: the free ones).

    ``samples``: utilization samples written (a lost card writes none); ``utilization_sum``:
    their sum, of the values as written; ``idle_samples``: the samples of cards the namespace
    held while they ran no job (allocated but idle; always 0 for the free cards).
    ``samples`` and ``idle_samples`` are whole as soon as the history is made (it replays
    each hour's allocation draws); ``utilization_sum`` is filled as the history generates
    each hour, so it is whole once every hour has been read
    (`computewatch.sim.History.chunks`).
    """

    site: str
    namespace: str
    samples: list[float]
    utilization_sum: list[float]
    idle_samples: list[float]


@dataclass
class GroundTruth:
    seed: int
    start: datetime
    end: datetime
    step: timedelta
    incidents: list[Incident]
    underused_sites: list[str]
    links: list[LinkTruth]
    site_pue: dict[str, float] = field(default_factory=dict)
    """Each site's configured typical PUE (climate and season, no incident)."""
    pue_targets: dict[str, float] = field(default_factory=dict)
    """Each site's PUE target under the simulation's policy."""
    utilization: list[UtilizationTruth] = field(default_factory=list)
    """Expected load of every site, cluster, hub and province (see `UtilizationTruth`)."""
    busy_utilization: float = 0.88
    """Mean utilization of an accelerator allocated to a job."""
    free_utilization: float = 0.0
    """Mean utilization of an accelerator allocated to none."""
    sustained_hours: float = 0.0
    """How long a shortfall must last to count, under the simulation's policy."""
    city_rtt: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Per demand city and site: [lowest, highest] RTT the city's best route to the site can
    have (from the links' route factors where a site in the city probes the site; else from
    the great-circle distance at the simulator's route factors, 1.1 to 2.0)."""
    allocation: list[AllocationTruth] = field(default_factory=list)
    """Per site and namespace (and the free cards): what the history wrote, hour by hour."""

    def whole_hours(self, start: datetime, end: datetime) -> list[int]:
        """Indices of the simulated hours that lie whole inside [start, end)."""
        return [h for h, share in self._hours(start, end) if share >= 1.0]

    def allocation_hours(self, start: datetime | None = None,
                         end: datetime | None = None) -> dict[tuple[str, str], dict[str, float]]:
        """Per (site, namespace) over the whole simulated hours inside [start, end) (default:
        the truth's period): ``idle_accelerator_hours`` (the core's one definition:
        (samples - utilization sum) x the step), ``idle_card_hours`` (hours the namespace
        held cards that ran no job) and ``samples``. Namespace "" is the free cards."""
        hours = self.whole_hours(start or self.start, end or self.end)
        step_h = self.step / timedelta(hours=1)
        out = {}
        for a in self.allocation:
            n = sum(a.samples[h] for h in hours)
            usum = sum(a.utilization_sum[h] for h in hours)
            idle = sum(a.idle_samples[h] for h in hours)
            if n:
                out[(a.site, a.namespace)] = {"samples": n,
                                              "idle_accelerator_hours": (n - usum) * step_h,
                                              "idle_card_hours": idle * step_h}
        return out

    def utilization_of(self, level: str, subject: str) -> UtilizationTruth:
        for u in self.utilization:
            if u.level == level and u.subject == subject:
                return u
        raise KeyError(f"no {level} {subject!r} in the ground truth")

    def _hours(self, start: datetime, end: datetime) -> list[tuple[int, float]]:
        """(hour index, share of that simulated hour inside [start, end))."""
        hour = timedelta(hours=1)
        out = []
        first = max(0, math.floor((start - self.start) / hour))
        last = min(math.ceil((self.end - self.start) / hour), math.ceil((end - self.start) / hour))
        for h in range(first, last):
            lo = self.start + h * hour
            share = (min(end, lo + hour) - max(start, lo)) / hour
            if share > 0:
                out.append((h, share))
        return out

    def expected_utilization(self, u: UtilizationTruth, definition: str, start: datetime,
                             end: datetime) -> tuple[float, float]:
        """The expected value of ``definition`` for ``u`` over [start, end), and its standard
        deviation from job churn; (NaN, NaN) outside the simulated time.

        Hours are weighted by their accelerators, as the pipelines weight by samples or cards.
        ``time_weighted``: free + (busy - free) x allocated share; ``busy_fraction``: the
        allocated share (an allocated card's window mean is far above any busy level, a free
        one's far below).
        """
        gain = self.busy_utilization - self.free_utilization
        num = den = var = 0.0
        for h, share in self._hours(start, end):
            w = share * u.accelerators[h]
            a = u.allocated[h]
            value = a if definition == "busy_fraction" else self.free_utilization + gain * a
            scale = 1.0 if definition == "busy_fraction" else gain
            num, den = num + w * value, den + w
            var += w * w * scale * scale * u.allocated_var[h]
        if den <= 0:
            return math.nan, math.nan
        return num / den, math.sqrt(var) / den

    def expected_idle_hours(self, u: UtilizationTruth, start: datetime,
                            end: datetime) -> tuple[float, float]:
        """Expected idle accelerator-hours of ``u`` over [start, end) (sum over its reporting
        cards of 1 - utilization, per hour), and the standard deviation from job churn."""
        gain = self.busy_utilization - self.free_utilization
        total = var = 0.0
        for h, share in self._hours(start, end):
            n = u.accelerators[h]
            total += share * n * (1.0 - self.free_utilization - gain * u.allocated[h])
            var += (share * n * gain) ** 2 * u.allocated_var[h]
        return total, math.sqrt(var)

    def incident(self, kind: str) -> Incident:
        for inc in self.incidents:
            if inc.kind == kind:
                return inc
        raise KeyError(f"no {kind!r} incident in the ground truth")

    def to_json(self) -> str:
        def enc(o: object) -> object:
            if isinstance(o, datetime):
                return o.isoformat()
            if isinstance(o, timedelta):
                return o.total_seconds()
            raise TypeError(type(o))

        doc = {
            "seed": self.seed, "start": self.start, "end": self.end, "step_s": self.step,
            "incidents": [asdict(i) for i in self.incidents],
            "underused_sites": self.underused_sites,
            "links": [asdict(lt) | {"pair": lt.pair,
                                    "over_budget_by_design": lt.over_budget_by_design,
                                    "budget_margin": lt.budget_margin,
                                    "inflation": lt.inflation}
                      for lt in self.links],
            "site_pue": self.site_pue, "pue_targets": self.pue_targets,
            "utilization": [asdict(u) for u in self.utilization],
            "busy_utilization": self.busy_utilization,
            "free_utilization": self.free_utilization,
            "sustained_hours": self.sustained_hours, "city_rtt": self.city_rtt,
            "allocation": [asdict(a) for a in self.allocation],
        }
        return json.dumps(doc, default=enc, indent=1, ensure_ascii=False)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> GroundTruth:
        doc = json.loads(path.read_text(encoding="utf-8"))
        incidents = [
            Incident(i["kind"], i["subject_type"], i["subject"],
                     datetime.fromisoformat(i["start"]), datetime.fromisoformat(i["end"]),
                     i["detail"]) for i in doc["incidents"]
        ]
        derived = {"pair", "over_budget_by_design", "budget_margin", "inflation"}
        links = [LinkTruth(**{k: v for k, v in lt.items() if k not in derived})
                 for lt in doc["links"]]
        return cls(doc["seed"], datetime.fromisoformat(doc["start"]),
                   datetime.fromisoformat(doc["end"]), timedelta(seconds=doc["step_s"]),
                   incidents, doc["underused_sites"], links, doc.get("site_pue", {}),
                   doc.get("pue_targets", {}),
                   [UtilizationTruth(**u) for u in doc.get("utilization", [])],
                   doc.get("busy_utilization", 0.88), doc.get("free_utilization", 0.0),
                   doc.get("sustained_hours", 0.0), doc.get("city_rtt", {}),
                   [AllocationTruth(**a) for a in doc.get("allocation", [])])
