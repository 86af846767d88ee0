"""Prometheus exposition: catalogue names, compat names, escaping, promtool, the HTTP server."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import installed

from computewatch.collectors.export.prometheus import PrometheusExporter, exposition
from computewatch.samples import Sample

AWKWARD = ['北京 "A", x=1\n', "back\\slash", "tab\there", "", "comma,space =eq"]


def gpu(index: int, **extra: str) -> dict[str, str]:
    return {"node": "n1", "site": "bj-ai", "hub": "jjj", "device": f"GPU-{index}",
            "index": str(index), "vendor": "nvidia", "model": "NVIDIA H100 80GB HBM3",
            "ecosystem": "cuda", "pci_bus_id": f"00000000:{index:02X}:00.0", **extra}


def npu(index: int) -> dict[str, str]:
    return {"node": "n1", "site": "bj-ai", "hub": "jjj", "device": f"n1-npu{index}-chip0",
            "index": str(index), "vendor": "huawei", "model": "Ascend 910B", "ecosystem": "cann",
            "pci_bus_id": f"0000:{index:02X}:00.0"}


SAMPLES = [
    Sample.of("accelerator.utilization_ratio", 0.42, gpu(0)),
    Sample.of("accelerator.utilization_ratio", 0.9, npu(1)),
    Sample.of("accelerator.power_watts", 612.5, gpu(0)),
    Sample.of("accelerator.energy_joules_total", 1234.5, gpu(0)),
    Sample.of("accelerator.memory_used_bytes", 2.0 * 2**30, npu(1)),
    Sample.of("accelerator.xid_errors_total", 2.0, gpu(0, xid="79")),
]


def parse(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_catalogue_names_types_and_values():
    fams = {f.name: f for f in text_string_to_metric_families(exposition(SAMPLES).decode())}
    assert fams["accelerator_utilization_ratio"].type == "gauge"
    assert fams["accelerator_energy_joules"].type == "counter"
    energy = fams["accelerator_energy_joules"].samples[0]
    assert energy.name == "accelerator_energy_joules_total" and energy.value == 1234.5
    utils = {s.labels["vendor"]: s.value for s in fams["accelerator_utilization_ratio"].samples}
    assert utils == {"nvidia": 0.42, "huawei": 0.9}
    xid = fams["accelerator_xid_errors"].samples[0]
    assert xid.labels["xid"] == "79" and xid.value == 2.0
    assert "DCGM_FI_DEV_GPU_UTIL" not in fams


def test_compat_names_use_the_exporters_units_and_labels():
    text = exposition(SAMPLES, compat=("dcgm", "npu-exporter")).decode()
    fams = parse(text)
    dcgm = fams["DCGM_FI_DEV_GPU_UTIL"]
    assert len(dcgm) == 1 and dcgm[0].value == pytest.approx(42.0)
    assert dcgm[0].labels["gpu"] == "0" and dcgm[0].labels["UUID"] == "GPU-0"
    assert dcgm[0].labels["modelName"] == "NVIDIA H100 80GB HBM3"
    assert fams["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"][0].value == pytest.approx(1234500.0)
    npu_util = fams["npu_chip_info_utilization"]
    assert len(npu_util) == 1 and npu_util[0].value == pytest.approx(90.0)
    assert npu_util[0].labels["id"] == "1" and npu_util[0].labels["model_name"] == "Ascend 910B"
    assert fams["npu_chip_info_hbm_used_memory"][0].value == pytest.approx(2048.0)  # MB


@pytest.mark.parametrize("value", AWKWARD)
def test_label_values_round_trip_through_the_text_parser(value):
    s = Sample.of("accelerator.power_watts", 1.0, {**gpu(0), "site": value})
    got = parse(exposition([s]).decode())["accelerator_power_watts"][0]
    assert got.labels.get("site", "") == value


def test_promtool_finds_nothing_to_report():
    proc = subprocess.run([installed("promtool"), "check", "metrics"], input=exposition(SAMPLES),
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == b"" and proc.stderr.strip() == b""


def test_http_server_serves_the_latest_snapshot_per_source():
    exp = PrometheusExporter("127.0.0.1:0")
    try:
        exp.export(SAMPLES[:1], "nvml")
        exp.export(SAMPLES[1:2], "ascend")
        exp.export([Sample.of("accelerator.utilization_ratio", 0.1, gpu(0))], "nvml")
        body = urllib.request.urlopen(f"http://127.0.0.1:{exp.port}/metrics", timeout=5).read()
        utils = parse(body.decode())["accelerator_utilization_ratio"]
        assert sorted(s.value for s in utils) == [0.1, 0.9]  # nvml replaced, ascend kept
    finally:
        exp.close()


def test_bad_listen_address_is_refused():
    with pytest.raises(ValueError, match="host:port"):
        PrometheusExporter("9400")


def test_histogram_parts_are_exposed_as_one_histogram_family():
    link = {"src_site": "bj-ai", "dst_site": "zjk-a", "tier": "regional", "probe": "udp"}
    samples = [Sample.of("link_latency.rtt_seconds_bucket", n, {**link, "le": le})
               for le, n in (("0.001", 3.0), ("0.002", 7.0), ("+Inf", 9.0))]
    samples += [Sample.of("link_latency.rtt_seconds_count", 9.0, link),
                Sample.of("link_latency.rtt_seconds_sum", 0.0123, link)]
    text = exposition(samples).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    hist = fams["link_latency_rtt_seconds"]
    assert hist.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets == {"0.001": 3.0, "0.002": 7.0, "+Inf": 9.0}
    assert [s.value for s in hist.samples if s.name.endswith("_count")] == [9.0]
    proc = subprocess.run([installed("promtool"), "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
