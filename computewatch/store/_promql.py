"""A `Query` as PromQL / MetricsQL: label matchers, the aggregate's expression, evaluation times.

Shared by the VictoriaMetrics store (MetricsQL) and the Prometheus store (PromQL). Nothing here
talks to a server; `computewatch.store._promapi` sends what this module builds.

**Windows.** The store's windows are half-open ``[t, t+w)`` and start at ``Query.start``. A
range selector ``[r]`` evaluated at time ``T`` covers ``(T-r, T]`` in VictoriaMetrics and in
Prometheus 3, and ``[T-r, T]`` in Prometheus 2. Both engines keep millisecond timestamps, so
evaluating at ``T = t + w - 1 ms`` with ``r = w`` (left-open) or ``r = w - 1 ms`` (closed)
covers exactly the samples in ``[t, t+w)``. Evaluation times are steps of ``query_range``
(``step = w``), never step-aligned by the server; a last window cut short by ``Query.end``
is evaluated on its own with a shorter range; long ranges are split so that no request asks
for more than `MAX_POINTS` points per series (Prometheus refuses more than 11,000,
VictoriaMetrics 1.79 more than 30,000). ``window=None`` is one evaluation covering
``[start, end)``. A window must be a whole number of milliseconds; start and end may carry
microseconds (samples are whole milliseconds, so a bound rounds up to the next one).

**Aggregates** (``S`` is the field's series with the query's matchers, ``by`` the group-by):

- mean: ``sum by (g) (sum_over_time(S[r])) / sum by (g) (count_over_time(S[r]))``: the mean
  of every sample of every series in the group, exactly as the embedded store computes it
  (an average of per-series averages would weight a half-empty series like a full one);
- sum / count: ``sum by (g)`` of ``sum_over_time`` / ``count_over_time``; exact;
- min / max: ``min by (g) (min_over_time)`` / ``max by (g) (max_over_time)``; exact;
- last: MetricsQL picks, per group, the series whose last sample is the latest
  (``tlast_over_time`` compared with its group maximum) and returns its ``last_over_time``;
  exact (equal timestamps resolve to the largest value). PromQL has no timestamp of the last
  sample in a range, so the Prometheus store returns the largest of the series' last values:
  exact when a group is one series, which is how the pipelines group (a meter, a device).
- quantile: ``quantile_over_time`` interpolates linearly between order statistics, as the
  embedded store's ``quantile_cont`` does, so a group that is one series is exact. A quantile
  over *several* series needs every sample, which neither engine can merge inside a query;
  those groups are approximated: MetricsQL merges ``histogram_over_time`` buckets (about 18
  per decade: within a few percent of the value) and interpolates with
  ``histogram_quantile``; PromQL takes the same quantile of the series' quantiles. One query
  does both: ``(single-series groups, exact) or (the others, approximate)``.

**Labels.** A tag absent from a series reads as ``''`` (``tag=""`` matches it, as in the
embedded store); a list of accepted values becomes an anchored regex alternation of escaped
values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from computewatch import catalog
from computewatch.store._protocol import Aggregate, Query, StoreError, check_where

__all__ = [
    "MAX_POINTS",
    "Dialect",
    "Evaluation",
    "evaluations",
    "expression",
    "matchers",
    "ms",
    "quote",
    "regex_escape",
    "selector",
    "summed",
]

MAX_POINTS = 10_000
"""Points per series in one request; below both engines' limits."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REGEX_SPECIAL = set(r"\.+*?()|[]{}^$")


class Dialect(StrEnum):
    METRICSQL = "metricsql"
    PROMQL = "promql"


def ms(t: datetime) -> int:
    """Milliseconds since the epoch, rounded up: the first whole millisecond at or after ``t``."""
    if t.tzinfo is None:
        raise ValueError(f"time {t.isoformat()} has no timezone")
    d = t - _EPOCH
    micros = (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
    return -(-micros // 1000)


def quote(value: str) -> str:
    """A PromQL double-quoted string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def regex_escape(value: str) -> str:
    """Escape RE2 metacharacters (RE2 rejects escapes of letters, so only these)."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in value)


def matchers(meas: catalog.Measurement, where: Mapping[str, str | Sequence[str]] | None,
             source: str) -> list[str] | None:
    """Label matchers for ``where``; None when a tag accepts no value (nothing can match)."""
    filters = check_where(meas, where, source)
    if filters is None:
        return None
    return [f"{tag}={quote(values[0])}" if len(values) == 1 else
            f"{tag}=~{quote('|'.join(regex_escape(v) for v in values))}"
            for tag, values in filters]


def selector(name: str, label_matchers: Sequence[str]) -> str:
    return "{" + ", ".join([f"__name__={quote(name)}", *label_matchers]) + "}"


def _by(group_by: Sequence[str], extra: Sequence[str] = ()) -> str:
    labels = [*group_by, *extra]
    return f" by ({', '.join(labels)})" if labels else ""


def summed(q: Query, series: str, range_ms: int) -> str:
    """Per group and window, the sum of ``series``' samples (of rollups: of their sums or
    counts)."""
    return f"sum{_by(q.group_by)} (sum_over_time({series}[{range_ms}ms]))"


def expression(q: Query, series: str, range_ms: int, dialect: Dialect) -> str:
    """The expression whose value at an evaluation time is the aggregate of one window."""
    s = f"{series}[{range_ms}ms]"
    by = _by(q.group_by)
    on = f"on({', '.join(q.group_by)})"
    match q.agg:
        case Aggregate.MEAN:
            return f"sum{by} (sum_over_time({s})) / sum{by} (count_over_time({s}))"
        case Aggregate.SUM:
            return summed(q, series, range_ms)
        case Aggregate.COUNT:
            return f"sum{by} (count_over_time({s}))"
        case Aggregate.MIN:
            return f"min{by} (min_over_time({s}))"
        case Aggregate.MAX:
            return f"max{by} (max_over_time({s}))"
        case Aggregate.LAST:
            if dialect is Dialect.METRICSQL:
                latest = (f"tlast_over_time({s}) == {on} group_left() "
                          f"max{by} (tlast_over_time({s}))")
                return f"max{by} ((last_over_time({s}) + 0) and ({latest}))"
            return f"max{by} (last_over_time({s}))"
        case Aggregate.QUANTILE:
            phi = repr(float(q.quantile))
            single = (f"max{by} (quantile_over_time({phi}, {s})) and {on} "
                      f"(count{by} (count_over_time({s})) == 1)")
            if dialect is Dialect.METRICSQL:
                merged = (f"histogram_quantile({phi}, sum{_by(q.group_by, ['vmrange'])} "
                          f"(histogram_over_time({s})))")
            else:
                merged = f"quantile{by} ({phi}, quantile_over_time({phi}, {s}))"
            return f"({single}) or ({merged})"
    raise StoreError(f"unsupported aggregate {q.agg!r}")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One ``query_range`` request: ``points`` windows of ``step_ms`` whose first starts at
    ``first_window``; evaluated at ``first_ms``, ``first_ms + step_ms``, ... with range
    ``range_ms`` (the lookbehind that covers one window for the engine's window semantics)."""

    first_window: datetime
    window: timedelta
    first_ms: int
    step_ms: int
    points: int
    range_ms: int

    @property
    def last_ms(self) -> int:
        return self.first_ms + (self.points - 1) * self.step_ms

    def window_start(self, eval_ms: int) -> datetime:
        k = round((eval_ms - self.first_ms) / self.step_ms)
        if not 0 <= k < self.points:
            raise StoreError(f"server answered for time {eval_ms} ms, outside the "
                             f"{self.points} points asked from {self.first_ms} ms")
        return self.first_window + k * self.window


def _range(low_ms: int, high_ms: int, left_open: bool, source: str) -> int:
    r = high_ms - low_ms if left_open else high_ms - low_ms - 1
    if r < 1:
        raise StoreError(f"{source}: a window of {high_ms - low_ms} ms cannot be selected by a "
                         "closed range (Prometheus 2 ranges include both ends)")
    return r


def evaluations(q: Query, *, left_open: bool, max_points: int = MAX_POINTS,
                source: str = "store") -> Iterator[Evaluation]:
    """The requests that cover the query's windows; see the module docstring."""
    lo, hi = ms(q.start), ms(q.end)
    if q.window is None:
        if hi > lo:
            yield Evaluation(q.start, q.end - q.start, hi - 1, hi - lo, 1,
                             _range(lo, hi, left_open, source))
        return
    w_us = q.window // timedelta(microseconds=1)
    if w_us % 1000 or w_us < 2000:
        raise StoreError(f"{source}: window {q.window} is not a whole number of milliseconds "
                         "(at least 2 ms); the engine keeps millisecond timestamps")
    w_ms = w_us // 1000
    n_windows = math.ceil((q.end - q.start) / q.window)
    full = n_windows if q.start + n_windows * q.window <= q.end else n_windows - 1
    for first in range(0, full, max_points):
        points = min(max_points, full - first)
        t0 = q.start + first * q.window
        low = ms(t0)
        yield Evaluation(t0, q.window, low + w_ms - 1, w_ms, points,
                         _range(low, low + w_ms, left_open, source))
    if full < n_windows:  # the last window, cut short by the query's end
        t0 = q.start + full * q.window
        low = ms(t0)
        if hi > low:
            yield Evaluation(t0, q.window, hi - 1, w_ms, 1, _range(low, hi, left_open, source))
