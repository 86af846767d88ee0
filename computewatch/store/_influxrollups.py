"""Hourly and daily rollups in InfluxDB, computed by computewatch and read back by queries.

InfluxDB 2 could roll up through its own tasks (Flux), but no InfluxDB 2 server can run
here to test one, so the rollups are "the same rules" as the embedded store's: `refresh`
(``computewatch rollup``, once or ``--every``) reads the raw hours closed since the last
run, computes per series and hour the states of `computewatch.store._rollups` in pandas
(`computewatch.store._staterows`) and writes them as line protocol:

- ``<measurement>_rollup_1h`` / ``_1d``: tags the series' labels, fields ``<field>:<state>``
  (``n``, ``sum``, ``min``, ``max``, ``last``, ``last_time``: microseconds since the epoch),
  stamped with the hour's (day's) start;
- ``<measurement>_sketch_1h`` / ``_1d`` for the latency fields
  (`computewatch.store._rollups.sketched`): fields ``<field>:<k>``, the samples in sketch
  bucket ``k``.

They go to the store's bucket, or to the one ``rollups=NAME`` names (a bucket with a longer
retention than the raw one). Where a run starts: the last rolled hour (the hourly rollup
measurement's last time) less `LATE`, so samples written late into the last hours are
rolled again; the first run starts at the raw data's first hour. Raw hours are read `BATCH`
at a time; a UTC day is rolled from its hours once it is over. A rerun writes the same
points again (InfluxDB keeps one value per series, field and time): idempotent.

Reads (`query`) answer a range from raw data where raw data exists and from the rollup rows
before it, with the embedded store's boundary (`computewatch.store._rollups.raw_boundary`):
state rows merged per window and group, then with the raw part's states by the
VictoriaMetrics/Prometheus reader's `computewatch.store._promrollups.finish_states`. Means,
sums, counts, minima, maxima and last values are exact (up to summation order); a quantile
of a sketched field is read from the sketches summed per window and group, within 1% of the
raw ``quantile_cont``; where a window straddles the boundary its raw samples are bucketed
into the sketch as the embedded store does (windows wholly after the boundary are raw
Flux quantiles). InfluxDB 3 has none of this: `InfluxDBStore` refuses to roll up there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa

from computewatch import catalog
from computewatch.lineprotocol import Writer
from computewatch.samples import TIME
from computewatch.store import _rollups as ru
from computewatch.store._batches import post_table
from computewatch.store._flux import flux_rows, flux_string
from computewatch.store._promrollups import (
    AGG_STATES,
    COVERAGE_TTL_S,
    STATE_AGG,
    finish_states,
    raw_spans,
)
from computewatch.store._protocol import Aggregate, Query, StoreError
from computewatch.store._staterows import (
    FIELD,
    VALUE,
    K,
    hour_sketches,
    hour_states,
    merge_sketches,
    merge_states,
    sketch_quantile,
)
from computewatch.validation import Rejections

__all__ = ["BATCH", "LATE", "InfluxRollups", "rollup_measurement", "sketch_measurement"]

LATE = timedelta(hours=2)
"""How far before the last rolled hour's end each run rolls again (late samples)."""
BATCH = timedelta(hours=6)
"""Raw hours read and rolled at a time (bounds the memory of a first run over weeks)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_NEVER = datetime.max.replace(tzinfo=UTC)

Bounds = Callable[[str, str], tuple[datetime, datetime] | None]
"""(measurement, bucket) -> its first and last time, None when it has no data."""


def rollup_measurement(measurement: str, grain: timedelta) -> str:
    return f"{measurement}_rollup_{ru.grain_name(grain)}"


def sketch_measurement(measurement: str, grain: timedelta) -> str:
    return f"{measurement}_sketch_{ru.grain_name(grain)}"


def _frame(rows: list[dict], tags: Sequence[str]) -> pd.DataFrame:
    """Flux rows (time, field, value, tags) as a long frame; absent tags as ''."""
    df = pd.DataFrame(rows, columns=["_time", "_field", "_value", *tags])
    df = df.rename(columns={"_time": TIME, "_field": FIELD, "_value": VALUE})
    df[TIME] = pd.to_datetime(df[TIME], utc=True).dt.as_unit("us")
    df[VALUE] = pd.to_numeric(df[VALUE], errors="coerce").astype("float64")
    df[FIELD] = df[FIELD].astype("str")
    for t in tags:
        df[t] = df[t].fillna("").astype("str")
    return df


def _wide(rows: pd.DataFrame, labels: Sequence[str], columns: Sequence[str],
          name: Callable[[str, str], str]) -> pa.Table:
    """Long rows as one line-protocol row per series and time: a field ``name(field,
    column)`` per field and each of ``columns``."""
    wide = rows.set_index([TIME, *labels, FIELD])[list(columns)].astype("float64")
    wide = wide.unstack(FIELD)
    wide.columns = [name(f, c) for c, f in wide.columns]
    return pa.Table.from_pandas(wide.reset_index(), preserve_index=False)


def _windows(times: pd.Series, q: Query) -> pd.Series:
    """The start of ``q``'s window each time falls in."""
    start = pd.Timestamp(q.start).tz_convert(UTC)
    if q.window is None:
        return pd.Series(start, index=times.index).dt.as_unit("us")
    width = pd.Timedelta(q.window)
    return start + ((times - start) // width) * width


class InfluxRollups:
    """The rollups of one InfluxDB 2 store; see the module docstring."""

    def __init__(self, *, source: str, bucket: str, rollups: str,
                 flux: Callable[[str], list[dict]], bounds: Bounds,
                 raw_query: Callable[[Query], pd.DataFrame], writer: Writer,
                 rejections: Rejections, ttl_s: float = COVERAGE_TTL_S) -> None:
        self.source, self.bucket, self.rollups = source, bucket, rollups
        self._flux, self._bounds, self._raw_query = flux, bounds, raw_query
        self._writer, self._rejections, self._ttl_s = writer, rejections, ttl_s
        self._kept: dict[str, tuple[float, datetime | None, datetime | None,
                                    datetime | None]] = {}

    def forget(self) -> None:
        """Drop the boundaries kept: a write or a deletion may have moved them."""
        self._kept.clear()

    # -- rolling up -----------------------------------------------------------------------
    def refresh(self, measurement: str | None = None, *, now: datetime | None = None,
                rolled_only: bool = False) -> int:
        """Roll up the raw hours closed since the last run (and the last `LATE` again), and
        the UTC days they complete; the hours rolled. ``rolled_only``: only measurements
        that have rollups already (retention's refresh)."""
        closed = ru.floor_time(now or datetime.now(UTC), ru.HOUR)
        metas = [catalog.measurement(measurement)] if measurement else catalog.measurements()
        hours = 0
        for meas in metas:
            raw = self._bounds(meas.name, self.bucket)
            rolled = self._bounds(rollup_measurement(meas.name, ru.HOUR), self.rollups)
            if raw is None or (rolled_only and rolled is None):
                continue
            first = ru.floor_time(raw[0], ru.HOUR)
            lo = first
            if rolled is not None:  # an hour at or after the raw data's start is whole
                lo = max(rolled[1] + ru.HOUR - LATE,
                         ru.ceil_time(raw[0], ru.HOUR) if rolled[1] >= first else first)
            hi = min(closed, ru.floor_time(raw[1], ru.HOUR) + ru.HOUR)
            if lo >= hi:
                continue
            for a in range(0, (hi - lo) // ru.HOUR, BATCH // ru.HOUR):
                start = lo + a * ru.HOUR
                self._roll_hours(meas, start, min(start + BATCH, hi))
            hours += (hi - lo) // ru.HOUR
            day = ru.floor_time(lo, ru.DAY)
            while day < hi and day + ru.DAY <= closed:
                self._roll_day(meas, day)
                day += ru.DAY
        self.forget()
        return hours

    def _roll_hours(self, meas: catalog.Measurement, lo: datetime, hi: datetime) -> None:
        samples = _frame(self._flux(flux_rows(self.bucket, meas.name, lo, hi, None, [],
                                              meas.labels)), meas.labels)
        samples = samples[samples[FIELD].isin(list(meas.fields))]
        self._write_states(meas, ru.HOUR, hour_states(samples, meas.labels))
        self._write_sketches(meas, ru.HOUR,
                             hour_sketches(samples, meas.labels, ru.sketched(meas)))

    def _roll_day(self, meas: catalog.Measurement, day: datetime) -> None:
        """A UTC day's rollups merged from its hourly ones (read back from InfluxDB)."""
        labels = meas.labels
        states = self._states(meas, ru.HOUR, day, day + ru.DAY, None, [])
        self._write_states(meas, ru.DAY, merge_states(states.assign(**{TIME: day}),
                                                      [TIME, *labels]))
        if ru.sketched(meas):
            sk = self._sketches(meas, ru.HOUR, day, day + ru.DAY, ru.sketched(meas), [])
            self._write_sketches(meas, ru.DAY, merge_sketches(sk.assign(**{TIME: day}),
                                                              [TIME, *labels]))

    def _write_states(self, meas: catalog.Measurement, grain: timedelta,
                      states: pd.DataFrame) -> None:
        if states.empty:
            return
        last = pd.to_datetime(states["last_time"], utc=True)
        states = states.assign(last_time=(last - _EPOCH) // _US)
        self._post(rollup_measurement(meas.name, grain),
                   _wide(states, meas.labels, ru.STATES, ru.state_column))

    def _write_sketches(self, meas: catalog.Measurement, grain: timedelta,
                        sketches: pd.DataFrame) -> None:
        if sketches.empty:
            return
        rows = sketches.assign(**{FIELD: sketches[FIELD] + ":" + sketches[K].astype(
            "int64").astype("str")})
        self._post(sketch_measurement(meas.name, grain),
                   _wide(rows, meas.labels, ["n"], lambda f, _: f))

    def _post(self, name: str, table: pa.Table) -> None:
        post_table(self._writer, name, table, self._rejections, self.source, "us")

    # -- reading rollup rows --------------------------------------------------------------
    def _states(self, meas: catalog.Measurement, grain: timedelta, lo: datetime,
                hi: datetime, fields: Sequence[str] | None, predicates: Sequence[str],
                states: Sequence[str] = ru.STATES) -> pd.DataFrame:
        """State rows of ``fields`` (None: all, with every state) per series and hour (day)
        in [lo, hi), with ``states`` (the others NaN)."""
        wanted = None if fields is None else " or ".join(
            f"r._field == {flux_string(ru.state_column(f, s))}" for f in fields
            for s in states)
        df = _frame(self._flux(flux_rows(self.rollups, rollup_measurement(meas.name, grain),
                                         lo, hi, wanted, predicates, meas.labels)), meas.labels)
        keys = [TIME, *meas.labels, FIELD]
        if df.empty:
            return df[keys].assign(
                **{s: pd.Series([], dtype="int64" if s == "n" else "float64")
                   for s in ru.STATES if s != "last_time"},
                last_time=pd.Series([], dtype="datetime64[us, UTC]"))
        split = df[FIELD].str.rsplit(":", n=1, expand=True)
        df = df.assign(**{FIELD: split[0], "_state": split[1]})
        out = df.set_index([*keys, "_state"])[VALUE].unstack("_state")
        out = out.reindex(columns=list(ru.STATES)).reset_index()
        out.columns.name = None
        out["n"] = out["n"].fillna(0).astype("int64")
        out["last_time"] = pd.to_datetime(out["last_time"].round(), unit="us", utc=True)
        return out

    def _sketches(self, meas: catalog.Measurement, grain: timedelta, lo: datetime,
                  hi: datetime, fields: Sequence[str],
                  predicates: Sequence[str]) -> pd.DataFrame:
        """Sketch rows of ``fields`` per series and hour (day) in [lo, hi)."""
        wanted = " or ".join(f"r._field =~ /^{f}:/" for f in fields)
        df = _frame(self._flux(flux_rows(self.rollups, sketch_measurement(meas.name, grain),
                                         lo, hi, wanted, predicates, meas.labels)), meas.labels)
        split = df[FIELD].str.rsplit(":", n=1, expand=True) if len(df) else None
        return pd.DataFrame({
            **{c: df[c] for c in [TIME, *meas.labels]},
            FIELD: split[0] if split is not None else pd.Series([], dtype="str"),
            K: split[1].astype("int64") if split is not None else pd.Series([], dtype="int64"),
            "n": df[VALUE].fillna(0).astype("int64")})

    # -- where rollups answer -------------------------------------------------------------
    def coverage(self, meas: catalog.Measurement
                 ) -> tuple[datetime | None, datetime | None, datetime | None]:
        """(boundary, rolled_from, rolled_last): where raw data takes over from rollups
        (None: raw data answers every query) and the first and last hour rolled."""
        kept = self._kept.get(meas.name)
        now = time.monotonic()
        if kept is not None and now - kept[0] < self._ttl_s:
            return kept[1:]
        rolled = self._bounds(rollup_measurement(meas.name, ru.HOUR), self.rollups)
        boundary = None
        if rolled is not None:
            raw = self._bounds(meas.name, self.bucket)
            boundary = ru.raw_boundary(rolled[0], None if raw is None else raw[0], _NEVER)
        first, last = rolled if rolled is not None else (None, None)
        self._kept[meas.name] = (now, boundary, first, last)
        return boundary, first, last

    def resolution(self, measurement: str, start: datetime) -> timedelta:
        """An hour where ``start`` is before the raw data and rollups answer, else zero."""
        boundary, _, _ = self.coverage(catalog.measurement(measurement))
        return ru.HOUR if boundary is not None and start < boundary else timedelta(0)

    def time_bounds(self, meas: catalog.Measurement,
                    raw: tuple[datetime, datetime] | None
                    ) -> tuple[datetime, datetime] | None:
        """The raw data's bounds, the first reaching back to where rollups begin."""
        boundary, first, last = self.coverage(meas)
        if boundary is None or first is None or last is None:
            return raw
        return (first, last) if raw is None else (min(raw[0], first), raw[1])

    # -- queries --------------------------------------------------------------------------
    def query(self, q: Query, meas: catalog.Measurement,
              predicates: Sequence[str]) -> pd.DataFrame | None:
        """``q`` answered from rollups before the raw data and raw data after it (columns
        as the raw reader's, before its `_finish`), or None where raw data answers it all."""
        boundary, _, _ = self.coverage(meas)
        if boundary is None or q.start >= boundary:
            return None
        if q.start != ru.floor_time(q.start, ru.HOUR) or (
                q.window is not None and q.window % ru.HOUR):
            raise ru.unaligned(self.source, meas.name, q, boundary, ru.HOUR)
        if q.agg is Aggregate.QUANTILE:
            return self._quantiles(q, meas, boundary, predicates)
        keys = [TIME, *q.group_by]
        states = AGG_STATES[q.agg]
        stored = [s for s in ru.STATES if s in states or (s == "n" and "count" in states)
                  or (s == "last_time" and "last" in states)]
        rows = self._rolled(q, meas, boundary, predicates,
                            partial(self._states, states=stored), q.fields)
        merged = merge_states(rows.assign(**{TIME: _windows(rows[TIME], q)}), keys)
        parts = [self._state_columns(merged, q, states)]
        for lo, hi, window, stamp in raw_spans(q, boundary):
            part = None
            for s in states:
                got = self._raw_query(replace(q, start=lo, end=hi, window=window,
                                              agg=STATE_AGG[s]))
                got = got.rename(columns={f: ru.state_column(f, s) for f in q.fields})
                part = got if part is None else part.merge(got, on=keys, how="outer")
            assert part is not None
            if stamp is not None:
                part[TIME] = pd.Series([stamp] * len(part), dtype="datetime64[us, UTC]")
            parts.append(part)
        return finish_states(q, states, parts)

    def _rolled(self, q: Query, meas: catalog.Measurement, boundary: datetime,
                predicates: Sequence[str], read: Callable[..., pd.DataFrame],
                fields: Sequence[str]) -> pd.DataFrame:
        """Rollup rows of ``q`` before ``boundary``: daily ones where ``q``'s start and
        window are whole days, hourly ones for the rest."""
        end = min(boundary, ru.ceil_time(q.end, ru.HOUR))
        start, parts = q.start, []
        days_end = ru.floor_time(end, ru.DAY)
        if start == ru.floor_time(start, ru.DAY) and days_end > start and (
                q.window is None or not q.window % ru.DAY):
            parts.append(read(meas, ru.DAY, start, days_end, fields, predicates))
            start = days_end
        if end > start:
            parts.append(read(meas, ru.HOUR, start, end, fields, predicates))
        return pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)

    @staticmethod
    def _state_columns(merged: pd.DataFrame, q: Query, states: Sequence[str]) -> pd.DataFrame:
        """Merged state rows as `finish_states` takes them: a column ``field:state`` each
        (``count`` is ``n``)."""
        keys = [TIME, *q.group_by]
        out = merged[keys].drop_duplicates().reset_index(drop=True)
        for f in q.fields:
            one = merged[merged[FIELD] == f]
            cols = {("n" if s == "count" else s): ru.state_column(f, s) for s in states}
            out = out.merge(one[[*keys, *cols]].rename(columns=cols), on=keys, how="left")
        if out.empty:
            out[TIME] = pd.Series([], dtype="datetime64[us, UTC]")
        return out

    def _quantiles(self, q: Query, meas: catalog.Measurement, boundary: datetime,
                   predicates: Sequence[str]) -> pd.DataFrame:
        """Sketches summed per window and group (a straddling window's raw samples
        bucketed into them), read as quantiles; windows after the boundary raw."""
        missing = [f for f in q.fields if f not in ru.sketched(meas)]
        if missing:
            raise StoreError(f"{self.source}: {meas.name!r} before {boundary:%Y-%m-%d %H:%M} "
                             f"UTC keeps no sketch of {', '.join(missing)} for quantiles "
                             f"(sketched: {', '.join(ru.sketched(meas)) or 'none'})")
        keys = [TIME, *q.group_by]
        rows = [self._rolled(q, meas, boundary, predicates, self._sketches, q.fields)]
        exact = []
        for lo, hi, window, stamp in raw_spans(q, boundary):
            if stamp is None:
                exact.append(self._raw_query(replace(q, start=lo, end=hi, window=window)))
                continue
            wanted = " or ".join(f"r._field == {flux_string(f)}" for f in q.fields)
            samples = _frame(self._flux(flux_rows(self.bucket, meas.name, lo, hi, wanted,
                                                  predicates, meas.labels)), meas.labels)
            rows.append(hour_sketches(samples.assign(**{TIME: stamp}), meas.labels, q.fields))
        sketches = pd.concat([r for r in rows if len(r)] or rows[:1], ignore_index=True)
        sketches[TIME] = _windows(pd.to_datetime(sketches[TIME], utc=True), q)
        got = sketch_quantile(sketches, keys, float(q.quantile))
        wide = got.set_index([*keys, FIELD])[VALUE].unstack(FIELD) if len(got) else None
        frames = [] if wide is None else [wide.reset_index()]
        frames += [e for e in exact if len(e)]
        if not frames:
            return pd.DataFrame(columns=[*keys, *q.fields])
        out = pd.concat(frames, ignore_index=True)
        out.columns.name = None
        return out.assign(**{f: np.nan for f in q.fields if f not in out.columns})
