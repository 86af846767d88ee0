"""Pipelines' findings scored against the simulator's ground truth: recall and precision.

Recall: each injected incident must be found with the right subject and an overlapping
period (a cluster going idle by an underuse finding on the cluster or one of its sites; a
cooling fault by a PUE excursion or a site anomaly on that site; a degraded link by a latency
finding on that link; a lost GPU by an ``accelerator_lost`` finding on that device starting
within two minutes of the loss).

Precision: a finding at warning severity or above is *true* when it names something the
simulator made so: an incident's subject (or, for a cluster, one of its sites) during the
incident; a site configured as underused, or a cluster, hub or province that contains one;
a link whose route puts it over its budget by design, or whose route inflation exceeds the
limit; a site whose configured PUE exceeds its target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from computewatch.policy import Policy
from computewatch.sim.incidents import GroundTruth, Incident
from computewatch.topology import Topology

__all__ = ["Score", "score"]

_EQUIPMENT_RTT_S = 0.1e-3


@dataclass
class Score:
    recall: float
    precision: float
    found: dict[str, bool]
    false_positives: pd.DataFrame = field(repr=False)
    judged: int = 0


def _overlaps(row: pd.Series, inc: Incident) -> bool:
    return pd.Timestamp(row.start) < pd.Timestamp(inc.end) and \
        pd.Timestamp(row.end) > pd.Timestamp(inc.start)


def _found(df: pd.DataFrame, inc: Incident) -> bool:
    if inc.kind == "cluster_idle":
        sites = set(inc.detail["sites"])
        hits = df[(df.pipeline == "underuse") & (
            ((df.subject_type == "cluster") & (df.subject == inc.subject))
            | ((df.subject_type == "site") & df.subject.isin(sites)))]
    elif inc.kind == "cooling_fault":
        hits = df[(df.site == inc.subject) & df.rule.isin(["pue_excursion", "site_anomaly"])]
    elif inc.kind == "link_degraded":
        hits = df[(df.pipeline == "latency") & (df.subject == inc.subject)
                  & (df.rule == "link_degraded")]
    else:  # device_lost
        hits = df[(df.rule == "accelerator_lost") & (df.subject == inc.subject)]
        hits = hits[(pd.to_datetime(hits.start, utc=True) - pd.Timestamp(inc.start)).abs()
                    <= pd.Timedelta(minutes=2)]
    return any(_overlaps(r, inc) for r in hits.itertuples())


def _sites_of(topology: Topology, level: str, subject: str) -> set[str]:
    if level == "site":
        return {subject}
    if level == "cluster":
        return {s.id for s in topology.sites if s.cluster == subject}
    if level == "hub":
        return {s.id for s in topology.sites if s.hub == subject}
    if level == "province":
        return {s.id for s in topology.sites if s.province == subject}
    return set()


def _true(r: pd.Series, truth: GroundTruth, policy: Policy, topology: Topology) -> bool:
    incidents = [i for i in truth.incidents if _overlaps(r, i)]
    if r.pipeline == "underuse":
        sites = _sites_of(topology, r.subject_type, r.subject)
        idle = {s for i in incidents if i.kind == "cluster_idle" for s in i.detail["sites"]}
        return bool(sites & (set(truth.underused_sites) | idle))
    if r.pipeline == "latency":
        if any(i.kind == "link_degraded" and i.subject == r.subject for i in incidents):
            return True
        link = next((lt for lt in truth.links if f"{lt.src}|{lt.dst}" == r.subject), None)
        if link is None:
            return False
        if r.rule == "route_inflation":
            typical = (link.fiber_min_rtt_s * link.route_factor + _EQUIPMENT_RTT_S) \
                / link.fiber_min_rtt_s
            return typical > float(policy.latency.route_inflation_limit.value) - 0.02
        return link.over_budget_by_design
    if r.pipeline == "pue":
        if any(i.kind == "cooling_fault" and i.subject == r.site for i in incidents):
            return True
        if r.rule == "pue_over_target":
            typical = truth.site_pue.get(r.site)
            return typical is not None and typical > r.threshold - 0.02
        return False
    if r.pipeline == "anomaly":
        subjects = {i.subject for i in incidents} | {
            i.detail.get("site", "") for i in incidents} | {
            s for i in incidents if i.kind == "cluster_idle" for s in i.detail["sites"]} | {
            s for i in incidents if i.kind == "link_degraded" for s in i.subject.split("|")}
        return r.subject in subjects or r.site in subjects or r.site in truth.underused_sites
    return True  # surplus findings are information, not claims of a fault


def score(findings: pd.DataFrame, truth: GroundTruth, policy: Policy,
          topology: Topology) -> Score:
    found = {i.kind: _found(findings, i) for i in truth.incidents}
    judged = findings[findings.severity >= 1]
    ok = judged.apply(lambda r: _true(r, truth, policy, topology), axis=1) \
        if len(judged) else pd.Series(dtype=bool)
    precision = float(ok.mean()) if len(judged) else 1.0
    recall = sum(found.values()) / len(found) if found else 1.0
    return Score(recall, precision, found, judged[~ok] if len(judged) else judged,
                 len(judged))
