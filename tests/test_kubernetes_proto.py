"""The committed PodResources stubs: generated from the committed .proto, and wire-compatible
with the kubelet's v1 API (names and field numbers as the published api.proto has them,
kubernetes/kubelet pkg/apis/podresources/v1/api.proto, listed here by hand)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.message import DecodeError

from computewatch.collectors.kubernetes import Holding, _generate
from computewatch.collectors.kubernetes import _podresources_pb2 as pb
from computewatch.collectors.kubernetes._wire import WireError, holdings

HERE = Path(_generate.__file__).parent

PUBLISHED = {  # message -> {field: number}, from the kubelet's v1 api.proto
    "ListPodResourcesRequest": {},
    "ListPodResourcesResponse": {"pod_resources": 1},
    "PodResources": {"name": 1, "namespace": 2, "containers": 3},
    "ContainerResources": {"name": 1, "devices": 2},
    "ContainerDevices": {"resource_name": 1, "device_ids": 2},
}


def test_committed_stubs_are_what_grpcio_tools_generates(tmp_path):
    for path in _generate.generate(tmp_path):
        assert path.read_bytes() == (HERE / path.name).read_bytes(), (
            f"{path.name} is stale: run `make protos`")


def test_names_and_field_numbers_are_the_kubelets():
    file = pb.DESCRIPTOR
    assert file.package == "v1"
    service = file.services_by_name["PodResourcesLister"]
    assert service.full_name == "v1.PodResourcesLister"
    assert service.methods_by_name["List"].input_type.name == "ListPodResourcesRequest"
    assert service.methods_by_name["List"].output_type.name == "ListPodResourcesResponse"
    for message, fields in PUBLISHED.items():
        desc = file.message_types_by_name[message]
        assert {f.name: f.number for f in desc.fields} == fields, message


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_a_newer_kubelets_answer_decodes_with_the_fields_we_leave_out():
    """A 1.28+ kubelet adds cpu_ids (3), memory (4), dynamic_resources (5) to a container and
    topology (3) to its devices: they are skipped, the rest reads as sent."""
    topology = _field(1, _field(1, 1))  # TopologyInfo{nodes: [NUMANode{ID: 1}]}
    devices = _field(1, b"nvidia.com/gpu") + _field(2, b"GPU-1") + _field(2, b"GPU-2") + \
        _field(3, topology)
    container = _field(1, b"trainer") + _field(2, devices) + _field(3, _varint(4)) + \
        _field(4, _field(1, b"memory") + _field(2, 2**30))
    pod = _field(1, b"train-0") + _field(2, b"team-a") + _field(3, container)
    answer = pb.ListPodResourcesResponse.FromString(_field(1, pod))
    (p,) = answer.pod_resources
    (c,) = p.containers
    (d,) = c.devices
    assert (p.namespace, p.name, c.name, d.resource_name, list(d.device_ids)) == (
        "team-a", "train-0", "trainer", "nvidia.com/gpu", ["GPU-1", "GPU-2"])


# --- the agent's own reader (`_wire`) against protobuf's encoder and parser ------------------

def _by_protobuf(data: bytes) -> list[Holding]:
    """What the generated classes read from ``data``, flattened as the client returns it."""
    answer = pb.ListPodResourcesResponse.FromString(data)
    return [Holding(dev.resource_name, device_id, pod.namespace, pod.name, ctr.name)
            for pod in answer.pod_resources for ctr in pod.containers
            for dev in ctr.devices for device_id in dev.device_ids]


def _fixed(number: int, kind: int, width: int) -> bytes:
    return _varint(number << 3 | kind) + bytes(range(1, width + 1))


def test_the_reader_reads_the_newer_kubelets_answer_by_hand():
    topology = _field(1, _field(1, 1))
    devices = _field(1, b"nvidia.com/gpu") + _field(2, b"GPU-1") + _field(2, b"GPU-2") + \
        _field(3, topology)
    container = _field(1, b"trainer") + _field(2, devices) + _field(3, _varint(4)) + \
        _field(4, _field(1, b"memory") + _field(2, 2**30))
    pod = _field(1, b"train-0") + _field(2, b"team-a") + _field(3, container)
    assert holdings(_field(1, pod)) == [
        Holding("nvidia.com/gpu", "GPU-1", "team-a", "train-0", "trainer"),
        Holding("nvidia.com/gpu", "GPU-2", "team-a", "train-0", "trainer")]


def test_the_reader_reads_what_protobuf_encodes():
    """Pods with and without containers, devices and ids, empty and non-ASCII names, as
    protobuf's encoder writes them (fields it leaves out when empty included)."""
    answer = pb.ListPodResourcesResponse(pod_resources=[
        pb.PodResources(name="train-0", namespace="team-a", containers=[
            pb.ContainerResources(name="trainer", devices=[
                pb.ContainerDevices(resource_name="nvidia.com/gpu",
                                    device_ids=["GPU-1", "GPU-2"]),
                pb.ContainerDevices(resource_name="huawei.com/Ascend910",
                                    device_ids=["Ascend910-3"]),
                pb.ContainerDevices(resource_name="nvidia.com/mig-1g.10gb")]),
            pb.ContainerResources(name="sidecar"),
            pb.ContainerResources(devices=[pb.ContainerDevices(device_ids=["x"])])]),
        pb.PodResources(name="coredns", namespace="kube-system"),
        pb.PodResources(),
        pb.PodResources(name="prüfung-ü", namespace="équipe", containers=[
            pb.ContainerResources(name="w", devices=[
                pb.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=["", "GPU-9"])])]),
    ])
    data = answer.SerializeToString()
    expected = [
        Holding("nvidia.com/gpu", "GPU-1", "team-a", "train-0", "trainer"),
        Holding("nvidia.com/gpu", "GPU-2", "team-a", "train-0", "trainer"),
        Holding("huawei.com/Ascend910", "Ascend910-3", "team-a", "train-0", "trainer"),
        Holding("", "x", "team-a", "train-0", ""),
        Holding("nvidia.com/gpu", "", "équipe", "prüfung-ü", "w"),
        Holding("nvidia.com/gpu", "GPU-9", "équipe", "prüfung-ü", "w"),
    ]
    assert _by_protobuf(data) == expected
    assert holdings(data) == expected
    assert holdings(b"") == [] == _by_protobuf(b"")


def test_the_reader_skips_unknown_fields_of_every_wire_type_and_keeps_the_last_name():
    """At every level: varints, 8- and 4-byte fields, strings and messages the reader does
    not know; a name sent twice (protobuf keeps the last); fields in any order."""
    group = _varint(14 << 3 | 3) + _field(1, b"in a group") + _varint(15 << 3 | 3) + \
        _varint(15 << 3 | 4) + _varint(14 << 3 | 4)
    unknown = (_field(9, 300) + _fixed(10, 1, 8) + _fixed(11, 5, 4) + _field(12, b"skip")
               + _field(13, _field(1, b"nested")) + _field(2000, 2**63) + group)
    devices = unknown + _field(2, b"GPU-1") + _field(1, b"nvidia.com/gpu") + unknown + \
        _field(2, b"GPU-2")
    container = _field(2, devices) + unknown + _field(1, b"old") + _field(1, b"trainer")
    pod = _field(3, container) + unknown + _field(2, b"team-a") + _field(1, b"train-0") + \
        _field(1, 7)  # a known number with another wire type: unknown to both parsers
    data = unknown + _field(1, pod) + unknown + _field(1, _field(2, b"team-b"))
    expected = [Holding("nvidia.com/gpu", "GPU-1", "team-a", "train-0", "trainer"),
                Holding("nvidia.com/gpu", "GPU-2", "team-a", "train-0", "trainer")]
    assert _by_protobuf(data) == expected
    assert holdings(data) == expected


@pytest.mark.parametrize("data", [
    _field(1, _field(1, b"train-0"))[:-1],  # cut short
    _varint(1 << 3 | 2) + _varint(50) + b"x",  # a length past the end
    _fixed(9, 1, 8)[:-3],  # an 8-byte field cut short
    bytes([0x88]),  # a varint that never ends
    _varint(9 << 3 | 3) + _varint(8 << 3 | 4),  # a group ended by another's end
    _varint(9 << 3 | 3) + _field(1, b"x"),  # a group never ended
    _field(1, _field(1, b"\xff\xfe")),  # a name that is not UTF-8
], ids=["truncated", "length", "fixed64", "varint", "group-end", "group-open", "utf8"])
def test_the_reader_refuses_what_protobuf_refuses(data):
    with pytest.raises(DecodeError):
        pb.ListPodResourcesResponse.FromString(data)
    with pytest.raises(WireError):
        holdings(data)
