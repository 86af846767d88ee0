"""The InfluxDB store. No InfluxDB server package exists here, so:

- the write path goes to a real VictoriaMetrics' ``/api/v2/write`` (which speaks InfluxDB's
  write API) and is read back from VictoriaMetrics, compared with the embedded store;
- the reads are checked against answers in InfluxDB's wire formats (tests/fixtures/influxdb/,
  see its README for the sources), served by a local HTTP server that records the query text
  the store sends.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from computewatch.store import Aggregate, DuckDBStore, Query, StoreError, open_store
from computewatch.store._influxdb import InfluxDBStore, parse_influx_url
from tests.servers import start_victoriametrics
from tests.store_compare import START, T0, assert_same, random_accelerators

FIXTURES = Path(__file__).parent / "fixtures" / "influxdb"
FIELDS = ("utilization_ratio", "power_watts")


# -- writes, through a real /api/v2/write ------------------------------------------------------

def test_writes_land_through_the_influxdb_write_api(tmp_path):
    frame = random_accelerators(seed=3, n=3_000)
    duck = DuckDBStore(":memory:")
    duck.write("accelerator", frame)
    with start_victoriametrics(tmp_path / "vm") as server:
        with open_store(f"influxdb://127.0.0.1:{server.port}?org=ops&bucket=telemetry") as influx:
            assert influx.write("accelerator", frame).rows == len(frame)
        with open_store(f"victoriametrics://127.0.0.1:{server.port}") as vm:
            vm._api.post("/internal/force_flush", [], "flush")  # the InfluxDB store did not
            for agg in (Aggregate.COUNT, Aggregate.MEAN, Aggregate.LAST):
                q = Query("accelerator", FIELDS, START, T0 + timedelta(hours=5),
                          group_by=("hub", "site"), window=timedelta(minutes=30), agg=agg)
                assert_same(vm.query(q), duck.query(q), ["time", "hub", "site"], list(FIELDS))
            assert_same(vm.series("accelerator"), duck.series("accelerator"),
                        list(duck.series("accelerator").columns), [])


# -- reads, against answers in InfluxDB's wire formats -------------------------------------------

class _Influx(BaseHTTPRequestHandler):
    """Answers /api/v2/query with annotated CSV and /api/v3/query_* with JSON, picked by what
    the query asks; records (path, headers, query text)."""

    def do_POST(self) -> None:
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body.get("query") or body.get("q")
        if '_rollup_1h")' in text:  # where rollups begin (tests/test_influx_rollups.py): none
            srv.rollups_asked.append(text)
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        srv.seen.append((self.path, dict(self.headers), body))
        name = next((f for key, f in srv.answers if key in text), None)
        if name is None:
            self.send_response(400)
            payload = b'{"code":"invalid","message":"no recorded answer"}'
        else:
            self.send_response(200)
            payload = (FIXTURES / name).read_bytes()
        self.send_header("Content-Type", "text/csv" if name and name.endswith(".csv")
                         else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def influx(monkeypatch):
    monkeypatch.setenv("CW_TEST_INFLUX_TOKEN", "s3cret")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Influx)
    srv.seen, srv.answers, srv.rollups_asked = [], [], []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv, extra: str) -> str:
    return (f"influxdb://127.0.0.1:{srv.server_port}?bucket=telemetry&"
            f"token_env=CW_TEST_INFLUX_TOKEN&{extra}")


MEAN_BY_SITE = Query("accelerator", FIELDS, START, START + timedelta(hours=2),
                     where={"hub": ["jjj", ""]}, group_by=("site",), window=timedelta(hours=1))
# what every fixture holds, written out by hand from the files
EXPECTED = pd.DataFrame({
    "time": pd.to_datetime([START, START, START + timedelta(hours=1)], utc=True).as_unit("us"),
    "site": pd.Series(["", "bj-1", "bj-1"], dtype="str"),
    "utilization_ratio": [0.125, 0.625, 0.5],
    "power_watts": [120.0, 310.5, 290.25],
})

FLUX_MEAN = """\
from(bucket: "telemetry")
  |> range(start: 2026-09-01T00:00:13.000000Z, stop: 2026-09-01T02:00:13.000000Z)
  |> filter(fn: (r) => r._measurement == "accelerator")
  |> filter(fn: (r) => r._field == "utilization_ratio" or r._field == "power_watts")
  |> filter(fn: (r) => (not exists r["hub"] or r["hub"] == "") or r["hub"] == "jjj")
  |> group(columns: ["site", "_field"])
  |> aggregateWindow(every: 3600000000us, offset: 13000000us, fn: mean, createEmpty: false, \
timeSrc: "_start")
  |> keep(columns: ["_time", "_field", "_value", "site"])"""


def test_flux_query_text_and_annotated_csv_answer(influx):
    influx.answers = [('fn: mean', "flux_mean_by_site_1h.csv")]
    with InfluxDBStore(_url(influx, "org=ops")) as store:
        got = store.query(MEAN_BY_SITE)
    [(path, headers, body)] = influx.seen
    assert path == "/api/v2/query?org=ops"
    assert headers["Authorization"] == "Token s3cret"
    assert body["query"] == FLUX_MEAN
    assert body["dialect"]["annotations"] == ["datatype", "group", "default"]
    pd.testing.assert_frame_equal(got, EXPECTED)
    # asked first whether rollups hold anything before the raw data: none here
    [asked] = influx.rollups_asked
    assert 'r._measurement == "accelerator_rollup_1h"' in asked


@pytest.mark.parametrize(("agg", "fn"), [
    (Aggregate.SUM, "fn: sum,"), (Aggregate.COUNT, "fn: count,"), (Aggregate.MIN, "fn: min,"),
    (Aggregate.LAST, "fn: last,"),
    (Aggregate.QUANTILE, 'fn: (column, tables=<-) => tables |> quantile(q: 0.95, '
                         'method: "exact_mean", column: column),'),
])
def test_flux_aggregates(influx, agg, fn):
    influx.answers = [("aggregateWindow", "flux_mean_by_site_1h.csv")]
    q = Query("accelerator", FIELDS, START, START + timedelta(hours=2), group_by=("site",),
              window=timedelta(hours=1), agg=agg, quantile=0.95)
    with InfluxDBStore(_url(influx, "org=ops")) as store:
        store.query(q)
    text = influx.seen[0][2]["query"]
    assert fn in text
    assert ('|> sort(columns: ["_time"])' in text) == (agg is Aggregate.LAST)


def test_flux_whole_range_and_time_bounds(influx):
    influx.answers = [("yield", "flux_time_bounds.csv"), ("|> mean()", "flux_mean_by_site_1h.csv")]
    with InfluxDBStore(_url(influx, "org=ops")) as store:
        q = Query("accelerator", ("power_watts",), START, START + timedelta(hours=2),
                  group_by=("site",))
        got = store.query(q)
        bounds = store.time_bounds("accelerator")
    assert "aggregateWindow" not in influx.seen[0][2]["query"]
    assert got.time.tolist() == [pd.Timestamp(START)] * 2  # the range's start, per group
    assert got.power_watts.tolist() == [120.0, 310.5]  # the first value of each table
    assert bounds == (T0, T0 + timedelta(hours=5, minutes=59, seconds=59, milliseconds=500))


SQL_MEAN = (
    "SELECT date_bin(INTERVAL '3600000000 microseconds', time, "
    "TIMESTAMP '2026-09-01T00:00:13.000000Z') AS \"_window\", COALESCE(\"site\", '') AS \"site\", "
    "avg(\"utilization_ratio\") AS \"utilization_ratio\", avg(\"power_watts\") AS \"power_watts\" "
    "FROM \"accelerator\" WHERE time >= TIMESTAMP '2026-09-01T00:00:13.000000Z' AND "
    "time < TIMESTAMP '2026-09-01T02:00:13.000000Z' AND COALESCE(\"hub\", '') IN ('', 'jjj') "
    "GROUP BY date_bin(INTERVAL '3600000000 microseconds', time, "
    "TIMESTAMP '2026-09-01T00:00:13.000000Z'), COALESCE(\"site\", '') "
    "ORDER BY date_bin(INTERVAL '3600000000 microseconds', time, "
    "TIMESTAMP '2026-09-01T00:00:13.000000Z'), COALESCE(\"site\", '')")


def test_v3_sql_query_text_and_json_answer(influx):
    influx.answers = [("information_schema", "v3_sql_columns.json"),
                      ("date_bin", "v3_sql_mean_by_site_1h.json")]
    with InfluxDBStore(_url(influx, "version=3")) as store:
        got = store.query(MEAN_BY_SITE)
    (p1, _, columns), (p2, headers, body) = influx.seen
    assert p1 == p2 == "/api/v3/query_sql"
    assert columns["q"].startswith("SELECT column_name FROM information_schema.columns")
    assert body == {"db": "telemetry", "q": SQL_MEAN, "format": "json"}
    assert headers["Authorization"] == "Token s3cret"
    pd.testing.assert_frame_equal(got, EXPECTED)


def test_v3_sql_names_no_column_the_table_lacks(influx):
    influx.answers = [("information_schema", "v3_sql_columns.json"),
                      ("SELECT", "v3_sql_mean_by_site_1h.json")]
    q = Query("accelerator", ("utilization_ratio", "temperature_celsius"), START,
              START + timedelta(hours=1), where={"vendor": "nvidia"}, group_by=("cluster",),
              agg=Aggregate.LAST)
    with InfluxDBStore(_url(influx, "version=3")) as store:
        store.query(q)
    text = influx.seen[1][2]["q"]
    assert "'' AS \"cluster\"" in text and "'' IN ('nvidia')" in text  # never written
    assert "CAST(NULL AS DOUBLE) AS \"temperature_celsius\"" in text
    assert ('last_value("utilization_ratio" ORDER BY time) FILTER '
            '(WHERE "utilization_ratio" IS NOT NULL)') in text


INFLUXQL_MEAN = (
    "SELECT mean(\"utilization_ratio\") AS \"utilization_ratio\", mean(\"power_watts\") AS "
    "\"power_watts\" FROM \"accelerator\" WHERE time >= '2026-09-01T00:00:13.000000Z' AND "
    "time < '2026-09-01T02:00:13.000000Z' AND (\"hub\" = '' OR \"hub\" = 'jjj') "
    "GROUP BY time(3600000000u, 13000000u), \"site\" fill(none)")


def test_v3_influxql_query_text_and_json_answer(influx):
    influx.answers = [("GROUP BY time", "v3_influxql_mean_by_site_1h.json")]
    with InfluxDBStore(_url(influx, "version=3&query=influxql")) as store:
        got = store.query(MEAN_BY_SITE)
    [(path, _, body)] = influx.seen
    assert path == "/api/v3/query_influxql"
    assert body == {"db": "telemetry", "q": INFLUXQL_MEAN, "format": "json"}
    pd.testing.assert_frame_equal(got, EXPECTED)


def test_v3_time_bounds_and_retention(influx):
    influx.answers = [("information_schema", "v3_sql_columns.json"),
                      ("min(time)", "v3_sql_time_bounds.json")]
    with InfluxDBStore(_url(influx, "version=3")) as store:
        assert store.time_bounds("accelerator") == (
            T0, T0 + timedelta(hours=5, minutes=59, seconds=59, milliseconds=500))
        with pytest.raises(StoreError, match="whole tables or databases"):
            store.drop_before(T0)


def test_server_errors_are_named(influx):
    influx.answers = []
    with InfluxDBStore(_url(influx, "org=ops")) as store, \
            pytest.raises(StoreError, match=r"Flux query failed: HTTP 400.*no recorded answer"):
        store.query(MEAN_BY_SITE)
    with InfluxDBStore(_url(influx, "version=3")) as store, \
            pytest.raises(StoreError, match="sql query failed: HTTP 400"):
        store.query(MEAN_BY_SITE)


# -- URLs and tokens ----------------------------------------------------------------------------

def test_url_forms(tmp_path, monkeypatch):
    monkeypatch.delenv("INFLUX_TOKEN", raising=False)
    s = parse_influx_url("influxdb://influx:8086?org=ops&bucket=telemetry")
    assert (s.base, s.org, s.bucket, s.version, s.language, s.token) == (
        "http://influx:8086", "ops", "telemetry", "2", "flux", None)
    s = parse_influx_url("influxdb://influx:8181/?database=tele&version=3&tls=1")
    assert (s.base, s.bucket, s.language) == ("https://influx:8181", "tele", "sql")
    (tmp_path / "token").write_text("from-file\n")
    s = parse_influx_url(f"influxdb://i:8086?org=o&bucket=b&token_file={tmp_path / 'token'}")
    assert s.token == "from-file"
    monkeypatch.setenv("INFLUX_TOKEN", "from-env")
    assert parse_influx_url("influxdb://i:8086?org=o&bucket=b").token == "from-env"


@pytest.mark.parametrize(("url", "message"), [
    ("influxdb://i:8086?org=o&bucket=b&token=abc", "token in the URL is refused"),
    ("influxdb://i:8086?bucket=b", "needs an organization"),
    ("influxdb://i:8086?org=o", "no bucket"),
    ("influxdb://i:8086?org=o&bucket=b&version=4", "version '4'"),
    ("influxdb://i:8086?org=o&bucket=b&query=sql", "not available on InfluxDB 2"),
    ("influxdb://i:8086?org=o&bucket=b&token_env=CW_NOT_SET_ANYWHERE", "not set"),
    ("influxdb://i:8086?org=o&bucket=b&token_file=/nonexistent/token", "token_file"),
    ("influxdb://i:8086?org=o&bucket=b&buckett=c", "unknown parameter 'buckett'"),
])
def test_bad_urls_are_named(url, message):
    with pytest.raises(StoreError, match=message):
        parse_influx_url(url)


def test_token_never_shows_in_errors_or_repr(influx):
    with InfluxDBStore(_url(influx, "org=ops")) as store:
        assert "s3cret" not in repr(store) and "s3cret" not in store.url
        with pytest.raises(StoreError) as info:
            store.query(MEAN_BY_SITE)
        assert "s3cret" not in str(info.value)
    assert influx.seen[0][1]["Authorization"] == "Token s3cret"  # it was sent, never shown


def test_series_from_flux_and_from_sql(influx):
    want = [("jjj", "bj-1", "bj-1-0"), ("", "gy-1", "gy-1-3")]
    influx.answers = [("first()", "flux_series.csv")]
    with InfluxDBStore(_url(influx, "org=ops")) as store:
        got = store.series("accelerator", {"site": ["bj-1", "gy-1"]})
    assert list(got.columns) == list(DuckDBStore(":memory:").series("accelerator").columns)
    assert sorted(zip(got.hub, got.site, got.device, strict=True)) == sorted(want)
    assert 'r["site"] == "bj-1" or r["site"] == "gy-1"' in influx.seen[0][2]["query"]
    influx.seen.clear()
    influx.answers = [("information_schema", "v3_sql_columns.json"),
                      ("SELECT DISTINCT", "v3_sql_series.json")]
    with InfluxDBStore(_url(influx, "version=3")) as store:
        got = store.series("accelerator")
    assert sorted(zip(got.hub, got.site, got.device, strict=True)) == sorted(want)
    assert "'' AS \"vendor\"" in influx.seen[1][2]["q"]  # a tag never written
