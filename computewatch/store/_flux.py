"""A `Query` as Flux, for InfluxDB 2 (``/api/v2/query``).

Shape of every read::

    from(bucket: "telemetry")
      |> range(start: <Query.start>, stop: <Query.end>)          // half-open, as the store's
      |> filter(fn: (r) => r._measurement == "accelerator")
      |> filter(fn: (r) => r._field == "utilization_ratio" or ...)
      |> filter(fn: (r) => r["site"] == "bj-1" or r["site"] == "sh-1")   // where
      |> group(columns: ["site", "_field"])                        // group_by, one table per field
      |> aggregateWindow(every: <window>, offset: <start mod window>, fn: mean,
                         createEmpty: false, timeSrc: "_start")

``group()`` merges every series of a group into one table, so each aggregate runs over every
sample of every series, as in the embedded store: mean, min, max, sum and count are exact;
*last* sorts the merged table by time first (``group()`` keeps no order); *quantile* uses
``method: "exact_mean"``, which Flux computes by linear interpolation between the two nearest
order statistics (the embedded store's ``quantile_cont``). The ``offset`` aligns Flux's
epoch-aligned windows to ``Query.start``; ``timeSrc: "_start"`` labels each window with its
start. ``window=None`` drops ``aggregateWindow`` and applies the aggregate to the whole range.
A tag absent from a series is null in Flux; ``where`` with ``''`` matches it
(``not exists r["tag"] or r["tag"] == ""``) and a null group reads as ``''``.

Nothing here was run against a live InfluxDB 2 (there is no server package here): the query
text is fixed by tests, and the parsing of answers is tested on annotated CSV in the server's
wire format (tests/fixtures/influxdb/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from computewatch import catalog
from computewatch.store._protocol import Aggregate, Query, check_where

__all__ = ["duration", "flux_query", "flux_rows", "flux_series", "flux_string", "flux_time",
           "flux_time_bounds", "tag_filter"]

_FN = {Aggregate.MEAN: "mean", Aggregate.MIN: "min", Aggregate.MAX: "max",
       Aggregate.SUM: "sum", Aggregate.COUNT: "count"}


def flux_string(s: str) -> str:
    """A Flux string literal (Flux also interpolates ``${...}``, so ``$`` is escaped too)."""
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + out.replace("$", "\\$") + '"'


def flux_time(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError(f"time {t.isoformat()} has no timezone")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration(d: timedelta) -> str:
    """A Flux duration literal in whole microseconds (``3600000000us``)."""
    return f"{d // timedelta(microseconds=1)}us"


def tag_filter(meas: catalog.Measurement, where: Mapping[str, str | Sequence[str]] | None,
               source: str) -> list[str] | None:
    """One ``filter`` predicate per tag; None when a tag accepts no value."""
    filters = check_where(meas, where, source)
    if filters is None:
        return None
    out = []
    for tag, values in filters:
        ref = f"r[{flux_string(tag)}]"
        terms = [f"(not exists {ref} or {ref} == \"\")" if v == "" else
                 f"{ref} == {flux_string(v)}" for v in values]
        out.append(" or ".join(terms))
    return out


def _source(bucket: str, meas: str, start: datetime, end: datetime) -> list[str]:
    return [f"from(bucket: {flux_string(bucket)})",
            f"  |> range(start: {flux_time(start)}, stop: {flux_time(end)})",
            f"  |> filter(fn: (r) => r._measurement == {flux_string(meas)})"]


def _agg_fn(q: Query) -> str:
    if q.agg is Aggregate.LAST:
        return "last"
    if q.agg is Aggregate.QUANTILE:
        return (f"(column, tables=<-) => tables |> quantile(q: {float(q.quantile)!r}, "
                f'method: "exact_mean", column: column)')
    return _FN[q.agg]


def flux_query(q: Query, bucket: str, predicates: Sequence[str]) -> str:
    """The Flux text of a windowed aggregate (see the module docstring)."""
    lines = _source(bucket, q.measurement, q.start, q.end)
    fields = " or ".join(f"r._field == {flux_string(f)}" for f in q.fields)
    lines.append(f"  |> filter(fn: (r) => {fields})")
    lines += [f"  |> filter(fn: (r) => {p})" for p in predicates]
    groups = ", ".join(flux_string(g) for g in [*q.group_by, "_field"])
    lines.append(f"  |> group(columns: [{groups}])")
    if q.agg is Aggregate.LAST:
        lines.append('  |> sort(columns: ["_time"])')
    fn = _agg_fn(q)
    if q.window is None:
        if q.agg is Aggregate.QUANTILE:
            lines.append(f'  |> quantile(q: {float(q.quantile)!r}, method: "exact_mean")')
        else:
            lines.append(f"  |> {fn}()")
    else:
        offset = (q.start - datetime(1970, 1, 1, tzinfo=UTC)) % q.window
        lines.append(f"  |> aggregateWindow(every: {duration(q.window)}, "
                     f"offset: {duration(offset)}, fn: {fn}, createEmpty: false, "
                     'timeSrc: "_start")')
    keep = ", ".join(flux_string(c) for c in ["_time", "_field", "_value", *q.group_by])
    lines.append(f"  |> keep(columns: [{keep}])")
    return "\n".join(lines)


def flux_series(meas: catalog.Measurement, bucket: str, predicates: Sequence[str],
                start: datetime, end: datetime, name: str | None = None) -> str:
    """One row per label set: the first value of each series, tags kept (of the
    measurement ``name``, its rollups', where given)."""
    lines = _source(bucket, name or meas.name, start, end)
    lines += [f"  |> filter(fn: (r) => {p})" for p in predicates]
    tags = ", ".join(flux_string(t) for t in meas.labels)
    lines += [f"  |> group(columns: [{tags}])", "  |> first()",
              f"  |> keep(columns: [{tags}])", "  |> group()"]
    return "\n".join(lines)


def flux_time_bounds(measurement: str, bucket: str, start: datetime, end: datetime) -> str:
    """First and last sample time of a measurement (two tables, ``min`` and ``max``)."""
    base = "\n".join(_source(bucket, measurement, start, end))
    return (f"data = {base}\n  |> keep(columns: [\"_time\"])\n  |> group()\n"
            'data |> min(column: "_time") |> yield(name: "first")\n'
            'data |> max(column: "_time") |> yield(name: "last")')


def flux_rows(bucket: str, measurement: str, start: datetime, end: datetime,
              fields: str | None, predicates: Sequence[str], tags: Sequence[str]) -> str:
    """Every value in ``[start, end)`` as it is stored, one row per value (time, field,
    value and ``tags``): ``fields`` a predicate on ``r._field`` (None: every field),
    ``predicates`` as `tag_filter` gives them. Rollups read raw hours and rollup rows so."""
    lines = _source(bucket, measurement, start, end)
    if fields is not None:
        lines.append(f"  |> filter(fn: (r) => {fields})")
    lines += [f"  |> filter(fn: (r) => {p})" for p in predicates]
    keep = ", ".join(flux_string(c) for c in ["_time", "_field", "_value", *tags])
    lines.append(f"  |> keep(columns: [{keep}])")
    return "\n".join(lines)
