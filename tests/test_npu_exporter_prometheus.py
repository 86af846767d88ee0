"""npu-exporter queries against a real Prometheus scraping agents in ``--compat npu-exporter``.

Three simulated nodes (the simulator's fake ``npu-smi`` and ``hccn_tool``): an Atlas 800
training server (910B, one chip per NPU), a server of Atlas 300I Duo cards (310P, two chips
per card, DDR) and an Atlas A3 node (two dies per NPU), each an in-process agent serving
``/metrics`` on loopback, all scraped every second by one Prometheus. The queries are the ones
npu-exporter users write: by ``id``, by ``vdie_id``, DDR memory, ``by (id)``; each must give
one series per chip or die with npu-exporter's labels.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request

import pytest

from computewatch.collectors.config import NodeConfig
from computewatch.collectors.export.prometheus import PrometheusExporter
from computewatch.collectors.setup import build_agent
from computewatch.sim import build_fleet
from computewatch.sim.node import mixed_node
from computewatch.topology import load_topology
from tests.servers import start_prometheus

NODES = {"training": ("910b", "Ascend 910B"), "duo": ("310p", "Ascend 310P"),
         "a3": ("a3", "Ascend 910B")}
CARD = {"id", "model_name", "vdie_id", "pcie_bus_info"}  # Prometheus drops empty labels


def query(url: str, expr: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.mark.realtime  # three agents and a real Prometheus (~10 s)
def test_npu_exporter_queries_through_prometheus(tmp_path):
    fleet = build_fleet(load_topology())
    cfg = NodeConfig.model_validate({"interval": 1, "collectors": {
        "nvml": {"enabled": False}, "ascend": {"detail_every": 1}}})
    agents, exporters, threads = [], [], []
    stop = threading.Event()
    try:
        targets = {}
        for job, (layout, model) in NODES.items():
            node = mixed_node(fleet, gpus=0, npus=8, npu_model=model)
            node.npu_layout = layout
            node.node = f"{node.node}-{job}"  # three servers: their VDie IDs differ
            exp = PrometheusExporter("127.0.0.1:0", compat=("npu-exporter",))
            exporters.append(exp)
            agent = build_agent(cfg, simulate=node, exporters=[exp])
            agents.append(agent)
            targets[job] = exp.port
            t = threading.Thread(target=agent.run, args=(stop,), daemon=True)
            t.start()
            threads.append(t)
        jobs = "".join(f"  - job_name: {job}\n    static_configs: [{{targets: "
                       f"['127.0.0.1:{port}']}}]\n" for job, port in targets.items())
        (tmp_path / "prometheus.yml").write_text(
            f"global: {{scrape_interval: 1s}}\nscrape_configs:\n{jobs}")
        with start_prometheus(tmp_path, tmp_path / "prometheus.yml") as server:
            url = f"http://127.0.0.1:{server.port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                got = query(url, "count by (job) (npu_chip_info_voltage)")
                if len(got) == 3 and all(r["value"][1] == "8" for r in got):
                    break
                time.sleep(0.5)
            check_queries(url)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        for agent in agents:
            agent.close()


def check_queries(url: str) -> None:
    # One series per chip or die, with npu-exporter's labels.
    for job, chips in (("training", 8), ("duo", 8), ("a3", 8)):
        util = query(url, f'npu_chip_info_utilization{{job="{job}"}}')
        assert len(util) == chips, (job, util)
        for r in util:
            assert set(r["metric"]) >= CARD, r["metric"]
            assert "node" not in r["metric"] and "device" not in r["metric"]
    # by id: the two chips of a 310P card are two series, and so are an A3 NPU's two dies.
    for job in ("duo", "a3"):
        by_id = query(url, f'count by (id) (npu_chip_info_temperature{{job="{job}"}})')
        assert sorted(int(r["metric"]["id"]) for r in by_id) == list(range(8)), job
        assert all(r["value"][1] == "1" for r in by_id), job
    one = query(url, 'npu_chip_info_hbm_used_memory{job="a3", id="5"}')
    assert len(one) == 1  # die 1 of NPU 2
    # by vdie_id: one chip exactly.
    vdie = one[0]["metric"]["vdie_id"]
    assert len(vdie.split("-")) == 5
    assert len(query(url, f'npu_chip_info_temperature{{vdie_id="{vdie}"}}')) == 1
    # 310P memory is DDR under npu-exporter's DDR names, in MB.
    ddr = query(url, 'npu_chip_info_total_memory{job="duo"}')
    assert len(ddr) == 8 and {r["value"][1] for r in ddr} == {str(24 * 1024)}
    assert query(url, 'npu_chip_info_hbm_total_memory{job="duo"}') == []
    assert len(query(url, 'npu_chip_info_hbm_total_memory{job="training"}')) == 8
    # The machine's chip count and the rest of the families npu-smi can give.
    nums = {r["metric"]["job"]: r["value"][1] for r in query(url, "machine_npu_nums")}
    assert nums == {"training": "8", "duo": "8", "a3": "8"}
    for name in ("npu_chip_info_name", "npu_chip_info_power", "npu_chip_info_voltage",
                 "npu_chip_info_aicore_current_freq", "npu_chip_info_health_status",
                 "npu_chip_info_network_status", "npu_chip_info_link_status",
                 "npu_chip_info_process_info_num", "npu_chip_info_serial_number"):
        assert len(query(url, f'{name}{{job="training"}}')) == 8, name
    assert len(query(url, 'npu_chip_info_product_type{job="duo"}')) == 8
    assert len(query(url, "npu_exporter_version_info")) == 3
