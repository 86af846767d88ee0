"""Policy thresholds as per-place rules, so panels compare each subject with its own value.

A site's PUE target depends on its region and may be overridden per site; a link's budget
depends on its tier. `by_place` (dashboards.query) renders such rules into one PromQL
expression; this module turns `computewatch/data/policy.yaml` into those rules, resolving
them in the order `Policy` itself does (subject, then region, then default), so the
dashboards and the reports can never disagree about a threshold.
"""

from __future__ import annotations

from collections.abc import Mapping

from computewatch.dashboards.query import Matcher, re_any
from computewatch.policy import Policy
from computewatch.topology import Tier, Topology

__all__ = ["PlaceRules", "pue_target_rules", "site_minimum_rules", "tier_budget_rules"]

PlaceRules = list[tuple[Mapping[str, Matcher], float]]


def _hubs_of(topology: Topology, region: str) -> list[str]:
    return [h.id for h in topology.hubs if h.region == region]


def _grouped(per_subject: Mapping[str, float]) -> dict[float, list[str]]:
    by_value: dict[float, list[str]] = {}
    for subject, value in sorted(per_subject.items()):
        by_value.setdefault(value, []).append(subject)
    return by_value


def pue_target_rules(topology: Topology, policy: Policy) -> PlaceRules:
    """PUE target per site: per-site overrides, then the hub's region, then the default."""
    rules: PlaceRules = []
    overrides = {s: e.value for s, e in policy.pue.sites.items()}
    for value, sites in _grouped(overrides).items():
        rules.append(({"site": re_any(sites)}, value))
    for region, entry in sorted(policy.pue.targets.items()):
        hubs = _hubs_of(topology, region)
        if hubs:
            rules.append(({"hub": re_any(hubs)}, entry.value))
    rules.append(({}, policy.pue.default_target.value))
    return rules


def site_minimum_rules(topology: Topology, policy: Policy) -> PlaceRules:
    """Site utilization minimum: per-site subjects, then the hub's region, then the default."""
    level = policy.utilization.minimums.site
    rules: PlaceRules = []
    for value, sites in _grouped({s: e.value for s, e in level.subjects.items()}).items():
        rules.append(({"site": re_any(sites)}, value))
    for region, entry in sorted(level.regions.items()):
        hubs = _hubs_of(topology, region)
        if hubs:
            rules.append(({"hub": re_any(hubs)}, entry.value))
    rules.append(({}, level.default.value))
    return rules


def tier_budget_rules(policy: Policy) -> PlaceRules:
    """The RTT budget of each latency tier (link label ``tier``), as the probes measure RTT."""
    return [({"tier": tier.value}, policy.budget_rtt_s(tier)) for tier in Tier]
