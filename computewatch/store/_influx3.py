"""A `Query` as SQL or InfluxQL, for InfluxDB 3 (``/api/v3/query_sql``, ``/api/v3/query_influxql``).

InfluxDB 3 keeps a measurement as a table with a ``time`` column, one column per tag and one
per field, and only the columns that were ever written: the store asks
``information_schema.columns`` first and treats a missing tag as ``''`` and a missing field
as null, so a query never names a column the table lacks.

**SQL** (the default for version 3)::

    SELECT date_bin(INTERVAL '3600000000 microseconds', time, TIMESTAMP '<start>') AS "_window",
           COALESCE("site", '') AS "site", avg("utilization_ratio") AS "utilization_ratio"
    FROM "accelerator"
    WHERE time >= TIMESTAMP '<start>' AND time < TIMESTAMP '<end>' AND "site" IN ('a', 'b')
    GROUP BY ...

``date_bin`` with the query's start as origin gives half-open windows aligned to it. mean,
min, max, sum, count are exact; *last* is ``last_value(f ORDER BY time)`` over the non-null
values; *quantile* is exact for the median (``median``) and otherwise DataFusion's
``approx_percentile_cont`` (t-digest: approximate).

**InfluxQL**: ``GROUP BY time(<window>, <start mod window>)`` aligns windows to the start,
``fill(none)`` leaves out empty windows; mean, min, max, sum, count and last are exact;
*quantile* is ``median()`` for 0.5 (exact: the mean of the two middle values) and otherwise
``percentile()``, which picks the nearest-rank sample (no interpolation): approximate.

Nothing here was run against a live InfluxDB 3 (there is no server package here): the query
text is fixed by tests, and the parsing of answers is tested on JSON in the server's wire
format (tests/fixtures/influxdb/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from computewatch import catalog
from computewatch.store._flux import flux_time as rfc3339  # the same RFC 3339 UTC text
from computewatch.store._protocol import Aggregate, Query, check_where

__all__ = ["columns_sql", "influxql_query", "sql_literal", "sql_query", "sql_series",
           "sql_time_bounds"]

WINDOW = "_window"
_SQL_FN = {Aggregate.MEAN: "avg", Aggregate.MIN: "min", Aggregate.MAX: "max",
           Aggregate.SUM: "sum", Aggregate.COUNT: "count"}
_INFLUXQL_FN = {Aggregate.MEAN: "mean", Aggregate.MIN: "min", Aggregate.MAX: "max",
                Aggregate.SUM: "sum", Aggregate.COUNT: "count", Aggregate.LAST: "last"}


def sql_literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def columns_sql(measurement: str) -> str:
    return ("SELECT column_name FROM information_schema.columns WHERE table_name = "
            f"{sql_literal(measurement)}")


def _tag(tag: str, have: set[str]) -> str:
    return f"COALESCE({ident(tag)}, '')" if tag in have else "''"


def _sql_where(q_start: datetime, q_end: datetime, filters: list[tuple[str, list[str]]],
               have: set[str]) -> str:
    clauses = [f"time >= TIMESTAMP {sql_literal(rfc3339(q_start))}",
               f"time < TIMESTAMP {sql_literal(rfc3339(q_end))}"]
    for tag, values in filters:
        clauses.append(f"{_tag(tag, have)} IN ({', '.join(sql_literal(v) for v in values)})")
    return " AND ".join(clauses)


def _sql_agg(q: Query, f: str, have: set[str]) -> str:
    if f not in have:
        return f"CAST(NULL AS DOUBLE) AS {ident(f)}" if q.agg is not Aggregate.COUNT \
            else f"CAST(0 AS BIGINT) AS {ident(f)}"
    c = ident(f)
    match q.agg:
        case Aggregate.LAST:
            expr = f"last_value({c} ORDER BY time) FILTER (WHERE {c} IS NOT NULL)"
        case Aggregate.QUANTILE:
            expr = (f"median({c})" if q.quantile == 0.5
                    else f"approx_percentile_cont({c}, {float(q.quantile)!r})")
        case _:
            expr = f"{_SQL_FN[q.agg]}({c})"
    return f"{expr} AS {c}"


def sql_query(q: Query, meas: catalog.Measurement, have: set[str], source: str) -> str | None:
    """The SQL text of a windowed aggregate; None when ``where`` accepts nothing."""
    filters = check_where(meas, q.where, source)
    if filters is None:
        return None
    select, group = [], []
    if q.window is not None:
        micros = q.window // timedelta(microseconds=1)
        window = (f"date_bin(INTERVAL '{micros} microseconds', time, "
                  f"TIMESTAMP {sql_literal(rfc3339(q.start))})")
        select.append(f"{window} AS {ident(WINDOW)}")
        group.append(window)
    for g in q.group_by:
        select.append(f"{_tag(g, have)} AS {ident(g)}")
        group.append(_tag(g, have))
    select += [_sql_agg(q, f, have) for f in q.fields]
    sql = (f"SELECT {', '.join(select)} FROM {ident(q.measurement)} "
           f"WHERE {_sql_where(q.start, q.end, filters, have)}")
    if group:
        sql += f" GROUP BY {', '.join(group)} ORDER BY {', '.join(group)}"
    return sql


def sql_series(meas: catalog.Measurement, have: set[str],
               where: Mapping[str, str | Sequence[str]] | None, start: datetime,
               end: datetime, source: str) -> str | None:
    filters = check_where(meas, where, source)
    if filters is None:
        return None
    tags = ", ".join(f"{_tag(t, have)} AS {ident(t)}" for t in meas.labels)
    return (f"SELECT DISTINCT {tags} FROM {ident(meas.name)} "
            f"WHERE {_sql_where(start, end, filters, have)}")


def sql_time_bounds(measurement: str) -> str:
    return f'SELECT min(time) AS "first", max(time) AS "last" FROM {ident(measurement)}'


def _influxql_literal(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def influxql_query(q: Query, meas: catalog.Measurement, source: str) -> str | None:
    """The InfluxQL text of a windowed aggregate; None when ``where`` accepts nothing."""
    filters = check_where(meas, q.where, source)
    if filters is None:
        return None
    if q.agg is Aggregate.QUANTILE:
        fn = ("median({})" if q.quantile == 0.5
              else f"percentile({{}}, {float(q.quantile) * 100!r})")
    else:
        fn = _INFLUXQL_FN[q.agg] + "({})"
    select = ", ".join(f"{fn.format(ident(f))} AS {ident(f)}" for f in q.fields)
    clauses = [f"time >= {_influxql_literal(rfc3339(q.start))}",
               f"time < {_influxql_literal(rfc3339(q.end))}"]
    for tag, values in filters:
        clauses.append("(" + " OR ".join(f"{ident(tag)} = {_influxql_literal(v)}"
                                         for v in values) + ")")
    group = []
    if q.window is not None:
        offset = (q.start - datetime(1970, 1, 1, tzinfo=UTC)) % q.window
        group.append(f"time({q.window // timedelta(microseconds=1)}u, "
                     f"{offset // timedelta(microseconds=1)}u)")
    group += [ident(g) for g in q.group_by]
    text = f"SELECT {select} FROM {ident(q.measurement)} WHERE {' AND '.join(clauses)}"
    if group:
        text += f" GROUP BY {', '.join(group)}"
    return text + (" fill(none)" if q.window is not None else "")
