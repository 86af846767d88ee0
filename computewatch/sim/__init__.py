"""The simulated national fleet: fakes at the driver boundary and vectorized history."""

from computewatch.sim.fleet import Fleet, SiteProfile, build_fleet
from computewatch.sim.history import History, simulate
from computewatch.sim.incidents import GroundTruth, Incident, LinkTruth

__all__ = [
    "Fleet",
    "GroundTruth",
    "History",
    "Incident",
    "LinkTruth",
    "SiteProfile",
    "build_fleet",
    "simulate",
]
