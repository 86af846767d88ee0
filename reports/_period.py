"""The period a report covers, as regulators name it: a month, a day or a range in China time.

Regulators count months and days in local time (UTC+8), so ``2026-10`` is
2026-09-30T16:00Z to 2026-10-31T16:00Z. Accepted forms:

- ``2026-10`` a month, ``2026-Q3`` a quarter (July to September), ``2026`` a year,
  ``2026-10-05`` a day (all China time);
- ``START/END`` an ISO 8601 range: dates or date-times; a date-time without an offset is
  China time; an end written as a date includes that day (``2026-10-01/2026-10-07`` is a week);
- a duration such as ``24h`` or ``7d``: that long, ending at the store's last sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from computewatch.durations import parse_duration
from computewatch.findings import Period
from computewatch.pue import CHINA_TZ
from computewatch.samples import EARLIEST_TIME, LATEST_TIME
from computewatch.store import Store, resolution

__all__ = ["PERIOD_FORMS", "ReportPeriod", "parse_period", "readable_period"]

CHINA = ZoneInfo(CHINA_TZ)
PERIOD_FORMS = ("YYYY-MM (a month in China time), YYYY-Qn (a quarter), YYYY, YYYY-MM-DD, "
                "START/END (ISO 8601 dates or date-times) or a duration ending at the last "
                "sample, e.g. 7d")

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")
_QUARTER = re.compile(r"^(\d{4})-[Qq](\d)$")


@dataclass(frozen=True)
class ReportPeriod:
    """A labelled half-open interval [start, end) in UTC. ``note`` says how the interval
    read differs from the one asked for (`readable_period`); empty when it does not."""

    label: str
    start: datetime
    end: datetime
    note: str = ""

    @property
    def period(self) -> Period:
        return Period(self.start, self.end)

    @property
    def days(self) -> float:
        return (self.end - self.start) / timedelta(days=1)

    def local(self) -> tuple[datetime, datetime]:
        """Start and end in China time, for display."""
        return self.start.astimezone(CHINA), self.end.astimezone(CHINA)


class _OutOfRange(Exception):
    """A date beyond what Python's dates hold (year 10000)."""


def _date(year: int, month: int, day: int = 1) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise _OutOfRange from None


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=CHINA).astimezone(UTC)


def _bad(text: str, why: str) -> ValueError:
    return ValueError(f"bad period {text!r}: {why}; write {PERIOD_FORMS}")


def _point(text: str, whole: str, *, end: bool) -> datetime:
    """One end of a range: a date (an end date includes its day) or a date-time."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            return _midnight(d + timedelta(days=1) if end else d)
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(whole, f"{raw!r} is not an ISO 8601 date or date-time ({exc})") from None
    return (t if t.tzinfo else t.replace(tzinfo=CHINA)).astimezone(UTC)


def parse_period(text: str, *, last_sample_end: datetime | None = None) -> ReportPeriod:
    """Parse a period; ``last_sample_end`` anchors a duration (the end of the store's data).

    Raises ValueError naming the text and the accepted forms, or the times a store keeps
    (`EARLIEST_TIME` to `LATEST_TIME`) when the period falls outside them.
    """
    try:
        period = _parse_period(text, last_sample_end)
    except (OverflowError, _OutOfRange):  # a year so far off that dates cannot hold it
        period = None
    if period is None or period.start < EARLIEST_TIME or period.end > LATEST_TIME:
        raise _bad(text, f"outside {EARLIEST_TIME:%Y-%m-%d} to {LATEST_TIME:%Y-%m-%d}, the "
                   "times a store keeps")
    return period


def _parse_period(text: str, last_sample_end: datetime | None) -> ReportPeriod:
    raw = text.strip()
    if not raw:
        raise _bad(text, "empty")
    if m := _MONTH.match(raw):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise _bad(text, f"month {month} is not 01-12")
        nxt = (year + month // 12, month % 12 + 1)
        return ReportPeriod(raw, _midnight(_date(year, month)), _midnight(_date(*nxt)))
    if m := _QUARTER.match(raw):
        year, quarter = int(m[1]), int(m[2])
        if not 1 <= quarter <= 4:
            raise _bad(text, f"quarter {quarter} is not 1-4")
        first = 3 * (quarter - 1) + 1
        nxt = (year + 1, 1) if quarter == 4 else (year, first + 3)
        return ReportPeriod(f"{year}-Q{quarter}", _midnight(_date(year, first)),
                            _midnight(_date(*nxt)))
    if m := _YEAR.match(raw):
        year = int(m[1])
        return ReportPeriod(raw, _midnight(_date(year, 1)), _midnight(_date(year + 1, 1)))
    if "/" in raw:
        a, _, b = raw.partition("/")
        start, end = _point(a, text, end=False), _point(b, text, end=True)
        if end <= start:
            raise _bad(text, "the end is not after the start")
        return ReportPeriod(raw, start, end)
    if len(raw) == 10 and raw[4] == "-":
        try:
            d = date.fromisoformat(raw)
        except ValueError as exc:
            raise _bad(text, str(exc)) from None
        return ReportPeriod(raw, _midnight(d), _midnight(d + timedelta(days=1)))
    try:
        seconds = parse_duration(raw)
    except ValueError:
        raise _bad(text, "not a month, day, range or duration") from None
    if seconds <= 0:
        raise _bad(text, "a duration must be positive")
    if last_sample_end is None:
        raise _bad(text, "a duration needs a store with data to end at")
    return ReportPeriod(f"last {raw}", last_sample_end - timedelta(seconds=seconds),
                        last_sample_end)


_MEASUREMENTS = ("accelerator", "facility_power", "link_latency")


def readable_period(store: Store, period: ReportPeriod) -> ReportPeriod:
    """The period as ``store`` can answer it. Where history is kept as daily rollups only
    (UTC days: a year's backfill, `DuckDBStore.write_rollup`), a China-time day starts at
    16:00 UTC, inside a rollup day: an end that falls there moves to the next UTC midnight
    (8 hours later), so a year is read as 1 January to 1 January UTC; ``note`` says so and
    the report states it. Periods over raw data and hourly rollups are read as asked."""
    def coarsest(t: datetime) -> timedelta:
        return max(resolution(store, m, t) for m in _MEASUREMENTS)

    day = timedelta(days=1)
    start, end = period.start, period.end
    moved = []
    if coarsest(start) >= day and start != _floor_day(start):
        start = _floor_day(start) + day
        moved.append("start")
    last = end - timedelta(microseconds=1)
    if coarsest(last) >= day and end != _floor_day(end):
        end = _floor_day(end) + day
        moved.append("end")
    if not moved or end <= start:
        return period
    return ReportPeriod(period.label, start, end,
                        f"read {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: the store "
                        f"keeps this history as daily rollups (UTC days), so the period's "
                        f"{' and '.join(moved)} moved to the next UTC midnight")


def _floor_day(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)
