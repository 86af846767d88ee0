"""Latency end to end: `computewatch responder` processes, an agent probing them from its
node config, and the windows landing in its store with the right tiers and budgets."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from computewatch.store import Aggregate, DuckDBStore, Query

pytestmark = pytest.mark.realtime  # an agent probing real responders over time (~7 s)

TOPOLOGY = {
    "hubs": [{"id": "jjj", "name": "Beijing-Tianjin-Hebei", "name_zh": "京津冀",
              "region": "east", "provinces": ["Beijing", "Hebei"], "lat": 40.77, "lon": 114.89}],
    "clusters": [{"id": "zhangjiakou", "name": "Zhangjiakou", "name_zh": "张家口", "hub": "jjj",
                  "province": "Hebei", "lat": 40.77, "lon": 114.89}],
    "demand_cities": [{"id": "beijing", "name": "Beijing", "name_zh": "北京",
                       "province": "Beijing", "hub": "jjj", "lat": 39.92, "lon": 116.46}],
    "sites": [
        {"id": "bj-a", "name": "Beijing A", "province": "Beijing", "city": "Beijing",
         "hub": "jjj", "lat": 39.92, "lon": 116.46, "role": "hub", "it_capacity_kw": 100,
         "accelerators": [{"vendor": "nvidia", "model": "H100", "count": 8}]},
        {"id": "bj-b", "name": "Beijing B", "province": "Beijing", "city": "Beijing",
         "hub": "jjj", "lat": 39.95, "lon": 116.30, "role": "edge", "it_capacity_kw": 50,
         "accelerators": [{"vendor": "huawei", "model": "Ascend 910B", "count": 8}]},
        {"id": "zjk-a", "name": "Zhangjiakou A", "province": "Hebei", "city": "Zhangjiakou",
         "hub": "jjj", "cluster": "zhangjiakou", "lat": 40.77, "lon": 114.89,
         "role": "regional", "it_capacity_kw": 100,
         "accelerators": [{"vendor": "huawei", "model": "Ascend 910B", "count": 8}]},
    ],
}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "computewatch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_agent_probes_responders_and_stores_windows(tmp_path):
    topo = tmp_path / "topology.yaml"
    topo.write_text(yaml.safe_dump(TOPOLOGY, allow_unicode=True), encoding="utf-8")
    ports = {"bj-b": free_udp_port(), "zjk-a": free_udp_port()}
    # bj-b answers at once (metro); zjk-a holds replies 8 ms, over its 5 ms regional budget.
    responders = [cli("responder", "--listen", f"127.0.0.1:{ports['bj-b']}"),
                  cli("responder", "--listen", f"127.0.0.1:{ports['zjk-a']}", "--delay", "8ms")]
    db = tmp_path / "agent.duckdb"
    node = {
        "node": "bj-a-ops", "site": "bj-a", "hub": "jjj", "interval": "1s",
        "collectors": {
            "nvml": {"enabled": False}, "ascend": {"enabled": False},
            "latency": {"enabled": True, "topology": str(topo), "probe_interval": "50ms",
                        "probe_timeout": "500ms", "window": "1s",
                        "peers": {s: f"127.0.0.1:{p}" for s, p in ports.items()}},
        },
        "exports": {"prometheus": {"enabled": False},
                    "store": {"enabled": True, "url": f"duckdb:///{db}"}},
    }
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump(node), encoding="utf-8")
    try:
        time.sleep(1.0)  # responders up
        agent = cli("agent", "--config", str(config), "--duration", "5s")
        _, err = agent.communicate(timeout=60)
        assert agent.returncode == 0, err
    finally:
        for r in responders:
            r.terminate()
            r.wait(10)
    now = datetime.now(UTC)
    with DuckDBStore(db) as store:
        got = store.query(Query("link_latency", ("rtt_p50_seconds", "budget_seconds",
                                                 "loss_ratio"),
                                now - timedelta(minutes=5), now + timedelta(minutes=1),
                                group_by=("dst_site", "tier"), agg=Aggregate.MEAN))
    rows = {r.dst_site: r for r in got.itertuples()}
    assert set(rows) == {"bj-b", "zjk-a"}
    assert rows["bj-b"].tier == "metro" and rows["bj-b"].budget_seconds == 0.001
    assert rows["zjk-a"].tier == "regional" and rows["zjk-a"].budget_seconds == 0.005
    assert rows["bj-b"].rtt_p50_seconds < 0.001 < 0.005 < rows["zjk-a"].rtt_p50_seconds
    assert abs(rows["zjk-a"].rtt_p50_seconds - 0.008) < 0.001
    assert rows["zjk-a"].loss_ratio == 0.0
