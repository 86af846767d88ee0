"""`computewatch agent` as a process: scraped over HTTP while it runs, its store written."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from computewatch.store import Aggregate, DuckDBStore, Query

pytestmark = pytest.mark.realtime  # a real agent process serving and storing (~5 s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_agent_serves_metrics_and_writes_its_store(tmp_path):
    port = free_port()
    db = tmp_path / "agent.duckdb"
    config = tmp_path / "node.yaml"
    config.write_text(f"interval: 1s\nexports:\n  store:\n    enabled: true\n"
                      f"    url: duckdb:///{db}\n", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "computewatch", "agent", "--config",
                             str(config), "--simulate", "--listen", f"127.0.0.1:{port}",
                             "--duration", "4s"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        body = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=2).read().decode()
                if body.count("accelerator_power_watts{") == 16:  # both collectors in
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert body and "accelerator_power_watts" in body
        fams = {f.name: f for f in text_string_to_metric_families(body)}
        assert len(fams["accelerator_power_watts"].samples) == 16
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "nvml, ascend" in err
    with DuckDBStore(db) as store:
        now = datetime.now(UTC)
        got = store.query(Query("accelerator", ("power_watts",), now - timedelta(minutes=5),
                                now + timedelta(minutes=1), group_by=("vendor",),
                                agg=Aggregate.COUNT))
        counts = dict(zip(got.vendor, got.power_watts, strict=True))
        # At least three 1-second cycles of 8 cards each went into the store.
        assert counts["nvidia"] >= 24 and counts["huawei"] >= 24
        up = store.query(Query("agent", ("collector_up",), now - timedelta(minutes=5),
                               now + timedelta(minutes=1), group_by=("collector",),
                               where={"collector": ["nvml", "ascend"]}, agg=Aggregate.MIN))
        assert dict(zip(up.collector, up.collector_up, strict=True)) == {"ascend": 1.0,
                                                                          "nvml": 1.0}
