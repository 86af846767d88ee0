"""The committed PodResources stubs: generated from the committed .proto, and wire-compatible
with the kubelet's v1 API (names and field numbers as the published api.proto has them,
kubernetes/kubelet pkg/apis/podresources/v1/api.proto, listed here by hand)."""

from __future__ import annotations

from pathlib import Path

from computewatch.collectors.kubernetes import _generate
from computewatch.collectors.kubernetes import _podresources_pb2 as pb

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
