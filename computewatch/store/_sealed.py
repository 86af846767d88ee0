"""Sealed hours of raw samples: zstd Parquet files beside the DuckDB file.

Why: DuckDB's own file keeps the demo's day at ~22 bytes per accelerator sample however the
rows are ordered (its ALP and bit-packing gain little from coarse decimals, and its zstd
reaches only strings), while the same rows as DuckDB's v2 Parquet with zstd, sorted by series
and time, take ~5.5 (bench/bench_storage.py). So raw samples live in Parquet parts,
``<db>.parquet/<m>/<hour>.<part>.parquet``, an hour holding one part or several; a store is
the DuckDB file and that folder.

- Parts are sized by rows, not by hours (`PART_ROWS`): a part holds at least that many rows
  (but for ``delete`` and retention's rewrites). A large write spanning a good part of an
  hour (`direct`: the demo, the benches and backfills write an hour of the fleet at a time)
  sends each clock hour in which it holds `PART_ROWS` rows or more straight to a new part of
  that hour: no insert into ``samples_<m>``, no delete, no freed blocks in the file. Such
  a write's rows are laid out hour by hour (`write_parts`), so a part is a slice of them.
  Its other rows (sparse hours: a year of hourly meter readings in one frame) land in
  ``samples_<m>`` with the smaller writes (an agent's minutes). The store writes such parts
  on a second connection in a thread (`write_planned`) while the caller goes on, and commits
  the write when it is next used (`DuckDBStore._settle`): the names are given first, in the
  caller's thread (`plan_parts`).
- Once a newer hour has begun, the live table's complete hours are moved into parts, oldest
  first, one part per run of consecutive hours holding `PART_ROWS` rows together (a dense
  hour alone; a day or a month of sparse rows; a run still short of it stays live). Why:
  every part costs every later query and write that names it (a footer bound, a file
  opened), so a year of hourly rows as one part an hour (8,760) made every step after it
  slow, and a part of a few rows compresses no better than the table.
- A second writer or a late row adds a part; nothing is rewritten but by ``delete`` and
  retention.

- Reads see both as one relation (`Sealed.relation`): the live table UNION ALL BY NAME the
  files the manifest lists (a file sealed before a field existed reads it as NULL); a
  query over a time range names only the parts whose first and last times (the manifest's)
  overlap it.
- A field whose values in a part are exact at 4 to 9 decimals (the probes' round-trip
  times) is stored there as integers and read back divided (`SCALED_DIGITS`): the same
  doubles, 60% fewer bytes for the links. A counter of the catalogue exact at 0 to 9
  decimals (the energy counter, in tenths of a joule) is stored as the differences of
  those integers from reading to reading in the file's order (the first reading's is the
  integer itself; across a series boundary or a reset the difference is simply large; a
  missing reading stays NULL and the next one's difference is from the reading before it),
  and read back as their running sum in the file's order divided (NULL where NULL): the
  same doubles, 2.75 -> 1.99 bytes a row for the counter (one hour of the demo's
  accelerators). Why not a sum per series: a window by series costs a sort, 0.2 s CPU per M
  rows read; the running sum in the file's order streams, 0.03 s; DuckDB reads a file in
  order and applies no filter below it, and drops the sum from a read not asking for the
  counter (its filters and projection then reach the file as for any part). The integers
  and differences are computed in numpy on the part's rows before its COPY (`_encoded`).
- Crash safety: a file is written under a temporary name and renamed, then ONE DuckDB
  transaction records it in the manifest (``sealed_files``) and deletes its rows from the
  live table (or, written directly, adds its series to the index). On open, files the
  manifest does not list (a crash between the rename and the commit, or after a rewrite's
  commit) are removed; a listed file that is missing is an error naming it.
- Late rows for a sealed hour land in the live table, are read with it, and become a new
  part of the hour at the next seal. ``delete`` and retention rewrite the files they touch
  (or remove them whole).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from computewatch import catalog
from computewatch.store._protocol import StoreError

__all__ = ["MANIFEST", "Sealed", "hour_units"]

log = logging.getLogger(__name__)

MANIFEST = "sealed_files"
"""The table listing the sealed files: measurement, hour, file (relative to the folder),
rows, first and last sample time."""
HOUR = timedelta(hours=1)
PART_ROWS = 100_000
"""The fewest rows a part is made of (but for rewrites). Chosen by measurement: 4 hours of
the demo's links (294,000 rows, 73,500 an hour) as parts of 5,000 / 10,000 / 25,000 /
50,000 / 100,000 / 200,000 rows / one part take 16.9 / 16.3 / 15.0 / 14.2 / 13.5 / 13.3 /
13.0 bytes a row, and a grouped sum over them 33 / 19 / 17 / 13 / 8.5 / 11 / 13 ms CPU
(least of 5, under load 7-8): from 100,000 rows a part (about one of DuckDB's 122,880-row
row groups) is within 4% of the best size and no slower to read; below it both degrade.
The demo's facility meters (9,000 rows an hour) stay in the table until a part's worth."""
DIRECT_ROWS = PART_ROWS
"""A write of at least this many rows whose times span at least `DIRECT_SPAN` may hold a
clock hour of `PART_ROWS` rows (fewer cannot): its dense hours go straight to parts."""
DIRECT_SPAN = timedelta(minutes=15)
_PARQUET = "FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION v2"
SCALED_DIGITS = range(4, 10)
"""A field whose values in a part are all exact at 4 to 9 decimals (and whose values times
10^digits stay within 32 bits) is stored as those integers (`_scales`). Why: a double with
that many decimals has a noisy mantissa that neither dictionary pages nor zstd shrink (the
probes' round-trip times, 6.4 bytes a value as byte-stream-split doubles), while DuckDB's
delta-packed integers take about 2.3; values of fewer decimals (utilization in whole
percent, power in tenths of a watt) already compress as dictionaries, and a larger counter
(the energy counter's 33 bits) packs worse as integers than as doubles (measured: 3.6
against 2.5 bytes a row), so both stay doubles and their reads divide nothing; a counter
goes as deltas instead (`_encoded`)."""
_LIMIT = 2 ** 31 - 1
"""Scaled values stay within (-_LIMIT, _LIMIT): INTEGER columns."""
_SAMPLE = 2048
"""Rows a part's fields are first tried on for their decimals; the whole part is then
checked at the digits found."""
_DELTA_LIMIT = 2 ** 53
"""A counter stored as deltas is exact at its decimals with values times 10^digits below
this (a double holds every integer up to it)."""
_RUNNING = ("CASE WHEN {0} IS NOT NULL THEN sum({0}) OVER (ROWS BETWEEN UNBOUNDED PRECEDING "
            "AND CURRENT ROW) END")
"""A counter's value from its deltas: the running sum in the file's order, which DuckDB
streams (no partition, no sort: +0.03 s CPU per M rows against 0.2 s for a window by
series); a missing reading (NULL) stays NULL, and the sum skips it."""


def hour_units(time_type: pa.DataType) -> int:
    """An hour in the units of a time column of ``time_type``."""
    return 3_600 * {"s": 1, "ms": 10 ** 3, "us": 10 ** 6, "ns": 10 ** 9}[time_type.unit]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _decoded(scales: str) -> str:
    """The ``REPLACE`` clause turning a part's stored fields (``scales``, as `_scales`
    gives) back into the doubles written: a scaled field's integer, or a counter's running
    sum of its deltas (`_RUNNING`), over 10^digits, a division IEEE rounds to the same
    double the write checked."""
    if not scales:
        return ""
    return "REPLACE (" + ", ".join(
        f"CAST({_RUNNING.format(_q(field)) if isinstance(digits, dict) else _q(field)} "
        f"AS DOUBLE) / CAST({10 ** _digits_of(digits)} AS DOUBLE) AS {_q(field)}"
        for field, digits in json.loads(scales).items()) + ") "


def _digits_of(stored: int | dict[str, int]) -> int:
    """A field's decimals in `_scales`' JSON: an int (scaled), or ``{"delta": digits}``."""
    return stored["delta"] if isinstance(stored, dict) else stored


def _has_deltas(scales: str) -> bool:
    """Whether a part of ``scales`` holds a counter as deltas (its reads must be one file
    each, in the file's order)."""
    return '"delta"' in scales


def _reads(paths: Sequence[str], scales: str) -> str:
    """SQL of the decoded rows of the parts ``paths`` (SQL literals) that share ``scales``:
    one scan of them all, or, with a counter as deltas, one scan per file (a running sum
    must not run on from one file into the next), each in the file's order."""
    if not _has_deltas(scales):
        return (f"SELECT * {_decoded(scales)}FROM read_parquet([{', '.join(paths)}], "
                "union_by_name = true)")
    return " UNION ALL BY NAME ".join(
        f"SELECT * {_decoded(scales)}FROM read_parquet({path})" for path in paths)


def _digits(values: np.ndarray, allowed: range = SCALED_DIGITS, limit: int = _LIMIT
            ) -> int | None:
    """The fewest decimals at which every value is exact, if they are ``allowed`` and the
    values so scaled stay below ``limit``; else None."""
    if not len(values) or not np.isfinite(values).all():
        return None
    for digits in range(SCALED_DIGITS.stop):
        scale = float(10 ** digits)
        whole = np.rint(values * scale)
        if np.array_equal(whole / scale, values):
            return digits if digits in allowed and np.abs(whole).max() < limit else None
    return None


def _field_values(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """A double column's values, the NULLs left out, and which rows they are (None: all)."""
    values = column.to_numpy()
    if not column.null_count:
        return values, None
    keep = column.is_valid().to_numpy(zero_copy_only=False)
    return values[keep], keep


def _encoded(values: np.ndarray, keep: np.ndarray | None, stored: int | dict[str, int],
             scratch: np.ndarray) -> pa.Array | None:
    """``values`` (a part's, NULLs left out: `_field_values`) as `_scales` chose, if every
    one is exact at its decimals (and within bounds; else None): the integers, or, for a
    counter, each one less the one before (the first: the integer itself), in the order of
    the rows, a NULL (not in ``keep``) kept NULL. The result lives in ``scratch`` (doubles:
    two per value, and one per row when some are NULL; `_scratch`).
    Computed here, not in the COPY's SQL: a ``lag`` window over a write ran on one core and
    held every row (the demo's day: +4 s wall)."""
    n, counter = len(values), isinstance(stored, dict)
    scale, bound = float(10 ** _digits_of(stored)), _DELTA_LIMIT if counter else _LIMIT
    whole, spare = scratch[:n], scratch[n:2 * n]
    np.multiply(values, scale, out=whole)
    np.rint(whole, out=whole)
    np.divide(whole, scale, out=spare)
    if not n or not np.array_equal(spare, values) or not (
            -bound < whole.min() and whole.max() < bound):
        return None
    if counter:  # the integers into the spare half, their differences into the first
        ints, whole_ints = spare.view(np.int64), whole.view(np.int64)
        np.copyto(ints, whole, casting="unsafe")
        whole_ints[0] = ints[0]
        np.subtract(ints[1:], ints[:-1], out=whole_ints[1:])
        ints = whole_ints
    else:
        ints = spare.view(np.int32)[:n]
        np.copyto(ints, whole, casting="unsafe")
    if keep is None:
        return pa.array(ints)
    every = scratch[2 * n:2 * n + len(keep)].view(ints.dtype)[:len(keep)]
    every[:] = 0
    every[keep] = ints
    return pa.array(every, mask=~keep)


def _scales(measurement: str, head: pa.Table) -> dict[str, int | dict[str, int]]:
    """The fields to store as integers, with their decimals (`SCALED_DIGITS` says
    which), and the counters to store as deltas (``{"delta": digits}``: the catalogue's
    counters exact at 0 to 9 decimals), as the part's first rows (``head``) say, NULLs
    aside; `_encoded` then checks every row. A NULL stays NULL; -0.0 reads back as 0.0,
    equal to it."""
    counters = _counters(measurement)
    found: dict[str, int | dict[str, int]] = {}
    for name in head.column_names:
        if head.schema.field(name).type != pa.float64():
            continue
        known = _field_values(head.column(name))[0]
        if name in counters:
            digits = _digits(known, range(SCALED_DIGITS.stop), _DELTA_LIMIT)
            if digits is not None:
                found[name] = {"delta": digits}
        elif (digits := _digits(known)) is not None:
            found[name] = digits
    return found


def _counters(measurement: str) -> frozenset[str]:
    """The catalogue's counter fields of ``measurement`` (none for one it does not know)."""
    try:
        meas = catalog.measurement(measurement)
    except KeyError:
        return frozenset()
    return frozenset(f for f in meas.fields if meas.metric(f).kind is catalog.Kind.COUNTER)


def _scratch(buffers: list[np.ndarray], i: int, n: int) -> np.ndarray:
    """The ``i``-th encoded field's memory for `_encoded` in a part: ``n`` doubles or more,
    kept in ``buffers`` and the same for every part of a run of direct writes (its values
    are read by the part's COPY, then free; a seal or a rewrite lets the store's go). Why: a
    fresh array is faulted in and zeroed by the kernel for every part (perf of the demo's
    writes: ~0.2 s of system time every 6 hours for the counter's two arrays a part)."""
    while len(buffers) <= i:
        buffers.append(np.empty(0))
    if len(buffers[i]) < n:
        buffers[i] = np.empty(n)
    return buffers[i]


class Sealed:
    """The sealed files of one store (`DuckDBStore`): its connection does the SQL, under
    the store's lock; a store in memory (``folder`` None) seals nothing."""

    def __init__(self, con: duckdb.DuckDBPyConnection, db_path: str, url: str, *,
                 read_only: bool = False) -> None:
        self.folder = None if db_path == ":memory:" else Path(db_path + ".parquet")
        self.url = url
        self.read_only = read_only
        self._con = con
        self._cache_footers()
        self._files: dict[str, list[tuple[datetime, str, int]]] | None = None
        self._spans: dict[tuple[str, str], tuple[datetime, datetime, str]] = {}
        self._relations: dict[str, str] = {}
        self._newest: dict[str, datetime] = {}  # each measurement's newest live hour
        self._held: dict[str, int] = {}  # its live rows, at most (`seal`)
        self._buffers: list[np.ndarray] = []  # `_scratch` of seals and rewrites

    # -- the manifest ---------------------------------------------------------------------
    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Use ``con`` from now on (the store reopened its file)."""
        self._con = con
        self._cache_footers()
        self._forget()

    def _cache_footers(self) -> None:
        """Keep the parts' footers in memory: every query over the relation binds all of
        them and prunes row groups by their statistics (32 ms a query over 24 parts
        uncached, 3 ms cached; a part is never changed in place)."""
        if self.folder is not None:
            self._con.execute("SET parquet_metadata_cache = true")

    def _forget(self) -> None:
        self._files = None
        self._spans.clear()
        self._relations.clear()
        self._newest.clear()
        self._held.clear()

    def files(self, measurement: str) -> list[tuple[datetime, str, int]]:
        """(hour, file, rows) of the sealed files of ``measurement``, by hour: a part's first
        hour (an hour may have several parts, a part several hours: the manifest's first and
        last times say which)."""
        if self._files is None:
            self._files = {}
            if self.folder is not None and self._manifest_exists():
                scales = "scales" if self._has_scales() else "''"
                for m, hour, name, rows, first, last, scaled in self._con.execute(
                        f"SELECT measurement, hour, file, rows, first, last, {scales} "
                        f"FROM {MANIFEST} ORDER BY measurement, hour, file").fetchall():
                    self._files.setdefault(m, []).append((hour, name, rows))
                    self._spans[m, name] = (first, last, scaled or "")
        return self._files.get(measurement, [])

    def _manifest_exists(self) -> bool:
        return bool(self._con.execute("SELECT count(*) FROM duckdb_tables() WHERE "
                                      "table_name = ?", [MANIFEST]).fetchall()[0][0])

    def _meta(self, measurement: str, name: str) -> tuple[datetime, datetime, str]:
        """The first and last sample time of a listed part, and its scales."""
        self.files(measurement)
        return self._spans[measurement, name]

    def _has_scales(self) -> bool:
        """Whether the manifest has its ``scales`` column (a store sealed before it has none:
        its parts hold every field as written)."""
        return bool(self._con.execute("SELECT count(*) FROM duckdb_columns() WHERE "
                                      "table_name = ? AND column_name = 'scales'",
                                      [MANIFEST]).fetchall()[0][0])

    def check(self) -> None:
        """On open: a listed file that is missing is an error; a file not listed (left by a
        crash before its manifest row committed, or after a rewrite's commit) is removed."""
        if self.folder is None:
            return
        self._forget()
        listed = set()
        for m in self._measurements():
            for _, name, _ in self.files(m):
                path = self.folder / m / name
                if not path.is_file():
                    raise StoreError(f"{self.url}: sealed file {path} is listed in the store's "
                                     f"manifest but missing; restore it (or the store from a "
                                     f"backup holding both)")
                listed.add(path)
        if self.read_only or not self.folder.is_dir():
            return
        for path in self.folder.glob("*/*"):
            if path not in listed:
                log.warning("store %s: removing %s, a sealed file no manifest row lists "
                            "(left by an interrupted seal)", self.url, path)
                path.unlink()

    def _measurements(self) -> list[str]:
        self.files("")
        return sorted(self._files or {})

    def relation(self, measurement: str, lo: datetime | None = None,
                 hi: datetime | None = None) -> str:
        """SQL of the relation holding every raw sample of ``measurement`` (in [lo, hi) when
        given: only the parts whose first and last times overlap it are read): the live
        table, and the sealed parts when there are any, their scaled fields decoded.

        Why the range: a query binds and opens every part its relation names, and DuckDB's
        own pruning by the footers' statistics still reads each footer (a refresh of one
        hour's rollups named the day's parts)."""
        key = f"{measurement}|{lo}|{hi}"
        got = self._relations.get(key)
        if got is None:
            live = _q("samples_" + measurement)
            groups: dict[str, list[str]] = {}
            for _, name, _ in self.files(measurement) if self.folder is not None else ():
                first, last, scales = self._meta(measurement, name)
                if (hi is None or first < hi) and (lo is None or last >= lo):
                    groups.setdefault(scales, []).append(
                        _lit(str(self.folder / measurement / name)))
            got = live
            if groups:
                reads = " UNION ALL BY NAME ".join(
                    _reads(paths, scales) for scales, paths in groups.items())
                got = f"(SELECT * FROM {live} UNION ALL BY NAME {reads})"
            if lo is None and hi is None:  # ranged ones are cheap to make, and many
                self._relations[key] = got
        return got

    def disk_bytes(self) -> int:
        """Bytes of the sealed files on disk."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.folder.glob("*/*") if p.is_file())

    # -- sealing --------------------------------------------------------------------------
    def direct(self, rows: int, lo: datetime, hi: datetime) -> bool:
        """Whether a write of ``rows`` rows in [lo, hi] goes straight to Parquet parts."""
        return (self.folder is not None and not self.read_only and rows >= DIRECT_ROWS
                and hi - lo >= DIRECT_SPAN)

    def plan_parts(self, measurement: str, times: pa.Array, edges: Sequence[int]
                   ) -> tuple[list[tuple[datetime, str, int, int]], list[tuple[int, int]]]:
        """The clock hours of a write's ``times`` (in its rows' order: by hour, then series
        and time, `series_order` with a period of `hour_units`; each hour begins at one of
        ``edges``) holding `PART_ROWS` rows or more, each (hour, its new part's name, first
        row, rows) for `write_planned`, and the other hours' (first row, rows), for the
        live table. Named here, in the caller's thread: a name comes from the manifest."""
        planned: list[tuple[datetime, str, int, int]] = []
        sparse = []  # the rows of sparse hours stay live
        for a, b in itertools.pairwise(edges):
            if b - a < PART_ROWS:
                sparse.append((a, b - a))
                continue
            hour = datetime(1970, 1, 1) + timedelta(
                hours=times[a].cast(pa.int64()).as_py() // hour_units(times.type))
            planned.append((hour, self._name(measurement, hour, [p[1] for p in planned]),
                            a, b - a))
        return planned, sparse

    def write_planned(self, con: duckdb.DuckDBPyConnection, measurement: str, rows: pa.Table,
                      planned: Sequence[tuple[datetime, str, int, int]],
                      buffers: list[np.ndarray]) -> list[tuple[datetime, str, int, str]]:
        """Write the parts `plan_parts` named, each a slice of ``rows``, by ``con`` with
        ``buffers`` as scratch (`_scratch`): safe in another thread while the store's own
        connection works, as it touches nothing else of this object. Returns (hour, file,
        rows, scales) for `record_parts`, which the caller runs inside its transaction
        (`discard` if that fails); on failure removes the parts it wrote."""
        parts: list[tuple[datetime, str, int, str]] = []
        try:
            for hour, name, a, n in planned:
                written, scales = self._write(self.folder / measurement / name, measurement,
                                              rows.slice(a, n), con, buffers)
                parts.append((hour, name, written, scales))
        except BaseException:
            for _, name, *_ in parts:
                (self.folder / measurement / name).unlink(missing_ok=True)
            raise
        return parts

    def record_parts(self, measurement: str,
                     parts: Sequence[tuple[datetime, str, int, str]]) -> None:
        """Inside the caller's transaction: list the parts `write_parts` wrote."""
        if not parts:
            return
        for hour, name, n, scales in parts:
            self._record(measurement, hour, name, n, scales)
        self._forget()

    def discard(self, measurement: str, parts: Sequence[tuple]) -> None:
        """Remove parts written but not recorded."""
        if not parts:
            return
        for _, name, *_ in parts:
            (self.folder / measurement / name).unlink(missing_ok=True)
        self._forget()

    def seal(self, measurement: str, columns: Sequence[str], lo: datetime, hi: datetime,
             rows: int) -> int:
        """After a write of ``rows`` rows into the live table in [lo, hi]: move the complete
        hours of ``measurement`` before its newest live hour into new parts of `PART_ROWS`
        rows or more (`_seal_complete`); returns rows moved. A write within the newest hour
        seals nothing, nor does one while the live table holds fewer than `PART_ROWS` rows
        in all (counted since the last look: no run of hours can make a part). Why: the two
        queries of a look cost 7 ms, and a store fed hour by hour in small writes (a test's
        432) looked after each."""
        if self.folder is None or self.read_only:
            return 0
        known, held = self._newest.get(measurement), self._held.get(measurement)
        if held is not None:
            held = self._held[measurement] = held + rows
        if known is None or lo < known or hi >= known + HOUR:
            if known is None or held is None or held >= PART_ROWS:
                return self._seal_complete(measurement, columns)
            self._newest[measurement] = max(known, hi.replace(minute=0, second=0,
                                                              microsecond=0))
        return 0

    def _seal_complete(self, measurement: str, columns: Sequence[str]) -> int:
        live = _q("samples_" + measurement)
        newest = self._con.execute(f"SELECT date_trunc('hour', max(time)) FROM {live}"
                                   ).fetchall()[0][0]
        if newest is None:
            return 0
        moved, start, held, total = 0, None, 0, 0
        for hour, n in self._con.execute(
                f"SELECT date_trunc('hour', time) AS h, count(*) FROM {live} "
                "GROUP BY h ORDER BY h").fetchall():
            total += n
            if hour >= newest:
                continue
            start, held = start or hour, held + n
            if held >= PART_ROWS:  # these hours together make a part
                moved += self._seal_hours(measurement, start, hour + HOUR, columns)
                start, held = None, 0
        self._newest[measurement], self._held[measurement] = newest, total - moved
        return moved

    def _seal_hours(self, measurement: str, lo: datetime, hi: datetime,
                    columns: Sequence[str]) -> int:
        """Move the live rows of the hours [lo, hi) into one new part, named by ``lo``."""
        live = _q("samples_" + measurement)
        cols = ", ".join(_q(c) for c in ["time", "series_id", *columns])
        name = self._name(measurement, lo, ())
        rows, scales = self._write(self.folder / measurement / name, measurement, self._con.sql(
            f"SELECT {cols} FROM {live} WHERE time >= ? AND time < ? ORDER BY series_id, time",
            params=[lo, hi]).to_arrow_table(), self._con, self._buffers)
        self._buffers.clear()  # an agent's store seals an hour at a time: keep nothing
        try:
            self._con.execute("BEGIN")
            self._record(measurement, lo, name, rows, scales)
            self._con.execute(f"DELETE FROM {live} WHERE time >= ? AND time < ?", [lo, hi])
            self._con.execute("COMMIT")
        except duckdb.Error as exc:
            self._con.execute("ROLLBACK")
            (self.folder / measurement / name).unlink(missing_ok=True)
            raise StoreError(f"{self.url}: sealing {measurement!r} at {lo} failed: "
                             f"{exc}") from None
        finally:
            self._forget()
        return rows

    def _name(self, measurement: str, hour: datetime, taken: Sequence[str]) -> str:
        """The hour's next part: one past the highest listed (or ``taken``) part number."""
        stem = f"{hour:%Y%m%dT%H}"
        names = [f[1] for f in self.files(measurement) if f[0] == hour] + [
            n for n in taken if n.startswith(stem + ".")]
        part = 1 + max((int(n.split(".")[1]) for n in names), default=-1)
        return f"{stem}.{part}.parquet"

    def _write(self, final: Path, measurement: str, rows: pa.Table,
               con: duckdb.DuckDBPyConnection, buffers: list[np.ndarray]) -> tuple[int, str]:
        """Write ``rows`` as the part ``final`` by ``con`` (temporary name, fsync, rename),
        in their order, its scaled fields as integers and its counters as deltas (`_scales`,
        `_encoded`: numpy on the rows in memory, once per field chosen, in ``buffers``);
        returns its rows and scales."""
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".tmp")
        scales: dict[str, int | dict[str, int]] = {}
        for f, stored in _scales(measurement, rows.slice(0, _SAMPLE)).items():
            encoded = _encoded(*_field_values(rows.column(f)), stored,
                               _scratch(buffers, len(scales), 3 * rows.num_rows))
            if encoded is not None:  # else a value past the rows tried is not exact
                rows = rows.set_column(rows.schema.get_field_index(f), f, encoded)
                scales[f] = stored
        con.register("_part", rows)
        try:
            con.execute("SET enable_progress_bar = false")  # a long COPY draws one
            try:
                n = con.execute(f"COPY (SELECT * FROM _part) TO {_lit(str(tmp))} ({_PARQUET})"
                                ).fetchall()[0][0]
            finally:
                con.execute("RESET enable_progress_bar")
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except (duckdb.Error, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"{self.url}: writing {final} failed: {exc}") from None
        finally:
            con.unregister("_part")
        return int(n), json.dumps(scales) if scales else ""

    def _record(self, measurement: str, hour: datetime, name: str, rows: int, scales: str,
                replaces: str | None = None) -> None:
        """Inside the caller's transaction: ``name`` is a part of the hour (none if no
        rows), its fields scaled by ``scales``, in place of the part ``replaces``."""
        self._con.execute(f"CREATE TABLE IF NOT EXISTS {MANIFEST} (measurement VARCHAR, "
                          "hour TIMESTAMP, file VARCHAR, rows BIGINT, first TIMESTAMP, "
                          "last TIMESTAMP, scales VARCHAR)")
        self._con.execute(f"ALTER TABLE {MANIFEST} ADD COLUMN IF NOT EXISTS scales VARCHAR")
        if replaces is not None:
            self._con.execute(f"DELETE FROM {MANIFEST} WHERE measurement = ? AND file = ?",
                              [measurement, replaces])
        if rows:  # its first and last time: `span` answers without reading the parts
            path = _lit(str(self.folder / measurement / name))
            self._con.execute(f"INSERT INTO {MANIFEST} (measurement, hour, file, rows, first, "
                              f"last, scales) SELECT ?, ?, ?, ?, min(time), max(time), ? "
                              f"FROM read_parquet({path})",
                              [measurement, hour, name, rows, scales])

    def span(self, measurement: str) -> tuple[datetime, datetime] | None:
        """The first and last sample time in the parts of ``measurement``, or None."""
        if not self.files(measurement):
            return None
        return self._con.execute(f"SELECT min(first), max(last) FROM {MANIFEST} WHERE "
                                 "measurement = ?", [measurement]).fetchall()[0]

    # -- deletion and retention -----------------------------------------------------------
    def delete(self, measurement: str, start: datetime, end: datetime, match: str,
               params: Sequence) -> int:
        """Rewrite the files holding samples in [start, end) whose series match ``match``
        (SQL over ``series_id`` with ``params``; "" for all) without them; returns rows
        deleted."""
        deleted = 0
        for hour, name, rows in list(self.files(measurement)):
            first, last, scales = self._meta(measurement, name)  # a part may span hours
            if last < start or first >= end:
                continue
            path = self.folder / measurement / name
            drop = f"time >= ? AND time < ?{match}"
            if first >= start and last < end and not match:
                kept = 0
            else:
                kept = self._con.execute(
                    f"SELECT count(*) FROM read_parquet({_lit(str(path))}) WHERE NOT "
                    f"({drop})", [start, end, *params]).fetchall()[0][0]
            if kept == rows:
                continue
            deleted += rows - kept
            self._replace(measurement, hour, (name, rows), kept,  # decoded, then filtered
                          f"SELECT * FROM ({_reads([_lit(str(path))], scales)}) "
                          f"WHERE NOT ({drop})", [start, end, *params])
        return deleted

    def _replace(self, measurement: str, hour: datetime, old: tuple[str, int], kept: int,
                 select: str, params: list) -> None:
        """The part ``old`` becomes ``select``'s rows (``kept`` of them; none: removed)."""
        name, scales = old[0], ""
        if kept:
            name = self._name(measurement, hour, ())
            scales = self._write(self.folder / measurement / name, measurement, self._con.sql(
                select, params=params).to_arrow_table(), self._con, self._buffers)[1]
        self._buffers.clear()
        try:
            self._con.execute("BEGIN")
            self._record(measurement, hour, name, kept, scales, replaces=old[0])
            self._con.execute("COMMIT")
        except duckdb.Error as exc:
            self._con.execute("ROLLBACK")
            raise StoreError(f"{self.url}: rewriting {measurement!r} at {hour} failed: "
                             f"{exc}") from None
        finally:
            self._forget()
        (self.folder / measurement / old[0]).unlink(missing_ok=True)

    def drop_before(self, measurement: str, cutoff: datetime) -> int:
        """Retention: remove the files wholly before ``cutoff`` and rewrite the one it
        cuts; returns rows removed."""
        return self.delete(measurement, datetime.min, cutoff, "", [])
