"""The NVML collector against a fake NVML at the pynvml function boundary, and real pynvml."""

from __future__ import annotations

import ctypes
import sys
from datetime import UTC, datetime, timedelta

import pynvml
import pytest
from docstring_metrics import documented_fields, readme_metrics

import computewatch.collectors.nvml as nvml_module
from computewatch import catalog
from computewatch.collectors import CollectorError, DriverAbsent
from computewatch.collectors.nvml import EMITTED, THROTTLE_REASONS, NvmlCollector
from computewatch.samples import Sample, sample_value
from computewatch.sim import build_fleet
from computewatch.sim.fake_nvml import FakeNvml, marketing_name
from computewatch.sim.node import NodeSim, mixed_node
from computewatch.topology import load_topology
from computewatch.validation import check_sample

T = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in China on a Monday: busy and idle GPUs
GPM_RATIOS_AND_RATES = ("graphics_active_ratio", "sm_active_ratio", "tensor_active_ratio",
                        "dram_active_ratio", "pcie_transmit_bytes_per_second",
                        "pcie_receive_bytes_per_second", "nvlink_transmit_bytes_per_second",
                        "nvlink_receive_bytes_per_second")
GPUS = 8


@pytest.fixture(scope="module")
def fleet():
    return build_fleet(load_topology())


@pytest.fixture
def node(fleet) -> NodeSim:
    return mixed_node(fleet)


def fake(node: NodeSim, **kw) -> FakeNvml:
    return FakeNvml(node, clock=lambda: T, **kw)


def collect(collector: NvmlCollector) -> list[Sample]:
    """One run and the collector's own counters (which the agent adds every cycle); every
    sample must be one the catalogue accepts."""
    samples = collector.collect() + collector.self_samples(datetime.now(UTC))
    for s in samples:
        check_sample(s)
    return samples


def of(samples: list[Sample], index: str) -> list[Sample]:
    return [s for s in samples if s.label("index") == index]


def health_series(samples: list[Sample]) -> dict[str, float]:
    return {s.label("index"): s.value for s in samples if s.name == "accelerator.health"}


# --- a healthy node -----------------------------------------------------------------------

def test_every_field_equals_the_reading_in_si_units(node):
    samples = collect(NvmlCollector(node.labels, fake(node), gpm_warmup_s=0))
    readings = [r for r in node.readings(T) if r.vendor == "nvidia"]
    assert {r.utilization > 0.2 for r in readings} == {True, False}  # both kinds covered
    for r in readings:
        want = {"device": r.uuid, "index": str(r.index)}
        expected = {
            "accelerator.utilization_ratio": r.utilization,
            "accelerator.memory_utilization_ratio": r.memory_utilization,
            "accelerator.memory_used_bytes": r.memory_used_bytes,
            "accelerator.memory_total_bytes": r.memory_total_bytes,
            "accelerator.power_watts": r.power_w,
            "accelerator.energy_joules_total": r.energy_j,
            "accelerator.temperature_celsius": r.temperature_c,
            "accelerator.memory_temperature_celsius": r.memory_temperature_c,
            "accelerator.sm_clock_hertz": r.sm_clock_hz,
            "accelerator.memory_clock_hertz": r.memory_clock_hz,
            "accelerator.pcie_replays_total": 0.0,
            "accelerator.health": 1.0,
        }
        for name, value in expected.items():
            assert sample_value(samples, name, want) == pytest.approx(value), (r.index, name)
        for error_type in ("corrected", "uncorrected"):
            assert sample_value(samples, "accelerator.ecc_errors_total",
                                {**want, "error_type": error_type}) == 0
        for error_type in ("correctable", "uncorrectable"):
            assert sample_value(samples, "accelerator.remapped_rows",
                                {**want, "error_type": error_type}) == 0
        idle = sample_value(samples, "accelerator.throttled", {**want, "reason": "gpu_idle"})
        assert idle == (1.0 if r.utilization <= 0.2 else 0.0)


def test_labels_name_the_gpu_and_its_place(node):
    samples = collect(NvmlCollector(node.labels, fake(node), gpm_warmup_s=0))
    r = next(r for r in node.readings(T) if r.vendor == "nvidia" and r.index == 5)
    labels = dict(next(s for s in of(samples, "5") if s.name == "accelerator.health").labels)
    assert labels == {"vendor": "nvidia", "ecosystem": "cuda", "model": "NVIDIA H100 80GB HBM3",
                      "device": r.uuid, "index": "5", "pci_bus_id": r.pci_bus_id,
                      "driver_version": node.driver_version, "node": node.node,
                      "site": node.site, "hub": node.labels["hub"]}  # empty cluster left out
    assert marketing_name(r.model) == labels["model"]


def test_one_series_per_gpu_and_none_for_the_npus(node):
    samples = collect(NvmlCollector(node.labels, fake(node), gpm_warmup_s=0))
    assert health_series(samples) == {str(i): 1.0 for i in range(GPUS)}
    assert {s.label("vendor") for s in samples if s.measurement == "accelerator"} == {"nvidia"}
    assert len({s.label("device") for s in samples if s.measurement == "accelerator"}) == GPUS


def test_throttled_has_every_documented_reason(node):
    samples = collect(NvmlCollector(node.labels, fake(node), gpm_warmup_s=0))
    reasons = {s.label("reason") for s in of(samples, "0") if s.name == "accelerator.throttled"}
    assert reasons == {name for name, _ in THROTTLE_REASONS}


# --- a GPU that fails ---------------------------------------------------------------------

def test_lost_gpu_reports_health_zero_and_the_others_are_unaffected(node):
    node.lose(3)
    samples = collect(NvmlCollector(node.labels, fake(node), gpm_warmup_s=0))
    health = health_series(samples)
    assert len(health) == GPUS
    assert health == {str(i): 0.0 if i == 3 else 1.0 for i in range(GPUS)}
    assert [s.name for s in of(samples, "3")] == ["accelerator.health"]
    assert of(samples, "3")[0].label("device") == "nvidia3"  # lost before its UUID was read
    for i in set(range(GPUS)) - {3}:
        assert sample_value(samples, "accelerator.power_watts", {"index": str(i)}) is not None
    assert not [s for s in samples if s.measurement == "agent"]  # lost is health, not an error


def test_gpu_lost_later_keeps_its_series(node):
    collector = NvmlCollector(node.labels, fake(node), gpm_warmup_s=0)
    uuid = of(collect(collector), "3")[0].label("device")
    node.lose(3)
    samples = collect(collector)
    assert sample_value(samples, "accelerator.health", {"device": uuid}) == 0
    assert len(health_series(samples)) == GPUS


def test_unhealthy_gpu_reports_health_zero_with_its_readings(node):
    node.unhealthy.add(("nvidia", 2))
    samples = collect(NvmlCollector(node.labels, fake(node), gpm_warmup_s=0))
    assert health_series(samples)["2"] == 0 and health_series(samples)["1"] == 1
    want = {"index": "2"}
    assert sample_value(samples, "accelerator.ecc_errors_total",
                        {**want, "error_type": "uncorrected"}) == 1
    assert sample_value(samples, "accelerator.remapped_rows",
                        {**want, "error_type": "uncorrectable"}) == 1
    assert sample_value(samples, "accelerator.power_watts", want) is not None


@pytest.mark.parametrize(("unsupported", "function", "metric", "index"), [
    ((2, "nvmlDeviceGetPowerUsage"), "nvmlDeviceGetPowerUsage", "accelerator.power_watts", 2),
    ("NVML_FI_DEV_MEMORY_TEMP", "NVML_FI_DEV_MEMORY_TEMP",  # the field, in a batched call
     "accelerator.memory_temperature_celsius", None),
])
def test_unsupported_field_is_absent_and_not_asked_again(node, unsupported, function, metric,
                                                         index):
    nv = fake(node, unsupported={unsupported})
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    for _ in range(3):
        samples = collect(collector)
    gone = [index] if index is not None else list(range(GPUS))
    for i in range(GPUS):
        value = sample_value(samples, metric, {"index": str(i)})
        assert (value is None) == (i in gone), i  # absent, not zero
        assert nv.calls[(function, i)] == (1 if i in gone else 3)
    assert not [s for s in samples if s.measurement == "agent"]


def test_other_nvml_errors_leave_the_field_out_and_are_counted(node):
    nv = fake(node, errors={(4, "nvmlDeviceGetTemperatureV"): pynvml.NVML_ERROR_NO_PERMISSION})
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    collect(collector)
    samples = collect(collector)
    assert sample_value(samples, "accelerator.temperature_celsius", {"index": "4"}) is None
    assert sample_value(samples, "accelerator.temperature_celsius", {"index": "5"}) is not None
    assert health_series(samples)["4"] == 1
    errors = [s for s in samples if s.name == "agent.collector_errors_total"]
    assert len(errors) == 1
    assert dict(errors[0].labels) == {**{k: v for k, v in node.labels.items() if v},
                                      "collector": "nvml", "error_type": "nvml_no_permission"}
    assert errors[0].value == 2  # a counter: asked again every run, counted every time


def test_a_driver_older_than_the_binding_falls_back(node):
    """Clock event reasons arrived with driver 535; older ones answer FUNCTION_NOT_FOUND."""
    newer = "nvmlDeviceGetCurrentClocksEventReasons"
    nv = fake(node, errors={(None, newer): pynvml.NVML_ERROR_FUNCTION_NOT_FOUND})
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    collect(collector)
    samples = collect(collector)
    assert sample_value(samples, "accelerator.throttled", {"index": "0"}) is not None
    assert nv.calls[(newer, 0)] == 1 and sum(n for (f, _), n in nv.calls.items() if f == newer) == 1
    assert nv.calls[("nvmlDeviceGetCurrentClocksThrottleReasons", 0)] == 2


# --- MIG ----------------------------------------------------------------------------------

def test_mig_devices_are_their_own_series_beside_their_parent(node):
    nv = fake(node, mig={1: 3})
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    collect(collector)
    samples = collect(collector)
    parent = of(samples, "1")
    parent_uuid = parent[0].label("device")
    assert parent_uuid.startswith("GPU-")
    assert sample_value(parent, "accelerator.power_watts") is not None
    assert sample_value(parent, "accelerator.health") == 1
    assert sample_value(parent, "accelerator.utilization_ratio") is None  # N/A while MIG is on
    migs = {s.label("index"): s for s in samples if s.label("parent") == parent_uuid}
    assert sorted(set(migs)) == ["1:0", "1:1", "1:2"]
    mig_devices = {s.label("device") for s in samples if s.label("parent")}
    assert len(mig_devices) == 3 and all(d.startswith("MIG-") for d in mig_devices)
    for j in range(3):
        one = of(samples, f"1:{j}")
        assert {s.name for s in one} - {"accelerator_process.memory_used_bytes"} == {
            "accelerator.memory_used_bytes", "accelerator.memory_total_bytes",
            "accelerator.health",
            # issue 16: the memory split, the processes, and GPM per MIG instance (Hopper)
            "accelerator.memory_free_bytes", "accelerator.memory_reserved_bytes",
            "accelerator.processes", *(f"accelerator.{f}" for f in GPM_RATIOS_AND_RATES)}
        assert 0 < sample_value(one, "accelerator.memory_total_bytes") < sample_value(
            parent, "accelerator.memory_total_bytes")
        assert " MIG " in one[0].label("model")
        assert nv.calls[("nvmlDeviceGetUtilizationRates", f"1:{j}")] == 1  # not asked again
    assert sample_value(samples, "accelerator.utilization_ratio", {"index": "0"}) is not None
    assert not [s for s in samples if s.measurement == "agent"]  # empty slots are no error


def test_mig_mode_change_asks_again(node):
    nv = fake(node, mig={1: 2})
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    collect(collector)
    nv.mig.clear()
    samples = collect(collector)
    assert sample_value(samples, "accelerator.utilization_ratio", {"index": "1"}) is not None
    assert not [s for s in samples if s.label("parent")]


# --- XID events ---------------------------------------------------------------------------

def test_xid_counters_per_code_accumulate_across_runs(node):
    nv = fake(node, xid_events=[(0, 79)])
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    samples = collect(collector)
    uuid = of(samples, "0")[0].label("device")
    assert sample_value(samples, "accelerator.xid_errors_total", {"device": uuid,
                                                                  "xid": "79"}) == 1
    nv.xid(0, 79)
    nv.xid(0, 48)
    nv.xid(6, 13)
    for _ in range(2):  # the second run sees no new event: counters hold, never reset
        samples = collect(collector)
        xids = {(s.label("index"), s.label("xid")): s.value for s in samples
                if s.name == "accelerator.xid_errors_total"}
        assert xids == {("0", "79"): 2, ("0", "48"): 1, ("6", "13"): 1}
    assert health_series(samples)["0"] == 1


def test_xid_without_event_support_is_skipped_silently(node):
    nv = fake(node, unsupported={"nvmlEventSetCreate"}, xid_events=[(0, 79)])
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    collect(collector)
    samples = collect(collector)
    assert not [s for s in samples if s.name == "accelerator.xid_errors_total"]
    assert not [s for s in samples if s.measurement == "agent"]
    assert nv.calls[("nvmlEventSetCreate", None)] == 1
    assert not any(f == "nvmlDeviceRegisterEvents" for f, _ in nv.calls)


def test_xid_on_a_gpu_without_event_support(node):
    nv = fake(node, unsupported={(2, "nvmlDeviceRegisterEvents")},
              xid_events=[(2, 79), (3, 79)])
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    collect(collector)
    samples = collect(collector)
    xids = {s.label("index"): s.value for s in samples
            if s.name == "accelerator.xid_errors_total"}
    assert xids == {"3": 1}
    assert nv.calls[("nvmlDeviceRegisterEvents", 2)] == 1
    assert not [s for s in samples if s.measurement == "agent"]


# --- no driver, and a driver that comes and goes ------------------------------------------

def test_no_driver_is_driver_absent_until_it_appears(node):
    nv = fake(node, driver_missing=True)
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    for _ in range(2):
        with pytest.raises(DriverAbsent, match=r"no NVIDIA driver.*libnvidia-ml\.so\.1"):
            collector.collect()
    nv.driver_missing = False
    samples = collect(collector)
    assert health_series(samples) == {str(i): 1.0 for i in range(GPUS)}
    assert nv.calls[("nvmlInit", None)] == 3


def test_driver_not_loaded_is_absent_and_other_init_errors_are_errors(node):
    nv = fake(node, errors={(None, "nvmlInit"): pynvml.NVML_ERROR_DRIVER_NOT_LOADED})
    with pytest.raises(DriverAbsent, match="kernel driver is not loaded"):
        NvmlCollector(node.labels, nv, gpm_warmup_s=0).collect()
    nv = fake(node, errors={(None, "nvmlInit"): pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH})
    with pytest.raises(CollectorError, match="nvmlInit failed") as info:
        NvmlCollector(node.labels, nv, gpm_warmup_s=0).collect()
    assert not isinstance(info.value, DriverAbsent)


def test_driver_that_goes_away_is_initialised_again(node):
    nv = fake(node)
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    collect(collector)
    nv.errors[(None, "nvmlDeviceGetCount")] = pynvml.NVML_ERROR_UNINITIALIZED
    with pytest.raises(DriverAbsent, match="went away"):
        collector.collect()
    del nv.errors[(None, "nvmlDeviceGetCount")]
    assert len(health_series(collect(collector))) == GPUS
    assert nv.calls[("nvmlInit", None)] == 2


def test_close_shuts_nvml_down_and_a_later_run_starts_it_again(node):
    nv = fake(node)
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    collect(collector)
    collector.close()
    assert nv.calls[("nvmlShutdown", None)] == 1 and nv.calls[("nvmlEventSetFree", None)] == 1
    assert len(health_series(collect(collector))) == GPUS


def test_pynvml_not_installed_is_driver_absent(node, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    with pytest.raises(DriverAbsent, match="nvidia-ml-py"):
        NvmlCollector(node.labels).collect()


# --- old bindings -------------------------------------------------------------------------

def test_bytes_from_old_bindings_read_as_str(node):
    new = collect(NvmlCollector(node.labels, fake(node), gpm_warmup_s=0))
    old_nv = fake(node, legacy=True)
    old = collect(NvmlCollector(node.labels, old_nv, gpm_warmup_s=0))
    assert all(isinstance(v, str) for s in old for _, v in s.labels)
    assert {(s.name, s.labels, s.value) for s in old} == {(s.name, s.labels, s.value)
                                                          for s in new}
    assert old_nv.calls[("nvmlDeviceGetCurrentClocksThrottleReasons", 0)] == 1
    assert old_nv.calls[("nvmlDeviceGetTemperature", 0)] == 1


def test_fake_returns_what_pynvml_returns(node):
    nv = fake(node)
    nv.nvmlInit()
    handle = nv.nvmlDeviceGetHandleByIndex(0)
    assert isinstance(handle, pynvml.c_nvmlDevice_t)
    assert isinstance(nv.nvmlDeviceGetUtilizationRates(handle), pynvml.c_nvmlUtilization_t)
    assert isinstance(nv.nvmlDeviceGetMemoryInfo(handle), pynvml.c_nvmlMemory_t)
    assert isinstance(nv.nvmlDeviceGetPciInfo(handle), pynvml.nvmlPciInfo_t)
    old = fake(node, legacy=True)
    old.nvmlInit()
    assert isinstance(old.nvmlDeviceGetName(old.nvmlDeviceGetHandleByIndex(0)), bytes)
    assert not hasattr(old, "nvmlDeviceGetCurrentClocksEventReasons")
    node.lose(1)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        nv.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(AttributeError, match="does not implement"):
        nv.nvmlDeviceGetFanSpeed  # noqa: B018 (a real function the fake must not reach)
    assert nv.NVML_ERROR_NOT_SUPPORTED == pynvml.NVML_ERROR_NOT_SUPPORTED


# --- the real pynvml module ---------------------------------------------------------------

def _nvml_library_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_real_pynvml_on_this_machine(node):
    """Against the real library: no driver -> a clean DriverAbsent, run after run; with a
    driver (a GPU machine) -> valid samples. Exactly one branch runs on any machine."""
    collector = NvmlCollector(node.labels)
    if not _nvml_library_present():
        for _ in range(2):
            with pytest.raises(DriverAbsent,
                               match=r"no NVIDIA driver.*libnvidia-ml\.so\.1") as info:
                collector.collect()
            assert "retrying on the next run" in str(info.value)
        return
    try:
        samples = collect(collector)
    except DriverAbsent:
        return  # the library without a loaded kernel driver: absent is the right answer
    finally:
        collector.close()
    assert all(v == 1.0 or v == 0.0 for v in health_series(samples).values())
    for sample in samples:
        check_sample(sample)



def test_docstring_metrics_table_matches_the_catalogue():
    doc = readme_metrics(nvml_module)
    documented = {f"accelerator.{f}" for f in documented_fields(doc, "accelerator")}
    documented |= {f"agent.{f}" for f in documented_fields(doc, "agent")}
    documented |= {f"accelerator_process.{f}"
                   for f in documented_fields(doc, "accelerator_process")}
    assert documented == set(EMITTED)
    for name in EMITTED:
        catalog.metric(name)  # raises for a name the catalogue does not declare
    assert [m.name for m in NvmlCollector({}).describe()] == list(EMITTED)


def test_emitted_metrics_are_all_documented(node, fleet):
    nv = fake(node, mig={1: 2}, xid_events=[(0, 79)],
              errors={(4, "nvmlDeviceGetPowerUsage"): pynvml.NVML_ERROR_UNKNOWN})
    collector = NvmlCollector(node.labels, nv, gpm_warmup_s=0)
    samples = collect(collector)
    nv._clock = lambda: T + timedelta(seconds=15)  # NVLink throughput needs a second run
    samples += collect(collector)
    volta = mixed_node(fleet, gpus=1, npus=0, gpu_model="V100")  # page retirement
    samples += collect(NvmlCollector(volta.labels, fake(volta), gpm_warmup_s=0))
    assert {s.name for s in samples} == set(EMITTED)
