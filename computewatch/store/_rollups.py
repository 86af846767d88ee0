"""Hourly and daily rollups of the embedded store, and the SQL that answers queries from them.

Why: regulators read months and years, while raw 1-minute data is kept only for a retention
period. A rollup row holds, per series and hour (``rollup_1h_m``) or day (``rollup_1d_m``),
every field's *mergeable state*: ``n`` (non-null samples), ``sum``, ``min``, ``max``,
``last``/``last_time``. Means, sums, counts, minima, maxima and last values of any group
over whole buckets follow exactly from these (floating point summation order aside), so
utilization, idle accelerator-hours, meter readings for PUE (a counter's last and highest
reading per hour: `computewatch.pue` undoes resets on them as on raw buckets) and probe
counts for tier compliance are the same numbers from rollups as from raw data.

Percentiles cannot be merged from per-bucket percentiles. For the latency fields
(`sketched`) each bucket keeps a log-bucketed histogram (``sketch_1h_m``: field, bucket
index, count), DDSketch's mapping: a positive value ``x`` falls in bucket
``k = ceil(log_gamma(x))`` and is read back as ``2 gamma^k / (gamma + 1)``, at most
`RELATIVE_ERROR` (1%) from ``x``; non-positive values are counted as 0. A quantile over
many buckets sums their histograms and interpolates between the ranks as DuckDB's
``quantile_cont`` does, so it is within 1% of the raw ``quantile_cont`` of the same samples.

Maintenance: a write records the span it touched (``pending_rollups``, two timestamps per
batch, so ingest pays almost nothing); `refresh` recomputes the touched hours from raw data
and the days from the hours, so late and out-of-order data are rolled up exactly. It runs
before retention deletes raw data, before any query that reads rollups, and on a schedule
(`DuckDBStore.refresh_rollups`), which keeps each run small. The embedded store also
merges the days into UTC calendar months (`MONTH`, `computewatch.store._months`) on the same
path, for queries of whole months in one window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np

from computewatch import catalog
from computewatch.store._protocol import Query, StoreError

__all__ = ["DAY", "GAMMA", "GRAINS", "HOUR", "MONTH", "RELATIVE_ERROR", "SKETCH", "STATES",
           "ZERO_BUCKET", "bucket_of", "bucket_sql", "ceil_time", "coalesce", "final_agg",
           "floor_time", "grain_name", "hourly_select", "merge_select", "merge_states", "one_state",
           "raw_boundary", "raw_sketch_rows", "raw_states", "rolled_states", "rollup_columns",
           "rollup_table", "sketch_from_raw", "sketch_rows", "sketch_table", "sketched",
           "state_column", "unaligned", "value_of", "value_sql"]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
GRAINS = (DAY, HOUR)
"""The rollup grains, coarsest first (a query uses the coarsest its range aligns to)."""
MONTH = "month"
"""The UTC calendar month: a grain derived from the days (`computewatch.store._months`), not
one written or rolled from raw data; named, as a month is no fixed duration."""

RELATIVE_ERROR = 0.01
"""The sketch's bound: a quantile from rollups is within 1% of the raw ``quantile_cont``."""
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(GAMMA)
ZERO_BUCKET = -(2 ** 31)
"""Where non-positive values go (read back as 0); below every positive value's bucket."""

STATES = ("n", "sum", "min", "max", "last", "last_time")
"""The state columns every rolled-up field has."""

SKETCH = "sketch"
"""The state a rollup frame gives a sketched field's samples in (``field:sketch``: a list of
``{value, n}`` per row), kept in the sketch table rather than a column."""

_SKETCHED = {"link_latency": ("rtt_p50_seconds", "rtt_p95_seconds", "rtt_p99_seconds")}


def floor_time(t: datetime, grain: timedelta) -> datetime:
    """``t`` down to a multiple of ``grain`` since the epoch (naive UTC or aware alike)."""
    epoch = datetime(1970, 1, 1, tzinfo=t.tzinfo)
    return t - (t - epoch) % grain


def ceil_time(t: datetime, grain: timedelta) -> datetime:
    down = floor_time(t, grain)
    return down if down == t else down + grain


def coalesce(ranges: Sequence[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching [lo, hi) ranges merged."""
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def raw_boundary(rolled_from: datetime | None, raw_from: datetime | None,
                 never: datetime) -> datetime | None:
    """Where raw data takes over from rollups: the first whole hour of raw data, or None
    when rollups hold nothing older than the raw data (raw data answers every query);
    ``never`` (the latest time) where rollups exist and raw data does not. Every store with
    rollups draws the line here, so they answer a query from the same data the same way."""
    if rolled_from is None:
        return None
    if raw_from is not None and rolled_from >= floor_time(raw_from, HOUR):
        return None
    return never if raw_from is None else ceil_time(raw_from, HOUR)


def unaligned(source: str, measurement: str, q: Query, edge: datetime,
              grain: timedelta) -> StoreError:
    """The refusal of a query that reaches before ``edge``, where data is kept as rollups of
    ``grain``, without whole buckets of it."""
    kept, unit = ("daily", "whole days") if grain == DAY else ("hourly", "whole hours")
    return StoreError(
        f"{source}: {measurement!r} before {edge:%Y-%m-%d %H:%M} UTC is kept as "
        f"{kept} rollups: a query reaching before it needs its start, its end (if "
        f"before that time) and its window in {unit} (got start "
        f"{q.start.isoformat()}, end {q.end.isoformat()}, window {q.window})")


def rollup_table(measurement: str, grain: timedelta | str) -> str:
    return f"rollup_{grain_name(grain)}_{measurement}"


def sketch_table(measurement: str, grain: timedelta | str) -> str:
    return f"sketch_{grain_name(grain)}_{measurement}"


def grain_name(grain: timedelta | str) -> str:
    return {HOUR: "1h", DAY: "1d", MONTH: "1mo"}[grain]


def state_column(field: str, state: str) -> str:
    """The rollup column of one field's state: ``field:state``."""
    return f"{field}:{state}"


def sketched(meas: catalog.Measurement) -> tuple[str, ...]:
    """The fields whose quantiles rollups answer: the latency percentiles the summary and
    the pipelines ask quantiles of (a sketch costs rows: keep it to those)."""
    return tuple(f for f in _SKETCHED.get(meas.name, ()) if f in meas.fields)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def bucket_sql(value: str) -> str:
    """SQL of the sketch bucket of ``value`` (NULL stays NULL)."""
    return (f"CASE WHEN {value} > 0 THEN CAST(ceil(ln({value}) / {_LOG_GAMMA!r}) AS INTEGER) "
            f"WHEN {value} IS NOT NULL THEN {ZERO_BUCKET} END")


def bucket_of(values: np.ndarray) -> np.ndarray:
    """`bucket_sql` in numpy, for values bucketed before they reach DuckDB (no NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.ceil(np.log(values) / _LOG_GAMMA)
    return np.where(values > 0, k, ZERO_BUCKET).astype(np.int64)


def value_of(k: np.ndarray) -> np.ndarray:
    """`value_sql` in numpy: the value each sketch bucket ``k`` is read back as."""
    k = np.asarray(k, dtype=np.int64)
    with np.errstate(over="ignore"):
        v = 2 * np.exp(k * _LOG_GAMMA) / (GAMMA + 1)
    return np.where(k == ZERO_BUCKET, 0.0, v)


def value_sql(bucket: str) -> str:
    """SQL of the value a sketch bucket is read back as."""
    return (f"CASE WHEN {bucket} = {ZERO_BUCKET} THEN 0.0 "
            f"ELSE 2 * exp({bucket} * {_LOG_GAMMA!r}) / {GAMMA + 1!r} END")


def rollup_columns(fields: Sequence[str]) -> list[tuple[str, str]]:
    """(column, SQL type) of a rollup table's state columns for ``fields``."""
    out = []
    for f in fields:
        for s in STATES:
            kind = ("BIGINT" if s == "n" else "TIMESTAMP" if s.endswith("_time") else "DOUBLE")
            out.append((state_column(f, s), kind))
    return out


def hourly_select(fields: Sequence[str], samples: str) -> str:
    """SELECT of hourly state rows from raw samples in ``[?, ?)`` (hour-aligned bounds).
    ``samples`` here and below is SQL of a relation: the store's live table and its sealed
    files (`computewatch.store._sealed`).
    ``arg_max`` skips NULL values, so ``last`` is the last reading the field had."""
    aggs = []
    for f in fields:
        c = _q(f)
        aggs += [f"count({c}) AS {_q(state_column(f, 'n'))}",
                 f"sum({c}) AS {_q(state_column(f, 'sum'))}",
                 f"min({c}) AS {_q(state_column(f, 'min'))}",
                 f"max({c}) AS {_q(state_column(f, 'max'))}",
                 f"arg_max({c}, time) AS {_q(state_column(f, 'last'))}",
                 f"max(CASE WHEN {c} IS NOT NULL THEN time END) "
                 f"AS {_q(state_column(f, 'last_time'))}"]
    return (f"SELECT time_bucket(INTERVAL 1 HOUR, time) AS time, series_id, {', '.join(aggs)} "
            f"FROM {samples} WHERE time >= ? AND time < ? GROUP BY ALL")


_MERGE = {"n": "sum({c})", "sum": "sum({c})", "min": "min({c})", "max": "max({c})",
          "last": "arg_max({c}, {t})", "last_time": "max({c})"}


def merge_states(field: str, states: Sequence[str]) -> str:
    """The aggregates that merge state rows' ``states`` of ``field`` (from a source aliased
    ``t``) into the same state columns: per series and window, before labels are joined."""
    def c(s: str) -> str:
        return "t." + _q(state_column(field, s))
    return ", ".join(f"{_MERGE[s].format(c=c(s), t=c('last_time'))} AS "
                     f"{_q(state_column(field, s))}" for s in states)


_ONE = {"n": "CAST({c} AS HUGEINT)", "sum": "{c}", "min": "{c}", "max": "{c}",
        "last": "CASE WHEN {t} IS NOT NULL THEN {c} END", "last_time": "{c}"}


def one_state(field: str, states: Sequence[str]) -> str:
    """`merge_states` of a series' only row in its window (a month row read as the
    month's one window): the same columns, of the same types, with no aggregate (the
    month's 387,000 rows cost their GROUP BY 64 ms CPU against 12 ms without it)."""
    def c(s: str) -> str:
        return "t." + _q(state_column(field, s))
    return ", ".join(f"{_ONE[s].format(c=c(s), t=c('last_time'))} AS "
                     f"{_q(state_column(field, s))}" for s in states)


def merge_select(fields: Sequence[str], source: str, bucket: str) -> str:
    """SELECT that merges state rows of ``source`` into coarser buckets (``bucket`` SQL
    for the new bucket start)."""
    aggs = []
    for f in fields:
        def c(s: str, f: str = f) -> str:
            return _q(state_column(f, s))
        aggs += [f"sum({c('n')}) AS {c('n')}", f"sum({c('sum')}) AS {c('sum')}",
                 f"min({c('min')}) AS {c('min')}", f"max({c('max')}) AS {c('max')}",
                 f"arg_max({c('last')}, {c('last_time')}) AS {c('last')}",
                 f"max({c('last_time')}) AS {c('last_time')}"]
    return f"SELECT {bucket} AS time, series_id, {', '.join(aggs)} FROM {source} GROUP BY ALL"


def raw_states(meas: catalog.Measurement, fields: Sequence[str], samples: str,
               present: set[str]) -> str:
    """SELECT of raw samples shaped as state rows (one per sample) in ``[?, ?)``, so raw
    data and rollups can be merged by the same aggregate."""
    cols = []
    for f in fields:
        c = _q(f) if f in present else "CAST(NULL AS DOUBLE)"
        cols += [f"CAST({c} IS NOT NULL AS BIGINT) AS {_q(state_column(f, 'n'))}",
                 *(f"{c} AS {_q(state_column(f, s))}" for s in ("sum", "min", "max", "last")),
                 f"CASE WHEN {c} IS NOT NULL THEN time END AS {_q(state_column(f, 'last_time'))}"]
    return (f"SELECT time, series_id, {', '.join(cols)} FROM {samples} "
            f"WHERE time >= ? AND time < ?")


def rolled_states(fields: Sequence[str], table: str, present: set[str]) -> str:
    """SELECT of a rollup table's state rows in ``[?, ?)`` (the columns `raw_states` has);
    ``present`` names the fields the table has columns for."""
    cols = []
    for f in fields:
        for s in ("n", "sum", "min", "max", "last", "last_time"):
            name = _q(state_column(f, s))
            null = "TIMESTAMP" if s == "last_time" else "BIGINT" if s == "n" else "DOUBLE"
            cols.append(name if f in present else f"CAST(NULL AS {null}) AS {name}")
    return (f"SELECT time, series_id, {', '.join(cols)} FROM {_q(table)} "
            f"WHERE time >= ? AND time < ?")


def final_agg(agg: str, field: str) -> str:
    """The aggregate over state rows that finishes ``agg`` (a `Aggregate` value) of ``field``."""
    def c(s: str) -> str:
        return "t." + _q(state_column(field, s))
    return {
        "mean": f"sum({c('sum')}) / nullif(sum({c('n')}), 0)",
        "sum": f"sum({c('sum')})",
        "count": f"CAST(coalesce(sum({c('n')}), 0) AS BIGINT)",
        "min": f"min({c('min')})",
        "max": f"max({c('max')})",
        "last": f"arg_max({c('last')}, {c('last_time')}) FILTER (WHERE {c('last')} IS NOT NULL)",
    }[agg]


def sketch_from_raw(field: str, samples: str) -> str:
    """SELECT of hourly sketch rows of ``field`` from raw samples in ``[?, ?)``."""
    c = _q(field)
    return (f"SELECT date_trunc('hour', time) AS time, series_id, '{field}' AS field, "
            f"{bucket_sql(c)} AS k, count(*) AS n FROM {samples} "
            f"WHERE time >= ? AND time < ? AND {c} IS NOT NULL GROUP BY ALL")


def sketch_rows(field: str, table: str) -> str:
    """SELECT of a sketch table's (time, series_id, k, n) rows of ``field`` in ``[?, ?)``."""
    return (f"SELECT time, series_id, k, n FROM {_q(table)} "
            f"WHERE field = '{field}' AND time >= ? AND time < ?")


def raw_sketch_rows(field: str, samples: str) -> str:
    """Raw samples of ``field`` in ``[?, ?)`` as sketch rows of one count each."""
    c = _q(field)
    return (f"SELECT time, series_id, {bucket_sql(c)} AS k, CAST(1 AS BIGINT) AS n "
            f"FROM {samples} WHERE time >= ? AND time < ? AND {c} IS NOT NULL")
