"""Latency tiers: which links break their tier's budget, whether that is new (an incident that
pages the NOC) or how the link has been all along (a design problem for planning), and whose
route is longer than the plan allows. Each finding states its method in ``definition``.

Method (the window rule and the budgets are the core's, `computewatch.compliance`):

- A link is an unordered site pair: both directions and every probe kind of a pair are one
  link, so a slow link is one incident, not one per direction and rule.
- Windows of ``window`` (5 min) from the period's start, and before it over the ``baseline``
  (24 h) the classification looks back on. The store aggregates per window: probes sent and
  probes answered within budget (SUM), loss and per-minute p95 (MEAN), lowest RTT, fiber
  minimum and stored budget (MIN; the last two are constant per series); the pipeline holds
  links x windows values only.
- A window is *over budget* when its p95 over every probe in it exceeds the budget: fewer
  than 95% of its probes were answered within it. It is *lossy* when its mean loss and the
  mean loss of the last ``LOSS_SUSTAINED`` (30 min) are both over the loss limit: single
  windows of background loss are not. A window is *bad* when it is either.
- SLOs (Google SRE workbook, "Alerting on SLOs"), on probes: latency, 95% of probes
  answered within the budget (the tier's p95); availability, at most ``loss_limit`` of
  probes lost. Burn rate over a look-back = share of bad probes / the allowed share.
  Multiwindow alerts: fast when the 1 h and the 5 min burn rates of either SLO are both
  >= 14.4 (2% of a 30-day error budget in 1 h), slow when the 6 h and the 30 min ones are
  both >= 6 (5% in 6 h); a burn rate counts once half its look-back holds data. The short
  window ends an alert within one short window (5 min, 30 min) of recovery, and a link that
  grazes its budget at its daily peak (a few percent of probes over) never burns that fast.
- Episodes: runs of bad windows, one good (or empty) window bridged, two ending it.
- Baseline of an episode: the link's windows in the ``baseline`` before it; when the store
  holds less than half of that (a short history), the link's other windows in everything
  fetched (the period and what precedes it), the episode left out, if they hold a quarter
  of it; else none (the episode is not paged).
- ``link_degraded`` (acute, pages): an episode of a link within budget in its baseline (the
  p95 over every probe of the baseline within budget: >= 95% of them answered within it)
  during which a burn-rate alert fired: CRITICAL when the fast one did, WARNING when only
  the slow one did. One finding per pair and episode, carrying p95
  and p99 over the episode's probes, loss, the peak burn rates and route inflation.
- ``tier_budget_unmet`` (chronic, planning, INFO): links over budget in most
  (>= ``CHRONIC_SHARE``) of their windows with data over the baseline and the period, one
  finding per hub pair and tier listing them; links over budget in some of their windows
  (more than ``INTERMITTENT_SHARE``, less than most) are listed there as intermittent. Neither
  pages: a route that cannot meet its budget is a design problem, not a fault.
- ``route_inflation`` (planning, INFO): links whose median window minimum RTT / fiber minimum
  exceeds the policy limit (links under 50 km not scored), one finding per hub pair and tier.
- ``budget_below_physics`` (planning, INFO): links whose fiber minimum alone exceeds their
  budget, one finding per hub pair and tier.

Over rollups (history before the raw data, `computewatch.store.resolution`) windows widen to
the rollups' grain at the period's start (an hour; whole multiples of it); a period in raw
data keeps its windows, and its baseline reads only as far back as the raw data (then the
short-history baseline applies). Over rollups the rules are the same: probe counts,
loss and minima add up exactly per hour, so compliance, chronic links, route inflation and
physics are what raw data gives at hourly windows. What hourly windows cannot show: an
incident's minutes (episodes start and end on the hour); a short one diluted in its hour
(the fast alert needs at least 14.4 x 5% = 72% of an hour's probes bad, the slow one 30%
for six hours: a 20-minute outage may not page); the 5-minute and 30-minute short windows
of the burn-rate alerts become the hour itself; and an incident's p95 and p99 are merged
from the hours' mean per-minute percentiles (`merged_quantile` on hourly means), between the
incident's and the link's normal values where an incident covers part of an hour.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from computewatch.compliance import (
    P95,
    PairWindows,
    link_budgets,
    pair_windows,
    scored_counts,
    window_count,
    windows_over_budget,
)
from computewatch.findings import Finding, Period, Severity
from computewatch.policy import Policy
from computewatch.rule_definitions import (
    LATENCY_BUDGET_BELOW_PHYSICS,
    LATENCY_LINK_DEGRADED,
    LATENCY_ROUTE_INFLATION,
    LATENCY_TIER_BUDGET_UNMET,
)
from computewatch.store import Aggregate, Query, Store, resolution
from computewatch.topology import Topology

__all__ = ["CHRONIC_SHARE", "INTERMITTENT_SHARE", "RULES", "merged_quantile", "run"]

log = logging.getLogger(__name__)

PIPELINE = "latency"
RULES = ("link_degraded", "tier_budget_unmet", "route_inflation", "budget_below_physics")
"""Every rule this pipeline writes: one acute, three for planning."""

BRIDGED_WINDOWS = 1
"""Good windows an episode may contain between two bad ones (hysteresis)."""

FAST_LOOKBACK, FAST_SHORT, FAST_BURN = timedelta(hours=1), timedelta(minutes=5), 14.4
SLOW_LOOKBACK, SLOW_SHORT, SLOW_BURN = timedelta(hours=6), timedelta(minutes=30), 6.0
"""Google SRE workbook, "Alerting on SLOs", multiwindow multi-burn-rate alerts for a 30-day
SLO: burning 14.4x for 1 h spends 2% of the month's error budget (14.4 x 1 h / 720 h), worth
a page; 6x for 6 h spends 5%, worth a ticket. Each needs its short window (1/12 of the long
one) burning too, so it ends soon after the link recovers."""

MIN_LOOKBACK_COVERAGE = 0.5
"""A burn rate counts once at least half its look-back windows hold data."""

LOSS_SUSTAINED = timedelta(minutes=30)
"""Loss counts when the last 30 min lose more than the limit on average, not one window."""

INTERMITTENT_SHARE = 0.01
"""A link over budget in more than 1% of its windows (but not in most) is intermittent."""

MIN_BASELINE_TRAILING, MIN_BASELINE_REST = 0.5, 0.25
"""The trailing baseline counts when it holds data for half its span (12 h of 24 h); else the
link's other windows do when they hold a quarter of it (6 h); else the episode has no
baseline, is not paged, and the chronic test alone judges the link."""

CHRONIC_SHARE = 0.5
"""A link over budget in at least half of its windows is over budget through most of its
baseline: chronic, a design problem."""

SHORT_LINK_FIBER_S = 0.5e-3
"""Links whose fiber minimum RTT is below 0.5 ms (under 50 km) are not scored for route
inflation: there equipment and serialization delay, not route length, dominate the RTT."""

NO_HUB = "no-hub"
"""The hub-pair name of a site outside every hub."""


def _span_text(td: timedelta) -> str:
    s = td.total_seconds()
    if s % 3600 == 0:
        return f"{s / 3600:g} h"
    return f"{s / 60:g} min" if s % 60 == 0 else f"{s:g} s"


def _definitions(window: timedelta, baseline: timedelta, loss_limit: float,
                 inflation_limit: float) -> dict[str, str]:
    w, share, base = _span_text(window), f"{P95:.0%}", _span_text(baseline)
    return {
        "link_degraded": LATENCY_LINK_DEGRADED.format(
            window=w, share=share, loss_span=_span_text(LOSS_SUSTAINED), loss_limit=loss_limit,
            fast_lookback=_span_text(FAST_LOOKBACK), fast_short=_span_text(FAST_SHORT),
            fast_burn=FAST_BURN, slow_lookback=_span_text(SLOW_LOOKBACK),
            slow_short=_span_text(SLOW_SHORT), slow_burn=SLOW_BURN, baseline=base),
        "tier_budget_unmet": LATENCY_TIER_BUDGET_UNMET.format(
            window=w, share=share, chronic=f"{CHRONIC_SHARE:.0%}", baseline=base,
            intermittent=f"{INTERMITTENT_SHARE:.0%}"),
        "route_inflation": LATENCY_ROUTE_INFLATION.format(
            window=w, limit=inflation_limit, short_ms=SHORT_LINK_FIBER_S * 1e3),
        "budget_below_physics": LATENCY_BUDGET_BELOW_PHYSICS,
    }


# --- data ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Links:
    """The window aggregates of every link over [t0, end): ``first`` is the period's first
    window, so ``[:, first:]`` is the period."""

    grid: PairWindows
    first: int
    budget: np.ndarray
    fiber: np.ndarray
    over: np.ndarray  # 1 over budget, 0 within, NaN no data
    lossy: np.ndarray
    bad: np.ndarray  # over or lossy; NaN where neither can be judged

    @property
    def labels(self) -> pd.DataFrame:
        return self.grid.links

    @property
    def n(self) -> int:
        return self.grid.width - self.first

    def t(self, i: int) -> datetime:
        """Start of grid window ``i``."""
        return self.grid.start + i * self.grid.window


def _fetch(store: Store, period: Period, window: timedelta, warm: int, loss_limit: float,
           policy: Policy, topology: Topology | None) -> _Links | None:
    t0 = period.start - warm * window
    # Three scans: the fiber minimum and the stored budget are constant per series, so
    # their minimum is as good as any aggregate and rides along with the lowest RTT.
    grid = pair_windows(store, t0, period.end, window, {
        Aggregate.SUM: ("samples", "replies_within_budget"),
        Aggregate.MEAN: ("loss_ratio", "rtt_p95_seconds"),
        Aggregate.MIN: ("rtt_min_seconds", "fiber_min_seconds", "budget_seconds"),
    })
    if grid is None:
        return None
    budget = link_budgets(grid.links, policy, topology)
    sent, within = scored_counts(grid, budget)
    if np.isnan(within).all() and not np.isnan(grid["samples"]).all():
        log.warning("link_latency holds probes but no replies_within_budget counts (a prober "
                    "older than this version?): tier budgets cannot be judged")
    over = windows_over_budget(sent, within)
    over[np.isnan(budget)] = np.nan
    loss = grid["loss_ratio"]
    k = window_count(LOSS_SUSTAINED, window)
    with np.errstate(invalid="ignore"):
        lossy = ((loss > loss_limit) & (_trailing_mean(loss, k) > loss_limit)).astype(float)
    lossy[np.isnan(loss)] = np.nan
    bad = np.fmax(over, lossy)  # NaN only where both are
    fiber = _fiber(grid, topology)
    return _Links(grid, warm, budget, fiber, over, lossy, bad)


def _fiber(grid: PairWindows, topology: Topology | None) -> np.ndarray:
    """The link's fiber minimum RTT from the store, else from the topology, else NaN."""
    stored = grid["fiber_min_seconds"]
    out = np.where((~np.isnan(stored)).any(axis=1),
                   np.nanmax(np.where(np.isnan(stored), -np.inf, stored), axis=1), np.nan)
    if topology is not None:
        for k in np.flatnonzero(np.isnan(out)):
            row = grid.links.iloc[k]
            with contextlib.suppress(KeyError, ValueError):
                out[k] = topology.link(row.src_site, row.dst_site).fiber_min_rtt_s
    return out


def _trailing(x: np.ndarray, k: int) -> np.ndarray:
    """Sum over the last ``k`` windows up to and including each window, per row."""
    return _lagged(np.cumsum(x, axis=1), k)


def _lagged(c: np.ndarray, k: int) -> np.ndarray:
    """From running sums ``c`` (per row), the sums over the last ``k`` windows: the running
    sum less the running sum ``k`` windows before (slices, not a gather of columns: a month
    of links' windows is millions of cells)."""
    if k >= c.shape[1]:
        return c.copy()
    out = np.empty_like(c)
    out[:, :k] = c[:, :k]
    np.subtract(c[:, k:], c[:, :c.shape[1] - k], out=out[:, k:])
    return out


def _trailing_mean(x: np.ndarray, k: int) -> np.ndarray:
    has = ~np.isnan(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _trailing(np.where(has, x, 0.0), k) / _trailing(has.astype(float), k)


def _episodes(flag: np.ndarray, bridged: int = BRIDGED_WINDOWS) -> list[tuple[int, int]]:
    """Flagged windows merged into (first, last) index pairs, inclusive, bridging up to
    ``bridged`` unflagged windows between two flagged ones."""
    idx = np.flatnonzero(flag)
    if idx.size == 0:
        return []
    cut = np.flatnonzero(np.diff(idx) > bridged + 1)
    firsts = np.concatenate([idx[:1], idx[cut + 1]])
    lasts = np.concatenate([idx[cut], idx[-1:]])
    return [(int(a), int(b)) for a, b in zip(firsts, lasts, strict=True)]


# --- burn rates ---------------------------------------------------------------------------

def _running(bad: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, ...]:
    """Running sums per row of an SLO's bad probes, probes and windows with probes: what
    every look-back's burn rate (`_burn`) is taken from, summed once for all four."""
    has = ~np.isnan(total) & ~np.isnan(bad) & (np.nan_to_num(total) > 0)
    return tuple(np.cumsum(x, axis=1) for x in (np.where(has, bad, 0.0),
                                                np.where(has, total, 0.0), has.astype(float)))


def _burn(running: tuple[np.ndarray, ...], window: timedelta, lookback: timedelta,
          allowed: float) -> tuple[np.ndarray, np.ndarray]:
    """(burn rate, evaluated) at each window over the ``lookback`` ending with it: bad
    probes / probes / the allowed share (``running``: `_running` of the SLO)."""
    k = window_count(lookback, window)
    bad, total, windows = running
    evaluated = _lagged(windows, k) >= max(MIN_LOOKBACK_COVERAGE * k, 1)
    rate = _lagged(bad, k)  # in place from here: links x windows arrays, the pipeline's peak
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(rate, _lagged(total, k), out=rate)
        np.divide(rate, allowed, out=rate)
    return np.nan_to_num(rate, copy=False), evaluated


def _alerts(links: _Links, loss_limit: float) -> dict[str, np.ndarray]:
    """Per window: the multiwindow alerts firing (either SLO), and the long windows' burn
    rates of each SLO (``latency_fast``, ``loss_slow``, ...). One SLO at a time: its
    running sums (links x windows, three of them) are made once for its four look-backs
    and dropped before the next SLO's are made."""
    grid, window = links.grid, links.grid.window
    sent = grid["samples"]
    scored = np.where(np.isnan(links.over), np.nan, sent)  # windows judged against this budget
    slos = {"latency": (lambda: (scored - grid["replies_within_budget"], scored), 1.0 - P95),
            "loss": (lambda: (sent * grid["loss_ratio"], sent), loss_limit)}
    tol = 1 - 1e-9  # so a bad share of exactly 14.4 x the allowance meets 14.4 despite floats
    speeds = (("fast", FAST_LOOKBACK, FAST_SHORT, FAST_BURN),
              ("slow", SLOW_LOOKBACK, SLOW_SHORT, SLOW_BURN))
    firing = {name: np.zeros(sent.shape, dtype=bool) for name, *_ in speeds}
    rates: dict[str, np.ndarray] = {}
    for slo, (counts, allowed) in slos.items():
        if allowed <= 0:
            continue
        running = _running(*counts())
        for name, long, short, threshold in speeds:
            rate, ok = _burn(running, window, long, allowed)
            short_rate, short_ok = _burn(running, window, short, allowed)
            firing[name] |= ok & short_ok & (rate >= threshold * tol) & (
                short_rate >= threshold * tol)
            rates[f"{slo}_{name}"] = rate
        del running
    return {**rates, **firing}


# --- the per-minute percentiles of one incident, merged ---------------------------------------

def merged_quantile(minutes: pd.DataFrame, q: float) -> float:
    """The ``q`` quantile over every reply of several minutes, from each minute's summary.

    Each minute's RTT distribution is taken as piecewise linear through its min (0), p50,
    p95, p99 and max (1), weighted by its replies (``samples`` x (1 - ``loss_ratio``)); the
    quantile of the mixture is found on the union of the knots, linearly between them. NaN
    without replies."""
    cols = ["rtt_min_seconds", "rtt_p50_seconds", "rtt_p95_seconds", "rtt_p99_seconds",
            "rtt_max_seconds"]
    m = minutes.dropna(subset=cols)
    if m.empty:
        return float("nan")
    x = np.sort(m[cols].to_numpy(dtype=float), axis=1)  # (minutes, 5), monotone
    w = (m.samples.to_numpy(dtype=float) * (1 - m.loss_ratio.fillna(0).to_numpy(dtype=float)))
    if w.sum() <= 0:
        return float("nan")
    p = np.array([0.0, 0.5, 0.95, 0.99, 1.0])
    knots = np.unique(x)
    cdf = np.zeros(len(knots))
    for row, weight in zip(x, w, strict=True):
        cdf += weight * np.interp(knots, row, p, left=0.0, right=1.0)
    cdf /= w.sum()
    return float(np.interp(q, cdf, knots))


def _minutes(store: Store, a: str, b: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The per-minute summaries of both directions of one link (a few hundred rows); over
    rollups their means per hour (the finest the store holds there)."""
    fields = ("rtt_min_seconds", "rtt_p50_seconds", "rtt_p95_seconds", "rtt_p99_seconds",
              "rtt_max_seconds", "samples", "loss_ratio")
    step = max(timedelta(minutes=1), resolution(store, "link_latency", start))
    return store.query(Query("link_latency", fields, start, end,
                             where={"src_site": [a, b], "dst_site": [a, b]},
                             group_by=("src_site", "dst_site", "probe"),
                             window=step, agg=Aggregate.MEAN))


# --- findings -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Context:
    links: _Links
    definitions: dict[str, str]
    topology: Topology | None
    period: Period
    pairs: np.ndarray  # per link: its pair id
    tiers: np.ndarray  # per link: its tier label
    hub_pairs: np.ndarray  # per link: "ha|hb", the hubs sorted (NO_HUB outside the hubs)

    @classmethod
    def of(cls, links: _Links, definitions: dict[str, str], topology: Topology | None,
           period: Period) -> _Context:
        labels = links.labels
        hubs = {}
        for src, dst, sh, dh in zip(labels.src_site, labels.dst_site, labels.src_hub,
                                    labels.dst_hub, strict=True):
            hubs[(src, dst)] = sorted((_hub(topology, src, sh), _hub(topology, dst, dh)))
        return cls(links, definitions, topology, period, labels.pair.to_numpy(),
                   labels.tier.to_numpy(),
                   np.array(["|".join(h) for h in hubs.values()], dtype=object))

    def place(self, k: int) -> tuple[str, str, str, str]:
        """(site a, site b, hub of a, cluster of a)."""
        row = self.links.labels.iloc[k]
        hub, cluster = row.src_hub, ""
        if self.topology is not None:
            with contextlib.suppress(KeyError):
                site = self.topology.site(row.src_site)
                hub, cluster = hub or site.hub or "", site.cluster or ""
        return row.src_site, row.dst_site, hub, cluster



def _hub(topology: Topology | None, site: str, label: str) -> str:
    """A site's hub: its label, else the topology's; `NO_HUB` outside every hub."""
    if not label and topology is not None:
        with contextlib.suppress(KeyError):
            label = topology.site(site).hub or ""
    return label or NO_HUB


def _inflation(links: _Links) -> np.ndarray:
    """Per link over the period: median of window minimum RTT / fiber minimum (NaN: none)."""
    rtt = links.grid["rtt_min_seconds"][:, links.first:]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = rtt / links.fiber[:, None]
    ratio[~(links.fiber >= SHORT_LINK_FIBER_S)] = np.nan
    has = (~np.isnan(ratio)).any(axis=1)
    out = np.full(len(ratio), np.nan)
    if has.any():
        out[has] = np.nanmedian(ratio[has], axis=1)
    return out


def _baseline(links: _Links, k: int, first: int, last: int, span: int) -> tuple[float, str]:
    """Share of the probes of the episode's baseline answered within budget, and which
    baseline it was (``trailing``, ``rest`` or ``none``: NaN)."""
    has = ~np.isnan(links.over[k])
    sent = np.where(has, links.grid["samples"][k], 0.0)
    within = np.where(has, links.grid["replies_within_budget"][k], 0.0)
    lo = max(first - span, 0)
    if has[lo:first].sum() >= MIN_BASELINE_TRAILING * span:
        part, source = slice(lo, first), "trailing"
    elif has[:first].sum() + has[last + 1:].sum() >= MIN_BASELINE_REST * span:
        keep = np.ones(len(has), dtype=bool)
        keep[first:last + 1] = False
        part, source = keep, "rest"
    else:
        return float("nan"), "none"
    total = sent[part].sum()
    return (float(within[part].sum() / total) if total > 0 else float("nan")), source


def _degraded(ctx: _Context, store: Store, loss_limit: float, span: int,
              inflation: np.ndarray) -> list[Finding]:
    links = ctx.links
    alerts = _alerts(links, loss_limit)
    first = links.first
    out = []
    period_bad = np.nan_to_num(links.bad[:, first:]) > 0
    for k in np.flatnonzero(period_bad.any(axis=1)):
        for a, b in _episodes(period_bad[k]):
            ga, gb = first + a, first + b  # grid indices
            fast = bool(alerts["fast"][k, ga:gb + 1].any())
            slow = bool(alerts["slow"][k, ga:gb + 1].any())
            if not (fast or slow):
                continue
            share, source = _baseline(links, k, ga, gb, span)
            if not share >= P95:  # NaN (no baseline) too: nothing says the link was fine
                continue
            out.append(_incident(ctx, store, k, ga, gb, fast, alerts, share, source,
                                 inflation[k]))
    return out


def _incident(ctx: _Context, store: Store, k: int, ga: int, gb: int, fast: bool,
              alerts: dict[str, np.ndarray], share: float, source: str,
              inflation: float) -> Finding:
    links = ctx.links
    a, b, hub, cluster = ctx.place(k)
    start, end = links.t(ga), min(links.t(gb + 1), ctx.period.end)
    minutes = _minutes(store, a, b, start, end)
    p95, p99 = merged_quantile(minutes, P95), merged_quantile(minutes, 0.99)
    budget = float(links.budget[k])
    has = ~np.isnan(links.bad[k, ga:gb + 1])
    loss = links.grid["loss_ratio"][k, ga:gb + 1]
    sent = links.grid["samples"][k, ga:gb + 1]
    within = links.grid["replies_within_budget"][k, ga:gb + 1]
    over = links.over[k, ga:gb + 1]
    lossy = links.lossy[k, ga:gb + 1]
    tier = ctx.tiers[k]
    hb = _hub(ctx.topology, b, str(links.labels.dst_hub.iloc[k]))
    causes = [c for c, m in (("rtt", over), ("loss", lossy)) if np.nansum(m) > 0]
    detail = {
        "pair": f"{a}|{b}", "site_b": b, "hub_b": hb if hb != NO_HUB else "", "tier": tier,
        "chronic": False, "causes": causes,
        "p95_s": p95, "p99_s": p99, "budget_s": budget,
        "probes": float(np.nansum(sent)), "probes_within_budget": float(np.nansum(within)),
        "loss_ratio_mean": float(np.nanmean(loss)) if (~np.isnan(loss)).any() else None,
        "loss_ratio_max": float(np.nanmax(loss)) if (~np.isnan(loss)).any() else None,
        **{f"burn_rate_{slo}_{speed}_peak": float(np.max(alerts[f"{slo}_{speed}"][k, ga:gb + 1]))
           for slo in ("latency", "loss") for speed in ("fast", "slow")
           if f"{slo}_{speed}" in alerts},
        "alert": "fast" if fast else "slow",
        "route_inflation": None if np.isnan(inflation) else float(inflation),
        "fiber_min_s": float(links.fiber[k]),
        "baseline_probes_within_budget": share, "baseline": source,
        "windows": int(gb - ga + 1), "windows_bad": int(np.nansum(links.bad[k, ga:gb + 1])),
        "windows_with_data": int(has.sum()), "window_s": links.grid.window.total_seconds(),
        "ongoing": gb == links.grid.width - 1,
    }
    what = (f"p95 {p95 * 1e3:.3g} ms over the {budget * 1e3:g} ms budget" if "rtt" in causes
            else f"loss up to {detail['loss_ratio_max']:.1%}")
    if "rtt" in causes and "loss" in causes:
        what += f", loss up to {detail['loss_ratio_max']:.1%}"
    return Finding(
        pipeline=PIPELINE, rule="link_degraded", subject_type="link", subject=f"{a}|{b}",
        severity=Severity.CRITICAL if fast else Severity.WARNING,
        observed=p95 if not np.isnan(p95) else float("nan"), threshold=budget, unit="s",
        start=start, end=end, completeness=float(has.mean()), hub=hub, cluster=cluster,
        site=a, definition=ctx.definitions["link_degraded"],
        message=(f"{a} <-> {b} ({tier}): {what} for {_span_text(end - start)}, within budget "
                 f"before; {'fast' if fast else 'slow'} burn-rate alert"),
        detail=detail)


def _group_by_hub_pair(ctx: _Context, ks: Iterable[int]) -> dict[tuple[str, str], list[int]]:
    """Link indices by (hub pair ``a|b`` sorted, tier)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for k in ks:
        groups.setdefault((ctx.hub_pairs[k], ctx.tiers[k]), []).append(k)
    return dict(sorted(groups.items()))


def _planning(ctx: _Context, rule: str, members: dict[int, dict],
              observed: Callable[[list[int]], float], threshold: Callable[[list[int]], float],
              unit: str, message: Callable[[str, str, list[int], list[int]], str],
              extra: dict[int, dict] | None = None) -> list[Finding]:
    """One INFO finding per hub pair and tier of ``members`` (link index -> its entry) or of
    ``extra`` (listed apart, as intermittent). ``threshold`` gets every link of the hub pair
    and tier that are listed; ``detail["links_with_data"]`` counts every link of the hub pair
    and tier that has data."""
    extra = extra or {}
    links = ctx.links
    everyone = _group_by_hub_pair(ctx, np.flatnonzero((~np.isnan(links.over)).any(axis=1)))
    out = []
    for (hub_pair, tier), ks in _group_by_hub_pair(ctx, {*members, *extra}).items():
        listed = [k for k in ks if k in members]
        others = [k for k in ks if k in extra]
        has = ~np.isnan(links.bad[ks, links.first:])
        ha = hub_pair.split("|")[0]
        out.append(Finding(
            pipeline=PIPELINE, rule=rule, subject_type="hub_pair", subject=hub_pair,
            severity=Severity.INFO, observed=observed(listed),
            threshold=threshold(ks), unit=unit,
            start=ctx.period.start, end=ctx.period.end,
            completeness=float(has.mean()) if has.size else 0.0,
            hub=ha if ha != NO_HUB else "", definition=ctx.definitions[rule],
            message=message(hub_pair.replace("|", " <-> "), tier, listed, others),
            detail={"tier": tier, "variant": tier, "chronic": True, "planning": True,
                    "links_with_data": len(everyone.get((hub_pair, tier), ks)),
                    "links": [members[k] for k in listed],
                    **({"intermittent": [extra[k] for k in others]} if extra else {})}))
    return out


def _entry(ctx: _Context, k: int, **more: object) -> dict:
    links = ctx.links
    return {"pair": ctx.pairs[k], "budget_s": float(links.budget[k]),
            "fiber_min_s": float(links.fiber[k]), **more}


def _chronic(ctx: _Context, inflation: np.ndarray, acute: set[str]) -> list[Finding]:
    """Links over budget in most windows (baseline and period), and intermittent ones."""
    links = ctx.links
    has = (~np.isnan(links.over)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.nansum(links.over, axis=1) / has
    typical = links.grid["rtt_p95_seconds"][:, links.first:]
    chronic: dict[int, dict] = {}
    intermittent: dict[int, dict] = {}
    for k in np.flatnonzero(has > 0):
        if ctx.pairs[k] in acute or np.isnan(links.budget[k]):
            continue
        col = typical[k][~np.isnan(typical[k])]
        entry = _entry(ctx, int(k), share_over_budget=float(share[k]),
                       windows_with_data=int(has[k]),
                       median_minute_p95_s=float(np.median(col)) if col.size else None,
                       route_inflation=None if np.isnan(inflation[k]) else float(inflation[k]),
                       below_physics=bool(links.fiber[k] > links.budget[k]))
        if share[k] >= CHRONIC_SHARE:
            chronic[int(k)] = entry
        elif share[k] > INTERMITTENT_SHARE:
            intermittent[int(k)] = entry

    def message(hubs: str, tier: str, listed: list[int], others: list[int]) -> str:
        text = f"{hubs} {tier}: {len(listed)} link(s) over the budget through most of the period"
        if listed:
            worst = chronic[max(listed, key=lambda k: chronic[k]["share_over_budget"])]
            text += f" (e.g. {worst['pair']}, {worst['share_over_budget']:.0%} of windows)"
        if others:
            text += f", {len(others)} intermittently"
        return text + "; a design problem, not a fault"

    return _planning(ctx, "tier_budget_unmet", chronic, lambda ks: float(len(ks)),
                     lambda ks: 0.0, "links", message, intermittent)


def _route_inflation(ctx: _Context, inflation: np.ndarray, limit: float) -> list[Finding]:
    over = {int(k): _entry(ctx, int(k), route_inflation=float(inflation[k]))
            for k in np.flatnonzero(inflation > limit)}
    return _planning(
        ctx, "route_inflation", over,
        lambda ks: max(over[k]["route_inflation"] for k in ks), lambda ks: limit, "factor",
        lambda hubs, tier, ks, _: (f"{hubs} {tier}: {len(ks)} link(s) with a route over "
                                   f"{limit:g}x the fiber minimum (worst "
                                   f"{max(over[k]['route_inflation'] for k in ks):.2f}x)"))


def _physics(ctx: _Context) -> list[Finding]:
    links = ctx.links
    with np.errstate(invalid="ignore"):
        impossible = {int(k): _entry(ctx, int(k)) for k in
                      np.flatnonzero(links.fiber > links.budget)}
    return _planning(
        ctx, "budget_below_physics", impossible,
        lambda ks: max(float(links.fiber[k]) for k in ks),
        lambda ks: min(float(links.budget[k]) for k in ks), "s",
        lambda hubs, tier, ks, _: (f"{hubs} {tier}: {len(ks)} link(s) whose fiber minimum "
                                   "alone exceeds the budget; no route can meet it"))


# --- entry point ----------------------------------------------------------------------------

def _answerable(store: Store, period: Period, window: timedelta, span: int) -> int:
    """How many of the ``span`` baseline windows before the period the store answers at
    ``window``: all of them, unless they reach into rollups coarser than the window (raw
    data for the period, rollups before it): then those from where the raw data starts, and
    the baseline is the short history's (see `MIN_BASELINE_TRAILING`)."""
    warm = span
    while warm:
        grain = resolution(store, "link_latency", period.start - warm * window)
        if not grain or window % grain == timedelta(0):
            break
        warm -= 1
    if warm < span:
        log.info("latency: the %s baseline before %s reaches into rollups coarser than %s "
                 "windows: %d of its %d windows read", _span_text(span * window),
                 period.start.isoformat(), _span_text(window), warm, span)
    return warm


def _widened(store: Store, start: datetime, window: timedelta) -> timedelta:
    """``window``, or the least multiple of the store's resolution from ``start`` (rollups'
    grain) that is not shorter; logged when widened."""
    grain = resolution(store, "link_latency", start)
    if not grain or window % grain == timedelta(0):
        return window
    wide = -(-window // grain) * grain
    log.info("latency: history from %s is kept as rollups of %s: windows of %s, not %s",
             start.isoformat(), grain, wide, window)
    return wide


def run(store: Store, period: Period, policy: Policy, topology: Topology | None = None, *,
        window: timedelta = timedelta(minutes=5), baseline: timedelta = timedelta(hours=24),
        loss_limit: float = 0.01) -> list[Finding]:
    """Latency findings for every link in ``store`` over ``period`` (see the module doc).

    ``topology`` fills in what the labels lack: the cluster of a site, a missing hub or tier,
    a fiber minimum the prober did not write.
    """
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    if baseline < SLOW_LOOKBACK:
        raise ValueError(f"baseline must be at least the slow look-back "
                         f"{_span_text(SLOW_LOOKBACK)}, got {baseline}")
    if not 0.0 <= loss_limit < 1.0:
        raise ValueError(f"loss_limit must be in [0, 1), got {loss_limit}")
    window = _widened(store, period.start, window)
    span = window_count(baseline, window)
    links = _fetch(store, period, window, _answerable(store, period, window, span),
                   loss_limit, policy, topology)
    if links is None:
        return []
    limit = float(policy.latency.route_inflation_limit.value)
    ctx = _Context.of(links, _definitions(window, baseline, loss_limit, limit), topology,
                      period)
    inflation = _inflation(links)
    acute = _degraded(ctx, store, loss_limit, span, inflation)
    return [*acute, *_chronic(ctx, inflation, {f.subject for f in acute}),
            *_route_inflation(ctx, inflation, limit), *_physics(ctx)]
