"""OTLP export: what a real OTLP/HTTP receiver on loopback decodes, and failures as data."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric

from computewatch.collectors.export._base import Exporter, ExportOutcome
from computewatch.collectors.export.otlp import OtlpExporter, resource_attributes
from computewatch.samples import Sample

T0 = datetime(2026, 5, 9, 7, 35, 25, tzinfo=UTC)
NASTY = '北京 "A", x=1\n'
PLACE = {"node": "gy-n0001", "site": "guiyang-gui-an-1", "cluster": "guian", "hub": "guizhou"}
RESOURCE = resource_attributes(PLACE)

DEVICES = {
    "GPU-0aa1": {"index": "0", "vendor": "nvidia", "model": "NVIDIA H100 80GB HBM3",
                 "ecosystem": "cuda", "pci_bus_id": "00000000:18:00.0",
                 "driver_version": "550.54.15"},
    "GPU-1bb2": {"index": "1", "vendor": "nvidia", "model": "NVIDIA H100 80GB HBM3",
                 "ecosystem": "cuda", "pci_bus_id": "00000000:2A:00.0",
                 "driver_version": "550.54.15"},
    "gy-n0001-npu0": {"index": "0", "vendor": "huawei", "model": "Ascend 910B3",
                      "ecosystem": "cann", "pci_bus_id": "0000:C1:00.0",
                      "driver_version": "24.1.rc2"},
}
READINGS = {  # device -> field -> value
    "GPU-0aa1": {"utilization_ratio": 0.87, "power_watts": 612.5,
                 "energy_joules_total": 1.25e9, "temperature_celsius": 71.0, "health": 1.0,
                 "memory_used_bytes": 6.4e10, "memory_total_bytes": 85899345920.0,
                 "sm_clock_hertz": 1.98e9},
    "GPU-1bb2": {"utilization_ratio": 0.0, "power_watts": 71.25,
                 "energy_joules_total": 3.5e8, "temperature_celsius": 34.0, "health": 0.0,
                 "memory_used_bytes": 0.0, "memory_total_bytes": 85899345920.0,
                 "sm_clock_hertz": 3.45e8},
    "gy-n0001-npu0": {"utilization_ratio": 0.42, "power_watts": 301.0,
                      "energy_joules_total": 9.87654321e8, "temperature_celsius": 55.5,
                      "health": 1.0, "memory_used_bytes": 3.2e10,
                      "memory_total_bytes": 68719476736.0, "sm_clock_hertz": 1.8e9},
}
OTEL_NAMES = {"utilization_ratio": "hw.gpu.utilization", "power_watts": "hw.power",
              "energy_joules_total": "hw.energy", "temperature_celsius": "hw.temperature",
              "memory_used_bytes": "hw.gpu.memory.usage",
              "memory_total_bytes": "hw.gpu.memory.limit",
              "sm_clock_hertz": "computewatch.accelerator.sm_clock_hertz"}


def labels(of: str, **extra: str) -> dict[str, str]:
    """Device ``of``'s labels as a collector gives them; ``extra`` adds or replaces some."""
    return {**PLACE, "device": of, **DEVICES[of], **extra}


def fleet() -> list[Sample]:
    """One node's cycle: 2 GPUs + 1 NPU, plus ECC error counters by type."""
    out = [Sample.of(f"accelerator.{field}", value, labels(device), T0)
           for device, fields in READINGS.items() for field, value in fields.items()]
    out.append(Sample.of("accelerator.ecc_errors_total", 3.0,
                         labels("GPU-0aa1", error_type="corrected"), T0))
    out.append(Sample.of("accelerator.ecc_errors_total", 0.0,
                         labels("GPU-0aa1", error_type="uncorrected"), T0))
    return out


# --- a real OTLP/HTTP receiver ------------------------------------------------------------
class Receiver:
    """Keeps what it was sent; answers ``status`` to every POST /v1/metrics."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.status = 200
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1/metrics"

    def requests(self) -> list[ExportMetricsServiceRequest]:
        return [ExportMetricsServiceRequest.FromString(b) for b in self.bodies]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        receiver: Receiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/metrics":
            status, reply = 404, b"not found"
        else:
            receiver.bodies.append(body)
            receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
            status = receiver.status
            reply = (ExportMetricsServiceResponse().SerializeToString() if status == 200
                     else b"receiver says no")
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or OTEL_* setting of the machine running the tests may change what is sent."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "OTEL_RESOURCE_ATTRIBUTES",
                "OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_COMPRESSION",
                "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Receiver:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Receiver(server)
    server.receiver = rec  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name="otlp-receiver", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    request.addfinalizer(stop)
    return rec


@pytest.fixture
def exporter(receiver: Receiver) -> Iterator[OtlpExporter]:
    exp = OtlpExporter(receiver.url, resource=RESOURCE, timeout_s=5.0)
    yield exp
    exp.close(timeout_s=2.0)


@pytest.fixture
def sent(exporter: OtlpExporter, receiver: Receiver) -> ExportMetricsServiceRequest:
    """The fleet exported once: the one request the receiver decoded."""
    result = exporter.export(fleet())
    assert result.outcome is ExportOutcome.SUCCESS, result.reason
    assert len(receiver.bodies) == 1
    return receiver.requests()[0]


# --- decoding helpers -------------------------------------------------------------------
def value_of(v: AnyValue) -> object:
    return getattr(v, v.WhichOneof("value"))


def attrs(kvs: list[KeyValue]) -> dict[str, object]:
    return {kv.key: value_of(kv.value) for kv in kvs}


def metrics(req: ExportMetricsServiceRequest) -> dict[str, Metric]:
    return {m.name: m for rm in req.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics}


def points(m: Metric) -> list:
    return list(getattr(m, m.WhichOneof("data")).data_points)


def point(m: Metric, **want: str):
    """The one data point whose attributes include ``want`` (keys with _ for .)."""
    want = {k.replace("__", "."): v for k, v in want.items()}
    found = [p for p in points(m) if want.items() <= attrs(p.attributes).items()]
    assert len(found) == 1, (m.name, want, [attrs(p.attributes) for p in points(m)])
    return found[0]


def number(p) -> float:
    return p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)


def by_id(m: Metric, device: str, **want: str):
    return point(m, hw__id=device, **want)


# --- what arrives -----------------------------------------------------------------------
def test_is_an_exporter(exporter):
    assert isinstance(exporter, Exporter)
    assert exporter.name == "otlp"


def test_resource_says_where_the_agent_runs(sent):
    (rm,) = sent.resource_metrics
    res = attrs(rm.resource.attributes)
    assert res["host.name"] == "gy-n0001"
    assert res["computewatch.site"] == "guiyang-gui-an-1"
    assert res["computewatch.cluster"] == "guian"
    assert res["computewatch.hub"] == "guizhou"
    assert res["service.name"] == "computewatch-agent"
    assert [sm.scope.name for sm in rm.scope_metrics] == ["computewatch"]


@pytest.mark.parametrize(("name", "unit", "data"), [
    ("hw.gpu.utilization", "1", "gauge"),
    ("hw.power", "W", "gauge"),
    ("hw.temperature", "Cel", "gauge"),
    ("hw.energy", "J", "sum"),
    ("hw.gpu.memory.usage", "By", "sum"),
    ("hw.gpu.memory.limit", "By", "sum"),
    ("hw.status", "1", "sum"),
    ("hw.errors", "{error}", "sum"),
    ("computewatch.accelerator.sm_clock_hertz", "Hz", "gauge"),
])
def test_instruments_follow_the_hardware_semantic_conventions(sent, name, unit, data):
    m = metrics(sent)[name]
    assert (m.unit, m.WhichOneof("data")) == (unit, data)
    assert m.description  # the catalogue's help


def test_every_sample_is_sent_under_its_name(sent):
    """Nothing silently lost: exactly the expected instruments, one point per sample."""
    got = metrics(sent)
    assert set(got) == {*OTEL_NAMES.values(), "hw.status", "hw.errors"}
    for field, name in OTEL_NAMES.items():
        assert len(points(got[name])) == len(READINGS), field


def test_point_values_equal_the_samples(sent):
    got = metrics(sent)
    for device, fields in READINGS.items():
        for field, name in OTEL_NAMES.items():
            assert number(by_id(got[name], device)) == fields[field], (device, field)


def test_energy_is_the_devices_own_counter_as_a_cumulative_monotonic_sum(sent):
    s = metrics(sent)["hw.energy"].sum
    assert s.is_monotonic
    assert s.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    p = by_id(metrics(sent)["hw.energy"], "GPU-0aa1")
    assert p.as_double == 1.25e9
    assert 0 < p.start_time_unix_nano <= p.time_unix_nano


def test_counters_are_not_re_accumulated_across_exports(exporter, receiver):
    for joules in (1000.0, 1500.0, 1500.0, 2250.0):
        assert exporter.export([Sample.of("accelerator.energy_joules_total", joules,
                                          labels("GPU-0aa1"), T0)]).outcome.name == "SUCCESS"
    sent = [number(by_id(metrics(r)["hw.energy"], "GPU-0aa1")) for r in receiver.requests()]
    assert sent == [1000.0, 1500.0, 1500.0, 2250.0]


def test_counters_stay_cumulative_even_if_the_environment_asks_for_delta(receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    exp = OtlpExporter(receiver.url, resource=RESOURCE, timeout_s=5.0)
    try:
        for joules in (1000.0, 1500.0):
            exp.export([Sample.of("accelerator.energy_joules_total", joules,
                                  labels("GPU-0aa1"), T0)])
    finally:
        exp.close()
    last = metrics(receiver.requests()[-1])["hw.energy"]
    assert last.sum.aggregation_temporality == (
        AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE)
    assert number(by_id(last, "GPU-0aa1")) == 1500.0


def test_a_series_repeated_in_one_batch_is_sent_once_with_the_last_value(exporter, receiver):
    lab = labels("GPU-0aa1")
    exporter.export([Sample.of("accelerator.energy_joules_total", 10.0, lab, T0),
                     Sample.of("accelerator.energy_joules_total", 12.0, lab, T0)])
    assert number(by_id(metrics(receiver.requests()[0])["hw.energy"], "GPU-0aa1")) == 12.0


def test_levels_are_non_monotonic_sums_as_semconv_declares(sent):
    for name in ("hw.gpu.memory.usage", "hw.gpu.memory.limit", "hw.status"):
        s = metrics(sent)[name].sum
        assert not s.is_monotonic, name
        assert s.aggregation_temporality == (
            AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE)


def test_health_becomes_the_hw_status_state_set(sent):
    status = metrics(sent)["hw.status"]
    assert len(points(status)) == 2 * len(READINGS)
    for device, healthy in (("GPU-0aa1", 1.0), ("GPU-1bb2", 0.0), ("gy-n0001-npu0", 1.0)):
        assert number(by_id(status, device, hw__state="ok")) == healthy
        assert number(by_id(status, device, hw__state="failed")) == 1.0 - healthy


def test_errors_carry_error_type(sent):
    errors = metrics(sent)["hw.errors"]
    assert errors.sum.is_monotonic
    assert number(by_id(errors, "GPU-0aa1", error__type="corrected")) == 3.0
    assert number(by_id(errors, "GPU-0aa1", error__type="uncorrected")) == 0.0


def test_points_identify_the_device(sent):
    got = metrics(sent)
    gpu = attrs(by_id(got["hw.gpu.utilization"], "GPU-1bb2").attributes)
    assert gpu == {
        "hw.id": "GPU-1bb2", "hw.type": "gpu", "hw.vendor": "nvidia",
        "hw.model": "NVIDIA H100 80GB HBM3", "hw.driver_version": "550.54.15",
        "hw.gpu.task": "general", "computewatch.index": "1", "computewatch.ecosystem": "cuda",
        "computewatch.pci_bus_id": "00000000:2A:00.0",
    }  # placement labels are on the resource, not repeated
    npu = attrs(by_id(got["hw.power"], "gy-n0001-npu0").attributes)
    assert (npu["hw.type"], npu["hw.vendor"], npu["hw.model"]) == ("gpu", "huawei",
                                                                  "Ascend 910B3")
    assert npu["computewatch.ecosystem"] == "cann"
    assert "hw.gpu.task" not in npu


def test_encoder_and_decoder_are_gpu_utilization_tasks(exporter, receiver):
    lab = labels("GPU-0aa1")
    exporter.export([Sample.of("accelerator.utilization_ratio", 0.87, lab, T0),
                     Sample.of("accelerator.encoder_utilization_ratio", 0.05, lab, T0),
                     Sample.of("accelerator.decoder_utilization_ratio", 0.25, lab, T0),
                     Sample.of("accelerator.tensor_active_ratio", 0.5, lab, T0)])
    got = metrics(receiver.requests()[0])
    util = got["hw.gpu.utilization"]
    assert number(by_id(util, "GPU-0aa1", hw__gpu__task="general")) == 0.87
    assert number(by_id(util, "GPU-0aa1", hw__gpu__task="encoder")) == 0.05
    assert number(by_id(util, "GPU-0aa1", hw__gpu__task="decoder")) == 0.25
    assert util.unit == "1" and len(points(util)) == 3
    tensor = got["computewatch.accelerator.tensor_active_ratio"]  # no semconv name: ours
    assert number(by_id(tensor, "GPU-0aa1")) == 0.5


def test_mig_instance_names_its_parent_and_foreign_placement_is_kept(exporter, receiver):
    lab = labels("GPU-0aa1", device="MIG-7f3e", parent="GPU-0aa1", node="gy-n0002", cluster="")
    exporter.export([Sample.of("accelerator.utilization_ratio", 0.5, lab, T0)])
    p = attrs(points(metrics(receiver.requests()[0])["hw.gpu.utilization"])[0].attributes)
    assert (p["hw.id"], p["hw.parent"]) == ("MIG-7f3e", "GPU-0aa1")
    assert p["computewatch.node"] == "gy-n0002"  # differs from the resource's host.name
    assert "computewatch.cluster" not in p and "computewatch.site" not in p


@pytest.mark.parametrize("text", [NASTY, 'quote"d', "back\\slash", "ends in backslash\\",
                                  "new\nline", "a=b,c d", "tab\there", "数据中心-贵阳 ✓"])
def test_awkward_label_values_round_trip_exactly(exporter, receiver, text):
    lab = labels("GPU-0aa1", device=text, model=text, ecosystem=text)
    exporter.export([Sample.of("accelerator.power_watts", 300.0, lab, T0)])
    p = attrs(points(metrics(receiver.requests()[0])["hw.power"])[0].attributes)
    assert (p["hw.id"], p["hw.model"], p["computewatch.ecosystem"]) == (text, text, text)


def test_awkward_resource_values_round_trip(receiver):
    exp = OtlpExporter(receiver.url, resource=resource_attributes({**PLACE, "site": NASTY}))
    try:
        exp.export(fleet())
    finally:
        exp.close()
    (rm,) = receiver.requests()[0].resource_metrics
    assert attrs(rm.resource.attributes)["computewatch.site"] == NASTY


def test_a_vanished_device_is_not_resent_with_stale_values(exporter, receiver):
    exporter.export(fleet())
    exporter.export([s for s in fleet() if s.label("device") != "GPU-1bb2"])
    second = metrics(receiver.requests()[1])
    for name in ("hw.power", "hw.energy", "hw.status", "hw.gpu.memory.usage"):
        assert "GPU-1bb2" not in {attrs(p.attributes)["hw.id"] for p in points(second[name])}


def test_metrics_outside_the_catalogue_semconv_still_go_out(exporter, receiver):
    agent = {**PLACE, "collector": "nvml"}
    res = exporter.export([
        Sample.of("agent.collector_duration_seconds", 0.125, agent, T0),
        Sample.of("agent.samples_collected_total", 42.0, agent, T0),
        Sample.of("link_latency.rtt_p95_seconds", 0.0123,
                  {"src_site": "guiyang-gui-an-1", "dst_site": NASTY, "tier": "1"}, T0),
    ])
    assert (res.outcome, res.exported) == (ExportOutcome.SUCCESS, 3)
    got = metrics(receiver.requests()[0])
    dur = got["computewatch.agent.collector_duration_seconds"]
    assert (dur.unit, number(points(dur)[0])) == ("s", 0.125)
    assert attrs(points(dur)[0].attributes) == {"computewatch.collector": "nvml"}
    total = got["computewatch.agent.samples_collected_total"]
    assert total.sum.is_monotonic and number(points(total)[0]) == 42.0
    rtt = attrs(points(got["computewatch.link_latency.rtt_p95_seconds"])[0].attributes)
    assert rtt["computewatch.dst_site"] == NASTY


def test_headers_reach_the_receiver(receiver):
    exp = OtlpExporter(receiver.url, resource=RESOURCE, headers={"Authorization": "Bearer t0k"})
    try:
        assert exp.export(fleet()).outcome is ExportOutcome.SUCCESS
    finally:
        exp.close()
    assert receiver.headers[0]["authorization"] == "Bearer t0k"
    assert receiver.headers[0]["content-type"] == "application/x-protobuf"


def test_an_empty_batch_sends_nothing(exporter, receiver):
    res = exporter.export([])
    assert (res.outcome, res.exported) == (ExportOutcome.SUCCESS, 0)
    assert receiver.bodies == []


def test_a_sample_that_cannot_be_an_instrument_is_counted_not_hidden(exporter, receiver):
    res = exporter.export([*fleet()[:3], Sample.of("bad name.x y", 1.0, {}, T0)])
    assert (res.outcome, res.exported, res.dropped) == (ExportOutcome.SUCCESS, 3, 1)
    assert "bad name.x y" in res.reason
    assert len(receiver.bodies) == 1


# --- failures are data, never exceptions ------------------------------------------------
def test_http_500_is_a_failure_with_a_reason(exporter, receiver):
    receiver.status = 500
    batch = fleet()
    res = exporter.export(batch)
    assert res.outcome is ExportOutcome.FAILURE
    assert (res.exported, res.dropped) == (0, len(batch))
    assert "500" in res.reason


def test_failures_are_logged_once_per_episode(exporter, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.status = 500
    for _ in range(3):
        assert exporter.export(fleet()).outcome is ExportOutcome.FAILURE
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "500" in warnings[0].getMessage()
    receiver.status = 200
    assert exporter.export(fleet()).outcome is ExportOutcome.SUCCESS
    assert any("recovered after 3" in r.getMessage() for r in caplog.records)
    receiver.status = 500
    exporter.export(fleet())  # a new episode is reported again
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_server_is_a_quick_failure_not_an_exception():
    exp = OtlpExporter(f"http://127.0.0.1:{free_port()}/v1/metrics", resource=RESOURCE,
                       timeout_s=0.5)
    try:
        started = time.monotonic()
        res = exp.export(fleet())
        elapsed = time.monotonic() - started
    finally:
        exp.close(timeout_s=1.0)
    assert res.outcome is ExportOutcome.FAILURE
    assert res.dropped == len(fleet())
    assert "refused" in res.reason.lower() or "connect" in res.reason.lower(), res.reason
    assert elapsed < 3.0


def test_after_close_export_fails_and_close_is_idempotent(receiver):
    exp = OtlpExporter(receiver.url, resource=RESOURCE)
    assert exp.flush(1.0)
    exp.close(1.0)
    exp.close(1.0)
    res = exp.export(fleet())
    assert res.outcome is ExportOutcome.FAILURE and res.reason == "exporter closed"
    assert receiver.bodies == []


def test_agent_with_otlp_enabled_pushes_the_simulated_node(receiver):
    """The node config's otlp section, through the agent, to a receiver: the whole path."""
    from computewatch.collectors.config import NodeConfig
    from computewatch.collectors.setup import build_agent, build_exporters
    from computewatch.sim.node import simulated_node

    node = simulated_node()
    cfg = NodeConfig.model_validate({"exports": {"prometheus": {"enabled": False},
                                                 "otlp": {"enabled": True,
                                                          "endpoint": receiver.url}}})
    agent = build_agent(cfg, simulate=node,
                        exporters=build_exporters(cfg, labels=node.labels))
    try:
        agent.run_once()
    finally:
        agent.close()
    reqs = receiver.requests()
    assert len(reqs) >= 2  # one per collector run, plus the agent's own
    resource = attrs(reqs[0].resource_metrics[0].resource.attributes)
    assert resource["host.name"] == node.node and resource["computewatch.site"] == "bj-ai"
    util = [p for r in reqs for m in metrics(r).values() if m.name == "hw.gpu.utilization"
            for p in points(m)]
    general = [p for p in util if attrs(p.attributes).get("hw.gpu.task", "general") == "general"]
    vendors = [attrs(p.attributes)["hw.vendor"] for p in general]
    assert vendors.count("nvidia") == 8 and vendors.count("huawei") == 8
    tasks = [attrs(p.attributes).get("hw.gpu.task") for p in util]  # NVENC/NVDEC (issue 16)
    assert tasks.count("encoder") == 8 and tasks.count("decoder") == 8
