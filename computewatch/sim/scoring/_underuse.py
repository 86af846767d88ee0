"""Matchers of the underuse rules: ``site_below_minimum``, ``cluster_below_minimum``,
``hub_below_minimum`` and ``province_below_minimum``.

Truth items of a level, from the truth's expected hourly load of every subject
(`UtilizationTruth`: configured targets, the day's shape, incidents):

1. every subject whose expected value over the analysed period, under the definition and
   minimum the simulation's policy applies at that level, is below the minimum (a site
   configured as underused; a cluster, hub or province whose sites' loads put it below);
   found by a finding of the level on that subject that overlaps the period;
2. every subject an idle-cluster incident idles, during the incident (the cluster at the
   cluster level, each of its sites at the site level); found by a finding on that subject
   covering at least half of the incident's time inside the period.

Both only where the policy's ``sustained_hours`` fit: a period (or the part of an incident
inside it) shorter than that holds no shortfall the policy counts.

A finding is false when the shortfall it reports cannot be: the expected value of its
definition (``detail["definition"]``) over its window is at or above its threshold plus
three standard deviations of job churn over that window (cards are allocated per hour, so a
small site's hourly load swings widely). A true finding that is no truth item (a normal
cluster's night below its minimum) is neither found nor false.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from computewatch.findings import Finding, Period
from computewatch.sim.incidents import GroundTruth
from computewatch.sim.scoring._rules import Matcher, RuleScore, covered_share, overlaps

__all__ = ["MATCHERS", "Z_PLAUSIBLE"]

Z_PLAUSIBLE = 3.0
"""A reported shortfall is false beyond this many standard deviations of job churn."""

_LEVELS = ("site", "cluster", "hub", "province")


def _plausible(f: Finding, truth: GroundTruth, level: str) -> bool:
    try:
        u = truth.utilization_of(level, f.subject)
    except KeyError:
        return False  # a subject the simulator never had
    definition = str(f.detail.get("definition", u.definition))
    mean, sd = truth.expected_utilization(u, definition, f.start, f.end)
    return mean == mean and mean < f.threshold + Z_PLAUSIBLE * sd


def _matcher(level: str) -> Matcher:
    rule = f"{level}_below_minimum"

    def match(findings: Sequence[Finding], truth: GroundTruth, period: Period) -> RuleScore:
        mine = [f for f in findings if f.subject_type == level]
        found: list[str] = []
        missed: list[str] = []
        sustained = timedelta(hours=truth.sustained_hours)
        for u in (u for u in truth.utilization if u.level == level):
            if period.end - period.start < sustained:
                break
            mean, _ = truth.expected_utilization(u, u.definition, period.start, period.end)
            if mean == mean and mean < u.minimum:
                item = f"{level} {u.subject}: expected {mean:.3f} < {u.minimum:g} over the period"
                hit = any(f.subject == u.subject and overlaps(f, period.start, period.end)
                          for f in mine)
                (found if hit else missed).append(item)
        for inc in truth.incidents:
            lo, hi = max(inc.start, period.start), min(inc.end, period.end)
            if inc.kind != "cluster_idle" or hi - lo < max(sustained, timedelta(microseconds=1)):
                continue
            subjects = [inc.subject] if level == "cluster" else (
                list(inc.detail["sites"]) if level == "site" else [])
            for subject in subjects:
                item = f"{level} {subject}: idled {inc.start:%H:%M}-{inc.end:%H:%M} UTC"
                hit = any(f.subject == subject and covered_share(f, lo, hi) >= 0.5
                          for f in mine)
                (found if hit else missed).append(item)
        wrong = [f"{f.subject} {f.start:%m-%d %H:%M}-{f.end:%m-%d %H:%M}: {f.observed:.3f} < "
                 f"{f.threshold:g}" for f in findings
                 if f.subject_type != level or not _plausible(f, truth, level)]
        return RuleScore(rule, len(found), len(wrong), len(missed), tuple(missed),
                         tuple(wrong))

    return match


MATCHERS: dict[str, Matcher] = {f"{level}_below_minimum": _matcher(level) for level in _LEVELS}
