"""`Store` on InfluxDB 2 (Flux reads) or InfluxDB 3 (SQL or InfluxQL reads).

``influxdb://host:8086?org=ops&bucket=telemetry`` (version 2, Flux), or
``influxdb://host:8181?bucket=telemetry&version=3`` (version 3: ``bucket`` is the database;
``database=`` is accepted too; reads in SQL, ``&query=influxql`` for InfluxQL). Also
``&tls=1`` (https), ``&timeout=30s``, and the token: ``&token_env=NAME`` (an environment
variable; default ``INFLUX_TOKEN`` when it is set) or ``&token_file=/path``. A token in the
URL itself is refused: URLs end up in logs and shell history.

**Writes** go through `LineProtocolWriter` (influxdb-client, gzip, ``/api/v2/write``, which
InfluxDB 3 accepts too) in bodies of about 8 MB, retried on retryable errors, at microsecond
precision (the embedded store's resolution).

**Reads**: version 2 through influxdb-client's Flux query API (translation in
`computewatch.store._flux`); version 3 through ``/api/v3/query_sql`` or
``/api/v3/query_influxql`` with ``format=json`` (translation in `computewatch.store._influx3`).
What is exact and what approximate is stated in those modules: in short, everything except a
quantile in InfluxDB 3 other than the median.

**Retention**: version 2 deletes with ``/api/v2/delete`` (every sample before the cutoff, per
measurement); `InfluxDBStore.drop_before` returns the number of field values it deleted
(InfluxDB counts values, not rows). InfluxDB 3 deletes whole tables or databases only: there
``drop_before`` refuses, and the database's retention period does the job.

**What is tested, and how.** No InfluxDB server package exists here. The write path is
tested against a real VictoriaMetrics' ``/api/v2/write`` and read back from it; the query
translation is tested by serving answers in the InfluxDB wire formats (Flux annotated CSV,
InfluxDB 3 JSON) from a local HTTP server and checking the query text sent and the frame
parsed. Nothing has been run against a live InfluxDB.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import requests
from influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException

from computewatch import catalog
from computewatch.lineprotocol import InfluxSettings, LineProtocolWriter, parse_influx_url
from computewatch.redact import redact_url
from computewatch.samples import TIME
from computewatch.store._batches import write_frame
from computewatch.store._flux import (
    flux_query,
    flux_series,
    flux_string,
    flux_time,
    flux_time_bounds,
    tag_filter,
)
from computewatch.store._influx3 import (
    WINDOW,
    columns_sql,
    influxql_query,
    sql_query,
    sql_series,
    sql_time_bounds,
)
from computewatch.store._protocol import Aggregate, Query, StoreError, WriteResult, check_query
from computewatch.validation import Rejections

__all__ = ["InfluxDBStore", "InfluxSettings", "parse_influx_url"]

log = logging.getLogger(__name__)

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)  # InfluxDB's int64 nanoseconds end in 2262

def _empty(q: Query) -> pd.DataFrame:
    frame: dict[str, Any] = {TIME: pd.DatetimeIndex([], tz=UTC).as_unit("us")}
    frame.update({g: pd.Series([], dtype="str") for g in q.group_by})
    dtype = "int64" if q.agg is Aggregate.COUNT else "float64"
    frame.update({f: pd.Series([], dtype=dtype) for f in q.fields})
    return pd.DataFrame(frame)


def _finish(df: pd.DataFrame, q: Query) -> pd.DataFrame:
    """Types and order as the embedded store returns them."""
    if df.empty:
        return _empty(q)
    df[TIME] = pd.to_datetime(df[TIME], utc=True).dt.as_unit("us")
    for g in q.group_by:
        df[g] = df[g].fillna("").astype("str")
    for f in q.fields:
        if f not in df.columns:
            df[f] = float("nan")
    if q.agg is Aggregate.COUNT:
        df[list(q.fields)] = df[list(q.fields)].fillna(0).astype("int64")
    else:
        df[list(q.fields)] = df[list(q.fields)].astype("float64")
    keys = [TIME, *q.group_by]
    return df.sort_values(keys, ignore_index=True)[[*keys, *q.fields]]


class InfluxDBStore:
    """`Store` on InfluxDB 2 or 3; see the module docstring."""

    def __init__(self, url: str, *, rejections: Rejections | None = None) -> None:
        self.url = redact_url(url)  # what messages show
        self.settings = s = parse_influx_url(url)
        self.rejections = rejections or Rejections()
        self._writer = LineProtocolWriter(s.base, token=s.token, org=s.org, bucket=s.bucket,
                                          timeout_s=s.timeout_s)
        self._http = requests.Session()
        if s.token:
            self._http.headers["Authorization"] = f"Token {s.token}"
        self._client: InfluxDBClient | None = None

    # -- writes ---------------------------------------------------------------------------
    def write(self, measurement: str, frame: pa.Table | pd.DataFrame) -> WriteResult:
        return write_frame(self._writer, measurement, frame, self.rejections, self.url, "us")

    # -- transport ------------------------------------------------------------------------
    def _flux(self, text: str) -> list[dict]:
        if self._client is None:
            s = self.settings
            self._client = InfluxDBClient(url=s.base, token=s.token or "", org=s.org,
                                          timeout=int(s.timeout_s * 1000))
        try:
            tables = self._client.query_api().query(text, org=self.settings.org)
        except ApiException as exc:
            raise StoreError(f"{self.url}: Flux query failed: HTTP {exc.status}: "
                             f"{(exc.body or exc.reason or '')!s:.500}") from None
        except (OSError, Exception) as exc:  # urllib3 errors do not share a base with OSError
            raise StoreError(f"{self.url}: Flux query failed: {type(exc).__name__}: "
                             f"{exc}") from None
        return [dict(r.values) for t in tables for r in t.records]

    def _v3(self, text: str, language: str | None = None) -> list[dict]:
        lang = language or self.settings.language
        url = f"{self.settings.base}/api/v3/query_{lang}"
        body = {"db": self.settings.bucket, "q": text, "format": "json"}
        try:
            r = self._http.post(url, json=body, timeout=self.settings.timeout_s)
        except requests.RequestException as exc:
            raise StoreError(f"{self.url}: {url}: {type(exc).__name__}: {exc}") from None
        if r.status_code >= 400:
            raise StoreError(f"{self.url}: {lang} query failed: HTTP {r.status_code}: "
                             f"{r.text[:500].strip()}")
        try:
            rows = r.json() if r.content.strip() else []
        except ValueError:
            raise StoreError(f"{self.url}: {lang} query answered no JSON: "
                             f"{r.text[:200]!r}") from None
        if not isinstance(rows, list):
            raise StoreError(f"{self.url}: {lang} query answered {type(rows).__name__}, "
                             "not a JSON array of rows")
        return rows

    def _columns(self, measurement: str) -> set[str]:
        return {r["column_name"] for r in self._v3(columns_sql(measurement), "sql")}

    # -- reads ----------------------------------------------------------------------------
    def query(self, q: Query) -> pd.DataFrame:
        meas = check_query(q, self.url)
        if self.settings.version == "2":
            return self._query_flux(q, meas)
        return self._query_v3(q, meas)

    def _query_flux(self, q: Query, meas: catalog.Measurement) -> pd.DataFrame:
        predicates = tag_filter(meas, q.where, self.url)
        if predicates is None:
            return _empty(q)
        rows = self._flux(flux_query(q, self.settings.bucket, predicates))
        if not rows:
            return _empty(q)
        long = pd.DataFrame(rows)
        long[TIME] = long["_time"] if q.window is not None else q.start
        for g in q.group_by:
            long[g] = long[g].fillna("") if g in long.columns else ""
        keys = [TIME, *q.group_by]
        wide = long.pivot_table(index=keys, columns="_field", values="_value",
                                aggfunc="first", dropna=False).reset_index()
        wide.columns.name = None
        return _finish(wide.dropna(subset=[f for f in q.fields if f in wide.columns],
                                   how="all"), q)

    def _query_v3(self, q: Query, meas: catalog.Measurement) -> pd.DataFrame:
        if self.settings.language == "sql":
            text = sql_query(q, meas, self._columns(q.measurement), self.url)
        else:
            text = influxql_query(q, meas, self.url)
        if text is None:
            return _empty(q)
        rows = self._v3(text)
        if not rows:
            return _empty(q)
        df = pd.DataFrame(rows)
        if self.settings.language == "sql":
            df[TIME] = df.pop(WINDOW) if q.window is not None else q.start
        else:
            df = df.drop(columns=["iox::measurement"], errors="ignore")
            if q.window is None:
                df[TIME] = q.start
        for g in q.group_by:
            if g not in df.columns:
                df[g] = ""
        return _finish(df, q)

    def series(self, measurement: str,
               where: Mapping[str, str | Sequence[str]] | None = None) -> pd.DataFrame:
        meas = catalog.measurement(measurement)
        columns = list(meas.labels)
        if self.settings.version == "2":
            predicates = tag_filter(meas, where, self.url)
            rows = [] if predicates is None else self._flux(
                flux_series(meas, self.settings.bucket, predicates, EARLIEST, LATEST))
        else:
            have = self._columns(measurement)
            text = sql_series(meas, have, where, EARLIEST, LATEST, self.url) if have else None
            rows = [] if text is None else self._v3(text, "sql")
        seen = {tuple(str(r.get(c) or "") for c in columns) for r in rows}
        return pd.DataFrame(sorted(seen), columns=columns, dtype="str")

    def time_bounds(self, measurement: str) -> tuple[datetime, datetime] | None:
        meas = catalog.measurement(measurement)
        if self.settings.version == "2":
            rows = self._flux(flux_time_bounds(meas, self.settings.bucket, EARLIEST, LATEST))
            got = {r.get("result"): r.get("_time") for r in rows}
            first, last = got.get("first"), got.get("last")
        else:
            if not self._columns(measurement):
                return None
            rows = self._v3(sql_time_bounds(measurement), "sql")
            first, last = (rows[0].get("first"), rows[0].get("last")) if rows else (None, None)
        if first is None:
            return None
        return (pd.Timestamp(first).tz_localize(None).tz_localize(UTC).to_pydatetime(),
                pd.Timestamp(last).tz_localize(None).tz_localize(UTC).to_pydatetime())

    # -- retention ------------------------------------------------------------------------
    def drop_before(self, cutoff: datetime) -> int:
        if self.settings.version != "2":
            raise StoreError(f"{self.url}: InfluxDB 3 deletes whole tables or databases only; "
                             "set the database's retention period instead (not deleting "
                             f"samples before {cutoff.isoformat()})")
        deleted = 0
        for meas in catalog.measurements():
            count = self._flux("\n".join([
                f"from(bucket: {flux_string(self.settings.bucket)})",
                f"  |> range(start: {flux_time(EARLIEST)}, stop: {flux_time(cutoff)})",
                f"  |> filter(fn: (r) => r._measurement == {flux_string(meas.name)})",
                "  |> group()", "  |> count()"]))
            n = int(sum(r.get("_value") or 0 for r in count))
            if not n:
                continue
            body = {"start": flux_time(EARLIEST), "stop": flux_time(cutoff - timedelta(
                microseconds=1)), "predicate": f'_measurement="{meas.name}"'}
            url = f"{self.settings.base}/api/v2/delete"
            try:
                r = self._http.post(url, json=body, timeout=self.settings.timeout_s,
                                    params={"org": self.settings.org,
                                            "bucket": self.settings.bucket})
            except requests.RequestException as exc:
                raise StoreError(f"{self.url}: {url}: {exc}") from None
            if r.status_code >= 400:
                raise StoreError(f"{self.url}: delete of {meas.name!r} before {cutoff} "
                                 f"failed: HTTP {r.status_code}: {r.text[:300]}")
            deleted += n
        return deleted

    def close(self) -> None:
        self._writer.close()
        self._http.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> InfluxDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<InfluxDBStore {self.url}>"
