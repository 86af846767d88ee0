"""Latency tiers: which inter-site links break their tier's budget, for how long, how fast
they burn the latency SLO, whose route is longer than the plan allows, and whose budget no
route can meet. NOC staff page on the burn rates and read the episodes; regulators read the
same findings, each with its method in ``definition``.

Method, shared by every rule:

- A link is one (src_site, dst_site, src_hub, dst_hub, tier) label set of ``link_latency``.
  Probe kinds (udp, tcp, icmp) of one link are pooled, so the worst of them counts.
- Windows of ``window`` (5 min by default) start at the period's start. The store does the
  aggregation: per window the lowest and highest per-minute p95 RTT (MIN, MAX), the lowest
  RTT (MIN), the mean loss (MEAN) and the fiber minimum (MAX). This module only ever holds
  links x windows values, never raw samples.
- Tier budgets are read as round-trip times (`Policy.budget_rtt_s`) and compared with the
  measured round-trip times. A window is over budget when its p95 stayed over the budget
  for the whole window: the lowest per-minute p95 in it > budget. Exactly at budget
  complies. That window rule, the link labels and the budgets are the core's
  (`computewatch.compliance`: `SUSTAINED_P95`, `link_budgets`), whose `window_compliance`
  gives reports the complement, the share of windows within budget.
- A window without any per-minute p95 (no samples, or no reply at all) is missing for the
  RTT rules; lost probes show in ``loss_over_limit``.
- Episodes (hysteresis): consecutive flagged windows form one episode, and one unflagged
  window (within limits, or without data) between two flagged ones does not end it; two
  do. A link flapping across its budget window by window is then one episode for the NOC,
  not one page per 5 minutes, while a real recovery (10 min clean) closes it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from computewatch.compliance import LINK_LABELS, SUSTAINED_P95, link_budgets, window_count
from computewatch.findings import Finding, Period, Severity
from computewatch.policy import Policy
from computewatch.store import Aggregate, Query, Store
from computewatch.topology import Topology

__all__ = ["run"]

PIPELINE = "latency"
MEASUREMENT = "link_latency"

BRIDGED_WINDOWS = 1
"""Unflagged windows an episode may contain between two flagged ones (hysteresis)."""

CRITICAL_FACTOR = 2.0
CRITICAL_DURATION = timedelta(hours=1)
"""An episode is CRITICAL above twice its threshold or when it lasts longer than this."""

FAST_LOOKBACK, FAST_BURN = timedelta(hours=1), 14.4
SLOW_LOOKBACK, SLOW_BURN = timedelta(hours=6), 6.0
"""Google SRE workbook, "Alerting on SLOs", multiwindow multi-burn-rate alerts for a 30-day
SLO: burning 14.4x for 1 h spends 2% of the month's error budget (14.4 x 1 h / 720 h), worth
a page; burning 6x for 6 h spends 5% (6 x 6 h / 720 h), worth a ticket. The fast alert also
needs the short window (the workbook's 5 min, here the last window) to be bad, so it stops
as soon as the link recovers instead of for the rest of the hour."""

MIN_LOOKBACK_COVERAGE = 0.5
"""A burn rate is only evaluated when at least half its look-back windows hold data, so a
link whose data just began (or resumed) is not paged on its first bad window alone."""

SHORT_LINK_FIBER_S = 0.5e-3
"""Links whose fiber minimum RTT is below 0.5 ms (under 50 km) are not scored for route
inflation: there equipment and serialization delay, not route length, dominate the RTT."""


def _span_text(td: timedelta) -> str:
    s = td.total_seconds()
    if s % 3600 == 0:
        return f"{s / 3600:g} h"
    return f"{s / 60:g} min" if s % 60 == 0 else f"{s:g} s"


def _definitions(window: timedelta, loss_limit: float, slo_target: float,
                 inflation_limit: float) -> dict[str, str]:
    w = _span_text(window)
    episodes = ("Consecutive flagged windows form one episode; one window within the limit or "
                "without data between two flagged windows does not end it, two do. "
                f"CRITICAL when observed > {CRITICAL_FACTOR:g} x threshold or the episode "
                f"lasts longer than {_span_text(CRITICAL_DURATION)}, else WARNING. "
                "completeness = windows with data / windows in the episode.")
    burn = (f"SLO: >= {slo_target:g} of {w} windows within the tier budget (a window is bad "
            "when its p95 round-trip time stayed over the budget, read as a round-trip time, "
            "for the whole window). Burn rate over a look-back = share of bad "
            f"windows among those with data / (1 - {slo_target:g}), evaluated at each window "
            f"end when >= {MIN_LOOKBACK_COVERAGE:g} of the look-back holds data. ")
    return {
        "p95_over_budget": (
            f"Per {w} window, the lowest per-minute p95 round-trip time of the link (MIN in "
            "the store: the p95 stayed above it for the whole window) is compared with the "
            "tier budget read as a round-trip time; a window is over budget when that p95 > "
            "budget (equal complies). observed = the highest such window p95 in the episode "
            "(s), threshold = budget (s); the worst single minute is in detail. " + episodes),
        "loss_over_limit": (
            f"Per {w} window, the mean probe loss ratio of the link (MEAN in the store) is "
            f"compared with the limit {loss_limit:g}; a window is flagged when loss > limit. "
            "observed = worst window mean loss in the episode. " + episodes),
        "slo_burn_fast": (
            burn + f"Fast burn (Google SRE workbook, multiwindow): the {_span_text(FAST_LOOKBACK)}"
            f" burn rate >= {FAST_BURN:g} (2% of a 30-day error budget in 1 h) and the last "
            f"{w} window also bad. One finding per burning stretch (one calm window bridged); "
            "observed = peak burn rate. completeness = windows with data / windows in the "
            "stretch's look-backs."),
        "slo_burn_slow": (
            burn + f"Slow burn (Google SRE workbook, multiwindow): the "
            f"{_span_text(SLOW_LOOKBACK)} burn rate >= {SLOW_BURN:g} (5% of a 30-day error "
            "budget in 6 h). One finding per burning stretch (one calm window bridged); "
            "observed = peak burn rate. completeness = windows with data / windows in the "
            "stretch's look-backs."),
        "route_inflation": (
            f"Route inflation = median over the period's {w} windows of the window's minimum "
            "RTT / the link's fiber minimum RTT (great circle, 10 us per km); flagged above "
            f"the limit {inflation_limit:g}. Links whose fiber minimum is below "
            f"{SHORT_LINK_FIBER_S * 1e3:g} ms (under 50 km) are not scored: equipment delay "
            "dominates there. completeness = windows with a minimum RTT / windows in the "
            "period."),
        "budget_below_physics": (
            "The link's fiber minimum RTT (great circle at 10 us per km, no equipment, no "
            "detour) alone exceeds its tier budget read as a round-trip time: no route can "
            "meet it, so its p95_over_budget findings are physics, not faults. observed = "
            "fiber minimum (s), threshold = budget (s)."),
    }


# --- data: (links x windows) arrays from windowed store queries -------------------------------

@dataclass(frozen=True)
class _Links:
    """The store's window aggregates laid on one grid; `warm` windows precede the period."""

    labels: pd.DataFrame  # one row per link, LINK_LABELS columns
    start: datetime
    end: datetime
    window: timedelta
    warm: int
    p95_all: np.ndarray  # (links, warm + n) sustained p95: look-back for the burn rates
    p95_peak: np.ndarray  # (links, n) worst minute p95; the period only, as those below
    loss: np.ndarray
    rtt_min: np.ndarray
    fiber: np.ndarray

    @property
    def n(self) -> int:
        return self.loss.shape[1]

    @property
    def p95(self) -> np.ndarray:
        return self.p95_all[:, self.warm:]

    def t(self, i: int) -> datetime:
        """Start of period window ``i`` (``n`` gives the period's end)."""
        return min(self.start + i * self.window, self.end)


def _fetch(store: Store, period: Period, window: timedelta, warm: int) -> _Links | None:
    """Three windowed queries (MIN, MAX, MEAN), grouped by link; None when there is no data.

    The MIN query starts ``warm`` windows before the period: the burn rates look back."""
    t0 = period.start - warm * window
    group = LINK_LABELS
    low = store.query(Query(MEASUREMENT, ("rtt_p95_seconds", "rtt_min_seconds"), t0,
                            period.end, group_by=group, window=window, agg=SUSTAINED_P95))
    high = store.query(Query(MEASUREMENT, ("rtt_p95_seconds", "fiber_min_seconds"),
                             period.start, period.end, group_by=group, window=window,
                             agg=Aggregate.MAX))
    loss = store.query(Query(MEASUREMENT, ("loss_ratio",), period.start, period.end,
                             group_by=group, window=window, agg=Aggregate.MEAN))
    frames = [f for f in (low, high, loss) if len(f)]
    if not frames:
        return None
    labels = (pd.concat([f[list(group)] for f in frames]).astype(str).drop_duplicates()
              .sort_values(list(group)).reset_index(drop=True))
    index = pd.MultiIndex.from_frame(labels)
    n = window_count(period.end - period.start, window)

    def grid(frame: pd.DataFrame, field: str, first: int, width: int) -> np.ndarray:
        out = np.full((len(labels), width), np.nan)
        if len(frame):
            rows = index.get_indexer(pd.MultiIndex.from_frame(frame[list(group)].astype(str)))
            cols = ((frame["time"] - pd.Timestamp(t0)) // pd.Timedelta(window)).to_numpy(
                dtype=np.int64) - first
            ok = (cols >= 0) & (cols < width)
            out[rows[ok], cols[ok]] = frame[field].to_numpy(dtype=float)[ok]
        return out

    return _Links(labels, period.start, period.end, window, warm,
                  p95_all=grid(low, "rtt_p95_seconds", 0, warm + n),
                  p95_peak=grid(high, "rtt_p95_seconds", warm, n),
                  loss=grid(loss, "loss_ratio", warm, n),
                  rtt_min=grid(low, "rtt_min_seconds", warm, n),
                  fiber=grid(high, "fiber_min_seconds", warm, n))


def _row_max(x: np.ndarray) -> np.ndarray:
    """Per-row max ignoring NaN; NaN for a row without any value (and no warning)."""
    has = ~np.isnan(x)
    out = np.where(has, x, -np.inf).max(axis=1, initial=-np.inf)
    return np.where(has.any(axis=1), out, np.nan)


def _fiber(links: _Links, topology: Topology | None) -> np.ndarray:
    """The link's fiber minimum RTT from the store, else from the topology, else NaN."""
    out = _row_max(links.fiber)
    if topology is not None:
        for k in np.flatnonzero(np.isnan(out)):
            row = links.labels.iloc[k]
            with contextlib.suppress(KeyError, ValueError):
                out[k] = topology.link(row.src_site, row.dst_site).fiber_min_rtt_s
    return out


# --- episodes -------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class _Context:
    links: _Links
    budget: np.ndarray
    fiber: np.ndarray
    definitions: dict[str, str]
    topology: Topology | None

    def finding(self, k: int, rule: str, severity: Severity, observed: float,
                threshold: float, unit: str, start: datetime, end: datetime,
                completeness: float, message: str, detail: dict) -> Finding:
        row = self.links.labels.iloc[k]
        hub, cluster = row.src_hub, ""
        if self.topology is not None:
            try:
                site = self.topology.site(row.src_site)
                hub, cluster = hub or site.hub, site.cluster or ""
            except KeyError:
                pass
        return Finding(
            pipeline=PIPELINE, rule=rule, subject_type="link",
            subject=f"{row.src_site}|{row.dst_site}", severity=severity,
            observed=float(observed), threshold=float(threshold), unit=unit, start=start,
            end=end, completeness=float(min(max(completeness, 0.0), 1.0)), hub=hub,
            cluster=cluster, site=row.src_site, definition=self.definitions[rule],
            message=message,
            detail={"tier": row.tier, "dst_hub": row.dst_hub, **detail})

    def name(self, k: int) -> str:
        row = self.links.labels.iloc[k]
        return f"{row.src_site}->{row.dst_site} ({row.tier})"


def _episode_findings(ctx: _Context, rule: str, values: np.ndarray, limits: np.ndarray,
                      unit: str) -> list[Finding]:
    """One finding per episode of windows with value > limit (see the module docstring)."""
    links = ctx.links
    with np.errstate(invalid="ignore"):
        flagged = values > limits[:, None]  # NaN (no data, or no limit) is never flagged
    has = ~np.isnan(values)
    out = []
    for k in np.flatnonzero(flagged.any(axis=1)):
        for first, last in _episodes(flagged[k]):
            start, end = links.t(first), links.t(last + 1)
            observed = float(np.nanmax(values[k, first:last + 1]))
            limit = float(limits[k])
            critical = observed > CRITICAL_FACTOR * limit or end - start > CRITICAL_DURATION
            span = last - first + 1
            detail = {"windows": span, "windows_flagged": int(flagged[k, first:last + 1].sum()),
                      "windows_with_data": int(has[k, first:last + 1].sum()),
                      "window_s": links.window.total_seconds(), "ongoing": last == links.n - 1}
            if rule == "p95_over_budget":
                physics = bool(ctx.fiber[k] > limit)
                peak = links.p95_peak[k, first:last + 1]
                detail |= {"fiber_min_s": float(ctx.fiber[k]), "budget_below_physics": physics,
                           "worst_minute_p95_s": float(np.nanmax(peak))
                           if (~np.isnan(peak)).any() else None}
                what = (f"p95 RTT held up to {observed * 1e3:.3g} ms over the "
                        f"{limit * 1e3:g} ms budget"
                        + (" (the fiber minimum alone exceeds it)" if physics else ""))
            else:
                what = f"loss up to {observed:.2%} over the {limit:.2%} limit"
            out.append(ctx.finding(
                k, rule, Severity.CRITICAL if critical else Severity.WARNING, observed, limit,
                unit, start, end, has[k, first:last + 1].mean(),
                f"{ctx.name(k)}: {what} for {_span_text(end - start)}", detail))
    return out


# --- SLO burn rate --------------------------------------------------------------------------

def _trailing(x: np.ndarray, k: int) -> np.ndarray:
    """Sum over the last ``k`` windows up to and including each window, per row."""
    c = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
    idx = np.arange(1, x.shape[1] + 1)
    return c[:, idx] - c[:, np.maximum(idx - k, 0)]


def _burn_findings(ctx: _Context, slo_target: float) -> list[Finding]:
    links = ctx.links
    p95, warm = links.p95_all, links.warm
    with np.errstate(invalid="ignore"):
        bad = (p95 > ctx.budget[:, None]).astype(float)
    has = (~np.isnan(p95) & ~np.isnan(ctx.budget)[:, None]).astype(float)
    allowed = round(1.0 - slo_target, 12)  # 1 - 0.99 is 0.010000000000000009 in floats
    out = []
    for rule, lookback, threshold, severity in (
            ("slo_burn_fast", FAST_LOOKBACK, FAST_BURN, Severity.CRITICAL),
            ("slo_burn_slow", SLOW_LOOKBACK, SLOW_BURN, Severity.WARNING)):
        k_win = window_count(lookback, links.window)
        n_bad, n_has = _trailing(bad, k_win), _trailing(has, k_win)
        with np.errstate(invalid="ignore", divide="ignore"):
            burn = n_bad / n_has / allowed
        evaluated = n_has >= MIN_LOOKBACK_COVERAGE * k_win
        # A relative tolerance so 6 bad in 100 meets 6x exactly despite 1 - 0.99 != 0.01.
        burning = evaluated & (burn >= threshold * (1 - 1e-9))
        if rule == "slo_burn_fast":
            burning &= bad.astype(bool)  # the short window: the last one is bad too
        burning, burn = burning[:, warm:], burn[:, warm:]
        for k in np.flatnonzero(burning.any(axis=1)):
            for first, last in _episodes(burning[k]):
                peak_at = first + int(np.argmax(np.where(burning[k, first:last + 1],
                                                         burn[k, first:last + 1], -1.0)))
                peak = float(burn[k, peak_at])
                lo = max(warm + first - k_win + 1, 0)
                coverage = float(has[k, lo:warm + last + 1].mean())
                start, end = links.t(first), links.t(last + 1)
                out.append(ctx.finding(
                    k, rule, severity, peak, threshold, "factor", start, end, coverage,
                    f"{ctx.name(k)}: SLO ({slo_target:g} of windows within "
                    f"{ctx.budget[k] * 1e3:g} ms) burning {peak:.3g}x over "
                    f"{_span_text(lookback)}, threshold {threshold:g}x",
                    {"lookback_s": k_win * links.window.total_seconds(),
                     "slo_target": slo_target, "budget_s": float(ctx.budget[k]),
                     "bad_windows_at_peak": int(n_bad[k, warm + peak_at]),
                     "windows_with_data_at_peak": int(n_has[k, warm + peak_at]),
                     "peak_at": links.t(peak_at + 1).isoformat()}))
    return out


# --- route inflation and physics -----------------------------------------------------------

def _inflation_findings(ctx: _Context, limit: float) -> list[Finding]:
    links = ctx.links
    scored = ctx.fiber >= SHORT_LINK_FIBER_S  # NaN fiber compares False: not scored
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = links.rtt_min / ctx.fiber[:, None]
    ratio[~scored] = np.nan
    counts = (~np.isnan(ratio)).sum(axis=1)
    out = []
    for k in np.flatnonzero(counts > 0):
        inflation = float(np.nanmedian(ratio[k]))
        if inflation <= limit:
            continue
        out.append(ctx.finding(
            k, "route_inflation", Severity.WARNING, inflation, limit, "factor", links.start,
            links.end, counts[k] / links.n,
            f"{ctx.name(k)}: minimum RTT is {inflation:.2f}x the fiber minimum "
            f"({ctx.fiber[k] * 1e3:.3g} ms), over the {limit:g}x limit",
            {"fiber_min_s": float(ctx.fiber[k]), "windows_scored": int(counts[k])}))
    return out


def _physics_findings(ctx: _Context) -> list[Finding]:
    links = ctx.links
    with np.errstate(invalid="ignore"):
        impossible = ctx.fiber > ctx.budget
    has = (~np.isnan(links.fiber)).sum(axis=1)
    return [ctx.finding(
        k, "budget_below_physics", Severity.INFO, ctx.fiber[k], ctx.budget[k], "s",
        links.start, links.end, has[k] / links.n if has[k] else 1.0,
        f"{ctx.name(k)}: the fiber minimum {ctx.fiber[k] * 1e3:.3g} ms alone exceeds the "
        f"{ctx.budget[k] * 1e3:g} ms budget; no route can meet it",
        {"fiber_source": "store" if has[k] else "topology"})
        for k in np.flatnonzero(impossible)]


# --- entry point ----------------------------------------------------------------------------

def run(store: Store, period: Period, policy: Policy, topology: Topology | None = None, *,
        window: timedelta = timedelta(minutes=5), loss_limit: float = 0.01,
        slo_target: float = 0.99) -> list[Finding]:
    """Latency findings for every link in ``store`` over ``period`` (see the module doc).

    ``topology`` fills in what the labels lack: the cluster of the source site, a missing
    hub or tier, a fiber minimum the prober did not write.
    """
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    if not 0.0 <= loss_limit < 1.0:
        raise ValueError(f"loss_limit must be in [0, 1), got {loss_limit}")
    if not 0.0 < slo_target < 1.0:
        raise ValueError(f"slo_target must be in (0, 1), got {slo_target}")
    # The burn rates look back up to 6 h, so the query starts that much before the period.
    links = _fetch(store, period, window, window_count(SLOW_LOOKBACK, window))
    if links is None:
        return []
    inflation_limit = float(policy.latency.route_inflation_limit.value)
    ctx = _Context(links, link_budgets(links.labels, policy, topology), _fiber(links, topology),
                   _definitions(window, loss_limit, slo_target, inflation_limit), topology)
    findings = [
        *_episode_findings(ctx, "p95_over_budget", links.p95, ctx.budget, "s"),
        *_episode_findings(ctx, "loss_over_limit", links.loss,
                           np.full(len(links.labels), loss_limit), "ratio"),
        *_burn_findings(ctx, slo_target),
        *_inflation_findings(ctx, inflation_limit),
        *_physics_findings(ctx),
    ]
    return sorted(findings, key=lambda f: (f.start, f.subject, f.rule, f.end))
