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
    src: str
    dst: str
    tier: str
    fiber_min_rtt_s: float
    route_factor: float
    budget_rtt_s: float
    typical_p95_s: float

    @property
    def over_budget_by_design(self) -> bool:
        """True when the route alone puts the link's typical p95 over its tier budget."""
        return self.typical_p95_s > self.budget_rtt_s


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
            "links": [asdict(lt) | {"over_budget_by_design": lt.over_budget_by_design}
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
        links = [LinkTruth(**{k: v for k, v in lt.items() if k != "over_budget_by_design"})
                 for lt in doc["links"]]
        return cls(doc["seed"], datetime.fromisoformat(doc["start"]),
                   datetime.fromisoformat(doc["end"]), timedelta(seconds=doc["step_s"]),
                   incidents, doc["underused_sites"], links, doc.get("site_pue", {}))
