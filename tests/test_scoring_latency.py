"""The latency rules' matchers (`computewatch.sim.scoring._latency`) on a hand-written truth,
and the latency pipeline scored by them on three simulated days (seeds 1-3): every rule's
recall 100% and precision >= 95%.

The matchers plug into the scorer's registry (`computewatch.sim.scoring`, its ``_rules``
module gives them `RuleScore`); where the scorer package is not there yet, these tests skip
and say so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("computewatch.sim.scoring._rules",
                    reason="the scorer package (computewatch.sim.scoring) is not installed")

from computewatch.findings import Finding, Period, Severity
from computewatch.pipelines import latency
from computewatch.policy import load_policy
from computewatch.sim import build_fleet, simulate
from computewatch.sim.incidents import GroundTruth, Incident, LinkTruth
from computewatch.sim.scoring._latency import MATCHERS
from computewatch.store import DuckDBStore
from computewatch.topology import load_topology

T0 = datetime(2026, 10, 1, tzinfo=UTC)
H = timedelta(hours=1)
DAY = Period(T0, T0 + 24 * H)


def link(a: str, b: str, *, budget: float = 0.005, p95: float = 0.004, fiber: float = 0.002,
         floor: float = 0.003) -> LinkTruth:
    return LinkTruth(a, b, "regional", fiber, 1.3, budget, p95, floor, 1.5)


def truth(links: list[LinkTruth], incidents: list[Incident] = ()) -> GroundTruth:
    return GroundTruth(1, DAY.start, DAY.end, timedelta(minutes=1), list(incidents), [],
                       links)


def degraded(subject: str, start: float, end: float) -> Finding:
    return Finding("latency", "link_degraded", "link", subject, Severity.CRITICAL, 0.008,
                   0.005, "s", T0 + start * H, T0 + end * H)


def planning(rule: str, *pairs: str) -> Finding:
    return Finding("latency", rule, "hub_pair", "x|y", Severity.INFO, len(pairs), 0, "links",
                   DAY.start, DAY.end, detail={"links": [{"pair": p} for p in pairs]})


def test_link_degraded_needs_the_pair_and_the_period():
    t = truth([link("a", "b")], [Incident("link_degraded", "link", "a|b", T0 + 10 * H,
                                          T0 + 14 * H)])
    score = MATCHERS["link_degraded"]
    right = score([degraded("a|b", 10.1, 14)], t, DAY)
    assert (right.true_positives, right.false_positives, right.false_negatives) == (1, 0, 0)
    # The right pair hours later, another pair at the right time: both false, one missed.
    wrong = score([degraded("a|b", 18, 20), degraded("b|c", 10, 14)], t, DAY)
    assert (wrong.true_positives, wrong.false_positives, wrong.false_negatives) == (0, 2, 1)
    # Covering only a quarter of the incident does not find it, and is no true claim either.
    short = score([degraded("a|b", 13, 14)], t, DAY)
    assert (short.true_positives, short.false_negatives) == (0, 1)
    assert short.false_positives == 0  # the whole finding lies inside the incident


def test_tier_budget_unmet_counts_listed_links_and_leaves_the_margin_alone():
    links = [link("a", "b", p95=0.00525),  # 5% over: must be listed
             link("c", "d", p95=0.00502),  # 0.4% over: within the margin
             link("e", "f", p95=0.00498),  # 0.4% under: within the margin
             link("g", "h", p95=0.00475)]  # 5% under: listing it is false
    t = truth(links)
    score = MATCHERS["tier_budget_unmet"]
    s = score([planning("tier_budget_unmet", "a|b", "c|d", "e|f"),
               planning("tier_budget_unmet", "g|h")], t, DAY)
    assert (s.true_positives, s.false_positives, s.false_negatives) == (1, 1, 0)
    assert s.wrong[0].startswith("g|h")
    none = score([], t, DAY)
    assert (none.true_positives, none.false_negatives) == (0, 1) and none.missed[0][:3] == "a|b"


def test_route_inflation_and_physics():
    links = [link("a", "b", fiber=0.002, floor=0.0034),  # 1.70: must be listed
             link("c", "d", fiber=0.002, floor=0.00302),  # 1.51: within the margin
             link("e", "f", fiber=0.0004, floor=0.0008),  # 2.0 but 40 km: not scored
             link("g", "h", fiber=0.002, floor=0.0028),  # 1.40: false if listed
             link("i", "j", fiber=0.021, budget=0.020, floor=0.0315)]  # beyond physics
    t = truth(links)
    s = MATCHERS["route_inflation"]([planning("route_inflation", "a|b", "c|d", "e|f", "g|h",
                                              "i|j")], t, DAY)
    # i|j (inflation 1.50) is neither expected nor false.
    assert (s.true_positives, s.false_positives, s.false_negatives) == (1, 2, 0)
    p = MATCHERS["budget_below_physics"]([planning("budget_below_physics", "i|j", "a|b")], t,
                                         DAY)
    assert (p.true_positives, p.false_positives, p.false_negatives) == (1, 1, 0)


@pytest.mark.slow  # three simulated days of links (~1 min)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_latency_rule_scores_full_recall_and_95_percent_precision(tmp_path, seed):
    # The demo's fleet and day (--accelerators 2000 --hours 24); the pipeline reads links
    # only, so only the link telemetry is stored.
    fleet = build_fleet(load_topology(), accelerators=2000, seed=seed)
    history = simulate(fleet, hours=24, end=datetime(2026, 10, 2, tzinfo=UTC))
    with DuckDBStore(tmp_path / "links.duckdb") as store:
        for measurement, frame in history.chunks():
            if measurement == "link_latency":
                store.write(measurement, frame)
        period = Period(history.start, history.end)
        findings = latency.run(store, period, load_policy(), fleet.topology)
    for rule, match in MATCHERS.items():
        s = match([f for f in findings if f.rule == rule], history.truth, period)
        print(f"seed {seed} {rule}: expected {s.expected}, recall {s.recall:.3f}, "
              f"precision {s.precision:.3f}")
        assert s.expected > 0 and s.recall == 1.0, (rule, s.missed)
        assert s.precision >= 0.95, (rule, s.wrong)
