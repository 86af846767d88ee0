"""Stores chosen by URL; everything downstream talks to the `Store` protocol only.

- a plain file path (``var/x.duckdb``, ``/abs/x.duckdb``), ``duckdb:///relative.duckdb``,
  ``duckdb:////absolute.duckdb`` (SQLAlchemy's convention: the path follows the third slash),
  ``duckdb:///:memory:``: embedded DuckDB, no server (`_duckdb`); its messages name the
  resolved absolute path;
- ``victoriametrics://host:8428`` (cluster: ``?tenant=0:0``, ``?insert=h:8480&select=h:8481``):
  line protocol in, MetricsQL out (`_victoriametrics`); ``&rollups=host:port`` where the
  rollup records live, if not in the same instance (`_promrollups`);
- ``prometheus://host:9090``: read-only, Prometheus scrapes the agents (`_prometheus`;
  ``?rollups=host:port`` too);
- ``influxdb://host:8086?org=...&bucket=...`` (``&version=3``, ``&query=sql|influxql``):
  InfluxDB 2 with Flux reads, or 3 with SQL or InfluxQL reads (`_influxdb`).

Each backend module's docstring states its URL forms, how the `Query` is translated and
what is exact or approximate. Every backend (DuckDB and pandas included) is imported when
first used, so an agent that only writes line protocol (`computewatch.lineprotocol`) stays
small. `LineProtocolWriter` and `WriteError` are `computewatch.lineprotocol`'s, named here too.
Third-party backends can register through the ``computewatch.stores`` entry-point group.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from computewatch.errors import NotRolledUp, StoreURLError
from computewatch.redact import redact_url
from computewatch.store._protocol import Aggregate, Query, Store, StoreError, WriteResult

if TYPE_CHECKING:
    import pandas as pd

DUCKDB_ALLOCATOR = "dirty_decay_ms:10000,muzzy_decay_ms:10000"
"""DuckDB's allocator (its own jemalloc) settings, read once when DuckDB loads, so set here,
before any backend imports it (a value the user set is kept). Why: by default it hands freed
pages back to the kernel after a second, and a store writing Parquet parts an hour at a time
(the demo) faulted them in again for every part: 0.8 M minor faults and 7-10 s of system
time over the demo's day against 0.5 M and 3-4 s for DuckDB's own tables; with ten seconds
the faults fall to main's (bench/bench_demo.py). Idle memory still goes back, later."""
os.environ.setdefault("DUCKDB_JE_MALLOC_CONF", DUCKDB_ALLOCATOR)

__all__ = [
    "DEFAULT_URL",
    "Aggregate",
    "DuckDBStore",
    "InfluxDBStore",
    "LineProtocolWriter",
    "NotRolledUp",
    "PrometheusStore",
    "Query",
    "Store",
    "StoreError",
    "StoreURLError",
    "VictoriaMetricsStore",
    "WriteError",
    "WriteResult",
    "most",
    "open_store",
    "prefetch",
    "query_many",
    "resolution",
    "side_by_side",
]

_LAZY = {
    "DuckDBStore": "computewatch.store._duckdb",
    "InfluxDBStore": "computewatch.store._influxdb",
    "LineProtocolWriter": "computewatch.lineprotocol",
    "PrometheusStore": "computewatch.store._prometheus",
    "VictoriaMetricsStore": "computewatch.store._victoriametrics",
    "WriteError": "computewatch.lineprotocol",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

DEFAULT_URL = "duckdb:///computewatch.duckdb"


def _open_victoriametrics(url: str, create: bool) -> Store:
    from computewatch.store._victoriametrics import VictoriaMetricsStore

    return VictoriaMetricsStore(url)


def _open_prometheus(url: str, create: bool) -> Store:
    from computewatch.store._prometheus import PrometheusStore

    return PrometheusStore(url)


def _open_influxdb(url: str, create: bool) -> Store:
    from computewatch.store._influxdb import InfluxDBStore

    return InfluxDBStore(url)


def _open_duckdb(url: str, create: bool, read_only: bool = False) -> Store:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StoreURLError(f"{url}: {exc}") from None
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc:  # duckdb://relative/file.duckdb
        path = parts.netloc + parts.path
    if not path:
        raise StoreURLError(f"{url}: no file path; write duckdb:///path/to/file.duckdb")
    options = parse_qs(parts.query)  # duckdb:///f.duckdb?memory_limit=512MB
    unknown = sorted(set(options) - {"memory_limit"})
    if unknown:
        raise StoreURLError(f"{url}: unknown option {unknown[0]!r} (known: memory_limit)")
    try:
        return _duckdb_store(path, create, read_only,
                             memory_limit=options.get("memory_limit", [None])[-1])
    except ValueError as exc:
        raise StoreURLError(f"{url}: {exc}") from None


_BACKENDS: dict[str, Callable[[str, bool], Store]] = {
    "duckdb": _open_duckdb,
    "victoriametrics": _open_victoriametrics,
    "prometheus": _open_prometheus,
    "influxdb": _open_influxdb,
}


def _duckdb_store(path: str, create: bool, read_only: bool, *,
                  memory_limit: str | None = None) -> Store:
    """A DuckDB store: read-only where asked and the file exists (`open_reader`)."""
    from computewatch.store._duckdb import DuckDBStore, open_reader

    if read_only and path != ":memory:" and not create:
        return open_reader(path, memory_limit=memory_limit)
    return DuckDBStore(path, create=create, memory_limit=memory_limit)


def open_store(url: str = DEFAULT_URL, *, create: bool = True, read_only: bool = False
               ) -> Store:
    """Open the store a URL (or a plain DuckDB file path) names; an unknown scheme lists the
    known ones. With ``create=False`` a missing DuckDB file is a `StoreURLError`, not a new
    empty store: commands that only read must not leave files behind. A URL that cannot be
    used as written raises `StoreURLError` (bad input); a store that cannot be reached or
    answers an error raises `StoreError` (a failure while running). ``read_only`` (with
    ``create=False``): a DuckDB file is opened so that other readers can share it, unless
    reading would write first (`computewatch.store._duckdb.open_reader`); the servers ignore
    it."""
    if "://" not in url:
        return _duckdb_store(url, create, read_only)
    scheme = url.split("://", 1)[0].lower()
    if scheme == "duckdb":
        return _open_duckdb(url, create, read_only)
    factory = _BACKENDS.get(scheme)
    if factory is None:
        for ep in entry_points(group="computewatch.stores"):
            if ep.name == scheme:
                factory = ep.load()
                break
        if factory is not None:  # a plug-in's factory takes the URL alone
            return factory(url, create)
    if factory is None:
        raise StoreURLError(f"unknown store URL {redact_url(url)!r}: scheme {scheme!r} is not "
                            f"one of {', '.join(sorted(_BACKENDS))}")
    return factory(url, create)


def resolution(store: Store, measurement: str, start: datetime) -> timedelta:
    """The finest window a query of ``measurement`` from ``start`` can ask of ``store``:
    zero (any window) where raw data reaches back that far, else the grain of the rollups
    that hold it (an hour in DuckDB, and in VictoriaMetrics and Prometheus, whose recording
    rules write hourly records). Callers widen a window to at least this; a store without
    rollups (InfluxDB) answers zero."""
    get = getattr(store, "resolution", None)
    return get(measurement, start) if get is not None else timedelta(0)


def query_many(store: Store, queries: Sequence[Query]) -> list[pd.DataFrame]:
    """Each query's answer, as `Store.query` gives it. A store that can share one read
    among queries that differ only in their fields and aggregates (DuckDB: a SUM and a
    COUNT of the same series in one scan) does; any other store answers them one by one."""
    many = getattr(store, "query_many", None)
    if many is not None:
        return many(queries)
    return [store.query(q) for q in queries]


def most(store: Store, q: Query) -> float:
    """The largest value of ``q``'s answer (0 when it has none; NaN values left out): a
    store that finds it without handing over the groups' rows (DuckDB over rollups: the
    sampling interval's probe, a day's counts of 100,000 devices) does; from any other store
    ``q``'s rows are read and their largest taken."""
    ask = getattr(store, "most", None)
    got = ask(q) if ask is not None else None
    if got is None:
        rows = store.query(q)
        got = float(rows[q.fields[0]].max()) if len(rows) else 0.0
    return got


def prefetch(store: Store, queries: Sequence[Query]) -> None:
    """Tell ``store`` the queries a caller is about to ask, one by one, from several places:
    a store that can answer them together (DuckDB: every label grouping of one window of
    rollups in one statement, the answers kept until the data changes) does so now; any
    other store does nothing, and each query is asked as usual."""
    ahead = getattr(store, "prefetch", None)
    if ahead is not None:
        ahead(queries)


def side_by_side(left: pd.DataFrame, right: pd.DataFrame, on: Sequence[str],
                 how: str = "inner") -> pd.DataFrame:
    """``left`` with ``right``'s other columns, on rows whose ``on`` keys match (``how``: a
    join as `pandas.DataFrame.merge` names it). Two answers of one scan (`query_many`)
    name the same keys in the same order: they are put side by side as they are, without
    hashing millions of label strings to join them; other answers are merged."""
    import pandas as pd  # not at import: the agent imports this package and no pandas

    keys = list(on)
    if len(left) == len(right) and all(
            pd.array(left[k]).equals(pd.array(right[k])) for k in keys):
        out = left.reset_index(drop=True)
        extra = right.drop(columns=keys).reset_index(drop=True)
        return pd.concat([out, extra], axis=1)
    return left.merge(right, on=keys, how=how)
