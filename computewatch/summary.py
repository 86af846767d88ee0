"""The national summary: per hub and cluster, what the fleet holds and how it is used.

Definitions (stated in the printed footer as well):
- mean utilization: the mean of all utilization samples in the period (time-weighted for
  evenly sampled devices);
- idle accelerator-hours: the sum over utilization samples of (1 - utilization) x the
  sampling interval, i.e. the capacity the period left unused; the interval is inferred from
  the data (covered span / samples per series), so partial periods are not overstated;
- PUE: energy-based, facility energy / IT energy from meter counters over the period;
- worst link: the link touching the hub whose 95th-percentile window p95 RTT is largest
  relative to its tier budget.
Every figure comes from windowed queries against the store, never from raw samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from computewatch.energy import period_energy_pue
from computewatch.policy import Policy
from computewatch.store import Aggregate, Query, Store
from computewatch.topology import Topology

__all__ = ["NationalSummary", "national_summary"]


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
    """Per hub, cluster and ecosystem: accelerators, utilization sum and sample count."""
    by = ("hub", "cluster", "ecosystem")
    cols = [*by, "accelerators", "util_sum", "samples", "step_h"]
    series = store.series("accelerator")
    bounds = store.time_bounds("accelerator")
    if series.empty or bounds is None:
        return pd.DataFrame(columns=cols)
    total = store.query(Query("accelerator", ("utilization_ratio",), start, end, group_by=by,
                              agg=Aggregate.SUM)).rename(columns={"utilization_ratio": "util_sum"})
    count = store.query(Query("accelerator", ("utilization_ratio",), start, end, group_by=by,
                              agg=Aggregate.COUNT)).rename(columns={"utilization_ratio": "samples"})
    counts = series.groupby(list(by)).device.nunique().rename("accelerators").reset_index()
    out = counts.merge(total.drop(columns="time"), on=list(by), how="left").merge(
        count.drop(columns="time"), on=list(by), how="left").fillna({"util_sum": 0.0,
                                                                      "samples": 0})
    span_h = (min(end, bounds[1]) - max(start, bounds[0])).total_seconds() / 3600.0
    per_series = out.samples.sum() / max(out.accelerators.sum(), 1)
    out["step_h"] = span_h / (per_series - 1) if per_series > 1 else 0.0
    return out[cols]


def _links(store: Store, policy: Policy, start: datetime, end: datetime) -> pd.DataFrame:
    by = ("src_site", "dst_site", "src_hub", "dst_hub", "tier")
    p95 = store.query(Query("link_latency", ("rtt_p95_seconds",), start, end, group_by=by,
                            agg=Aggregate.QUANTILE, quantile=0.95))
    if p95.empty:
        return pd.DataFrame(columns=[*by, "rtt_p95_seconds", "budget_s", "ratio"])
    p95 = p95.drop(columns="time")
    p95["budget_s"] = [policy.budget_rtt_s(t) for t in p95.tier]
    p95["ratio"] = p95.rtt_p95_seconds / p95.budget_s
    return p95.sort_values("ratio", ascending=False, ignore_index=True)


def national_summary(store: Store, topology: Topology, policy: Policy, start: datetime,
                     end: datetime) -> NationalSummary:
    util = _utilization(store, start, end)
    pue = period_energy_pue(store, start, end, by=("hub", "cluster"))
    links = _links(store, policy, start, end)
    rows = []

    def row(level: str, hub: str, cluster: str, u: pd.DataFrame, p: pd.DataFrame,
            lk: pd.DataFrame) -> dict:
        n = int(u.accelerators.sum())
        samples = float(u.samples.sum())
        mean = float(u.util_sum.sum()) / samples if samples else float("nan")
        step_h = float(u.step_h.iloc[0]) if len(u) else 0.0
        eco = u.groupby("ecosystem").accelerators.sum()
        worst = lk.iloc[0] if not lk.empty else None
        it = float(p.it_j.sum()) if not p.empty else 0.0
        return {
            "level": level, "hub": hub, "cluster": cluster,
            "sites": len({s.id for s in topology.sites
                          if (not hub or s.hub == hub) and (not cluster or s.cluster == cluster)}),
            "accelerators": n, "cuda": int(eco.get("cuda", 0)), "cann": int(eco.get("cann", 0)),
            "mean_utilization": mean,
            "idle_accelerator_hours": (samples - float(u.util_sum.sum())) * step_h,
            "pue": float(p.facility_j.sum()) / it if it > 0 else float("nan"),
            "worst_link": f"{worst.src_site} ↔ {worst.dst_site}" if worst is not None else "",
            "worst_link_tier": worst.tier if worst is not None else "",
            "worst_link_p95_s": float(worst.rtt_p95_seconds) if worst is not None else np.nan,
            "worst_link_budget_s": float(worst.budget_s) if worst is not None else np.nan,
        }

    for hub in topology.hubs:
        u, p = util[util.hub == hub.id], pue[pue.hub == hub.id]
        lk = links[(links.src_hub == hub.id) | (links.dst_hub == hub.id)]
        rows.append(row("hub", hub.id, "", u, p, lk))
        for cl in (c for c in topology.clusters if c.hub == hub.id):
            cu, cp = u[u.cluster == cl.id], p[p.cluster == cl.id]
            cl_sites = {s.id for s in topology.sites_of_cluster(cl.id)}
            clk = lk[lk.src_site.isin(cl_sites) | lk.dst_site.isin(cl_sites)]
            rows.append(row("cluster", hub.id, cl.id, cu, cp, clk))
    rows.append(row("national", "", "", util, pue, links))
    return NationalSummary(start, end, pd.DataFrame(rows), links)
