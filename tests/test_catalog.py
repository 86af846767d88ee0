"""The metric catalogue's own rules, its compatibility names, and validation against it."""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from computewatch import catalog
from computewatch.catalog import CATALOG, UNITS, Kind, UnknownMetricError
from computewatch.samples import Sample, sample_value
from computewatch.validation import (
    InvalidSampleError,
    Rejections,
    check_sample,
    filter_samples,
    validate_frame,
)

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference" / "metric-names.md"
COMPAT_REFERENCE = REFERENCE.with_name("exporter-compat.md")
DCGM_FIELDS_H = {"DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_NVLINK_TX_BYTES",
                 "DCGM_FI_PROF_NVLINK_RX_BYTES"}
"""DCGM profiling names the references do not list, typed in from DCGM's dcgm_fields.h
(NVIDIA/DCGM 4.6.0, 72fa3fe), where they are the GPM-backed SM activity and NVLink rates."""
T0 = datetime(2026, 5, 9, 8, 0, tzinfo=UTC)
GPU = {"hub": "京津冀", "site": "bj-1", "node": "n1", "device": "nvidia0", "vendor": "nvidia"}
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


# --- the table's own rules ----------------------------------------------------------------

def test_every_unit_is_declared() -> None:
    assert {m.unit for m in CATALOG} <= set(UNITS)
    assert all(UNITS[code].code == code for code in UNITS)


def test_names_are_snake_case_and_unique() -> None:
    names = [m.prometheus for m in CATALOG]
    bad = [n for n in names if not SNAKE.match(n)]
    assert bad == []
    assert len(names) == len(set(names))
    assert len({m.name for m in CATALOG}) == len(CATALOG)
    assert all(SNAKE.match(m.measurement) and SNAKE.match(m.field) for m in CATALOG)
    assert catalog.metric("accelerator.power_watts").prometheus == "accelerator_power_watts"


@pytest.mark.parametrize("m", CATALOG, ids=lambda m: m.name)
def test_prometheus_name_ends_with_unit_suffix(m: catalog.Metric) -> None:
    suffix = UNITS[m.unit].prometheus_suffix
    name = m.prometheus
    if m.histogram:  # exposed as the parts of one histogram family, named by Prometheus' rule
        assert name in {f"{m.histogram}_{part}" for part in ("bucket", "count", "sum")}, name
        assert m.histogram.endswith("_seconds") and m.kind is Kind.COUNTER
        return
    if m.kind is Kind.COUNTER:
        assert name.endswith("_total"), name
        name = name.removesuffix("_total")
    else:
        assert not name.endswith("_total"), f"{name}: only counters end in _total"
    if suffix:
        assert name.endswith(f"_{suffix}"), f"{m.prometheus} should end with _{suffix}"


def test_counters_are_energy_or_counts() -> None:
    counters = {m.name: m.unit for m in CATALOG if m.kind is Kind.COUNTER and not m.histogram}
    assert set(counters.values()) <= {"J", "{count}", "s"}
    # Time spent is a counter only for the device commands a collector runs (their mean).
    assert {n for n, u in counters.items() if u == "s"} == {"agent.command_seconds_total"}
    # A histogram's _sum adds up its observations (seconds); its other parts are counts.
    sums = {m.name: m.unit for m in CATALOG if m.histogram and m.field.endswith("_sum")}
    assert sums == {"link_latency.rtt_seconds_sum": "s"}
    assert counters["accelerator.energy_joules_total"] == "J"
    assert counters["facility_power.joules_total"] == "J"
    assert counters["computewatch.samples_rejected_total"] == "{count}"


def test_labels_are_snake_case_and_not_duplicated() -> None:
    for m in CATALOG:
        assert len(m.labels) == len(set(m.labels)), m.name
        assert all(SNAKE.match(lab) for lab in m.labels), m.name


REQUIRED: dict[str, dict[str, tuple[str, Kind]]] = {
    "accelerator": {
        "utilization_ratio": ("1", Kind.GAUGE),
        "memory_used_bytes": ("By", Kind.GAUGE),
        "memory_total_bytes": ("By", Kind.GAUGE),
        "power_watts": ("W", Kind.GAUGE),
        "energy_joules_total": ("J", Kind.COUNTER),
        "temperature_celsius": ("Cel", Kind.GAUGE),
        "sm_clock_hertz": ("Hz", Kind.GAUGE),
        "memory_clock_hertz": ("Hz", Kind.GAUGE),
        "health": ("{state}", Kind.GAUGE),
        "xid_errors_total": ("{count}", Kind.COUNTER),
        "ecc_errors_total": ("{count}", Kind.COUNTER),
        "pcie_replays_total": ("{count}", Kind.COUNTER),
    },
    "facility_power": {
        "watts": ("W", Kind.GAUGE),
        "joules_total": ("J", Kind.COUNTER),
    },
    "pue": {"energy_ratio": ("{factor}", Kind.GAUGE)},
    "link_latency": {
        "rtt_min_seconds": ("s", Kind.GAUGE),
        "rtt_p50_seconds": ("s", Kind.GAUGE),
        "rtt_p95_seconds": ("s", Kind.GAUGE),
        "rtt_p99_seconds": ("s", Kind.GAUGE),
        "rtt_max_seconds": ("s", Kind.GAUGE),
        "loss_ratio": ("1", Kind.GAUGE),
        "jitter_seconds": ("s", Kind.GAUGE),
        "samples": ("{count}", Kind.GAUGE),
    },
    "finding": {
        "severity": ("{state}", Kind.GAUGE),
        "observed": ("{value}", Kind.GAUGE),
        "threshold": ("{value}", Kind.GAUGE),
    },
}


@pytest.mark.parametrize("meas", sorted(REQUIRED))
def test_required_measurements_and_fields(meas: str) -> None:
    spec = catalog.measurement(meas)
    for field, (unit, kind) in REQUIRED[meas].items():
        m = spec.metric(field)
        assert (m.unit, m.kind) == (unit, kind), m.name


def test_required_labels() -> None:
    acc = catalog.measurement("accelerator")
    assert {"vendor", "model", "ecosystem", "site", "node", "device"} <= set(acc.labels)
    for field in ("watts", "joules_total"):
        assert "scope" in catalog.metric(f"facility_power.{field}").labels
    assert {"site", "window"} <= set(catalog.measurement("pue").labels)
    assert {"src_site", "dst_site", "tier"} <= set(catalog.measurement("link_latency").labels)
    assert "xid" in catalog.metric("accelerator.xid_errors_total").labels


def test_valid_ranges() -> None:
    assert catalog.metric("accelerator.utilization_ratio").valid_range == (0.0, 1.0)
    assert catalog.metric("accelerator.health").valid_range == (0.0, 1.0)
    assert catalog.metric("pue.energy_ratio").valid_range == (1.0, math.inf)
    assert catalog.metric("accelerator.temperature_celsius").valid_range == (-273.15, math.inf)
    assert catalog.metric("finding.severity").valid_range == (0.0, 2.0)


def test_unknown_names_are_refused_precisely() -> None:
    with pytest.raises(UnknownMetricError, match=r"unknown field 'nope' of measurement "
                                                 r"'accelerator' \(known: utilization_ratio,"):
        catalog.metric("accelerator.nope")
    with pytest.raises(UnknownMetricError, match=r"unknown measurement 'gpu'"):
        catalog.metric("gpu.power_watts")
    with pytest.raises(UnknownMetricError, match=r"expected 'measurement.field'"):
        catalog.metric("pue")


# --- OpenTelemetry and compatibility names, checked against the reference -------------------

def _reference() -> str:
    return REFERENCE.read_text(encoding="utf-8")  # missing: FileNotFoundError names the path


def _section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _backticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def _npu_names(section: str) -> set[str]:
    """npu-exporter names, expanding the reference's ``_hbm_total_memory`` shorthand."""
    names: set[str] = set()
    last = ""
    for tok in _backticked(section):
        if tok.startswith("npu_"):
            names.add(tok)
            last = tok
        elif tok.startswith("_") and last:
            stem = tok.split("_")[1]  # `_hbm_total_memory` after `npu_chip_info_hbm_used_memory`
            names.add(last[: last.index(f"_{stem}")] + tok)
    return names


def test_reference_parser_expands_shorthand() -> None:
    names = _npu_names("`npu_chip_info_hbm_used_memory` and `_hbm_total_memory` (MB), "
                       "`_hbm_utilization`, `machine_npu_nums`")
    assert names == {"npu_chip_info_hbm_used_memory", "npu_chip_info_hbm_total_memory",
                     "npu_chip_info_hbm_utilization"}


def _dcgm_table_names() -> set[str]:
    """The names in exporter-compat.md's DCGM table (first column, comma-separated)."""
    section = _section(COMPAT_REFERENCE.read_text(encoding="utf-8"), "DCGM-exporter")
    return {n for row in re.findall(r"^\| (DCGM_FI_[^|]+)\|", section, re.M)
            for n in re.split(r",\s*", row.strip())}


def test_dcgm_names_are_in_reference() -> None:
    known = {n for n in _backticked(_section(_reference(), "NVIDIA DCGM-Exporter"))
             if n.startswith("DCGM_FI_")}  # not its label names
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in known
    known |= _dcgm_table_names() | DCGM_FIELDS_H
    declared = {m.dcgm for m in CATALOG if m.dcgm}
    declared |= {p.name for m in CATALOG for p in m.compat_parts if p.exporter == "dcgm"}
    assert declared, "the catalogue declares no DCGM names"
    assert sorted(declared - known) == []


def test_every_dcgm_default_counter_is_declared() -> None:
    """Each name of the reference's DCGM table is a catalogued metric (or part of one), but
    the driver-version label and vGPU licence status (a vGPU guest's; bare metal has none)."""
    table = _dcgm_table_names()
    assert len(table) == 26, sorted(table)
    declared = {m.dcgm for m in CATALOG if m.dcgm}
    declared |= {p.name for m in CATALOG for p in m.compat_parts if p.exporter == "dcgm"}
    assert sorted(table - declared) == ["DCGM_FI_DEV_VGPU_LICENSE_STATUS",
                                        "DCGM_FI_DRIVER_VERSION"]


def test_npu_exporter_names_are_in_reference() -> None:
    known = _npu_names(_section(_reference(), "Huawei Ascend npu-exporter"))
    known |= _npu_names(_section(COMPAT_REFERENCE.read_text(encoding="utf-8"),
                                 "npu-exporter"))  # the fuller list
    assert "npu_chip_info_hbm_total_memory" in known
    # exporter-compat.md lists every name npu-exporter can emit.
    compat = COMPAT_REFERENCE.read_text(encoding="utf-8")
    every = _section(compat, "npu-exporter (collector/metrics/*.go)")
    prefixes = []
    for tok in _backticked(every):
        if not tok.startswith(("npu_", "machine_")):
            continue
        if tok.endswith("*"):  # `npu_chip_info_hbm_ecc_*`
            prefixes.append(tok[:-1])
        elif "|" in tok:  # `npu_chip_info_bandwidth_rx|tx`
            stem, _, alts = tok.rpartition("_")
            known |= {f"{stem}_{alt}" for alt in alts.split("|")}
        elif "{" not in tok:
            known.add(tok)
    assert "npu_chip_info_process_info_num" in known and "npu_chip_info_bandwidth_tx" in known
    declared = {m.npu_exporter for m in CATALOG if m.npu_exporter}
    assert declared
    assert sorted(n for n in declared - known if not n.startswith(tuple(prefixes))) == []


def test_compat_names_are_unique() -> None:
    for attr in ("dcgm", "npu_exporter", "otel"):
        names = [getattr(m, attr) for m in CATALOG if getattr(m, attr)]
        assert len(names) == len(set(names)), attr


# Units the exporters publish, typed in from the reference (and, where it is silent, from
# the exporters' docs: npu-smi reports frequencies in MHz and usage in percent).
COMPAT_UNITS = {
    "DCGM_FI_DEV_GPU_UTIL": "%", "DCGM_FI_DEV_MEM_COPY_UTIL": "%",
    "DCGM_FI_DEV_SM_CLOCK": "MHz", "DCGM_FI_DEV_MEM_CLOCK": "MHz",
    "DCGM_FI_DEV_GPU_TEMP": "Cel", "DCGM_FI_DEV_MEMORY_TEMP": "Cel",
    "DCGM_FI_DEV_POWER_USAGE": "W", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "mJ",
    "DCGM_FI_DEV_FB_USED": "MiB", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "count",
    "npu_chip_info_utilization": "%", "npu_chip_info_vector_utilization": "%",
    "npu_chip_info_hbm_utilization": "%", "npu_chip_info_power": "W",
    "npu_chip_info_temperature": "Cel", "npu_chip_info_aicore_current_freq": "MHz",
    "npu_chip_info_health_status": "state", "npu_chip_info_hbm_used_memory": "MiB",
    "npu_chip_info_hbm_total_memory": "MiB",
    # exporter-compat.md and npu-exporter's help texts: MB, MHz, %, W, V, MB/s, counts.
    "npu_chip_info_hbm_bandwidth_utilization": "%", "npu_chip_info_hbm_temperature": "Cel",
    "npu_chip_info_process_info_num": "count", "npu_chip_info_process_info": "MiB",
    "npu_chip_info_overall_utilization": "%", "npu_chip_info_cube_utilization": "%",
    "npu_chip_info_voltage": "V", "npu_chip_info_error_code": "value",
    "npu_chip_info_hbm_ecc_enable_flag": "state", "npu_chip_info_network_status": "state",
    "npu_chip_info_link_status": "state", "npu_chip_info_bandwidth_tx": "MB/s",
    "npu_chip_info_bandwidth_rx": "MB/s", "npu_chip_info_rx_fcs_num": "count",
    "npu_chip_info_rx_ecn_num": "count",
    # issue 16, from exporter-compat.md's DCGM table (and dcgm_fields.h for the rates)
    "DCGM_FI_DEV_FB_FREE": "MiB", "DCGM_FI_DEV_FB_RESERVED": "MiB",
    "DCGM_FI_DEV_ENC_UTIL": "%", "DCGM_FI_DEV_DEC_UTIL": "%",
    "DCGM_FI_DEV_XID_ERRORS": "state", "DCGM_FI_DEV_ROW_REMAP_FAILURE": "state",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "count",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "count",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "ratio", "DCGM_FI_PROF_SM_ACTIVE": "ratio",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "ratio", "DCGM_FI_PROF_DRAM_ACTIVE": "ratio",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "B/s", "DCGM_FI_PROF_PCIE_RX_BYTES": "B/s",
    "DCGM_FI_PROF_NVLINK_TX_BYTES": "B/s", "DCGM_FI_PROF_NVLINK_RX_BYTES": "B/s",
    # DCGM's NVLink bandwidth total: (KiB difference / seconds) / 1000 (its DcgmCacheManager)
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": "KiB/s/1000",
}
SCALE = {("1", "%"): 100.0, ("Hz", "MHz"): 1e-6, ("By", "MiB"): 2.0**-20, ("J", "mJ"): 1000.0,
         ("W", "W"): 1.0, ("Cel", "Cel"): 1.0, ("{count}", "count"): 1.0,
         ("{state}", "state"): 1.0, ("V", "V"): 1.0, ("{value}", "value"): 1.0,
         ("By/s", "MB/s"): 1e-6, ("1", "ratio"): 1.0, ("By/s", "B/s"): 1.0,
         ("By/s", "KiB/s/1000"): 1 / 1024 / 1000}


@pytest.mark.parametrize("m", [m for m in CATALOG if m.dcgm or m.npu_exporter
                               or m.compat_parts], ids=lambda m: m.name)
def test_compat_scale_converts_to_the_exporters_unit(m: catalog.Metric) -> None:
    for compat in (m.dcgm, m.npu_exporter, *(p.name for p in m.compat_parts)):
        if compat:
            assert m.compat_scale == SCALE[(m.unit, COMPAT_UNITS[compat])], compat


def test_otel_names_follow_hardware_semconv() -> None:
    section = _section(_reference(), "OpenTelemetry hardware semantic conventions")
    metrics_part, _, _ = section.partition("Attributes:")
    known = {n for n in _backticked(metrics_part) if n.startswith("hw.")} - {"hw.gpu.task",
                                                                             "hw.state"}
    declared = {m.otel: m for m in CATALOG if m.otel}
    assert len(declared) >= 10
    assert sorted(set(declared) - known) == []
    # Units and instrument kinds the reference states in parentheses after a name.
    stated = {}
    for names, inside in re.findall(r"((?:`hw\.[a-z.]+`(?:,? and |, )?)+)\s*\(([^)]*)\)",
                                    metrics_part):
        tokens = re.split(r"[\s,;]+", inside)
        unit = next((t for t in tokens if t in {"1", "By", "J", "W", "Cel"}), None)
        kind = Kind.COUNTER if "counter" in tokens else Kind.GAUGE
        for name in _backticked(names):
            stated[name] = (unit, kind)
    assert stated["hw.energy"] == ("J", Kind.COUNTER)
    assert stated["hw.gpu.memory.limit"] == ("By", Kind.GAUGE)  # UpDownCounter: not monotonic
    for name, (unit, kind) in stated.items():
        if name in declared:
            m = declared[name]
            assert m.kind == kind, name
            if unit is not None:
                assert m.unit == unit, name


def test_otel_names_are_dotted_lowercase() -> None:
    for m in CATALOG:
        if m.otel:
            assert re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+", m.otel), m.otel


# --- validation ---------------------------------------------------------------------------

def _s(name: str, value: float, **labels: str) -> Sample:
    return Sample.of(name, value, {**GPU, **labels} if name.startswith("acc") else labels, T0)


@pytest.mark.parametrize(("sample", "reason", "words"), [
    (_s("accelerator.utilization_ratio", 1.7), "out_of_range",
     ["accelerator.utilization_ratio{", "site=bj-1", "1.7 outside [0, 1]"]),
    (_s("accelerator.power_watts", -5.0), "out_of_range",
     ["accelerator.power_watts{", "-5.0 outside [0, inf]"]),
    (_s("accelerator.power_watts", math.nan), "nan", ["accelerator.power_watts{", "NaN"]),
    (_s("accelerator.bogus", 3.5), "unknown_metric",
     ["accelerator.bogus{", "= 3.5", "unknown field 'bogus'"]),
    (_s("gpu.power_watts", 3.5), "unknown_metric",
     ["gpu.power_watts{", "= 3.5", "unknown measurement 'gpu'"]),
    (_s("accelerator.power_watts", 250.0, colour="red"), "unknown_label",
     ["accelerator.power_watts{", "colour=red", "= 250.0", "unknown label 'colour'"]),
    (_s("accelerator.power_watts", "300"), "not_a_number",  # type: ignore[arg-type]
     ["accelerator.power_watts{", "'300'"]),
    (_s("accelerator.health", 2.0), "out_of_range", ["accelerator.health{", "2.0 outside"]),
    (_s("accelerator.temperature_celsius", -300.0), "out_of_range", ["-300.0 outside"]),
    (_s("pue.energy_ratio", 0.9, site="bj-1", window="1h"), "out_of_range", ["0.9 outside"]),
], ids=["util-1.7", "negative-power", "nan-power", "unknown-field", "unknown-measurement",
        "unknown-label", "string-value", "health-2", "below-absolute-zero", "pue-below-1"])
def test_check_sample_refuses(sample: Sample, reason: str, words: list[str]) -> None:
    with pytest.raises(InvalidSampleError) as info:
        check_sample(sample)
    assert info.value.reason == reason
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("sample", [
    _s("accelerator.utilization_ratio", 1.0),
    _s("accelerator.temperature_celsius", -40.0),
    _s("link_latency.rtt_p50_seconds", math.nan, src_site="a", dst_site="b"),  # NaN allowed
    _s("pue.energy_ratio", math.nan, site="bj-1", window="1h"),
    _s("finding.observed", -12.5, rule="r"),
])
def test_check_sample_accepts(sample: Sample) -> None:
    assert check_sample(sample) is sample


def test_filter_samples_keeps_good_and_counts_bad(caplog: pytest.LogCaptureFixture) -> None:
    good = [_s("accelerator.utilization_ratio", 0.5), _s("accelerator.power_watts", 300.0),
            _s("link_latency.rtt_p99_seconds", math.nan, src_site="a", dst_site="b")]
    bad = [_s("accelerator.utilization_ratio", 1.7), _s("accelerator.utilization_ratio", -0.1),
           _s("accelerator.power_watts", -5.0), _s("accelerator.power_watts", math.nan),
           _s("accelerator.bogus", 1.0), _s("accelerator.power_watts", 1.0, colour="red")]
    rejections = Rejections()
    with caplog.at_level(logging.WARNING, logger="computewatch.validation"):
        kept = filter_samples([bad[0], good[0], *bad[1:4], good[1], *bad[4:], good[2]],
                              rejections, "agent")
    assert kept == [good[0], good[1], good[2]]
    assert rejections.counts() == {
        ("agent", "accelerator", "utilization_ratio", "out_of_range"): 2,
        ("agent", "accelerator", "power_watts", "out_of_range"): 1,
        ("agent", "accelerator", "power_watts", "nan"): 1,
        ("agent", "accelerator", "bogus", "unknown_metric"): 1,
        ("agent", "accelerator", "power_watts", "unknown_label"): 1,
    }
    assert rejections.total() == 6
    assert len(caplog.records) == 4  # once per reason per batch
    assert "1.7 outside" in caplog.records[0].getMessage()


def test_validate_frame_nulls_bad_cells_and_counts_exactly() -> None:
    table = pa.table({
        "time": pa.array([T0] * 5, pa.timestamp("us", tz="UTC")),
        "site": ["a", "b", "c", "d", "e"],
        "utilization_ratio": [0.5, 1.7, math.nan, None, 1.0],
        "power_watts": [-1.0, 300.0, math.nan, 250.0, -2.0],
        "temperature_celsius": [20.0, 30.0, 40.0, 50.0, 60.0],
        "bogus": [1.0, None, 2.0, None, None],
    })
    rejections = Rejections()
    out = validate_frame("accelerator", table, rejections, "store")
    assert out.column_names == ["time", "site", "utilization_ratio", "power_watts",
                                "temperature_celsius"]
    assert out.column("utilization_ratio").to_pylist() == [0.5, None, None, None, 1.0]
    assert out.column("power_watts").to_pylist() == [None, 300.0, None, 250.0, None]
    assert out.column("temperature_celsius").to_pylist() == [20.0, 30.0, 40.0, 50.0, 60.0]
    assert rejections.counts() == {
        ("store", "accelerator", "utilization_ratio", "out_of_range"): 1,
        ("store", "accelerator", "utilization_ratio", "nan"): 1,
        ("store", "accelerator", "power_watts", "out_of_range"): 2,
        ("store", "accelerator", "power_watts", "nan"): 1,
        ("store", "accelerator", "bogus", "unknown_metric"): 2,
    }


def test_validate_frame_reads_past_what_null_slots_hold() -> None:
    """A null's slot in the value buffer may hold anything (here NaN and 9.0, masked): the
    nulls stay null, uncounted, the values beside them are kept, and one bad value in a
    frame that is otherwise fine is still caught."""
    ok = pa.array(np.array([0.25, np.nan, 9.0, 0.75]), mask=np.array([False, True, True, False]))
    bad = pa.array(np.array([0.25, np.nan, 1.5]), mask=np.array([False, True, False]))
    table = pa.table({"time": pa.array([T0] * 4, pa.timestamp("us", tz="UTC")),
                      "utilization_ratio": ok})
    rejections = Rejections()
    out = validate_frame("accelerator", table, rejections, "store")
    assert out.column("utilization_ratio").to_pylist() == [0.25, None, None, 0.75]
    assert rejections.counts() == {}
    table = pa.table({"time": pa.array([T0] * 3, pa.timestamp("us", tz="UTC")),
                      "utilization_ratio": bad})
    out = validate_frame("accelerator", table, rejections, "store")
    assert out.column("utilization_ratio").to_pylist() == [0.25, None, None]
    assert rejections.counts() == {("store", "accelerator", "utilization_ratio",
                                    "out_of_range"): 1}


def test_validate_frame_keeps_allowed_nan_and_refuses_text() -> None:
    table = pa.table({
        "time": pa.array([T0] * 3, pa.timestamp("us", tz="UTC")),
        "rtt_p50_seconds": [math.nan, 0.012, -0.5],
        "loss_ratio": ["0.1", "lots", None],
    })
    rejections = Rejections()
    out = validate_frame("link_latency", table, rejections, "store")
    rtt = out.column("rtt_p50_seconds").to_pylist()
    assert math.isnan(rtt[0]) and rtt[1:] == [0.012, None]
    assert out.column("loss_ratio").to_pylist() == [None, None, None]
    assert rejections.counts() == {
        ("store", "link_latency", "rtt_p50_seconds", "out_of_range"): 1,
        ("store", "link_latency", "loss_ratio", "not_a_number"): 2,
    }


def test_validate_frame_unknown_measurement() -> None:
    table = pa.table({"time": pa.array([T0] * 3, pa.timestamp("us", tz="UTC")),
                      "x": [1.0, 2.0, 3.0]})
    rejections = Rejections()
    out = validate_frame("gpu", table, rejections, "store")
    assert out.column_names == ["time"] and out.num_rows == 3
    assert rejections.counts() == {("store", "gpu", "*", "unknown_metric"): 3}


def test_rejections_come_back_as_samples() -> None:
    rejections = Rejections()
    filter_samples([_s("accelerator.utilization_ratio", 1.7),
                    _s("accelerator.utilization_ratio", 2.5),
                    _s("accelerator.power_watts", math.nan)], rejections, "agent")
    samples = rejections.as_samples(T0)
    assert len(samples) == 2
    assert {s.name for s in samples} == {"computewatch.samples_rejected_total"}
    assert all(s.time == T0 for s in samples)
    name = "computewatch.samples_rejected_total"
    assert sample_value(samples, name, {"component": "agent", "field": "utilization_ratio",
                                        "reason": "out_of_range"}) == 2.0
    assert sample_value(samples, name, {"measurement": "accelerator", "field": "power_watts",
                                        "reason": "nan"}) == 1.0
    assert [check_sample(s) for s in samples] == samples  # the counts are valid metrics


def test_infinite_readings_are_refused_even_for_open_ended_units() -> None:
    power = catalog.metric("accelerator.power_watts")
    assert power.check(math.inf) is not None and "finite" in power.check(math.inf)
    assert catalog.metric("finding.observed").check(-math.inf) is not None
    assert power.check(1e12) is None


def test_the_rtt_histogram_named_for_merged_quantiles_is_a_histogram_bucket_counter() -> None:
    """Summary and the Prometheus rollups read quantiles beyond raw data from this field: it
    must be a counter with an ``le`` bound, exposed as part of a Prometheus histogram."""
    meas, field_ = catalog.RTT_HISTOGRAM
    bucket = catalog.metric(f"{meas}.{field_}")
    assert bucket.kind is Kind.COUNTER and "le" in bucket.labels
    assert bucket.histogram == "link_latency_rtt_seconds" and field_.endswith("_bucket")
