"""The remote-write exporter against a real VictoriaMetrics: delivery, an outage, a restart,
refusals, the bound; and the agent's buffer metrics on a real agent's /metrics."""

from __future__ import annotations

import gzip
import logging
import math
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port, start_victoriametrics
from vmexport import exported, sample_count, wait_for_count

from computewatch.collectors.agent import Agent
from computewatch.collectors.export.remote import RemoteExporter, WriteTarget, parse_write_url
from computewatch.samples import Sample, sample_value

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def batch(first: int, n: int, node: str = "n1") -> list[Sample]:
    """``n`` power readings, one per second from ``first``, on 4 devices in turn."""
    return [Sample.of("accelerator.power_watts", 100.0 + i, {"node": node, "device": f"d{i % 4}"},
                      T0 + timedelta(seconds=i)) for i in range(first, first + n)]


def stored_values(url: str, node: str = "n1") -> list[float]:
    """Every stored power value of the node, sorted (each value names its sample)."""
    return sorted(v for s in exported(url, f'accelerator_power_watts{{node="{node}"}}')
                  for v in s["values"])


def metric(exp: RemoteExporter, name: str, **labels: str) -> float | None:
    return sample_value(exp.self_samples({"node": "n1"}), name, labels)


def until(cond, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def vm(tmp_path):
    with start_victoriametrics(tmp_path / "vm") as server:
        yield server


def test_samples_arrive_exactly_once_with_their_times(vm, tmp_path):
    exp = RemoteExporter(f"victoriametrics://127.0.0.1:{vm.port}", tmp_path / "buf",
                         flush_interval_s=0.05)
    try:
        for k in range(5):
            assert exp.export(batch(k * 20, 20)).exported == 20
        assert exp.flush(20)
        got = exported(vm.url, 'accelerator_power_watts{node="n1"}')
        assert {s["metric"]["device"] for s in got} == {"d0", "d1", "d2", "d3"}
        d1 = next(s for s in got if s["metric"]["device"] == "d1")
        t0_ms = int(T0.timestamp() * 1000)
        assert d1["timestamps"] == [t0_ms + i * 1000 for i in range(1, 100, 4)]
        assert d1["values"] == [100.0 + i for i in range(1, 100, 4)]
        assert metric(exp, "agent.buffer_sent_samples_total", exporter="remote") == 100
        assert metric(exp, "agent.buffer_queued_samples") == 0
        assert metric(exp, "agent.buffer_retries_total") == 0
    finally:
        exp.close()


def test_an_outage_is_buffered_on_disk_and_drained_after_it(vm, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="computewatch.collectors.export.remote")
    exp = RemoteExporter(f"victoriametrics://127.0.0.1:{vm.port}", tmp_path / "buf",
                         flush_interval_s=0.05, max_backoff_s=0.5)
    try:
        exp.export(batch(0, 50))
        assert exp.flush(20)
        vm.stop()
        for k in range(1, 6):  # the collection loop is not held up by the dead store
            assert exp.export(batch(k * 50, 50)).exported == 50
        assert until(lambda: (metric(exp, "agent.buffer_retries_total") or 0) >= 3)
        assert metric(exp, "agent.buffer_queued_samples") == 250
        assert (metric(exp, "agent.buffer_bytes") or 0) > 250 * 40
        assert not exp.flush(1)  # the store is down: flush says so instead of waiting
        vm.start()
        assert exp.flush(30)
        assert stored_values(vm.url) == [100.0 + i for i in range(300)]  # each once, none lost
        assert metric(exp, "agent.buffer_sent_samples_total") == 300
        assert metric(exp, "agent.buffer_dropped_samples_total", reason="full") == 0
        lines = [r.getMessage() for r in caplog.records]
        assert sum("failing" in m for m in lines) == 1  # one line per outage, not per retry
        assert sum("reachable again" in m for m in lines) == 1
    finally:
        exp.close()


def test_data_queued_before_a_restart_is_sent_by_the_next_process(tmp_path):
    port = free_port()
    url = f"victoriametrics://127.0.0.1:{port}"
    first = RemoteExporter(url, tmp_path / "buf", flush_interval_s=0.05, max_backoff_s=0.2)
    first.export(batch(0, 40))
    first.export(batch(40, 40))
    first.close(1)  # the store never came up while this agent ran
    with start_victoriametrics(tmp_path / "vm", port=port) as vm:
        second = RemoteExporter(url, tmp_path / "buf", flush_interval_s=0.05)
        try:
            second.export(batch(80, 20))
            assert second.flush(30)
            assert stored_values(vm.url) == [100.0 + i for i in range(100)]
        finally:
            second.close()


def test_a_store_that_refuses_for_good_gets_the_data_dropped_and_counted(vm, tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="computewatch.collectors.export.remote")
    # VictoriaMetrics answers 400 "unsupported path" under an unknown prefix: not retryable.
    exp = RemoteExporter(f"http://127.0.0.1:{vm.port}/no-such-prefix", tmp_path / "buf",
                         flush_interval_s=0.05)
    try:
        for k in range(3):
            exp.export(batch(k * 10, 10))
        assert until(lambda: metric(exp, "agent.buffer_dropped_samples_total",
                                    reason="rejected") == 30)
        assert metric(exp, "agent.buffer_queued_samples") == 0
        assert metric(exp, "agent.buffer_retries_total") == 0
        refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(refused) == 1 and "400" in refused[0] and "unsupported path" in refused[0]
    finally:
        exp.close()


class FakeInflux(BaseHTTPRequestHandler):
    """InfluxDB's /api/v2/write at the wire: a body with a conflicting field type gets 422."""

    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
        if b'power_watts="' in body:
            self.send_response(422)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"code":"unprocessable entity","message":"failure writing '
                             b'points to database: partial write: field type conflict"}')
            return
        type(self).bodies.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_only_the_records_the_store_refuses_are_dropped(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeInflux)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeInflux.bodies = []
    url = (f"influxdb://127.0.0.1:{server.server_address[1]}?org=o&bucket=b")
    exp = RemoteExporter(url, tmp_path / "buf", flush_interval_s=0.3)
    try:
        exp.export(batch(0, 10))
        exp.export_lines(b'accelerator,node=n1 power_watts="high" 1\n', 1)  # a bad record
        exp.export(batch(10, 10))
        assert exp.flush(20)
        assert metric(exp, "agent.buffer_dropped_samples_total", reason="rejected") == 1
        assert metric(exp, "agent.buffer_sent_samples_total") == 20
        lines = b"".join(FakeInflux.bodies).splitlines()
        assert len(lines) == 20 and not any(b'"high"' in x for x in lines)
    finally:
        exp.close()
        server.shutdown()


def test_the_bound_drops_oldest_and_the_count_is_exact(tmp_path):
    port = free_port()
    url = f"victoriametrics://127.0.0.1:{port}"
    exp = RemoteExporter(url, tmp_path / "buf", max_bytes=64 * 1024, batch_max_samples=50,
                         flush_interval_s=0.05, max_backoff_s=0.2)
    try:
        total = 0
        for k in range(60):  # ~60 x 50 x 70 bytes: three times the bound, store down
            exp.export(batch(k * 50, 50))
            total += 50
        dropped = metric(exp, "agent.buffer_dropped_samples_total", reason="full")
        assert dropped and dropped > total / 2
        assert (metric(exp, "agent.buffer_bytes") or 0) <= 64 * 1024 + 50 * 100
        with start_victoriametrics(tmp_path / "vm", port=port) as vm:
            assert exp.flush(30)
            values = stored_values(vm.url)
            assert len(values) == total - dropped
            # What survived is the batch that was in flight when the store went away (never
            # dropped) and the newest data, without a gap.
            in_flight = next(i for i, v in enumerate(values) if v != 100.0 + i)
            assert in_flight <= 50
            assert values[in_flight:] == [100.0 + i for i in range(int(dropped) + in_flight,
                                                                   total)]
    finally:
        exp.close()


def test_nan_cannot_travel_as_line_protocol_and_is_counted(tmp_path):
    exp = RemoteExporter("victoriametrics://127.0.0.1:1", tmp_path / "buf", max_backoff_s=0.2)
    try:
        res = exp.export([Sample.of("pue.energy_ratio", math.nan, {"site": "s", "window": "1h"},
                                    T0),
                          Sample.of("pue.energy_ratio", 1.3, {"site": "s", "window": "15m"}, T0)])
        assert res.exported == 1
        assert metric(exp, "agent.buffer_dropped_samples_total", reason="nan") == 1
        assert metric(exp, "agent.buffer_queued_samples") == 1
    finally:
        exp.close(1)


@pytest.mark.parametrize(("url", "target"), [
    ("victoriametrics://vm:8428", WriteTarget("http://vm:8428")),
    ("victoriametrics://vm:443?tls=1", WriteTarget("https://vm:443")),
    ("victoriametrics://vminsert:8480?tenant=7:1",
     WriteTarget("http://vminsert:8480/insert/7:1/influx")),
    ("victoriametrics://?insert=vi:8480&select=vs:8481&tenant=3",
     WriteTarget("http://vi:8480/insert/3/influx")),
    ("influxdb://db:8086?org=o&bucket=b&token_env=CW_TEST_TOKEN",
     WriteTarget("http://db:8086", "o", "b", "s3cret")),
    ("influxdb://db:8181?bucket=b&version=3&token_env=CW_TEST_TOKEN",
     WriteTarget("http://db:8181", None, "b", "s3cret")),
    ("http://vm:8428/", WriteTarget("http://vm:8428")),
])
def test_write_urls_are_read_as_the_stores_read_them(url, target, monkeypatch):
    monkeypatch.setenv("CW_TEST_TOKEN", "s3cret")
    got = parse_write_url(url)
    assert got == target
    assert "s3cret" not in repr(got)  # a token never reaches a log line


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://db:3306", "scheme 'mysql' is not one of"),
    ("victoriametrics:///", "no host:port"),
    ("victoriametrics://vm:8480?tenant=abc", "tenant 'abc'"),
    ("victoriametrics://vm:8480?bucket=x", "unknown parameter 'bucket'"),
    ("influxdb://db:8086?org=o", "no bucket"),
    ("influxdb://db:8086?org=o&bucket=b&token=abc", "a token in the URL is refused"),
    ("influxdb://db:8086?org=o&bucket=b&token_env=CW_NO_SUCH_TOKEN", "CW_NO_SUCH_TOKEN"),
])
def test_bad_write_urls_say_what_is_wrong(url, message, monkeypatch):
    monkeypatch.delenv("CW_NO_SUCH_TOKEN", raising=False)
    with pytest.raises(ValueError, match=message):
        parse_write_url(url)


def test_a_bad_remote_in_the_node_config_is_named(tmp_path):
    from computewatch.collectors.config import load_node_config
    from computewatch.collectors.setup import build_exporters
    from computewatch.config import ConfigError

    path = tmp_path / "node.yaml"
    path.write_text("exports:\n  remote:\n    url: kafka://broker:9092\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"node.yaml:3: exports.remote.url: .*kafka"):
        load_node_config(path)
    path.write_text("exports:\n  remote:\n    buffer_max_bytes: 1kB\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"node.yaml:3: exports.remote.buffer_max_bytes"):
        load_node_config(path)
    path.write_text("exports:\n  prometheus: {enabled: false}\n  remote:\n    enabled: true\n"
                    "    url: victoriametrics://vm:8428?tenant=x\n"
                    f"    buffer_dir: {tmp_path / 'buf'}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"exports.remote: .*tenant 'x'"):
        build_exporters(load_node_config(path))


def test_the_agent_reports_the_buffer_with_its_labels(tmp_path):
    exp = RemoteExporter("victoriametrics://127.0.0.1:1", tmp_path / "buf", max_backoff_s=0.2)
    agent = Agent([], [exp], {"node": "n1", "site": "bj-ai", "hub": "jjj"})
    try:
        own = agent.self_samples()
        limit = sample_value(own, "agent.buffer_limit_bytes",
                             {"node": "n1", "site": "bj-ai", "hub": "jjj", "exporter": "remote"})
        assert limit == 512 * 2**20
        reasons = {s.label("reason") for s in own if s.name == "agent.buffer_dropped_samples_total"}
        assert reasons == {"full", "corrupt", "rejected", "nan", "invalid"}
    finally:
        agent.close(1)


@pytest.mark.realtime  # a real agent writing to VictoriaMetrics (~8 s)
def test_a_real_agent_writes_to_victoriametrics_and_shows_its_buffer(vm, tmp_path):
    port = free_port()
    config = tmp_path / "node.yaml"
    config.write_text(f"interval: 1s\nexports:\n  remote:\n    enabled: true\n"
                      f"    url: victoriametrics://127.0.0.1:{vm.port}\n"
                      f"    buffer_dir: {tmp_path / 'buf'}\n    flush_interval: 200ms\n",
                      encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "computewatch", "agent", "--config",
                             str(config), "--simulate", "--listen", f"127.0.0.1:{port}",
                             "--duration", "6s"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "agent_buffer_sent_samples_total" not in body:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
        _, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "remote" in err
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    for name in ("agent_buffer_bytes", "agent_buffer_limit_bytes", "agent_buffer_queued_samples",
                 "agent_buffer_dropped_samples", "agent_buffer_corrupt_segments",
                 "agent_buffer_sent_samples", "agent_buffer_retries"):
        assert name in fams, name
        assert all(s.labels["exporter"] == "remote" for s in fams[name].samples)
    # The store got the accelerators (16 per cycle, several cycles) and the agent's own metrics.
    assert wait_for_count(vm.url, "accelerator_power_watts", 48) >= 48
    assert sample_count(vm.url, 'agent_buffer_sent_samples_total{exporter="remote"}') >= 1
