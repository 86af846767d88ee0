"""The Ascend collector: real npu-smi captures, damaged output, the subprocess seam, the fake.

Expected values below were read by hand from the files in ``tests/fixtures/ascend`` (see its
SOURCES.md), never computed by the code under test. Byte values are written as MiB x 2**20
because npu-smi's "MB" are MiB.
"""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from docstring_metrics import readme_metrics

import computewatch.collectors.ascend as ascend_module
from computewatch import catalog
from computewatch.collectors._base import CollectorError, DriverAbsent, ParseError, ResultCode
from computewatch.collectors.ascend import (
    AscendCollector,
    ChipRow,
    NpuSmiTimeout,
    chip_samples,
    model_name,
    parse_info_table,
    parse_key_values,
    parse_mapping,
)
from computewatch.samples import Sample, sample_value
from computewatch.sim import build_fleet
from computewatch.sim.fake_npusmi import FakeNpuSmi, FakeNpuSmiError
from computewatch.sim.node import mixed_node
from computewatch.topology import load_topology
from computewatch.validation import check_sample

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ascend"

LABELS = {"node": "n1", "site": "bj-ai", "cluster": "jjj-c", "hub": "jjj"}
MIB = 2**20


def read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def checked(samples: Sequence[Sample]) -> list[Sample]:
    """Every sample the collector makes must pass the catalogue."""
    for s in samples:
        check_sample(s)
    return list(samples)


def served(outputs: dict[tuple[str, ...], str],
           calls: list[tuple[str, ...]] | None = None) -> Callable[[Sequence[str], float], str]:
    """A ``run`` seam answering known argv (without the binary) and failing like npu-smi else."""
    def run(argv: Sequence[str], timeout: float) -> str:
        args = tuple(argv[1:])
        if calls is not None:
            calls.append(args)
        if args in outputs:
            return outputs[args]
        raise subprocess.CalledProcessError(1, list(argv), output="Error: not supported\n")
    return run


def run_once(collector: AscendCollector) -> list[Sample]:
    """One run's samples and the collector's own counters (the agent reports those)."""
    return [*collector.collect(), *collector.self_samples()]


def collect(table: str, *, detail: bool = False, **outputs: str) -> list[Sample]:
    run = served({("info",): table, **{tuple(k.split()): v for k, v in outputs.items()}})
    return checked(run_once(AscendCollector(LABELS, run=run, detail=detail)))


def dev(npu: int, chip: int = 0, node: str = "n1") -> dict[str, str]:
    return {"device": f"{node}-npu{npu}-chip{chip}"}


def value(samples: Sequence[Sample], field: str, labels: dict[str, str]) -> float | None:
    return sample_value(samples, f"accelerator.{field}", labels)


def label(samples: Sequence[Sample], key: str, labels: dict[str, str]) -> str | None:
    for s in samples:
        if s.measurement == "accelerator" and set(labels.items()) <= set(s.labels):
            return s.label(key)
    return None


def devices(samples: Sequence[Sample]) -> set[str]:
    return {s.label("device") or "" for s in samples if s.measurement == "accelerator"}


def parse_errors(samples: Sequence[Sample], source: str) -> float | None:
    return sample_value(samples, "agent.parse_errors_total",
                        {"collector": "ascend", "source": source})


# --- the captured summary tables -------------------------------------------------------------
# Per chip: (npu, chip, health, power W, temp C, AICore %, mem used MiB, mem total MiB, bus id)
# where "mem" is HBM when the chip has HBM, else the DDR Memory-Usage column.

TABLES = {
    "ai-server_atlas-800-inference-server_model-3000_version-1.0.0-1.0.10.txt": dict(
        version="20.2.0", model="Ascend 310", chips=[
            (215, 0, "OK", 12.8, 56, 0, 2703, 8192, "0000:DA:00.0"),
            (215, 1, "OK", 12.8, 57, 0, 2703, 8192, "0000:DC:00.0"),
            (215, 2, "OK", 12.8, 57, 0, 2703, 8192, "0000:DD:00.0"),
            (215, 3, "OK", 12.8, 55, 0, 2703, 8192, "0000:DB:00.0"),
        ]),
    "ai-server_atlas-800-inference-server_model-3000_version-1.0.11-1.0.15.txt": dict(
        version="21.0.4.B030", model="Ascend 310", chips=[
            (6, 0, "OK", 12.8, 73, 0, 2703, 8192, "0000:89:00.0"),
            (6, 1, "OK", 12.8, 74, 0, 2867, 8192, "0000:8A:00.0"),
            (6, 2, "OK", 12.8, 70, 0, 2867, 8192, "0000:8B:00.0"),
            (6, 3, "OK", 12.8, 65, 0, 2867, 8192, "0000:8C:00.0"),
        ]),
    # Names anonymised to "xxx": the model comes from its mapping file (detail run) below.
    "ai-server_atlas-800-training-server_model-9010_version-24.1.RC2.txt": dict(
        version="24.1.RC2", model="Ascend", chips=[
            (0, 0, "OK", 70.5, 42, 0, 0, 32768, "0000:C1:00.0"),
            (1, 0, "OK", 71.2, 36, 0, 0, 32768, "0000:81:00.0"),
            (2, 0, "OK", 69.0, 35, 0, 0, 32768, "0000:41:00.0"),
            (3, 0, "Warning", 206.9, 39, 0, 0, 32768, "0000:01:00.0"),
            (4, 0, "OK", 70.2, 39, 0, 0, 32768, "0000:C2:00.0"),
            (5, 0, "OK", 64.9, 37, 0, 0, 32768, "0000:82:00.0"),
            (6, 0, "OK", 69.4, 40, 0, 0, 32768, "0000:42:00.0"),
            (7, 0, "Warning", 203.2, 42, 0, 0, 32768, "0000:02:00.0"),
        ]),
    "ai-server_atlas-800-training-server_model-9010_version-6.0.RC1.txt": dict(
        version="22.0.3.1", model="Ascend 910A", chips=[
            (0, 0, "OK", 67.2, 43, 0, 0, 32768, "0000:61:00.0"),
            (1, 0, "OK", 63.3, 38, 0, 0, 32768, "0000:DB:00.0"),
            (2, 0, "OK", 64.8, 34, 0, 0, 32768, "0000:B2:00.0"),
            (3, 0, "OK", 191.7, 42, 0, 0, 32768, "0000:3E:00.0"),
            (4, 0, "OK", 66.4, 44, 0, 0, 32768, "0000:60:00.0"),
            (5, 0, "OK", 62.7, 33, 0, 0, 32768, "0000:DA:00.0"),
            (6, 0, "OK", 64.5, 35, 0, 0, 32768, "0000:B1:00.0"),
            (7, 0, "OK", 191.4, 40, 0, 0, 32768, "0000:3D:00.0"),
        ]),
}

# The DDR Memory-Usage column, read from the table rows (kept on ChipRow, not emitted where
# the chip has HBM), and the Device column of the 310 layouts.
DDR = {
    "ai-server_atlas-800-training-server_model-9010_version-24.1.RC2.txt":
        [(4252, 15137), (4666, 15137), (4317, 15137), (3616, 15039), (3708, 15137),
         (4346, 15137), (4261, 15137), (4521, 15039)],
    "ai-server_atlas-800-training-server_model-9010_version-6.0.RC1.txt":
        [(1867, 15077), (1867, 15077), (1868, 15077), (1866, 15077), (1867, 15077),
         (1865, 15077), (1865, 15077), (1866, 15077)],
}
DEVICE_COLUMN = {
    "ai-server_atlas-800-inference-server_model-3000_version-1.0.0-1.0.10.txt": [0, 1, 2, 3],
    "ai-server_atlas-800-inference-server_model-3000_version-1.0.11-1.0.15.txt": [3, 4, 5, 6],
}
HUGEPAGES = {
    "ai-server_atlas-800-inference-server_model-3000_version-1.0.0-1.0.10.txt": (None, None),
    "ai-server_atlas-800-inference-server_model-3000_version-1.0.11-1.0.15.txt": (0, 970),
    "ai-server_atlas-800-training-server_model-9010_version-24.1.RC2.txt": (1232, 1232),
    "ai-server_atlas-800-training-server_model-9010_version-6.0.RC1.txt": (15, 15),
}

# npu-smi info -m: (NPU ID, Chip ID, Chip Logic ID, Chip Name); "-" logic id -> None.
MAPPINGS = {
    "ai-server_atlas-800-inference-server_model-3000_version-1.0.0-1.0.10_mapping.txt":
        [(215, c, c, "MiniD") for c in range(4)],
    "ai-server_atlas-800-inference-server_model-3000_version-1.0.11-1.0.15_mapping.txt":
        [(6, c, c, "MiniD") for c in range(4)] + [(6, 4, None, "Mcu")],
    "ai-server_atlas-800-training-server_model-9010_version-24.1.RC2_mapping.txt":
        [(n, 0, n, "Ascend 910A") for n in range(8)],
    "ai-server_atlas-800-training-server_model-9010_version-6.0.RC1_mapping.txt":
        [(n, 0, n, "Ascend 910A") for n in range(8)],
}
CAPTURES = {"mind-cluster_npu_info_before.txt"}
# Fixtures whose expected values are in test_ascend_details.py (views per chip, 310P, A3).
DETAILS = {"ascend-pytorch-issue-94_310p_info.txt", "vllm-ascend-issue-3002_a3_info.txt",
           "gpustack_310p_common.txt", "gpustack_310p_usages.txt", "gpustack_910b_common.txt",
           "gpustack_910b_usages.txt", "gpustack_310p_mapping.txt", "gpustack_910b_mapping.txt",
           "gpustack_hccn_link.txt"}


def test_every_fixture_file_has_expectations():
    """A capture added to the folder must get its expected values here."""
    files = {p.name for p in FIXTURES.iterdir() if p.is_file() and p.name != "SOURCES.md"}
    assert files == set(TABLES) | set(MAPPINGS) | CAPTURES | DETAILS


@pytest.mark.parametrize("name", sorted(TABLES))
def test_table_rows(name):
    want = TABLES[name]
    rows = parse_info_table(read(name))
    assert [(r.npu_id, r.chip_id) for r in rows] == [(c[0], c[1]) for c in want["chips"]]
    for r, c in zip(rows, want["chips"], strict=True):
        assert (r.health, r.power_w, r.temperature_c, r.aicore_percent, r.bus_id) == (
            c[2], c[3], c[4], c[5], c[8])
        assert r.driver_version == want["version"]
        assert (r.hugepages_used, r.hugepages_total) == HUGEPAGES[name]
    if name in DDR:
        assert [(r.memory_used_mb, r.memory_total_mb) for r in rows] == DDR[name]
        assert all((r.hbm_used_mb, r.hbm_total_mb) == (0, 32768) for r in rows)
    else:
        assert all(r.hbm_total_mb is None for r in rows)
        assert [r.device_id for r in rows] == DEVICE_COLUMN[name]


@pytest.mark.parametrize("name", sorted(TABLES))
def test_table_samples(name):
    want = TABLES[name]
    samples = collect(read(name))
    assert len(devices(samples)) == len(want["chips"])
    for npu, chip, health, power, temp, util, used, total, bus in want["chips"]:
        d = dev(npu, chip)
        assert value(samples, "power_watts", d) == power
        assert value(samples, "temperature_celsius", d) == temp
        assert value(samples, "utilization_ratio", d) == util / 100
        assert value(samples, "memory_used_bytes", d) == used * MIB
        assert value(samples, "memory_total_bytes", d) == total * MIB
        assert value(samples, "health", d) == (1.0 if health == "OK" else 0.0)
        assert label(samples, "pci_bus_id", d) == bus
        assert label(samples, "driver_version", d) == want["version"]
        assert label(samples, "model", d) == want["model"]
        assert label(samples, "index", d) == str(npu)
        assert label(samples, "vendor", d) == "huawei"
        assert label(samples, "ecosystem", d) == "cann"
        assert label(samples, "site", d) == "bj-ai"
        # the table has no vector, bandwidth or clock figures: without detail, no samples
        assert value(samples, "vector_utilization_ratio", d) is None
        assert value(samples, "sm_clock_hertz", d) is None
    assert parse_errors(samples, "npu-smi info") == 0  # there from the start, at 0


def test_310_chips_of_one_card_are_distinct_devices():
    samples = collect(read(sorted(TABLES)[0]))
    assert devices(samples) == {f"n1-npu215-chip{c}" for c in range(4)}


@pytest.mark.parametrize("name", sorted(MAPPINGS))
def test_mapping_view(name):
    got = parse_mapping(read(name))
    assert [(m.npu_id, m.chip_id, m.logic_id, m.chip_name) for m in got] == MAPPINGS[name]


def test_anonymised_names_take_the_model_from_the_mapping_view():
    table = read("ai-server_atlas-800-training-server_model-9010_version-24.1.RC2.txt")
    mapping = read("ai-server_atlas-800-training-server_model-9010_version-24.1.RC2_mapping.txt")
    calls: list[tuple[str, ...]] = []
    collector = AscendCollector(LABELS, detail=True, run=served(
        {("info",): table, ("info", "-m"): mapping}, calls))
    samples = checked(run_once(collector))
    assert {label(samples, "model", dev(n)) for n in range(8)} == {"Ascend 910A"}
    # the per-chip views are not supported by this fake: counted per view, never fatal
    assert parse_errors(samples, "npu-smi info -t usages") == 8
    assert parse_errors(samples, "npu-smi info -t common") == 8
    assert value(samples, "power_watts", dev(3)) == 206.9
    assert calls.count(("info", "-m")) == 1
    checked(collector.collect())
    assert calls.count(("info", "-m")) == 1  # chip names are cached once known


# --- the mind-cluster fault-diagnosis capture -------------------------------------------------

def capture_sections(text: str) -> dict[str, str]:
    """The capture's command outputs, keyed by command line (npu-smi without its path)."""
    out: dict[str, list[str]] = {}
    key = None
    for line in text.splitlines():
        if line.startswith("/") or line.startswith("lspci"):
            key = re.sub(r"^\S*/npu-smi", "npu-smi", line.strip())
            out[key] = []
        elif key is not None:
            out[key].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def test_mind_cluster_capture():
    sec = capture_sections(read("mind-cluster_npu_info_before.txt"))
    mapping = parse_mapping(sec["npu-smi info -m"])  # tab-indented lines
    assert [(m.npu_id, m.chip_id, m.logic_id, m.chip_name) for m in mapping] == [
        (n, 0, n, "Ascend 910A") for n in range(8)]

    with pytest.raises(ParseError, match="no npu-smi info table"):
        parse_info_table(sec["npu-smi info"])  # the capture's `npu-smi info` is empty

    chip_board = parse_key_values(sec["npu-smi info -i 0 -c 0 -t board"], "board")
    assert chip_board["Chip Type"] == "Ascend"
    assert chip_board["Chip Name"] == "910A"
    assert chip_board["PCIe Bus Info"] == "0000:61:00.0"
    assert chip_board["VDie ID"] == "42C711D4 20B03704 4A10C8D4 14CC040A D2102003"
    assert chip_board["PCB ID"] == "NA"

    usages = parse_key_values(sec["npu-smi info -i 0 -t usages"], "usages")
    assert usages["DDR Capacity(MB)"] == "13553"
    assert usages["DDR Usage Rate(%)"] == "6"
    assert usages["HBM Capacity(MB)"] == "31129"
    assert usages["Aicore Usage Rate(%)"] == "0"
    assert usages["HBM Bandwidth Usage Rate(%)"] == "0"
    assert usages["Chip ID"] == "0"

    board = parse_key_values(sec["npu-smi info -i 0 -t board"], "board")
    assert (board["Software Version"], board["Firmware Version"]) == ("23.0.5", "7.1.0.7.220")

    health = parse_key_values(sec["npu-smi info -i 0 -c 0 -t health"], "health")
    assert health == {"Health Status": "OK", "Error Code": "NA", "Error Information": "NA"}


def test_mind_cluster_views_fill_a_table_row():
    """NPU 0 of the 910A table (bus 0000:61:00.0, as in the capture) with the captured views."""
    sec = capture_sections(read("mind-cluster_npu_info_before.txt"))
    row = parse_info_table(read(
        "ai-server_atlas-800-training-server_model-9010_version-24.1.RC2.txt"))[0]
    details = {**parse_key_values(sec["npu-smi info -i 0 -t usages"], "usages"),
               **parse_key_values(sec["npu-smi info -i 0 -c 0 -t board"], "board")}
    samples = checked(chip_samples(row, LABELS, details))
    assert label(samples, "model", dev(0)) == "Ascend 910A"  # "xxx" in the table
    assert value(samples, "memory_utilization_ratio", dev(0)) == 0.0  # HBM bandwidth
    assert value(samples, "memory_total_bytes", dev(0)) == 32768 * MIB  # the table wins


def test_empty_info_output_fails_the_run_as_a_parse_error():
    sec = capture_sections(read("mind-cluster_npu_info_before.txt"))
    collector = AscendCollector(LABELS, run=served({("info",): sec["npu-smi info"]}))
    with pytest.raises(ParseError) as err:
        collector.collect()
    assert err.value.code is ResultCode.PARSE_ERROR


# --- other layouts (hand-written in the layout of Huawei's documentation, not captures) -------

A2_910B = """\
+------------------------------------------------------------------------------------------------+
| npu-smi 23.0.6                   Version: 23.0.6                                               |
+---------------------------+---------------+----------------------------------------------------+
| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|
| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |
+===========================+===============+====================================================+
| 0     910B3               | OK            | 98.7        35                0    / 0             |
| 0                         | 0000:C1:00.0  | 0           0    / 0          3395 / 65536         |
+===========================+===============+====================================================+
| 1     910B3               | OK            | 391.5       51                0    / 0             |
| 0                         | 0000:01:00.0  | 97          0    / 0          60478/ 65536         |
+===========================+===============+====================================================+
+---------------------------+---------------+----------------------------------------------------+
| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |
+===========================+===============+====================================================+
| No running processes found in NPU 0                                                            |
+===========================+===============+====================================================+
| 1       0                 | 2415781       | python3.9                | 57150                   |
+===========================+===============+====================================================+
"""

DUO_310P = """\
+--------------------------------------------------------------------------------------------------------+
| npu-smi 23.0.rc2                                 Version: 23.0.rc2                                     |
+-------------------------------+-----------------+------------------------------------------------------+
| NPU     Name                  | Health          | Power(W)     Temp(C)           Hugepages-Usage(page) |
| Chip    Device                | Bus-Id          | AICore(%)    Memory-Usage(MB)                        |
+===============================+=================+======================================================+
| 1       310P3                 | OK              | 47.7         43                0     / 0             |
| 0       0                     | 0000:01:00.0    | 0            1756 / 44280                            |
+-------------------------------+-----------------+------------------------------------------------------+
| 1       310P3                 | OK              | NA           41                0     / 0             |
| 1       1                     | 0000:01:00.0    | 3            1498 / 43693                            |
+===============================+=================+======================================================+
+-------------------------------+-----------------+------------------------------------------------------+
| NPU     Chip                  | Process id      | Process name             | Process memory(MB)        |
+===============================+=================+======================================================+
| No running processes found in NPU 1                                                                    |
+===============================+=================+======================================================+
"""  # noqa: E501

A3 = """\
+------------------------------------------------------------------------------------------------+
| npu-smi 24.1.rc3                 Version: 24.1.rc3                                             |
+---------------------------+---------------+----------------------------------------------------+
| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|
| Chip  Phy-ID              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |
+===========================+===============+====================================================+
| 0     Ascend910           | OK            | 170.3       36                0    / 0             |
| 0     0                   | 0000:9D:00.0  | 0           0    / 0          3399 / 65536         |
+---------------------------+---------------+----------------------------------------------------+
| 0     Ascend910           | OK            | -           37                0    / 0             |
| 1     1                   | 0000:9F:00.0  | 0           0    / 0          3159 / 65536         |
+===========================+===============+====================================================+
"""


def test_910b_layout_with_process_table():
    samples = collect(A2_910B)
    assert devices(samples) == {"n1-npu0-chip0", "n1-npu1-chip0"}
    assert value(samples, "memory_used_bytes", dev(1)) == 60478 * MIB  # "60478/ 65536"
    assert value(samples, "memory_total_bytes", dev(1)) == 65536 * MIB
    assert value(samples, "utilization_ratio", dev(1)) == 0.97
    assert label(samples, "model", dev(0)) == "Ascend 910B3"
    assert label(samples, "driver_version", dev(0)) == "23.0.6"


def test_310p_duo_layout():
    samples = collect(DUO_310P)
    assert devices(samples) == {"n1-npu1-chip0", "n1-npu1-chip1"}
    assert value(samples, "power_watts", dev(1, 0)) == 47.7
    assert value(samples, "power_watts", dev(1, 1)) is None  # NA: no sample, not zero
    assert value(samples, "memory_used_bytes", dev(1, 1)) == 1498 * MIB  # DDR, no HBM
    assert value(samples, "memory_total_bytes", dev(1, 1)) == 43693 * MIB
    assert label(samples, "model", dev(1, 1)) == "Ascend 310P3"
    assert [r.device_id for r in parse_info_table(DUO_310P)] == [0, 1]


def test_a3_layout_fills_the_missing_power_from_the_power_view():
    calls: list[tuple[str, ...]] = []
    power = "\tNPU ID                         : 0\n\tChip ID                        : 1\n" \
            "\tPower Dissipation(W)           : 88.2\n"
    run = served({("info",): A3, ("info", "-t", "power", "-i", "0", "-c", "1"): power}, calls)
    samples = checked(AscendCollector(LABELS, run=run).collect())
    assert [r.device_id for r in parse_info_table(A3)] == [0, 1]
    assert value(samples, "power_watts", dev(0, 0)) == 170.3
    assert value(samples, "power_watts", dev(0, 1)) == 88.2
    assert label(samples, "model", dev(0, 1)) == "Ascend 910"
    assert ("info", "-t", "power", "-i", "0", "-c", "0") not in calls  # the table had it


# --- damaged output ---------------------------------------------------------------------------

def test_garbage_is_a_parse_error_naming_the_line():
    with pytest.raises(ParseError) as err:
        parse_info_table("\nsegmentation fault (core dumped)\n")
    assert err.value.line_no == 2
    assert "segmentation fault" in str(err.value)
    collector = AscendCollector(LABELS, run=served({("info",): "segmentation fault\n"}))
    with pytest.raises(ParseError):
        collector.collect()
    collector._run = served({("info",): A2_910B})
    samples = checked(run_once(collector))
    assert parse_errors(samples, "npu-smi info") == 1  # counted, and still counted later
    assert len(devices(samples)) == 2


@pytest.mark.parametrize("cut_line, keep", [(16, 40), (17, 50)])
def test_truncated_table_keeps_the_chips_before_the_damage(cut_line, keep):
    lines = read("ai-server_atlas-800-training-server_model-9010_version-24.1.RC2.txt"
                 ).splitlines()
    text = "\n".join([*lines[:cut_line - 1], lines[cut_line - 1][:keep]])
    with pytest.raises(ParseError) as err:
        parse_info_table(text)
    assert err.value.line_no == cut_line
    assert lines[cut_line - 1][:keep].strip() in str(err.value)
    errors: list[ParseError] = []
    assert [r.npu_id for r in parse_info_table(text, errors=errors)] == [0, 1, 2]
    assert len(errors) == 1
    samples = collect(text)
    assert devices(samples) == {f"n1-npu{n}-chip0" for n in range(3)}
    assert parse_errors(samples, "npu-smi info") == 1


def test_a_damaged_row_in_the_middle_costs_only_that_chip():
    text = A2_910B.replace("98.7 ", "9B.7 ")
    errors: list[ParseError] = []
    rows = parse_info_table(text, errors=errors)
    assert [r.npu_id for r in rows] == [1]
    assert errors[0].line_no == 7 and "9B.7" in str(errors[0])


@pytest.mark.parametrize("old, new, line_no", [
    ("| NPU   Name ", "| GPU   Name ", 4),
    ("| Chip      ", "| Card      ", 5),
])
def test_unknown_header(old, new, line_no):
    text = A2_910B.replace(old, new)
    with pytest.raises(ParseError, match="unknown header") as err:
        parse_info_table(text)
    assert err.value.line_no == line_no
    with pytest.raises(ParseError):
        AscendCollector(LABELS, run=served({("info",): text})).collect()


def test_na_and_dash_cells_give_no_sample():
    text = A2_910B.replace("| 98.7        35  ", "| NA          -   ").replace(
        "0    / 0          3395 / 65536", "0    / 0          NA          ")
    samples = collect(text)
    assert value(samples, "power_watts", dev(0)) is None
    assert value(samples, "temperature_celsius", dev(0)) is None
    assert value(samples, "memory_used_bytes", dev(0)) is None
    assert value(samples, "memory_total_bytes", dev(0)) is None  # not the DDR "0 / 0"
    assert value(samples, "utilization_ratio", dev(0)) == 0.0
    assert value(samples, "health", dev(0)) == 1.0
    assert value(samples, "power_watts", dev(1)) == 391.5


@pytest.mark.parametrize("health, code", [
    ("OK", 1.0), ("Warning", 0.0), ("Alarm", 0.0), ("Critical", 0.0), ("UNKNOWN", 0.0)])
def test_health(health, code):
    samples = collect(A2_910B.replace("| OK            | 98.7", f"| {health:<14}| 98.7"))
    assert value(samples, "health", dev(0)) == code
    assert value(samples, "health", dev(1)) == 1.0


def test_unknown_health_gives_no_sample_and_is_counted():
    samples = collect(A2_910B.replace("| OK            | 98.7", "| Degraded      | 98.7"))
    assert value(samples, "health", dev(0)) is None
    assert value(samples, "power_watts", dev(0)) == 98.7
    assert parse_errors(samples, "npu-smi info") == 1


# --- key/value views --------------------------------------------------------------------------

NEWER_USAGES = (
    "\tNPU ID                         : 2\n"
    "    Chip Count                     : 1\n"
    "\n"
    "        NPU Utilization(%)             : 41\n"
    "\tAivector Usage Rate(%)         : 17\n"
    "\tHBM Usage Rate(%)              : 88\n"
    "\tHBM Capacity(MB)               : 65536\n"
    "\tHBM Usage(MB)                  : 57344\n"
    "\tHBM Bandwidth Usage Rate(%)    : 23\n"
    "\tAicore curFreq(MHZ)            : 1800\n"
    "\tPower Dissipation(W)           : 301.5\n"
    "\tTemperature(C)                 : 61\n"
    "\tHBM Temperature(C)             : NA\n"
)


def test_key_values_tab_or_space_indented():
    kv = parse_key_values(NEWER_USAGES, "npu-smi info -t usages -i 2 -c 0")
    assert kv["NPU ID"] == "2" and kv["Chip Count"] == "1"
    assert kv["NPU Utilization(%)"] == "41"
    assert kv["HBM Temperature(C)"] == "NA"


def test_detail_views_fill_what_the_row_lacks():
    row = ChipRow(npu_id=2, chip_id=0, line_no=1)
    kv = parse_key_values(NEWER_USAGES, "usages")
    samples = checked(chip_samples(row, LABELS, kv))
    d = dev(2)
    assert value(samples, "utilization_ratio", d) == 0.41
    assert value(samples, "vector_utilization_ratio", d) == 0.17
    assert value(samples, "memory_utilization_ratio", d) == 0.23  # bandwidth, not the 88 %
    assert value(samples, "memory_used_bytes", d) == 57344 * MIB
    assert value(samples, "memory_total_bytes", d) == 65536 * MIB
    assert value(samples, "sm_clock_hertz", d) == 1.8e9
    assert value(samples, "power_watts", d) == 301.5
    assert value(samples, "temperature_celsius", d) == 61
    assert value(samples, "memory_temperature_celsius", d) is None  # NA
    assert value(samples, "health", d) is None  # nothing says
    assert label(samples, "model", d) == "Ascend"


def test_key_values_damage():
    with pytest.raises(ParseError, match="Key : Value") as err:
        parse_key_values("\tNPU ID : 0\nwhat is this\n", "npu-smi info -t common -i 0")
    assert err.value.line_no == 2 and "npu-smi info -t common -i 0" in str(err.value)
    errors: list[ParseError] = []
    assert parse_key_values("\tNPU ID : 0\nwhat is this\n", "v", errors) == {"NPU ID": "0"}
    assert len(errors) == 1
    with pytest.raises(ParseError):
        parse_key_values("\n\n", "v")
    with pytest.raises(ParseError):
        chip_samples(ChipRow(0, 0, 1), LABELS, {"Temperature(C)": "hot"})


@pytest.mark.parametrize("raw, want", [
    ("910B3", "Ascend 910B3"), ("Ascend910", "Ascend 910"), ("Ascend 910A", "Ascend 910A"),
    ("310P3", "Ascend 310P3"), ("xxx", None), ("NA", None), (None, None)])
def test_model_name(raw, want):
    assert model_name(raw) == want


# --- the subprocess seam ----------------------------------------------------------------------

def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_default_run_executes_npu_smi_without_a_shell(tmp_path):
    table = tmp_path / "table.txt"
    table.write_text(A2_910B, encoding="utf-8")
    exe = script(tmp_path / "dir with space" / "npu-smi",
                 f"assert sys.argv[1:] == ['info'], sys.argv\n"
                 f"sys.stdout.write(open({str(table)!r}).read())")
    samples = checked(AscendCollector(LABELS, npu_smi=str(exe), detail=False).collect())
    assert len(devices(samples)) == 2


def test_a_hanging_npu_smi_times_out_with_a_clear_error(tmp_path):
    exe = script(tmp_path / "npu-smi", "time.sleep(30)")
    collector = AscendCollector(LABELS, npu_smi=str(exe), timeout_s=0.3)
    with pytest.raises(NpuSmiTimeout, match=r"npu-smi info timed out after 0\.3 s") as err:
        collector.collect()
    assert err.value.code is ResultCode.TIMEOUT
    assert isinstance(err.value, CollectorError)


def test_a_failing_npu_smi_names_the_command_and_its_stderr(tmp_path):
    exe = script(tmp_path / "npu-smi",
                 "sys.stderr.write('dcmi module initialize failed. ret is -8005\\n'); sys.exit(3)")
    with pytest.raises(CollectorError, match="exited with status 3") as err:
        AscendCollector(LABELS, npu_smi=str(exe)).collect()
    assert "npu-smi info" in str(err.value)
    assert "dcmi module initialize failed" in str(err.value)
    assert err.value.code is ResultCode.ERROR


def test_missing_binary_is_driver_absent(tmp_path):
    with pytest.raises(DriverAbsent, match="npu-smi not found") as err:
        AscendCollector(LABELS, npu_smi=str(tmp_path / "nowhere" / "npu-smi")).collect()
    assert err.value.code is ResultCode.ABSENT


def test_timeout_in_a_detail_view_stops_the_views_but_keeps_the_table():
    calls: list[tuple[str, ...]] = []

    def run(argv: Sequence[str], timeout: float) -> str:
        calls.append(tuple(argv[1:]))
        if argv[1:] == ["info"]:
            return A2_910B
        raise subprocess.TimeoutExpired(list(argv), timeout)

    samples = checked(run_once(AscendCollector(LABELS, run=run, detail_concurrency=1)))
    assert len(calls) == 2  # the table, then one view: no wait per remaining chip
    assert value(samples, "power_watts", dev(1)) == 391.5
    assert parse_errors(samples, "npu-smi info -t usages") == 1


# --- against the simulator's fake npu-smi -----------------------------------------------------

AT = datetime(2026, 3, 3, 6, 0, 7, tzinfo=UTC)  # a weekday afternoon in China: mixed load


@pytest.fixture(scope="module")
def fleet():
    return build_fleet(load_topology())


def npu_readings(node):
    return [r for r in node.readings(AT) if r.vendor == "huawei"]


def assert_matches(samples, node, r):
    d = {"device": f"{node.node}-npu{r.index}-chip0"}
    assert value(samples, "utilization_ratio", d) == pytest.approx(r.utilization, abs=0.005)
    assert value(samples, "memory_utilization_ratio", d) == pytest.approx(
        r.memory_utilization, abs=0.005)
    assert value(samples, "memory_used_bytes", d) == r.memory_used_bytes
    assert value(samples, "memory_total_bytes", d) == r.memory_total_bytes
    assert value(samples, "power_watts", d) == pytest.approx(r.power_w, abs=0.05)
    assert value(samples, "temperature_celsius", d) == pytest.approx(r.temperature_c, abs=0.5)
    assert value(samples, "sm_clock_hertz", d) == r.sm_clock_hz
    assert value(samples, "health", d) == 1.0
    assert value(samples, "vector_utilization_ratio", d) is None  # the fake says NA
    assert label(samples, "model", d) == r.model
    assert label(samples, "pci_bus_id", d) == r.pci_bus_id
    assert label(samples, "index", d) == str(r.index)
    assert label(samples, "driver_version", d) == node.cann_version
    for key, want in node.labels.items():
        assert label(samples, key, d) == (want or None)


def test_collector_against_the_fake_reads_the_simulated_node(fleet):
    node = mixed_node(fleet)
    samples = checked(AscendCollector(node.labels, run=FakeNpuSmi(node, clock=lambda: AT))
                      .collect())
    readings = npu_readings(node)
    assert len(readings) == 8
    assert devices(samples) == {f"{node.node}-npu{r.index}-chip0" for r in readings}
    assert len({r.utilization for r in readings}) > 1  # a mix of busy and idle chips
    for r in readings:
        assert_matches(samples, node, r)
    assert not [s for s in samples if s.measurement == "agent"]  # nothing failed


def test_a_lost_npu_reports_unhealthy_and_the_others_are_unaffected(fleet):
    node = mixed_node(fleet)
    node.lose(3, "huawei")
    samples = checked(AscendCollector(node.labels, run=FakeNpuSmi(node, clock=lambda: AT))
                      .collect())
    lost = {"device": f"{node.node}-npu3-chip0"}
    assert value(samples, "health", lost) == 0.0
    assert {s.field for s in samples if set(lost.items()) <= set(s.labels)} == {"health"}
    for r in npu_readings(node):
        if r.index != 3:
            assert_matches(samples, node, r)
    assert not [s for s in samples if s.measurement == "agent"]  # its views were not run


def test_an_unhealthy_npu_shows_warning(fleet):
    node = mixed_node(fleet)
    node.unhealthy.add(("huawei", 5))
    fake = FakeNpuSmi(node, clock=lambda: AT)
    assert "| 5     910B           | Warning" in fake(["npu-smi", "info"], 5.0)
    samples = checked(AscendCollector(node.labels, run=fake).collect())
    assert value(samples, "health", {"device": f"{node.node}-npu5-chip0"}) == 0.0
    assert value(samples, "power_watts", {"device": f"{node.node}-npu5-chip0"}) is not None


def test_the_fake_fails_like_the_binary(fleet):
    node = mixed_node(fleet)
    fake = FakeNpuSmi(node, clock=lambda: AT)
    for argv in (["npu-smi", "info", "-t", "bogus", "-i", "0"], ["npu-smi", "infox"],
                 ["npu-smi", "info", "-t", "usages", "-i", "9", "-c", "0"]):
        with pytest.raises(FakeNpuSmiError) as err:
            fake(argv, 5.0)
        assert err.value.returncode != 0 and err.value.output
    node.lose(2, "huawei")
    with pytest.raises(subprocess.CalledProcessError):
        fake(["npu-smi", "info", "-t", "usages", "-i", "2", "-c", "0"], 5.0)
    assert "\tHBM Temperature(C)" in fake(["npu-smi", "info", "-t", "memory", "-i", "0"], 5.0)
    assert [m.chip_name for m in parse_mapping(fake(["npu-smi", "info", "-m"], 5.0))] == [
        "Ascend 910B"] * 8


def test_a_failing_view_is_counted_not_fatal(fleet):
    node = mixed_node(fleet)
    fake = FakeNpuSmi(node, clock=lambda: AT)

    def run(argv: Sequence[str], timeout: float) -> str:
        if "common" in argv:
            return fake([a if a != "common" else "bogus" for a in argv], timeout)
        return fake(argv, timeout)

    samples = checked(run_once(AscendCollector(node.labels, run=run)))
    assert parse_errors(samples, "npu-smi info -t common") == 8
    for r in npu_readings(node):
        d = {"device": f"{node.node}-npu{r.index}-chip0"}
        assert value(samples, "sm_clock_hertz", d) is None  # only -t common has it
        assert value(samples, "memory_utilization_ratio", d) == pytest.approx(
            r.memory_utilization, abs=0.005)


# --- the Metrics table in the README -----------------------------------------------------------

def test_docstring_metrics_table_matches_the_catalogue(fleet):
    doc = readme_metrics(ascend_module)
    section = doc[doc.index("## Metrics"):]
    documented: dict[str, set[str]] = {}
    meas, in_fields = None, False
    for line in section.splitlines():
        if m := re.match(r"^- (\w+)$", line):
            meas, in_fields = m.group(1), False
            documented[meas] = set()
        elif re.match(r"^  - (\w+):", line):
            in_fields = line.strip() == "- fields:"
        elif meas and in_fields and (m := re.match(r"^    - (\w+) \(", line)):
            documented[meas].add(m.group(1))
    assert set(documented) == {"accelerator", "accelerator_process", "accelerator_card", "agent"}
    assert {"utilization_ratio", "health", "memory_used_bytes"} <= documented["accelerator"]
    for meas, fields in documented.items():
        assert fields <= set(catalog.measurement(meas).fields), meas
    node = mixed_node(fleet)
    samples = AscendCollector(node.labels, run=FakeNpuSmi(node)).collect()
    samples += collect(A2_910B.replace("98.7 ", "9B.7 "))
    for s in samples:
        assert s.field in documented[s.measurement], s.name
