"""`Store` on InfluxDB 2 (Flux reads) or InfluxDB 3 (SQL or InfluxQL reads).

``influxdb://host:8086?org=ops&bucket=telemetry`` (version 2, Flux), or
``influxdb://host:8181?bucket=telemetry&version=3`` (version 3: ``bucket`` is the database;
``database=`` is accepted too; reads in SQL, ``&query=influxql`` for InfluxQL). Also
``&tls=1`` (https), ``&timeout=30s``, ``&rollups=BUCKET`` (where the rollups live, below),
and the token: ``&token_env=NAME`` (an environment
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

**Rollups** (version 2; `computewatch.store._influxrollups`): `InfluxDBStore.refresh_rollups`
(``computewatch rollup``, once or ``--every``) reads the raw hours closed since the last run
(and the last two again, for late samples), computes per series and hour the embedded
store's mergeable states (n, sum, min, max, last and its time; DDSketch buckets of the
latency percentiles) and writes them as line protocol to ``<measurement>_rollup_1h``,
``<measurement>_rollup_1d`` (a UTC day from its hours once it is over) and
``<measurement>_sketch_1h`` / ``_1d``: in the store's bucket, or in the bucket
``&rollups=NAME`` names (one with a longer retention period). Not InfluxDB tasks: the same
computation as the embedded store's, so the same answers. `InfluxDBStore.query` answers the
part of a range before the raw data from them (means, sums, counts, minima, maxima and last
values exact; a latency quantile within 1%), and `InfluxDBStore.resolution` and
`InfluxDBStore.time_bounds` say so; a query there needs whole hours. InfluxDB 3 has no
rollups: ``refresh_rollups`` refuses, naming the version, and reads are raw data only.

**Retention**: version 2 deletes with ``/api/v2/delete`` (every raw sample before the cutoff,
per measurement; the rollup measurements stay); where rollups are kept, `drop_before` rolls
up what it is about to delete first. It returns the number of field values it deleted
(InfluxDB counts values, not rows). InfluxDB 3 deletes whole tables or databases only: there
``drop_before`` refuses, and the database's retention period does the job.

**What is tested, and how.** No InfluxDB server package exists here. The write path is
tested against a real VictoriaMetrics' ``/api/v2/write`` and read back from it; the query
translation is tested by serving answers in the InfluxDB wire formats (Flux annotated CSV,
InfluxDB 3 JSON) from a local HTTP server and checking the query text sent and the frame
parsed. The rollups are tested on a hand-built hour (states and line protocol checked by
hand) and, end to end, on a hand-built month through ``tests/influx_wire.py``: a local
stand-in for InfluxDB 2's write, Flux query and delete API that models the documented
semantics of the few query shapes sent, with the embedded store's raw answers as the
reference (tests/test_influx_rollups.py). Nothing has been run against a live InfluxDB, and
no Flux task was written: none could be run here.
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
from computewatch.store._influxrollups import InfluxRollups, rollup_measurement
from computewatch.store._protocol import Aggregate, Query, StoreError, WriteResult, check_query
from computewatch.store._rollups import HOUR
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


def _bounds(first: object, last: object) -> tuple[datetime, datetime] | None:
    if first is None:
        return None
    return (pd.Timestamp(first).tz_localize(None).tz_localize(UTC).to_pydatetime(),
            pd.Timestamp(last).tz_localize(None).tz_localize(UTC).to_pydatetime())


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
        self._rollup_writer = self._writer if s.rollups == s.bucket else LineProtocolWriter(
            s.base, token=s.token, org=s.org, bucket=s.rollups, timeout_s=s.timeout_s)
        self._rollups = InfluxRollups(
            source=self.url, bucket=s.bucket, rollups=s.rollups, flux=self._flux,
            bounds=self._flux_bounds, raw_query=self._raw_flux, writer=self._rollup_writer,
            rejections=self.rejections)

    # -- writes ---------------------------------------------------------------------------
    def write(self, measurement: str, frame: pa.Table | pd.DataFrame) -> WriteResult:
        self._rollups.forget()
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
        rolled = self._rollups.query(q, meas, predicates)
        if rolled is not None:
            return _finish(rolled, q)
        return self._raw_flux(q, predicates)

    def _raw_flux(self, q: Query, predicates: Sequence[str] | None = None) -> pd.DataFrame:
        """``q`` over raw data alone (``predicates``: its tag filters, when known)."""
        if predicates is None:
            predicates = tag_filter(catalog.measurement(q.measurement), q.where, self.url)
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
        """The label sets of the raw data, and in InfluxDB 2 those only rollups hold where
        they reach back before it (a card gone since, as the embedded store keeps them)."""
        meas = catalog.measurement(measurement)
        columns = list(meas.labels)
        if self.settings.version == "2":
            predicates = tag_filter(meas, where, self.url)
            rows = [] if predicates is None else self._flux(
                flux_series(meas, self.settings.bucket, predicates, EARLIEST, LATEST))
            if predicates is not None and self._rollups.coverage(meas)[0] is not None:
                rows += self._flux(flux_series(  # series only rollups still hold
                    meas, self.settings.rollups, predicates, EARLIEST, LATEST,
                    name=rollup_measurement(meas.name, HOUR)))
        else:
            have = self._columns(measurement)
            text = sql_series(meas, have, where, EARLIEST, LATEST, self.url) if have else None
            rows = [] if text is None else self._v3(text, "sql")
        seen = {tuple(str(r.get(c) or "") for c in columns) for r in rows}
        return pd.DataFrame(sorted(seen), columns=columns, dtype="str")

    def _flux_bounds(self, measurement: str, bucket: str) -> tuple[datetime, datetime] | None:
        """The first and last time of a measurement (raw or rollup) in ``bucket``."""
        rows = self._flux(flux_time_bounds(measurement, bucket, EARLIEST, LATEST))
        got = {r.get("result"): r.get("_time") for r in rows}
        return _bounds(got.get("first"), got.get("last"))

    def time_bounds(self, measurement: str) -> tuple[datetime, datetime] | None:
        """The first and last sample time; in InfluxDB 2 the first reaches back to where
        rollups begin, before the raw data."""
        meas = catalog.measurement(measurement)
        if self.settings.version == "2":
            return self._rollups.time_bounds(
                meas, self._flux_bounds(meas.name, self.settings.bucket))
        else:
            if not self._columns(measurement):
                return None
            rows = self._v3(sql_time_bounds(measurement), "sql")
            return _bounds(*((rows[0].get("first"), rows[0].get("last")) if rows
                             else (None, None)))

    def resolution(self, measurement: str, start: datetime) -> timedelta:
        """The finest window a query from ``start`` can ask for: an hour where rollups
        answer it (InfluxDB 2, before the raw data), else zero (any window)."""
        if self.settings.version != "2":
            return timedelta(0)
        return self._rollups.resolution(measurement, start)

    # -- rollups (computewatch.store._influxrollups) -------------------------------------
    def refresh_rollups(self, measurement: str | None = None, *,
                        now: datetime | None = None) -> int:
        """Roll up the raw hours closed since the last run into the hourly and daily rollup
        measurements (`computewatch.store._influxrollups`); the hours rolled. InfluxDB 2
        only."""
        self._v2_only("rollups")
        return self._rollups.refresh(measurement, now=now)

    def _v2_only(self, what: str) -> None:
        if self.settings.version != "2":
            raise StoreError(f"{self.url}: {what} are computed for InfluxDB 2 only; on "
                             f"InfluxDB {self.settings.version} computewatch keeps no rollups "
                             "(the reads there are raw data only)")

    # -- retention ------------------------------------------------------------------------
    def drop_before(self, cutoff: datetime) -> int:
        if self.settings.version != "2":
            raise StoreError(f"{self.url}: InfluxDB 3 deletes whole tables or databases only; "
                             "set the database's retention period instead (not deleting "
                             f"samples before {cutoff.isoformat()})")
        self._rollups.refresh(rolled_only=True)  # what is about to go is rolled up first
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
        self._rollups.forget()
        return deleted

    def close(self) -> None:
        self._writer.close()
        if self._rollup_writer is not self._writer:
            self._rollup_writer.close()
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
