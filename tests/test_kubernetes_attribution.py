"""Workload attribution: a real kubelet PodResources gRPC server on a unix socket, the agent
with simulated drivers (fake NVML with MIG, fake npu-smi) against it, and the pod labels
checked where users read them: the Prometheus exposition (with the DCGM and npu-exporter
names), OTLP as a real receiver decodes it, and line protocol. Then the kubelet going away
and coming back, a kubelet that hangs, and the cgroup fallback on the fake /proc in
tests/fixtures/proc.

Expected values come from outside the code under test: device UUIDs and GPU instance ids
are asked of the fake driver, the holders are the ones the fake kubelet was given, Ascend
physical ids are the fake npu-smi's (physical id = position on the node), and the pod UIDs
are read by hand from the fixture files (tests/fixtures/proc/README.md).
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from computewatch.collectors.agent import Agent, Scheduled
from computewatch.collectors.ascend import AscendCollector
from computewatch.collectors.config import NodeConfig
from computewatch.collectors.export.otlp import OtlpExporter
from computewatch.collectors.export.prometheus import exposition
from computewatch.collectors.kubernetes import (
    PodAttribution,
    PodResourcesClient,
    holding_keys,
    parse_cgroup,
    pod_of_pid,
)
from computewatch.collectors.kubernetes import _podresources_pb2 as pb
from computewatch.collectors.kubernetes import _podresources_pb2_grpc as pb_grpc
from computewatch.collectors.nvml import NvmlCollector
from computewatch.collectors.setup import build_agent
from computewatch.lineprotocol import encode_samples
from computewatch.samples import Sample, sample_value
from computewatch.sim.fake_hccn import FakeHccnTool
from computewatch.sim.fake_npusmi import FakeNpuSmi
from computewatch.sim.fake_nvml import FakeNvml
from computewatch.sim.node import simulated_node

PROC = Path(__file__).parent / "fixtures" / "proc"
GIB = 2**30


# --- a real kubelet PodResources server ----------------------------------------------------
class Lister(pb_grpc.PodResourcesListerServicer):
    """Answers List with ``pods``: [(namespace, pod, [(container, [(resource, [ids])])])]."""

    def __init__(self, pods: list, delay_s: float = 0.0) -> None:
        self.pods = pods
        self.delay_s = delay_s
        self.calls = 0

    def List(self, request, context):
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return pb.ListPodResourcesResponse(pod_resources=[
            pb.PodResources(namespace=ns, name=name, containers=[
                pb.ContainerResources(name=ctr, devices=[
                    pb.ContainerDevices(resource_name=res, device_ids=ids)
                    for res, ids in devices])
                for ctr, devices in containers])
            for ns, name, containers in self.pods])


class Kubelet:
    """The PodResources service on a unix socket; `stop` and `start` it like a restart."""

    def __init__(self, socket: Path, lister: Lister) -> None:
        self.socket = socket
        self.lister = lister
        self.server: grpc.Server | None = None

    def start(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_PodResourcesListerServicer_to_server(self.lister, self.server)
        self.server.add_insecure_port(f"unix://{self.socket}")
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None).wait(5)
            self.server = None
        self.socket.unlink(missing_ok=True)  # the kubelet's socket goes with it


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory: a unix socket path must fit in 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="kl", dir="/tmp") as d:
        yield Path(d)


# --- the node: 8 GPUs (GPU 1 in MIG mode with two instances) and 8 Ascend 910B --------------
@pytest.fixture(scope="module")
def node():
    return simulated_node()


def _nvml(node, **kw) -> FakeNvml:
    return FakeNvml(node, mig={1: 2}, **kw)


@pytest.fixture(scope="module")
def ids(node) -> dict[str, str]:
    """What the driver calls the devices the fake kubelet hands out."""
    nv = _nvml(node)
    nv.nvmlInit()
    gpu = [nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i)) for i in range(8)]
    parent = nv.nvmlDeviceGetHandleByIndex(1)
    migs = [nv.nvmlDeviceGetMigDeviceHandleByIndex(parent, j) for j in range(2)]
    out = {f"gpu{i}": (u.decode() if isinstance(u, bytes) else u) for i, u in enumerate(gpu)}
    uuid0 = nv.nvmlDeviceGetUUID(migs[0])
    out["mig0"] = uuid0.decode() if isinstance(uuid0, bytes) else uuid0
    out["mig1_gi"] = str(nv.nvmlDeviceGetGpuInstanceId(migs[1]))
    return out


def _pods(ids: dict[str, str]) -> list:
    return [
        ("team-a", "train-0", [("trainer", [("nvidia.com/gpu", [ids["gpu0"], ids["gpu2"]])]),
                               ("sidecar", [])]),
        ("team-b", "infer-0", [("server", [("nvidia.com/mig-3g.40gb", [ids["mig0"]])])]),
        # the pre-R470 MIG id form: MIG-<GPU UUID>/<GPU instance>/<compute instance>
        ("team-b", "infer-1", [("server", [("nvidia.com/mig-3g.40gb",
                                            [f"MIG-{ids['gpu1']}/{ids['mig1_gi']}/0"])])]),
        ("team-c", "npu-job", [("worker", [("huawei.com/Ascend910", ["Ascend910-3"])])]),
        ("team-c", "vnpu", [("w2", [("huawei.com/Ascend910-2c", ["Ascend910-2c-100-5"])])]),
        # time-slicing: two pods share GPU 4; the first in (namespace, pod) order is named
        ("team-d", "share-b", [("c", [("nvidia.com/gpu", [f"{ids['gpu4']}::1"])])]),
        ("team-d", "share-a", [("c", [("nvidia.com/gpu", [f"{ids['gpu4']}::0"])])]),
        ("kube-system", "coredns", [("coredns", [])]),
    ]


def _agent(node, socket: Path, *, timeout_s: float = 2.0, proc_root: Path = PROC,
           nvml: FakeNvml | None = None, exporters=(),
           hook: bool = True) -> tuple[Agent, PodAttribution]:
    """The agent as `build_agent` makes it: the attribution's hook in the collectors
    (``hook``; without it the relabel step copies every held device's samples)."""
    labels = node.labels
    attribution = PodAttribution(labels, PodResourcesClient(socket, timeout_s),
                                 proc_root=proc_root)
    collectors = [
        Scheduled(attribution, 30.0, timeout_s + 1.0),
        Scheduled(NvmlCollector(labels, nvml=nvml or _nvml(node)), 15.0, 10.0),
        Scheduled(AscendCollector(labels, run=FakeNpuSmi(node), hccn_run=FakeHccnTool(node)),
                  15.0, 10.0),
    ]
    return Agent(collectors, list(exporters), labels, relabel=attribution.relabel,
                 device_labels=attribution.device_labels if hook else None), attribution


def _by_device(samples: list[Sample], name: str) -> dict[str, dict[str, str]]:
    return {s.label("device"): dict(s.labels) for s in samples if s.name == name}


def _pod(lab: dict[str, str]) -> tuple[str | None, str | None, str | None]:
    return lab.get("namespace"), lab.get("pod"), lab.get("container")


def _npu(samples: list[Sample], phy: str) -> str:
    found = {s.label("device") for s in samples
             if s.label("vendor") == "huawei" and s.label("phy_id") == phy}
    assert len(found) == 1, found
    return found.pop()


@pytest.fixture
def kubelet(sockdir, ids) -> Iterator[Kubelet]:
    k = Kubelet(sockdir / "kubelet.sock", Lister(_pods(ids)))
    k.start()
    yield k
    k.stop()


@pytest.fixture(params=[True, False], ids=["hook", "copies"])
def attributed(node, kubelet, request):
    agent, _attribution = _agent(node, kubelet.socket, hook=request.param)
    try:
        yield agent.run_once()
    finally:
        agent.close()


# --- labels on the samples -------------------------------------------------------------------
def test_every_series_of_a_held_device_names_its_pod(attributed, ids):
    util = _by_device(attributed, "accelerator.utilization_ratio")
    assert _pod(util[ids["gpu0"]]) == ("team-a", "train-0", "trainer")
    assert _pod(util[ids["gpu2"]]) == ("team-a", "train-0", "trainer")
    assert _pod(util[ids["gpu3"]]) == (None, None, None)  # free: no pod labels at all
    assert _pod(util[ids["gpu4"]]) == ("team-d", "share-a", "c")
    npu3 = _npu(attributed, "3")
    assert _pod(util[npu3]) == ("team-c", "npu-job", "worker")
    assert _pod(util[_npu(attributed, "5")]) == ("team-c", "vnpu", "w2")  # a vNPU of chip 5
    # every accelerator series of the device, whatever its field
    for s in attributed:
        if s.measurement == "accelerator" and s.label("device") in (ids["gpu0"], npu3):
            assert s.label("pod") in ("train-0", "npu-job"), s


def test_mig_instances_are_matched_by_uuid_and_by_the_old_id_form(attributed, ids):
    mem = _by_device(attributed, "accelerator.memory_used_bytes")
    assert _pod(mem[ids["mig0"]]) == ("team-b", "infer-0", "server")
    old = [lab for lab in mem.values() if lab.get("parent") == ids["gpu1"]
           and lab.get("gpu_instance_id") == ids["mig1_gi"]]
    assert len(old) == 1 and _pod(old[0]) == ("team-b", "infer-1", "server")


def test_allocated_is_one_for_held_devices_zero_for_free_ones(attributed, ids):
    alloc = {s.label("device"): s.value for s in attributed if s.name == "accelerator.allocated"}
    assert alloc[ids["gpu0"]] == 1.0 and alloc[ids["gpu2"]] == 1.0
    assert alloc[ids["gpu1"]] == 1.0  # a MIG-enabled GPU with an instance held
    assert alloc[ids["gpu3"]] == 0.0
    assert alloc[ids["mig0"]] == 1.0
    assert alloc[_npu(attributed, "3")] == 1.0 and alloc[_npu(attributed, "0")] == 0.0
    # one per device: 8 GPUs + 2 MIG instances + 8 NPUs; held: GPUs 0, 2, 4 and MIG-enabled
    # GPU 1, both MIG instances, NPUs 3 and 5; seven of them with a pod of their own
    assert len(alloc) == 18 and sum(alloc.values()) == 8.0
    assert sample_value(attributed, "agent.kubelet_up") == 1.0
    assert sample_value(attributed, "agent.attributed_devices", {"source": "podresources"}) == 7


def test_process_series_carry_the_pod_too(node, kubelet, ids):
    nv = _nvml(node, processes={0: [(777, "python3", 4 * GIB)]})
    agent, _ = _agent(node, kubelet.socket, nvml=nv)
    try:
        samples = agent.run_once()
    finally:
        agent.close()
    procs = [s for s in samples if s.name == "accelerator_process.memory_used_bytes"
             and s.label("device") == ids["gpu0"]]
    assert procs and all(s.label("pod") == "train-0" for s in procs)


# --- where users read them -------------------------------------------------------------------
def _families(text: bytes) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text.decode())}


def test_prometheus_exposition_and_the_compat_names_carry_the_pod(attributed, ids):
    fams = _families(exposition(attributed, compat=("dcgm", "npu-exporter")))
    ours = {s.labels["device"]: s.labels for s in fams["accelerator_utilization_ratio"]}
    assert _pod(ours[ids["gpu0"]]) == ("team-a", "train-0", "trainer")
    dcgm = {s.labels["UUID"]: s.labels for s in fams["DCGM_FI_DEV_GPU_UTIL"]}
    assert _pod(dcgm[ids["gpu0"]]) == ("team-a", "train-0", "trainer")
    assert "pod" not in dcgm[ids["gpu3"]]  # dcgm-exporter: only a held device has them
    npu = {s.labels["id"]: s.labels for s in fams["npu_chip_info_utilization"]}
    assert (npu["3"]["namespace"], npu["3"]["pod_name"], npu["3"]["container_name"]) == (
        "team-c", "npu-job", "worker")
    assert (npu["0"]["namespace"], npu["0"]["pod_name"], npu["0"]["container_name"]) == (
        "", "", "")  # npu-exporter: empty outside a pod
    allocated = {s.labels["device"]: s.value for s in fams["accelerator_allocated"]}
    assert allocated[ids["gpu0"]] == 1.0 and allocated[ids["gpu3"]] == 0.0


def test_line_protocol_tags_carry_the_pod(attributed, ids):
    result = encode_samples([s for s in attributed if s.label("device") == ids["gpu0"]])
    lines = [ln for ln in result.payload.decode().splitlines()
             if ln.startswith("accelerator,")]
    assert lines
    for line in lines:
        tags = dict(t.split("=", 1) for t in re.split(r"(?<!\\),",
                                                      re.split(r"(?<!\\) ", line)[0])[1:])
        assert (tags["namespace"], tags["pod"], tags["container"]) == (
            "team-a", "train-0", "trainer")


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.bodies.append(body)  # type: ignore[attr-defined]
        reply = ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_otlp_points_carry_the_pod_in_k8s_semantic_conventions(attributed, ids, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    exporter = OtlpExporter(f"http://127.0.0.1:{server.server_address[1]}/v1/metrics",
                            resource={"host.name": "n"}, timeout_s=5.0)
    try:
        exporter.export(attributed)
    finally:
        exporter.close(timeout_s=2.0)
        server.shutdown()
        server.server_close()
    req = ExportMetricsServiceRequest.FromString(server.bodies[0])  # type: ignore[attr-defined]
    points = {}
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == "hw.gpu.utilization":
                    for p in m.gauge.data_points:
                        a = {kv.key: kv.value.string_value for kv in p.attributes}
                        points[a["hw.id"]] = a
    gpu0 = points[ids["gpu0"]]
    assert (gpu0["k8s.namespace.name"], gpu0["k8s.pod.name"], gpu0["k8s.container.name"]) == (
        "team-a", "train-0", "trainer")
    assert "k8s.pod.name" not in points[ids["gpu3"]]


# --- the kubelet going away and coming back --------------------------------------------------
def test_a_kubelet_that_goes_away_costs_one_line_and_a_counter_and_comes_back(
        node, kubelet, ids, caplog):
    agent, _ = _agent(node, kubelet.socket)
    caplog.set_level(logging.WARNING)
    try:
        first = agent.run_once()
        kubelet.stop()
        away = [agent.run_once() for _ in range(3)]
        lines = [r for r in caplog.records if "kubelet" in r.getMessage()]
        kubelet.start()
        back = agent.run_once()
    finally:
        agent.close()
    util, health = "accelerator.utilization_ratio", "accelerator.health"
    for batch in away:  # no cycle lost: every device still reported, just without a pod
        assert len(_by_device(batch, health)) == len(_by_device(first, health)) == 18
        assert _pod(_by_device(batch, util)[ids["gpu0"]]) == (None, None, None)
        assert not [s for s in batch if s.name == "accelerator.allocated"]
        assert sample_value(batch, "agent.kubelet_up") == 0.0
    assert len(lines) == 1, [r.getMessage() for r in lines]  # one line for the episode
    assert sample_value(away[-1], "agent.kubelet_errors_total", {"reason": "absent"}) == 3
    assert sample_value(back, "agent.kubelet_up") == 1.0
    assert _pod(_by_device(back, util)[ids["gpu0"]]) == ("team-a", "train-0", "trainer")
    assert [s.name for s in back].count("accelerator.allocated") == 18


def test_a_kubelet_that_hangs_is_a_timeout_not_a_stalled_cycle(node, sockdir, ids):
    kubelet = Kubelet(sockdir / "kubelet.sock", Lister(_pods(ids), delay_s=3.0))
    kubelet.start()
    agent, _ = _agent(node, kubelet.socket, timeout_s=0.3)
    try:
        t0 = time.monotonic()
        samples = agent.run_once()
        took = time.monotonic() - t0
    finally:
        agent.close()
        kubelet.stop()
    assert took < 2.5  # the List call gave up at its deadline
    assert sample_value(samples, "agent.kubelet_errors_total", {"reason": "timeout"}) == 1
    assert len(_by_device(samples, "accelerator.health")) == 18  # 8 GPUs, 2 MIG, 8 NPUs


def test_the_node_config_turns_attribution_on(node, kubelet, ids):
    config = NodeConfig(kubernetes={"enabled": True,
                                    "pod_resources_socket": str(kubelet.socket),
                                    "refresh": "10s"})
    agent = build_agent(config, simulate=node, exporters=[])
    try:
        assert agent.collector_names[0] == "kubernetes"
        samples = agent.run_once()
    finally:
        agent.close()
    util = _by_device(samples, "accelerator.utilization_ratio")
    assert _pod(util[ids["gpu0"]]) == ("team-a", "train-0", "trainer")


def test_attribution_is_off_by_default(node):
    agent = build_agent(NodeConfig(), simulate=node, exporters=[])
    try:
        assert "kubernetes" not in agent.collector_names
    finally:
        agent.close()


# --- the cgroup fallback ---------------------------------------------------------------------
FIXTURE_PODS = {  # read by hand from tests/fixtures/proc/<pid>/cgroup
    4101: ("7c3e8f2a-1b4d-4e6f-9a0b-2c5d7e9f1a3b", "burstable"),
    4102: ("0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "besteffort"),
    4103: ("5a6b7c8d-9e0f-1a2b-3c4d-5e6f7a8b9c0d", "guaranteed"),
    4104: ("2a2c1d6a1b8b7e4c5c6a0e0b8f9c1e11", "burstable"),
}


@pytest.mark.parametrize("pid", sorted(FIXTURE_PODS))
def test_a_pods_process_is_traced_to_its_pod_uid(pid):
    ref = pod_of_pid(PROC, pid)
    assert ref is not None
    assert (ref.uid, ref.qos) == FIXTURE_PODS[pid]
    text = (PROC / str(pid) / "cgroup").read_text()
    assert len(ref.container_id) == 64 and ref.container_id in text


@pytest.mark.parametrize("pid", [4200, 4300, 9999])
def test_a_process_outside_pods_or_gone_has_no_pod(pid):
    assert pod_of_pid(PROC, pid) is None


def test_an_empty_or_foreign_cgroup_file_names_no_pod():
    assert parse_cgroup("") is None
    assert parse_cgroup("0::/kubepods.slice/kubepods-burstable.slice\n") is None


def test_without_the_socket_the_devices_processes_name_their_pods(node, sockdir, ids):
    nv = _nvml(node, processes={
        0: [(4101, "python3", 8 * GIB)],
        # the largest process is a system one; the next, in a pod, names the pod
        2: [(4200, "containerd", 2 * GIB), (4102, "python", GIB)],
        3: [(4300, "bash", GIB)],
        # a host pid that, seen from the agent's own pid namespace, is one of its processes
        5: [(4105, "computewatch", GIB)],
    })
    agent, _ = _agent(node, sockdir / "absent.sock", nvml=nv)
    try:
        samples = agent.run_once()
    finally:
        agent.close()
    util = _by_device(samples, "accelerator.utilization_ratio")
    assert util[ids["gpu0"]]["pod_uid"] == FIXTURE_PODS[4101][0]
    assert util[ids["gpu2"]]["pod_uid"] == FIXTURE_PODS[4102][0]
    assert "pod_uid" not in util[ids["gpu3"]] and "pod" not in util[ids["gpu0"]]
    assert "pod_uid" not in util[ids["gpu5"]]  # never the agent's own pod
    assert not [s for s in samples if s.name == "accelerator.allocated"]  # not knowable
    assert sample_value(samples, "agent.attributed_devices", {"source": "cgroup"}) == 2
    assert sample_value(samples, "agent.kubelet_errors_total", {"reason": "absent"}) == 1


# --- device plugins' ids ---------------------------------------------------------------------
@pytest.mark.parametrize(("resource", "device_id", "keys"), [
    ("nvidia.com/gpu", "GPU-8a1b", [("uuid", "GPU-8a1b")]),
    ("nvidia.com/gpu", "GPU-8a1b::3", [("uuid", "GPU-8a1b")]),
    ("nvidia.com/gpu", "2", [("nvidia-index", "2")]),
    ("nvidia.com/mig-1g.10gb", "MIG-4c2d", [("uuid", "MIG-4c2d")]),
    ("nvidia.com/mig-1g.10gb", "MIG-GPU-8a1b-77/7/0", [("mig", "GPU-8a1b-77", "7")]),
    ("huawei.com/Ascend910", "Ascend910-0", [("ascend-phy", "0")]),
    ("huawei.com/Ascend310P", "Ascend310P-12", [("ascend-phy", "12")]),
    ("huawei.com/Ascend910-2c", "Ascend910-2c-100-5", [("ascend-phy", "5")]),
    ("example.com/fpga", "fpga-0", []),
])
def test_device_plugin_ids(resource, device_id, keys):
    assert holding_keys(resource, device_id) == keys


# --- the folder's README and sample ----------------------------------------------------------
def test_sample_yaml_is_the_defaults_unless_marked_and_the_readme_shows_it():
    from computewatch.collectors import kubernetes
    from computewatch.collectors.config import load_node_config
    from computewatch.collectors.kubernetes import KubernetesConfig

    folder = Path(kubernetes.__file__).parent
    text = (folder / "sample.yaml").read_text(encoding="utf-8")
    config = load_node_config(folder / "sample.yaml").kubernetes
    raw = yaml.safe_load(text)
    assert list(raw) == ["kubernetes"]
    assert set(raw["kubernetes"]) == set(KubernetesConfig.model_fields)
    defaults = KubernetesConfig()
    for name in KubernetesConfig.model_fields:
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{name}:"))
        if getattr(config, name) != getattr(defaults, name):
            assert "example" in line, name
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert f"```yaml\n{text}```" in readme
    assert [ln for ln in readme.splitlines() if ln.startswith("## ")] == [
        "## Configuration", "## Metrics", "## Example output", "## Troubleshooting"]


def test_a_failing_relabel_step_costs_its_labels_not_the_batch(node, caplog):
    def broken(samples):
        raise RuntimeError("bug")

    labels = node.labels
    agent = Agent([Scheduled(NvmlCollector(labels, nvml=_nvml(node)), 15.0, 10.0)], [],
                  labels, relabel=broken)
    caplog.set_level(logging.WARNING)
    try:
        batches = [agent.run_once() for _ in range(2)]
    finally:
        agent.close()
    for batch in batches:
        assert len(_by_device(batch, "accelerator.health")) == 10  # 8 GPUs + 2 MIG devices
    assert len([r for r in caplog.records if "relabel" in r.getMessage()]) == 1


def test_a_failing_device_labels_hook_costs_its_labels_not_the_run(node, caplog):
    """The agent guards the hook it gives the collectors: a hook that raises leaves each
    device with the labels read, the run whole, and one log line for the episode; a hook
    that works again ends it, so the next failure is logged again."""
    broken = [True]

    def hook(labels):
        if broken[0]:
            raise RuntimeError("bug")
        return {**labels, "pod": "p"}

    labels = node.labels
    agent = Agent([Scheduled(NvmlCollector(labels, nvml=_nvml(node)), 15.0, 10.0)], [],
                  labels, device_labels=hook)
    caplog.set_level(logging.WARNING)
    try:
        failed = [agent.run_once() for _ in range(2)]
        broken[0] = False
        healed = agent.run_once()
        broken[0] = True
        again = agent.run_once()
    finally:
        agent.close()
    for batch in [*failed, healed, again]:
        assert len(_by_device(batch, "accelerator.health")) == 10  # 8 GPUs + 2 MIG devices
    assert not [s for b in failed for s in b if s.label("pod")]
    assert {s.label("pod") for s in healed if s.name == "accelerator.health"} == {"p"}
    assert len([r for r in caplog.records if "hook" in r.getMessage()]) == 2


def test_a_stale_socket_left_by_a_stopped_kubelet_is_unavailable(node, sockdir):
    import socket as socketlib

    path = sockdir / "kubelet.sock"
    stale = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: connections are refused
    agent, _ = _agent(node, path, proc_root=sockdir)  # an empty /proc: no fallback pods
    try:
        samples = agent.run_once()
    finally:
        agent.close()
        stale.close()
    assert sample_value(samples, "agent.kubelet_errors_total", {"reason": "unavailable"}) == 1
    assert sample_value(samples, "agent.kubelet_up") == 0.0
    assert not [s for s in samples if s.label("pod") or s.label("pod_uid")]


# --- when the kubelet is asked ---------------------------------------------------------------
class _Clock:
    """The attribution's monotonic clock, moved by the test a cycle (15 s) at a time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _timed_agent(node, kubelet: Kubelet, nvml: FakeNvml, clock: _Clock) -> Agent:
    """The node's collectors with attribution asked every 60 s at most (the default)."""
    attribution = PodAttribution(node.labels, PodResourcesClient(kubelet.socket, 2.0),
                                 proc_root=PROC, refresh_s=60.0, clock=clock)
    collectors = [
        Scheduled(attribution, 15.0, 3.0),
        Scheduled(NvmlCollector(node.labels, nvml=nvml), 15.0, 10.0),
        Scheduled(AscendCollector(node.labels, run=FakeNpuSmi(node),
                                  hccn_run=FakeHccnTool(node)), 15.0, 10.0),
    ]
    return Agent(collectors, [], node.labels, relabel=attribution.relabel)


def _cycles(agent: Agent, clock: _Clock, n: int) -> list[list[Sample]]:
    out = []
    for _ in range(n):
        out.append(agent.run_once())
        clock.now += 15.0
    return out


@pytest.fixture
def steady_nvml(node) -> FakeNvml:
    """GPU 0 (held by team-a/train-0) runs a process; the other GPUs run none."""
    return _nvml(node, processes={0: [(4242, "python", GIB)],
                                  **{i: [] for i in range(1, 8)}})


def test_with_steady_processes_the_kubelet_is_asked_once_a_refresh(
        node, kubelet, steady_nvml):
    clock = _Clock()
    agent = _timed_agent(node, kubelet, steady_nvml, clock)
    try:
        _cycles(agent, clock, 8)  # two minutes at 15 s
    finally:
        agent.close()
    assert kubelet.lister.calls == 2  # at 0 s and 60 s, not every cycle


def test_a_process_starting_on_a_free_device_brings_its_pod_within_a_cycle(
        node, kubelet, steady_nvml, ids):
    clock = _Clock()
    agent = _timed_agent(node, kubelet, steady_nvml, clock)
    util = "accelerator.utilization_ratio"
    try:
        first = _cycles(agent, clock, 1)[0]
        assert _pod(_by_device(first, util)[ids["gpu3"]]) == (None, None, None)
        # the scheduler gives GPU 3 to a new pod, whose process starts on it
        kubelet.lister.pods = [*_pods(ids), ("team-e", "new-job", [
            ("main", [("nvidia.com/gpu", [ids["gpu3"]])])])]
        steady_nvml.processes[3] = [(5151, "python", GIB)]
        seen, after = _cycles(agent, clock, 2)  # at 15 s the process, at 30 s the pod
    finally:
        agent.close()
    assert _pod(_by_device(seen, util)[ids["gpu3"]]) == (None, None, None)
    assert _pod(_by_device(after, util)[ids["gpu3"]]) == ("team-e", "new-job", "main")
    assert kubelet.lister.calls == 2  # 30 s after the first List, half the refresh


def test_the_last_process_leaving_a_held_device_frees_it_within_a_cycle(
        node, kubelet, steady_nvml, ids):
    clock = _Clock()
    agent = _timed_agent(node, kubelet, steady_nvml, clock)
    util, allocated = "accelerator.utilization_ratio", "accelerator.allocated"
    try:
        first = _cycles(agent, clock, 1)[0]
        assert _pod(_by_device(first, util)[ids["gpu0"]]) == ("team-a", "train-0", "trainer")
        # train-0 ends: its process exits and the kubelet no longer lists it
        kubelet.lister.pods = [p for p in _pods(ids) if p[1] != "train-0"]
        steady_nvml.processes[0] = []
        _, after = _cycles(agent, clock, 2)
    finally:
        agent.close()
    assert _pod(_by_device(after, util)[ids["gpu0"]]) == (None, None, None)
    held = {s.label("device"): s.value for s in after if s.name == allocated}
    assert held[ids["gpu0"]] == held[ids["gpu2"]] == 0.0  # train-0 held both
    assert held[ids["mig0"]] == 1.0  # infer-0 still holds its MIG device
    assert kubelet.lister.calls == 2


def test_a_pod_moved_to_another_device_is_relabelled_at_the_next_list(
        node, kubelet, steady_nvml, ids):
    """The relabel step caches each device's labelled labels; a new answer must replace
    them: train-0 gives up GPU 0 (its process stays, so no early List) and is given GPU 5."""
    clock = _Clock()
    agent = _timed_agent(node, kubelet, steady_nvml, clock)
    util, allocated = "accelerator.utilization_ratio", "accelerator.allocated"
    try:
        first = _cycles(agent, clock, 1)[0]
        kubelet.lister.pods = [
            ("team-a", "train-0", [("trainer", [("nvidia.com/gpu", [ids["gpu5"], ids["gpu2"]])])]),
            *[p for p in _pods(ids) if p[1] != "train-0"]]
        cycles = _cycles(agent, clock, 4)  # at 15, 30 and 45 s the cached answer, at 60 s a List
    finally:
        agent.close()
    assert _pod(_by_device(first, util)[ids["gpu0"]]) == ("team-a", "train-0", "trainer")
    assert _pod(_by_device(first, util)[ids["gpu5"]]) == (None, None, None)
    for cached in cycles[:3]:
        assert _pod(_by_device(cached, util)[ids["gpu0"]]) == ("team-a", "train-0", "trainer")
    after = cycles[3]
    assert _pod(_by_device(after, util)[ids["gpu0"]]) == (None, None, None)
    assert _pod(_by_device(after, util)[ids["gpu5"]]) == ("team-a", "train-0", "trainer")
    assert _pod(_by_device(after, util)[ids["gpu2"]]) == ("team-a", "train-0", "trainer")
    procs = [dict(s.labels) for s in after if s.name == "accelerator_process.memory_used_bytes"
             and s.label("device") == ids["gpu0"]]
    assert procs and all(_pod(lab) == (None, None, None) for lab in procs)  # pid 4242's series
    held = {s.label("device"): s.value for s in after if s.name == allocated}
    assert (held[ids["gpu0"]], held[ids["gpu5"]], held[ids["gpu2"]]) == (0.0, 1.0, 1.0)
    assert kubelet.lister.calls == 2


def _fresh_interpreter(code: str) -> list[str]:
    """What ``code`` prints, split into words, run in a fresh interpreter (this module has
    imported grpc and protobuf itself)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60).stdout.split()


def test_without_the_socket_grpc_is_not_loaded(sockdir):
    """A node with no kubelet socket loads nothing for the call (neither hpack nor grpc): in
    a fresh interpreter, as this module has imported grpc itself."""
    code = ("import sys; from pathlib import Path\n"
            "from computewatch.collectors.kubernetes import KubeletUnavailable, "
            "PodResourcesClient\n"
            f"try:\n    PodResourcesClient(Path({str(sockdir / 'kubelet.sock')!r})).list()\n"
            "except KubeletUnavailable as exc:\n    print(exc.reason)\n"
            "print('grpc' in sys.modules, 'google.protobuf' in sys.modules, "
            "'hpack' in sys.modules)\n")
    assert _fresh_interpreter(code) == ["absent", "False", "False", "False"]


def test_a_list_loads_neither_grpc_nor_the_protobuf_runtime(kubelet):
    """The client speaks gRPC over HTTP/2 itself (HPACK from `hpack`) and reads the answer by hand
    (`_wire`): a List loads neither grpcio (about 12 MB of RSS, 16 MB after a connection),
    nor the protobuf runtime or the generated stubs (1.5 to 3 MB more), in a fresh
    interpreter."""
    code = ("import sys; from pathlib import Path\n"
            "from computewatch.collectors.kubernetes import PodResourcesClient\n"
            f"got = PodResourcesClient(Path({str(kubelet.socket)!r})).list()\n"
            "print(len(got), 'grpc' in sys.modules, 'google.protobuf' in sys.modules, "
            "any('_pb2' in m for m in sys.modules))\n")
    assert _fresh_interpreter(code) == ["8", "False", "False", "False"]  # _pods: 8 pairs


def test_the_agent_with_attribution_and_every_exporter_never_loads_grpc(kubelet, sockdir):
    """grpcio is a test dependency only: the whole agent as a node config builds it, with
    attribution on and the OTLP, Prometheus and remote-write exporters, runs cycles and
    labels the pods without importing it (a fresh interpreter; the OTLP and remote
    receivers are absent, which only fails their sends)."""
    config = {"kubernetes": {"enabled": True, "pod_resources_socket": str(kubelet.socket)},
              "exports": {"prometheus": {"listen": "127.0.0.1:0"},
                          "otlp": {"enabled": True, "endpoint": "http://127.0.0.1:9/v1/metrics",
                                   "timeout": "1s"},
                          "remote": {"enabled": True, "url": "victoriametrics://127.0.0.1:9",
                                     "buffer_dir": str(sockdir / "buffer"), "timeout": "1s"}}}
    code = ("import sys\n"
            "from computewatch.collectors.config import NodeConfig\n"
            "from computewatch.collectors.setup import build_agent\n"
            "from computewatch.sim.node import simulated_node\n"
            f"agent = build_agent(NodeConfig.model_validate({config!r}), "
            "simulate=simulated_node())\n"
            "batches = [agent.run_once() for _ in range(2)]\n"
            "agent.close()\n"
            "print(sum(s.label('pod') == 'train-0' for s in batches[-1]) > 0, "
            "'grpc' in sys.modules)\n")
    assert _fresh_interpreter(code) == ["True", "False"]


def test_the_caches_stay_bounded_as_processes_come_and_go(ids, kubelet, sockdir):
    """Under one steady answer a node's processes come and go for weeks; each pid is a label
    set of its own, so the relabel cache and the fallback's pid -> pod map must not keep every
    one a node ever ran, and the labels must stay right after they start again."""
    from computewatch.collectors.kubernetes import _attribution

    now = datetime(2026, 12, 6, tzinfo=UTC)

    def batch(first: int, n: int = 100) -> list[Sample]:
        return [Sample("accelerator_process", "used_memory_bytes", float(GIB),
                       (("device", ids["gpu0"]), ("pid", str(pid)), ("vendor", "nvidia")), now)
                for pid in range(first, first + n)]

    for socket in (kubelet.socket, sockdir / "absent.sock"):  # the answer, then the fallback
        attribution = PodAttribution({"node": "n1"}, PodResourcesClient(socket, 2.0),
                                     proc_root=PROC)
        attribution.collect()
        peak = 0
        for first in range(100_000, 100_000 + 3 * _attribution._CACHE_MAX, 100):
            out = attribution.relabel(batch(first))
            peak = max(peak, len(attribution._relabelled), len(attribution._pods))
            if socket == kubelet.socket:
                assert {_pod(dict(s.labels)) for s in out} == {("team-a", "train-0", "trainer")}
        attribution.close()
        assert peak <= _attribution._CACHE_MAX + 100, (socket, peak)


@pytest.mark.parametrize("fallback", [True, False])
def test_a_batch_read_before_a_new_answer_is_labelled_by_the_new_one(
        node, kubelet, ids, fallback):
    """The collectors make a held device's samples with its pod's labels (the agent's hook),
    but the List runs beside them: an answer that comes between a run's reading and its
    relabelling must win, as if the samples had been read after it. train-0 moves from
    GPU 0 to GPU 5; then the kubelet goes away (the fixture /proc has none of the
    devices' processes, so the fallback names no pod either). The driver's clock stands
    still: a reading in a new second would add an NVLink rate the first batch cannot have."""
    att = PodAttribution(node.labels, PodResourcesClient(kubelet.socket), proc_root=PROC,
                         cgroup_fallback=fallback)
    still = datetime(2026, 12, 6, tzinfo=UTC)
    nvml = NvmlCollector(node.labels, nvml=_nvml(node, clock=lambda: still))
    nvml.set_device_labels(att.device_labels)
    util = "accelerator.utilization_ratio"
    att.collect()
    stale = list(nvml.collect())
    assert _pod(_by_device(stale, util)[ids["gpu0"]]) == ("team-a", "train-0", "trainer")
    kubelet.lister.pods = [
        ("team-a", "train-0", [("trainer", [("nvidia.com/gpu", [ids["gpu5"], ids["gpu2"]])])]),
        *[p for p in _pods(ids) if p[1] != "train-0"]]
    att.collect()
    moved = att.relabel(stale)
    stale = list(nvml.collect())  # read under the new answer, relabelled after the kubelet left
    fresh = att.relabel(list(nvml.collect()))
    assert _pod(_by_device(moved, util)[ids["gpu0"]]) == (None, None, None)
    assert _pod(_by_device(moved, util)[ids["gpu5"]]) == ("team-a", "train-0", "trainer")

    def series(batch: list[Sample]) -> list:
        return sorted((s.name, s.labels) for s in batch if s.measurement == "accelerator")

    assert series(moved) == series(fresh)
    kubelet.stop()
    att.collect()
    gone = att.relabel(stale)
    assert not [s for s in gone if s.label("pod") or s.label("namespace")]
    assert series(gone) == series(att.relabel(list(nvml.collect())))
    nvml.close()


def test_a_series_keeps_its_label_tuple_until_its_holder_changes(node, kubelet, ids):
    """With the hook, each series of the NVML and Ascend collectors carries last run's
    label tuple object while its labels are unchanged (the agent's look-ups then compare
    identities, bench/bench_agent.py), and a new one, with the new pod, once the kubelet
    answers differently; its labels are those the relabel step gives the same batch read
    without the hook."""
    att = PodAttribution(node.labels, PodResourcesClient(kubelet.socket), proc_root=PROC)
    still = datetime(2026, 12, 6, tzinfo=UTC)
    nvml = NvmlCollector(node.labels, nvml=_nvml(node, clock=lambda: still))
    npu = AscendCollector(node.labels, run=FakeNpuSmi(node), hccn_run=FakeHccnTool(node))
    for c in (nvml, npu):
        c.set_device_labels(att.device_labels)
    att.collect()

    def run() -> list[Sample]:
        return [*nvml.collect(), *npu.collect()]

    def series(batch: list[Sample]) -> list:
        return sorted((s.name, s.labels) for s in batch if s.measurement.startswith("acc"))

    first, second = run(), run()
    assert first and all(a.labels is b.labels for a, b in zip(first, second, strict=True))
    plain_nvml = NvmlCollector(node.labels, nvml=_nvml(node, clock=lambda: still))
    plain_npu = AscendCollector(node.labels, run=FakeNpuSmi(node), hccn_run=FakeHccnTool(node))
    copied = att.relabel([*plain_nvml.collect(), *plain_npu.collect()])
    assert series(att.relabel(list(second))) == series(copied)
    kubelet.lister.pods = [
        ("team-a", "train-0", [("trainer", [("nvidia.com/gpu", [ids["gpu5"], ids["gpu2"]])])]),
        *[p for p in _pods(ids) if p[1] != "train-0"]]
    att.collect()
    third = run()
    util = {s.label("device"): s for s in third if s.name == "accelerator.utilization_ratio"}
    before = {s.label("device"): s for s in second if s.name == "accelerator.utilization_ratio"}
    assert _pod(dict(util[ids["gpu5"]].labels)) == ("team-a", "train-0", "trainer")
    assert _pod(dict(util[ids["gpu0"]].labels)) == (None, None, None)
    assert util[ids["gpu0"]].labels is not before[ids["gpu0"]].labels
    assert util[ids["gpu3"]].labels is before[ids["gpu3"]].labels  # free before and after
    for c in (nvml, npu, plain_nvml, plain_npu):
        c.close()
