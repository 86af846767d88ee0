"""LineProtocolWriter: one gzip POST to /api/v2/write, against a real VictoriaMetrics and, for
the failure statuses VictoriaMetrics does not produce on demand, a local HTTP server."""

from __future__ import annotations

import gzip
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from computewatch.lineprotocol import LineProtocolWriter, WriteError
from computewatch.store import StoreError
from tests.servers import free_port, start_victoriametrics


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory):
    with start_victoriametrics(tmp_path_factory.mktemp("vm-writer")) as server:
        yield server


def _export(url: str, selector: str) -> list[dict]:
    urllib.request.urlopen(url + "/internal/force_flush").read()
    q = urllib.parse.quote(selector)
    with urllib.request.urlopen(f"{url}/api/v1/export?match[]={q}") as r:
        return [json.loads(line) for line in r.read().decode().splitlines() if line]


@pytest.mark.parametrize("compress", [True, False])
def test_body_lands_in_victoriametrics(vm, compress: bool) -> None:
    site = f"gz-{compress}"
    body = (f"accelerator,site={site},node=n1 utilization_ratio=0.5 1700000000000000000\n"
            f"accelerator,site={site},node=n2 utilization_ratio=0.25,power_watts=300 "
            f"1700000001000000000\n").encode()
    with LineProtocolWriter(vm.url, gzip=compress) as w:
        w.write(body)
    got = {(s["metric"]["__name__"], s["metric"]["node"]): (s["values"], s["timestamps"])
           for s in _export(vm.url, f'{{site="{site}"}}')}
    assert got == {
        ("accelerator_utilization_ratio", "n1"): ([0.5], [1700000000000]),
        ("accelerator_utilization_ratio", "n2"): ([0.25], [1700000001000]),
        ("accelerator_power_watts", "n2"): ([300], [1700000001000]),
    }


def test_precision_is_passed_on(vm) -> None:
    with LineProtocolWriter(vm.url) as w:
        w.write(b"accelerator,site=prec utilization_ratio=0.75 1700000002\n", precision="s")
    [series] = _export(vm.url, '{site="prec"}')
    assert series["timestamps"] == [1700000002000]


class _Recorder(BaseHTTPRequestHandler):
    """Answers every POST with the status the server was told, recording what came in."""

    def do_POST(self) -> None:
        srv = self.server
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        srv.requests.append((self.path, dict(self.headers), raw))
        time.sleep(srv.delay_s)
        self.send_response(srv.status)
        payload = b'{"code":"invalid","message":"unable to parse line 1"}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    srv.requests, srv.status, srv.delay_s = [], 204, 0.0
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_request_is_gzip_with_token_org_bucket_and_prefix(recorder) -> None:
    url = f"http://127.0.0.1:{recorder.server_port}/insert/3:7/influx"
    body = b"site_pue,site=a pue_power_ratio=1.2 1\n"
    with LineProtocolWriter(url, token="s3cret", org="ops", bucket="telemetry") as w:
        w.write(body, precision="ms")
    [(path, headers, raw)] = recorder.requests
    assert path.startswith("/insert/3:7/influx/api/v2/write?")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    assert query == {"org": ["ops"], "bucket": ["telemetry"], "precision": ["ms"]}
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Authorization"] == "Token s3cret"
    assert gzip.decompress(raw) == body


@pytest.mark.parametrize(("status", "retryable"),
                         [(400, False), (401, False), (413, False), (422, False),
                          (429, True), (500, True), (503, True)])
def test_status_decides_retryable(recorder, status: int, retryable: bool) -> None:
    recorder.status = status
    with LineProtocolWriter(f"http://127.0.0.1:{recorder.server_port}") as w, \
            pytest.raises(WriteError) as info:
        w.write(b"m f=1 1\n")
    assert info.value.status == status
    assert info.value.retryable is retryable
    assert f"HTTP {status}" in str(info.value)
    assert "unable to parse line 1" in str(info.value)
    assert len(recorder.requests) == 1  # one attempt, the client's own retries are off


def test_refused_connection_is_retryable() -> None:
    with LineProtocolWriter(f"http://127.0.0.1:{free_port()}") as w, \
            pytest.raises(WriteError) as info:
        w.write(b"m f=1 1\n")
    assert info.value.retryable is True
    assert info.value.status is None
    assert isinstance(info.value, StoreError)


def test_timeout_is_retryable(recorder) -> None:
    recorder.delay_s = 1.0
    with LineProtocolWriter(f"http://127.0.0.1:{recorder.server_port}", timeout_s=0.2) as w, \
            pytest.raises(WriteError) as info:
        w.write(b"m f=1 1\n")
    assert info.value.retryable is True
    assert info.value.status is None


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not an http"):
        LineProtocolWriter("victoriametrics://host:8428")
    with LineProtocolWriter("http://127.0.0.1:9") as w, pytest.raises(ValueError, match="'min'"):
        w.write(b"m f=1 1\n", precision="min")
