"""VictoriaMetrics and Prometheus beyond their raw retention: queries read the rollup series.

The recording rules (`computewatch.rollup_rules`) write, per series and hour, the states of
each rolled-up field: ``series:<metric>:<op>_1h`` with ``op`` ``sum``, ``count``, ``min``,
``max``, ``last`` (gauges; counters: ``count``, ``max``, ``last`` and ``increase``), a record
stamped ``t`` covering ``(t - 1h, t]``, every label of the raw series kept. `PromRollups`
answers the part of a query before raw data begins from those series, and the rest from raw
data, merged into one frame as the embedded store merges its rollups and raw rows
(`computewatch.store._duckdb`), with the same semantics:

- **Where raw data begins**: the earliest raw sample of the measurement (`PromAPI.first_ms`),
  and where the rollups begin, the earliest hourly record's stamp less an hour; the line is
  drawn as the embedded store draws it (`computewatch.store._rollups.raw_boundary`): the
  first whole hour of raw data, and nowhere (raw data answers everything) when the rollups
  begin no earlier than the raw data. Why the earliest sample rather than a
  ``raw_retention=`` setting: it is the embedded store's rule, so both answer a query from
  the same data the same way, and there is no setting to keep in step with the server's
  ``-retentionPeriod`` (which deletes old data in whole parts, not at an exact time). Each
  boundary is kept for `COVERAGE_TTL_S` (a search of the measurement's series: VictoriaMetrics
  ``tfirst_over_time``, Prometheus a bisection); a write through the store forgets it.
- **Windows**: before the boundary a query needs its start, its end (where the query goes
  on past the boundary) and its window in whole hours, else a `StoreError` names the
  boundary; `PromRollups.resolution` says so (an hour) and the pipelines widen their windows
  to it (`computewatch.store.resolution`). A window ``[a, b)`` before the boundary reads the
  records stamped in ``(a, b]``; a query ending inside an hour reads that whole hour, as the
  embedded store does. A window that straddles the boundary merges the rollups' states with
  those of its raw part.
- **Aggregates**, per group and window: mean = sum of the sums / sum of the counts; sum,
  count, min, max from those states; last: the last value of the series whose latest record
  is the latest (MetricsQL; ties, as series last read in the same hour, give the largest;
  PromQL: the largest of the series' last values), and a raw part's last over a rollup
  part's. The RTT's quantile is asked of its histogram (field ``rtt_seconds_bucket``, on
  either side of the boundary alike): per window, group and bucket the records' increases
  and the raw counters' ``increase`` are summed, and the rank interpolated within its bucket
  as ``histogram_quantile`` does (`bucket_quantile`): within one bucket's width of the
  probes' true quantile (VictoriaMetrics' ``increase`` partitions a counter exactly;
  Prometheus' extrapolates to the window's edges). Counters have no sum or min rollups, the
  per-window percentile fields (``rtt_p95_seconds``) no mergeable quantile state, and fields
  outside `computewatch.rollup_rules.ROLLED_UP` no rollups at all: such a query before the
  boundary is refused with a `StoreError` naming the aggregate, the field and the boundary.
- **Series and bounds**: ``series`` adds the label sets only records hold (a card gone
  before raw data begins), ``time_bounds`` starts where the rollups do, as the embedded
  store's.
- **Edges**: a raw sample exactly on an hour falls in the hour before it in a record
  (PromQL's ``(t - 1h, t]``), in the hour after it in raw windows and in the embedded store's
  rollups; samples read at any other millisecond are counted alike everywhere.

The rollup series are read from the store's own instance, or from the one the URL names with
``rollups=host:port`` (the compose stack's ``victoriametrics-rollups``, which keeps them for
years while the raw instance keeps 35 days).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

import numpy as np
import pandas as pd

from computewatch import catalog
from computewatch.errors import NotRolledUp
from computewatch.rollup_rules import ROLLED_UP, record_name, rolled_ops
from computewatch.samples import TIME
from computewatch.store import _rollups as ru
from computewatch.store._promapi import PromAPI
from computewatch.store._promql import (
    evaluations,
    expression,
    matchers,
    regex_escape,
    selector,
    summed,
)
from computewatch.store._protocol import Aggregate, Query, StoreError, check_query

__all__ = ["AGG_STATES", "COVERAGE_TTL_S", "STATE_AGG", "PromAPIReads", "PromRollups",
           "bucket_quantile", "finish_states", "raw_spans"]

COVERAGE_TTL_S = 300.0
"""How long a measurement's raw boundary is kept before it is looked up again (retention
moves it on by whole parts, days at a time)."""

_NEVER = datetime.max.replace(tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
AGG_STATES = {Aggregate.MEAN: ("sum", "count"), Aggregate.SUM: ("sum",),
           Aggregate.COUNT: ("count",), Aggregate.MIN: ("min",), Aggregate.MAX: ("max",),
           Aggregate.LAST: ("last",)}
"""The rolled-up states each aggregate is finished from (`rolled_ops` names)."""
STATE_AGG = {"sum": Aggregate.SUM, "count": Aggregate.COUNT, "min": Aggregate.MIN,
           "max": Aggregate.MAX, "last": Aggregate.LAST}
"""The aggregate that reads one state from raw samples, or per group from its records."""
_HISTOGRAMS = dict([catalog.RTT_HISTOGRAM])
"""The histogram whose quantile each measurement answers: the probers' RTT."""
_MERGE = {"sum": "sum", "count": "sum", "min": "min", "max": "max", "last": "last"}
"""How the states of a window's rollup and raw parts merge (``last``: the later part's)."""


def _utc(t_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=t_ms)


def _rolled_expression(q: Query, series: str, range_ms: int, *, api: PromAPI) -> str:
    """Per group and window, one state over records: sums and counts add up, min, max and
    last are the raw aggregate's expression over the min, max and last records."""
    if q.agg in (Aggregate.SUM, Aggregate.COUNT):
        return summed(q, series, range_ms)
    return expression(q, series, range_ms, api.dialect)


def _increase(by: str, series: str, range_ms: int) -> str:
    """Per group (and ``le``) and window, the increase of raw histogram buckets: VictoriaMetrics
    counts from the last sample before the window, so windows partition it exactly (Prometheus
    extrapolates to the window's edges)."""
    return f"sum{by} (increase({series}[{range_ms}ms]))"


def _histogram(meas: catalog.Measurement, fields: Sequence[str], source: str) -> bool:
    """Whether a quantile's fields are histogram buckets (all of them, or none)."""
    buckets = [f for f in fields if meas.name in _HISTOGRAMS and f == _HISTOGRAMS[meas.name]]
    if buckets and len(buckets) < len(fields):
        raise StoreError(f"{source}: ask the quantile of the histogram {buckets[0]!r} on its "
                         f"own, not with {', '.join(f for f in fields if f not in buckets)}")
    return bool(buckets)


def bucket_quantile(phi: float, les: pd.Series, counts: pd.Series) -> float:
    """``histogram_quantile`` of cumulative bucket counts (upper bounds ``le``, ``+Inf``
    last) as Prometheus computes it: the rank ``phi x total`` interpolated linearly inside the
    bucket that holds it (from 0 in the first); in the ``+Inf`` bucket, the highest finite
    bound. NaN for no observations."""
    bounds = pd.to_numeric(les.astype("str").str.replace("+Inf", "inf"), errors="coerce")
    order = np.argsort(bounds.to_numpy(), kind="stable")
    upper, cum = bounds.to_numpy()[order], np.maximum.accumulate(counts.to_numpy()[order])
    if len(cum) == 0 or not np.isinf(upper[-1]) or cum[-1] <= 0:
        return math.nan
    rank = phi * cum[-1]
    i = int(np.searchsorted(cum, rank, side="left"))
    if i >= len(cum) - 1:
        return float(upper[-2]) if len(upper) > 1 else math.nan
    lower, below = (0.0, 0.0) if i == 0 else (float(upper[i - 1]), float(cum[i - 1]))
    if i == 0 and upper[0] <= 0:
        return float(upper[0])
    return lower + (float(upper[i]) - lower) * (rank - below) / (float(cum[i]) - below)


def raw_spans(q: Query, boundary: datetime) -> Iterator[tuple[datetime, datetime,
                                                                timedelta | None,
                                                                datetime | None]]:
    """The raw part of a query reaching before ``boundary``: (start, end, window, stamp)
    of each sub-query on the query's own window grid; ``stamp``, where set, is the window
    start that a straddling window's raw part belongs to."""
    if q.end <= boundary:
        return
    if q.window is None:
        yield boundary, q.end, None, q.start
        return
    first = q.start + (boundary - q.start) // q.window * q.window
    rest = first
    if first < boundary:
        rest = first + q.window
        yield boundary, min(rest, q.end), None, first
    if rest < q.end:
        yield rest, q.end, q.window, None


def finish_states(q: Query, states: tuple[str, ...], parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The parts' states (columns ``field:state``, per window and group; a later part's
    ``last`` over an earlier one's) merged per window and group, then the aggregate finished."""
    keys = [TIME, *q.group_by]
    rows = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    grouped = rows.groupby(keys, sort=True, as_index=False)
    merged = rows[keys].drop_duplicates().sort_values(keys, ignore_index=True)
    for col in rows.columns.difference(keys):
        how = _MERGE[col.rsplit(":", 1)[1]]
        merged_col = (grouped[col].sum(min_count=1) if how == "sum"
                      else grouped[col].agg(how))
        merged = merged.merge(merged_col, on=keys, how="left")
    out = merged[keys].copy()
    for f in q.fields:
        if q.agg is Aggregate.MEAN:
            n = merged[f"{f}:count"]
            out[f] = merged[f"{f}:sum"] / n.where(n > 0)
        elif q.agg is Aggregate.COUNT:
            out[f] = merged[f"{f}:count"].fillna(0).astype("int64")
        else:
            out[f] = merged[f"{f}:{states[0]}"]
    if q.agg is not Aggregate.COUNT:
        out = out[out[list(q.fields)].notna().any(axis=1)]
    out[TIME] = out[TIME].dt.as_unit("us")
    return out.reset_index(drop=True)


class PromRollups:
    """Queries of one store, answered from raw data (``raw``) and, before it begins, from
    the rollup records (``rolled``, the same instance or another); see the module docstring."""

    def __init__(self, raw: PromAPI, rolled: PromAPI, *,
                 ttl_s: float = COVERAGE_TTL_S) -> None:
        self.raw = raw
        self.rolled = rolled
        self.source = raw.source
        self._ttl_s = ttl_s
        self._kept: dict[str, tuple[float, datetime | None, datetime | None]] = {}

    def forget(self) -> None:
        """Drop the boundaries kept: a write may have moved where raw data begins."""
        self._kept.clear()

    def _any_record(self, meas: catalog.Measurement,
                    label_matchers: Sequence[str] = ()) -> str | None:
        """A selector of every hourly record of the measurement (None: nothing rolled up)."""
        names = [regex_escape(meas.metric(f).prometheus)
                 for f in ROLLED_UP.get(meas.name, ()) if f in meas.fields]
        if not names:
            return None
        return "{" + ", ".join([f'__name__=~"series:({"|".join(names)}):[a-z]+_1h"',
                                *label_matchers]) + "}"

    def series(self, measurement: str,
               where: Mapping[str, str | Sequence[str]] | None = None) -> pd.DataFrame:
        """The raw data's label sets, and those only records hold where rollups reach
        further back (as the embedded store keeps the labels of rolled-up series)."""
        meas = catalog.measurement(measurement)
        frame = self.raw.series(measurement, where)
        label_matchers = matchers(meas, where, self.source)
        records = self._any_record(meas, label_matchers or [])
        if label_matchers is None or records is None or self.coverage(meas)[0] is None:
            return frame
        rows = set(frame.itertuples(index=False, name=None))
        rows |= self.rolled.label_sets(meas, records, "the rollup records")
        return pd.DataFrame(sorted(rows), columns=list(meas.labels), dtype="str")

    def coverage(self, meas: catalog.Measurement) -> tuple[datetime | None, datetime | None]:
        """(boundary, rolled_from): where raw data takes over from rollups (None: raw data
        answers every query) and where the rollups begin (None: there are none)."""
        kept = self._kept.get(meas.name)
        now = time.monotonic()
        if kept is not None and now - kept[0] < self._ttl_s:
            return kept[1], kept[2]
        boundary = rolled_from = None
        records = self._any_record(meas)
        first = self.rolled.first_ms(records) if records is not None else None
        if first is not None:
            rolled_from = _utc(first) - ru.HOUR
            raw = self.raw.first_ms(self.raw.any_series(meas))
            boundary = ru.raw_boundary(rolled_from, None if raw is None else _utc(raw),
                                       _NEVER)
        self._kept[meas.name] = (now, boundary, rolled_from)
        return boundary, rolled_from

    def resolution(self, measurement: str, start: datetime) -> timedelta:
        """The finest window a query from ``start`` can ask for: zero (any window) where raw
        data reaches back to ``start``, else an hour (the rollup records)."""
        boundary, _ = self.coverage(catalog.measurement(measurement))
        return ru.HOUR if boundary is not None and start < boundary else timedelta(0)

    def time_bounds(self, measurement: str) -> tuple[datetime, datetime] | None:
        """The raw data's first and last sample times, the first reaching back to where the
        rollups begin (as the embedded store's)."""
        meas = catalog.measurement(measurement)
        bounds = self.raw.time_bounds(measurement)
        boundary, rolled_from = self.coverage(meas)
        if boundary is None or rolled_from is None:
            return bounds
        if bounds is None:
            records = self._any_record(meas)
            assert records is not None  # rollups were found with it
            last = self.rolled.last_ms(records, (rolled_from + ru.HOUR - _EPOCH) // _MS)
            return rolled_from, _utc(last) if last is not None else rolled_from
        return min(bounds[0], rolled_from), bounds[1]

    def query(self, q: Query) -> pd.DataFrame:
        meas = check_query(q, self.source)
        boundary, _ = self.coverage(meas)
        label_matchers = matchers(meas, q.where, self.source)
        histogram = q.agg is Aggregate.QUANTILE and _histogram(meas, q.fields, self.source)
        if label_matchers is None:
            return self.raw.query(q)  # nothing matches: the empty answer
        if boundary is not None and q.start >= boundary:
            boundary = None  # raw data answers it all
        if boundary is None and not histogram:
            return self.raw.query(q)
        # the boundary is a whole hour: only the start and the window can miss one
        if boundary is not None and (q.start != ru.floor_time(q.start, ru.HOUR) or (
                q.window is not None and q.window % ru.HOUR)):
            raise ru.unaligned(self.source, meas.name, q, boundary, ru.HOUR)
        if histogram:
            return self._quantiles(q, meas, boundary, label_matchers)
        assert boundary is not None
        states = AGG_STATES.get(q.agg)
        for f in q.fields:
            ops = rolled_ops(meas.metric(f))
            if states is None or any(s not in ops for s in states):
                hint = (f"; the RTT's quantiles are read from its histogram, "
                        f"{_HISTOGRAMS[meas.name]!r}" if meas.name in _HISTOGRAMS else "")
                raise NotRolledUp(
                    f"{self.source}: {meas.name!r} before {boundary:%Y-%m-%d %H:%M} UTC is "
                    f"kept as hourly rollups, which cannot answer the {q.agg.value} of {f!r} "
                    f"(its rollups keep: {', '.join(ops) or 'nothing'}){hint}")
        assert states is not None
        parts = self._parts(
            q, boundary,
            self._builders(q, meas, states,
                           lambda m, s: selector(record_name(m, s, "1h"), label_matchers),
                           partial(_rolled_expression, api=self.rolled)),
            self._builders(q, meas, states, lambda m, s: selector(m.prometheus, label_matchers),
                           partial(expression, dialect=self.raw.dialect)))
        return finish_states(q, states, parts)

    def _parts(self, q: Query, boundary: datetime | None,
               rolled: Mapping[str, Callable[[int], str]],
               raw: Mapping[str, Callable[[int], str]]) -> list[pd.DataFrame]:
        """The answers of ``rolled``'s expressions over the records before ``boundary``
        (None: nowhere) and of ``raw``'s over the raw data after it, on ``q``'s windows."""
        parts = []
        spans: Iterator = iter([(q.start, q.end, q.window, None)])
        if boundary is not None:
            rolled_q = replace(q, end=min(boundary, ru.ceil_time(q.end, ru.HOUR)))
            plans = [replace(ev, first_ms=ev.first_ms + 1)  # a record at t covers (t - 1h, t]
                     for ev in evaluations(rolled_q, left_open=self.rolled.left_open,
                                           source=self.source)]
            parts.append(self.rolled.answer(rolled_q, rolled, plans))
            spans = raw_spans(q, boundary)
        for lo, hi, window, stamp in spans:
            raw_q = replace(q, start=lo, end=hi, window=window)
            part = self.raw.answer(raw_q, raw, list(evaluations(
                raw_q, left_open=self.raw.left_open, source=self.source)))
            if stamp is not None:
                part[TIME] = pd.Series([stamp] * len(part), dtype="datetime64[us, UTC]")
            parts.append(part)
        return parts

    def _quantiles(self, q: Query, meas: catalog.Measurement, boundary: datetime | None,
                   label_matchers: list[str]) -> pd.DataFrame:
        """The RTT's quantile from its histogram: per window, group and ``le``, the buckets'
        increases (records before ``boundary``, raw counters after it) summed, then
        interpolated within the bucket that holds the rank (`bucket_quantile`)."""
        per_le = replace(q, group_by=(*q.group_by, "le"))
        by = f" by ({', '.join(per_le.group_by)})"
        rolled, raw = {}, {}
        for f in q.fields:
            metric = meas.metric(f)
            record = selector(record_name(metric, "increase", "1h"), label_matchers)
            rolled[f] = partial(summed, per_le, record)
            raw[f] = partial(_increase, by, selector(metric.prometheus, label_matchers))
        rows = pd.concat([p for p in self._parts(per_le, boundary, rolled, raw) if len(p)]
                         or [self.raw.answer(per_le, raw, [])], ignore_index=True)
        keys = [TIME, *q.group_by]
        out: pd.DataFrame | None = None
        for f in q.fields:
            counts = rows.groupby([*keys, "le"])[f].sum(min_count=1).dropna().reset_index()
            values = [(*(k if isinstance(k, tuple) else (k,)),
                       bucket_quantile(q.quantile, g["le"], g[f]))
                      for k, g in counts.groupby(keys, sort=True)]
            frame = pd.DataFrame(values, columns=[*keys, f])
            out = frame if out is None else out.merge(frame, on=keys, how="outer")
        assert out is not None
        out = out[out[list(q.fields)].notna().any(axis=1)].sort_values(keys, ignore_index=True)
        out[TIME] = pd.to_datetime(out[TIME], utc=True).dt.as_unit("us")
        return out.astype({**{g: "str" for g in q.group_by}, **{f: "float64" for f in q.fields}})

    @staticmethod
    def _builders(q: Query, meas: catalog.Measurement, states: tuple[str, ...],
                  series: Callable[[catalog.Metric, str], str],
                  build: Callable[..., str]) -> dict[str, Callable[[int], str]]:
        """``field:state`` -> the expression (given a range) of that state per group."""
        return {f"{f}:{s}": partial(build, replace(q, agg=STATE_AGG[s]),
                                    series(meas.metric(f), s))
                for f in q.fields for s in states}


class PromAPIReads:
    """The read half of a `Store` whose ``_api`` is a `PromAPI`: VictoriaMetrics and
    Prometheus answer `query`, `series`, `time_bounds` and `resolution` the same way, a
    query reaching before the raw data from the rollup records (``_rollups``:
    `computewatch.store._promrollups`)."""

    _api: PromAPI
    _rollups: PromRollups

    def _open_rollups(self, rollups_base: str | None) -> None:
        """Read the rollup records from ``rollups_base`` (``rollups=``), else from ``_api``."""
        api = self._api
        rolled = api if rollups_base is None else PromAPI(
            rollups_base, dialect=api.dialect, source=f"{api.source} (rollups {rollups_base})",
            left_open=api._left_open, params=api.params, timeout_s=api.timeout_s)
        self._rollups = PromRollups(api, rolled)

    def query(self, query: Query) -> pd.DataFrame:
        return self._rollups.query(query)

    def resolution(self, measurement: str, start: datetime) -> timedelta:
        return self._rollups.resolution(measurement, start)

    def series(self, measurement: str,
               where: Mapping[str, str | Sequence[str]] | None = None) -> pd.DataFrame:
        return self._rollups.series(measurement, where)

    def time_bounds(self, measurement: str) -> tuple[datetime, datetime] | None:
        return self._rollups.time_bounds(measurement)

    def close(self) -> None:
        self._api.close()
        if self._rollups.rolled is not self._api:
            self._rollups.rolled.close()

    def __enter__(self) -> PromAPIReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
