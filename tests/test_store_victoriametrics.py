"""The VictoriaMetrics store against a real single-node VictoriaMetrics on loopback, with the
embedded DuckDB store as the reference: the same frame written to both, every aggregate,
filter, group-by and window compared. The cluster URL forms are checked without a cluster
(the Debian package has no cluster binaries)."""

from __future__ import annotations

import gzip
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from computewatch.store import Aggregate, DuckDBStore, Query, StoreError, _batches, open_store
from computewatch.store._victoriametrics import VictoriaMetricsStore, parse_vm_url
from tests.servers import free_port, start_victoriametrics
from tests.store_compare import HOURS, START, T0, assert_same, random_accelerators

FIELDS = ("utilization_ratio", "power_watts")
END = T0 + timedelta(hours=HOURS - 1, seconds=7)  # the last window is cut short


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return random_accelerators()


@pytest.fixture(scope="module")
def stores(tmp_path_factory, frame):
    duck = DuckDBStore(":memory:")
    duck.write("accelerator", frame)
    with start_victoriametrics(tmp_path_factory.mktemp("vm")) as server:
        vm = open_store(f"victoriametrics://127.0.0.1:{server.port}")
        half = len(frame) // 2  # two writes, two bodies at least
        assert vm.write("accelerator", frame.iloc[:half]).rows == half
        assert vm.write("accelerator", frame.iloc[half:]).rows == len(frame) - half
        yield duck, vm, server
        vm.close()
    duck.close()


SHAPES = [
    pytest.param((), None, {}, id="all-one-bucket"),
    pytest.param(("site",), timedelta(hours=1), {}, id="site-1h"),
    pytest.param(("hub", "device"), timedelta(minutes=37), {"site": ["bj-1", "gy-1"]},
                 id="hub-device-37m-where-list"),
    pytest.param(("device",), timedelta(minutes=20), {"hub": ""}, id="absent-hub-20m"),
    pytest.param(("hub",), timedelta(seconds=90), {"site": "sh-1"}, id="hub-90s"),
]


@pytest.mark.parametrize("agg", [a for a in Aggregate if a is not Aggregate.QUANTILE])
@pytest.mark.parametrize(("by", "window", "where"), SHAPES)
def test_aggregates_match_the_embedded_store(stores, agg, by, window, where):
    duck, vm, _ = stores
    q = Query("accelerator", FIELDS, START, END, where=where, group_by=by, window=window,
              agg=agg)
    want = duck.query(q)
    assert len(want) > 0
    # VictoriaMetrics keeps about 12 significant digits of a float
    assert_same(vm.query(q), want, ["time", *by], list(FIELDS), rtol=1e-9)


@pytest.mark.parametrize(("by", "window", "where"), [
    p for p in SHAPES if "device" in p.values[0]])
@pytest.mark.parametrize("phi", [0.0, 0.05, 0.5, 0.95, 1.0])
def test_quantile_of_one_series_is_exact(stores, phi, by, window, where):
    duck, vm, _ = stores
    q = Query("accelerator", FIELDS, START, END, where=where, group_by=by, window=window,
              agg=Aggregate.QUANTILE, quantile=phi)
    assert_same(vm.query(q), duck.query(q), ["time", *by], list(FIELDS), rtol=1e-9)


@pytest.mark.parametrize(("by", "window"), [((), None), (("site",), timedelta(hours=1))])
@pytest.mark.parametrize("phi", [0.05, 0.5, 0.95])
def test_quantile_across_series_is_within_a_histogram_bucket(stores, phi, by, window):
    """Several series per group: merged histogram_over_time buckets, 18 per decade, so the
    estimate is within one bucket width (10^(1/18) = 1.137) of the exact value."""
    duck, vm, _ = stores
    q = Query("accelerator", FIELDS, START, END, group_by=by, window=window,
              agg=Aggregate.QUANTILE, quantile=phi)
    got, want = vm.query(q), duck.query(q)
    assert_same(got, want, ["time", *by], list(FIELDS), rtol=0.137)
    assert not np.allclose(got[list(FIELDS)], want[list(FIELDS)], rtol=1e-9, atol=0)


def test_last_is_the_latest_sample_across_the_groups_series(stores, frame):
    _, vm, _ = stores
    q = Query("accelerator", ("utilization_ratio",), T0, T0 + timedelta(hours=HOURS),
              group_by=("site",), window=timedelta(minutes=30), agg=Aggregate.LAST)
    got = vm.query(q)
    # computed here from the frame, not by either store
    d = frame.assign(bucket=T0 + ((frame.time - T0) // timedelta(minutes=30)) * timedelta(
        minutes=30))
    latest = d.sort_values("time").groupby(["bucket", "site"]).utilization_ratio.last()
    assert got.set_index(["time", "site"]).utilization_ratio.to_dict() == pytest.approx(
        latest.to_dict(), rel=1e-11)


def test_bounds_between_milliseconds(stores):
    """Times with microseconds: a sample belongs to [start, end) by its whole millisecond."""
    duck, vm, _ = stores
    q = Query("accelerator", FIELDS, START - timedelta(microseconds=250),
              END + timedelta(microseconds=999), group_by=("site",),
              window=timedelta(minutes=10), agg=Aggregate.SUM)
    assert_same(vm.query(q), duck.query(q), ["time", "site"], list(FIELDS))
    q = Query("accelerator", FIELDS, START + timedelta(microseconds=250), END, agg=Aggregate.COUNT)
    assert_same(vm.query(q), duck.query(q), ["time"], list(FIELDS))


def test_more_windows_than_one_request_may_ask(stores):
    duck, vm, _ = stores
    # 5 h of 1 s windows: three requests of at most 10,000 points, the last cut short
    q = Query("accelerator", ("power_watts",), START, END, window=timedelta(seconds=1),
              agg=Aggregate.COUNT)
    want = duck.query(q)
    assert len(want) > 9_000
    assert_same(vm.query(q), want, ["time"], ["power_watts"], rtol=0)


def test_count_of_a_field_absent_in_a_window_is_zero(stores):
    duck, vm, _ = stores
    extra = pd.DataFrame({"time": [T0 + timedelta(hours=7)], "site": ["bj-1"],
                          "device": ["bj-1-0"], "power_watts": [100.0]})
    duck.write("accelerator", extra)
    vm.write("accelerator", extra)
    q = Query("accelerator", FIELDS, T0 + timedelta(hours=6), T0 + timedelta(hours=8),
              group_by=("site",), window=timedelta(hours=1), agg=Aggregate.COUNT)
    got = vm.query(q)
    assert got.to_dict("records") == duck.query(q).to_dict("records")
    assert got.utilization_ratio.tolist() == [0] and got.power_watts.tolist() == [1]


def test_series_and_time_bounds(stores, frame):
    duck, vm, _ = stores
    assert_same(vm.series("accelerator"), duck.series("accelerator"),
                list(duck.series("accelerator").columns), [])
    got = vm.series("accelerator", {"site": ["sh-1", "gy-1"], "hub": ""})
    assert sorted(got.device) == sorted(f"gy-1-{i}" for i in range(5))
    assert (got.site == "gy-1").all() and (got.hub == "").all()
    assert vm.time_bounds("accelerator") == duck.time_bounds("accelerator")
    assert vm.time_bounds("finding") is None
    assert vm.series("finding").empty


def test_label_values_that_need_escaping(stores):
    _, vm, _ = stores
    odd = ['we"ird', "back\\slash", "dot.star*", "pipe|(", "plain"]
    t = pd.date_range(T0, periods=len(odd), freq="s", tz="UTC")
    vm.write("link_latency", pd.DataFrame({"time": t, "src_site": odd, "dst_site": "x",
                                           "loss_ratio": np.arange(len(odd)) / 10}))
    for pick in (odd[:4], [odd[0]], [odd[2], "dot"], [odd[3]]):
        got = vm.query(Query("link_latency", ("loss_ratio",), T0, T0 + timedelta(minutes=1),
                             where={"src_site": pick}, group_by=("src_site",),
                             agg=Aggregate.MAX))
        assert sorted(got.src_site) == sorted(p for p in pick if p in odd)
    assert vm.query(Query("link_latency", ("loss_ratio",), T0, T0 + timedelta(minutes=1),
                          where={"src_site": []})).empty


def test_bad_queries_name_the_problem(stores):
    _, vm, _ = stores
    with pytest.raises(StoreError, match="no tag 'planet'"):
        vm.query(Query("accelerator", FIELDS, T0, END, where={"planet": "mars"}))
    with pytest.raises(StoreError, match="to group by"):
        vm.query(Query("accelerator", FIELDS, T0, END, group_by=("planet",)))
    with pytest.raises(StoreError, match="whole number of milliseconds"):
        vm.query(Query("accelerator", FIELDS, T0, END, window=timedelta(microseconds=1500)))
    with pytest.raises(KeyError, match="bogus"):
        vm.query(Query("accelerator", ("bogus",), T0, END))


def test_unreachable_server_is_named():
    port = free_port()
    with VictoriaMetricsStore(f"victoriametrics://127.0.0.1:{port}") as vm:
        with pytest.raises(StoreError, match=f"127.0.0.1:{port}"):
            vm.query(Query("accelerator", FIELDS, T0, END))
        with pytest.raises(StoreError, match="stopped after 0 of 1 rows"):
            vm.write("accelerator", pd.DataFrame({"time": [T0], "site": ["a"],
                                                  "utilization_ratio": [0.5]}))


def test_drop_before_deletes_series_entirely_older_than_the_cutoff(stores):
    _, vm, _ = stores
    old = T0 - timedelta(days=10)
    pue = pd.DataFrame({"time": [old, old + timedelta(hours=1), old, T0],
                        "site": ["gone", "gone", "kept", "kept"],
                        "energy_ratio": [1.2, 1.3, 1.4, 1.5]})
    vm.write("pue", pue)
    before = vm.series("accelerator")
    assert vm.drop_before(T0 - timedelta(days=1)) == 2
    assert vm.series("pue").site.tolist() == ["kept"]
    # the kept series keeps its old sample too: VictoriaMetrics deletes whole series only
    assert vm.query(Query("pue", ("energy_ratio",), old - timedelta(hours=1),
                          T0 + timedelta(hours=1), agg=Aggregate.COUNT)).energy_ratio[0] == 2
    assert_same(vm.series("accelerator"), before, list(before.columns), [])


# -- writes: bodies, retries -----------------------------------------------------------------

class _Flaky(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        srv = self.server
        if not self.path.startswith(("/api/v2/write", "/insert/")):  # force_flush
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.end_headers()
            return
        body = gzip.decompress(self.rfile.read(int(self.headers["Content-Length"])))
        status = srv.statuses.pop(0) if srv.statuses else 204
        srv.bodies.append((status, body))
        srv.paths.append(self.path)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    srv.statuses, srv.bodies, srv.paths = [], [], []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_bodies_are_bounded_and_retryable_failures_sent_again(flaky, frame, monkeypatch):
    monkeypatch.setattr(_batches, "BODY_BYTES", 100_000)
    monkeypatch.setattr(_batches, "BACKOFF_S", 0.01)
    flaky.statuses = [503, 429]  # the first body fails twice, then goes through
    with VictoriaMetricsStore(f"victoriametrics://127.0.0.1:{flaky.server_port}") as vm:
        result = vm.write("accelerator", frame)
    assert result.rows == len(frame)
    ok = [b for s, b in flaky.bodies if s == 204]
    assert [s for s, _ in flaky.bodies[:3]] == [503, 429, 204]
    assert flaky.bodies[0][1] == flaky.bodies[2][1]  # the same body, sent again
    assert len(ok) > 5
    assert max(len(b) for b in ok[1:]) < 150_000
    assert sum(b.count(b"\n") for b in ok) == len(frame)


def test_a_refused_body_stops_the_write_and_says_how_far_it_got(flaky, frame, monkeypatch):
    monkeypatch.setattr(_batches, "BODY_BYTES", 100_000)
    flaky.statuses = [204, 400]
    with VictoriaMetricsStore(f"victoriametrics://127.0.0.1:{flaky.server_port}") as vm, \
            pytest.raises(StoreError, match=r"stopped after \d+ of 12000 rows: .*HTTP 400") as info:
        vm.write("accelerator", frame)
    assert len(flaky.bodies) == 2  # not retried
    assert "stopped after 0 " not in str(info.value)


# -- URLs -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "write", "read", "delete"), [
    ("victoriametrics://vm:8428", "http://vm:8428", "http://vm:8428", "http://vm:8428"),
    ("victoriametrics://vm:8428?tls=1", "https://vm:8428", "https://vm:8428", "https://vm:8428"),
    ("victoriametrics://vmauth:8427?tenant=42:7",
     "http://vmauth:8427/insert/42:7/influx", "http://vmauth:8427/select/42:7/prometheus",
     "http://vmauth:8427/delete/42:7/prometheus"),
    ("victoriametrics://?insert=ins:8480&select=sel:8481",
     "http://ins:8480/insert/0/influx", "http://sel:8481/select/0/prometheus",
     "http://sel:8481/delete/0/prometheus"),
    ("victoriametrics://?insert=ins:8480&select=sel:8481&tenant=3",
     "http://ins:8480/insert/3/influx", "http://sel:8481/select/3/prometheus",
     "http://sel:8481/delete/3/prometheus"),
])
def test_url_forms(url, write, read, delete):
    endpoints, _ = parse_vm_url(url)
    assert (endpoints.write, endpoints.read, endpoints.delete) == (write, read, delete)


@pytest.mark.parametrize(("url", "message"), [
    ("victoriametrics://vm:8428?tenant=abc", "tenant 'abc'"),
    ("victoriametrics://vm:8428?tennant=1", "unknown parameter 'tennant'"),
    ("victoriametrics://?insert=ins:8480", "give both"),
    ("victoriametrics://?insert=ins&select=sel:8481", "insert 'ins' is not host:port"),
    ("victoriametrics://", "no host:port"),
    ("victoriametrics://vm:8428?timeout=soon", "timeout"),
])
def test_bad_urls_are_named(url, message):
    with pytest.raises(StoreError, match=message):
        parse_vm_url(url)


def test_cluster_requests_go_to_the_tenant_paths(flaky):
    """Without a cluster: the write lands on vminsert's path, as a cluster would get it."""
    port = flaky.server_port
    with open_store(f"victoriametrics://?insert=127.0.0.1:{port}&select=127.0.0.1:{port}"
                    "&tenant=5:1") as vm:
        vm.write("pue", pd.DataFrame({"time": [T0], "site": ["a"], "energy_ratio": [1.2]}))
    assert flaky.paths[0].startswith("/insert/5:1/influx/api/v2/write?")
    assert flaky.bodies[0][1].startswith(b"pue,site=a energy_ratio=1.2 ")


def test_a_rerun_of_analyze_writes_the_same_series_once(tmp_path):
    """Findings on VictoriaMetrics, which cannot delete a window: each finding is its own
    series (the key tells a surplus finding's circles apart), so a rerun writes the same
    series at the same timestamps, and with -dedup.minScrapeInterval (as docker-compose.yml
    runs it) one sample of each is kept."""
    from computewatch.findings import Finding, Period, Severity
    from computewatch.pipelines import run_pipelines
    from computewatch.policy import load_policy
    from computewatch.topology import load_topology

    period = Period(T0, T0 + timedelta(hours=2))

    def circles(*_args):
        return [Finding("surplus", "idle_capacity_within_circle", "city", "shanghai",
                        Severity.INFO, n, 0.0, "accelerators", period.start, period.end,
                        detail={"variant": f"{ms}ms"}) for n, ms in ((3, 1), (7, 5), (9, 20))]

    with start_victoriametrics(tmp_path, args=["-dedup.minScrapeInterval=1ms"]) as server:
        vm = open_store(f"victoriametrics://127.0.0.1:{server.port}")
        for _ in range(2):
            run_pipelines(vm, period, load_policy(), load_topology(),
                          registry={"surplus": circles})
        got = vm.query(Query("finding", ("observed",), period.start,
                             period.end + timedelta(minutes=1), group_by=("key",),
                             agg=Aggregate.COUNT))
        vm.close()
    assert dict(zip(got.key, got.observed, strict=True)) == {
        "2026-09-01T00:00:00Z/1ms": 1, "2026-09-01T00:00:00Z/5ms": 1,
        "2026-09-01T00:00:00Z/20ms": 1}
