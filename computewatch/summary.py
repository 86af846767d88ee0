"""The national summary: per hub and cluster, what the fleet holds and how it is used.

Every figure is the core's one definition, the same the pipelines and the report state
(stated in the printed footer as well):
- mean utilization: time-weighted, `computewatch.utilization.DEFINITIONS["time_weighted"]`;
- idle accelerator-hours: `computewatch.utilization.IDLE_DEFINITION`, the sum over samples of
  (1 - utilization) x the sampling interval read from the data;
- PUE: energy-based, `computewatch.pue.windowed_pue` over the period from the meters' readings
  (`computewatch.pue.meter_readings`), per hub and per cluster over the slots every declared
  meter of its reporting sites covers, with ``pue_completeness`` the share of the period's
  slots that count.
  The national row is total facility energy / total IT energy of the hubs. Unlike a report,
  the summary states a PUE below the completeness floor: its completeness says how much to
  trust it;
- worst link: the link touching the hub whose 95th-percentile window p95 RTT is largest
  relative to its tier budget; where the store keeps the period as rollups without a
  quantile state of the window p95 (VictoriaMetrics and Prometheus beyond their raw data),
  the 95th percentile of the probes' RTTs from their histogram, within one bucket's width
  (``p95_source`` says which, `LINK_P95_SOURCES`).
Every figure comes from windowed queries against the store, never from raw samples.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from computewatch.findings import Period
from computewatch.policy import Policy
from computewatch.pue import meter_readings, windowed_pue
from computewatch.store import Aggregate, NotRolledUp, Query, Store
from computewatch.topology import Topology
from computewatch.utilization import utilization_totals

__all__ = ["LINK_P95_SOURCES", "NationalSummary", "national_summary"]

log = logging.getLogger(__name__)

HISTOGRAM = "rtt_seconds_bucket"
"""The probes' RTT histogram (cumulative replies per ``le`` bound), mergeable over any span."""

LINK_P95_SOURCES = {
    "window_p95": "the 95th percentile of the link's window p95 RTTs",
    "probe_histogram": "the 95th percentile of the probes' RTTs from their histogram, within "
                       "one bucket's width (the store keeps no quantile state of window p95s "
                       "beyond its raw data)",
}
"""What a link's ``rtt_p95_seconds`` in the summary is, by its ``p95_source``."""


@dataclass(frozen=True)
class NationalSummary:
    start: datetime
    end: datetime
    rows: pd.DataFrame  # one row per hub and per cluster, plus a national row
    links: pd.DataFrame  # every link with its p95 against budget, worst first

    @property
    def worst_link(self) -> pd.Series | None:
        return None if self.links.empty else self.links.iloc[0]


def _utilization(store: Store, start: datetime, end: datetime) -> pd.DataFrame:
    """Per hub, cluster and ecosystem: accelerators, samples, utilization sum, idle hours."""
    by = ("hub", "cluster", "ecosystem")
    cols = [*by, "accelerators", "utilization_sum", "samples", "idle_accelerator_hours"]
    series = store.series("accelerator")
    if series.empty:
        return pd.DataFrame(columns=cols)
    totals = utilization_totals(store, start, end, by=by)
    counts = series.groupby(list(by)).device.nunique().rename("accelerators").reset_index()
    out = counts.merge(totals, on=list(by), how="left").fillna(
        {"utilization_sum": 0.0, "samples": 0.0, "idle_accelerator_hours": 0.0})
    return out[cols]


def _pue(readings: pd.DataFrame, policy: Policy, period: Period,
         by: Sequence[str], topology: Topology) -> pd.DataFrame:
    """Per ``by`` group: facility and IT energy over the covered slots, PUE, completeness."""
    cols = [*by, "facility_joules", "it_joules", "pue", "completeness"]
    if readings.empty:
        return pd.DataFrame(columns=cols)
    got = windowed_pue(readings, period, policy, "all", by=by, min_completeness=0.0,
                       topology=topology)
    return got[cols]


def _links(store: Store, policy: Policy, start: datetime, end: datetime) -> pd.DataFrame:
    """Every link's 95th percentile RTT over the period against its tier's budget, worst
    first: the 95th percentile of its window p95s (``rtt_p95_seconds``), or, on a store whose
    rollups keep no quantile state of that gauge (a server store before its raw data
    begins), of the probes' own RTTs from their mergeable histogram (`LINK_P95_SOURCES`,
    column ``p95_source``); no histogram either: no links, and a warning that says why."""
    by = ("src_site", "dst_site", "src_hub", "dst_hub", "tier")
    cols = [*by, "rtt_p95_seconds", "budget_s", "ratio", "p95_source"]
    try:
        p95 = store.query(Query("link_latency", ("rtt_p95_seconds",), start, end, group_by=by,
                                agg=Aggregate.QUANTILE, quantile=0.95))
        source = "window_p95"
    except NotRolledUp as exc:
        # Only a store that refuses so reads histograms (`PromRollups`): the embedded store
        # would take the quantile of the bucket counters' values.
        p95 = store.query(Query("link_latency", (HISTOGRAM,), start, end, group_by=by,
                                agg=Aggregate.QUANTILE, quantile=0.95))
        p95 = p95.rename(columns={HISTOGRAM: "rtt_p95_seconds"}).dropna(
            subset=["rtt_p95_seconds"])
        source = "probe_histogram"
        if p95.empty:
            log.warning("no link p95 in the summary: %s, and the store holds no RTT "
                        "histogram (%s) for the period", exc, HISTOGRAM)
    if p95.empty:
        return pd.DataFrame(columns=cols)
    p95 = p95.drop(columns="time")
    p95["budget_s"] = [policy.budget_rtt_s(t) for t in p95.tier]
    p95["ratio"] = p95.rtt_p95_seconds / p95.budget_s
    p95["p95_source"] = source
    return p95.sort_values("ratio", ascending=False, ignore_index=True)[cols]


def national_summary(store: Store, topology: Topology, policy: Policy, start: datetime,
                     end: datetime) -> NationalSummary:
    period = Period(start, end)
    util = _utilization(store, start, end)
    readings = meter_readings(store, period)
    hub_pue = _pue(readings, policy, period, ("hub",), topology)
    cluster_pue = _pue(readings, policy, period, ("cluster",), topology)
    links = _links(store, policy, start, end)
    rows = []

    def row(level: str, hub: str, cluster: str, u: pd.DataFrame, p: pd.DataFrame,
            lk: pd.DataFrame) -> dict:
        n = int(u.accelerators.sum())
        samples = float(u.samples.sum())
        mean = float(u.utilization_sum.sum()) / samples if samples else float("nan")
        eco = u.groupby("ecosystem").accelerators.sum()
        worst = lk.iloc[0] if not lk.empty else None
        it = float(p.it_joules.sum()) if not p.empty else 0.0
        return {
            "level": level, "hub": hub, "cluster": cluster,
            "sites": len({s.id for s in topology.sites
                          if (not hub or s.hub == hub) and (not cluster or s.cluster == cluster)}),
            "accelerators": n, "cuda": int(eco.get("cuda", 0)), "cann": int(eco.get("cann", 0)),
            "mean_utilization": mean,
            "idle_accelerator_hours": float(u.idle_accelerator_hours.sum()),
            "pue": float(p.facility_joules.sum()) / it if it > 0 else float("nan"),
            "pue_completeness": _completeness(p),
            "worst_link": f"{worst.src_site} ↔ {worst.dst_site}" if worst is not None else "",
            "worst_link_tier": worst.tier if worst is not None else "",
            "worst_link_p95_s": float(worst.rtt_p95_seconds) if worst is not None else np.nan,
            "worst_link_budget_s": float(worst.budget_s) if worst is not None else np.nan,
            "worst_link_p95_source": worst.p95_source if worst is not None else "",
        }

    for hub in topology.hubs:
        u = util[util.hub == hub.id]
        lk = links[(links.src_hub == hub.id) | (links.dst_hub == hub.id)]
        rows.append(row("hub", hub.id, "", u, hub_pue[hub_pue.hub == hub.id], lk))
        for cl in (c for c in topology.clusters if c.hub == hub.id):
            cu = u[u.cluster == cl.id]
            cl_sites = {s.id for s in topology.sites_of_cluster(cl.id)}
            clk = lk[lk.src_site.isin(cl_sites) | lk.dst_site.isin(cl_sites)]
            rows.append(row("cluster", hub.id, cl.id, cu,
                            cluster_pue[cluster_pue.cluster == cl.id], clk))
    rows.append(row("national", "", "", util, hub_pue, links))
    return NationalSummary(start, end, pd.DataFrame(rows), links)


def _completeness(p: pd.DataFrame) -> float:
    """Share of the period's slots metered: one group's own, or the IT-energy-weighted mean
    of several (the national row over its hubs); 0 without any PUE group."""
    if p.empty:
        return 0.0
    if len(p) == 1:
        return float(p.completeness.iloc[0])
    w = p.it_joules.fillna(0.0)
    return float((p.completeness * w).sum() / w.sum()) if w.sum() > 0 else \
        float(p.completeness.mean())
