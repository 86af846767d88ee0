"""`Store` on Prometheus: read-only, PromQL out.

``prometheus://host:9090`` (``/prefix`` after the port when Prometheus runs under
``--web.route-prefix``; ``?tls=1`` for https, ``?timeout=30s``; ``?rollups=host:port``
for the instance holding the rollup records, if not this one: a query reaching before the
raw data reads them, `computewatch.store._promrollups`). Prometheus scrapes the
agents' ``/metrics``; nobody writes to it, so `PrometheusStore.write` refuses with a
StoreError that says so, and `PrometheusStore.drop_before` refuses too (Prometheus applies
its own ``--storage.tsdb.retention.time``).

Reads are the same translation as VictoriaMetrics (`computewatch.store._promql`) in plain
PromQL, with two differences that PromQL forces:

- *last* over a group of several series is the largest of their last values (PromQL cannot
  ask for the timestamp of a range's last sample); exact when a group is one series;
- *quantile* over a group of several series is the same quantile of the series' own
  quantiles; exact when a group is one series.

Range semantics follow the server's version: Prometheus 2 ranges include both ends, 3 only
the right one; the store asks ``/api/v1/status/buildinfo`` once and picks the range that
covers ``[t, t+window)`` exactly. Scrape labels (``job``, ``instance``) are neither tags
nor fields: they are ignored by ``series`` and merged by every aggregate.
``time_bounds`` narrows 1000 windows at a time down to the millisecond (PromQL has no
timestamp of a range's first sample).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pyarrow as pa

from computewatch.lineprotocol import parse_prometheus_url, parse_rollups_url
from computewatch.redact import redact_url
from computewatch.store._promapi import PromAPI
from computewatch.store._promql import Dialect
from computewatch.store._promrollups import PromAPIReads
from computewatch.store._protocol import StoreError, WriteResult

__all__ = ["PrometheusStore", "parse_prometheus_url"]

class PrometheusStore(PromAPIReads):
    """Read-only `Store` on a Prometheus server; see the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = redact_url(url)  # what messages show
        base, timeout_s = parse_prometheus_url(url)
        self._api = PromAPI(base, dialect=Dialect.PROMQL, source=self.url, timeout_s=timeout_s)
        self._open_rollups(parse_rollups_url(url))

    def write(self, measurement: str, frame: pa.Table | pd.DataFrame) -> WriteResult:
        raise StoreError(f"{self.url}: Prometheus is read-only here: it scrapes the agents' "
                         f"/metrics and is not written to (not writing {measurement!r}); "
                         "write to victoriametrics://, influxdb:// or duckdb:// instead")

    def drop_before(self, cutoff: datetime) -> int:
        raise StoreError(f"{self.url}: Prometheus keeps its own retention "
                         "(--storage.tsdb.retention.time); the store deletes nothing "
                         f"(asked to drop samples before {cutoff.isoformat()})")

    def __repr__(self) -> str:
        return f"<PrometheusStore {self.url}>"
