"""The embedded default store: one DuckDB file, no server.

Layout per measurement ``m``: ``series_m`` holds one row per label set (``series_id`` plus one
VARCHAR column per catalogued label) and ``samples_m`` holds ``time`` (TIMESTAMP, UTC),
``series_id`` and one DOUBLE column per catalogued field. Splitting labels out keeps the
sample table narrow and lets DuckDB's columnar compression work on numbers only, the way a
TSDB keeps a series index apart from its chunks.

The series id is DuckDB's 64-bit hash of the label values, computed in SQL during the
insert, so writing needs no join and no Python loop. A missing label is stored as the empty
string (as in Prometheus, an empty label equals an absent one). Every aggregate runs in SQL.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
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

__all__ = ["DuckDBStore"]

log = logging.getLogger(__name__)

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


class DuckDBStore:
    """`Store` backed by a DuckDB file (``duckdb:///path.duckdb``, ``duckdb:///:memory:``).

    ``memory_limit`` (e.g. ``"512MB"``) caps DuckDB's buffer pool, which otherwise keeps
    every block a scan read, up to 80% of RAM, in the process' resident memory; a scan of
    data beyond it reads the blocks again from the file (from the OS page cache when warm).
    """

    def __init__(self, path: str | Path, *, rejections: Rejections | None = None,
                 threads: int | None = None, create: bool = True,
                 memory_limit: str | None = None) -> None:
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
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        if memory_limit:  # DuckDB's buffer pool keeps the blocks it read, up to 80% of RAM
            if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", memory_limit.strip()):
                raise ValueError(f"memory_limit {memory_limit!r} is not a size such as 512MB")
            self._con.execute(f"SET memory_limit = '{memory_limit.strip()}'")
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
        # Distinct label sets are found in Arrow (fast on dictionary columns), so the
        # series index sees thousands of rows, not the whole batch.
        label_sets = table.select(labels).group_by(labels).aggregate([]) if labels \
            else pa.table({"_": [0]})
        series_t, samples_t = _ident("series_" + meas.name), _ident("samples_" + meas.name)
        series_cols = ", ".join(_ident(lab) for lab in meas.labels)
        cols = ", ".join(_ident(f) for f in fields)
        with self._lock:
            self._ensure(meas, fields)
            self._con.register("_incoming", table)
            self._con.register("_label_sets", label_sets)
            try:
                self._con.execute("BEGIN")
                self._con.execute(
                    f"INSERT INTO {series_t} (series_id, {series_cols}) "
                    f"SELECT {sid}, {', '.join(label_exprs)} FROM _label_sets "
                    f"WHERE {sid} NOT IN (SELECT series_id FROM {series_t})")
                self._con.execute(
                    f"INSERT INTO {samples_t} (time, series_id, {cols}) "
                    f"SELECT {_ident(TIME)}, {sid}, {cols} FROM _incoming")
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

    @staticmethod
    def _partial_sql(agg: Aggregate, col: str, present: set[str]) -> tuple[list[str], str]:
        """An aggregate split in two (per series, then per group): the per-series partial
        columns (``_p0_col``, ``_p1_col``) and the expression that finishes them."""
        c = f"t.{_ident(col)}" if col in present else "CAST(NULL AS DOUBLE)"
        p0, p1 = _ident("_p0_" + col), _ident("_p1_" + col)
        match agg:
            case Aggregate.MEAN:
                return [f"sum({c}) AS {p0}", f"count({c}) AS {p1}"], \
                    f"sum(p.{p0}) / nullif(sum(p.{p1}), 0)"
            case Aggregate.MIN:
                return [f"min({c}) AS {p0}"], f"min(p.{p0})"
            case Aggregate.MAX:
                return [f"max({c}) AS {p0}"], f"max(p.{p0})"
            case Aggregate.SUM:
                return [f"sum({c}) AS {p0}"], f"sum(p.{p0})"
            case Aggregate.COUNT:
                return [f"count({c}) AS {p0}"], f"CAST(coalesce(sum(p.{p0}), 0) AS BIGINT)"
            case Aggregate.LAST:
                return [f"arg_max({c}, t.time) FILTER (WHERE {c} IS NOT NULL) AS {p0}",
                        f"max(t.time) FILTER (WHERE {c} IS NOT NULL) AS {p1}"], \
                    f"arg_max(p.{p0}, p.{p1}) FILTER (WHERE p.{p0} IS NOT NULL)"
        raise StoreError(f"aggregate {agg!r} cannot be split per series")

    def _raw_sql(self, q: Query, meas: catalog.Measurement, present: set[str],
                 bucket: str, where: list[str]) -> str:
        """The SQL of a query over raw samples (parameters: bucket origin, start, end, then
        the ``where`` values).

        Every aggregate but a quantile runs in two steps: per series and window first, on
        the narrow sample table alone (integer series ids, no labels), then per group over
        those partial rows joined to the series' labels. The sample rows never meet a label
        string, which halves the cost of a query grouped by device and keeps the join to
        series x windows rows; the answers are the same (floating-point summation order
        aside, which DuckDB's parallel aggregation never fixed either).
        """
        series = _ident("series_" + meas.name)
        samples = _ident("samples_" + meas.name)
        groups = "".join(f", s.{_ident(g)} AS {_ident(g)}" for g in q.group_by)
        if q.agg == Aggregate.QUANTILE:
            aggs = ", ".join(f"{self._agg_sql(q, f, present)} AS {_ident(f)}" for f in q.fields)
            join = f"JOIN {series} s USING (series_id)" if where or q.group_by else ""
            return (f"SELECT {bucket} AS time{groups}, {aggs} FROM {samples} t {join} "
                    f"WHERE t.time >= ? AND t.time < ?"
                    + "".join(f" AND {c}" for c in where) + " GROUP BY ALL ORDER BY ALL")
        partial, final = [], []
        for f in q.fields:
            cols, finish = self._partial_sql(q.agg, f, present)
            partial += cols
            final.append(f"{finish} AS {_ident(f)}")
        match = (f" AND t.series_id IN (SELECT s.series_id FROM {series} s WHERE "
                 + " AND ".join(where) + ")") if where else ""
        inner = (f"SELECT {bucket} AS time, t.series_id, {', '.join(partial)} FROM {samples} t "
                 f"WHERE t.time >= ? AND t.time < ?{match} GROUP BY ALL")
        join = f"JOIN {series} s USING (series_id)" if q.group_by else ""
        return (f"SELECT p.time AS time{groups}, {', '.join(final)} FROM ({inner}) p {join} "
                f"GROUP BY ALL ORDER BY ALL")

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
            sql = self._raw_sql(q, meas, present, bucket, where)
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
                samples, series = _ident("samples_" + meas.name), _ident("series_" + meas.name)
                deleted += self._con.execute(
                    f"DELETE FROM {samples} WHERE time < ?", [_naive_utc(cutoff)]).fetchone()[0]
                self._con.execute(f"DELETE FROM {series} WHERE series_id NOT IN "
                                  f"(SELECT DISTINCT series_id FROM {samples})")
        return deleted

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
