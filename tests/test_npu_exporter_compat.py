"""``--compat npu-exporter``: npu-exporter's names, units and labels, as npu-exporter sets them.

Facts from Ascend/mind-cluster component/npu-exporter (tests/fixtures/reference/
exporter-compat.md and the module doc of collectors/export/_npu_exporter.py): ``id`` is the
chip's physical id, ``vdie_id`` its VDie ID words joined by ``-``, ``model_name``
``<name>-<type>-<version>``; DDR chips' memory is ``npu_chip_info_used_memory``. Values are
read by hand from the fixtures (tests/fixtures/ascend/SOURCES.md).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from computewatch.collectors.ascend import AscendCollector
from computewatch.collectors.config import NodeConfig
from computewatch.collectors.export.prometheus import exposition
from computewatch.collectors.setup import build_agent
from computewatch.samples import Sample
from computewatch.sim import build_fleet
from computewatch.sim.node import mixed_node
from computewatch.topology import load_topology
from tests.servers import installed

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ascend"
LABELS = {"node": "n1", "site": "bj-ai", "hub": "jjj"}
CARD_LABELS = {"id", "model_name", "vdie_id", "pcie_bus_info", "namespace", "pod_name",
               "container_name"}


def read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def served(outputs: dict[tuple[str, ...], str]):
    def run(argv: Sequence[str], timeout: float) -> str:
        if tuple(argv[1:]) in outputs:
            return outputs[tuple(argv[1:])]
        raise subprocess.CalledProcessError(1, list(argv), output="Error: not supported\n")
    return run


def families(samples: list[Sample]) -> dict[str, list]:
    text = exposition(samples, compat=("npu-exporter",)).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def by_id(fam: list) -> dict[str, float]:
    out = {}
    for s in fam:
        assert s.labels["id"] not in out, f"two series for id {s.labels['id']}"
        out[s.labels["id"]] = s.value
    return out


def capture_section(command: str) -> str:
    lines = read("mind-cluster_npu_info_before.txt").splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.endswith(command))
    out = []
    for ln in lines[at + 1:]:
        if not ln.strip() and out:
            break
        out.append(ln)
    return "\n".join(out) + "\n"


def test_310p_chips_are_distinct_series_with_ddr_names():
    """Issue: id was the NPU id (the two chips of a 310P became one series); DDR was HBM."""
    collector = AscendCollector(LABELS, hccn_tool=None, run=served({
        ("info",): read("ascend-pytorch-issue-94_310p_info.txt"),
        ("info", "-t", "common", "-i", "1792"): read("gpustack_310p_common.txt"),
        ("info", "-t", "usages", "-i", "1792"): read("gpustack_310p_usages.txt")}))
    fams = families(collector.collect())
    assert by_id(fams["npu_chip_info_used_memory"]) == {"0": 1821.0, "1": 1041.0}
    assert by_id(fams["npu_chip_info_total_memory"]) == {"0": 44280.0, "1": 43693.0}
    assert "npu_chip_info_hbm_used_memory" not in fams
    assert "npu_chip_info_hbm_bandwidth_utilization" not in fams  # npu-exporter has no DDR one
    assert by_id(fams["npu_chip_info_temperature"]) == {"0": 36.0, "1": 36.0}
    # npu-exporter shows a 310P card's MCU power on each of its chips (collectPower).
    assert by_id(fams["npu_chip_info_power"]) == {"0": 45.2, "1": 45.2}
    for s in fams["npu_chip_info_used_memory"]:
        assert set(s.labels) == CARD_LABELS
        assert s.labels["pcie_bus_info"] == "0000:07:00.0"
        assert s.labels["namespace"] == s.labels["pod_name"] == s.labels["container_name"] == ""
    assert fams["machine_npu_nums"][0].value == 2


def test_a3_dies_are_distinct_by_physical_id_and_carry_processes():
    """Issue: ``by (id)`` merged the two dies of an A3 NPU."""
    collector = AscendCollector(LABELS, hccn_tool=None, detail=False, run=served({
        ("info",): read("vllm-ascend-issue-3002_a3_info.txt")}))
    fams = families(collector.collect())
    util = by_id(fams["npu_chip_info_utilization"])
    assert set(util) == {str(i) for i in range(16)}
    assert util["8"] == 8.0  # NPU 4 die 0: AICore 8 %
    assert by_id(fams["npu_chip_info_hbm_used_memory"])["15"] == 61631.0
    assert by_id(fams["npu_chip_info_hbm_total_memory"])["15"] == 65536.0
    assert by_id(fams["npu_chip_info_hbm_utilization"])["15"] == pytest.approx(
        100 * 61631 / 65536)
    assert by_id(fams["npu_chip_info_process_info_num"]) == {
        **{str(i): 1.0 for i in range(1, 16)}, "0": 8.0}
    procs = {(s.labels["id"], s.labels["process_id"]): s.value
             for s in fams["npu_chip_info_process_info"]}
    assert procs[("1", "929405")] == 58780.0  # MB
    assert all(s.labels["container_id"] == "" for s in fams["npu_chip_info_process_info"])
    assert by_id(fams["npu_chip_info_power"]) == {str(i): p for i, p in zip(
        range(0, 16, 2), (211.3, 210.6, 205.7, 209.9, 219.9, 214.0, 201.9, 205.5), strict=True)}


def test_vdie_id_and_model_name_from_the_board_view():
    """mind-cluster's capture: NPU 0 chip 0's board view (a 910A, VDie ID words)."""
    table = read("ai-server_atlas-800-training-server_model-9010_version-24.1.RC2.txt")
    collector = AscendCollector(LABELS, hccn_tool=None, run=served({
        ("info",): table,
        ("info", "-t", "board", "-i", "0", "-c", "0"): capture_section(
            "npu-smi info -i 0 -c 0 -t board")}))
    samples = collector.collect()
    fams = families(samples)
    first = next(s for s in fams["npu_chip_info_temperature"] if s.labels["id"] == "0")
    assert first.labels["vdie_id"] == "42C711D4-20B03704-4A10C8D4-14CC040A-D2102003"
    assert first.labels["model_name"] == "910A-Ascend-V1"
    name = next(s for s in fams["npu_chip_info_name"] if s.labels["id"] == "0")
    assert name.value == 1 and name.labels["name"] == "910A-Ascend-V1"
    assert "model_name" not in name.labels
    others = {s.labels["vdie_id"] for s in fams["npu_chip_info_temperature"]
              if s.labels["id"] != "0"}
    assert others == {""}  # no board view for them: empty, as npu-exporter leaves it


def test_error_codes_by_position():
    """npu-smi prints ``Error Code :`` then each code as ``%04X`` (npu_info_print.c)."""
    health = ("\tNPU ID                         : 0\n\tChip Count                     : 1\n\n"
              "\tHealth Status                  : Warning\n"
              "\tError Code                     : 80E01801 80CD8008\n"
              "\tError Information              : node type=SOC, sensor type=HBM\n"
              "\tChip ID                        : 0\n")
    table = read("ai-server_atlas-800-training-server_model-9010_version-24.1.RC2.txt")
    collector = AscendCollector(LABELS, hccn_tool=None, views=("health",), run=served({
        ("info",): table, ("info", "-t", "health", "-i", "3"): health}))
    fams = families(collector.collect())
    assert by_id(fams["npu_chip_info_error_code"]) == {"3": float(0x80E01801)}
    assert by_id(fams["npu_chip_info_error_code_1"]) == {"3": float(0x80CD8008)}
    assert by_id(fams["npu_chip_info_health_status"])["3"] == 0.0  # the table: Warning


@pytest.fixture(scope="module")
def fleet():
    return build_fleet(load_topology())


@pytest.mark.parametrize("layout, model", [("910b", "Ascend 910B"), ("310p", "Ascend 310P"),
                                           ("a3", "Ascend 910B")])
def test_promtool_finds_nothing_to_report(fleet, layout, model):
    node = mixed_node(fleet, gpus=0, npus=8, npu_model=model)
    node.npu_layout = layout
    cfg = NodeConfig.model_validate({"collectors": {"nvml": {"enabled": False}}})
    agent = build_agent(cfg, simulate=node, exporters=[])
    try:
        text = exposition(agent.run_once(), compat=("npu-exporter",))
    finally:
        agent.close()
    names = {f.name for f in text_string_to_metric_families(text.decode())}
    for want in ("npu_chip_info_name", "npu_chip_info_voltage", "npu_chip_info_network_status",
                 "npu_chip_info_link_status", "npu_chip_info_aicore_current_freq",
                 "npu_chip_info_process_info_num", "npu_chip_info_serial_number",
                 "machine_npu_nums", "npu_exporter_version_info"):
        assert want in names, want
    memory = "npu_chip_info_used_memory" if layout == "310p" else "npu_chip_info_hbm_used_memory"
    assert memory in names
    proc = subprocess.run([installed("promtool"), "check", "metrics"], input=text,
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == b"" and proc.stderr.strip() == b""
