"""Policy thresholds as Prometheus recording rules, so no alert rule hard-codes a number.

Prometheus cannot read `policy.yaml`, and a threshold copied into an expression drifts from
it. So each threshold the alerts compare with becomes a constant series (`vector(v)` with
labels naming its subject), generated here from the policy and the topology and committed as
`alerts/rules/policy.yml`; a test regenerates it and fails when the two differ. The value is
resolved by the policy's own lookups (subject override, else region, else default), so a
rule uses exactly the threshold a report would quote; each series carries its source as a
comment above it.

Regenerate after editing the policy or the topology:

    python -m computewatch.alerts.policy_rules > alerts/rules/policy.yml
    python -m computewatch.alerts.policy_rules --policy my-policy.yaml \
        --topology my-topology.yaml -o FILE
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from computewatch.config import ConfigError
from computewatch.policy import Policy, Sourced, load_policy
from computewatch.status import ExitStatus
from computewatch.topology import Tier, Topology, load_topology

__all__ = ["GROUP_NAME", "ThresholdRule", "main", "policy_rules", "render_policy_rules"]

GROUP_NAME = "computewatch-policy"

BUSY_LEVEL = "policy:accelerator_utilization_ratio:busy_level"
UTILIZATION_MINIMUM = "policy:accelerator_utilization_ratio:minimum"
PUE_TARGET = "policy:pue_energy_ratio:target"
PUE_MIN_COMPLETENESS = "policy:pue_completeness_ratio:minimum"
RTT_BUDGET = "policy:link_latency_rtt_seconds:budget"
ROUTE_INFLATION_LIMIT = "policy:link_latency_route_inflation:limit"


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """One constant recording rule: series name, value, labels, and where the value is from
    (``path``: the policy field that applied; ``source``: that field's stated source)."""

    record: str
    value: float
    labels: dict[str, str]
    source: str
    path: str

    def render(self) -> str:
        source = " ".join(self.source.split())
        comment = textwrap.wrap(f"{self.path}: {source}", width=90)
        lines = [f"      # {line}" for line in comment]
        lines.append(f"      - record: {self.record}")
        lines.append(f"        expr: vector({self.value!r})")
        if self.labels:
            lines.append("        labels:")
            lines.extend(f"          {k}: {_quote(v)}" for k, v in self.labels.items())
        return "\n".join(lines)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _place(hub: str, cluster: str | None = None, site: str | None = None) -> dict[str, str]:
    labels = {"hub": hub}
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


def policy_rules(policy: Policy, topology: Topology) -> list[ThresholdRule]:
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


def render_policy_rules(policy: Policy, topology: Topology, *,
                        generated_from: Iterable[str] = ("computewatch/data/policy.yaml",
                                                         "computewatch/data/topology.yaml"),
                        ) -> str:
    """The rules file's text; deterministic, so a committed copy can be checked for staleness."""
    sources = " and ".join(generated_from)
    header = textwrap.wrap(
        f"Generated by `python -m computewatch.alerts.policy_rules` from {sources}. Do not "
        "edit: change the policy or topology and regenerate (tests/test_alert_rules.py fails "
        "when this file is stale). Each series is one threshold; the comment above it names "
        "the policy field and its source.", width=92)
    body = "\n".join(rule.render() for rule in policy_rules(policy, topology))
    return ("\n".join(f"# {line}" for line in header) + "\n"
            f"groups:\n  - name: {GROUP_NAME}\n    interval: 1m\n    rules:\n{body}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m computewatch.alerts.policy_rules",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", type=Path, help="policy file (default: the shipped one)")
    parser.add_argument("--topology", type=Path, help="topology file (default: the shipped one)")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        topology = load_topology(args.topology)
        policy = load_policy(args.policy, topology=topology)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return ExitStatus.BAD_INPUT
    sources = (str(args.policy or "computewatch/data/policy.yaml"),
               str(args.topology or "computewatch/data/topology.yaml"))
    text = render_policy_rules(policy, topology, generated_from=sources)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return ExitStatus.OK


if __name__ == "__main__":
    raise SystemExit(main())
