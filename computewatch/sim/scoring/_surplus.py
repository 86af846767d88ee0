"""Matcher of the surplus rule: ``idle_capacity_within_circle``.

Truth items: every demand city of the truth (``city_rtt``) and every tier budget its links
carry (the latency circles: 1, 5 and 20 ms under the shipped policy). An item is found by a
finding on that city whose ``detail["circle_s"]`` is the budget and which is true.

A finding is true when what it counts agrees with the truth over its window: the sites it
puts inside the circle (``detail["sites"]``) number at least those whose highest plausible
RTT from the city is within the circle and at most those whose lowest is; and its idle
accelerator-hours (``detail["idle_accelerator_hours"]``) lie between the expected idle hours
of the surely-inside sites and of the possibly-inside ones, each widened by three standard
deviations of job churn and ``RELATIVE_TOLERANCE``. Otherwise it is false (a wrong RTT, a
wrong circle or a wrong sum of idle hours).

Surplus offers free capacity only (issue 17): where the truth records allocation, a site's
expected idle hours are its free cards' samples (counted by the history) x the step x
(1 - the free utilization), with no churn left to allow for; a finding that offers the
idle hours of cards pods hold is false. Truths without allocation use the whole site's
expected idle hours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta

from computewatch.findings import Finding, Period
from computewatch.sim.incidents import GroundTruth
from computewatch.sim.scoring._rules import Matcher, RuleScore

__all__ = ["MATCHERS", "RELATIVE_TOLERANCE"]

RELATIVE_TOLERANCE = 0.02
"""Slack on the idle hours for what the expectation leaves out (partly idled hours)."""

_RULE = "idle_capacity_within_circle"
_Z = 3.0


def _true(f: Finding, truth: GroundTruth) -> bool:
    rtt = truth.city_rtt.get(f.subject)
    circle = f.detail.get("circle_s")
    if rtt is None or circle is None:
        return False
    sure = [s for s, (_, hi) in rtt.items() if hi <= circle]
    maybe = [s for s, (lo, _) in rtt.items() if lo <= circle]
    if not len(sure) <= int(f.detail.get("sites", -1)) <= len(maybe):
        return False

    free = _free_idle(truth, f)

    def idle(sites: list[str]) -> tuple[float, float]:
        if free is not None:
            return sum(free.get(s, 0.0) for s in sites), 0.0
        total = var = 0.0
        for s in sites:
            try:
                h, sd = truth.expected_idle_hours(truth.utilization_of("site", s), f.start, f.end)
            except KeyError:
                continue
            total, var = total + h, var + sd * sd
        return total, math.sqrt(var)

    (lo, lo_sd), (hi, hi_sd) = idle(sure), idle(maybe)
    claimed = float(f.detail.get("idle_accelerator_hours", math.nan))
    return (lo - _Z * lo_sd) * (1 - RELATIVE_TOLERANCE) <= claimed \
        <= (hi + _Z * hi_sd) * (1 + RELATIVE_TOLERANCE)


def _free_idle(truth: GroundTruth, f: Finding) -> dict[str, float] | None:
    """Per site: the free cards' expected idle hours over the finding's whole hours; None
    when the truth records no allocation."""
    if not truth.allocation:
        return None
    step_h = truth.step / timedelta(hours=1)
    hours = truth.whole_hours(f.start, f.end)
    return {a.site: sum(a.samples[h] for h in hours) * step_h * (1 - truth.free_utilization)
            for a in truth.allocation if a.namespace == ""}


def _match(findings: Sequence[Finding], truth: GroundTruth, period: Period) -> RuleScore:
    budgets = sorted({lt.budget_rtt_s for lt in truth.links})
    good = [f for f in findings if _true(f, truth)]
    found, missed = [], []
    for city in sorted(truth.city_rtt):
        for budget in budgets:
            hit = any(f.subject == city and abs(float(f.detail["circle_s"]) - budget) < 1e-9
                      for f in good)
            (found if hit else missed).append(f"{city} within {budget * 1000:g} ms")
    wrong = [f"{f.subject} within {float(f.detail.get('circle_s', math.nan)) * 1000:g} ms: "
             f"{f.detail.get('sites')} sites, "
             f"{float(f.detail.get('idle_accelerator_hours', math.nan)):,.0f} idle h"
             for f in findings if f not in good]
    return RuleScore(_RULE, len(found), len(wrong), len(missed), tuple(missed), tuple(wrong))


MATCHERS: dict[str, Matcher] = {_RULE: _match}
