"""A small hand-computable fleet for the report tests, written into a real DuckDB store.

Three China days, 2026-10-01 to 2026-10-03 (UTC 2026-09-30T16:00 to 2026-10-03T16:00),
72 hourly and 864 five-minute windows, on the shipped topology (hub jjj has 7 sites):

- bj-ai: 4 cards, hour h at 0.05 + 0.005 h (h = 0..71), every 10 minutes; facility power is
  1.3 x IT power at every reading; one probed link bj-ai -> zjk-a (regional, 5 ms budget)
  with per-minute p95 0.8 x budget (all 60 probes of a minute within it), but 1.2 x budget
  (none within) in every 4th window, for the first two days only.
- zjk-a: 2 cards at 0.6 all three days; facility 1.2 x IT.
- zjk-b: 2 cards at 0.5 and its meters (facility 1.1 x IT) on the first day only.
The other jjj sites hold nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from computewatch.store import Store
from computewatch.topology import Topology

START = datetime(2026, 9, 30, 16, tzinfo=UTC)  # 2026-10-01 00:00 China time
PERIOD = "2026-10-01/2026-10-03"
HOURS = 72
BUDGET_S = 0.005  # regional

BJ_AI_HOURLY = [0.05 + 0.005 * h for h in range(HOURS)]
SITES = {  # site: (cards, hourly utilization, hours with data, facility / IT)
    "bj-ai": (4, BJ_AI_HOURLY, HOURS, 1.3),
    "zjk-a": (2, [0.6] * HOURS, HOURS, 1.2),
    "zjk-b": (2, [0.5] * HOURS, 24, 1.1),
}


def write_accelerators(store: Store, topology: Topology, site: str, devices: int,
                       hourly: list[float], hours: int, start: datetime = START) -> None:
    s = topology.site(site)
    rows = [{"time": start + timedelta(hours=h, minutes=m), "site": site, "hub": s.hub,
             "cluster": s.cluster or "", "device": f"{site}-d{d}",
             "utilization_ratio": hourly[h]}
            for h in range(hours) for m in range(0, 60, 10) for d in range(devices)]
    store.write("accelerator", pd.DataFrame(rows))


def write_meters(store: Store, topology: Topology, site: str, ratio: float, hours: int,
                 start: datetime = START) -> None:
    """Readings every 5 minutes from 15 minutes before ``start``; IT power varies by hour."""
    s = topology.site(site)
    step = timedelta(minutes=5)
    n = hours * 12 + 3
    times = [start - timedelta(minutes=15) + k * step for k in range(n + 1)]
    it_w = np.array([800.0 + 40 * ((k // 12) % 5) for k in range(n + 1)])
    it_j = 1e9 + np.concatenate([[0.0], np.cumsum(it_w[:-1] * step.total_seconds())])
    rows = []
    for scope, joules in (("it", it_j), ("facility", 2e9 + (it_j - 1e9) * ratio)):
        rows += [{"time": t, "site": site, "hub": s.hub, "cluster": s.cluster or "",
                  "meter": f"{site}-{scope}", "scope": scope, "joules_total": float(j)}
                 for t, j in zip(times, joules, strict=True)]
    store.write("facility_power", pd.DataFrame(rows))


def link_p95(window: int) -> float:
    return BUDGET_S * (1.2 if window % 4 == 0 else 0.8)


def write_link(store: Store, days: int = 2) -> None:
    rows = [{"time": START + timedelta(minutes=m), "src_site": "bj-ai", "dst_site": "zjk-a",
             "src_hub": "jjj", "dst_hub": "jjj", "tier": "regional", "probe": "udp",
             "rtt_p95_seconds": link_p95(m // 5), "rtt_min_seconds": 0.0017,
             "fiber_min_seconds": 0.00148, "loss_ratio": 0.0, "samples": 60.0,
             "replies_within_budget": 60.0 if link_p95(m // 5) <= BUDGET_S else 0.0,
             "budget_seconds": BUDGET_S}
            for m in range(days * 1440)]
    store.write("link_latency", pd.DataFrame(rows))


def write_fleet(store: Store, topology: Topology) -> None:
    for site, (cards, hourly, hours, ratio) in SITES.items():
        write_accelerators(store, topology, site, cards, hourly, hours)
        write_meters(store, topology, site, ratio, hours)
    write_link(store)
