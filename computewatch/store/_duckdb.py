"""The embedded default store: one DuckDB file, no server.

Layout per measurement ``m``: ``series_m`` holds one row per label set (``series_id`` plus one
VARCHAR column per catalogued label) and ``samples_m`` holds ``time`` (TIMESTAMP, UTC),
``series_id`` and one DOUBLE column per catalogued field. Splitting labels out keeps the
sample table narrow and lets DuckDB's columnar compression work on numbers only, the way a
TSDB keeps a series index apart from its chunks.

The series id is DuckDB's 64-bit hash of the label values, computed in SQL during the
insert, so writing needs no join and no Python loop. A missing label is stored as the empty
string (as in Prometheus, an empty label equals an absent one). Every aggregate runs in SQL.

Each write lands sorted by series then time, so a series' samples sit together: its constant
fields (memory totals, health) and its id compress to runs, and DuckDB's ALP packs the decimal
values of one device in narrower ranges. The order comes from numpy on the labels' dictionary
indices, and only the distinct label sets are hashed, so sorting costs less than hashing every
row did. The demo's day: 18.1 bytes per accelerator sample (734 MB) against 27.0 (1,098 MB)
unsorted (``python -m bench storage``; the alternatives measured are listed in
bench/bench_storage.py).

Retention: `DuckDBStore.expire` deletes raw samples past their period and rollup rows past
theirs, then checkpoints; DuckDB reuses the freed blocks, and ``compact`` rewrites the file.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from computewatch import catalog
from computewatch.errors import StoreURLError
from computewatch.samples import TIME
from computewatch.store._protocol import (
    Aggregate,
    Query,
    StoreError,
    WriteResult,
    check_query,
    check_where,
)
from computewatch.validation import Rejections, validate_frame

__all__ = ["RAW_RETENTION", "ROLLUP_PREFIXES", "DuckDBStore", "Expiry"]

log = logging.getLogger(__name__)

RAW_RETENTION = timedelta(days=35)
"""Raw samples kept by default: a month and its late corrections; rollups keep the years."""
ROLLUP_PREFIXES = ("rollup_", "sketch_")
"""Tables named ``<prefix><grain>_<measurement>`` hold rollups: `DuckDBStore.expire` keeps
them (and the series they refer to) past the raw data's retention."""


@dataclass(frozen=True, slots=True)
class Expiry:
    """What `DuckDBStore.expire` did. ``used_bytes_*`` count the file's blocks in use: DuckDB
    reuses freed blocks for the next writes, so the file stops growing; ``compact`` rewrites
    the file so that it shrinks to ``file_bytes``."""

    raw_cutoff: datetime
    raw_rows: int
    rollup_cutoff: datetime | None
    rollup_rows: int
    used_bytes_before: int
    used_bytes_after: int
    file_bytes: int

def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _naive_utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"time {t.isoformat()} has no timezone")
    return t.astimezone(UTC).replace(tzinfo=None)


def _normalize(table: pa.Table, meas: catalog.Measurement) -> pa.Table:
    """Naive-UTC timestamps, string labels with '' for missing, float fields."""
    t = table.column(TIME)
    if not pa.types.is_timestamp(t.type):
        raise StoreError(f"frame for {meas.name!r}: column {TIME!r} is {t.type}, not a timestamp")
    if t.type.tz is not None:  # Arrow keeps UTC instants; dropping the zone is free
        table = table.set_column(table.schema.get_field_index(TIME), TIME,
                                 t.cast(pa.timestamp(t.type.unit)))
    for lab in meas.labels:
        if lab not in table.column_names:
            continue
        col = table.column(lab)
        if col.null_count or not (pa.types.is_string(col.type)
                                  or pa.types.is_dictionary(col.type)):
            col = pc.fill_null(col.cast(pa.string()), "")
            table = table.set_column(table.schema.get_field_index(lab), lab, col)
    return table


def _series_order(table: pa.Table, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The row order that puts each series' samples together, in time order, and where
    each series starts in it. Series are told apart by their labels' dictionary indices
    (numpy on integers: no string is hashed per row)."""
    table = table.select([*labels, TIME]).unify_dictionaries()
    n = table.num_rows
    key = np.zeros(n, np.int64)
    span = 1
    for lab in labels:
        col = table.column(lab).combine_chunks()
        if not pa.types.is_dictionary(col.type):
            col = pc.dictionary_encode(col)
        size = max(len(col.dictionary), 1)
        if span * size >= 2**62:  # renumber the combinations seen so far, densely
            _, key = np.unique(key, return_inverse=True)
            span = int(key.max()) + 1
        key = key * size + col.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        span *= size
    times = table.column(TIME).combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
    if n and np.all(times[1:] >= times[:-1]):
        order = np.argsort(key, kind="stable")  # arrival order is time order already
    else:
        order = np.lexsort((times, key))
    ordered = key[order]
    starts = np.flatnonzero(np.concatenate(([n > 0], ordered[1:] != ordered[:-1])))
    return order, starts


class DuckDBStore:
    """`Store` backed by a DuckDB file (``duckdb:///path.duckdb``, ``duckdb:///:memory:``)."""

    def __init__(self, path: str | Path, *, rejections: Rejections | None = None,
                 threads: int | None = None, create: bool = True) -> None:
        memory = str(path) == ":memory:"
        self.path = str(path) if memory else str(Path(path).expanduser().resolve())
        self.url = self.path  # a plain path names a DuckDB store; messages show it absolute
        self.rejections = rejections or Rejections()
        if not memory:
            if not create and not Path(self.path).is_file():
                raise StoreURLError(f"{self.path}: no such store (a DuckDB file); run "
                                 f"`computewatch demo` or an agent first, or check --store")
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path)
        except duckdb.Error as exc:
            raise StoreError(f"{self.url}: cannot open: {exc}") from None
        self._threads = threads
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        self._lock = threading.Lock()
        self._fields: dict[str, set[str]] = {}

    # -- schema ---------------------------------------------------------------------------
    def _ensure(self, meas: catalog.Measurement, fields: Sequence[str] = ()) -> set[str]:
        """Create the tables on first use and add field columns as fields first arrive.

        Field columns are created lazily: a catalogued field nobody writes costs nothing,
        while an all-null DOUBLE column still costs DuckDB time on every insert.
        Returns the field columns the samples table has.
        """
        have = self._fields.get(meas.name)
        if have is None:
            labels = ", ".join(f"{_ident(lab)} VARCHAR" for lab in meas.labels)
            self._con.execute(
                f"CREATE TABLE IF NOT EXISTS {_ident('series_' + meas.name)} "
                f"(series_id UBIGINT, {labels})")
            self._con.execute(
                f"CREATE TABLE IF NOT EXISTS {_ident('samples_' + meas.name)} "
                f"(time TIMESTAMP, series_id UBIGINT)")
            series_cols = self._columns("series_" + meas.name)
            for lab in meas.labels:  # a catalogue that grew since the file was made
                if lab not in series_cols:
                    self._con.execute(f"ALTER TABLE {_ident('series_' + meas.name)} "
                                      f"ADD COLUMN {_ident(lab)} VARCHAR DEFAULT ''")
            have = self._columns("samples_" + meas.name) - {"time", "series_id"}
            self._fields[meas.name] = have
        for f in fields:
            if f not in have:
                self._con.execute(
                    f"ALTER TABLE {_ident('samples_' + meas.name)} ADD COLUMN {_ident(f)} DOUBLE")
                have.add(f)
        return have

    def _columns(self, table: str) -> set[str]:
        return {r[0] for r in self._con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
            [table]).fetchall()}

    def _has(self, measurement: str) -> bool:
        return bool(self._con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
            ["samples_" + measurement]).fetchone()[0])

    # -- write ----------------------------------------------------------------------------
    def write(self, measurement: str, frame: pa.Table | pd.DataFrame) -> WriteResult:
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(
            frame, preserve_index=False)
        before = self.rejections.total()
        table = validate_frame(measurement, table, self.rejections, f"store {self.url}")
        rejected = self.rejections.total() - before
        if table.num_rows == 0 or len(table.column_names) <= 1:
            return WriteResult(0, rejected)
        meas = catalog.measurement(measurement)
        table = _normalize(table, meas)
        labels = [lab for lab in meas.labels if lab in table.column_names]
        fields = [f for f in meas.fields if f in table.column_names]
        # The same hash input whichever labels a frame carries: absent labels are ''.
        label_exprs = [_ident(lab) if lab in labels else "''" for lab in meas.labels]
        sid = f"hash({', '.join(label_exprs)})"
        order, starts = _series_order(table, labels)
        # One row per label set, in series order: the series index sees thousands of rows,
        # and only those are hashed; each sample gets its set's id by repetition.
        label_sets = table.select(labels).take(pa.array(order[starts])) if labels \
            else pa.table({"_": [0]})
        series_t, samples_t = _ident("series_" + meas.name), _ident("samples_" + meas.name)
        series_cols = ", ".join(_ident(lab) for lab in meas.labels)
        cols = ", ".join(_ident(f) for f in fields)
        with self._lock:
            self._ensure(meas, fields)
            self._con.register("_label_sets", label_sets)
            try:
                set_ids = self._con.execute(f"SELECT {sid} FROM _label_sets").fetchnumpy()
                ids = np.repeat(next(iter(set_ids.values())).astype(np.uint64),
                                np.diff(np.append(starts, table.num_rows)))
                rows = table.select([TIME, *fields]).take(pa.array(order)) \
                    .append_column("series_id", pa.array(ids, pa.uint64()))
                self._con.register("_incoming", rows)
                self._con.execute("BEGIN")
                self._con.execute(
                    f"INSERT INTO {series_t} (series_id, {series_cols}) "
                    f"SELECT DISTINCT {sid}, {', '.join(label_exprs)} FROM _label_sets "
                    f"WHERE {sid} NOT IN (SELECT series_id FROM {series_t})")
                self._con.execute(
                    f"INSERT INTO {samples_t} (time, series_id, {cols}) "
                    f"SELECT {_ident(TIME)}, series_id, {cols} FROM _incoming")
                self._con.execute("COMMIT")
            except duckdb.Error as exc:
                self._con.execute("ROLLBACK")
                raise StoreError(f"{self.url}: write of {measurement!r} failed: {exc}") from None
            finally:
                self._con.unregister("_incoming")
                self._con.unregister("_label_sets")
        return WriteResult(table.num_rows, rejected)

    # -- read -----------------------------------------------------------------------------
    def _where(self, meas: catalog.Measurement,
               where: Mapping[str, str | Sequence[str]] | None) -> tuple[list[str], list]:
        filters = check_where(meas, where, self.url)
        if filters is None:  # a tag that accepts no value: nothing matches
            return ["FALSE"], []
        clauses, params = [], []
        for tag, values in filters:
            clauses.append(f"s.{_ident(tag)} IN ({', '.join('?' for _ in values)})")
            params.extend(values)
        return clauses, params

    def _agg_sql(self, q: Query, col: str, present: set[str]) -> str:
        c = f"t.{_ident(col)}" if col in present else "CAST(NULL AS DOUBLE)"
        match q.agg:
            case Aggregate.MEAN:
                return f"avg({c})"
            case Aggregate.MIN:
                return f"min({c})"
            case Aggregate.MAX:
                return f"max({c})"
            case Aggregate.SUM:
                return f"sum({c})"
            case Aggregate.COUNT:
                return f"count({c})"
            case Aggregate.LAST:
                return f"arg_max({c}, t.time) FILTER (WHERE {c} IS NOT NULL)"
            case Aggregate.QUANTILE:
                return f"quantile_cont({c}, {float(q.quantile)!r})"
        raise StoreError(f"unsupported aggregate {q.agg!r}")

    def query(self, q: Query) -> pd.DataFrame:
        meas = check_query(q, self.url)
        columns = [TIME, *q.group_by, *q.fields]
        if not self._has(q.measurement):
            return pd.DataFrame(columns=columns)
        with self._lock:
            present = self._ensure(meas)
            start, end = _naive_utc(q.start), _naive_utc(q.end)
            if q.window is None:
                bucket = "CAST(? AS TIMESTAMP)"
            else:
                micros = int(q.window / timedelta(microseconds=1))
                bucket = (f"time_bucket(INTERVAL ({micros}) MICROSECOND, t.time, "
                          f"CAST(? AS TIMESTAMP))")
            where, where_params = self._where(meas, q.where)
            groups = "".join(f", s.{_ident(g)} AS {_ident(g)}" for g in q.group_by)
            aggs = ", ".join(f"{self._agg_sql(q, f, present)} AS {_ident(f)}" for f in q.fields)
            join = (f"JOIN {_ident('series_' + meas.name)} s USING (series_id)"
                    if where or q.group_by else "")
            sql = (f"SELECT {bucket} AS time{groups}, {aggs} "
                   f"FROM {_ident('samples_' + meas.name)} t {join} "
                   f"WHERE t.time >= ? AND t.time < ?"
                   + "".join(f" AND {c}" for c in where)
                   + " GROUP BY ALL ORDER BY ALL")
            try:
                df = self._con.execute(sql, [start, start, end, *where_params]).df()
            except duckdb.Error as exc:
                raise StoreError(f"{self.url}: query on {meas.name!r} failed: {exc}") from None
        df[TIME] = pd.to_datetime(df[TIME]).dt.tz_localize(UTC)
        return df[columns].reset_index(drop=True)

    def series(self, measurement: str,
               where: Mapping[str, str | Sequence[str]] | None = None) -> pd.DataFrame:
        meas = catalog.measurement(measurement)
        if not self._has(measurement):
            return pd.DataFrame(columns=list(meas.labels))
        with self._lock:
            clauses, params = self._where(meas, where)
            cols = ", ".join(f"s.{_ident(lab)}" for lab in meas.labels)
            sql = (f"SELECT DISTINCT {cols} FROM {_ident('series_' + meas.name)} s"
                   + (" WHERE " + " AND ".join(clauses) if clauses else "")
                   + " ORDER BY ALL")
            return self._con.execute(sql, params).df()

    def time_bounds(self, measurement: str) -> tuple[datetime, datetime] | None:
        if not self._has(measurement):
            return None
        with self._lock:
            lo, hi = self._con.execute(
                f"SELECT min(time), max(time) FROM {_ident('samples_' + measurement)}").fetchone()
        if lo is None:
            return None
        return lo.replace(tzinfo=UTC), hi.replace(tzinfo=UTC)

    # -- housekeeping ---------------------------------------------------------------------
    def delete(self, measurement: str, start: datetime, end: datetime,
               where: Mapping[str, str | Sequence[str]] | None = None) -> int:
        """Delete the samples of ``measurement`` in [start, end) whose series match ``where``
        (a tag to a value or a list of values, as in `Query`); returns rows deleted."""
        meas = catalog.measurement(measurement)
        if not self._has(measurement):
            return 0
        with self._lock:
            clauses, params = self._where(meas, where)
            series = _ident("series_" + meas.name)
            match = (f" AND series_id IN (SELECT s.series_id FROM {series} s WHERE "
                     + " AND ".join(clauses) + ")") if clauses else ""
            try:
                deleted = self._con.execute(
                    f"DELETE FROM {_ident('samples_' + meas.name)} WHERE time >= ? AND "
                    f"time < ?{match}", [_naive_utc(start), _naive_utc(end), *params]
                ).fetchone()[0]
            except duckdb.Error as exc:
                raise StoreError(f"{self.url}: delete from {meas.name!r} failed: {exc}") \
                    from None
        return int(deleted)

    def drop_before(self, cutoff: datetime) -> int:
        deleted = 0
        with self._lock:
            for meas in catalog.measurements():
                if not self._has(meas.name):
                    continue
                samples = _ident("samples_" + meas.name)
                deleted += self._con.execute(
                    f"DELETE FROM {samples} WHERE time < ?", [_naive_utc(cutoff)]).fetchone()[0]
                self._drop_unreferenced(meas.name, self._tables())
        return deleted

    def _used_bytes(self) -> int:
        return int(self._con.execute(
            "SELECT used_blocks * block_size FROM pragma_database_size() "
            "WHERE database_name = current_database()").fetchone()[0])

    def _tables(self) -> list[str]:
        return [r[0] for r in self._con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() ORDER BY 1").fetchall()]

    def expire(self, raw: timedelta = RAW_RETENTION, rollups: timedelta | None = None, *,
               now: datetime | None = None, compact: bool = False) -> Expiry:
        """Retention: delete raw samples older than ``now - raw`` and rollup rows older than
        ``now - rollups`` (None keeps rollups for good), then checkpoint so the freed blocks
        are reused; ``compact`` also rewrites the file so it shrinks.

        A series stays in its index while a rollup refers to it, so rollups keep their
        labels after the raw samples are gone.
        """
        if raw <= timedelta(0) or (rollups is not None and rollups <= timedelta(0)):
            raise StoreError(f"{self.url}: retention must be positive, got raw={raw}, "
                             f"rollups={rollups}")
        now = now or datetime.now(UTC)
        raw_cutoff = now - raw
        rollup_cutoff = None if rollups is None else now - rollups
        with self._lock:
            before = self._used_bytes()
        # The raw samples go the way `drop_before` drops them (the rollups and the series
        # they refer to stay), then old rollup rows, then a checkpoint frees the blocks.
        raw_rows = self.drop_before(raw_cutoff)
        rollup_rows = 0
        with self._lock:
            try:
                if rollup_cutoff is not None:
                    tables = self._tables()
                    for name in tables:
                        if self._is_rollup(name):
                            rollup_rows += self._con.execute(
                                f"DELETE FROM {_ident(name)} WHERE time < ?",
                                [_naive_utc(rollup_cutoff)]).fetchone()[0]
                    for name in tables:
                        if name.startswith("series_"):
                            self._drop_unreferenced(name.removeprefix("series_"), tables)
                self._con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                raise StoreError(f"{self.url}: expiry failed: {exc}") from None
            if compact and self.path != ":memory:":
                self._compact()
            after = self._used_bytes()
        size = 0 if self.path == ":memory:" else Path(self.path).stat().st_size
        log.info("store %s: expired %d raw rows before %s and %d rollup rows; %d -> %d bytes "
                 "in use", self.url, raw_rows, raw_cutoff, rollup_rows, before, after)
        return Expiry(raw_cutoff, raw_rows, rollup_cutoff, rollup_rows, before, after, size)

    def _is_rollup(self, table: str) -> bool:
        """A rollup table: a rollup prefix and rows keyed by time and series (a bookkeeping
        table such as ``rollup_dirty`` shares the prefix, not the key)."""
        return table.startswith(ROLLUP_PREFIXES) and {"time", "series_id"} <= self._columns(table)

    def _drop_unreferenced(self, measurement: str, tables: Sequence[str]) -> None:
        """Remove the series of ``measurement`` that neither raw samples nor rollups use."""
        users = [t for t in tables if t == "samples_" + measurement or (
            self._is_rollup(t) and t.split("_", 2)[2:] == [measurement])]
        keep = " UNION ALL ".join(f"SELECT series_id FROM {_ident(t)}" for t in users)
        self._con.execute(f"DELETE FROM {_ident('series_' + measurement)}"
                          + (f" WHERE series_id NOT IN ({keep})" if keep else ""))

    def _compact(self) -> None:
        """Rewrite the database into a fresh file and swap it in: DuckDB never returns freed
        blocks to the file system, a copy holds only the live ones."""
        tmp = self.path + ".compact"
        for p in (tmp, tmp + ".wal"):
            Path(p).unlink(missing_ok=True)
        db = self._con.execute("SELECT current_database()").fetchone()[0]
        try:
            self._con.execute(f"ATTACH '{tmp}' AS _compact")
            self._con.execute(f"COPY FROM DATABASE {_ident(db)} TO _compact")
            self._con.execute("DETACH _compact")
        except duckdb.Error as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StoreError(f"{self.url}: compaction failed: {exc}") from None
        self._con.close()
        os.replace(tmp, self.path)
        self._con = duckdb.connect(self.path)
        if self._threads:
            self._con.execute(f"SET threads = {int(self._threads)}")
        self._fields.clear()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
