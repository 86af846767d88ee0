"""Matchers of the anomaly rules: ``accelerator_lost`` and ``site_anomaly``.

``accelerator_lost``: each injected lost device is a truth item, found by a finding on that
device that starts within two minutes of the loss. A finding on any other device, or on the
lost device outside its loss, is false.

``site_anomaly``: truth items are the injected incidents a site's own features show: a
cooling fault (found by a finding on its site that overlaps it and names ``pue`` as its most
deviant feature) and an idle cluster (found by a finding on one of its sites that overlaps it
and names ``utilization`` or ``watts_per_utilization`` first). A finding is true when its
most deviant feature is what an incident at its site during its window moves: ``pue`` for a
cooling fault, ``utilization`` or ``watts_per_utilization`` for an idled site,
``rtt_to_hub`` for an end of a degraded link; every other finding is false (a site that is
merely underused by configuration is steady, not anomalous). The feature is read from
``detail["features"]`` (the pipeline's explanation, most deviant first).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from computewatch.findings import Finding, Period
from computewatch.sim.incidents import GroundTruth, Incident
from computewatch.sim.scoring._rules import Matcher, RuleScore, overlaps

__all__ = ["LOSS_START_TOLERANCE", "MATCHERS"]

LOSS_START_TOLERANCE = timedelta(minutes=2)
"""How far a lost accelerator's finding may start from the loss."""

_MOVES = {
    "cooling_fault": frozenset({"pue"}),
    "cluster_idle": frozenset({"utilization", "watts_per_utilization"}),
    "link_degraded": frozenset({"rtt_to_hub"}),
}
"""Which site feature each incident moves."""


def _in(inc: Incident, period: Period) -> bool:
    return inc.start < period.end and inc.end > period.start


def _lost(findings: Sequence[Finding], truth: GroundTruth, period: Period) -> RuleScore:
    found, missed, matched = [], [], set()
    for inc in truth.incidents:
        if inc.kind != "device_lost" or not _in(inc, period):
            continue
        hits = [i for i, f in enumerate(findings) if f.subject == inc.subject
                and abs(f.start - inc.start) <= LOSS_START_TOLERANCE]
        matched.update(hits)
        (found if hits else missed).append(f"{inc.subject} lost at {inc.start:%m-%d %H:%M}")
    wrong = [f"{f.subject} {f.start:%m-%d %H:%M}" for i, f in enumerate(findings)
             if i not in matched and not any(
                 inc.kind == "device_lost" and inc.subject == f.subject
                 and overlaps(f, inc.start, inc.end) for inc in truth.incidents)]
    return RuleScore("accelerator_lost", len(found), len(wrong), len(missed), tuple(missed),
                     tuple(wrong))


def _sites(inc: Incident) -> set[str]:
    if inc.kind == "cluster_idle":
        return set(inc.detail["sites"])
    if inc.kind == "link_degraded":
        return set(inc.subject.split("|"))
    return {inc.subject}


def _top_feature(f: Finding) -> str:
    features = f.detail.get("features") or [{}]
    return str(features[0].get("feature", ""))


def _explains(f: Finding, inc: Incident) -> bool:
    """True when ``inc`` moves the finding's most deviant feature at its site and time."""
    return (f.subject in _sites(inc) and overlaps(f, inc.start, inc.end)
            and _top_feature(f) in _MOVES.get(inc.kind, ()))


def _site(findings: Sequence[Finding], truth: GroundTruth, period: Period) -> RuleScore:
    found, missed = [], []
    for inc in truth.incidents:
        if inc.kind not in ("cooling_fault", "cluster_idle") or not _in(inc, period):
            continue
        hit = any(_explains(f, inc) for f in findings)
        (found if hit else missed).append(f"{inc.kind} {inc.subject} "
                                          f"{inc.start:%H:%M}-{inc.end:%H:%M} UTC")
    wrong = [f"{f.subject} {f.start:%m-%d %H:%M}-{f.end:%H:%M}: {_top_feature(f)}"
             for f in findings if not any(_explains(f, inc) for inc in truth.incidents)]
    return RuleScore("site_anomaly", len(found), len(wrong), len(missed), tuple(missed),
                     tuple(wrong))


MATCHERS: dict[str, Matcher] = {"accelerator_lost": _lost, "site_anomaly": _site}
