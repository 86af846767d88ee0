"""Stores chosen by URL; everything downstream talks to the `Store` protocol only.

``duckdb:///path/to/file.duckdb`` (the default, embedded, no server) and
``duckdb:///:memory:``. Later backends register their scheme in `_BACKENDS`; third-party
backends can register through the ``computewatch.stores`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from urllib.parse import urlsplit

from computewatch.store._duckdb import DuckDBStore
from computewatch.store._protocol import Aggregate, Query, Store, StoreError, WriteResult

__all__ = [
    "DEFAULT_URL",
    "Aggregate",
    "DuckDBStore",
    "Query",
    "Store",
    "StoreError",
    "WriteResult",
    "open_store",
]

DEFAULT_URL = "duckdb:///computewatch.duckdb"


def _open_victoriametrics(url: str) -> Store:
    from computewatch.store._victoriametrics import VictoriaMetricsStore

    return VictoriaMetricsStore(url)


def _open_prometheus(url: str) -> Store:
    from computewatch.store._prometheus import PrometheusStore

    return PrometheusStore(url)


def _open_influxdb(url: str) -> Store:
    from computewatch.store._influxdb import InfluxDBStore

    return InfluxDBStore(url)


def _open_duckdb(url: str) -> Store:
    parts = urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc:  # duckdb://relative/file.duckdb
        path = parts.netloc + parts.path
    if not path:
        raise StoreError(f"{url}: no file path; write duckdb:///path/to/file.duckdb")
    return DuckDBStore(path, url=url)


_BACKENDS: dict[str, Callable[[str], Store]] = {
    "duckdb": _open_duckdb,
    "victoriametrics": _open_victoriametrics,
    "prometheus": _open_prometheus,
    "influxdb": _open_influxdb,
}


def open_store(url: str = DEFAULT_URL) -> Store:
    """Open the store a URL names; an unknown scheme lists the known ones."""
    scheme = urlsplit(url).scheme
    factory = _BACKENDS.get(scheme)
    if factory is None:
        for ep in entry_points(group="computewatch.stores"):
            if ep.name == scheme:
                factory = ep.load()
                break
    if factory is None:
        raise StoreError(f"unknown store URL {url!r}: scheme {scheme!r} is not one of "
                         f"{', '.join(sorted(_BACKENDS))}")
    return factory(url)
