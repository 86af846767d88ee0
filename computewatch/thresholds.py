"""The policy's thresholds as PromQL: constant threshold series, and per-place rules.

Prometheus cannot read `policy.yaml`, and a threshold copied into an expression drifts from
it. So the policy is turned into PromQL here, once, in the order the policy itself resolves a
threshold (subject override, else region, else default), and two layers render it:

- `threshold_series`: one constant series per threshold and subject (``vector(v)`` with labels
  naming the subject, `ThresholdRule`), each with the policy field that applied and that
  field's source. The alert rules compare with these series
  (`computewatch.alerts.policy_rules` writes them as ``alerts/rules/policy.yml``).
- `pue_target_rules`, `site_minimum_rules`, `tier_budget_rules`: the same thresholds as
  ordered (label matchers, value) rules, most specific first, which the dashboards render
  into each panel's query (`computewatch.dashboards.query.by_place`), so a panel needs no
  recording rule to compare each subject with its own threshold.

A rule's matchers map a label to a value (``tier: "metro"``: equal) or to a tuple of values
(``site: ("a", "b")``: any of them exactly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from computewatch.policy import Policy, Sourced
from computewatch.topology import Tier, Topology

__all__ = ["BUSY_LEVEL", "PUE_MIN_COMPLETENESS", "PUE_TARGET", "ROUTE_INFLATION_LIMIT",
           "RTT_BUDGET", "UTILIZATION_MINIMUM", "PlaceRule", "ThresholdRule",
           "pue_target_rules", "site_minimum_rules", "threshold_series", "tier_budget_rules"]

BUSY_LEVEL = "policy:accelerator_utilization_ratio:busy_level"
UTILIZATION_MINIMUM = "policy:accelerator_utilization_ratio:minimum"
PUE_TARGET = "policy:pue_energy_ratio:target"
PUE_MIN_COMPLETENESS = "policy:pue_completeness_ratio:minimum"
RTT_BUDGET = "policy:link_latency_rtt_seconds:budget"
ROUTE_INFLATION_LIMIT = "policy:link_latency_route_inflation:limit"


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """One constant threshold series: name, value, labels, and where the value is from
    (``path``: the policy field that applied; ``source``: that field's stated source)."""

    record: str
    value: float
    labels: dict[str, str]
    source: str
    path: str

    @property
    def promql(self) -> str:
        """The series' expression: the value as a constant vector."""
        return f"vector({self.value!r})"


PlaceRule = tuple[Mapping[str, str | tuple[str, ...]], float]
"""(matchers, value): subjects whose labels match take the value; first match wins."""


def _place(hub: str | None, cluster: str | None = None,
           site: str | None = None) -> dict[str, str]:
    labels = {"hub": hub} if hub else {}
    if cluster:
        labels["cluster"] = cluster
    if site:
        labels["site"] = site
    return labels


def _minimum(policy: Policy, level: str, region: str, subject: str) -> tuple[Sourced, str]:
    entry = policy.utilization_minimum_entry(level, region, subject)  # type: ignore[arg-type]
    rule = getattr(policy.utilization.minimums, level)
    if subject in rule.subjects:
        where = f"utilization.minimums.{level}.subjects.{subject}"
    elif region in rule.regions:
        where = f"utilization.minimums.{level}.regions.{region}"
    else:
        where = f"utilization.minimums.{level}.default"
    return entry, where


def threshold_series(policy: Policy, topology: Topology) -> list[ThresholdRule]:
    """Every threshold series, in a stable order: global ones, then per hub, cluster, site."""
    u, p, lat = policy.utilization, policy.pue, policy.latency
    rule = ThresholdRule
    rules = [
        rule(BUSY_LEVEL, u.busy_level.value, {}, u.busy_level.source, "utilization.busy_level"),
        rule(PUE_MIN_COMPLETENESS, p.min_completeness.value, {}, p.min_completeness.source,
             "pue.min_completeness"),
    ]
    for tier in Tier:
        entry = getattr(lat.tiers, tier.value)
        note = "" if lat.rtt_semantics.value == "round_trip" else " (one-way budget, doubled)"
        rules.append(rule(RTT_BUDGET, policy.budget_rtt_s(tier), {"tier": tier.value},
                          entry.source + note, f"latency.tiers.{tier.value}"))
    rules.append(rule(ROUTE_INFLATION_LIMIT, lat.route_inflation_limit.value, {},
                      lat.route_inflation_limit.source, "latency.route_inflation_limit"))
    for hub in topology.hubs:
        entry, where = _minimum(policy, "hub", hub.region, hub.id)
        rules.append(rule(UTILIZATION_MINIMUM, entry.value, {"level": "hub", **_place(hub.id)},
                          entry.source, where))
    for cluster in topology.clusters:
        region = topology.hub(cluster.hub).region
        entry, where = _minimum(policy, "cluster", region, cluster.id)
        rules.append(rule(UTILIZATION_MINIMUM, entry.value,
                          {"level": "cluster", **_place(cluster.hub, cluster.id)},
                          entry.source, where))
    for site in topology.sites:
        region = topology.region_of(site.id)
        place = _place(site.hub, site.cluster, site.id)
        entry, where = _minimum(policy, "site", region, site.id)
        rules.append(rule(UTILIZATION_MINIMUM, entry.value, {"level": "site", **place},
                          entry.source, where))
        target = policy.pue_target_entry(region, site.id)
        where = (f"pue.sites.{site.id}" if site.id in p.sites
                 else f"pue.targets.{region}" if region in p.targets else "pue.default_target")
        rules.append(rule(PUE_TARGET, target.value, place, target.source, where))
    return rules


def _hubs_of(topology: Topology, region: str) -> tuple[str, ...]:
    return tuple(h.id for h in topology.hubs if h.region == region)


def _region_rules(topology: Topology, region: str, value: float) -> list[PlaceRule]:
    """A regional value for the region's hubs, and for its sites outside every hub (which
    carry no hub label) by site."""
    rules: list[PlaceRule] = []
    outside = tuple(sorted(s.id for s in topology.sites
                           if s.hub is None and topology.region_of(s.id) == region))
    if outside:
        rules.append(({"site": outside}, value))
    hubs = _hubs_of(topology, region)
    if hubs:
        rules.append(({"hub": hubs}, value))
    return rules


def _grouped(per_subject: Mapping[str, float]) -> dict[float, tuple[str, ...]]:
    by_value: dict[float, list[str]] = {}
    for subject, value in sorted(per_subject.items()):
        by_value.setdefault(value, []).append(subject)
    return {v: tuple(s) for v, s in by_value.items()}


def pue_target_rules(topology: Topology, policy: Policy) -> list[PlaceRule]:
    """PUE target per site: per-site overrides, then the region (of the hub, or of a site
    outside every hub), then the default."""
    rules: list[PlaceRule] = []
    for value, sites in _grouped({s: e.value for s, e in policy.pue.sites.items()}).items():
        rules.append(({"site": sites}, value))
    for region, entry in sorted(policy.pue.targets.items()):
        rules += _region_rules(topology, region, entry.value)
    rules.append(({}, policy.pue.default_target.value))
    return rules


def site_minimum_rules(topology: Topology, policy: Policy) -> list[PlaceRule]:
    """Site utilization minimum: per-site subjects, then the region (of the hub, or of a site
    outside every hub), then the default."""
    level = policy.utilization.minimums.site
    rules: list[PlaceRule] = []
    for value, sites in _grouped({s: e.value for s, e in level.subjects.items()}).items():
        rules.append(({"site": sites}, value))
    for region, entry in sorted(level.regions.items()):
        rules += _region_rules(topology, region, entry.value)
    rules.append(({}, level.default.value))
    return rules


def tier_budget_rules(policy: Policy) -> list[PlaceRule]:
    """The RTT budget of each latency tier (link label ``tier``), as the probes measure RTT."""
    return [({"tier": tier.value}, policy.budget_rtt_s(tier)) for tier in Tier]
