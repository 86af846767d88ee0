"""The policy as PromQL thresholds, in one core module: the constant series the alert rules
compare with and the per-place rules the dashboards render resolve every subject to the
value the policy itself gives it, on the shipped policy and on an edited one."""

from __future__ import annotations

import pytest
import yaml

from computewatch.policy import load_policy
from computewatch.thresholds import (
    PUE_TARGET,
    RTT_BUDGET,
    UTILIZATION_MINIMUM,
    pue_target_rules,
    site_minimum_rules,
    threshold_series,
    tier_budget_rules,
)
from computewatch.topology import Tier, load_topology

TOPO = load_topology()


def _edited(tmp_path):
    data = load_policy().model_dump(mode="json")
    data["utilization"]["minimums"]["site"]["subjects"] = {
        "bj-ai": {"value": 0.42, "source": "test override"},
        "guian-a": {"value": 0.42, "source": "test override"}}
    data["utilization"]["minimums"]["site"]["regions"] = {
        "west": {"value": 0.25, "source": "test west"}}
    data["pue"]["sites"] = {"guian-a": {"value": 1.18, "source": "test site target"}}
    data["latency"]["rtt_semantics"]["value"] = "one_way"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_policy(path, topology=TOPO)


def _first_match(rules, labels: dict[str, str]) -> float:
    """The value of the first rule whose matchers the labels meet (PromQL's `or` order)."""
    for matchers, value in rules:
        if all(labels.get(k) in (v if isinstance(v, tuple) else (v,))
               for k, v in matchers.items()):
            return value
    raise AssertionError(f"no rule matches {labels}")


@pytest.mark.parametrize("edited", [False, True])
def test_series_and_place_rules_give_every_subject_the_policys_value(tmp_path, edited):
    policy = _edited(tmp_path) if edited else load_policy(topology=TOPO)
    series = threshold_series(policy, TOPO)
    minimum = {r.labels["site"]: r.value for r in series
               if r.record == UTILIZATION_MINIMUM and r.labels.get("level") == "site"}
    target = {r.labels["site"]: r.value for r in series if r.record == PUE_TARGET}
    for site in TOPO.sites:
        region = TOPO.region_of(site.id)
        labels = {"site": site.id, "hub": site.hub}
        want_min = policy.utilization_minimum("site", region, site.id)
        want_pue = policy.pue_target(region, site.id)
        assert minimum[site.id] == want_min == _first_match(site_minimum_rules(TOPO, policy),
                                                            labels), site.id
        assert target[site.id] == want_pue == _first_match(pue_target_rules(TOPO, policy),
                                                           labels), site.id
    budgets = {r.labels["tier"]: r.value for r in series if r.record == RTT_BUDGET}
    for tier in Tier:
        want = policy.budget_rtt_s(tier)
        assert budgets[tier.value] == want == _first_match(tier_budget_rules(policy),
                                                           {"tier": tier.value})
    if edited:
        assert minimum["bj-ai"] == minimum["guian-a"] == 0.42
        assert target["guian-a"] == 1.18
        assert budgets["metro"] == 0.002  # a one-way 1 ms, as a round trip
        assert site_minimum_rules(TOPO, policy)[0] == ({"site": ("bj-ai", "guian-a")}, 0.42)


def test_each_series_is_a_constant_vector_with_its_source():
    policy = load_policy(topology=TOPO)
    for rule in threshold_series(policy, TOPO):
        assert rule.promql == f"vector({rule.value!r})"
        assert rule.source.strip() and rule.path
