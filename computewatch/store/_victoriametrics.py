"""`Store` on VictoriaMetrics: line protocol in, MetricsQL out.

URLs:

- ``victoriametrics://host:8428``: single node; writes to ``/api/v2/write``, reads from
  ``/api/v1/...``.
- ``victoriametrics://host:port?tenant=0:0``: a cluster behind one address that routes
  ``/insert/`` and ``/select/`` (vmauth, or a proxy): writes to
  ``/insert/<tenant>/influx/api/v2/write``, reads from ``/select/<tenant>/prometheus/api/v1/``.
- ``victoriametrics://?insert=vminsert:8480&select=vmselect:8481&tenant=7``: a cluster
  with its two services at their own addresses (tenant ``accountID[:projectID]``, default 0).
- ``&tls=1`` switches to https; ``&timeout=30s`` sets the HTTP timeout (default 60 s).
- ``&rollups=host:port``: the instance that holds the rollup records (vmalert's
  ``-remoteWrite.url``; the compose stack's ``victoriametrics-rollups:8428``), read with the
  same ``tls`` and ``timeout``; left out, the store's own instance (read side) holds them.
  A query reaching before the raw data reads them (`computewatch.store._promrollups`).
- ``&flush=0``: a single node buffers new samples for about a second before a query sees
  them; by default the store asks it to flush (``/internal/force_flush``) after every
  ``write``, so a read right after a write sees it, as with the embedded store. A cluster
  has no such endpoint on vminsert: there new samples show up within a second or so.

The Debian package has the single-node binary only, so the tests run the single node and
check the cluster URL forms without a cluster.

**Writes.** A frame is validated against the catalogue (refusals counted, as everywhere),
encoded with `encode_frame` at millisecond precision (VictoriaMetrics keeps milliseconds) and
posted by `LineProtocolWriter` in bodies of about 8 MB (gzip, influxdb-client), each sent
again after a retryable failure (see `computewatch.store._batches`). VictoriaMetrics names a
line-protocol field ``{measurement}_{field}``, the catalogue's Prometheus name, and keeps
non-empty tags as labels.

**Reads** are MetricsQL through ``/api/v1/query_range`` with ``nocache=1`` (no step
alignment, no cached answer from before the last write); how each aggregate is translated,
and what is exact, is in `computewatch.store._promql`. In short: everything is exact except a
quantile over a group of several series, approximated from merged ``histogram_over_time``
buckets. ``series`` asks ``/api/v1/series`` once per field series (VictoriaMetrics caps one
answer at ``-search.maxSeries``, 30,000 in 1.79); ``time_bounds`` is ``tfirst_over_time`` /
``tlast_over_time`` over all time.

**Retention.** VictoriaMetrics cannot delete part of a series: ``delete_series`` removes
every sample of the series it matches, and ``-retentionPeriod`` removes old data whole
months at a time. `VictoriaMetricsStore.drop_before` therefore deletes the series whose
*every* sample is older than the cutoff (their samples are what it returns); older samples of
series that continue past the cutoff stay until the server's retention drops them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

import pandas as pd
import pyarrow as pa

from computewatch import catalog
from computewatch.lineprotocol import (
    LineProtocolWriter,
    VMEndpoints,
    parse_rollups_url,
    parse_vm_url,
)
from computewatch.redact import redact_url
from computewatch.store._batches import write_frame
from computewatch.store._promapi import PromAPI
from computewatch.store._promql import Dialect, ms, quote
from computewatch.store._promrollups import PromAPIReads
from computewatch.store._protocol import WriteResult
from computewatch.validation import Rejections

__all__ = ["VMEndpoints", "VictoriaMetricsStore", "parse_vm_url"]

log = logging.getLogger(__name__)

DELETE_BATCH = 200  # series selectors per delete request

class VictoriaMetricsStore(PromAPIReads):
    """`Store` on a VictoriaMetrics single node or cluster; see the module docstring."""

    def __init__(self, url: str, *, rejections: Rejections | None = None) -> None:
        self.url = redact_url(url)  # what messages show; the endpoints keep the credentials
        self.endpoints, timeout_s = parse_vm_url(url)
        self.rejections = rejections or Rejections()
        self._writer = LineProtocolWriter(self.endpoints.write, timeout_s=timeout_s)
        self._api = PromAPI(self.endpoints.read, dialect=Dialect.METRICSQL, source=self.url,
                            left_open=True, params={"nocache": "1"}, timeout_s=timeout_s)
        self._delete = PromAPI(self.endpoints.delete, dialect=Dialect.METRICSQL, source=self.url,
                               left_open=True, timeout_s=timeout_s)
        self._open_rollups(parse_rollups_url(url))

    def write(self, measurement: str, frame: pa.Table | pd.DataFrame) -> WriteResult:
        result = write_frame(self._writer, measurement, frame, self.rejections, self.url, "ms")
        if self.endpoints.flush and result.rows:
            self._api.post("/internal/force_flush", [], "flush after write")
        if result.rows:
            self._rollups.forget()  # raw data may begin earlier now
        return result

    def drop_before(self, cutoff: datetime) -> int:
        """Delete the series whose every sample is older than ``cutoff``; see the docstring."""
        c_s = ms(cutoff) / 1000
        hi, all_time = self._api.all_time_range()
        deleted = 0
        for meas in catalog.measurements():
            for name in self._api.names(meas, []):
                s = f"{{__name__={quote(name)}}}{all_time}"
                result = self._api.query_range(
                    f"count_over_time({s}) and (tlast_over_time({s}) < {c_s!r})", hi, hi, 1000)
                if not result:
                    continue
                only = f"{{__name__={quote(name)}}}"
                known = self._api.call("/api/v1/labels",
                                       [("match[]", only), *self._api.all_time()],
                                       f"labels of {name!r}") or []
                selectors = [exact_matcher(name, r.get("metric", {}), known) for r in result]
                for i in range(0, len(selectors), DELETE_BATCH):
                    self._delete.post("/api/v1/admin/tsdb/delete_series",
                                      [("match[]", m) for m in selectors[i:i + DELETE_BATCH]],
                                      f"delete of {name!r} series older than {cutoff}")
                deleted += round(sum(float(v) for r in result for _, v in r.get("values", ())))
        self._rollups.forget()
        return deleted

    def close(self) -> None:
        self._writer.close()
        super().close()
        self._delete.close()

    def __repr__(self) -> str:
        return f"<VictoriaMetricsStore {self.url}>"


def exact_matcher(name: str, labels: Mapping[str, str], all_labels: Sequence[str]) -> str:
    """A selector that matches one series only: every other known label must be absent."""
    parts = [f"__name__={quote(name)}"]
    parts += [f"{k}={quote(v)}" for k, v in sorted(labels.items()) if k != "__name__"]
    parts += [f'{k}=""' for k in all_labels if k not in labels and k != "__name__"]
    return "{" + ", ".join(parts) + "}"
