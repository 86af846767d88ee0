"""The agent stops within 5 s of SIGTERM whatever its exporters are doing (issue 15, 8).

A real agent process exports over OTLP to a blackhole on loopback: a listener that accepts
connections and never answers, so every export hangs for its whole timeout. Before, the
collection loop waited on the hung export and then on each exporter's flush and close in
turn: about 25 s from SIGTERM to exit.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

pytestmark = pytest.mark.realtime  # a real agent process (~8 s)

STOP_WITHIN_S = 5.0


class Blackhole:
    """Accepts TCP connections on 127.0.0.1 and never reads or answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_agent_stops_within_5_s_while_an_otlp_export_hangs(tmp_path):
    hole = Blackhole()
    port = free_port()
    config = tmp_path / "node.yaml"
    config.write_text(
        "interval: 1s\n"
        "exports:\n"
        "  otlp:\n"
        "    enabled: true\n"
        f"    endpoint: http://127.0.0.1:{hole.port}/v1/metrics\n"
        "    timeout: 10s\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "computewatch", "agent", "--config",
                             str(config), "--simulate", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # running: /metrics answers, exports are hung
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
                if hole.held:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert hole.held, "the agent never connected to the OTLP endpoint"
        time.sleep(1.0)  # well inside the hung export's 10 s timeout
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the agent did not stop within 60 s")
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        hole.close()
    print(f"the agent stopped {took:.2f} s after SIGTERM")
    assert took < STOP_WITHIN_S, f"the agent took {took:.1f} s to stop"
    assert proc.returncode == 0, err
    assert "Traceback" not in err
