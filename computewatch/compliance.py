"""Latency-tier compliance of inter-site links: the window rule, stated once.

A link is one (src_site, dst_site, src_hub, dst_hub, tier) label set of ``link_latency``;
probe kinds (udp, tcp, icmp) of one link are pooled, so the worst of them counts. Windows
(5 min by default) start at the period's start. A window's p95 round-trip time is the lowest
per-minute p95 in it (`SUSTAINED_P95`: the p95 held for the whole window), and the window is
within budget when that p95 <= the link's tier budget read as a round-trip time
(`link_budgets`). The latency pipeline flags the complement (``p95_over_budget``) with the
same rule and budgets, and the report states the share of windows within budget, so the two
never disagree.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
import pandas as pd

from computewatch.findings import Period
from computewatch.policy import Policy
from computewatch.store import Aggregate, Query, Store
from computewatch.topology import Tier, Topology

__all__ = ["COMPLIANCE_COLUMNS", "COMPLIANCE_DEFINITION", "LINK_LABELS", "SUSTAINED_P95",
           "link_budgets", "window_compliance", "window_count"]

log = logging.getLogger(__name__)

LINK_LABELS = ("src_site", "dst_site", "src_hub", "dst_hub", "tier")
"""The labels that make one link of ``link_latency``."""

SUSTAINED_P95 = Aggregate.MIN
"""How a window's per-minute p95 values become the one compared with the budget: the lowest
(the p95 was over budget in every minute of the window, as an alert rule with ``for: 5m``).
The worst minute (MAX) is reported in each episode's detail but does not decide: a maximum
of five noisy minutes runs well above a link's typical p95, so links whose typical p95 sits
a few percent under budget were flagged in most windows. On the simulated network (8 h)
MAX gave 0.57 precision against the ground truth, MEAN 0.89, MIN 1.00 (24 h: 0.26, 0.60,
0.97), while each still found the injected degradation."""

COMPLIANCE_DEFINITION = (
    "Per link and {window} window, the lowest per-minute p95 round-trip time (MIN in the store: "
    "the p95 held for the whole window) is compared with the link's tier budget read as a "
    "round-trip time; the window is within budget when that p95 <= budget, the complement of "
    "the p95_over_budget rule. Share within budget = windows within / windows with data; "
    "completeness = windows with data / windows in the period. Probe kinds of a link are "
    "pooled; links of unknown tier are not scored.")

COMPLIANCE_COLUMNS = [*LINK_LABELS, "budget_s", "windows", "windows_with_data",
                      "windows_within_budget"]

_TIERS = frozenset(t.value for t in Tier)
_FIELDS = ("rtt_p95_seconds", "rtt_min_seconds", "fiber_min_seconds", "loss_ratio")


def window_count(span: timedelta, window: timedelta) -> int:
    """Windows of ``window`` that cover ``span`` (a last partial one counts; at least one)."""
    whole, rest = divmod(span, window)
    return max(1, whole + (1 if rest else 0))


def link_budgets(labels: pd.DataFrame, policy: Policy,
                 topology: Topology | None = None) -> np.ndarray:
    """Each link's budget as a round-trip time, from its ``tier`` label, else from the
    topology's tier for the site pair; NaN (not scored, logged) when neither is known.

    ``labels`` has the `LINK_LABELS` columns, one row per link."""
    out = np.full(len(labels), np.nan)
    for k, (src, dst, tier) in enumerate(zip(labels.src_site, labels.dst_site, labels.tier,
                                             strict=True)):
        if tier in _TIERS:
            out[k] = policy.budget_rtt_s(tier)
            continue
        if topology is not None:
            try:
                out[k] = policy.budget_rtt_s(topology.link(src, dst).tier)
                continue
            except (KeyError, ValueError):
                pass
        log.warning("link %s|%s: unknown tier %r and no topology entry; not scored",
                    src, dst, tier)
    return out


def window_compliance(store: Store, period: Period, policy: Policy,
                      topology: Topology | None = None, *,
                      window: timedelta = timedelta(minutes=5)) -> pd.DataFrame:
    """Per link: its budget and how many of the period's windows had data and kept within it.

    One windowed query (links x windows rows). Every link with any latency data in the period
    is listed, sorted by its labels. Columns (`COMPLIANCE_COLUMNS`): the link labels,
    ``budget_s`` (NaN: unknown tier, not scored), ``windows``, ``windows_with_data``,
    ``windows_within_budget``; see `COMPLIANCE_DEFINITION`.
    """
    got = store.query(Query("link_latency", _FIELDS, period.start, period.end,
                            group_by=LINK_LABELS, window=window, agg=SUSTAINED_P95))
    if got.empty:
        return pd.DataFrame(columns=COMPLIANCE_COLUMNS)
    n = window_count(period.end - period.start, window)
    got = got.assign(**{c: got[c].astype(str) for c in LINK_LABELS})
    col = ((got["time"] - pd.Timestamp(period.start)) // pd.Timedelta(window)).to_numpy(
        dtype=np.int64)
    p95 = got["rtt_p95_seconds"].to_numpy(dtype=float)
    links = (got[list(LINK_LABELS)].drop_duplicates().sort_values(list(LINK_LABELS))
             .reset_index(drop=True))
    budget = link_budgets(links, policy, topology)
    row = pd.MultiIndex.from_frame(links).get_indexer(
        pd.MultiIndex.from_frame(got[list(LINK_LABELS)]))
    has = (col >= 0) & (col < n) & ~np.isnan(p95)
    with np.errstate(invalid="ignore"):
        within = has & (p95 <= budget[row])
    return links.assign(
        budget_s=budget, windows=n,
        windows_with_data=np.bincount(row[has], minlength=len(links)),
        windows_within_budget=np.bincount(row[within], minlength=len(links)),
    )[COMPLIANCE_COLUMNS]
