"""Incidents the simulator injects, and the ground truth the pipelines are checked against.

Besides the incidents (a cluster going idle, a cooling fault, a degraded link, a GPU falling
off the bus) the ground truth records what the simulator configured on purpose: the sites
set up as chronically underused, and every link's route factor and whether its tier budget
is reachable at all over that route. A pipeline finding is "true" when it names one of these.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["GroundTruth", "Incident", "LinkTruth"]


@dataclass(frozen=True, slots=True)
class Incident:
    """One injected fault over the half-open interval [start, end)."""

    kind: str  # cluster_idle | cooling_fault | link_degraded | device_lost
    subject_type: str  # cluster | site | link | device
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
            "site_pue": self.site_pue,
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
                   incidents, doc["underused_sites"], links, doc.get("site_pue", {}))
