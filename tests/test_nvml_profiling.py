"""The NVML collector's issue-16 fields against the fake NVML: GPM profiling, the memory split,
media engines, NVLink and page retirement, the last XID, processes, and error counters that
stay while NVML is down. Expected values are the simulator's readings (its ground truth),
converted by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pynvml
import pytest

from computewatch.collectors import DriverAbsent
from computewatch.collectors.agent import Agent, Scheduled
from computewatch.collectors.nvml import NvmlCollector
from computewatch.samples import Sample, sample_value
from computewatch.sim import build_fleet
from computewatch.sim.fake_nvml import FakeNvml
from computewatch.sim.node import NodeSim, mixed_node
from computewatch.topology import load_topology
from computewatch.validation import check_sample

T = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in China on a Monday: busy and idle GPUs
GPUS = 8
GPM = {  # catalogue field -> (reading attribute, factor from the reading to the field)
    "graphics_active_ratio": ("graphics_active", 1.0),
    "sm_active_ratio": ("sm_active", 1.0),
    "tensor_active_ratio": ("tensor_active", 1.0),
    "dram_active_ratio": ("dram_active", 1.0),
    "pcie_transmit_bytes_per_second": ("pcie_tx_bytes_per_s", 1.0),
    "pcie_receive_bytes_per_second": ("pcie_rx_bytes_per_s", 1.0),
    "nvlink_transmit_bytes_per_second": ("nvlink_tx_bytes_per_s", 1.0),
    "nvlink_receive_bytes_per_second": ("nvlink_rx_bytes_per_s", 1.0),
}


@pytest.fixture(scope="module")
def fleet():
    return build_fleet(load_topology())


def node_of(fleet, model: str = "H100", gpus: int = GPUS) -> NodeSim:
    return mixed_node(fleet, gpus=gpus, npus=0, gpu_model=model)


class Clock:
    """The fake driver's moment, moved by the test."""

    def __init__(self, t: datetime = T) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def collect(collector: NvmlCollector) -> list[Sample]:
    samples = collector.collect() + collector.self_samples(T)
    for s in samples:
        check_sample(s)
    return samples


def readings(node: NodeSim, t: datetime = T):
    return [r for r in node.readings(t) if r.vendor == "nvidia"]


# --- GPM ----------------------------------------------------------------------------------

def test_gpm_ratios_and_rates_on_hopper_equal_the_readings(fleet):
    node = node_of(fleet)
    waits: list[float] = []
    collector = NvmlCollector(node.labels, FakeNvml(node, clock=Clock()), sleep=waits.append)
    samples = collect(collector)
    assert waits == [0.1]  # the first run waits once for all eight GPUs, not once per GPU
    rs = readings(node)
    assert {r.tensor_active > 0 for r in rs} == {True, False}  # busy and idle GPUs
    for r in rs:
        for name, (attr, factor) in GPM.items():
            got = sample_value(samples, f"accelerator.{name}", {"index": str(r.index)})
            assert got == pytest.approx(getattr(r, attr) * factor), (r.index, name)
    collect(collector)
    assert waits == [0.1]  # later runs use the previous run's sample


def test_gpm_is_absent_before_hopper_and_not_asked_again(fleet):
    for model in ("A100", "L20", "V100"):
        node = node_of(fleet, model, gpus=2)
        nv = FakeNvml(node, clock=Clock())
        collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
        for _ in range(3):
            samples = collect(collector)
        names = {s.field for s in samples}
        assert not names & set(GPM), model  # absent, never zero
        assert nv.calls[("nvmlGpmQueryDeviceSupport", 0)] == 1, model
        assert not [k for k in nv.calls if k[0] == "nvmlGpmSampleGet"], model
        assert not [s for s in samples if s.measurement == "agent"], model


def test_gpm_per_mig_instance_with_nvml_instance_ids(fleet):
    node = node_of(fleet)
    nv = FakeNvml(node, clock=Clock(), mig={1: 3})
    samples = collect(NvmlCollector(node.labels, nv, gpm_warmup_s=0))
    r = readings(node)[1]
    migs = {s.label("index"): dict(s.labels) for s in samples if s.label("parent")}
    # 3 instances of an 80 GB H100 are 2g.20gb profiles, which NVML numbers 3, 4, 5.
    assert {i: (lab["gpu_instance_id"], lab["gpu_instance_profile"]) for i, lab in
            migs.items()} == {"1:0": ("3", "2g.20gb"), "1:1": ("4", "2g.20gb"),
                              "1:2": ("5", "2g.20gb")}
    for j in range(3):
        got = sample_value(samples, "accelerator.tensor_active_ratio", {"index": f"1:{j}"})
        assert got == pytest.approx(r.tensor_active)
    # While MIG is on, the GPU itself is profiled through its instances only.
    assert sample_value(samples, "accelerator.tensor_active_ratio", {"index": "1"}) is None
    assert sample_value(samples, "accelerator.tensor_active_ratio", {"index": "0"}) is not None


def test_gpm_on_mig_where_the_driver_cannot_is_absent_and_not_asked_again(fleet):
    node = node_of(fleet, gpus=2)
    nv = FakeNvml(node, clock=Clock(), mig={1: 2}, unsupported={"nvmlGpmMigSampleGet"})
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    for _ in range(3):
        samples = collect(collector)
    assert not [s for s in samples if s.label("parent") and s.field in GPM]
    assert sample_value(samples, "accelerator.tensor_active_ratio", {"index": "0"}) is not None
    assert [nv.calls[("nvmlGpmMigSampleGet", 1)]] == [2]  # once per instance, then remembered
    assert not [s for s in samples if s.measurement == "agent"]


def test_gpm_metric_a_card_lacks_is_absent(fleet):
    """NVLink byte rates on a Hopper card: absent where the fake says the metric fails."""
    node = node_of(fleet, gpus=2)
    nv = FakeNvml(node, clock=Clock())
    nv.node.readings_of("nvidia", T)[0].nvlink_tx_bytes_per_s = None  # this card: no NVLink
    samples = collect(NvmlCollector(node.labels, nv, gpm_warmup_s=0))
    assert sample_value(samples, "accelerator.nvlink_transmit_bytes_per_second",
                        {"index": "0"}) is None
    assert sample_value(samples, "accelerator.tensor_active_ratio", {"index": "0"}) is not None


def test_lost_gpu_frees_its_gpm_samples(fleet):
    node = node_of(fleet, gpus=2)
    nv = FakeNvml(node, clock=Clock())
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    collect(collector)
    node.lose(1)
    samples = collect(collector)
    assert sample_value(samples, "accelerator.health", {"index": "1"}) == 0
    assert sample_value(samples, "accelerator.tensor_active_ratio", {"index": "1"}) is None
    collector.close()
    assert nv.calls[("nvmlGpmSampleFree", None)] == 4  # two buffers per GPU, none leaked


# --- memory, media engines, NVLink, retired pages -----------------------------------------

def test_memory_v2_splits_the_reservation_out(fleet):
    node = node_of(fleet)
    samples = collect(NvmlCollector(node.labels, FakeNvml(node, clock=Clock()),
                                    gpm_warmup_s=0))
    for r in readings(node):
        want = {"index": str(r.index)}
        used = sample_value(samples, "accelerator.memory_used_bytes", want)
        reserved = sample_value(samples, "accelerator.memory_reserved_bytes", want)
        free = sample_value(samples, "accelerator.memory_free_bytes", want)
        assert (used, reserved) == (r.memory_used_bytes, r.memory_reserved_bytes)
        assert free == r.memory_total_bytes - r.memory_used_bytes - r.memory_reserved_bytes
        assert used + reserved + free == sample_value(samples, "accelerator.memory_total_bytes",
                                                      want)


def test_driver_without_memory_v2_falls_back_to_v1(fleet):
    node = node_of(fleet, gpus=2)
    nv = FakeNvml(node, clock=Clock(), errors={
        (None, "nvmlDeviceGetMemoryInfo_v2"): pynvml.NVML_ERROR_FUNCTION_NOT_FOUND})
    nv.nvmlDeviceGetMemoryInfo = _v1_only(nv.nvmlDeviceGetMemoryInfo)
    samples = collect(NvmlCollector(node.labels, nv, gpm_warmup_s=0))
    r = readings(node)[0]
    assert sample_value(samples, "accelerator.memory_used_bytes", {"index": "0"}) == \
        r.memory_used_bytes + r.memory_reserved_bytes  # v1: used = total - free
    assert sample_value(samples, "accelerator.memory_reserved_bytes", {"index": "0"}) is None
    assert not [s for s in samples if s.measurement == "agent"]


def _v1_only(memory_info):
    def call(handle, version=None):
        if version:  # a driver before 510: pynvml finds no nvmlDeviceGetMemoryInfo_v2
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return memory_info(handle)
    return call


def test_encoder_and_decoder_utilization(fleet):
    node = node_of(fleet)
    samples = collect(NvmlCollector(node.labels, FakeNvml(node, clock=Clock()),
                                    gpm_warmup_s=0))
    busy = [r for r in readings(node) if r.decoder_utilization > 0]
    assert busy
    for r in readings(node):
        want = {"index": str(r.index)}
        assert sample_value(samples, "accelerator.encoder_utilization_ratio", want) == \
            pytest.approx(r.encoder_utilization)
        assert sample_value(samples, "accelerator.decoder_utilization_ratio", want) == \
            pytest.approx(r.decoder_utilization)


def test_nvlink_throughput_is_the_counter_difference_over_the_driver_timestamps(fleet):
    node = node_of(fleet, gpus=2)
    clock = Clock()
    collector = NvmlCollector(node.labels, FakeNvml(node, clock=clock), gpm_warmup_s=0)
    first = collect(collector)
    assert sample_value(first, "accelerator.nvlink_data_bytes_per_second") is None  # no rate yet
    clock.t = T + timedelta(seconds=15)
    second = collect(collector)
    for before, after in zip(readings(node, T), readings(node, clock.t), strict=True):
        kib = [(r.nvlink_tx_bytes // 1024) + (r.nvlink_rx_bytes // 1024) for r in (before, after)]
        want = (kib[1] - kib[0]) * 1024 / 15
        got = sample_value(second, "accelerator.nvlink_data_bytes_per_second",
                           {"index": str(before.index)})
        assert got == pytest.approx(want) and want > 0


def test_nvlink_fields_are_absent_on_a_pcie_card_and_errors_counted_where_present(fleet):
    l20 = node_of(fleet, "L20", gpus=1)
    samples = collect(NvmlCollector(l20.labels, FakeNvml(l20, clock=Clock()), gpm_warmup_s=0))
    assert not {s.field for s in samples} & {"nvlink_errors_total",
                                             "nvlink_data_bytes_per_second"}
    h100 = node_of(fleet, gpus=1)
    nv = FakeNvml(h100, clock=Clock(), field_values={
        (0, "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL"): 7})
    samples = collect(NvmlCollector(h100.labels, nv, gpm_warmup_s=0))
    errors = {s.label("error_type"): s.value for s in samples
              if s.field == "nvlink_errors_total"}
    assert errors == {"crc_flit": 0, "crc_data": 0, "replay": 7, "recovery": 0}


def test_page_retirement_before_ampere_and_row_remapping_after(fleet):
    volta = node_of(fleet, "V100", gpus=2)
    volta.unhealthy.add(("nvidia", 1))
    samples = collect(NvmlCollector(volta.labels, FakeNvml(volta, clock=Clock()),
                                    gpm_warmup_s=0))
    retired = {(s.label("index"), s.label("error_type")): s.value for s in samples
               if s.field == "retired_pages_total"}
    assert retired == {("0", "single_bit"): 0, ("0", "double_bit"): 0,
                       ("1", "single_bit"): 0, ("1", "double_bit"): 1}
    assert sample_value(samples, "accelerator.retired_pages_pending", {"index": "1"}) == 0
    assert not {s.field for s in samples} & {"remapped_rows", "row_remap_failed"}
    hopper = node_of(fleet, gpus=2)
    hopper.unhealthy.add(("nvidia", 1))
    samples = collect(NvmlCollector(hopper.labels, FakeNvml(hopper, clock=Clock()),
                                    gpm_warmup_s=0))
    assert {s.label("index"): s.value for s in samples if s.field == "row_remap_failed"} == {
        "0": 0, "1": 1}
    assert "retired_pages_total" not in {s.field for s in samples}


# --- XID: DCGM's "last XID" next to our counters ------------------------------------------

def test_last_xid_is_zero_until_one_and_then_the_latest_code(fleet):
    node = node_of(fleet, gpus=2)
    nv = FakeNvml(node, clock=Clock())
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    samples = collect(collector)
    assert {s.label("index"): s.value for s in samples if s.field == "last_xid"} == {
        "0": 0, "1": 0}
    nv.xid(1, 79)
    nv.xid(1, 48)
    samples = collect(collector)
    assert {s.label("index"): s.value for s in samples if s.field == "last_xid"} == {
        "0": 0, "1": 48}
    samples = collect(collector)  # no new event: the last code stays (DCGM's gauge)
    assert sample_value(samples, "accelerator.last_xid", {"index": "1"}) == 48
    nv_off = FakeNvml(node, clock=Clock(), unsupported={"nvmlEventSetCreate"})
    samples = collect(NvmlCollector(node.labels, nv_off, gpm_warmup_s=0))
    assert "last_xid" not in {s.field for s in samples}  # no events: absent, not 0


# --- processes ----------------------------------------------------------------------------

def test_processes_top_n_per_device_plus_the_count(fleet):
    node = node_of(fleet, gpus=2)
    procs = [(1000 + k, f"job{k}", (k + 1) * 2**30) for k in range(8)]
    procs.append((2000, "wddm", None))  # memory not available: counted, not listed
    nv = FakeNvml(node, clock=Clock(), processes={0: procs, 1: []})
    collector = NvmlCollector(node.labels, nv, top_processes=3, gpm_warmup_s=0)
    for _ in range(2):
        samples = collect(collector)
    assert sample_value(samples, "accelerator.processes", {"index": "0"}) == 9
    assert sample_value(samples, "accelerator.processes", {"index": "1"}) == 0
    listed = [(s.label("pid"), s.label("process_name"), s.value) for s in samples
              if s.name == "accelerator_process.memory_used_bytes"]
    assert listed == [("1007", "job7", 8 * 2**30), ("1006", "job6", 7 * 2**30),
                      ("1005", "job5", 6 * 2**30)]
    assert nv.calls[("nvmlSystemGetProcessName", None)] == 3  # names cached while they run


def test_processes_of_the_simulated_node_and_their_names(fleet):
    node = node_of(fleet)
    samples = collect(NvmlCollector(node.labels, FakeNvml(node, clock=Clock()),
                                    gpm_warmup_s=0))
    for r in readings(node):
        want = {"index": str(r.index)}
        assert sample_value(samples, "accelerator.processes", want) == len(r.processes)
        for pid, name, used in r.processes:
            assert sample_value(samples, "accelerator_process.memory_used_bytes",
                                {**want, "pid": str(pid), "process_name": name}) == used


def test_processes_of_a_mig_gpu_count_on_their_instance(fleet):
    node = node_of(fleet, gpus=2)
    nv = FakeNvml(node, clock=Clock(), mig={1: 2}, processes={1: [(77, "infer", 2**30)]})
    samples = collect(NvmlCollector(node.labels, nv, gpm_warmup_s=0))
    # The fake runs a MIG GPU's processes in its first instance (GPU instance id 1 for 3g).
    counts = {s.label("index"): s.value for s in samples if s.field == "processes"}
    assert counts["1:0"] == 1 and counts["1:1"] == 0 and counts["1"] == 0
    assert sample_value(samples, "accelerator_process.memory_used_bytes",
                        {"index": "1:0", "pid": "77"}) == 2**30


# --- honest status ------------------------------------------------------------------------

def test_error_counters_stay_in_the_agent_output_while_nvml_is_down(fleet):
    node = node_of(fleet, gpus=2)
    nv = FakeNvml(node, clock=Clock(),
                  errors={(0, "nvmlDeviceGetPowerUsage"): pynvml.NVML_ERROR_NO_PERMISSION})
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    agent = Agent([Scheduled(collector, 1, 5)], [], node.labels)
    try:
        first = agent.run_once()
        for kind in ("absent", "parse_error", "timeout", "error"):  # from the first cycle, at 0
            assert sample_value(first, "agent.collector_errors_total",
                                {"collector": "nvml", "error_type": kind}) == 0, kind
        assert sample_value(first, "agent.collector_errors_total",
                            {"error_type": "nvml_no_permission"}) == 1
        nv.errors[(None, "nvmlDeviceGetCount")] = pynvml.NVML_ERROR_UNINITIALIZED
        with pytest.raises(DriverAbsent):
            collector.collect()
        down = agent.run_once()
        assert sample_value(down, "agent.collector_up", {"collector": "nvml"}) == 0
        assert sample_value(down, "agent.collector_errors_total",
                            {"error_type": "nvml_no_permission"}) == 1  # still there
        assert sample_value(down, "agent.collector_errors_total",
                            {"collector": "nvml", "error_type": "absent"}) == 1
        assert not [s for s in down if s.measurement == "accelerator"]
    finally:
        agent.close()
