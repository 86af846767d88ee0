"""Fuzzing every config loader and every parser: no exception but the documented ones.

Each test runs a fixed, derandomized Hypothesis budget (`fuzzing.FUZZ_EXAMPLES` examples;
``CW_FUZZ_EXAMPLES=N`` searches longer by hand). Two kinds of input: arbitrary text or bytes,
and real documents (the shipped configs, the recorded npu-smi outputs and Redfish mockups, a
real Alertmanager payload) with one part replaced by something hostile (NaN, infinities,
huge and negative numbers, control characters, lone surrogates, wrong types, deep nesting).

The documented error of each entry point:

- config loaders (topology, policy, node, bridge, SNMP profile, Modbus map): `ConfigError`;
- npu-smi parsers: `ParseError`; the Ascend and NVML collectors: `CollectorError` (its
  `DriverAbsent` and `ParseError` included), never anything else: one broken value is counted;
- SNMP values, Redfish documents: none (a value that is not a reading is reported as such);
- Modbus registers: `decode_registers` none for well-formed words; converting a reading:
  the collector's `Failure`;
- line protocol: none (what it cannot carry is refused and counted); store and write URLs:
  `StoreError` / ValueError; durations, addresses, periods: ValueError;
- webhook payloads: `PayloadError`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzzing import fuzz, label_text
from hypothesis import given
from hypothesis import strategies as st

from computewatch.collectors import CollectorError, ParseError
from computewatch.config import ConfigError, load_yaml_model_from_text
from computewatch.samples import Sample

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# --- hostile values and documents ---------------------------------------------------------------

_hostile_scalars = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64 + 1, 10**30, -(10**30)]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e999", "0x10", "1_000", "15s", "0ms",
                     "99999999999999d", "[/x]", "${HOME}", "../../etc/passwd", "127.0.0.1:99999",
                     "victoriametrics://127.0.0.1:notaport", "prometheus://[::1", "\x00",
                     "\u202e", "a\nb", "#comment", "-", "NA"]),
    label_text,
)
hostile = st.recursive(_hostile_scalars,
                       lambda inner: st.one_of(st.lists(inner, max_size=4),
                                               st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4)),
                       max_leaves=12)
"""A value as hostile as a hand-edited file or a broken device can make it."""


def _replace(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with one of its values replaced by a hostile one (or a key dropped).

    The value is found by walking down from the root, stopping at each level with even odds,
    so top-level fields are hit as often as deep ones.
    """
    path: tuple = ()
    node = doc
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node, key=str) if isinstance(node, dict)
                                   else range(len(node))))
        path, node = (*path, key), node[key]
    if path and isinstance(_at(doc, path[:-1]), dict) and draw(st.integers(0, 3)) == 0:
        out = copy.deepcopy(doc)
        del _at(out, path[:-1])[path[-1]]
        return out
    return _replace(doc, path, draw(hostile))


def _at(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _dump(doc: Any) -> str:
    """YAML for ``doc``; a value YAML cannot write (a lone surrogate) goes in as JSON text."""
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, UnicodeError):
        return json.dumps(doc, ensure_ascii=True)


# --- config loaders ------------------------------------------------------------------------------

def _loaders() -> list[tuple[str, type, Path, dict]]:
    from computewatch.alerts.bridge.config import BridgeConfig
    from computewatch.collectors.config import NodeConfig
    from computewatch.collectors.modbus import RegisterMap
    from computewatch.collectors.snmp import SnmpProfile
    from computewatch.policy import Policy
    from computewatch.topology import Topology, load_topology

    topo = load_topology(None)
    return [
        ("topology", Topology, REPO / "computewatch/data/topology.yaml", {}),
        ("policy", Policy, REPO / "computewatch/data/policy.yaml", {"topology": topo}),
        ("node", NodeConfig, REPO / "examples/node.yaml", {}),
        ("bridge", BridgeConfig, REPO / "examples/alert-bridge.yaml", {}),
        ("snmp profile", SnmpProfile, REPO / "collectors/snmp/profiles/apc_ups.yaml", {}),
        ("modbus map", RegisterMap, REPO / "collectors/modbus/maps/eastron-sdm630.yaml", {}),
    ]


LOADERS = _loaders()


@pytest.mark.parametrize(("name", "model", "path", "context"), LOADERS,
                         ids=[loader[0] for loader in LOADERS])
def test_config_loaders_refuse_any_text_with_a_config_error(name, model, path, context):
    @fuzz
    @given(text=st.one_of(st.text(max_size=300), label_text,
                          st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
    def check(text: str) -> None:
        try:
            load_yaml_model_from_text(text, model, source_name="fuzz.yaml", context=context)
        except ConfigError as exc:
            assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)

    check()


@pytest.mark.parametrize(("name", "model", "path", "context"), LOADERS,
                         ids=[loader[0] for loader in LOADERS])
def test_config_loaders_refuse_a_hostile_value_with_a_config_error(name, model, path, context):
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))

    @fuzz
    @given(bad=mutated(doc))
    def check(bad: Any) -> None:
        try:
            loaded = load_yaml_model_from_text(_dump(bad), model, source_name="fuzz.yaml",
                                               context=context)
        except ConfigError as exc:
            assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)
            return
        _assert_finite(loaded)

    check()


def _assert_finite(value: Any) -> None:
    """What a loader accepts holds no NaN or infinity anywhere."""
    from pydantic import BaseModel

    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, BaseModel):
        for field in type(value).model_fields:
            _assert_finite(getattr(value, field))
    elif isinstance(value, dict):
        for v in value.values():
            _assert_finite(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _assert_finite(v)


# --- npu-smi --------------------------------------------------------------------------------------

NPU_SMI = sorted((FIXTURES / "ascend").glob("*.txt"))


@st.composite
def _npu_text(draw: st.DrawFn, text_lines: list[str]) -> str:
    """A recorded output with one line replaced, cut, duplicated, truncated or garbled."""
    lines = list(text_lines) or [""]
    at = draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["replace", "cut", "insert", "truncate", "garble"]))
    if how == "replace":
        lines[at] = draw(label_text)
    elif how == "cut":
        del lines[at:]
    elif how == "insert":
        lines.insert(at, lines[at])
    elif how == "truncate":
        lines[at] = lines[at][:draw(st.integers(0, len(lines[at])))]
    else:
        cells = lines[at].split("|")
        k = draw(st.integers(0, len(cells) - 1))
        cells[k] = draw(st.sampled_from(["NA", "-", "", "1e999", "nan", "-5", "x/y",
                                         "60478/ 65536 / 3", "9" * 30, "\x00"]))
        lines[at] = "|".join(cells)
    return "\n".join(lines)


@pytest.mark.parametrize("fixture", NPU_SMI, ids=[p.name for p in NPU_SMI])
def test_npu_smi_parsers_raise_only_parse_error(fixture):
    from computewatch.collectors.ascend import parse_info_table, parse_key_values, parse_mapping

    lines = fixture.read_text(encoding="utf-8").splitlines()
    parser = parse_mapping if fixture.stem.endswith("_mapping") else parse_info_table

    @fuzz
    @given(text=st.one_of(_npu_text(lines), st.text(max_size=200)))
    def check(text: str) -> None:
        for parse in (parser, lambda t: parse_key_values(t, "npu-smi info -t board"),
                      lambda t: parse_info_table(t, errors=[])):
            with contextlib.suppress(ParseError):
                parse(text)

    check()


def test_the_ascend_collector_counts_what_it_cannot_read():
    from computewatch.collectors.ascend import AscendCollector
    from computewatch.sim.fake_npusmi import FakeNpuSmi
    from computewatch.sim.node import MIXED, simulated_node

    fake = FakeNpuSmi(simulated_node(MIXED, seed=0))
    real: dict[tuple[str, ...], str] = {}

    def recorded(argv: list[str], timeout: float) -> str:
        key = tuple(argv)
        if key not in real:
            real[key] = fake(argv, timeout)
        return real[key]

    AscendCollector({"node": "n1"}, run=recorded).collect()  # learn the calls a cycle makes

    @fuzz
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        # Drawn here, before the collector runs: its detail calls run on worker threads,
        # where Hypothesis cannot draw.
        garbled = {key: data.draw(st.one_of(st.none(), _npu_text(text.splitlines())))
                   for key, text in sorted(real.items())}

        def run(argv: list[str], timeout: float) -> str:
            text = garbled.get(tuple(argv))
            return recorded(argv, timeout) if text is None else text

        collector = AscendCollector({"node": "n1"}, run=run)
        try:
            samples = collector.collect()
        except CollectorError:
            return
        assert all(isinstance(s, Sample) for s in samples)

    check()


# --- NVML values ---------------------------------------------------------------------------------

def test_the_nvml_collector_survives_any_value_the_driver_returns():
    import pynvml

    from computewatch.collectors.nvml import NvmlCollector
    from computewatch.sim.fake_nvml import FakeNvml
    from computewatch.sim.node import MIXED, simulated_node

    node = simulated_node(MIXED, seed=0)
    codes = [pynvml.NVML_ERROR_UNKNOWN, pynvml.NVML_ERROR_NOT_SUPPORTED,
             pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_NO_PERMISSION,
             pynvml.NVML_ERROR_TIMEOUT, pynvml.NVML_ERROR_INSUFFICIENT_SIZE, 999]
    uint32 = st.integers(0, 2**32 - 1)
    uint64 = st.integers(0, 2**64 - 1)
    text = st.one_of(label_text, st.binary(max_size=40))

    @fuzz
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        def draw(strategy: st.SearchStrategy[Any], name: str) -> Any:
            if data.draw(st.integers(0, 9), label=f"fail {name}") == 0:
                raise pynvml.NVMLError(data.draw(st.sampled_from(codes)))
            return data.draw(strategy, label=name)

        class Hostile(FakeNvml):
            def nvmlSystemGetDriverVersion(self):
                return draw(text, "driver")

            def nvmlDeviceGetName(self, handle):
                return draw(text, "name")

            def nvmlDeviceGetUUID(self, handle):
                return draw(text, "uuid")

            def nvmlDeviceGetPowerUsage(self, handle):
                return draw(uint32, "power")

            def nvmlDeviceGetTotalEnergyConsumption(self, handle):
                return draw(uint64, "energy")

            def nvmlDeviceGetTemperature(self, handle, sensor):
                return draw(uint32, "temperature")

            def nvmlDeviceGetClockInfo(self, handle, type):
                return draw(uint32, "clock")

            def nvmlDeviceGetPcieReplayCounter(self, handle):
                return draw(uint32, "replays")

            def nvmlDeviceGetUtilizationRates(self, handle):
                util = super().nvmlDeviceGetUtilizationRates(handle)
                util.gpu, util.memory = draw(uint32, "util"), draw(uint32, "mem util")
                return util

            def nvmlDeviceGetMemoryInfo(self, handle, version=None):
                mem = super().nvmlDeviceGetMemoryInfo(handle, version)
                mem.used, mem.total = draw(uint64, "used"), draw(uint64, "total")
                return mem

            def nvmlDeviceGetTotalEccErrors(self, handle, errorType, counterType):
                return draw(uint64, "ecc")

        collector = NvmlCollector({"node": "n1"}, nvml=Hostile(node))
        try:
            for _ in range(2):  # the second run goes through what the first remembered
                samples = collector.collect()
                assert all(isinstance(s, Sample) and isinstance(s.value, float)
                           for s in samples)
                assert all(isinstance(v, str) for s in samples for _, v in s.labels)
        except CollectorError:
            pass
        finally:
            collector.close()

    check()


# --- SNMP values ---------------------------------------------------------------------------------

def test_snmp_values_are_numbers_or_problems():
    from pysnmp.proto import rfc1902, rfc1905

    from computewatch.collectors.snmp._values import as_number

    values = st.one_of(
        st.none(),
        st.integers(-(2**31), 2**31 - 1).map(rfc1902.Integer32),
        st.integers(0, 2**32 - 1).map(rfc1902.Counter32),
        st.integers(0, 2**32 - 1).map(rfc1902.Gauge32),
        st.integers(0, 2**64 - 1).map(rfc1902.Counter64),
        st.integers(0, 2**32 - 1).map(rfc1902.TimeTicks),
        st.binary(max_size=40).map(rfc1902.OctetString),
        st.sampled_from([b"nan", b"inf", b"-1", b"1e999", b"12.5\x00", b" 42 "])
        .map(rfc1902.OctetString),
        st.sampled_from([rfc1905.NoSuchObject(""), rfc1905.NoSuchInstance(""),
                         rfc1905.EndOfMibView(""), rfc1902.IpAddress("10.0.0.1"),
                         rfc1902.ObjectIdentifier("1.3.6.1")]),
    )

    @fuzz
    @given(value=values)
    def check(value: Any) -> None:
        number, problem = as_number(value, "upsOutputPower")
        assert (number is None) != (problem is None)
        if number is not None:
            assert math.isfinite(number) and number >= 0

    check()


# --- Redfish documents ---------------------------------------------------------------------------

def _redfish_docs() -> list[Path]:
    """Recorded Redfish documents of each kind the readers take: two of each."""
    every = sorted((FIXTURES / "redfish").rglob("index.json"))
    out = []
    for kind in ("/Power/", "/Thermal/", "/EnvironmentMetrics/", "/Sensors/"):
        out += [p for p in every if kind in str(p) and "Sensors/index" not in str(p)][:2]
    return out


REDFISH_DOCS = _redfish_docs()


@pytest.mark.parametrize("fixture", REDFISH_DOCS,
                         ids=[str(p.relative_to(FIXTURES)) for p in REDFISH_DOCS])
def test_redfish_documents_are_read_or_ignored(fixture):
    from computewatch.collectors.redfish import (
        environment_readings,
        legacy_psu_input_watts,
        power_control_watts,
        sensor_reading,
    )

    doc = json.loads(fixture.read_text(encoding="utf-8"))
    json_values = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), label_text),
        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                st.dictionaries(label_text, inner, max_size=4)),
        max_leaves=10)

    @fuzz
    @given(bad=st.one_of(mutated(doc), json_values))
    def check(bad: Any) -> None:
        uri = "/redfish/v1/Chassis/1/Power"
        if not isinstance(bad, dict):
            bad = {"Value": bad}
        for read in (environment_readings, sensor_reading, power_control_watts,
                     legacy_psu_input_watts):
            read(uri, bad)

    check()


@pytest.mark.parametrize("doc", [
    {"PhysicalContext": "Chassis", "Reading": 10, "ReadingType": []},  # unhashable type
    {"PhysicalContext": "Chassis", "Reading": 10, "ReadingType": {"a": 1}},
    {"PowerControl": 5},  # not iterable
    {"PowerControl": [{"PhysicalContext": [], "PowerConsumedWatts": 10}]},
    {"PowerSupplies": 3},
])
def test_redfish_shapes_the_fuzz_found(doc):
    """Documents that raised TypeError before (found by the fuzz above)."""
    from computewatch.collectors.redfish import (
        legacy_psu_input_watts,
        power_control_watts,
        sensor_reading,
    )

    for read in (sensor_reading, power_control_watts, legacy_psu_input_watts):
        read("/redfish/v1/Chassis/1/Power", doc)


# --- Modbus registers ----------------------------------------------------------------------------

def test_modbus_registers_decode_and_convert_or_fail_as_documented():
    from computewatch.collectors.modbus import (
        ModbusMeter,
        decode_registers,
        load_register_map,
        shipped_maps,
    )
    from computewatch.collectors.modbus._collector import ModbusCollector
    from computewatch.collectors.modbus._state import Failure

    meters = [ModbusMeter(meter=f"m{i}", map=name, host="127.0.0.1", port=1502 + i,
                          scope="facility")
              for i, name in enumerate(shipped_maps())]
    collector = ModbusCollector({"node": "n1", "site": "s1"}, meters)
    states = [m for ep in collector._endpoints for m in ep.meters]
    registers = [(state, name, reg) for state in states
                 for name, reg in load_register_map(state.spec.map).registers.items()]

    @fuzz
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        state, name, reg = data.draw(st.sampled_from(registers))
        words = data.draw(st.lists(st.integers(0, 65535), min_size=reg.words,
                                   max_size=reg.words))
        decode_registers(words, reg.type, reg.word_order, reg.byte_order)
        try:
            value = collector._convert(state, name, reg, words)
        except Failure as exc:
            assert exc.error_type == "modbus_bad_value"
            return
        assert math.isfinite(value) and value >= 0

    try:
        check()
    finally:
        collector.close()


# --- line protocol, URLs, durations, addresses, periods -----------------------------------

samples = st.builds(
    Sample,
    measurement=st.sampled_from(["accelerator", "facility_power", "m", "#x", "_x", ""])
    | label_text,
    field=st.sampled_from(["power_watts", "joules_total", "v"]) | label_text,
    value=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70),
    labels=st.dictionaries(st.sampled_from(["site", "node", "model", "", "_x", "a b"])
                           | label_text, label_text, max_size=5)
    .map(lambda d: tuple(sorted(d.items()))),
    time=st.datetimes(timezones=st.just(UTC)),
)


@fuzz
@given(batch=st.lists(samples, max_size=12), precision=st.sampled_from(["ns", "us", "ms", "s"]))
def test_line_protocol_encodes_or_refuses_any_sample(batch, precision):
    from computewatch.lineprotocol import encode_samples

    enc = encode_samples(batch, precision)
    text = enc.payload.decode("utf-8")  # always valid UTF-8
    assert text.count("\n") == enc.lines
    assert all(not line.startswith("#") for line in text.splitlines())
    assert enc.skipped == sum(not math.isfinite(s.value) for s in batch)


@fuzz
@given(url=st.one_of(label_text, st.text(max_size=80),
                     st.sampled_from(["victoriametrics", "influxdb", "prometheus", "http",
                                      "duckdb", "kafka"]).flatmap(
                         lambda s: st.text(max_size=60).map(lambda rest: f"{s}://{rest}"))))
def test_store_and_write_urls_parse_or_say_why(url):
    from computewatch.lineprotocol import (
        check_write_url,
        parse_influx_url,
        parse_prometheus_url,
        parse_vm_url,
        parse_write_url,
    )
    from computewatch.redact import redact, redact_url
    from computewatch.store import StoreError

    for parse in (parse_vm_url, parse_influx_url, parse_prometheus_url):
        with contextlib.suppress(StoreError):
            parse(url)
    for parse in (check_write_url, parse_write_url):
        with contextlib.suppress(ValueError):
            parse(url)
    assert isinstance(redact_url(url), str) and isinstance(redact(url), str)


@fuzz
@given(text=st.one_of(label_text, st.text(max_size=40),
                      st.floats(allow_nan=True, allow_infinity=True), st.integers()))
def test_durations_addresses_and_periods_parse_or_say_why(text):
    from computewatch.addresses import parse_listen, split_host_port
    from computewatch.durations import MAX_DURATION_S, MIN_DURATION_S, parse_duration
    from computewatch.reports import parse_period

    try:
        seconds = parse_duration(text)
        assert MIN_DURATION_S <= seconds <= MAX_DURATION_S
    except ValueError:
        pass
    if isinstance(text, str):
        for parse in (parse_listen, split_host_port):
            try:
                _, port = parse(text)
                assert port is None or 0 <= port <= 65535
            except ValueError:
                pass
        try:
            period = parse_period(text, last_sample_end=datetime(2026, 1, 1, tzinfo=UTC))
            assert period.end > period.start
            assert period.end - period.start <= timedelta(days=366 * 300)
        except ValueError:
            pass


# --- webhook payloads -----------------------------------------------------------------------

PAYLOAD = {
    "version": "4", "groupKey": '{}:{alertname="SiteUnderused"}', "truncatedAlerts": 0,
    "status": "firing", "receiver": "noc", "groupLabels": {"alertname": "SiteUnderused"},
    "commonLabels": {"alertname": "SiteUnderused", "severity": "warning"},
    "commonAnnotations": {"summary": "bj-ai below its minimum"},
    "externalURL": "http://alertmanager:9093",
    "alerts": [{"status": "firing", "labels": {"alertname": "SiteUnderused", "site": "bj-ai"},
                "annotations": {"summary": "bj-ai at 21%"},
                "startsAt": "2026-10-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph", "fingerprint": "abc123"}],
}


@fuzz
@given(body=st.one_of(mutated(PAYLOAD).map(lambda d: json.dumps(d).encode()),
                      st.binary(max_size=200),
                      label_text.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_webhook_payloads_parse_or_raise_payload_error(body):
    from computewatch.alerts.bridge.payload import PayloadError, parse_notification

    with contextlib.suppress(PayloadError):
        parse_notification(body)
