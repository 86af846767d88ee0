"""Matchers of the latency rules: ``link_degraded``, ``tier_budget_unmet``,
``route_inflation`` and ``budget_below_physics``. A link is its unordered pair (``a|b``, the
ids sorted) on both sides: a finding's ``subject`` or the ``pair`` of each link a planning
finding lists, and the truth's `LinkTruth.pair` and incident subjects.

``link_degraded``: each ``link_degraded`` incident inside the period is a truth item, found
by a finding on its pair whose window covers at least half of the incident's time inside the
period (the right link and the right period). A finding that covers no such incident on its
pair for at least half of the finding's own window is false.

The planning rules list links (``detail["links"]``); each listed link is one claim, and the
truth items are links, so a hub pair's finding with 12 links makes 12 claims:

``tier_budget_unmet``: a truth item is a link over its budget by design whose typical p95
(`LinkTruth.typical_p95_s`) exceeds its budget by at least ``MARGIN`` (1%); found when some
finding lists it. A listed link is false when its typical p95 is at least ``MARGIN`` under
its budget. Links within ``MARGIN`` of their budget cross it with the daily load (the
simulator's queueing scale moves the p95 by about that much between night and the afternoon
peak), so the truth does not say whether they are over budget "through most of" a day:
listing them is neither a find nor a false claim.

``route_inflation``: a truth item is a link of at least 0.5 ms fiber minimum (the pipeline
does not score shorter ones, where equipment dominates) whose RTT floor / fiber minimum
(`LinkTruth.inflation`: the route factor plus the equipment delay's share) exceeds the
policy's limit (`LinkTruth.inflation_limit`) by at least ``INFLATION_MARGIN``; a listed link
is false when it is shorter than that, or its inflation is at least ``INFLATION_MARGIN``
under the limit (measured minima sit up to 0.05 ms of queueing above the floor).

``budget_below_physics``: a truth item is a link whose fiber minimum exceeds its budget (no
noise: both are configuration); a listed link is false otherwise. Exact, no margin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from computewatch.findings import Finding, Period
from computewatch.sim.incidents import GroundTruth, LinkTruth
from computewatch.sim.scoring._rules import Matcher, RuleScore, covered_share

__all__ = ["INFLATION_MARGIN", "MARGIN", "MATCHERS"]

MARGIN = 0.01
"""Share of its budget within which a link's typical p95 says nothing (see the docstring)."""

INFLATION_MARGIN = 0.02
"""Route inflation within this of the limit says nothing (see the docstring)."""

SHORT_LINK_FIBER_S = 0.5e-3
"""The pipeline's short-link exemption from route inflation (under 50 km)."""


def _link_degraded(findings: Sequence[Finding], truth: GroundTruth,
                   period: Period) -> RuleScore:
    incidents = [i for i in truth.incidents if i.kind == "link_degraded"
                 and i.start < period.end and i.end > period.start]
    found, missed = [], []
    for inc in incidents:
        lo, hi = max(inc.start, period.start), min(inc.end, period.end)
        hit = any(f.subject == inc.subject and covered_share(f, lo, hi) >= 0.5
                  for f in findings)
        (found if hit else missed).append(f"{inc.subject} {inc.start:%H:%M}-{inc.end:%H:%M}")
    wrong = [f"{f.subject} {f.start:%m-%d %H:%M}-{f.end:%H:%M}" for f in findings
             if not any(f.subject == i.subject and _share_of_finding(f, i) >= 0.5
                        for i in incidents)]
    return RuleScore("link_degraded", len(found), len(wrong), len(missed), tuple(missed),
                     tuple(wrong))


def _share_of_finding(f: Finding, inc) -> float:
    """Share of the finding's own window that the incident covers."""
    span = f.end - f.start
    inside = min(f.end, inc.end) - max(f.start, inc.start)
    return inside / span if span.total_seconds() > 0 and inside.total_seconds() > 0 else 0.0


def _listed(findings: Sequence[Finding]) -> dict[str, Finding]:
    return {str(e["pair"]): f for f in findings for e in f.detail.get("links", [])}


def _links_rule(rule: str, expected: Callable[[LinkTruth], bool],
                false: Callable[[LinkTruth], bool],
                describe: Callable[[LinkTruth], str]) -> Matcher:
    def match(findings: Sequence[Finding], truth: GroundTruth, period: Period) -> RuleScore:
        listed = _listed(findings)
        by_pair = {lt.pair: lt for lt in truth.links}
        found, missed = [], []
        for lt in truth.links:
            if expected(lt):
                (found if lt.pair in listed else missed).append(f"{lt.pair}: {describe(lt)}")
        wrong = [f"{pair} ({listed[pair].subject}): "
                 + (describe(by_pair[pair]) if pair in by_pair else "no such link")
                 for pair in sorted(listed) if pair not in by_pair or false(by_pair[pair])]
        return RuleScore(rule, len(found), len(wrong), len(missed), tuple(missed),
                         tuple(wrong))

    return match


def _scored(lt: LinkTruth) -> bool:
    return lt.fiber_min_rtt_s >= SHORT_LINK_FIBER_S


MATCHERS: dict[str, Matcher] = {
    "link_degraded": _link_degraded,
    "tier_budget_unmet": _links_rule(
        "tier_budget_unmet", lambda lt: lt.budget_margin >= MARGIN,
        lambda lt: lt.budget_margin <= -MARGIN,
        lambda lt: f"typical p95 {lt.typical_p95_s * 1e3:.3g} ms, budget "
                   f"{lt.budget_rtt_s * 1e3:g} ms ({lt.budget_margin:+.1%})"),
    "route_inflation": _links_rule(
        "route_inflation",
        lambda lt: _scored(lt) and lt.inflation >= lt.inflation_limit + INFLATION_MARGIN,
        lambda lt: not _scored(lt) or lt.inflation <= lt.inflation_limit - INFLATION_MARGIN,
        lambda lt: f"inflation {lt.inflation:.3f} (limit {lt.inflation_limit:g}), fiber "
                   f"{lt.fiber_min_rtt_s * 1e3:.3g} ms"),
    "budget_below_physics": _links_rule(
        "budget_below_physics", lambda lt: lt.fiber_min_rtt_s > lt.budget_rtt_s,
        lambda lt: not lt.fiber_min_rtt_s > lt.budget_rtt_s,
        lambda lt: f"fiber {lt.fiber_min_rtt_s * 1e3:.3g} ms, budget "
                   f"{lt.budget_rtt_s * 1e3:g} ms"),
}
"""The latency rules' matchers by rule name (the scorer's registry merges them)."""
