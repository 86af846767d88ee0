"""`computewatch collect --once --simulate`: the whole agent path on the simulator's fakes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import installed

from computewatch.status import ExitStatus


def collect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "computewatch", "collect", "--once", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def prometheus_text() -> str:
    proc = collect("--simulate", "--format", "prometheus")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_mixed_node_exposition_passes_promtool(prometheus_text):
    proc = subprocess.run([installed("promtool"), "check", "metrics"], input=prometheus_text,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), \
        proc.stdout + proc.stderr


def test_mixed_node_has_eight_gpus_and_eight_npus(prometheus_text):
    fams = {f.name: f for f in text_string_to_metric_families(prometheus_text)}
    util = fams["accelerator_utilization_ratio"].samples
    by_vendor = {v: {s.labels["device"] for s in util if s.labels["vendor"] == v}
                 for v in ("nvidia", "huawei")}
    assert len(by_vendor["nvidia"]) == 8 and len(by_vendor["huawei"]) == 8
    assert {s.labels["ecosystem"] for s in util} == {"cuda", "cann"}
    up = {s.labels["collector"]: s.value for s in fams["agent_collector_up"].samples}
    assert up == {"nvml": 1.0, "ascend": 1.0}
    assert all(s.labels["site"] == "bj-ai" and s.labels["hub"] == "jjj" for s in util)


def test_compat_adds_dcgm_and_npu_exporter_names():
    proc = collect("--simulate", "--format", "prometheus", "--compat", "dcgm,npu-exporter")
    assert proc.returncode == 0, proc.stderr
    fams = {f.name: f for f in text_string_to_metric_families(proc.stdout)}
    assert len(fams["DCGM_FI_DEV_GPU_UTIL"].samples) == 8
    assert len(fams["npu_chip_info_utilization"].samples) == 8
    ours = {s.labels["device"]: s.value for s in fams["accelerator_utilization_ratio"].samples}
    for s in fams["DCGM_FI_DEV_GPU_UTIL"].samples:
        assert s.value == pytest.approx(ours[s.labels["UUID"]] * 100)


def test_json_and_influx_formats_agree():
    js = collect("--simulate", "--format", "json", "--seed", "3")
    lp = collect("--simulate", "--format", "influx", "--seed", "3")
    assert js.returncode == 0 and lp.returncode == 0, js.stderr + lp.stderr
    doc = json.loads(js.stdout)
    power = {d["labels"]["device"]: d["value"] for d in doc
             if d["name"] == "accelerator.power_watts"}
    assert len(power) == 16
    lines = [ln for ln in lp.stdout.splitlines() if ln.startswith("accelerator,")]
    assert sum(" power_watts=" in ln or ",power_watts=" in ln for ln in lines) == 16


def test_simulate_a_fleet_node_and_bad_names():
    proc = collect("--simulate=bj-ai-n0003", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    devices = {d["labels"]["device"] for d in json.loads(proc.stdout)
               if d["name"] == "accelerator.health"}
    assert len(devices) == 8
    bad = collect("--simulate=no-such-node")
    assert bad.returncode == ExitStatus.BAD_INPUT and "no node 'no-such-node'" in bad.stderr
    assert collect("--format", "xml").returncode == ExitStatus.BAD_INPUT


def test_without_drivers_collect_reports_absent_collectors_and_exits_0():
    proc = collect("--format", "json")  # this machine has no NVIDIA driver and no npu-smi
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    codes = {d["labels"]["collector"]: d["value"] for d in doc
             if d["name"] == "agent.collector_result_code"}
    assert codes == {"nvml": 1.0, "ascend": 1.0}
    assert sum("disabled" in ln for ln in proc.stderr.splitlines()) == 2
