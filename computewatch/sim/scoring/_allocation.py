"""Matcher of the allocation rule: ``allocated_idle`` (a namespace holding cards idle).

Truth items: every ``tenant_idle`` incident at least the policy's sustained hours long (a
namespace whose pod holds cards of one node idle). An item is found by a true finding on it.

A finding is true when it names an incident's site and namespace (subject
``<site>/<namespace>``), covers at least half of the incident's time, and every card it
names is one of the incident's (a lost card may leave one out). The history's other held
cards are drawn hour by hour, so no other card is held idle by one namespace for the
sustained hours: any other finding is false.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from computewatch.findings import Finding, Period
from computewatch.sim.incidents import GroundTruth, Incident
from computewatch.sim.scoring._rules import Matcher, RuleScore, covered_share

__all__ = ["MATCHERS", "MIN_COVER"]

MIN_COVER = 0.5
"""Share of the incident's time a finding must cover to find it."""

_RULE = "allocated_idle"


def _items(truth: GroundTruth, period: Period) -> list[Incident]:
    need = timedelta(hours=truth.sustained_hours)
    return [i for i in truth.incidents if i.kind == "tenant_idle"
            and min(i.end, period.end) - max(i.start, period.start) >= need]


def _names(f: Finding, inc: Incident) -> bool:
    devices = set(f.detail.get("devices", ()))
    return (f.subject == f"{inc.detail['site']}/{inc.subject}" and bool(devices)
            and devices <= set(inc.detail["devices"])
            and covered_share(f, inc.start, inc.end) >= MIN_COVER)


def _match(findings: Sequence[Finding], truth: GroundTruth, period: Period) -> RuleScore:
    items = _items(truth, period)
    every = [i for i in truth.incidents if i.kind == "tenant_idle"]
    found = [i for i in items if any(_names(f, i) for f in findings)]
    missed = [f"{i.detail['site']}/{i.subject}: {i.detail['cards']} cards idle "
              f"{i.start:%m-%d %H:%M}-{i.end:%m-%d %H:%M}" for i in items if i not in found]
    wrong = [f"{f.subject}: {int(f.observed)} cards {f.start:%m-%d %H:%M}-{f.end:%m-%d %H:%M}"
             for f in findings if not any(_names(f, i) for i in every)]
    return RuleScore(_RULE, len(found), len(wrong), len(missed), tuple(missed), tuple(wrong))


MATCHERS: dict[str, Matcher] = {_RULE: _match}
