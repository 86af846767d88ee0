"""The simulated national fleet: fakes at the driver boundary and vectorized history.

Names are imported on first use, so an agent running one simulated node does not load the
history generator (and pyarrow) it never calls.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "Fleet",
    "GroundTruth",
    "History",
    "Incident",
    "LinkTruth",
    "SiteProfile",
    "build_fleet",
    "simulate",
    "simulated_meters",
]

_WHERE = {
    "Fleet": "fleet", "SiteProfile": "fleet", "build_fleet": "fleet",
    "simulated_meters": "fleet",
    "History": "history", "simulate": "history",
    "GroundTruth": "incidents", "Incident": "incidents", "LinkTruth": "incidents",
}

if TYPE_CHECKING:
    from computewatch.sim.fleet import Fleet, SiteProfile, build_fleet, simulated_meters
    from computewatch.sim.history import History, simulate
    from computewatch.sim.incidents import GroundTruth, Incident, LinkTruth


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"computewatch.sim.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'computewatch.sim' has no attribute {name!r}")
