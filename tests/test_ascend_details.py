"""The Ascend detail views per chip, the MCU's card power, honest status, processes, network.

Each case of issue 16's "What was measured" is a test here, on real outputs kept in
``tests/fixtures/ascend`` (SOURCES.md): the 310P Duo table of Ascend/pytorch issue #94, the
A3 table of vllm-project/vllm-ascend issue #3002, gpustack's 310P/910B ``-t common`` and
``-t usages`` outputs, the 24.1.RC2 training server table and mind-cluster's capture.
Expected values were read from those files by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from computewatch.collectors import CollectorError, NoData, ResultCode
from computewatch.collectors.agent import Agent, Scheduled
from computewatch.collectors.ascend import (
    AscendCollector,
    NpuSmiTimeout,
    parse_hccn,
    parse_info_table,
    parse_processes,
    parse_view,
)
from computewatch.samples import Sample, sample_value
from computewatch.validation import check_sample

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ascend"
LABELS = {"node": "n1", "site": "bj-ai", "hub": "jjj"}
MIB = 2**20

DUO = "ascend-pytorch-issue-94_310p_info.txt"  # NPU 1792, chips 0 and 1, power NA
A3 = "vllm-ascend-issue-3002_a3_info.txt"  # 8 NPUs x 2 dies, Phy-ID 0..15
TRAINING = "ai-server_atlas-800-training-server_model-9010_version-24.1.RC2.txt"  # names xxx


def read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def served(outputs: dict[tuple[str, ...], str], calls: list[tuple[str, ...]] | None = None,
           latency_s: float = 0.0) -> Callable[[Sequence[str], float], str]:
    """npu-smi answering known argv (without the binary), failing like npu-smi else."""
    def run(argv: Sequence[str], timeout: float) -> str:
        args = tuple(argv[1:])
        if calls is not None:
            calls.append(args)
        if latency_s:
            time.sleep(latency_s)
        if args in outputs:
            return outputs[args]
        raise subprocess.CalledProcessError(1, list(argv), output="Error: not supported\n")
    return run


def run_once(collector: AscendCollector) -> list[Sample]:
    samples = [*collector.collect(), *collector.self_samples()]
    for s in samples:
        check_sample(s)
    return samples


def value(samples: Sequence[Sample], name: str, **labels: str) -> float | None:
    return sample_value(samples, name, labels)


def chip(npu: int, c: int) -> str:
    return f"n1-npu{npu}-chip{c}"


# --- the two tables read by hand --------------------------------------------------------------

def test_310p_duo_and_a3_tables():
    duo = parse_info_table(read(DUO))
    assert [(r.npu_id, r.chip_id, r.device_id, r.phy_id) for r in duo] == [
        (1792, 0, 0, None), (1792, 1, 1, None)]
    assert [(r.power_w, r.temperature_c, r.memory_used_mb, r.memory_total_mb, r.bus_id)
            for r in duo] == [(None, 36, 1821, 44280, "0000:07:00.0"),
                              (None, 36, 1041, 43693, "0000:07:00.0")]
    a3 = parse_info_table(read(A3))
    assert [(r.npu_id, r.chip_id, r.phy_id) for r in a3] == [
        (n, d, 2 * n + d) for n in range(8) for d in range(2)]
    assert [r.power_w for r in a3[:4]] == [211.3, None, 210.6, None]  # "-" for die 1
    assert (a3[15].hbm_used_mb, a3[15].hbm_total_mb, a3[15].bus_id) == (
        61631, 65536, "0000:83:00.0")
    assert {r.driver_version for r in a3} == {"25.2.0"}


def test_mappings_with_mcu_rows():
    from computewatch.collectors.ascend import parse_mapping

    duo = parse_mapping(read("gpustack_310p_mapping.txt"))
    assert [(m.npu_id, m.chip_id, m.logic_id) for m in duo[:3]] == [(1, 0, 0), (1, 1, 1),
                                                                    (1, 2, None)]
    assert [m.chip_name for m in duo[:3]] == ["Ascend xxx", "Ascend xxx", "Mcu"]
    assert len(parse_mapping(read("gpustack_910b_mapping.txt"))) == 16


# --- 310P: the MCU's power is the card's, once; each chip gets its own block ---------------

def test_310p_card_power_is_counted_once_not_on_both_chips():
    """Issue: 310P power counted twice (45.2 W from the MCU put on both chips: 90.4 W)."""
    collector = AscendCollector(LABELS, hccn_tool=None, run=served({
        ("info",): read(DUO),
        ("info", "-t", "common", "-i", "1792"): read("gpustack_310p_common.txt"),
        ("info", "-t", "usages", "-i", "1792"): read("gpustack_310p_usages.txt")}))
    samples = run_once(collector)
    # The table prints NA for both chips, and the MCU block's power is not a chip's.
    assert value(samples, "accelerator.power_watts", device=chip(1792, 0)) is None
    assert value(samples, "accelerator.power_watts", device=chip(1792, 1)) is None
    cards = [s for s in samples if s.name == "accelerator_card.power_watts"]
    assert [(s.label("device"), s.value) for s in cards] == [("n1-npu1792", 45.2)]
    assert value(samples, "accelerator_card.temperature_celsius", device="n1-npu1792") == 48
    node_power = sum(s.value for s in samples
                     if s.name in ("accelerator.power_watts", "accelerator_card.power_watts"))
    assert node_power == 45.2


def test_each_310p_chip_gets_its_own_values_by_chip_id():
    """Issue: chip 1 gets chip 0's DDR capacity and temperature (the Chip ID was ignored)."""
    common = parse_view(read("gpustack_310p_common.txt"), "npu-smi info -t common -i 1")
    assert common.chip(0)["temperature(c)"] == "60"
    assert common.chip(1)["temperature(c)"] == "59"
    assert common.mcu == {"chipname": "mcu", "temperature(c)": "48",
                          "npureal-timepower(w)": "45.2"}
    assert "npureal-timepower(w)" not in common.chip(1)  # the MCU's power is not chip 1's
    usages = parse_view(read("gpustack_310p_usages.txt"), "npu-smi info -t usages -i 1")
    assert usages.chip(0)["ddrcapacity(mb)"] == "44280"  # "Chip ID : 0" comes after it
    assert usages.chip(1)["ddrcapacity(mb)"] == "43693"
    # Through the collector, where the table has no temperature or memory of its own:
    table = read(DUO).replace("| NA           36  ", "| NA           NA  ").replace(
        "1821 / 44280", "NA          ").replace("1041 / 43693", "NA          ")
    samples = run_once(AscendCollector(LABELS, hccn_tool=None, run=served({
        ("info",): table,
        ("info", "-t", "common", "-i", "1792"): read("gpustack_310p_common.txt"),
        ("info", "-t", "usages", "-i", "1792"): read("gpustack_310p_usages.txt")})))
    assert value(samples, "accelerator.temperature_celsius", device=chip(1792, 0)) == 60
    assert value(samples, "accelerator.temperature_celsius", device=chip(1792, 1)) == 59
    assert value(samples, "accelerator.memory_total_bytes", device=chip(1792, 0)) == 44280 * MIB
    assert value(samples, "accelerator.memory_total_bytes", device=chip(1792, 1)) == 43693 * MIB
    assert value(samples, "accelerator.sm_clock_hertz", device=chip(1792, 1)) == 960e6


def test_the_chip_form_is_used_where_the_card_form_is_refused():
    """An npu-smi (or a fake) that only answers ``-c``: one call per chip, each its own."""
    calls: list[tuple[str, ...]] = []
    common = read("gpustack_310p_common.txt")
    samples = run_once(AscendCollector(LABELS, hccn_tool=None, views=("common",), run=served({
        ("info",): read(DUO).replace("| NA           36  ", "| NA           NA  "),
        # Both answer with the whole card, as some npu-smi versions do for -c on a 310P.
        ("info", "-t", "common", "-i", "1792", "-c", "0"): common,
        ("info", "-t", "common", "-i", "1792", "-c", "1"): common}, calls)))
    assert value(samples, "accelerator.temperature_celsius", device=chip(1792, 0)) == 60
    assert value(samples, "accelerator.temperature_celsius", device=chip(1792, 1)) == 59
    assert value(samples, "accelerator_card.power_watts", device="n1-npu1792") == 45.2
    assert value(samples, "agent.parse_errors_total", source="npu-smi info -t common") == 0


def test_model_comes_from_the_table_then_the_mapping_never_from_the_mcu():
    """Issue: model "Ascend mcu" when the table names no chip (the MCU block's name won)."""
    outputs = {("info",): read(TRAINING),
               **{("info", "-t", "common", "-i", str(n)): read("gpustack_910b_common.txt")
                  for n in range(8)}}
    calls: list[tuple[str, ...]] = []
    with_map = run_once(AscendCollector(LABELS, hccn_tool=None, run=served({
        **outputs, ("info", "-m"): read(TRAINING.replace(".txt", "_mapping.txt"))}, calls)))
    assert {s.label("model") for s in with_map if s.measurement == "accelerator"} == {
        "Ascend 910A"}
    assert ("info", "-m") in calls  # the mapping was asked although a view names a "chip"
    without = run_once(AscendCollector(LABELS, hccn_tool=None, run=served(outputs)))
    assert {s.label("model") for s in without if s.measurement == "accelerator"} == {"Ascend"}


def test_anonymised_mapping_names_are_not_models():
    """gpustack's mappings say ``Ascend xxx`` (anonymised) and ``Mcu``: neither is a model."""
    samples = run_once(AscendCollector(LABELS, hccn_tool=None, run=served({
        ("info",): read(TRAINING), ("info", "-m"): read("gpustack_910b_mapping.txt")})))
    assert {s.label("model") for s in samples if s.measurement == "accelerator"} == {"Ascend"}


# --- honest status --------------------------------------------------------------------------

def header_only(name: str) -> str:
    lines = read(name).splitlines(keepends=True)
    return "".join(lines[:6])  # the version line, the header and the "====" under it


def test_a_table_with_a_header_and_no_chips_is_no_data_not_up():
    """Issue: a table with a header and no chips reported up with result code 0."""
    text = header_only(A3)
    assert parse_info_table(text) == []
    collector = AscendCollector(LABELS, hccn_tool=None, run=served({("info",): text}))
    with pytest.raises(NoData, match="lists no chip") as err:
        collector.collect()
    assert err.value.code is ResultCode.NO_DATA == 5
    agent = Agent([Scheduled(collector)], [], LABELS)
    samples = agent.run_once()
    assert value(samples, "agent.collector_up", collector="ascend") == 0
    assert value(samples, "agent.collector_result_code", collector="ascend") == 5
    assert value(samples, "agent.collector_errors_total", collector="ascend",
                 error_type="no_data") == 1
    agent.close()


def test_binary_detail_output_is_one_parse_error_per_output():
    """Issue: a binary detail output counted one parse error per line (904 for 8 chips)."""
    junk = bytes(range(256)).decode("latin-1") * 3 + "\x00\x01ELF\n" * 40
    outputs = {("info",): read(TRAINING)}
    for n in range(8):
        for view in ("usages", "common"):
            outputs[("info", "-t", view, "-i", str(n))] = junk
    samples = run_once(AscendCollector(LABELS, hccn_tool=None, views=("usages", "common"),
                                       run=served(outputs)))
    assert value(samples, "agent.parse_errors_total", source="npu-smi info -t usages") == 8
    assert value(samples, "agent.parse_errors_total", source="npu-smi info -t common") == 8
    assert value(samples, "accelerator.power_watts", device=chip(3, 0)) == 206.9  # the table


def test_error_counters_are_there_from_the_first_scrape_and_stay_while_the_table_fails():
    """Issue: agent_parse_errors_total disappeared from /metrics while the table read failed."""
    outputs = {("info",): read(TRAINING)}
    collector = AscendCollector(LABELS, hccn_tool=None, detail=False, run=served(outputs))
    agent = Agent([Scheduled(collector)], [], LABELS)
    first = agent.run_once()
    assert value(first, "agent.parse_errors_total", collector="ascend",
                 source="npu-smi info") == 0
    for kind in ("absent", "parse_error", "timeout", "error", "no_data"):
        assert value(first, "agent.collector_errors_total", collector="ascend",
                     error_type=kind) == 0, kind
    outputs[("info",)] = "segmentation fault (core dumped)\n"
    for n in (1, 2):
        failing = agent.run_once()
        assert value(failing, "agent.collector_up", collector="ascend") == 0
        assert value(failing, "agent.parse_errors_total", collector="ascend",
                     source="npu-smi info") == n
        assert value(failing, "agent.collector_errors_total", collector="ascend",
                     error_type="parse_error") == n
    agent.close()


def script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\nimport os, subprocess, sys, time\n{body}\n",
                    encoding="utf-8")
    path.chmod(0o755)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_hung_wrapper_and_its_child_are_killed_at_the_timeout(tmp_path):
    """Issue: a hung npu-smi wrapper left its child running after the timeout."""
    pidfile = tmp_path / "child.pid"
    exe = script(tmp_path / "npu-smi",
                 "child = subprocess.Popen(['sleep', '20'])\n"
                 f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
                 "child.wait()")
    collector = AscendCollector(LABELS, npu_smi=str(exe), timeout_s=1.0, hccn_tool=None)
    t0 = time.monotonic()
    with pytest.raises(NpuSmiTimeout, match="timed out after 1 s"):
        collector.collect()
    assert time.monotonic() - t0 < 4.0  # not held until the child's 20 s are over
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), f"the wrapper's child {pid} survived the timeout"


# --- slow npu-smi: the table always lands -----------------------------------------------------

def test_a_slow_npu_smi_never_costs_the_table():
    """Issue: an A3 node makes 41 calls per cycle; at 0.3 s each the cycle lost everything.

    Scaled down for a quick test (0.1 s per call, a 0.6 s budget): every cycle returns all 16
    dies' table values in about a table call plus the budget, and the views still arrive.
    """
    calls: list[tuple[str, ...]] = []
    outputs = {("info",): read(A3)}
    for n in range(8):
        outputs[("info", "-t", "common", "-i", str(n))] = read("gpustack_910b_common.txt")
    collector = AscendCollector(LABELS, hccn_tool=None, detail_budget_s=0.6,
                                detail_concurrency=4, run=served(outputs, calls, 0.1))
    seen_clock = False
    for cycle in range(6):
        t0 = time.monotonic()
        samples = run_once(collector)
        took = time.monotonic() - t0
        utils = [s for s in samples if s.name == "accelerator.utilization_ratio"]
        assert len(utils) == 16, cycle
        assert took < 0.1 + 0.6 + 0.35, (cycle, took)
        assert value(samples, "agent.collector_commands", collector="ascend") >= 1
        assert value(samples, "agent.command_duration_seconds", collector="ascend",
                     command="npu-smi info") >= 0.1
        seen_clock |= value(samples, "accelerator.sm_clock_hertz", device=chip(0, 0)) == 1e9
    assert seen_clock  # gpustack's 910B -t common says curFreq 1000 MHz for chip 0
    # The budget bounds the calls of a cycle: the table, then 4 at a time for 0.6 s (this fake
    # refuses most views, so the rounds are long; bench_ascend measures a node that answers).
    assert len(calls) / 6 <= 1 + 4 * 0.6 / 0.1 + 4


# --- processes ------------------------------------------------------------------------------

def test_processes_from_the_table_with_bounded_cardinality():
    rows = parse_processes(read(A3))
    assert rows is not None and len(rows) == 23
    assert rows[8].npu_id == 0 and rows[8].chip_id == 1 and rows[8].pid == 929405
    assert rows[8].name == "" and rows[8].memory_mb == 58780
    assert parse_processes(read(DUO)) == []  # "No running processes found in NPU 1792"
    samples = run_once(AscendCollector(LABELS, detail=False, max_processes=3,
                                       run=served({("info",): read(A3)})))
    assert value(samples, "accelerator.processes", device=chip(0, 0)) == 8
    listed = [s for s in samples if s.name == "accelerator_process.memory_used_bytes"
              and s.label("device") == chip(0, 0)]
    assert len(listed) == 3 and all(s.value == 141 * MIB for s in listed)
    assert value(samples, "accelerator_process.memory_used_bytes", device=chip(0, 1),
                 pid="929405") == 58780 * MIB
    assert value(samples, "accelerator.processes", device=chip(7, 1)) == 1


# --- hccn_tool ------------------------------------------------------------------------------

def capture_section(command: str) -> str:
    """One command's output in mind-cluster's fault capture."""
    text = read("mind-cluster_npu_info_before.txt")
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.endswith(command))
    out = []
    for ln in lines[at + 1:]:
        if ln.startswith("/") or ln.startswith("lspci"):
            break
        out.append(ln)
    return "\n".join(out)


def test_hccn_tool_outputs_as_documented():
    assert parse_hccn("link", read("gpustack_hccn_link.txt"), "s") == {"network_link_up": 0.0}
    assert parse_hccn("net_health", capture_section("-net_health -g"), "s") == {
        "network_health": 0.0}  # "net health status: Socket failed"
    assert parse_hccn("net_health", "net health status: Success\n", "s") == {
        "network_health": 1.0}
    # npu-exporter's parser states the bandwidth format (hccn_tool.go).
    assert parse_hccn("bandwidth", "Bandwidth TX: 12.50 MB/sec\nBandwidth RX: 0.00 MB/sec\n",
                      "s") == {"network_transmit_bytes_per_second": 12.5e6,
                               "network_receive_bytes_per_second": 0.0}
    assert parse_hccn("stat", capture_section("-stat -g"), "s") == {}  # no FCS/ECN lines there
    with pytest.raises(CollectorError, match="link status"):
        parse_hccn("link", "hccn_tool: command not supported\n", "hccn_tool -i 0 -link -g")


def test_network_status_per_chip_by_physical_id():
    asked: list[tuple[str, ...]] = []

    def hccn(argv: Sequence[str], timeout: float) -> str:
        asked.append(tuple(argv[1:]))
        phy = int(argv[2])
        if argv[3] == "-link":
            return f"link status: {'DOWN' if phy == 3 else 'UP'}\n"
        if argv[3] == "-net_health":
            return "net health status: Success\n"
        return "Bandwidth TX: 100.00 MB/sec\nBandwidth RX: 50.00 MB/sec\n"

    samples = run_once(AscendCollector(LABELS, views=(), run=served({("info",): read(A3)}),
                                       hccn_run=hccn))
    assert ("-i", "15", "-link", "-g") in asked  # die 1 of NPU 7: physical id 15
    assert value(samples, "accelerator.network_link_up", device=chip(1, 1)) == 0  # phy 3
    assert value(samples, "accelerator.network_link_up", device=chip(1, 0)) == 1
    assert value(samples, "accelerator.network_transmit_bytes_per_second",
                 device=chip(7, 1)) == 100e6
