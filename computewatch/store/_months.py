"""Monthly rollups of the embedded store: per series and UTC calendar month, its days merged.

Why: a month's report over daily rollups read 30 rows per series (June of 100,000
accelerators: 3 M rows scanned and merged into 387,000 series states), a year's 365; a
month row (``rollup_1mo_m``, ``sketch_1mo_m``) holds the same mergeable states as the days
it merges (`computewatch.store._rollups`), so whole months are read from one row each and
give the same numbers (floating-point summation order aside): utilization, idle hours,
meter readings for PUE, probe counts, and the latency sketches' buckets summed.

Time zone: UTC months, because the days they are merged from are UTC days (a month row is
exactly its days). A report's period is a China-time month (UTC+8: from 16:00 UTC on the
previous month's last day), which is not made of whole UTC days: where history is kept as
daily rollups only, `computewatch.reports.readable_period` already reads it as the UTC month,
which these rows answer; over hourly rollups the period's edges fall inside UTC days, so it is
read from hours as before (a China-time month grain would have to be merged from the hours,
and could not serve history kept as days).

Maintenance, as the days': whatever writes or recomputes days (`DuckDBStore.write_rollup`,
the hourly refresh) notes their months in ``pending_months`` in its own transaction; a
refresh (scheduled, before retention, before any query that plans over rollups) merges those
months again from their days. Retention that cuts a month keeps its row, merged again from
the days left. A store written before month rollups gets them on its first refresh: every
month its days span is pending when the month table is made.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import duckdb

from computewatch import catalog
from computewatch.store import _rollups as ru
from computewatch.store._protocol import Query, StoreError

__all__ = ["MonthRollups", "ceil_month", "floor_month"]

_PENDING = "pending_months"


def floor_month(t: datetime) -> datetime:
    """The start of ``t``'s month."""
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def ceil_month(t: datetime) -> datetime:
    """``t`` if it starts a month, else the start of the next one."""
    down = floor_month(t)
    return t if down == t else _next_month(down)


def _next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class MonthRollups:
    """The month grain's part of `DuckDBStore` (its connection, tables and rollup tables)."""

    url: str
    _con: duckdb.DuckDBPyConnection
    _months_clean: set[str]  # measurements with no pending month (per connection)
    _table_exists: Callable[[str], bool]
    _columns: Callable[[str], set[str]]
    _rollup_tables: Callable[[catalog.Measurement, set[str]], set[str]]
    _rolled: dict[str, set[str]]

    def _mark_months(self, measurement: str, lo: datetime, hi: datetime) -> None:
        """Note the months of the days [lo, hi) (naive UTC) as changed (in the caller's
        transaction); `_refresh_months` merges them again."""
        self._con.execute(f"CREATE TABLE IF NOT EXISTS {_PENDING} "
                          "(measurement VARCHAR, lo TIMESTAMP, hi TIMESTAMP)")
        self._con.execute(f"INSERT INTO {_PENDING} VALUES (?, ?, ?)",
                          [measurement, floor_month(lo), ceil_month(hi)])
        self._months_clean.discard(measurement)

    def _new_months(self, meas: catalog.Measurement) -> None:
        """Before the month tables are made: a store whose days predate them has every
        month they span pending."""
        daily = ru.rollup_table(meas.name, ru.DAY)
        if self._table_exists(ru.rollup_table(meas.name, ru.MONTH)) \
                or not self._table_exists(daily):
            return
        lo, hi = self._con.execute(f"SELECT min(time), max(time) FROM {_q(daily)}").fetchall()[0]
        if lo is not None:
            self._mark_months(meas.name, lo, hi + ru.DAY)

    def _refresh_months(self, measurement: str | None) -> None:
        """Merge the pending months (of one measurement, or all) again from their days."""
        names = [measurement] if measurement else [m.name for m in catalog.measurements()]
        for name in names:
            if name in self._months_clean or not self._table_exists(
                    ru.rollup_table(name, ru.DAY)):
                continue
            if self._table_exists(ru.rollup_table(name, ru.MONTH)) and not self._pending(name):
                self._months_clean.add(name)  # a report's queries ask a few times each
                continue
            meas = catalog.measurement(name)
            try:
                self._con.execute("BEGIN")
                daily = self._columns(ru.rollup_table(name, ru.DAY))
                fields = self._rollup_tables(  # made here, as wide as the days, in an older store
                    meas, {f for f in meas.fields if ru.state_column(f, "n") in daily})
                ranges = self._pending(name)
                for lo, hi in ru.coalesce(ranges):
                    while lo < hi:  # a month a time: a year's days at once held 2.7 GB
                        self._merge_months(meas, [f for f in meas.fields if f in fields], lo,
                                           _next_month(lo))
                        lo = _next_month(lo)
                if ranges:
                    self._con.execute(f"DELETE FROM {_PENDING} WHERE measurement = ?", [name])
                self._con.execute("COMMIT")
            except duckdb.Error as exc:
                self._con.execute("ROLLBACK")
                self._rolled.clear()
                raise StoreError(f"{self.url}: month rollup of {name!r} failed: {exc}") from None
            self._months_clean.add(name)

    def _pending(self, measurement: str) -> list[tuple[datetime, datetime]]:
        """The pending month ranges of ``measurement``."""
        if not self._table_exists(_PENDING):
            return []
        return self._con.execute(f"SELECT lo, hi FROM {_PENDING} WHERE measurement = ?",
                                 [measurement]).fetchall()

    def _merge_months(self, meas: catalog.Measurement, fields: list[str], lo: datetime,
                      hi: datetime) -> None:
        """The month rows of [lo, hi) (whole months) from the daily rows."""
        monthly, daily = (_q(ru.rollup_table(meas.name, g)) for g in (ru.MONTH, ru.DAY))
        self._con.execute(f"DELETE FROM {monthly} WHERE time >= ? AND time < ?", [lo, hi])
        if fields:
            cols = ", ".join(_q(c) for c, _ in ru.rollup_columns(fields))
            source = f"(SELECT * FROM {daily} WHERE time >= ? AND time < ?)"
            merged = ru.merge_select(fields, source, "date_trunc('month', time)")
            # in time order, so a month's rows share row groups and a scan of one month
            # skips the others' by their time ranges
            self._con.execute(f"INSERT INTO {monthly} (time, series_id, {cols}) "
                              f"SELECT * FROM ({merged}) ORDER BY time, series_id", [lo, hi])
        if not ru.sketched(meas):
            return
        ms, ds = (_q(ru.sketch_table(meas.name, g)) for g in (ru.MONTH, ru.DAY))
        self._con.execute(f"DELETE FROM {ms} WHERE time >= ? AND time < ?", [lo, hi])
        self._con.execute(f"INSERT INTO {ms} SELECT date_trunc('month', time), series_id, "
                          f"field, k, sum(n) FROM {ds} WHERE time >= ? AND time < ? "
                          "GROUP BY ALL", [lo, hi])

    def _expire_months(self, cutoff: datetime) -> None:
        """After rows before ``cutoff`` (naive UTC) went from every rollup table: the month
        that holds it (its row went with them) merged again from the days left."""
        for meas in catalog.measurements():
            if self._table_exists(ru.rollup_table(meas.name, ru.MONTH)):
                self._mark_months(meas.name, cutoff, cutoff + timedelta(microseconds=1))
        self._refresh_months(None)

    def _day_segments(self, meas: catalog.Measurement, q: Query, lo: datetime,
                      hi: datetime) -> list[tuple]:
        """A plan's daily part [lo, hi) (whole days): the whole months in it read from month
        rows, where the query asks one window over its range (a month is no fixed window)."""
        m0, m1 = ceil_month(lo), floor_month(hi)
        one = q.window is None or q.window >= q.end - q.start
        if not one or m0 >= m1 or not self._table_exists(ru.rollup_table(meas.name, ru.MONTH)):
            return [("rollup", ru.DAY, lo, hi)]
        parts = [("rollup", ru.DAY, lo, m0), ("rollup", ru.MONTH, m0, m1),
                 ("rollup", ru.DAY, m1, hi)]
        return [p for p in parts if p[2] < p[3]]
