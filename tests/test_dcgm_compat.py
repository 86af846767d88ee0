"""``--compat dcgm``: DCGM-exporter's names, TYPEs, units and labels exactly, checked against
the reference (tests/fixtures/reference/exporter-compat.md), promtool, and a real Prometheus
running every query of Grafana dashboard 12239. The node is the simulator's (8 H100, whose
fake NVML has GPM), so expected values are its readings converted by hand to DCGM's units."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from servers import installed, start_prometheus

from computewatch.collectors.agent import Agent, Scheduled
from computewatch.collectors.export.prometheus import PrometheusExporter, exposition
from computewatch.collectors.nvml import NvmlCollector
from computewatch.samples import Sample
from computewatch.sim import build_fleet
from computewatch.sim.fake_nvml import FakeNvml
from computewatch.sim.node import NodeSim, mixed_node
from computewatch.topology import load_topology

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REFERENCE = FIXTURES / "reference" / "exporter-compat.md"
DCGM_EXPORTER_TEXT = FIXTURES / "dcgm" / "dcgm-exporter-default.prom"
T = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
GPUS = 8
LABELS = {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname",
          "DCGM_FI_DRIVER_VERSION"}
"""dcgm-exporter's labels of a GPU's series (reference: `gpu`, `UUID`, `pci_bus_id`,
`device`, `modelName`, `Hostname` as released tags spell it, `DCGM_FI_DRIVER_VERSION`)."""
SERIES = re.compile(r'^(\w+)\{(.*)\} (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def fleet():
    return build_fleet(load_topology())


def reference_table() -> dict[str, str]:
    """DCGM name -> TYPE, from the reference's table (typed from default-counters.csv)."""
    text = REFERENCE.read_text(encoding="utf-8")
    section = text[text.index("## DCGM-exporter"):text.index("## The dashboard")]
    out = {}
    for names, typ in re.findall(r"^\| (DCGM_FI_[^|]+)\| (\w+) \|", section, re.M):
        for name in re.split(r",\s*", names.strip()):
            out[name] = typ
    return out


def parse(text: str) -> tuple[dict[str, str], dict[str, list[tuple[dict[str, str], float]]]]:
    """TYPE by family and the series by metric name, read from the raw text (a client-side
    parser would strip a counter's name to its family)."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        m = SERIES.match(line)
        if m:
            series.setdefault(m.group(1), []).append((dict(LABEL.findall(m.group(2))),
                                                      float(m.group(3))))
    return types, series


def samples_of(node: NodeSim, runs: int = 2, **kw) -> list[Sample]:
    """Two runs 15 s apart (the NVLink bandwidth needs two), with an XID on GPU 3."""
    clock = [T]
    nv = FakeNvml(node, clock=lambda: clock[0], xid_events=[(3, 79)], **kw)
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    for k in range(runs):
        clock[0] = T + timedelta(seconds=15 * k)
        samples = collector.collect()
    return samples


def test_every_default_counter_under_its_name_and_type_without_total(fleet):
    node = mixed_node(fleet, gpus=GPUS, npus=0)
    types, series = parse(exposition(samples_of(node), compat=("dcgm",)).decode())
    table = reference_table()
    # Not exposed: the driver version is a label; vGPU licence status exists in vGPU guests
    # only (DCGM reports no value on bare metal and dcgm-exporter then prints no series).
    expected = {n: t for n, t in table.items() if t != "label"
                and n != "DCGM_FI_DEV_VGPU_LICENSE_STATUS"}
    assert len(expected) == 24
    for name, typ in expected.items():
        assert types.get(name) == typ, name
        assert len(series.get(name, ())) == GPUS, name
        assert f"{name}_total" not in series and f"{name}_total" not in types, name
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in series  # the two, by name
    assert "DCGM_FI_DEV_PCIE_REPLAY_COUNTER" in series


def test_labels_and_values_in_dcgm_units(fleet):
    node = mixed_node(fleet, gpus=GPUS, npus=0)
    _, series = parse(exposition(samples_of(node), compat=("dcgm",)).decode())
    t = T + timedelta(seconds=15)
    rs = [r for r in node.readings(t) if r.vendor == "nvidia"]
    for name, rows in series.items():
        if name.startswith("DCGM_"):
            for labels, _ in rows:
                extra = {"err_code", "err_msg"} if name == "DCGM_FI_DEV_XID_ERRORS" else set()
                assert set(labels) == LABELS | extra, (name, labels)

    def value(name: str, r) -> float:
        (v,) = [v for lab, v in series[name] if lab["gpu"] == str(r.index)]
        return v

    for r in rs:
        (labels,) = [lab for lab, _ in series["DCGM_FI_DEV_GPU_TEMP"]
                     if lab["gpu"] == str(r.index)]
        assert labels == {"gpu": str(r.index), "UUID": r.uuid, "pci_bus_id": r.pci_bus_id,
                          "device": f"nvidia{r.index}", "modelName": "NVIDIA H100 80GB HBM3",
                          "Hostname": node.node, "DCGM_FI_DRIVER_VERSION": "550.127.08"}
        mib = 2**20
        assert value("DCGM_FI_DEV_FB_USED", r) == r.memory_used_bytes / mib
        assert value("DCGM_FI_DEV_FB_RESERVED", r) == r.memory_reserved_bytes / mib
        assert value("DCGM_FI_DEV_FB_FREE", r) == (r.memory_total_bytes - r.memory_used_bytes
                                                   - r.memory_reserved_bytes) / mib
        assert value("DCGM_FI_DEV_GPU_UTIL", r) == pytest.approx(r.utilization * 100)
        assert value("DCGM_FI_DEV_DEC_UTIL", r) == pytest.approx(r.decoder_utilization * 100)
        assert value("DCGM_FI_DEV_SM_CLOCK", r) == r.sm_clock_hz / 1e6
        assert value("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", r) == pytest.approx(
            r.energy_j * 1000)
        assert value("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", r) == pytest.approx(r.tensor_active)
        assert value("DCGM_FI_PROF_PCIE_RX_BYTES", r) == pytest.approx(r.pcie_rx_bytes_per_s)
        assert value("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", r) == 0
        assert value("DCGM_FI_DEV_ROW_REMAP_FAILURE", r) == 0
        # DCGM's NVLink total: the KiB counters' difference per second, divided by 1000.
        before = next(b for b in node.readings(T) if b.vendor == "nvidia" and
                      b.index == r.index)
        kib = (r.nvlink_tx_bytes // 1024 + r.nvlink_rx_bytes // 1024
               - before.nvlink_tx_bytes // 1024 - before.nvlink_rx_bytes // 1024)
        assert value("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", r) == pytest.approx(kib / 15 / 1000)
    xid = {lab["gpu"]: (v, lab["err_code"], lab["err_msg"])
           for lab, v in series["DCGM_FI_DEV_XID_ERRORS"]}
    assert xid["3"] == (79.0, "79", "GPU has fallen off the bus")  # DCGM: the last XID's code
    assert xid["0"] == (0.0, "0", "No Error")


def test_mig_series_carry_the_parent_gpu_and_the_instance(fleet):
    node = mixed_node(fleet, gpus=2, npus=0)
    _, series = parse(exposition(samples_of(node, mig={1: 7}), compat=("dcgm",)).decode())
    rows = [lab for lab, _ in series["DCGM_FI_DEV_FB_USED"] if "GPU_I_ID" in lab]
    parent = next(r for r in node.readings(T) if r.vendor == "nvidia" and r.index == 1)
    assert len(rows) == 7
    for lab in rows:
        assert lab["gpu"] == "1" and lab["device"] == "nvidia1"  # not "1:0"
        assert lab["UUID"] == parent.uuid and lab["modelName"] == "NVIDIA H100 80GB HBM3"
        assert lab["GPU_I_PROFILE"] == "1g.10gb"
    # NVML numbers the seven 1g instances 7..13; DCGM's GPU_I_ID is NVML's id.
    assert sorted(int(lab["GPU_I_ID"]) for lab in rows) == list(range(7, 14))
    tensor = [lab for lab, _ in series["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"] if "GPU_I_ID" in lab]
    assert len(tensor) == 7
    whole = [lab for lab, _ in series["DCGM_FI_DEV_FB_USED"] if "GPU_I_ID" not in lab]
    assert sorted(lab["gpu"] for lab in whole) == ["0", "1"]


def test_profiling_names_are_absent_not_zero_without_gpm(fleet):
    node = mixed_node(fleet, gpus=2, npus=0, gpu_model="A100")
    _, series = parse(exposition(samples_of(node), compat=("dcgm",)).decode())
    assert not [n for n in series if n.startswith("DCGM_FI_PROF_")]
    assert "DCGM_FI_DEV_GPU_UTIL" in series


def _problems(text: bytes) -> set[tuple[str, str]]:
    proc = subprocess.run([installed("promtool"), "check", "metrics"], input=text,
                          capture_output=True, timeout=30)
    out = (proc.stdout + proc.stderr).decode()
    return {tuple(line.split(" ", 1)) for line in out.splitlines() if line.strip()}


def test_promtool_reports_only_what_dcgm_exporters_own_names_earn(fleet):
    """promtool lints DCGM's names themselves: camelCase ``modelName``, counters without
    ``_total`` and a counter called ``..._COUNTER``. Our compat output earns exactly the
    complaints dcgm-exporter's own output earns, family by family, and nothing else."""
    node = mixed_node(fleet, gpus=2, npus=0)
    ours = _problems(exposition(samples_of(node, mig={1: 2}), compat=("dcgm",)))
    theirs = _problems(DCGM_EXPORTER_TEXT.read_bytes())
    camel_case = "label names should be written in 'snake_case' not 'camelCase'"
    assert ours, "promtool found nothing: the compat output lost DCGM's names"
    assert {msg for _, msg in theirs} == {
        camel_case, 'counter metrics should have "_total" suffix',
        "metric name should not include type 'counter'"}
    shared = {name for name, _ in theirs}
    assert sorted(p for p in ours if p[0] in shared and p not in theirs) == []
    assert sorted(p for p in theirs if p[0] in {n for n, _ in ours} and p not in ours) == []
    # The profiling names dcgm-exporter does not ship by default are gauges: camelCase only.
    assert {msg for name, msg in ours if name not in shared} == {camel_case}
    _, series = parse(exposition(samples_of(node), ("dcgm",)).decode())
    camel = {name for name, msg in ours if msg == camel_case}
    assert camel == {n for n in series if n.startswith("DCGM_")}  # every family: modelName
    # Without compat the catalogue's own names stay clean.
    assert _problems(exposition(samples_of(node))) == set()


# --- a real Prometheus and Grafana dashboard 12239 -----------------------------------------

DASHBOARD = {  # panel -> query, as the reference lists them (each with the two variables)
    "GPU Temperature": 'DCGM_FI_DEV_GPU_TEMP{instance=~"$instance", gpu=~"$gpu"}',
    "GPU Avg. Temp": 'avg(DCGM_FI_DEV_GPU_TEMP{instance=~"$instance", gpu=~"$gpu"})',
    "GPU Power Usage": 'DCGM_FI_DEV_POWER_USAGE{instance=~"$instance", gpu=~"$gpu"}',
    "GPU Power Total": 'sum(DCGM_FI_DEV_POWER_USAGE{instance=~"$instance", gpu=~"$gpu"})',
    "GPU SM Clocks": 'DCGM_FI_DEV_SM_CLOCK{instance=~"$instance", gpu=~"$gpu"} * 1000000',
    "GPU Utilization": 'DCGM_FI_DEV_GPU_UTIL{instance=~"$instance", gpu=~"$gpu"}',
    "GPU Framebuffer Mem Used": 'DCGM_FI_DEV_FB_USED{instance=~"$instance", gpu=~"$gpu"}',
    "Tensor Core Utilization":
        'DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{instance=~"$instance", gpu=~"$gpu"}',
}


def _get(base: str, path: str, **params: str) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def _all_value(values: list[str]) -> str:
    """Grafana's "All" of a multi-value variable with no custom all value: the values,
    regex-escaped, as ``(a|b)``, inside a PromQL string (backslashes doubled)."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", v).replace("\\", "\\\\")
               for v in values]
    return "(" + "|".join(escaped) + ")"


@pytest.mark.realtime
def test_dashboard_12239_queries_through_a_real_prometheus(fleet, tmp_path):
    node = mixed_node(fleet, gpus=GPUS, npus=0)
    collector = NvmlCollector(node.labels, FakeNvml(node), gpm_warmup_s=0.05)
    exporter = PrometheusExporter("127.0.0.1:0", compat=("dcgm",))
    agent = Agent([Scheduled(collector, 1.0, 5.0)], [exporter], node.labels)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: gpu\n    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n",
        encoding="utf-8")
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    runner.start()
    try:
        with start_prometheus(tmp_path, config) as prom:
            base = f"http://127.0.0.1:{prom.port}"
            deadline = time.monotonic() + 30
            while True:
                got = _get(base, "/api/v1/query", query="DCGM_FI_PROF_PIPE_TENSOR_ACTIVE")
                if len(got["result"]) == GPUS:
                    break
                assert time.monotonic() < deadline, got
                time.sleep(0.3)
            # The dashboard's variables: label_values(DCGM_FI_DEV_GPU_TEMP, instance|gpu).
            instances = _get(base, "/api/v1/label/instance/values",
                             **{"match[]": "DCGM_FI_DEV_GPU_TEMP"})
            gpus = _get(base, "/api/v1/label/gpu/values", **{"match[]": "DCGM_FI_DEV_GPU_TEMP"})
            assert instances == [f"127.0.0.1:{exporter.port}"]
            assert sorted(gpus, key=int) == [str(i) for i in range(GPUS)]
            for panel, query in DASHBOARD.items():
                promql = query.replace("$instance", _all_value(instances)).replace(
                    "$gpu", _all_value(gpus))
                result = _get(base, "/api/v1/query", query=promql)["result"]
                if promql.startswith(("avg(", "sum(")):
                    assert len(result) == 1, panel
                    continue
                assert sorted(r["metric"]["gpu"] for r in result) == sorted(gpus), panel
                for r in result:
                    labels = set(r["metric"]) - {"__name__", "instance", "job"}
                    assert labels == LABELS, (panel, labels)
                    assert r["metric"]["Hostname"] == node.node
            one = _get(base, "/api/v1/query", query=DASHBOARD["GPU SM Clocks"].replace(
                "$instance", ".*").replace("$gpu", "0"))["result"]
            assert float(one[0]["value"][1]) in {r.sm_clock_hz for r in node.readings()
                                                 if r.vendor == "nvidia"}
    finally:
        stop.set()
        runner.join(timeout=10)
        agent.close()
