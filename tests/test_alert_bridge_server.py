"""The bridge's HTTP server under hostile clients (issue 15, defect 3), over real sockets.

The first bridge ran on ``http.server``: a client sending one byte a second held a thread
indefinitely (the 30 s timeout was per read), the listen backlog was 5, and a JSON body
nested 200,000 deep raised RecursionError: the client got no answer and nothing was counted.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from alert_sinks import Sink

from computewatch.alerts.bridge import open_bridge
from computewatch.status import ExitStatus

TOKEN = "am-bearer-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def notification() -> dict:
    return {"version": "4", "status": "firing", "receiver": "noc", "groupKey": "{}",
            "alerts": [{"status": "firing", "labels": {"alertname": "AgentDown"},
                        "annotations": {}, "startsAt": "2026-05-09T08:00:00Z"}]}


@pytest.fixture
def bridge(tmp_path, monkeypatch):
    monkeypatch.setenv("BRIDGE_TOKEN", TOKEN)
    sink = Sink("wecom")
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "auth: {bearer_token: {env: BRIDGE_TOKEN}}\n"
        f"dead_letter: {tmp_path / 'dead.jsonl'}\n"
        "server: {header_timeout: 1s, body_timeout: 1s, max_connections: 40}\n"
        f"targets:\n  w: {{kind: wecom, url: \"{sink.url}\"}}\n"
        "receivers:\n  noc: [w]\n", encoding="utf-8")
    bridge = open_bridge(path, "127.0.0.1:0").start()
    yield bridge
    bridge.stop(grace_s=0)
    sink.stop()


def rejected(bridge, reason: str, receiver: str = "_unknown") -> float:
    return bridge.metrics.registry.get_sample_value(
        "alert_bridge_requests_rejected_total", {"receiver": receiver, "reason": reason}) or 0


def connect(bridge) -> socket.socket:
    return socket.create_connection(("127.0.0.1", bridge.port), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return got


def post(bridge, body: bytes) -> requests.Response:
    return requests.post(f"{bridge.url}/alertmanager/noc", data=body, timeout=10,
                         headers={**AUTH, "Content-Type": "application/json"})


def drip(sock: socket.socket, data: bytes, every_s: float, stop: threading.Event) -> None:
    """Send one byte every ``every_s`` until the server closes or ``stop``."""
    for i in range(len(data)):
        if stop.wait(every_s):
            return
        try:
            sock.send(data[i:i + 1])
        except OSError:
            return


def test_a_client_sending_one_byte_a_second_is_cut_off_at_the_header_deadline(bridge):
    head = b"POST /alertmanager/noc HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    stop = threading.Event()
    slow = [connect(bridge) for _ in range(20)]
    t0 = time.monotonic()
    threads = [threading.Thread(target=drip, args=(s, head, 0.25, stop), daemon=True)
               for s in slow]
    for t in threads:
        t.start()
    # While they drip, a proper webhook is answered at once.
    assert post(bridge, json.dumps(notification()).encode()).status_code == 200
    answers = [read_all(s) for s in slow]  # returns when the server closes
    took = time.monotonic() - t0
    stop.set()
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers[0]
    assert took < 3.0  # the 1 s deadline, not 30 s per byte
    assert rejected(bridge, "header_timeout") == 20
    for s in slow:
        s.close()


def test_a_body_that_dribbles_is_cut_off_at_the_body_deadline(bridge):
    sock = connect(bridge)
    sock.sendall(b"POST /alertmanager/noc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 + TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n{")
    stop = threading.Event()
    threading.Thread(target=drip, args=(sock, b'"version": "4"' * 10, 0.3, stop),
                     daemon=True).start()
    t0 = time.monotonic()
    answer = read_all(sock)
    stop.set()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"body_timeout: the body did not arrive within 1 s" in answer
    assert time.monotonic() - t0 < 3.0
    assert rejected(bridge, "body_timeout", receiver="noc") == 1
    sock.close()


def test_json_nested_200000_deep_is_a_counted_400(bridge):
    body = b'{"alerts": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    resp = requests.post(f"{bridge.url}/alertmanager/noc", data=body, timeout=10,
                         headers={**AUTH, "Content-Type": "application/json"})
    # The limit is the config's max_body_bytes (1 MiB by default): this body is 400 kB.
    assert resp.status_code == 400
    assert resp.text.startswith("too_deep: JSON nested deeper than 32 levels")
    assert rejected(bridge, "too_deep", receiver="noc") == 1
    assert post(bridge, json.dumps(notification()).encode()).status_code == 200


def test_connections_over_the_limit_get_503_and_are_counted(bridge):
    held = [connect(bridge) for _ in range(40)]
    time.sleep(0.2)
    extra = connect(bridge)
    answer = read_all(extra)
    assert answer.startswith(b"HTTP/1.1 503 ") and b"connection_limit" in answer
    assert rejected(bridge, "connection_limit") == 1
    for s in held:
        s.close()
    time.sleep(0.2)
    assert post(bridge, json.dumps(notification()).encode()).status_code == 200
    extra.close()


def test_garbage_is_a_counted_400(bridge):
    sock = connect(bridge)
    sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
    assert read_all(sock).startswith(b"HTTP/1.1 400 ")
    assert rejected(bridge, "bad_request") == 1
    sock.close()


def test_the_listen_backlog_is_the_configured_one_not_5(bridge):
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) is not installed")
    out = subprocess.run([ss, "-Hltn", f"sport = :{bridge.port}"], capture_output=True,
                         text=True, check=True).stdout.split()
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert int(out[2]) == min(2048, somaxconn)  # Send-Q of a listener: its backlog


GOOD = """\
auth: {bearer_token: {env: BRIDGE_TOKEN}}
dead_letter: DEAD
targets:
  w: {kind: wecom, url: {env: WECOM_URL}}
receivers:
  noc: [w]
"""


def check(tmp_path: Path, text: str, env: dict[str, str] | None = None,
          *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "bridge.yaml"
    path.write_text(text.replace("DEAD", str(tmp_path / "dead.jsonl")), encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "BRIDGE_TOKEN": TOKEN,
           "WECOM_URL": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", **(env or {})}
    return subprocess.run([sys.executable, "-m", "computewatch", "alert-bridge", "--config",
                           str(path), "--check", *args], capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.parametrize(("change", "args", "words"), [
    ("listen: 127.0.0.1:99999\n", (),
     "bridge.yaml:7: listen: address '127.0.0.1:99999': port '99999' is not a number from 0 "
     "to 65535"),
    ("delivery: {timeout: .nan}\n", (),
     "bridge.yaml:7: delivery.timeout: must be a finite number (got nan)"),
    ("delivery: {backoff: .inf}\n", (),
     "bridge.yaml:7: delivery.backoff: must be a finite number (got inf)"),
    ("server: {header_timeout: 2d}\n", (),
     "bridge.yaml:7: server.header_timeout: must be more than 0 and at most a day"),
    ("", ("--listen", "junk"), "--listen 'junk': expected host:port"),
    ("", ("--listen", "0.0.0.0:70000"),
     "--listen '0.0.0.0:70000': port '70000' is not a number from 0 to 65535"),
])
def test_check_refuses_what_would_fail_at_start(tmp_path, change, args, words):
    done = check(tmp_path, GOOD + change, None, *args)
    assert done.returncode == ExitStatus.BAD_INPUT, done.stdout + done.stderr
    assert words in done.stderr.replace(f"{tmp_path}/", "")
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_check_reads_the_secrets_and_tries_the_dead_letter_file(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("x", encoding="utf-8")
    secret.chmod(0)
    text = GOOD.replace("{env: BRIDGE_TOKEN}", f"{{file: {secret}}}")
    done = check(tmp_path, text)
    if done.returncode == 0:  # root reads any file
        assert subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() \
            == "0"
    else:
        assert done.returncode == ExitStatus.BAD_INPUT
        assert "auth.bearer_token.file: cannot read secret file" in done.stderr
    done = check(tmp_path, GOOD, {"WECOM_URL": ""})
    assert done.returncode == ExitStatus.BAD_INPUT
    assert "targets.w.url.env: environment variable 'WECOM_URL' is not set" in done.stderr
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("", encoding="utf-8")
    done = check(tmp_path, GOOD.replace("DEAD", str(blocked / "dead.jsonl")))
    assert done.returncode == ExitStatus.BAD_INPUT
    assert "dead_letter: cannot write the dead-letter file" in done.stderr
    assert check(tmp_path, GOOD).returncode == ExitStatus.OK


def test_answers_are_not_held_back_by_nagle(bridge):
    """Responses leave at once on a keep-alive connection: TCP_NODELAY on accepted sockets
    (without it each answer's body waited for the client's delayed ACK, 40 ms)."""
    sock = connect(bridge)
    took = []
    for _ in range(21):
        t0 = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while not got.endswith(b"}"):
            got += sock.recv(65536)
        took.append(time.monotonic() - t0)
    sock.close()
    assert sorted(took)[10] < 0.020, sorted(took)
