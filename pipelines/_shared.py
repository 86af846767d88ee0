"""One scan of the accelerators feeding every pipeline of a run.

Underuse, surplus, anomaly and the sampling interval they share each ask the store for
utilization and power sums, counts and means, and health minima, over the analysed period
(or a baseline before it), grouped by site, by device or by site, ecosystem and model: on a
national fleet each is a scan of every raw sample (144 M for 100,000 accelerators over a
day). `SharedScan` wraps the run's store, reads the period once per series and hour (one
SUM, one COUNT and one MIN query, a single scan in DuckDB), and answers those queries from
that table: sums, counts and minima add up exactly, a mean is a ratio of them. A query that
starts before the period is answered too when the store holds nothing before it. Whatever it
cannot answer exactly (another measurement or field, a quantile, a window or range off the
period's hourly grid, a baseline over data before the period) goes to the store unchanged.

The read never turns a label into a string per row: DuckDB answers per series id
(`DuckDBStore.series_ids`, `series_windows`), and a query's groups are numbered on the series
index (hundreds of thousands of label sets) before its rows (millions) are summed by number;
label strings are made for the answer's groups only. (Read by labels and matched back to the
index, as any other store is, the strings were most of the scan's cost.) Rows are summed in
the order the grouped read gives them, so either read gives the same sums to the last bit.
A filter is checked on the index too; one that every series passes (surplus' list of every
site) is dropped.

Memory: series x hours rows of 48 bytes, the series as a row number of the store's series
index (100,000 x 24 rows is about 115 MB), instead of one such frame per query; above
`MAX_ROWS` series-hours (a month of a national fleet) every query goes to the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from computewatch.findings import Period
from computewatch.store import Aggregate, Query, Store, query_many, side_by_side

__all__ = ["SharedScan"]

_MEASUREMENT = "accelerator"
_FIELD = "utilization_ratio"
_GRAIN = timedelta(hours=1)
_AGGS = (Aggregate.SUM, Aggregate.COUNT, Aggregate.MEAN)
_SUMMED = ("utilization_ratio", "power_watts")
"""Fields the scan keeps as sum and count per series and hour (SUM, COUNT and MEAN)."""
_LEAST = ("health",)
"""Fields the scan keeps as their minimum per series and hour (MIN)."""
MAX_ROWS = 12_000_000
"""The most series-hours the scan holds (about 580 MB); a longer period or a larger fleet
reads the store per query, as it would without this class."""


def _ns(times: pd.Series) -> np.ndarray:
    """UTC times as integer nanoseconds since the epoch (cheap to compare and bucket)."""
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("ns").asi8


def _codes(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The values of ``a`` and ``b`` as integers, equal values numbered alike."""
    codes = pd.factorize(pd.concat([a, b], ignore_index=True).astype(str),
                         use_na_sentinel=False)[0]
    return codes[:len(a)], codes[len(a):]


def _rows_of(index: pd.DataFrame, rows: pd.DataFrame) -> tuple[np.ndarray, bool]:
    """For each row of ``rows``, the number of the ``index`` row with the same values
    (-1: none), and whether ``index``'s rows are distinct. Integer codes, not strings,
    are hashed: millions of label strings made the string way the scan's dearest step."""
    key_index = np.zeros(len(index), np.int64)
    key_rows = np.zeros(len(rows), np.int64)
    for col in index.columns:
        left, right = _codes(index[col], rows[col])
        size = int(max(left.max(initial=-1), right.max(initial=-1))) + 1
        both = np.concatenate([key_index * size + left, key_rows * size + right])
        both = pd.factorize(both)[0].astype(np.int64)  # dense again: never overflows
        key_index, key_rows = both[:len(index)], both[len(index):]
    lookup = pd.Index(key_index)
    return lookup.get_indexer(key_rows) if lookup.is_unique else np.array([]), \
        lookup.is_unique


class SharedScan:
    """A `Store` that answers the period's utilization queries from one hourly read per
    device, and passes every other call to ``store``."""

    def __init__(self, store: Store, period: Period, *, max_rows: int = MAX_ROWS) -> None:
        self._store = store
        self.max_rows = max_rows
        self._period = period
        self._base: pd.DataFrame | None = None
        self._labels: pd.DataFrame | None = None
        self._usable: bool | None = None
        self._ranked: dict[str, tuple[np.ndarray, pd.Index]] = {}
        self._grouping: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._columns: set[str] = set()
        self._bare_before: bool | None = None
        self.url = store.url

    def __getattr__(self, name: str) -> Any:  # write, series, time_bounds, delete, ...
        return getattr(self._store, name)

    # -- which queries -----------------------------------------------------------------------
    def _on_grid(self, t: pd.Timestamp) -> bool:
        offset = t - pd.Timestamp(self._period.start)
        return offset % _GRAIN == pd.Timedelta(0)

    def _nothing_before(self) -> bool:
        """Whether the store holds no accelerator data before the period (then a query that
        starts earlier, an anomaly baseline's week, reads exactly what the scan holds)."""
        if self._bare_before is None:
            bounds = self._store.time_bounds(_MEASUREMENT)
            self._bare_before = bounds is None or bounds[0] >= self._period.start
        return self._bare_before

    def _answerable(self, q: Query) -> bool:
        if q.measurement != _MEASUREMENT:
            return False
        kept = _SUMMED if q.agg in _AGGS else _LEAST if q.agg == Aggregate.MIN else ()
        if not q.fields or not set(q.fields) <= set(kept):
            return False
        start, end = pd.Timestamp(q.start), pd.Timestamp(q.end)
        period_start, period_end = pd.Timestamp(self._period.start), pd.Timestamp(self._period.end)
        if not self._on_grid(start) or end > period_end:
            return False
        if end != period_end and not (end > period_start and self._on_grid(end)):
            return False
        if q.window is not None and q.window % _GRAIN != timedelta(0):
            return False
        return start >= period_start or self._nothing_before()

    # -- the one scan ----------------------------------------------------------------------------
    def _load(self) -> bool:
        """Read the base table once; False when the period holds more than ``max_rows``
        series-hours (then every query goes to the store, as without this class).

        Each row of the base is one series (a label set: a pod that comes and goes makes
        several series of one device) and hour. A store that answers per series
        (`DuckDBStore.series_windows`) gives the rows numbered by series already; any other
        is asked by the device and whichever labels change on it, and its answer's labels
        are matched to the series index's rows.
        """
        if self._usable is not None:
            return self._usable
        self._usable = False
        ids = getattr(self._store, "series_ids", None)
        per_series = getattr(self._store, "series_windows", None)
        if ids is not None and per_series is not None:
            labels, series_ids = ids(_MEASUREMENT)
        else:
            labels, series_ids = self._store.series(_MEASUREMENT).reset_index(drop=True), None
        hours = -(-(self._period.end - self._period.start) // _GRAIN)
        # A device holds one label set at a time (a pod's series ends as the next begins),
        # so the scan has about devices x hours rows, however many series the store names.
        if labels.empty or labels.device.nunique() * hours > self.max_rows:
            return False
        q = dict(start=self._period.start, end=self._period.end, window=_GRAIN)
        queries = [Query(_MEASUREMENT, _SUMMED, agg=Aggregate.SUM, **q),
                   Query(_MEASUREMENT, _SUMMED, agg=Aggregate.COUNT, **q),
                   Query(_MEASUREMENT, _LEAST, agg=Aggregate.MIN, **q)]
        got = per_series(queries) if series_ids is not None and per_series is not None \
            else None
        if got is not None:
            series = pd.Index(series_ids).get_indexer(got["series_id"])
            order = _hour_device_order(got["time"], series, labels.device)
            parts = {"time": got["time"][order], "series": series[order],
                     **{f"{f}:sum": got[f"0:{f}"][order] for f in _SUMMED},
                     **{f"{f}:n": got[f"1:{f}"][order] for f in _SUMMED},
                     **{f"{f}:min": got[f"2:{f}"][order] for f in _LEAST}}
        else:
            parts = self._by_labels(labels, queries)
            if parts is None:
                return False
        if len(parts["time"]) > 2 * self.max_rows or (parts["series"] < 0).any():
            return False  # series that overlap in time, or labels the index does not hold
        columns: dict[str, np.ndarray] = {"time": parts["time"].astype(np.int64),
                                          "series": parts["series"].astype(np.int32)}
        for f in _SUMMED:
            columns[f"{f}:sum"] = parts[f"{f}:sum"].astype(float)
            columns[f"{f}:n"] = np.nan_to_num(parts[f"{f}:n"].astype(float)).astype(np.int32)
        for f in _LEAST:
            columns[f"{f}:min"] = parts[f"{f}:min"].astype(float)
        self._base = pd.DataFrame(columns, copy=False)  # fresh arrays: kept, not stacked
        self._labels = labels
        self._columns = set(labels.columns)
        self._usable = True
        return True

    def _by_labels(self, labels: pd.DataFrame,
                   queries: list[Query]) -> dict[str, np.ndarray] | None:
        """The base's columns from ``queries`` asked of the store grouped by the device and
        the labels that change on one, each row matched to its series; None when the
        answer cannot be matched (too many rows, labels the index does not hold)."""
        key = ["device", *_varying_within(labels, "device")]
        total, count, least = query_many(self._store, [replace(q, group_by=tuple(key))
                                                       for q in queries])
        if len(total) > 2 * self.max_rows:  # series that overlap in time: too many rows
            return None
        keys = ["time", *key]
        base = side_by_side(total.rename(columns={f: f"{f}:sum" for f in _SUMMED}),
                            count.rename(columns={f: f"{f}:n" for f in _SUMMED}), keys,
                            how="outer")
        base = side_by_side(base, least.rename(columns={f: f"{f}:min" for f in _LEAST}), keys,
                            how="outer")
        series, unique = _rows_of(labels[key], base[key])
        if not unique:
            return None
        return {"time": _ns(base.time), "series": series,
                **{c: base[c].astype(float).to_numpy() for c in base.columns if ":" in c}}

    def _ranks(self, label: str) -> tuple[np.ndarray, pd.Index]:
        """Each series' value of ``label`` as its rank among the values, and the values."""
        if label not in self._ranked:
            assert self._labels is not None
            self._ranked[label] = pd.factorize(self._labels[label], sort=True,
                                               use_na_sentinel=False)
        return self._ranked[label]

    # -- Store -------------------------------------------------------------------------------
    def series(self, measurement: str,
               where: Mapping[str, str | Sequence[str]] | None = None) -> pd.DataFrame:
        """The accelerators' label sets from the index the scan read (a fleet whose pods
        come and go has millions: one read, not one per pipeline); else the store's."""
        labels = self._labels if measurement == _MEASUREMENT else None
        if labels is None:
            return self._store.series(measurement, where)
        kept = self._kept(where)
        if kept is None:
            return self._store.series(measurement, where)  # the store names the error
        return (labels if kept[1] is None else labels[kept[1]]).reset_index(drop=True)

    def query(self, q: Query) -> pd.DataFrame:
        return self.query_many([q])[0]

    def query_many(self, queries: Sequence[Query]) -> list[pd.DataFrame]:
        """Each query's answer: from the scan where it can (queries alike but for their
        aggregate grouped once), the rest from the store (`query_many`, sharing its reads)."""
        out: list[pd.DataFrame | None] = [None] * len(queries)
        grouped: dict[tuple, pd.DataFrame | None] = {}
        rest: list[int] = []
        for i, q in enumerate(queries):
            if not self._answerable(q) or not self._load():
                rest.append(i)
                continue
            kept = self._kept(q.where)
            if kept is None or any(g not in self._columns for g in q.group_by):
                rest.append(i)  # a tag or value the scan cannot check: the store names it
                continue
            key = (q.start, q.end, q.window, q.group_by, kept[0])
            if key not in grouped:
                grouped[key] = self._grouped(q, kept[1])
            out[i] = _finish(grouped[key], q)
        for i, df in zip(rest, query_many(self._store, [queries[i] for i in rest]),
                         strict=True):
            out[i] = df
        return [df for df in out if df is not None]

    def _kept(self, where: Mapping[str, str | Sequence[str]] | None
              ) -> tuple[str, np.ndarray | None] | None:
        """A key naming the filter ``where`` and the series it keeps (None: all of them; a
        filter every series passes keys as no filter), from each label's values, not its
        rows; None for a tag or value the scan cannot check."""
        assert self._labels is not None
        keep: np.ndarray | None = None
        for tag, want in (where or {}).items():
            accept = [want] if isinstance(want, str) else list(want)
            if tag not in self._columns or not all(isinstance(v, str) for v in accept):
                return None
            ranks, values = self._ranks(tag)
            ok = np.asarray(values.isin(accept))[ranks]
            keep = ok if keep is None else keep & ok
        if keep is None or keep.all():
            return "", None
        return repr(sorted((where or {}).items())), keep

    def _grouped(self, q: Query, keep: np.ndarray | None) -> pd.DataFrame:
        """Per window and group of ``q`` over the series ``keep`` marks (None: all): each
        kept field's sum, count and minimum."""
        base = self._base
        assert base is not None
        start, end = pd.Timestamp(q.start).value, pd.Timestamp(q.end).value
        time, series = base.time.to_numpy(), base.series.to_numpy()
        inside = (time >= start) & (time < end)
        if keep is not None:
            inside &= keep[series]
        rows = None if inside.all() else np.flatnonzero(inside)

        def col(name: str) -> np.ndarray:
            values = base[name].to_numpy()
            return values if rows is None else values[rows]

        time, series = col("time"), col("series")
        if q.window is None:
            window = np.zeros(len(time), np.int64)
        else:
            window = (time - start) // pd.Timedelta(q.window).value
        # Groups numbered per series first (the index's thousands of label sets, not the
        # scan's millions of rows), by each label's rank among its values, so integers
        # sort as the strings do; a row's group is its window's and its series'.
        owner, members = self._groups(q.group_by)
        group, first = _dense(window * len(members) + owner[series])
        ngroups = len(first)
        times = start + window[first] * (0 if q.window is None
                                         else pd.Timedelta(q.window).value)
        out = pd.DataFrame({"time": pd.to_datetime(times, unit="ns", utc=True)})
        named = members[owner[series[first]]]
        for g in q.group_by:
            ranks, values = self._ranks(g)
            out[g] = values.take(ranks[named])
        for f in _SUMMED:
            v = col(f"{f}:sum")
            has = ~np.isnan(v)
            total = np.bincount(group, weights=np.where(has, v, 0.0), minlength=ngroups)
            seen = np.bincount(group, weights=has, minlength=ngroups)
            out[f"{f}:sum"] = np.where(seen > 0, total, np.nan)  # NaN where all are NaN
            out[f"{f}:n"] = np.bincount(group, weights=col(f"{f}:n"),
                                        minlength=ngroups).astype(np.int64)
        for f in _LEAST:
            least = np.full(ngroups, np.nan)
            np.fmin.at(least, group, col(f"{f}:min"))
            out[f"{f}:min"] = least
        return out

    def _groups(self, group_by: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Each series' group under ``group_by`` (numbered in the order of the labels'
        values) and a series of each group, from the index alone."""
        if group_by not in self._grouping:
            assert self._labels is not None
            n = len(self._labels)
            if group_by:
                self._grouping[group_by] = _group_numbers(
                    [self._ranks(g)[0] for g in group_by])
            else:
                self._grouping[group_by] = (np.zeros(n, np.int64), np.zeros(min(n, 1), np.int64))
        return self._grouping[group_by]


def _hour_device_order(time: np.ndarray, series: np.ndarray, device: pd.Series) -> np.ndarray:
    """The order of per-series rows by hour, device, then series (the index's rows, sorted
    by their labels, so by the labels that change on the device): the order the store's
    grouped answer (`_by_labels`) has, in which the groups' sums add up, so a sum over
    the scan is the same to the last bit whichever way it was read."""
    if not len(time):
        return np.arange(0)
    devices = pd.factorize(device, sort=True, use_na_sentinel=False)[0]
    rank = np.empty(len(devices), np.int64)
    rank[np.lexsort((np.arange(len(devices)), devices))] = np.arange(len(devices))
    hour = (time - time.min()) // pd.Timedelta(_GRAIN).value
    return np.argsort(hour * len(devices) + rank[series], kind="stable")


def _varying_within(labels: pd.DataFrame, by: str) -> list[str]:
    """The columns of ``labels`` that take more than one value (NaN one of them) for some
    value of ``by``. Rows sorted by ``by`` once; then each column is compared with the row
    above: a groupby-nunique of every column cost seconds on a fleet's 600,000 series."""
    owner = pd.factorize(labels[by], use_na_sentinel=False)[0]
    order = np.argsort(owner, kind="stable")
    same_owner = owner[order][1:] == owner[order][:-1]
    varying = []
    for col in labels.columns:
        if col == by:
            continue
        codes = pd.factorize(labels[col], use_na_sentinel=False)[0][order]
        if (same_owner & (codes[1:] != codes[:-1])).any():
            varying.append(col)
    return varying


def _group_numbers(parts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows numbered by their combination of ``parts`` (integer columns), the numbers in
    the combinations' lexicographic order, and each group's first row."""
    key = np.zeros(len(parts[0]), np.int64)
    for part in parts:
        codes, uniques = pd.factorize(part, sort=True)
        span = len(uniques)
        if key.size and int(key.max()) >= (2**62) // max(span, 1):
            key = pd.factorize(key, sort=True)[0].astype(np.int64)  # dense, order kept
        key = key * span + codes
    _, first, group = np.unique(key, return_index=True, return_inverse=True)
    return group.astype(np.int64), first


def _dense(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows numbered by their ``key`` (non-negative integers), the numbers in the keys'
    order, and a row of each number: on a dense table of the keys where it is small,
    else by sorting."""
    if not len(key):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    size = int(key.max()) + 1
    if size > 2 * len(key) + (1 << 16):
        _, first, group = np.unique(key, return_index=True, return_inverse=True)
        return group.astype(np.int64), first
    row = np.full(size, -1, np.int64)
    row[key] = np.arange(len(key))
    cells = np.flatnonzero(row >= 0)
    number = np.zeros(size, np.int64)
    number[cells] = np.arange(len(cells))
    return number[key], row[cells]


def _finish(sums: pd.DataFrame, q: Query) -> pd.DataFrame:
    """``q``'s aggregate from the grouped sums, counts and minima."""
    out = sums[["time", *q.group_by]].copy()
    for f in q.fields:
        if q.agg == Aggregate.SUM:
            value = sums[f"{f}:sum"]
        elif q.agg == Aggregate.COUNT:
            value = sums[f"{f}:n"].astype(np.int64)
        elif q.agg == Aggregate.MIN:
            value = sums[f"{f}:min"]
        else:
            n = sums[f"{f}:n"]
            value = sums[f"{f}:sum"] / n.where(n > 0)
        out[f] = value.to_numpy()
    return out.reset_index(drop=True)
