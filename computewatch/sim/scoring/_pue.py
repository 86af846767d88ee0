"""Matchers of the PUE rules: ``pue_over_target``, ``pue_excursion`` and ``pue_incomplete``.
Findings match on their subject site and the overlap of their window with the truth's.

``pue_over_target``: a site is a truth item when its expected PUE over the analysed period
(its configured typical PUE, plus each cooling fault's increase times the share of the period
it lasts) is above its target by more than ``MARGIN``; found by a finding on the site that
overlaps the period. A finding is false when the site's expected PUE over the finding's
window is not above the finding's threshold less ``MARGIN`` (the day's swing, +-0.03, and
its weighting by load make a site's measured PUE wander that much from its configured one).

``pue_excursion``: each cooling fault is a truth item, found by a finding on its site that
overlaps it; a finding that overlaps no cooling fault at its site is false.

``pue_incomplete``: the simulator meters every site completely, so its truth items are
only incidents of kind ``meter_gap`` (none today), found by a finding on their site that
overlaps them; every other finding is false.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from computewatch.findings import Finding, Period
from computewatch.sim.incidents import GroundTruth
from computewatch.sim.scoring._rules import Matcher, RuleScore, overlap, overlaps

__all__ = ["MARGIN", "MATCHERS"]

MARGIN = 0.02
"""How far a measured PUE may sit from the configured one (see the module docstring)."""


def _site_of(f: Finding) -> str:
    return f.site or f.subject


def expected_pue(truth: GroundTruth, site: str, start: datetime, end: datetime) -> float:
    """The site's configured PUE plus each cooling fault's share of [start, end)."""
    base = truth.site_pue.get(site)
    if base is None:
        return float("nan")
    span = end - start
    for inc in truth.incidents:
        if inc.kind == "cooling_fault" and inc.subject == site:
            base += float(inc.detail["pue_increase"]) * (overlap(start, end, inc.start,
                                                                 inc.end) / span)
    return base


def _over_target(findings: Sequence[Finding], truth: GroundTruth,
                 period: Period) -> RuleScore:
    found, missed = [], []
    for site, target in sorted(truth.pue_targets.items()):
        pue = expected_pue(truth, site, period.start, period.end)
        if pue > target + MARGIN:
            hit = any(_site_of(f) == site and overlaps(f, period.start, period.end)
                      for f in findings)
            (found if hit else missed).append(f"{site}: expected {pue:.3f} > {target:g}")
    wrong = [f"{_site_of(f)} {f.start:%m-%d %H:%M}-{f.end:%m-%d %H:%M}: {f.observed:.3f} > "
             f"{f.threshold:g}" for f in findings
             if not expected_pue(truth, _site_of(f), f.start, f.end) > f.threshold - MARGIN]
    return RuleScore("pue_over_target", len(found), len(wrong), len(missed), tuple(missed),
                     tuple(wrong))


def _incident_rule(rule: str, kind: str) -> Matcher:
    def match(findings: Sequence[Finding], truth: GroundTruth, period: Period) -> RuleScore:
        incidents = [i for i in truth.incidents if i.kind == kind
                     and i.start < period.end and i.end > period.start]
        found, missed = [], []
        for inc in incidents:
            site = str(inc.detail.get("site", inc.subject))
            hit = any(_site_of(f) == site and overlaps(f, inc.start, inc.end) for f in findings)
            (found if hit else missed).append(f"{kind} {site} {inc.start:%H:%M}-"
                                              f"{inc.end:%H:%M} UTC")
        wrong = [f"{_site_of(f)} {f.start:%m-%d %H:%M}-{f.end:%H:%M}" for f in findings
                 if not any(_site_of(f) == str(i.detail.get("site", i.subject))
                            and overlaps(f, i.start, i.end) for i in incidents)]
        return RuleScore(rule, len(found), len(wrong), len(missed), tuple(missed),
                         tuple(wrong))

    return match


MATCHERS: dict[str, Matcher] = {
    "pue_over_target": _over_target,
    "pue_excursion": _incident_rule("pue_excursion", "cooling_fault"),
    "pue_incomplete": _incident_rule("pue_incomplete", "meter_gap"),
}
