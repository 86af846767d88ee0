"""The embedded default store: a DuckDB file and its folder of sealed hours, no server.

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
values of one device in narrower ranges. The order comes from the labels' dictionary indices
(`computewatch.store._order`: a transposition for the time-major frames collectors and the
simulator write, a checked hash sort otherwise), rows are moved by numpy, and only the
distinct label sets are hashed. The demo's day: 18.1 bytes per accelerator sample (734 MB)
against 27.0 (1,098 MB) unsorted (``python -m bench storage``; the alternatives measured are
listed in bench/bench_storage.py).

DuckDB compresses an append on one core. A write of `PARALLEL_ROWS` or more (an hour of a
fleet) is cut in two at a row-group boundary and the halves are appended at once by this
connection and a second one (a cursor), each in its own transaction: the first (with the
series index and the rollup bookkeeping) commits, then the second. A failure before the
first commit stores nothing; one of the second commit alone (the disk filling up between
the two) is reported as a StoreError naming the rows stored, as the line-protocol stores
report a write cut short.

Sealed hours (`computewatch.store._sealed`, issue 19): once a newer hour has begun, the
complete hours of raw samples leave ``samples_m`` for zstd Parquet parts (v2, sorted by
series and time) in ``<file>.parquet/<m>/``, one part per run of hours holding 100,000 rows
or more (`_sealed.PART_ROWS`; a write's hours that dense go straight to parts), recorded in
the ``sealed_files`` manifest in the same transaction that deletes its rows; sparse rows
stay in the table until they make a part. Every read of raw samples (`_raw`) sees the live
table and the sealed files as one relation, rollups included. Why: DuckDB's own file keeps an
hour of the demo's fleet at ~22 bytes per accelerator row even at the drivers' resolution
(its zstd reaches only strings), the same rows as zstd Parquet 5.6. A store is now the file
and that folder: copy, back up and remove both.

Retention: `DuckDBStore.expire` deletes raw samples past their period (removing sealed files
whole, rewriting the one the cutoff cuts) and rollup rows past theirs, then checkpoints;
DuckDB reuses the freed blocks, and ``compact`` rewrites the file.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from computewatch import catalog
from computewatch.errors import StoreURLError
from computewatch.i18n import _
from computewatch.samples import TIME
from computewatch.store import _rollups as ru
from computewatch.store._months import PENDING_MONTHS, MonthRollups, ceil_month
from computewatch.store._order import SeriesOrder, series_order
from computewatch.store._protocol import (
    Aggregate,
    Query,
    StoreError,
    WriteResult,
    check_query,
    check_where,
)
from computewatch.store._sealed import Sealed, hour_units
from computewatch.validation import Rejections, validate_frame

__all__ = ["PARALLEL_ROWS", "RAW_RETENTION", "ROLLUP_PREFIXES", "DuckDBStore", "Expiry",
           "open_reader"]

log = logging.getLogger(__name__)

RAW_RETENTION = timedelta(days=35)
"""Raw samples kept by default: a month and its late corrections; rollups keep the years."""
ROW_GROUP = 122_880
"""DuckDB's rows per row group, the unit it compresses and writes."""
PARALLEL_ROWS = 2 * ROW_GROUP
"""A write of at least this many rows (two of DuckDB's row groups) is appended by two
connections at once, each half compressed on its own core."""
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

_STATES_OF = {Aggregate.MEAN: ("n", "sum"), Aggregate.SUM: ("sum",), Aggregate.COUNT: ("n",),
              Aggregate.MIN: ("min",), Aggregate.MAX: ("max",),
              Aggregate.LAST: ("last", "last_time")}
"""The rollup states each aggregate reads (`computewatch.store._rollups.final_agg`)."""


_KEPT_STATE_ROWS = 8_000_000
"""At most this many merged state rows are kept in all (a few hundred MB: a year's quarters
of 400,000 series are 1.6 M); past it what was kept is dropped, so a long-lived reader that
never writes does not grow."""


@dataclass(frozen=True)
class _States:
    """State rows merged per series over [start, end) (`DuckDBStore._rollup_states`), and
    where they hold one window, the answers grouped from them so far: label set ->
    (window, labels, ``agg:field``...) rows (`DuckDBStore._grouped_once`)."""

    start: datetime
    end: datetime
    states: Mapping[str, frozenset[str]]
    rows: pa.Table
    grouped: dict[tuple[str, ...], pa.Table] = field(default_factory=dict)

    def covers(self, needed: Mapping[str, Sequence[str]]) -> bool:
        return all(f in self.states and set(s) <= self.states[f] for f, s in needed.items())

    @property
    def kept_rows(self) -> int:
        return self.rows.num_rows + sum(t.num_rows for t in self.grouped.values())


def _partition(kept: Sequence[_States], start: datetime, end: datetime,
               needed: Mapping[str, Sequence[str]]) -> list[_States] | None:
    """Kept single-window state rows whose ranges, end to end, make up [start, end) (two
    at least), or None."""
    usable = [one for one in kept if one.covers(needed) and start <= one.start < one.end <= end]
    chain, t = [], start
    while t < end:
        nxt = max((one for one in usable if one.start == t), key=lambda one: one.end,
                  default=None)
        if nxt is None:
            return None
        chain.append(nxt)
        t = nxt.end
    return chain if len(chain) > 1 else None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _agg_columns(q: Query) -> list[str]:
    """The columns of ``q``'s answer among grouped state rows: ``agg:field`` per field."""
    return [f"{q.agg.value}:{f}" for f in q.fields]


def _final_agg(column: str) -> str:
    """The aggregate over state rows behind an `_agg_columns` column."""
    agg, field_name = column.split(":", 1)
    return ru.final_agg(agg, field_name)


def _naive_utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"time {t.isoformat()} has no timezone")
    return t.astimezone(UTC).replace(tzinfo=None)


def _raw_span(plan: list) -> tuple[datetime | None, datetime | None]:
    """The range a rollup plan's raw segments cover (None, None: none)."""
    raw = [(lo, hi) for source, _, lo, hi in plan if source == "raw"]
    return (min(r[0] for r in raw), max(r[1] for r in raw)) if raw else (None, None)


def _bucket_sql(window: timedelta | None) -> str:
    """The window start of row ``t`` as SQL (parameter: the buckets' origin, the query's
    start); without a window, the start itself (one bucket for the whole range)."""
    if window is None:
        return "CAST(? AS TIMESTAMP)"
    micros = int(window / timedelta(microseconds=1))
    return f"time_bucket(INTERVAL ({micros}) MICROSECOND, t.time, CAST(? AS TIMESTAMP))"


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


def _per_row_buckets(rows: np.ndarray, k: np.ndarray, n: np.ndarray, n_rows: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sketch entries (row, bucket, count) summed per row and bucket, in (row, bucket)
    order: on a dense grid of rows x the buckets in use where that is small (a backfill's
    links span a few hundred buckets), else by sorting one int64 key per entry (numpy's
    `unique` over two stacked columns sorts them as opaque records, about 20x slower: 21 of
    a 40-day demo's 100 s)."""
    if not len(k):
        return rows, k, n
    lo = int(k.min())
    span = int(k.max()) - lo + 1
    if n_rows * span <= 8 * len(k) + (1 << 20):
        total = np.bincount(rows * span + (k - lo), weights=n, minlength=n_rows * span)
        cells = np.flatnonzero(total)
        return cells // span, cells % span + lo, total[cells].astype(np.int64)
    if n_rows * span < 1 << 62:
        order = np.argsort(rows.astype(np.int64) * span + (k.astype(np.int64) - lo))
    else:  # a key would not fit in 63 bits
        order = np.lexsort((k, rows))
    r, b = rows[order], k[order]
    first = np.flatnonzero(np.r_[True, (r[1:] != r[:-1]) | (b[1:] != b[:-1])])
    return r[first], b[first], np.add.reduceat(n[order].astype(np.int64), first)


_floor = ru.floor_time
_ceil = ru.ceil_time
_coalesce = ru.coalesce


def _in_groups(queries: Sequence[Query], key: Callable[[int, Query], Hashable],
               answer: Callable[[list[Query]], list[pd.DataFrame]]) -> list[pd.DataFrame]:
    """Each query's answer, in the queries' order: ``answer`` is asked once per group of
    queries with the same ``key(index, query)`` (one scan for the group), and its answers
    are put back in the members' places."""
    groups: dict[Hashable, list[int]] = {}
    for i, q in enumerate(queries):
        groups.setdefault(key(i, q), []).append(i)
    out: list[pd.DataFrame] = [pd.DataFrame()] * len(queries)
    for members in groups.values():
        for i, df in zip(members, answer([queries[i] for i in members]), strict=True):
            out[i] = df
    return out


def _ranks(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, int]:
    """Each row's rank among ``column``'s distinct values in ascending order, NULL last (as
    DuckDB's ORDER BY places them; strings in the byte order of their UTF-8, as DuckDB's
    default collation compares them), and how many distinct values there are."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    encoded = pc.dictionary_encode(column, null_encoding="encode")
    order = pc.array_sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return rank[encoded.indices.to_numpy(zero_copy_only=False)], len(order)


def _ranks_of(table: pa.Table, names: Sequence[str], pool: ThreadPoolExecutor
              ) -> dict[str, tuple[np.ndarray, int]]:
    """`_ranks` of each of ``table``'s columns ``names``, in ``pool``'s threads: Arrow ranks
    them outside the GIL, and a month's report ranks five columns of 387,000 rows, one of
    them 100,000 device names (0.08 to 0.13 s one after another, 0.06 to 0.07 s two at a
    time, measured under a load of 3)."""
    return dict(zip(names, pool.map(lambda name: _ranks(table.column(name)), names),
                    strict=True))


def _combined(ranks: Sequence[tuple[np.ndarray, int]], rows: np.ndarray | None = None
              ) -> np.ndarray:
    """One integer per row (of ``rows``, default all) that sorts as the `_ranks` of its keys,
    first key first: the ranks in mixed radix, numbered densely again where the product of
    their counts would overflow 63 bits."""
    key: np.ndarray | None = None
    span = 1
    for codes, size in ranks:
        codes = codes if rows is None else codes[rows]
        if key is None:
            key, span = codes.copy(), size
            continue
        if span * size >= 1 << 62:
            _, key = np.unique(key, return_inverse=True)
            span = int(key.max(initial=0)) + 1
        key = key * size + codes
        span *= size
    if key is None:
        return np.zeros(len(rows) if rows is not None else 0, np.int64)
    return key


def _order(ranks: Sequence[tuple[np.ndarray, int]], rows: np.ndarray | None = None
           ) -> np.ndarray:
    """The positions (among ``rows``, default all) that put the rows in the order of the
    `_ranks` of their keys: for rows unique in their keys (a GROUP BY's answer), the order
    of ORDER BY over those keys, without comparing every row's strings (the month's report
    groups 487,000 rows: DuckDB's ORDER BY of their labels cost about twice as much)."""
    return np.argsort(_combined(ranks, rows), kind="stable")


def _ordered(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """``table``'s rows (unique in ``keys``) ordered by ``keys`` as ORDER BY orders them
    (`_order`)."""
    if table.num_rows < 2:
        return table
    return table.take(pa.array(_order([_ranks(table.column(k)) for k in keys])))


_SUMMED = frozenset({Aggregate.SUM, Aggregate.COUNT, Aggregate.MEAN})
"""The aggregates `_summed_sets` finishes with numpy: sums of the states ``n`` and ``sum``."""


def _all_summed(columns: Sequence[str]) -> bool:
    """Whether every ``agg:field`` column is one `_summed_sets` answers."""
    return all(Aggregate(c.split(":", 1)[0]) in _SUMMED for c in columns)


def _summed_sets(reads: duckdb.DuckDBPyConnection, meas: catalog.Measurement,
                 sets: Sequence[tuple[str, ...]], columns: Sequence[str]
                 ) -> dict[tuple[str, ...], pa.Table]:
    """`DuckDBStore._grouping_sets` where every column is a sum, count or mean: DuckDB joins
    the state rows with their labels once, then each label set's groups are numbered from
    the labels' ranks (`_ranks`, each label once for all the sets) and summed by numpy in
    row order, their rows coming out in time and label order. The same numbers as
    `ru.final_agg`'s SQL (NULL where it gives NULL) up to the order of the additions.
    The month's report: four label sets of 387,000 state rows; hashing and sorting their
    label strings in DuckDB cost about twice as much."""
    labels = list(dict.fromkeys(g for one in sets for g in one))
    needed: dict[str, set[str]] = {}
    for c in columns:
        agg, f = c.split(":", 1)
        needed.setdefault(f, set()).update(_STATES_OF[Aggregate(agg)])
    states = [ru.state_column(f, st) for f in needed for st in sorted(needed[f])]
    rows = reads.sql(
        "SELECT t.time AS time, " + "".join(f"s.{_ident(g)} AS {_ident(g)}, " for g in labels)
        + ", ".join(f"t.{_ident(c)} AS {_ident(c)}" for c in states)
        + f" FROM _rollup_states t JOIN {_ident('series_' + meas.name)} s USING (series_id)"
    ).to_arrow_table()
    values = {}
    for c in states:  # a NULL state adds nothing; a group of NULLs alone sums to NULL
        col = rows.column(c)
        values[c] = (pc.fill_null(col, 0).cast(pa.float64()).to_numpy(),
                     pc.is_valid(col).to_numpy(zero_copy_only=False))
    made = []
    with ThreadPoolExecutor(2) as pool:  # Arrow's ranks and takes, outside the GIL
        ranks = _ranks_of(rows, ["time", *labels], pool)
        for one in sets:
            groups, inverse = _groups(_combined([ranks[g] for g in ["time", *one]]))
            last = np.empty(len(groups), np.int64)  # a row of each group, for its labels
            last[inverse] = np.arange(len(inverse))
            take = pa.array(last)  # each set's labels taken while numpy sums the states
            taken = {name: pool.submit(rows.column(name).take, take) for name in ["time", *one]}
            cols: dict[str, pa.Array] = {}
            total = {c: _totals(values[c], inverse, len(groups)) for c in states}  # once a set
            for c in columns:
                agg, f = c.split(":", 1)
                n, _ = total.get(ru.state_column(f, "n"), (None, None))
                if agg == Aggregate.COUNT:
                    cols[c] = pa.array(n.astype(np.int64))
                    continue
                sums, some = total[ru.state_column(f, "sum")]
                if agg == Aggregate.SUM:
                    cols[c] = pa.array(sums, mask=~some)
                    continue
                with np.errstate(divide="ignore", invalid="ignore"):
                    cols[c] = pa.array(sums / n, mask=~some | (n == 0))
            made.append((tuple(one), taken, cols))
    return {one: pa.table({**{name: got.result() for name, got in taken.items()}, **cols})
            for one, taken, cols in made}


def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(key, return_inverse=True)`` of non-negative keys: where the keys span
    little beside the rows (a site's or a site and namespace's groups), by marking the keys
    present, not by sorting the rows."""
    span = int(key.max()) + 1 if len(key) else 0
    if span > 4 * len(key) + (1 << 16):
        groups, inverse = np.unique(key, return_inverse=True)
        return groups, inverse.ravel()
    present = np.zeros(span, bool)
    present[key] = True
    return np.flatnonzero(present), (np.cumsum(present) - 1)[key]


def _totals(state: tuple[np.ndarray, np.ndarray], inverse: np.ndarray, size: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """A state's (values with NULL as 0, which are not NULL) sum per group of ``inverse``,
    and whether the group has a value."""
    value, valid = state
    return (np.bincount(inverse, weights=value, minlength=size),
            np.bincount(inverse, weights=valid, minlength=size) > 0)


class _SettlingLock:
    """The store's lock. Taking it first finishes the writes whose parts are being written
    in the background (`DuckDBStore._settle`), so whatever runs under it (every read,
    delete, seal, retention, checkpoint and close) sees them: one place, not one per
    method."""

    def __init__(self, settle: Callable[[str | None], None]) -> None:
        self._lock = threading.Lock()
        self._settle = settle

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._settle(None)
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    @contextlib.contextmanager
    def settled(self, measurement: str | None) -> Iterator[None]:
        """Held, with only ``measurement``'s pending writes finished (a write of the links
        need not wait for the accelerators' parts)."""
        with self._lock:
            self._settle(measurement)
            yield

    @contextlib.contextmanager
    def unsettled(self) -> Iterator[None]:
        """Held, nothing finished (`DuckDBStore.close` finishes them itself)."""
        with self._lock:
            yield


_unsettled: weakref.WeakSet[DuckDBStore] = weakref.WeakSet()
"""Stores that have had writes pending (`DuckDBStore._settle`): finished at exit, so a
process that returns from its last write without closing its store still commits it."""


@atexit.register
def _settle_at_exit() -> None:
    for store in list(_unsettled):
        try:
            store.flush()
        except Exception:  # at exit: said, not raised
            log.exception("store %s: a write left pending at exit failed", store.url)


class DuckDBStore(MonthRollups):
    """`Store` backed by a DuckDB file (``duckdb:///path.duckdb``, ``duckdb:///:memory:``).

    ``memory_limit`` (e.g. ``"512MB"``) caps DuckDB's buffer pool, which otherwise keeps
    every block a scan read, up to 80% of RAM, in the process' resident memory; a scan of
    data beyond it reads the blocks again from the file (from the OS page cache when warm).

    ``read_only`` opens an existing file so that other read-only processes can share it
    (DuckDB admits any number of readers or one writer): for a store with nothing to write
    before it is read (`writes_pending`; `open_reader` chooses). Its catalogue cannot change
    while it is open, so it is read once; it creates, seals and removes nothing (no Parquet
    part is written or deleted).
    """

    def __init__(self, path: str | Path, *, rejections: Rejections | None = None,
                 threads: int | None = None, create: bool = True,
                 memory_limit: str | None = None, read_only: bool = False) -> None:
        memory = str(path) == ":memory:"
        if read_only and memory:
            raise ValueError("a read-only store opens an existing file, not :memory:")
        create = create and not read_only  # read-only creates nothing: a missing file is named
        self.path = str(path) if memory else str(Path(path).expanduser().resolve())
        self.url = self.path  # a plain path names a DuckDB store; messages show it absolute
        self.rejections = rejections or Rejections()
        if not memory:
            if not create and not Path(self.path).is_file():
                raise StoreURLError(_("{path}: no such store (a DuckDB file); run "
                                      "`computewatch demo` or an agent first, or check "
                                      "--store").format(path=self.path))
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"{self.url}: cannot open: {exc}") from None
        self.read_only = read_only
        self._sealed = Sealed(self._con, self.path, self.url, read_only=read_only)
        self._sealed.check()
        self._threads = threads
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        if memory_limit:  # DuckDB's buffer pool keeps the blocks it read, up to 80% of RAM
            if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", memory_limit.strip()):
                raise ValueError(f"memory_limit {memory_limit!r} is not a size such as 512MB")
            self._con.execute(f"SET memory_limit = '{memory_limit.strip()}'")
        self._memory_limit = memory_limit.strip() if memory_limit else None
        self._lock = _SettlingLock(self._settle)
        # Direct writes whose parts are being written in the background, by measurement
        # (the job, the commit to run with its parts); `_settle`.
        self._writing: dict[str, tuple[Future, Callable[[list], None]]] = {}
        self._parts_executor: ThreadPoolExecutor | None = None
        self._parts_cursor: duckdb.DuckDBPyConnection | None = None
        self._part_buffers: list[np.ndarray] = []  # `_sealed._scratch` of the parts' job
        self._series_ids: dict[str, np.ndarray] = {}  # `_known_series`
        self._reads: duckdb.DuckDBPyConnection | None = None  # `_arrow_reads`
        self._helper: duckdb.DuckDBPyConnection | None = None  # appends a large write's 2nd half
        self._executor: ThreadPoolExecutor | None = None
        self._fields: dict[str, set[str]] = {}
        self._rolled: dict[str, set[str]] = {}  # rollup tables' fields (`_rollup_tables`)
        # Where raw data and rollups begin, per measurement (and grain): asked by every query
        # of a store with rollups, so kept until a write, rollup or deletion changes them.
        self._spans: dict[tuple[str, timedelta | None], tuple | None] = {}
        # Rollup state rows merged per series and window (`_rollup_states`), kept for the
        # next query of the same range or of a range they partition; forgotten on any change.
        self._states: dict[tuple, list[_States]] = {}
        self._known_tables: set[str] = set()  # tables known to exist (`_table_exists`)
        self._months_clean: set[str] = set()  # `computewatch.store._months`
        # read-only: every table's columns, read once (`_table_exists`, `_columns`)
        self._catalogue: dict[str, set[str]] | None = None
        if read_only:
            self._catalogue = {}
            for table, column in self._con.execute(
                    "SELECT table_name, column_name FROM duckdb_columns() "
                    "WHERE database_name = current_database() AND NOT internal").fetchall():
                self._catalogue.setdefault(table, set()).add(column)

    # -- schema ---------------------------------------------------------------------------
    def _ensure(self, meas: catalog.Measurement, fields: Sequence[str] = ()) -> set[str]:
        """Create the tables on first use and add field columns as fields first arrive.

        Field columns are created lazily: a catalogued field nobody writes costs nothing,
        while an all-null DOUBLE column still costs DuckDB time on every insert.
        Returns the field columns the samples table has.
        """
        have = self._fields.get(meas.name)
        if have is None and self.read_only:  # `writes_pending` found nothing to add
            have = self._columns("samples_" + meas.name) - {"time", "series_id"}
            self._fields[meas.name] = have
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
        """The columns of ``table`` (from DuckDB's own catalogue function: the information
        schema's view of it took 2.4 ms a call, this 0.8; a report asks about 15 times;
        read-only, from the catalogue read at open)."""
        if self._catalogue is not None:
            return set(self._catalogue.get(table, ()))
        return {r[0] for r in self._con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ?",
            [table]).fetchall()}

    def _has(self, measurement: str) -> bool:
        return self._table_exists("samples_" + measurement)

    def _raw(self, measurement: str, lo: datetime | None = None,
             hi: datetime | None = None) -> str:
        """SQL of the relation of every raw sample (those in [lo, hi) at least, when given):
        the live table and the sealed parts (those overlapping the range)."""
        return self._sealed.relation(measurement, lo, hi)

    def _raw_for(self, q: Query) -> str:
        """`_raw` over the range of ``q``."""
        return self._raw(q.measurement, _naive_utc(q.start), _naive_utc(q.end))

    # -- write ----------------------------------------------------------------------------
    def write(self, measurement: str, frame: pa.Table | pd.DataFrame) -> WriteResult:
        """Store one frame. A large one whose clock hours go to Parquet parts may return
        before they are written: the store's next use (or `flush`, `close`, the process'
        exit) commits it, and raises there if a part failed (`_settle`)."""
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
        span = pc.min_max(table.column(TIME))
        lo, hi = span["min"].as_py(), span["max"].as_py()
        direct = self._sealed.direct(table.num_rows, lo, hi)
        # Rows going straight to parts: each clock hour's rows first (a part is a slice).
        layout = series_order(table, labels, hour_units(table.column(TIME).type)
                              if direct else None)
        # One row per label set, in series order: the series index sees thousands of rows,
        # and only those are hashed; each sample gets its set's id by repetition.
        label_sets = table.select(labels).take(pa.array(layout.first)) if labels \
            else pa.table({"_": [0]})
        series_t, samples_t = _ident("series_" + meas.name), _ident("samples_" + meas.name)
        series_cols = ", ".join(_ident(lab) for lab in meas.labels)
        cols = ", ".join(_ident(f) for f in fields)
        insert = (f"INSERT INTO {samples_t} (time, series_id, {cols}) "
                  f"SELECT {_ident(TIME)}, series_id, {cols} FROM _incoming")
        total = table.num_rows  # a pending commit holds none of the frame
        with self._lock.settled(meas.name):  # an earlier write's parts named first
            self._ensure(meas, fields)
            self._con.register("_label_sets", label_sets)
            try:
                set_ids = self._con.execute(f"SELECT {sid} FROM _label_sets").fetchnumpy()
            except duckdb.Error as exc:
                raise StoreError(f"{self.url}: write of {measurement!r} failed: {exc}") from None
            finally:
                self._con.unregister("_label_sets")
            set_ids = next(iter(set_ids.values())).astype(np.uint64)
            # Only the label sets the series index lacks are offered to it: its anti-join
            # over every set of the demo's hour (28,000 sets of 12 labels) took 0.06 s.
            fresh = ~np.isin(set_ids, self._known_series(meas.name))
            new_sets = label_sets.filter(pa.array(fresh)) if not fresh.all() else label_sets

            def laid_out(times: pa.Array) -> pa.Table:
                """The rows in the layout's order (``times`` already moved), with their
                series' ids: for a write all to parts, made in the parts' thread."""
                return pa.table({TIME: times, **{f: layout.apply(table.column(f))
                                                 for f in fields},
                                 "series_id": pa.array(np.repeat(set_ids, layout.lengths()),
                                                       pa.uint64())})

            def commit(parts: list, rows: pa.Table | None, split: int) -> None:
                """The write's one transaction: its new series, its parts (written), its
                live rows (two connections for a large write: `_split`), its span to roll
                up; then the live table's complete hours are sealed."""
                helper, appended = None, None
                self._con.register("_label_sets", new_sets)
                try:
                    if rows is None:  # all of it in parts
                        rows = pa.table({TIME: pa.array([], pa.timestamp("us"))})
                    live = rows.num_rows
                    if split:  # the second half appended by a second connection, at once
                        helper = self._helper_con()
                        helper.register("_incoming", rows.slice(split))
                        helper.execute("BEGIN")
                        appended = self._pool().submit(helper.execute, insert)
                        rows = rows.slice(0, split)
                    self._con.register("_incoming", rows)
                    self._con.execute("BEGIN")
                    if new_sets.num_rows:
                        self._con.execute(
                            f"INSERT INTO {series_t} (series_id, {series_cols}) "
                            f"SELECT DISTINCT {sid}, {', '.join(label_exprs)} FROM "
                            f"_label_sets WHERE {sid} NOT IN (SELECT series_id FROM {series_t})")
                    self._sealed.record_parts(meas.name, parts)
                    if rows.num_rows:
                        self._con.execute(insert)
                    self._mark_dirty(meas.name, lo, hi)
                    if appended is not None:
                        appended.result()
                    self._con.execute("COMMIT")
                    if new_sets.num_rows and meas.name in self._series_ids:
                        self._series_ids[meas.name] = np.union1d(
                            self._series_ids[meas.name], set_ids[fresh])
                except BaseException as exc:
                    with contextlib.suppress(duckdb.Error):
                        self._con.execute("ROLLBACK")
                    self._sealed.discard(meas.name, parts)
                    if helper is not None:
                        with contextlib.suppress(BaseException):
                            if appended is not None:
                                appended.result()
                        with contextlib.suppress(duckdb.Error):
                            helper.execute("ROLLBACK")
                        helper.unregister("_incoming")
                    if isinstance(exc, duckdb.Error):
                        raise StoreError(f"{self.url}: write of {measurement!r} failed: "
                                         f"{exc}") from None
                    raise
                finally:
                    self._con.unregister("_incoming")
                    self._con.unregister("_label_sets")
                if helper is not None:
                    try:
                        helper.execute("COMMIT")
                    except duckdb.Error as exc:
                        raise StoreError(f"{self.url}: write of {measurement!r} stopped "
                                         f"after {split} of {total} rows: {exc}"
                                         ) from None
                    finally:
                        helper.unregister("_incoming")
                if live:
                    present = self._ensure(meas)
                    self._sealed.seal(meas.name, [f for f in meas.fields if f in present],
                                      lo, hi, live)

            times = layout.apply(table.column(TIME))
            if not direct:
                commit([], laid_out(times), self._split(layout))
                return WriteResult(total, rejected)
            planned, sparse = self._sealed.plan_parts(meas.name, times, layout.edges)
            rows, rest = None, None
            if sparse:  # its sparse hours' rows go live
                rows = laid_out(times)
                rest = pa.concat_tables([rows.slice(a, n) for a, n in sparse])
            if not planned:
                commit([], rest, 0)
                return WriteResult(total, rejected)
            # Dense hours to Parquet parts in the background; the next use of the store
            # (`_settle`) waits for them and commits the write.
            con = self._parts_con()  # made here: the store's connection is this thread's
            job = self._parts_pool().submit(lambda: self._sealed.write_planned(
                con, meas.name, rows if rows is not None else laid_out(times), planned,
                self._part_buffers))
            self._writing[meas.name] = (job, lambda parts: commit(parts, rest, 0))
            _unsettled.add(self)
        return WriteResult(total, rejected)

    def _known_series(self, measurement: str) -> np.ndarray:
        """The ids in the series index of ``measurement`` (sorted), read once and kept up to
        date by `write`; forgotten where series are deleted (`_drop_unreferenced`)."""
        known = self._series_ids.get(measurement)
        if known is None:
            known = np.sort(np.asarray(self._con.execute(
                f"SELECT series_id FROM {_ident('series_' + measurement)}").fetchnumpy()[
                    "series_id"], np.uint64))
            self._series_ids[measurement] = known
        return known

    def _settle(self, measurement: str | None = None) -> None:
        """Under the lock: finish the direct writes whose parts are being written in the
        background (of ``measurement``, or all): wait for the files, then commit each write
        as `write` would have at once. A failure (a part's file, or the commit) is raised
        here, to whoever uses the store next, and that write is dropped whole: its files
        removed, nothing committed.

        Why in the background: DuckDB's Parquet COPY releases the GIL, so the caller (the
        demo's simulator, a backfill's reader) makes its next frame while the parts of this
        one are encoded (the COPY was 7.5 s of the demo's 24 h)."""
        for name in [m for m in self._writing if measurement in (None, m)]:
            job, commit = self._writing.pop(name)
            commit(job.result())

    def flush(self) -> None:
        """Finish every write still writing its parts (`_settle`); raises a failed one's
        error. Reads, deletes, retention and `close` do this first on their own."""
        with self._lock:
            pass

    def _parts_pool(self) -> ThreadPoolExecutor:
        if self._parts_executor is None:
            self._parts_executor = ThreadPoolExecutor(1, thread_name_prefix="duckdb-parts")
        return self._parts_executor

    def _parts_con(self) -> duckdb.DuckDBPyConnection:
        if self._parts_cursor is None:
            self._parts_cursor = self._con.cursor()
        return self._parts_cursor

    def _split(self, layout: SeriesOrder) -> int:
        """Where a large write is cut in two, or 0: DuckDB compresses an append on one core,
        so two connections append two halves on two. The cut falls on a row-group boundary
        (DuckDB's 122,880 rows), so the first half leaves no partly filled row group."""
        if layout.n < PARALLEL_ROWS or self._threads == 1 or (os.cpu_count() or 1) < 2:
            return 0
        return max(1, round(layout.n / 2 / ROW_GROUP)) * ROW_GROUP

    def _helper_con(self) -> duckdb.DuckDBPyConnection:
        if self._helper is None:
            self._helper = self._con.cursor()
        return self._helper

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="duckdb-append")
        return self._executor

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
    def _partial_sql(agg: Aggregate, col: str, present: set[str],
                     tag: str = "") -> tuple[list[str], str]:
        """An aggregate split in two (per series, then per group): the per-series partial
        columns (``_p0{tag}_col``, ``_p1{tag}_col``) and the expression that finishes them."""
        c = f"t.{_ident(col)}" if col in present else "CAST(NULL AS DOUBLE)"
        p0, p1 = _ident(f"_p0{tag}_{col}"), _ident(f"_p1{tag}_{col}")
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

    def _quantile_sql(self, q: Query, meas: catalog.Measurement, present: set[str],
                      where: list[str]) -> str:
        """A quantile over raw samples, in one step (parameters: bucket origin, start, end,
        then the ``where`` values)."""
        bucket = _bucket_sql(q.window)
        series = _ident("series_" + meas.name)
        groups = "".join(f", s.{_ident(g)} AS {_ident(g)}" for g in q.group_by)
        aggs = ", ".join(f"{self._agg_sql(q, f, present)} AS {_ident(f)}" for f in q.fields)
        join = f"JOIN {series} s USING (series_id)" if where or q.group_by else ""
        return (f"SELECT {bucket} AS time{groups}, {aggs} FROM {self._raw_for(q)} "
                f"t {join} WHERE t.time >= ? AND t.time < ?"
                + "".join(f" AND {c}" for c in where) + " GROUP BY ALL ORDER BY ALL")

    def _raw_sql(self, q: Query, asked: Sequence[Query], meas: catalog.Measurement,
                 present: set[str], where: list[str]) -> tuple[str, str | None]:
        """The SQL of the ``asked`` queries (none a quantile; alike but for their fields and
        aggregates, their range, window, groups and filter those of ``q``) over raw samples,
        each field of the k-th query in column ``k:field`` (parameters: start, end, then the
        ``where`` values, twice when grouped), and for a grouped query the SQL of its groups
        (parameters: the ``where`` values), numbered as the first query's ``_g``.

        Two steps: per series and window first, on the narrow sample table alone (integer
        series ids and window numbers, no labels), then per group over those partial rows,
        the group being a number given to each series (its labels' rank): the sample rows
        never meet a label string, and neither do the groups' rows, which get their labels
        in Arrow afterwards (`_with_labels`). Turning millions of label strings into Python
        ones and sorting by them was most of a grouped query's time, and DuckDB's
        ``time_bucket`` a third of the scan's. Several aggregates share the one scan (the
        first step's cost hardly grows with its columns). The answers are the same
        (floating-point summation order aside, which DuckDB's parallel aggregation never
        fixed either), in the same order.
        """
        series = _ident("series_" + meas.name)
        origin = int((_naive_utc(q.start) - datetime(1970, 1, 1)) / timedelta(microseconds=1))
        width = 0 if q.window is None else int(q.window / timedelta(microseconds=1))
        window = f"(epoch_us(t.time) - {origin}) // {width}" if width else "0"
        partial, final = [], []
        for k, one in enumerate(asked):
            for f in one.fields:
                cols, finish = self._partial_sql(one.agg, f, present, str(k))
                partial += cols
                final.append(f"{finish} AS {_ident(f'{k}:{f}')}")
        matching = f" WHERE {' AND '.join(where)}" if where else ""
        match = (f" AND t.series_id IN (SELECT s.series_id FROM {series} s{matching})"
                 if where else "")
        inner = (f"SELECT {window} AS _w, t.series_id, {', '.join(partial)} "
                 f"FROM {self._raw_for(q)} t "
                 f"WHERE t.time >= ? AND t.time < ?{match} GROUP BY ALL")
        time = f"make_timestamp({origin} + p._w * {width})"
        if not q.group_by:
            return (f"SELECT {time} AS time, {', '.join(final)} FROM ({inner}) p "
                    f"GROUP BY p._w ORDER BY p._w"), None
        keys = ", ".join(f"s.{_ident(g)}" for g in q.group_by)
        named = "".join(f", s.{_ident(g)} AS {_ident(g)}" for g in q.group_by)
        numbered = (f"SELECT s.series_id, DENSE_RANK() OVER (ORDER BY {keys}) - 1 AS _g"
                    f"{named} FROM {series} s{matching}")
        sql = (f"SELECT p._w AS _w, {time} AS time, n._g AS _g, {', '.join(final)} "
               f"FROM ({inner}) p JOIN ({numbered}) n USING (series_id) GROUP BY p._w, n._g")
        labels = (f"SELECT DISTINCT _g, {', '.join(_ident(g) for g in q.group_by)} "
                  f"FROM ({numbered}) ORDER BY _g")
        return sql, labels

    @staticmethod
    def _with_labels(rows: pa.Table, labels: pa.Table, group_by: Sequence[str]) -> pa.Table:
        """``rows`` (``_w``, time, ``_g``, fields, in no order) in window and group order,
        with each group's labels in place of ``_g``. Sorted here, on one integer per row:
        DuckDB's ORDER BY of millions of rows cost three times as much."""
        window = rows.column("_w").to_numpy()
        group = rows.column("_g").to_numpy()
        key = window * (int(group.max(initial=0)) + 1) + group
        rows = rows.take(pa.array(np.argsort(key, kind="stable"))).drop_columns(["_w"])
        index = rows.column("_g")
        cols = [rows.column(TIME), *(labels.column(g).take(index) for g in group_by)]
        names = [TIME, *group_by]
        for name in rows.column_names:
            if name not in (TIME, "_g"):
                cols.append(rows.column(name))
                names.append(name)
        return pa.table(cols, names=names)

    def _arrow_reads(self) -> duckdb.DuckDBPyConnection:
        """A second connection to the same database for reads fetched as Arrow: DuckDB
        hands a relation's rows to Arrow without a copy, but refuses a relation on a
        connection whose last result was not read to its end (a ``fetchone``)."""
        if self._reads is None:
            self._reads = self._con.cursor()
        return self._reads

    def query(self, q: Query) -> pd.DataFrame:
        return self.query_many([q])[0]

    def query_many(self, queries: Sequence[Query]) -> list[pd.DataFrame]:
        """`query` for each of ``queries``; those over raw data that differ only in their
        fields and aggregates (a SUM and a COUNT over the same range, windows, groups and
        filter) share one scan. `computewatch.store.query_many` calls this where a store has it."""
        for q in queries:
            check_query(q, self.url)

        def fused(i: int, q: Query) -> tuple:
            alone = i if q.agg == Aggregate.QUANTILE else -1  # a quantile shares nothing
            return (q.measurement, q.start, q.end, q.window,
                    repr(sorted((q.where or {}).items())), alone)

        def answer(qs: list[Query]) -> list[pd.DataFrame]:
            if not self._has(qs[0].measurement):
                return [pd.DataFrame(columns=[TIME, *q.group_by, *q.fields]) for q in qs]
            return self._query_fused(qs)

        return _in_groups(queries, fused, answer)

    def prefetch(self, queries: Sequence[Query]) -> None:
        """`computewatch.store.prefetch`: the queries over rollups that read one window of
        the same range and series (the window at least the range: none, or a month's one
        window) are grouped now, every label set in one statement, and their answers kept
        for when each is asked; the others are left until then."""
        for q in queries:
            check_query(q, self.url)

        def whole(q: Query) -> tuple:
            one = q.window is None or q.window >= q.end - q.start
            return (q.measurement, q.start, q.end, repr(sorted((q.where or {}).items())),
                    one and q.agg != Aggregate.QUANTILE)

        groups: dict[tuple, list[Query]] = {}
        for q in queries:
            groups.setdefault(whole(q), []).append(q)
        for key, qs in groups.items():
            if not key[-1] or not self._has(qs[0].measurement):
                continue
            meas = catalog.measurement(qs[0].measurement)
            with self._lock:
                plans = [self._plan(q, meas) for q in qs]  # a misaligned window raises here
                if all(plan is not None for plan in plans):
                    self._query_rollups_many(qs, meas, plans[0], answer=False)

    def most(self, q: Query) -> float | None:
        """`computewatch.store.most` of a COUNT over rollups: the states summed by window
        and group and the largest kept in one statement, no label string leaving DuckDB
        (the report's sampling-interval probe, a day's counts of 100,000 devices, cost
        0.1 s to 0.2 s as rows); None (ask `query`) for raw data or another aggregate."""
        check_query(q, self.url)
        if q.agg != Aggregate.COUNT or not self._has(q.measurement):
            return None
        meas = catalog.measurement(q.measurement)
        with self._lock:
            plan = self._plan(q, meas)
            if plan is None:
                return None
            (field,) = q.fields
            states = self._rollup_states(q, meas, plan, {field: ["n"]}).rows
            keys = "".join(f", s.{_ident(g)}" for g in q.group_by)
            join = (f" JOIN {_ident('series_' + meas.name)} s USING (series_id)"
                    if q.group_by else "")
            reads = self._arrow_reads()
            reads.register("_rollup_states", states)
            try:
                got = reads.sql(
                    f"SELECT max(v) FROM (SELECT sum(t.{_ident(ru.state_column(field, 'n'))})"
                    f" AS v FROM _rollup_states t{join} GROUP BY t.time{keys})").fetchall()
            except duckdb.Error as exc:
                raise StoreError(f"{self.url}: query on {meas.name!r} failed: {exc}") from None
            finally:
                reads.unregister("_rollup_states")
        return float(got[0][0] or 0)

    def _query_fused(self, qs: list[Query]) -> list[pd.DataFrame]:
        """Queries alike but for their fields, aggregates and groups: over rollups one scan
        answers all of them (`_query_rollups_many`); over raw data one scan per grouping."""
        meas = catalog.measurement(qs[0].measurement)
        with self._lock:
            plan = self._plan(qs[0], meas)
            if plan is not None and qs[0].agg != Aggregate.QUANTILE:
                return self._query_rollups_many(qs, meas, plan)
        return _in_groups(qs, lambda _i, q: q.group_by, self._query_grouped)

    def _query_grouped(self, qs: list[Query]) -> list[pd.DataFrame]:
        """Queries alike but for their fields and aggregates (one when a quantile), in one
        read."""
        q = qs[0]
        meas = catalog.measurement(q.measurement)
        with self._lock:
            plan = self._plan(q, meas)
            if plan is not None:
                frames = []
                for one in qs:
                    df = self._query_rollups(one, meas, plan)
                    df[TIME] = pd.to_datetime(df[TIME]).dt.tz_localize(UTC)
                    frames.append(df[[TIME, *q.group_by, *one.fields]].reset_index(drop=True))
                return frames
            present = self._ensure(meas)
            start, end = _naive_utc(q.start), _naive_utc(q.end)
            where, where_params = self._where(meas, q.where)
            reads = self._arrow_reads()
            try:
                if q.agg == Aggregate.QUANTILE:
                    sql = self._quantile_sql(q, meas, present, where)
                    df = self._con.execute(sql, [start, start, end, *where_params]).df()
                    df[TIME] = pd.to_datetime(df[TIME]).dt.tz_localize(UTC)
                    return [df[[TIME, *q.group_by, *q.fields]].reset_index(drop=True)]
                sql, labels_sql = self._raw_sql(q, qs, meas, present, where)
                if labels_sql is None:
                    rows = reads.sql(sql, params=[start, end, *where_params]).to_arrow_table()
                else:
                    rows = reads.sql(sql, params=[start, end, *where_params, *where_params]
                                     ).to_arrow_table()
                    labels = reads.sql(labels_sql, params=where_params).to_arrow_table()
                    rows = self._with_labels(rows, labels, q.group_by)
            except duckdb.Error as exc:
                raise StoreError(f"{self.url}: query on {meas.name!r} failed: {exc}") from None
        frames = []
        keys = [TIME, *q.group_by]
        for k, one in enumerate(qs):
            part = rows.select([*keys, *(f"{k}:{f}" for f in one.fields)])
            df = part.rename_columns([*keys, *one.fields]).to_pandas()
            df[TIME] = pd.to_datetime(df[TIME]).dt.tz_localize(UTC)
            frames.append(df)
        return frames

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
            try:  # through Arrow: a fleet whose pods come and go has millions of label sets
                return self._arrow_reads().sql(sql, params=params).to_arrow_table().to_pandas()
            except duckdb.Error as exc:
                raise StoreError(f"{self.url}: series of {meas.name!r}: {exc}") from None

    def series_ids(self, measurement: str) -> tuple[pd.DataFrame, np.ndarray]:
        """`series` (every label set, the same rows in the same order) and each row's series
        id, the key `series_windows` numbers its rows by. A label set is stored once (its id
        is its hash), so the rows need no DISTINCT."""
        meas = catalog.measurement(measurement)
        if not self._has(measurement):
            return pd.DataFrame(columns=list(meas.labels)), np.empty(0, np.uint64)
        cols = ", ".join(f"s.{_ident(lab)}" for lab in meas.labels)
        with self._lock:
            try:
                table = self._arrow_reads().sql(
                    f"SELECT s.series_id, {cols} FROM {_ident('series_' + meas.name)} s "
                    f"ORDER BY {cols}").to_arrow_table()
            except duckdb.Error as exc:
                raise StoreError(f"{self.url}: series of {meas.name!r}: {exc}") from None
        ids = table.column("series_id").to_numpy()
        return table.drop_columns(["series_id"]).to_pandas(), ids

    def series_windows(self, queries: Sequence[Query]) -> dict[str, np.ndarray] | None:
        """Queries alike but for their fields and aggregates (no quantile), answered per
        series and window instead of per group, in one scan: numpy columns ``series_id``
        (`series_ids` names its labels), ``time`` (the window's start, in nanoseconds since
        the epoch) and each query's fields as ``k:field``, one row per series and window with
        samples, in no order. None where the range reaches rollups (`query` answers those).

        For a caller that groups the rows itself (the pipelines' shared scan): no label
        string is read, joined or turned into a Python object, which was most of the cost of
        the same answer grouped by labels (`query_many`)."""
        q = queries[0]
        for one in queries:
            check_query(one, self.url)
            if one.agg == Aggregate.QUANTILE or (one.measurement, one.start, one.end,
                                                 one.window, one.where) != (
                    q.measurement, q.start, q.end, q.window, q.where):
                raise ValueError("series_windows: queries must differ only in their fields "
                                 "and aggregates, none a quantile")
        meas = catalog.measurement(q.measurement)
        if not self._has(meas.name):
            return {"series_id": np.empty(0, np.uint64), "time": np.empty(0, np.int64),
                    **{f"{k}:{f}": np.empty(0) for k, one in enumerate(queries)
                       for f in one.fields}}
        with self._lock:
            if self._plan(q, meas) is not None:
                return None
            present = self._ensure(meas)
            where, params = self._where(meas, q.where)
            origin = int((_naive_utc(q.start) - datetime(1970, 1, 1)) / timedelta(microseconds=1))
            width = 0 if q.window is None else int(q.window / timedelta(microseconds=1))
            window = f"(epoch_us(t.time) - {origin}) // {width}" if width else "0"
            aggs = ", ".join(f"{self._agg_sql(one, f, present)} AS {_ident(f'{k}:{f}')}"
                             for k, one in enumerate(queries) for f in one.fields)
            match = (f" AND t.series_id IN (SELECT s.series_id FROM "
                     f"{_ident('series_' + meas.name)} s WHERE {' AND '.join(where)})"
                     if where else "")
            sql = (f"SELECT {window} AS _w, t.series_id, {aggs} "
                   f"FROM {self._raw_for(q)} t "
                   f"WHERE t.time >= ? AND t.time < ?{match} GROUP BY ALL")
            try:
                rows = self._arrow_reads().sql(
                    sql, params=[_naive_utc(q.start), _naive_utc(q.end), *params]
                ).to_arrow_table()
            except duckdb.Error as exc:
                raise StoreError(f"{self.url}: query on {meas.name!r} failed: {exc}") from None
        out = {"series_id": rows.column("series_id").to_numpy(),
               "time": (origin + rows.column("_w").to_numpy().astype(np.int64) * width) * 1000}
        for name in rows.column_names[2:]:
            out[name] = rows.column(name).to_numpy(zero_copy_only=False)
        return out

    def time_bounds(self, measurement: str) -> tuple[datetime, datetime] | None:
        if not self._has(measurement):
            return None
        with self._lock:
            # The live table's bounds and the parts' from the manifest: min and max over
            # the parts themselves would read every part's times (0.7 s on 144 M samples).
            lo, hi = self._con.execute(
                f"SELECT min(time), max(time) FROM {_ident('samples_' + measurement)}"
            ).fetchall()[0]
            if (parts := self._sealed.span(measurement)) is not None:
                lo = parts[0] if lo is None else min(lo, parts[0])
                hi = parts[1] if hi is None else max(hi, parts[1])
            spans = [s for g in ru.GRAINS if (s := self._rolled_span(measurement, g))]
            if spans:  # rollups may reach further back than raw data
                rolled, last = min(s[0] for s in spans), max(s[1] for s in spans)
                lo = rolled if lo is None else min(lo, rolled)
                hi = last if hi is None else hi
        if lo is None:
            return None
        return lo.replace(tzinfo=UTC), hi.replace(tzinfo=UTC)

    # -- rollups (computewatch.store._rollups) ----------------------------------------------
    def _mark_dirty(self, measurement: str, lo: datetime, hi: datetime) -> None:
        """Note the span [lo, hi] a write touched; `refresh_rollups` rolls it up (inside the
        write's transaction, so a span is never lost)."""
        self._spans.pop((measurement, None), None)
        self._states.clear()
        self._con.execute("CREATE TABLE IF NOT EXISTS pending_rollups "
                          "(measurement VARCHAR, lo TIMESTAMP, hi TIMESTAMP)")
        self._con.execute("INSERT INTO pending_rollups VALUES (?, ?, ?)", [measurement, lo, hi])

    def _forget(self) -> None:
        """Drop what is kept of where data begins and of merged rollup states: the data
        changed."""
        self._spans.clear()
        self._states.clear()

    def _table_exists(self, table: str) -> bool:
        """Whether ``table`` exists; a table found is remembered (the store drops none), as
        every query asks (a month's report about 50 times: 15 of them for pending rollups
        a store of rollups alone never has, 0.9 ms each from `duckdb_tables`, 2.2 from the
        information schema; read-only, from the catalogue read at open)."""
        if self._catalogue is not None:
            return table in self._catalogue
        if table in self._known_tables:
            return True
        found = bool(self._con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?",
            [table]).fetchall()[0][0])
        if found:
            self._known_tables.add(table)
        return found

    def writes_pending(self) -> bool:
        """Whether reading would write first (`_plan`'s refresh, `_ensure`, `_rollup_tables`):
        raw data written before where raw data takes over from rollups and not yet rolled
        up (the spans after it are read raw, as they are), days whose months are pending,
        month rollups not yet made from a store's days, or tables older than the catalogue
        (a label, or a rollup grain's table or column to add)."""
        self.flush()  # a pending write's span is marked when it commits
        if self._table_exists("pending_rollups"):
            for name, lo in self._con.execute("SELECT measurement, min(lo) FROM "
                                              "pending_rollups GROUP BY ALL").fetchall():
                boundary = self._coverage(name)[0] if self._has(name) else None
                if boundary is not None and lo < boundary:
                    return True
        if self._table_exists(PENDING_MONTHS) and self._con.execute(
                f"SELECT EXISTS (SELECT 1 FROM {PENDING_MONTHS})").fetchall()[0][0]:
            return True
        for meas in catalog.measurements():
            series = "series_" + meas.name
            if self._table_exists(series) and not set(meas.labels) <= self._columns(series):
                return True
            tables = [ru.rollup_table(meas.name, g) for g in (*ru.GRAINS, ru.MONTH)]
            tables += [ru.sketch_table(meas.name, g) for g in (*ru.GRAINS, ru.MONTH)
                       if ru.sketched(meas)]
            made = [t for t in tables if self._table_exists(t)]
            if made and (len(made) < len(tables) or len(
                    {frozenset(self._columns(t)) for t in tables[:3]}) > 1):
                return True
        return False

    def refresh_rollups(self, measurement: str | None = None) -> int:
        """Roll up every span written since the last refresh (of one measurement, or all):
        the touched hours are recomputed from raw data and their days from the hours.
        Returns the hours recomputed. Run on a schedule (e.g. every few minutes) to keep
        each run small; retention and queries that read rollups run it too."""
        with self._lock:
            return self._refresh(measurement)

    def _refresh(self, measurement: str | None, before: datetime | None = None) -> int:
        """Roll up the marked spans (of one measurement; those starting before ``before``),
        then the months whose days changed (`computewatch.store._months`)."""
        hours = self._refresh_spans(measurement, before)
        self._refresh_months(measurement)
        return hours

    def _refresh_spans(self, measurement: str | None, before: datetime | None) -> int:
        if not self._table_exists("pending_rollups"):
            return 0
        sql = "SELECT measurement, lo, hi FROM pending_rollups WHERE TRUE"
        params: list = []
        if measurement:
            sql, params = sql + " AND measurement = ?", [measurement]
        if before is not None:
            sql, params = sql + " AND lo < ?", [*params, before]
        rows = self._con.execute(sql, params).fetchall()
        if rows and self.read_only:
            raise StoreError(f"{self.url}: opened read-only with raw data not yet rolled up; "
                             "run `computewatch rollup` first")
        spans: dict[str, list[tuple[datetime, datetime]]] = {}
        for name, lo, hi in rows:
            spans.setdefault(name, []).append((_floor(lo, ru.HOUR), _floor(hi, ru.HOUR) + ru.HOUR))
        hours = 0
        for name, ranges in spans.items():
            meas = catalog.measurement(name)
            try:
                self._con.execute("BEGIN")
                for lo, hi in _coalesce(ranges):
                    self._roll(meas, lo, hi)
                    hours += (hi - lo) // ru.HOUR
                self._con.execute(
                    "DELETE FROM pending_rollups WHERE measurement = ?"
                    + (" AND lo < ?" if before is not None else ""),
                    [name, before] if before is not None else [name])
                self._con.execute("COMMIT")
            except duckdb.Error as exc:
                self._con.execute("ROLLBACK")
                self._rolled.clear()
                raise StoreError(f"{self.url}: rollup of {name!r} failed: {exc}") from None
        return hours

    def _rollup_tables(self, meas: catalog.Measurement, fields: set[str]) -> set[str]:
        """Create or widen the rollup and sketch tables; the fields they have columns for
        (kept per connection: the tables only ever widen)."""
        have = self._rolled.get(meas.name)
        if have is not None and fields <= have:
            return have
        if self.read_only:  # `writes_pending` found them made and as wide as the days
            cols = self._columns(ru.rollup_table(meas.name, ru.HOUR))
            have = {f for f in meas.fields if ru.state_column(f, "n") in cols}
            self._rolled[meas.name] = have
            return have
        ordered = [f for f in meas.fields if f in fields]
        self._new_months(meas)
        for grain in (*ru.GRAINS, ru.MONTH):
            table = _ident(ru.rollup_table(meas.name, grain))
            self._con.execute(f"CREATE TABLE IF NOT EXISTS {table} "
                              f"(time TIMESTAMP, series_id UBIGINT)")
            cols = self._columns(ru.rollup_table(meas.name, grain))
            for col, kind in ru.rollup_columns(ordered):
                if col not in cols:
                    self._con.execute(f"ALTER TABLE {table} ADD COLUMN {_ident(col)} {kind}")
            if ru.sketched(meas):
                self._con.execute(
                    f"CREATE TABLE IF NOT EXISTS {_ident(ru.sketch_table(meas.name, grain))} "
                    f"(time TIMESTAMP, series_id UBIGINT, field VARCHAR, k INTEGER, n BIGINT)")
        cols = self._columns(ru.rollup_table(meas.name, ru.HOUR))
        have = {f for f in meas.fields if ru.state_column(f, "n") in cols}
        self._rolled[meas.name] = have
        return have

    def _roll(self, meas: catalog.Measurement, lo: datetime, hi: datetime) -> None:
        """Recompute the hours [lo, hi) from raw data, then the days they fall in. An hour
        whose raw samples have expired (before `_sealed_before`) and that holds rollups
        keeps them: recomputed from the few late samples written there since, it would
        lose the hour. Those late samples stay raw until the next expiry, logged."""
        self._forget()
        sealed = self._sealed_before(meas.name)
        kept: list[datetime] = []
        if sealed is not None and lo < sealed:
            hourly = _ident(ru.rollup_table(meas.name, ru.HOUR))
            if self._table_exists(ru.rollup_table(meas.name, ru.HOUR)):
                kept = [r[0] for r in self._con.execute(
                    f"SELECT DISTINCT time FROM {hourly} WHERE time >= ? AND time < ? "
                    "ORDER BY 1", [lo, min(hi, sealed)]).fetchall()]
        if kept:
            late = self._con.execute(
                f"SELECT count(*) FROM {self._raw(meas.name)} WHERE "
                "date_trunc('hour', time) IN (SELECT unnest(?::TIMESTAMP[]))",
                [kept]).fetchall()[0][0]
            if late:
                log.warning("store %s: %d %s samples written for hours before the raw "
                            "samples' expiry (%s) that hold rollups (%s to %s): kept raw "
                            "until the next expiry, not rolled up; those hours keep the "
                            "rollups of their samples", self.url, late, meas.name, sealed,
                            kept[0], kept[-1] + ru.HOUR)
        start = lo
        for hour in [*kept, hi]:
            if start < hour:
                self._roll_range(meas, start, hour)
            start = max(start, hour + ru.HOUR)

    def _roll_range(self, meas: catalog.Measurement, lo: datetime, hi: datetime) -> None:
        fields = [f for f in meas.fields if f in self._ensure(meas)]
        self._rollup_tables(meas, set(fields))
        samples = self._raw(meas.name, lo, hi)
        hourly, daily = (ru.rollup_table(meas.name, g) for g in (ru.HOUR, ru.DAY))
        cols = ", ".join(_ident(c) for c, _ in ru.rollup_columns(fields))
        self._con.execute(f"DELETE FROM {_ident(hourly)} WHERE time >= ? AND time < ?", [lo, hi])
        if fields:
            self._con.execute(f"INSERT INTO {_ident(hourly)} (time, series_id, {cols}) "
                              + ru.hourly_select(fields, samples), [lo, hi])
        d0, d1 = _floor(lo, ru.DAY), _floor(hi - ru.HOUR, ru.DAY) + ru.DAY
        self._con.execute(f"DELETE FROM {_ident(daily)} WHERE time >= ? AND time < ?", [d0, d1])
        if fields:
            source = f"(SELECT * FROM {_ident(hourly)} WHERE time >= ? AND time < ?)"
            self._con.execute(f"INSERT INTO {_ident(daily)} (time, series_id, {cols}) "
                              + ru.merge_select(fields, source, "date_trunc('day', time)"),
                              [d0, d1])
        self._mark_months(meas.name, d0, d1)
        sketched = [f for f in ru.sketched(meas) if f in fields]
        if not sketched:
            return
        hs, ds = (_ident(ru.sketch_table(meas.name, g)) for g in (ru.HOUR, ru.DAY))
        self._con.execute(f"DELETE FROM {hs} WHERE time >= ? AND time < ?", [lo, hi])
        for f in sketched:
            self._con.execute(f"INSERT INTO {hs} " + ru.sketch_from_raw(f, samples), [lo, hi])
        self._con.execute(f"DELETE FROM {ds} WHERE time >= ? AND time < ?", [d0, d1])
        self._con.execute(f"INSERT INTO {ds} SELECT date_trunc('day', time), series_id, field, "
                          f"k, sum(n) FROM {hs} WHERE time >= ? AND time < ? GROUP BY ALL",
                          [d0, d1])

    def _sealed_before(self, measurement: str) -> datetime | None:
        """The hour from which raw samples of ``measurement`` are complete: raw samples
        before the last expiry's cutoff are gone, so hours before it (the cutoff's own hour
        included, partly gone) that hold rollups are not recomputed from raw data."""
        if not self._table_exists("raw_expired"):
            return None
        rows = self._con.execute("SELECT max(cutoff) FROM raw_expired WHERE measurement = ?",
                                 [measurement]).fetchall()
        return None if rows[0][0] is None else _ceil(rows[0][0], ru.HOUR)

    def write_rollup(self, measurement: str, frame: pa.Table | pd.DataFrame,
                     grain: timedelta = ru.HOUR) -> int:
        """Store rollup rows directly (a backfill of history at rollup resolution, where no
        raw data ever existed): ``time`` (bucket starts, UTC), label columns, and state
        columns ``field:state`` (`computewatch.store._rollups.STATES`; a state left out is
        NULL: write ``n`` and ``sum`` at least, ``last``, ``last_time`` and ``max`` for
        counters).
        A sketched field (`computewatch.store._rollups.sketched`: the latency percentiles)
        may carry ``field:sketch``, its samples in the bucket as a list of ``{value, n}``
        per row (``n`` samples near ``value``; the counts add up to ``field:n``): each
        value goes into the sketch bucket a raw sample of it would, so quantiles over
        these buckets read as over rolled-up raw data. Without it the buckets answer no
        quantile of that field.
        ``grain`` an hour (the days they fall in are rolled up again from the hours) or a
        day (daily rows only: queries of those days then need whole days, `resolution`).
        Write each day at one grain. Returns rows stored."""
        if grain not in ru.GRAINS:
            raise StoreError(f"rollup grain {grain} is neither an hour nor a day")
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(
            frame, preserve_index=False)
        meas = catalog.measurement(measurement)
        if TIME not in table.column_names:
            raise StoreError(f"rollup frame for {measurement!r}: no {TIME!r} column")
        states = set(ru.STATES)
        fields: set[str] = set()
        sketches: list[str] = []
        for col in table.column_names:
            if col == TIME or col in meas.labels:
                continue
            f, _, s = col.partition(":")
            if s == ru.SKETCH and f in ru.sketched(meas):
                sketches.append(f)
                continue
            if s not in states:
                raise StoreError(f"rollup frame for {measurement!r}: column {col!r} is neither "
                                 f"a label nor field:state (states: {', '.join(sorted(states))}"
                                 f"; {ru.SKETCH} for {', '.join(ru.sketched(meas)) or 'none'})")
            meas.metric(f)
            fields.add(f)
        if table.num_rows == 0:
            return 0
        table = _normalize(table, meas)
        lo, hi = (v.as_py() for v in pc.min_max(table.column(TIME)).values())
        unit = "hour" if grain == ru.HOUR else "day"
        off = pc.sum(pc.not_equal(table.column(TIME),
                                  pc.floor_temporal(table.column(TIME), unit=unit))).as_py()
        if off:
            raise StoreError(f"rollup frame for {measurement!r}: {off} rows' time is not "
                             f"a{'n' if unit == 'hour' else ''} {unit} start (first row at {lo})")
        labels = [lab for lab in meas.labels if lab in table.column_names]
        label_exprs = [_ident(lab) if lab in labels else "''" for lab in meas.labels]
        sid = f"hash({', '.join(label_exprs)})"
        label_sets = table.select(labels).group_by(labels).aggregate([]) if labels \
            else pa.table({"_": [0]})
        series_t = _ident("series_" + meas.name)
        series_cols = ", ".join(_ident(lab) for lab in meas.labels)
        state_cols = [c for c in table.column_names
                      if ":" in c and not c.endswith(":" + ru.SKETCH)]
        cols = ", ".join(_ident(c) for c in state_cols)
        with self._lock:
            self._forget()
            self._ensure(meas)
            have = self._rollup_tables(meas, fields)
            hourly, daily = (ru.rollup_table(meas.name, g) for g in (ru.HOUR, ru.DAY))
            self._con.register("_incoming", table.append_column(
                "_row", pa.array(np.arange(table.num_rows))) if sketches else table)
            self._con.register("_label_sets", label_sets)
            try:
                self._con.execute("BEGIN")
                self._con.execute(
                    f"INSERT INTO {series_t} (series_id, {series_cols}) "
                    f"SELECT {sid}, {', '.join(label_exprs)} FROM _label_sets "
                    f"WHERE {sid} NOT IN (SELECT series_id FROM {series_t})")
                self._con.execute(f"INSERT INTO {_ident(ru.rollup_table(meas.name, grain))} "
                                  f"(time, series_id, {cols}) "
                                  f"SELECT {_ident(TIME)}, {sid}, {cols} FROM _incoming")
                for f in sketches:
                    self._write_sketch(meas, f, sid, grain, table)
                self._mark_months(meas.name, lo, hi + ru.DAY)
                if grain == ru.DAY:
                    self._con.execute("COMMIT")
                    return table.num_rows
                d0, d1 = _floor(lo, ru.DAY), _floor(hi, ru.DAY) + ru.DAY
                merged = [f for f in meas.fields if f in have]
                all_cols = ", ".join(_ident(c) for c, _ in ru.rollup_columns(merged))
                self._con.execute(f"DELETE FROM {_ident(daily)} WHERE time >= ? AND time < ?",
                                  [d0, d1])
                source = f"(SELECT * FROM {_ident(hourly)} WHERE time >= ? AND time < ?)"
                self._con.execute(f"INSERT INTO {_ident(daily)} (time, series_id, {all_cols}) "
                                  + ru.merge_select(merged, source, "date_trunc('day', time)"),
                                  [d0, d1])
                if sketches:
                    hs, ds = (_ident(ru.sketch_table(meas.name, g)) for g in (ru.HOUR, ru.DAY))
                    self._con.execute(f"DELETE FROM {ds} WHERE time >= ? AND time < ?", [d0, d1])
                    self._con.execute(
                        f"INSERT INTO {ds} SELECT date_trunc('day', time), series_id, field, "
                        f"k, sum(n) FROM {hs} WHERE time >= ? AND time < ? GROUP BY ALL",
                        [d0, d1])
                self._con.execute("COMMIT")
            except duckdb.Error as exc:
                self._con.execute("ROLLBACK")
                self._rolled.clear()
                raise StoreError(f"{self.url}: rollup write of {measurement!r} failed: "
                                 f"{exc}") from None
            finally:
                self._con.unregister("_incoming")
                self._con.unregister("_label_sets")
        return table.num_rows

    def _write_sketch(self, meas: catalog.Measurement, field: str, sid: str,
                      grain: timedelta, table: pa.Table) -> None:
        """Insert ``table``'s ``field:sketch`` lists (``table`` is registered as
        ``_incoming`` with a ``_row`` number) as sketch rows of ``grain``, one per row and
        bucket, after checking that their counts add up to ``field:n`` (inside
        `write_rollup`'s transaction). Bucketed in numpy: a year's backfill gives a
        national fleet's links millions of entries, most of them sharing a bucket."""
        lists = table.column(ru.state_column(field, ru.SKETCH)).combine_chunks()
        offsets = lists.offsets.to_numpy()
        parents = np.repeat(np.arange(len(lists)), np.diff(offsets))
        flat = lists.values.slice(offsets[0], offsets[-1] - offsets[0])
        values = flat.field("value")
        counts = flat.field("n")
        values = pc.fill_null(values, np.nan) if values.null_count else values
        counts = pc.fill_null(counts, 0) if counts.null_count else counts
        values = values.to_numpy(zero_copy_only=False)
        counts = counts.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        n_col = ru.state_column(field, "n")
        if n_col in table.column_names:
            want = pc.fill_null(table.column(n_col), 0).to_numpy().astype(np.int64)
            got = np.bincount(parents, weights=counts, minlength=len(want)).astype(np.int64)
            bad = np.flatnonzero(got != want)
            if bad.size:
                raise StoreError(
                    f"rollup frame for {meas.name!r}: {bad.size} rows' "
                    f"{field}:{ru.SKETCH} counts do not add up to {n_col} (first at "
                    f"{table.column(TIME)[int(bad[0])].as_py()}: {got[bad[0]]} != "
                    f"{want[bad[0]]})")
        keep = (counts > 0) & ~np.isnan(values)
        rows, k, n = _per_row_buckets(parents[keep], ru.bucket_of(values[keep]), counts[keep],
                                      len(lists))
        compact = pa.table({"_row": rows, "k": k.astype(np.int32), "n": n})
        self._con.register("_sketch", compact)
        try:
            self._con.execute(
                f"INSERT INTO {_ident(ru.sketch_table(meas.name, grain))} "
                f"SELECT {_ident(TIME)}, {sid}, '{field}', s.k, s.n "
                f"FROM _sketch s JOIN _incoming i ON i._row = s._row")
        finally:
            self._con.unregister("_sketch")

    def _raw_from(self, measurement: str) -> datetime | None:
        key = (measurement, None)
        if key not in self._spans:
            self._spans[key] = self._con.execute(
                f"SELECT min(time) FROM {self._raw(measurement)}").fetchall()[0][0]
        return self._spans[key]

    def _rolled_span(self, measurement: str, grain: timedelta) -> tuple | None:
        """First and last bucket start of one grain's rollups, or None when it holds none."""
        key = (measurement, grain)
        if key not in self._spans:
            table = ru.rollup_table(measurement, grain)
            span = None
            if self._table_exists(table):
                lo, hi = self._con.execute(
                    f"SELECT min(time), max(time) FROM {_ident(table)}").fetchall()[0]
                span = None if lo is None else (lo, hi)
            self._spans[key] = span
        return self._spans[key]

    def _coverage(self, measurement: str) -> tuple[datetime | None, datetime | None]:
        """(boundary, days_until): where raw data takes over from rollups (an hour start;
        None when the rollups hold nothing older than the raw data, so raw data answers every
        query), and before which only daily rollups exist (None: hourly ones everywhere)."""
        hourly, daily = (self._rolled_span(measurement, g) for g in (ru.HOUR, ru.DAY))
        rolled = min([s[0] for s in (hourly, daily) if s], default=None)
        if rolled is None:
            return None, None
        boundary = ru.raw_boundary(rolled, self._raw_from(measurement), datetime.max)
        if boundary is None:
            return None, None
        hours_from = _floor(hourly[0], ru.DAY) if hourly else boundary
        days_until = hours_from if daily and daily[0] < hours_from else None
        return boundary, days_until

    def resolution(self, measurement: str, start: datetime) -> timedelta:
        """The finest window a query from ``start`` can ask for: zero (any window, raw data)
        when raw data reaches back to ``start``, else an hour (hourly rollups) or a day
        (where history holds daily rollups only)."""
        catalog.measurement(measurement)
        if not self._has(measurement):
            return timedelta(0)
        with self._lock:
            boundary, days_until = self._coverage(measurement)
        t = _naive_utc(start)
        if days_until is not None and t < days_until:
            return ru.DAY
        return ru.HOUR if boundary is not None and t < boundary else timedelta(0)

    def _plan(self, q: Query, meas: catalog.Measurement) -> list | None:
        """How a query reaching before the raw data is answered: (source, grain, lo, hi)
        segments (month and daily rollups, hourly rollups, raw), or None for raw data alone."""
        if self._rolled_span(meas.name, ru.HOUR) is None and \
                self._rolled_span(meas.name, ru.DAY) is None:
            return None
        start, end = _naive_utc(q.start), _naive_utc(q.end)
        boundary, days_until = self._coverage(meas.name)
        if boundary is None or start >= boundary:
            return None
        rolled_end = min(boundary, end)
        grain, edge = ru.HOUR, boundary
        if days_until is not None and start < days_until:
            grain, edge = ru.DAY, days_until
        aligned = [start, rolled_end] if rolled_end < end else [start]
        if rolled_end > edge:
            aligned = [start]  # finer data takes over before the end
        if any(t != _floor(t, grain) for t in aligned) or (
                q.window is not None and q.window % grain):
            raise ru.unaligned(self.url, meas.name, q, edge, grain)
        self._refresh(meas.name, before=rolled_end)  # what was written there since
        if q.agg == Aggregate.QUANTILE:
            missing = [f for f in q.fields if f not in ru.sketched(meas)]
            if missing:
                raise StoreError(f"{self.url}: {meas.name!r} before {boundary:%Y-%m-%d %H:%M} "
                                 f"UTC keeps no sketch of {', '.join(missing)} for quantiles "
                                 f"(sketched: {', '.join(ru.sketched(meas)) or 'none'})")
        segments = []
        days_end = _floor(rolled_end, ru.DAY)
        if start == _floor(start, ru.DAY) and (q.window is None or not q.window % ru.DAY) \
                and days_end > start:
            segments += self._day_segments(meas, q, start, days_end)
            start = days_end
        if rolled_end > start:
            segments.append(("rollup", ru.HOUR, start, rolled_end))
        if end > rolled_end:
            segments.append(("raw", None, rolled_end, end))
        return segments

    def _query_rollups_many(self, qs: list[Query], meas: catalog.Measurement,
                            plan: list, *, answer: bool = True) -> list[pd.DataFrame]:
        """Queries over rollups alike but for their fields, aggregates and groups: the state
        rows are merged per series and window once, for every state any of them reads (the
        scan of a quarter's or a year's rows is the cost; the merged rows are one per series
        and window), then grouped by each query's labels: where they hold one window, every
        label set in one statement, kept with the states (`_grouped_once`). Without
        ``answer``, only that (`prefetch`)."""
        q = qs[0]
        needed: dict[str, list[str]] = {}
        for one in qs:
            for f in one.fields:
                have = needed.setdefault(f, [])
                have += [s for s in _STATES_OF[one.agg] if s not in have]
        kept = self._rollup_states(q, meas, plan, needed)
        states = kept.rows
        wanted: dict[tuple[str, ...], list[str]] = {}
        for one in qs:
            have = wanted.setdefault(one.group_by, [])
            have += [c for c in _agg_columns(one) if c not in have]
        window_count = pc.count_distinct(states.column(TIME)).as_py()
        reads = self._arrow_reads()
        reads.register("_rollup_states", states)
        try:
            if window_count <= 1:
                grouped = self._grouped_once(reads, meas, kept, wanted)
            elif not answer:
                return []
            else:
                grouped = {g: (self._group_numbered if g else self._group_states)(
                    reads, meas, g, columns) for g, columns in wanted.items()}
        except duckdb.Error as exc:
            raise StoreError(f"{self.url}: query on {meas.name!r} failed: {exc}") from None
        finally:
            reads.unregister("_rollup_states")
        frames = {}  # one conversion per label set: its label strings once for all queries
        for g, columns in wanted.items() if answer else ():
            frame = grouped[g].select([TIME, *g, *columns]).to_pandas()
            frame[TIME] = pd.to_datetime(frame[TIME]).dt.tz_localize(UTC)
            frames[g] = frame
        out = []
        for one in qs if answer else ():
            keys = [TIME, *one.group_by]
            df = frames[one.group_by][[*keys, *_agg_columns(one)]]
            out.append(df.set_axis([*keys, *one.fields], axis=1))
        return out

    @classmethod
    def _grouped_once(cls, reads: duckdb.DuckDBPyConnection, meas: catalog.Measurement,
                      kept: _States, wanted: Mapping[tuple[str, ...], Sequence[str]]
                      ) -> dict[tuple[str, ...], pa.Table]:
        """One window's state rows (registered as ``_rollup_states``) grouped by each label
        set of ``wanted`` with its ``agg:field`` columns: those ``kept`` has already, the
        rest computed together and kept. Two label sets or more are grouped together (the
        join with the series' labels and the pass over the rows once, not once per set: the
        month's report asks four): sums, counts and means by numpy (`_summed_sets`), other
        aggregates in one GROUPING SETS statement; each set's rows then put in order apart.
        """
        def has(g: tuple[str, ...], columns: Sequence[str]) -> bool:
            return g in kept.grouped and set(columns) <= set(kept.grouped[g].column_names)

        def before(g: tuple[str, ...]) -> list[str]:  # a set asked again with more columns
            got = kept.grouped[g].column_names if g in kept.grouped else []
            return [c for c in got if c not in (TIME, *g)]

        todo = {g: list(dict.fromkeys([*before(g), *columns]))
                for g, columns in wanted.items() if not has(g, columns)}
        # label sets of two labels or more, each set once (GROUPING SETS cannot tell apart
        # the same labels in two orders)
        labelled = list({frozenset(g): g for g in todo if g}.values())
        if len(labelled) > 1:
            columns = list(dict.fromkeys(c for g in labelled for c in todo[g]))
            kept.grouped.update(cls._grouping_sets(reads, meas, labelled, columns))
        for g in todo:
            if g not in kept.grouped or not has(g, todo[g]):
                kept.grouped[g] = cls._group_states(reads, meas, g, todo[g])
        return {g: kept.grouped[g] for g in wanted}

    @staticmethod
    def _grouping_sets(reads: duckdb.DuckDBPyConnection, meas: catalog.Measurement,
                       sets: Sequence[tuple[str, ...]], columns: Sequence[str]
                       ) -> dict[tuple[str, ...], pa.Table]:
        """`_group_states` of every label set in ``sets`` from one statement; each set's
        rows then put in time and label order apart (`_order`: each label ranked once for
        all the sets that have it)."""
        if _all_summed(columns):
            return _summed_sets(reads, meas, sets, columns)
        labels = list(dict.fromkeys(g for one in sets for g in one))
        keys = ", ".join(f"s.{_ident(g)}" for g in labels)
        grouping = ", ".join("(t.time" + "".join(f", s.{_ident(g)}" for g in one) + ")"
                             for one in sets)
        rows = reads.sql(
            f"SELECT GROUPING({keys}) AS _set, t.time AS time, "
            + "".join(f"s.{_ident(g)} AS {_ident(g)}, " for g in labels)
            + ", ".join(f"{_final_agg(c)} AS {_ident(c)}" for c in columns)
            + f" FROM _rollup_states t JOIN {_ident('series_' + meas.name)} s "
            f"USING (series_id) GROUP BY GROUPING SETS ({grouping})").to_arrow_table()
        numbers = rows.column("_set").to_numpy()
        with ThreadPoolExecutor(2) as pool:
            ranks = _ranks_of(rows, ["time", *labels], pool)
        out = {}
        for one in sets:  # GROUPING's bit is set for each label the set leaves out
            bits = sum(1 << (len(labels) - 1 - i) for i, g in enumerate(labels)
                       if g not in one)
            mine = np.flatnonzero(numbers == bits)
            order = mine[_order([ranks[name] for name in ["time", *one]], mine)]
            out[tuple(one)] = rows.select(["time", *one, *columns]).take(pa.array(order))
        return out

    @staticmethod
    def _group_states(reads: duckdb.DuckDBPyConnection, meas: catalog.Measurement,
                      group_by: Sequence[str], columns: Sequence[str]) -> pa.Table:
        """``_rollup_states``' rows grouped by window and ``group_by``, with ``columns``
        (``agg:field``, `_agg_columns`), in time and label order (as Arrow: labels arrive as
        the strings pandas keeps, not as Python objects)."""
        if group_by and _all_summed(columns):
            return _summed_sets(reads, meas, [tuple(group_by)], columns)[tuple(group_by)]
        aggs = ", ".join(f"{_final_agg(c)} AS {_ident(c)}" for c in columns)
        groups = "".join(f", s.{_ident(g)} AS {_ident(g)}" for g in group_by)
        join = f"JOIN {_ident('series_' + meas.name)} s USING (series_id)" if group_by else ""
        rows = reads.sql(f"SELECT t.time AS time{groups}, {aggs} FROM _rollup_states t {join} "
                         f"GROUP BY ALL").to_arrow_table()
        return _ordered(rows, ["time", *group_by])

    @classmethod
    def _group_numbered(cls, reads: duckdb.DuckDBPyConnection, meas: catalog.Measurement,
                        group_by: Sequence[str], columns: Sequence[str]) -> pa.Table:
        """`_group_states` where each series has many windows (a year of daily link rows:
        365 a series): grouped on one integer per label set, as raw rows are (`_raw_sql`),
        not on every row's label strings."""
        aggs = ", ".join(f"{_final_agg(c)} AS {_ident(c)}" for c in columns)
        keys = ", ".join(f"s.{_ident(g)}" for g in group_by)
        named = "".join(f", s.{_ident(g)} AS {_ident(g)}" for g in group_by)
        numbered = (f"SELECT s.series_id, DENSE_RANK() OVER (ORDER BY {keys}) - 1 AS _g{named} "
                    f"FROM {_ident('series_' + meas.name)} s "
                    f"WHERE s.series_id IN (SELECT series_id FROM _rollup_states)")
        reads.register("_numbered", reads.sql(numbered).to_arrow_table())
        try:
            rows = reads.sql(
                f"SELECT epoch_us(t.time) AS _w, t.time AS time, n._g AS _g, {aggs} "
                f"FROM _rollup_states t JOIN _numbered n USING (series_id) "
                f"GROUP BY t.time, n._g").to_arrow_table()
            labels = reads.sql(f"SELECT DISTINCT _g, {', '.join(_ident(g) for g in group_by)} "
                               f"FROM _numbered ORDER BY _g").to_arrow_table()
        finally:
            reads.unregister("_numbered")
        # windows as 0, 1, ... (`_with_labels` keys a row by window and group in one int64)
        _, window = np.unique(rows.column("_w").to_numpy(), return_inverse=True)
        rows = rows.set_column(0, "_w", pa.array(window.astype(np.int64)))
        return cls._with_labels(rows, labels, group_by)

    def _rollup_states(self, q: Query, meas: catalog.Measurement, plan: list,
                       needed: Mapping[str, Sequence[str]]) -> _States:
        """(time, series_id, ``field:state``...) rows of the series matching ``q.where``:
        ``needed``'s states merged per series and window of ``q`` over ``plan``'s
        segments (rollups, and raw samples shaped as state rows).

        Kept until the data changes: a later query of the same range and window reuses
        them, and one whose range is a single window (a year, a quarter) merges those
        kept for windows that partition it (a year's four quarters, 1.6 M rows) instead
        of scanning its tens of millions of rows again."""
        window = None if q.window is None or q.window >= q.end - q.start else q.window
        key = (meas.name, repr(sorted((q.where or {}).items())), window)
        kept = self._states.setdefault(key, [])
        for one in kept:
            if (one.start, one.end) == (q.start, q.end) and one.covers(needed):
                return one
        pieces = _partition(kept, q.start, q.end, needed) if window is None else None
        if pieces:
            rows = self._merge_states(pieces, q.start, needed, meas)
        else:
            rows = self._scan_states(q, meas, plan, needed)
        if sum(one.kept_rows for part in self._states.values() for one in part) \
                + rows.num_rows > _KEPT_STATE_ROWS:
            for part in self._states.values():
                part.clear()
        one = _States(q.start, q.end, {f: frozenset(s) for f, s in needed.items()}, rows)
        kept.append(one)
        return one

    def _merge_states(self, pieces: list[_States], start: datetime,
                      needed: Mapping[str, Sequence[str]],
                      meas: catalog.Measurement) -> pa.Table:
        """One window's state rows from those of the windows that partition it."""
        reads = self._arrow_reads()
        cols = ", ".join(["series_id", *(_ident(ru.state_column(f, s))
                                         for f, states in needed.items() for s in states)])
        names = [f"_states_{i}" for i in range(len(pieces))]
        for name, one in zip(names, pieces, strict=True):
            reads.register(name, one.rows)
        try:
            union = " UNION ALL ".join(f"SELECT {cols} FROM {n}" for n in names)
            merged = ", ".join(ru.merge_states(f, needed[f]) for f in needed)
            return reads.sql(f"SELECT CAST(? AS TIMESTAMP) AS time, t.series_id, {merged} "
                             f"FROM ({union}) t GROUP BY ALL",
                             params=[_naive_utc(start)]).to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"{self.url}: query on {meas.name!r} failed: {exc}") from None
        finally:
            for name in names:
                reads.unregister(name)

    def _scan_states(self, q: Query, meas: catalog.Measurement, plan: list,
                     needed: Mapping[str, Sequence[str]]) -> pa.Table:
        present = self._ensure(meas)
        rolled = self._rollup_tables(meas, set())
        fields = list(needed)
        bucket = _bucket_sql(q.window)
        where, where_params = self._where(meas, q.where)
        samples = self._raw(meas.name, *_raw_span(plan))
        parts, params = [], []
        for source, grain, lo, hi in plan:
            parts.append(ru.raw_states(meas, fields, samples, present) if source == "raw"
                         else ru.rolled_states(fields, ru.rollup_table(meas.name, grain), rolled))
            params += [lo, hi]
        # One month's month rows, one window: a row per series already (`_merge_months`
        # groups them so), read as they are; anything else merged per series and window.
        one = len(plan) == 1 and plan[0][1] == ru.MONTH and ceil_month(
            plan[0][2] + timedelta(microseconds=1)) == plan[0][3]
        merged = ", ".join((ru.one_state if one else ru.merge_states)(f, needed[f])
                           for f in fields)
        match = (f" WHERE t.series_id IN (SELECT s.series_id FROM "
                 f"{_ident('series_' + meas.name)} s WHERE " + " AND ".join(where) + ")"
                 ) if where else ""
        sql = (f"SELECT {bucket} AS time, t.series_id, {merged} FROM "
               f"({' UNION ALL '.join(parts)}) t{match}" + ("" if one else " GROUP BY ALL"))
        try:
            return self._arrow_reads().sql(
                sql, params=[_naive_utc(q.start), *params, *where_params]).to_arrow_table()
        except duckdb.Error as exc:
            raise StoreError(f"{self.url}: query on {meas.name!r} failed: {exc}") from None

    def _query_rollups(self, q: Query, meas: catalog.Measurement, plan: list) -> pd.DataFrame:
        """A quantile over rollups: the sketches' buckets summed per window and group (other
        aggregates: `_query_rollups_many`)."""
        present = self._ensure(meas)
        start = _naive_utc(q.start)
        bucket = _bucket_sql(q.window)
        where, where_params = self._where(meas, q.where)
        groups = "".join(f", s.{_ident(g)} AS {_ident(g)}" for g in q.group_by)
        join = (f"JOIN {_ident('series_' + meas.name)} s USING (series_id)"
                if where or q.group_by else "")
        filters = "".join(f" AND {c}" for c in where)
        samples = self._raw(meas.name, *_raw_span(plan))
        out = None
        keys = [TIME, *q.group_by]
        for f in q.fields:
            parts, params = [], []
            for source, grain, lo, hi in plan:
                if source == "raw":
                    parts.append(ru.raw_sketch_rows(f, samples) if f in present else
                                 "SELECT NULL::TIMESTAMP AS time, NULL::UBIGINT AS series_id, "
                                 "NULL::INTEGER AS k, NULL::BIGINT AS n WHERE FALSE")
                else:
                    parts.append(ru.sketch_rows(f, ru.sketch_table(meas.name, grain)))
                params += [lo, hi]
            part = ", ".join(["time", *(_ident(g) for g in q.group_by)])
            rank = f"{float(q.quantile)!r} * (tot - 1)"
            sql = (f"WITH b AS (SELECT {bucket} AS time{groups}, t.k AS k, sum(t.n) AS n "
                   f"FROM ({' UNION ALL '.join(parts)}) t {join} WHERE TRUE{filters} "
                   f"GROUP BY ALL), "
                   f"c AS (SELECT *, sum(n) OVER (PARTITION BY {part} ORDER BY k) AS cum, "
                   f"sum(n) OVER (PARTITION BY {part}) AS tot FROM b), "
                   f"r AS (SELECT {part}, min(k) FILTER (WHERE cum > floor({rank})) AS klo, "
                   f"min(k) FILTER (WHERE cum > ceil({rank})) AS khi, "
                   f"any_value({rank} - floor({rank})) AS frac FROM c GROUP BY ALL) "
                   f"SELECT {part}, {ru.value_sql('klo')} + frac * ({ru.value_sql('khi')} - "
                   f"{ru.value_sql('klo')}) AS {_ident(f)} FROM r ORDER BY ALL")
            got = self._run(sql, [start, *params, *where_params], meas)
            out = got if out is None else out.merge(got, on=keys, how="outer")
        return out

    def _run(self, sql: str, params: list, meas: catalog.Measurement) -> pd.DataFrame:
        try:
            return self._con.execute(sql, params).df()
        except duckdb.Error as exc:
            raise StoreError(f"{self.url}: query on {meas.name!r} failed: {exc}") from None

    # -- housekeeping ---------------------------------------------------------------------
    def delete(self, measurement: str, start: datetime, end: datetime,
               where: Mapping[str, str | Sequence[str]] | None = None) -> int:
        """Delete the samples of ``measurement`` in [start, end) whose series match ``where``
        (a tag to a value or a list of values, as in `Query`); returns rows deleted."""
        meas = catalog.measurement(measurement)
        if not self._has(measurement):
            return 0
        with self._lock:
            self._forget()
            clauses, params = self._where(meas, where)
            series = _ident("series_" + meas.name)
            match = (f" AND series_id IN (SELECT s.series_id FROM {series} s WHERE "
                     + " AND ".join(clauses) + ")") if clauses else ""
            try:
                deleted = self._con.execute(
                    f"DELETE FROM {_ident('samples_' + meas.name)} WHERE time >= ? AND "
                    f"time < ?{match}", [_naive_utc(start), _naive_utc(end), *params]
                ).fetchall()[0][0]
                deleted += self._sealed.delete(meas.name, _naive_utc(start), _naive_utc(end),
                                               match, params)
            except duckdb.Error as exc:
                raise StoreError(f"{self.url}: delete from {meas.name!r} failed: {exc}") \
                    from None
        return int(deleted)

    def drop_before(self, cutoff: datetime) -> int:
        """Raw samples older than ``cutoff`` go. In a store that keeps rollups (once
        `refresh_rollups` has run) what was written is rolled up first, and the rollups (and
        the labels of the series they hold) stay."""
        deleted = 0
        with self._lock:
            self._forget()
            if self._table_exists("pending_rollups") and any(
                    self._table_exists(ru.rollup_table(m.name, ru.HOUR))
                    for m in catalog.measurements()):
                self._refresh(None)
            tables = self._tables()
            for meas in catalog.measurements():
                if not self._has(meas.name):
                    continue
                samples = _ident("samples_" + meas.name)
                gone = self._con.execute(
                    f"DELETE FROM {samples} WHERE time < ?", [_naive_utc(cutoff)]).fetchall()[0][0]
                gone += self._sealed.drop_before(meas.name, _naive_utc(cutoff))
                deleted += gone
                if gone:  # hours before the cutoff are sealed: see `_roll`
                    self._con.execute("CREATE TABLE IF NOT EXISTS raw_expired "
                                      "(measurement VARCHAR, cutoff TIMESTAMP)")
                    self._con.execute("INSERT INTO raw_expired VALUES (?, ?)",
                                      [meas.name, _naive_utc(cutoff)])
                self._drop_unreferenced(meas.name, tables)  # rollups keep their series
        return deleted

    def _used_bytes(self) -> int:
        """Bytes in use: the file's blocks in use and the sealed files."""
        return int(self._con.execute(
            "SELECT used_blocks * block_size FROM pragma_database_size() "
            "WHERE database_name = current_database()").fetchall()[0][0]
        ) + self._sealed.disk_bytes()

    def disk_bytes(self) -> int:
        """The store's size on disk: the DuckDB file and its folder of sealed files."""
        if self.path == ":memory:":
            return 0
        self.flush()
        return Path(self.path).stat().st_size + self._sealed.disk_bytes()

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
                                [_naive_utc(rollup_cutoff)]).fetchall()[0][0]
                    self._expire_months(_naive_utc(rollup_cutoff))
                    for name in tables:
                        if name.startswith("series_"):
                            self._drop_unreferenced(name.removeprefix("series_"), tables)
                self._con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                raise StoreError(f"{self.url}: expiry failed: {exc}") from None
            finally:
                self._forget()  # where raw data and rollups begin may have moved
            if compact and self.path != ":memory:":
                self._compact()
            after = self._used_bytes()
        size = self.disk_bytes()
        log.info("store %s: expired %d raw rows before %s and %d rollup rows; %d -> %d bytes "
                 "in use", self.url, raw_rows, raw_cutoff, rollup_rows, before, after)
        return Expiry(raw_cutoff, raw_rows, rollup_cutoff, rollup_rows, before, after, size)

    def _is_rollup(self, table: str) -> bool:
        """A rollup table: a rollup prefix and rows keyed by time and series (a bookkeeping
        table such as ``rollup_dirty`` shares the prefix, not the key)."""
        return table.startswith(ROLLUP_PREFIXES) and {"time", "series_id"} <= self._columns(table)

    def _drop_unreferenced(self, measurement: str, tables: Sequence[str]) -> None:
        """Remove the series of ``measurement`` that neither raw samples nor rollups use."""
        users = [self._raw(t.removeprefix("samples_")) if t.startswith("samples_") else
                 _ident(t) for t in tables if t == "samples_" + measurement or (
                     self._is_rollup(t) and t.split("_", 2)[2:] == [measurement])]
        keep = " UNION ALL ".join(f"SELECT series_id FROM {t}" for t in users)
        self._series_ids.pop(measurement, None)
        self._con.execute(f"DELETE FROM {_ident('series_' + measurement)}"
                          + (f" WHERE series_id NOT IN ({keep})" if keep else ""))

    def _compact(self) -> None:
        """Rewrite the database into a fresh file and swap it in: DuckDB never returns freed
        blocks to the file system, a copy holds only the live ones."""
        tmp = self.path + ".compact"
        for p in (tmp, tmp + ".wal"):
            Path(p).unlink(missing_ok=True)
        db = self._con.execute("SELECT current_database()").fetchall()[0][0]
        try:
            self._con.execute(f"ATTACH '{tmp}' AS _compact")
            self._con.execute(f"COPY FROM DATABASE {_ident(db)} TO _compact")
            self._con.execute("DETACH _compact")
        except duckdb.Error as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StoreError(f"{self.url}: compaction failed: {exc}") from None
        if self._reads is not None:
            self._reads.close()
            self._reads = None
        self._close_helper()
        self._con.close()
        os.replace(tmp, self.path)
        self._con = duckdb.connect(self.path)
        if self._threads:
            self._con.execute(f"SET threads = {int(self._threads)}")
        if self._memory_limit:
            self._con.execute(f"SET memory_limit = '{self._memory_limit}'")
        self._fields.clear()
        self._series_ids.clear()
        self._sealed.attach(self._con)

    def _close_helper(self) -> None:
        """Close the second connections (reopened when next needed)."""
        for con in (self._helper, self._parts_cursor):
            if con is not None:
                con.close()
        self._helper = self._parts_cursor = None

    def close(self) -> None:
        """Finish the pending writes (a failed one is raised once the store is closed),
        then close the connections."""
        with self._lock.unsettled():
            try:
                self._settle()
            finally:
                if self._reads is not None:
                    self._reads.close()
                self._close_helper()
                for pool in (self._executor, self._parts_executor):
                    if pool is not None:
                        pool.shutdown()
                self._executor = self._parts_executor = None
                self._con.close()
                _unsettled.discard(self)

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_reader(path: str | Path, *, memory_limit: str | None = None) -> DuckDBStore:
    """An existing store opened for a command that only reads it (a report): read-only, so
    that several run side by side on one file (DuckDB's lock admits many readers or one
    writer); read-write as before where reading would write first (`DuckDBStore.
    writes_pending`: rollups to bring up to date), and if another process has the file open
    then, a `StoreError` that says so."""
    store = DuckDBStore(path, create=False, memory_limit=memory_limit, read_only=True)
    if not store.writes_pending():
        return store
    store.close()
    try:
        return DuckDBStore(path, create=False, memory_limit=memory_limit)
    except StoreError as exc:
        raise StoreError(f"{store.url}: has rollups to bring up to date before it is read, "
                         f"and another process has it open: run `computewatch rollup --store "
                         f"{store.url}` once it is free ({exc})") from None
