"""Latency-tier compliance of inter-site links: the window rule, stated once.

A link is an unordered site pair (`computewatch.topology.link_pair`): the series of both
directions (``src_site``/``dst_site`` either way round) and of every probe kind (udp, tcp,
icmp) of a pair are pooled into one link. Windows (5 min by default) start at the period's
start.

A window's p95 round-trip time is taken over every probe in it, not from the per-minute
percentiles (which cannot be merged: the lowest of five per-minute p95 values is the p95 of
no set of probes at all). The prober counts, per minute, the probes answered within the
link's tier budget (``replies_within_budget``, lost and late probes never are) beside the
probes sent (``samples``); counts add up over minutes and directions, so the store sums them
per window (`Aggregate.SUM`) and

    the window's p95 is within budget  <=>  probes within budget >= 95% of probes sent,

exactly (the p95 of a set of RTTs is at most the budget when at least 95% of them are).
Exactly 95% complies. Compliance over a period is the share of its probes answered within
budget (`probes_within_budget / probes`); the share of windows within budget is given
beside it. The latency pipeline flags the complement with the same rule and budgets
(`link_budgets`), and the report states these shares, so the two never disagree.

Budgets are read as round-trip times (`Policy.budget_rtt_s`). The counts were taken against
the budget the prober knew (``budget_seconds``, written beside them); a window whose stored
budget differs from the policy's is not scored (counted as without data, and logged), since
its count answers another question.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from computewatch.findings import Period
from computewatch.i18n import N_
from computewatch.policy import Policy
from computewatch.store import Aggregate, Query, Store, query_many, resolution
from computewatch.topology import Tier, Topology

__all__ = ["COMPLIANCE_COLUMNS", "COMPLIANCE_DEFINITION", "LINK_LABELS", "P95",
           "PAIR_COLUMNS", "PairWindows", "link_budgets", "pair_windows", "scored_counts",
           "window_compliance",
           "window_count", "windows_over_budget"]

log = logging.getLogger(__name__)

LINK_LABELS = ("src_site", "dst_site", "src_hub", "dst_hub", "tier")
"""The labels of one ``link_latency`` series (one direction of a link; probe kinds pooled)."""

PAIR_COLUMNS = ("pair", "src_site", "dst_site", "src_hub", "dst_hub", "tier")
"""One link: ``pair`` is ``a|b`` with the sites sorted, ``src_site`` the first of them (a,
with its hub ``src_hub``), ``dst_site`` the second (b); ``tier`` from the labels."""

P95 = 0.95
"""The tier budgets are kept by a window's 95th-percentile RTT: at least this share of its
probes answered within budget."""

# ``{share}``: P95 as a percentage (a literal "95% o" would read as a %-format to gettext).
COMPLIANCE_DEFINITION = N_(
    "A link is an unordered site pair: both directions and every probe kind are pooled. Per "
    "link and {window} window, the p95 round-trip time over every probe sent in the window is "
    "compared with the link's tier budget read as a round-trip time: the prober counts the "
    "probes answered within the budget (lost and late probes never are), the store sums the "
    "counts per window, and the window is within budget when at least {share} of its probes "
    "were answered within it (exactly {share} complies), which is when its p95 is within "
    "budget. "
    "Compliance = probes answered within budget / probes sent over the period; windows within "
    "budget / windows with data is given beside it. completeness = windows with data / "
    "windows in the period. Links of unknown tier are not scored.")

COMPLIANCE_COLUMNS = [*LINK_LABELS, "budget_s", "windows", "windows_with_data",
                      "windows_within_budget", "probes", "probes_within_budget"]

_TIERS = frozenset(t.value for t in Tier)


def window_count(span: timedelta, window: timedelta) -> int:
    """Windows of ``window`` that cover ``span`` (a last partial one counts; at least one)."""
    whole, rest = divmod(span, window)
    return max(1, whole + (1 if rest else 0))


def link_budgets(labels: pd.DataFrame, policy: Policy,
                 topology: Topology | None = None) -> np.ndarray:
    """Each link's budget as a round-trip time, from its ``tier`` label, else from the
    topology's tier for the site pair; NaN (not scored, logged) when neither is known.

    ``labels`` has ``src_site``, ``dst_site`` and ``tier`` columns, one row per link."""
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


def _series_pairs(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """For store rows keyed by `LINK_LABELS`: each row's series number, and per series its
    unordered pair (`PAIR_COLUMNS`). Label strings are handled once per series, not per row."""
    codes, uniques = [], []
    for col in LINK_LABELS:
        c, u = pd.factorize(frame[col], use_na_sentinel=False)
        codes.append(c)
        uniques.append(np.array(["" if pd.isna(x) else str(x) for x in u], dtype=object))
    key = np.ravel_multi_index(codes, [len(u) for u in uniques])
    series, row_series = np.unique(key, return_inverse=True)
    parts = np.unravel_index(series, [len(u) for u in uniques])
    src, dst, sh, dh, tier = (u[p] for u, p in zip(uniques, parts, strict=True))
    swap = src > dst
    pairs = pd.DataFrame({"src_site": np.where(swap, dst, src),
                          "dst_site": np.where(swap, src, dst),
                          "src_hub": np.where(swap, dh, sh), "dst_hub": np.where(swap, sh, dh),
                          "tier": tier})
    pairs.insert(0, "pair", pairs.src_site + "|" + pairs.dst_site)
    return row_series, pairs


@dataclass(frozen=True)
class PairWindows:
    """Window aggregates of links laid on one grid: ``links`` has one row per pair
    (`PAIR_COLUMNS`, sorted by pair), each array one row per link and one column per window
    from ``start`` (NaN: no data)."""

    links: pd.DataFrame
    start: datetime
    window: timedelta
    values: dict[str, np.ndarray]

    @property
    def width(self) -> int:
        return next(iter(self.values.values())).shape[1] if self.values else 0

    def __getitem__(self, field: str) -> np.ndarray:
        return self.values[field]


def _combine(key: np.ndarray, values: np.ndarray, size: int, agg: Aggregate, *,
             distinct: bool = False) -> np.ndarray:
    """Values sharing a grid cell (``key``) combined by ``agg``; NaN in cells without one.
    Most cells hold one series (one direction, one probe kind): those are placed directly,
    as all are when the caller knows the keys ``distinct`` (checked once for all fields)."""
    out = np.full(size, np.nan)
    if distinct:
        out[key] = values
        return out
    ok = ~np.isnan(values)
    key, values = key[ok], values[ok]
    count = np.bincount(key, minlength=size)
    if count.max(initial=0) <= 1:
        out[key] = values
        return out
    if agg in (Aggregate.SUM, Aggregate.MEAN):
        total = np.bincount(key, weights=values, minlength=size)
        has = count > 0
        out[has] = total[has] / (count[has] if agg is Aggregate.MEAN else 1)
        return out
    got = pd.Series(values).groupby(key).agg("min" if agg is Aggregate.MIN else "max")
    out[got.index.to_numpy()] = got.to_numpy()
    return out



_Rows = tuple[np.ndarray, np.ndarray, pd.DataFrame, dict[str, np.ndarray]]
"""One aggregate's answer per direction (a `LINK_LABELS` label set) and window: each row's
window number from the grid's start and its direction's number, the directions' pairs
(`PAIR_COLUMNS`, numbered so), and each field's values per row."""


def _by_labels(store: Store, start: datetime, end: datetime, window: timedelta,
               queries: dict[Aggregate, tuple[str, ...]]) -> dict[Aggregate, _Rows]:
    """The rows asked of the store grouped by `LINK_LABELS` (one scan where the store shares
    it, `query_many`); label strings are read per row, then numbered per direction."""
    asked = [Query("link_latency", fields, start, end, group_by=LINK_LABELS, window=window,
                   agg=agg) for agg, fields in queries.items()]
    rows = {}
    for agg, got in zip(queries, query_many(store, asked), strict=True):
        if len(got):
            cols = ((got.time - pd.Timestamp(start)) // pd.Timedelta(window)).to_numpy(
                dtype=np.int64)
            direction, pairs = _series_pairs(got)
            rows[agg] = (cols, direction, pairs,
                         {f: got[f].to_numpy(dtype=float) for f in queries[agg]})
    return rows


def _per_series(store: Store, start: datetime, end: datetime, window: timedelta,
                queries: dict[Aggregate, tuple[str, ...]]) -> dict[Aggregate, _Rows] | None:
    """The same rows from the store's per-series read (`DuckDBStore.series_ids`,
    `series_windows`): series are mapped to their direction once, on the series index, and
    their rows pooled per direction and window here, as the grouped query does (sums add,
    minima and maxima take the extreme, a mean is its direction's sum over its count), so no
    label string is read per row. None where the store cannot (no per-series read, a range
    that reaches rollups, a series the index read did not hold): ask `_by_labels`."""
    ids = getattr(store, "series_ids", None)
    per_series = getattr(store, "series_windows", None)
    if ids is None or per_series is None:
        return None
    asked, first = [], {}  # a mean is asked as a sum and a count
    for agg, fields in queries.items():
        first[agg] = len(asked)
        for one in ((Aggregate.SUM, Aggregate.COUNT) if agg is Aggregate.MEAN else (agg,)):
            asked.append(Query("link_latency", fields, start, end, window=window, agg=one))
    got = per_series(asked)
    if got is None:
        return None
    if not len(got["time"]):
        return {}
    labels, series_ids = ids("link_latency")
    series = pd.Index(series_ids).get_indexer(got["series_id"])
    if (series < 0).any():
        return None
    of_series, pairs = _series_pairs(labels.reset_index(drop=True))
    # Only directions with data, numbered in the index's order (as the grouped read's are).
    used = np.zeros(len(labels), dtype=bool)
    used[series] = True
    has = np.zeros(len(pairs), dtype=bool)
    has[of_series[used]] = True
    number = np.cumsum(has) - 1
    direction = number[of_series[series]]
    pairs = pairs[has].reset_index(drop=True)
    step = window // timedelta(microseconds=1) * 1000
    cols = (got["time"] - pd.Timestamp(start).as_unit("ns").value) // step
    alone = np.bincount(of_series[used]).max() <= 1  # one series a direction: rows are cells
    if alone:
        cell, size = np.arange(len(cols)), len(cols)
    else:
        width = int(cols.max()) + 1
        cells, cell = np.unique(direction * width + cols, return_inverse=True)
        size, cols, direction = len(cells), cells % width, cells // width

    def pooled(name: str, agg: Aggregate) -> np.ndarray:
        v = got[name].astype(float)
        return v if alone else _combine(cell, v, size, agg)

    rows: dict[Aggregate, _Rows] = {}
    for agg, fields in queries.items():
        k = first[agg]
        if agg is Aggregate.MEAN:
            values = {}
            for f in fields:
                total, n = pooled(f"{k}:{f}", Aggregate.SUM), pooled(f"{k + 1}:{f}", Aggregate.SUM)
                with np.errstate(invalid="ignore", divide="ignore"):
                    values[f] = np.where(n > 0, total / n, np.nan)
        else:
            values = {f: pooled(f"{k}:{f}", agg) for f in fields}
        rows[agg] = (cols, direction, pairs, values)
    return rows


def pair_windows(store: Store, start: datetime, end: datetime, window: timedelta,
                 queries: dict[Aggregate, tuple[str, ...]]) -> PairWindows | None:
    """The windowed aggregates ``queries`` asks (fields of ``link_latency``), per direction
    (`LINK_LABELS`: probe kinds pooled as the store pools a group) and window, in one scan,
    then pooled into unordered pairs: sums add, minima and maxima take the extreme, means
    the mean of the directions' means. None when the store holds no link data in
    [start, end)."""
    frames = _per_series(store, start, end, window, queries)
    if frames is None:
        frames = _by_labels(store, start, end, window, queries)
    if not frames:
        return None
    labels = (pd.concat([pairs for _, _, pairs, _ in frames.values()])
              .drop_duplicates("pair").sort_values("pair").reset_index(drop=True))
    width = window_count(end - start, window)
    index = pd.Index(labels.pair)
    shape = (len(labels), width)
    values: dict[str, np.ndarray] = {}
    for agg, fields in queries.items():
        if agg not in frames:
            values.update({f: np.full(shape, np.nan) for f in fields})
            continue
        cols, direction, pairs, got = frames[agg]
        rows = index.get_indexer(pairs.pair)[direction]
        inside = (cols >= 0) & (cols < width) & (rows >= 0)
        key = rows[inside] * width + cols[inside]
        distinct = np.bincount(key, minlength=shape[0] * width).max(initial=0) <= 1
        for f in fields:
            values[f] = _combine(key, got[f][inside], shape[0] * width, agg,
                                 distinct=distinct).reshape(shape)
    return PairWindows(labels, start, window, values)


def windows_over_budget(sent: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Per window: 1.0 when its p95 over every probe is over budget (fewer than 95% of the
    probes sent were answered within it), 0.0 when within, NaN without probes."""
    with np.errstate(invalid="ignore"):
        over = (within < P95 * sent * (1 - 1e-12)).astype(float)
    return np.where(np.isnan(sent) | np.isnan(within) | (sent <= 0), np.nan, over)


def _budget_mismatch(stored: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Windows whose stored budget differs from the policy's (counted against another)."""
    with np.errstate(invalid="ignore"):
        return ~np.isnan(stored) & (np.abs(stored - budget[:, None]) > 1e-9 * budget[:, None])


def scored_counts(grid: PairWindows, budget: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sent, within) with windows counted against another budget set to NaN (logged)."""
    sent, within = grid["samples"].copy(), grid["replies_within_budget"].copy()
    if "budget_seconds" in grid.values:
        bad = _budget_mismatch(grid["budget_seconds"], budget)
        if bad.any():
            for k in np.flatnonzero(bad.any(axis=1)):
                log.warning("link %s: %d windows were counted against a budget of %g s, not "
                            "the policy's %g s; not scored", grid.links.pair[k],
                            int(bad[k].sum()), float(np.nanmax(grid["budget_seconds"][k])),
                            budget[k])
            sent[bad] = np.nan
            within[bad] = np.nan
    return sent, within


def window_compliance(store: Store, period: Period, policy: Policy,
                      topology: Topology | None = None, *,
                      window: timedelta = timedelta(minutes=5)) -> pd.DataFrame:
    """Per link (unordered pair): its budget, how many of the period's windows had data and
    kept their p95 within it, and how many probes were sent and answered within it.

    Two windowed queries (links x windows rows). Every link with any latency data in the
    period is listed, sorted by pair. Columns (`COMPLIANCE_COLUMNS`): the link labels
    (``src_site`` < ``dst_site``), ``budget_s`` (NaN: unknown tier, not scored),
    ``windows``, ``windows_with_data``, ``windows_within_budget``, ``probes``,
    ``probes_within_budget``; see `COMPLIANCE_DEFINITION`.
    """
    # Beyond the raw data the store answers whole rollup buckets only (an hour in DuckDB).
    window = max(window, resolution(store, "link_latency", period.start))
    grid = pair_windows(store, period.start, period.end, window, {
        Aggregate.SUM: ("samples", "replies_within_budget"),
        Aggregate.MAX: ("budget_seconds",)})
    if grid is None:
        return pd.DataFrame(columns=COMPLIANCE_COLUMNS)
    links = grid.links
    budget = link_budgets(links, policy, topology)
    sent, within = scored_counts(grid, budget)
    over = windows_over_budget(sent, within)
    has = ~np.isnan(over) & ~np.isnan(budget)[:, None]
    return links.assign(
        budget_s=budget, windows=grid.width,
        windows_with_data=has.sum(axis=1),
        windows_within_budget=(has & (over == 0)).sum(axis=1),
        probes=np.where(has, sent, 0).sum(axis=1),
        probes_within_budget=np.where(has, within, 0).sum(axis=1),
    )[COMPLIANCE_COLUMNS].reset_index(drop=True)
