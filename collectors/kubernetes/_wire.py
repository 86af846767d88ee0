"""The kubelet's ``ListPodResourcesResponse``, read from its protobuf wire format by hand.

The agent's client decodes the answer with this, not with the generated ``_podresources_pb2``
classes: the protobuf runtime and the stubs cost about 1.5 MB of the agent's resident memory
(bench/bench_agent.py), for five messages of which the agent reads six fields. The stubs stay
for the tests' kubelet server, which encodes what this reads (tests/test_kubernetes_proto.py).

The wire format (protobuf's encoding documentation): a message is a sequence of fields, each a
varint key (field number << 3 | wire type) and a value: a varint (type 0), 8 bytes (1), a
varint length and that many bytes (2: strings, bytes, messages), or 4 bytes (5). Fields this
reader does not know (a newer kubelet's ``memory``, ``cpu_ids``, ``topology``,
``dynamic_resources``; proto2's groups, types 3 and 4, too) are skipped by their wire type; a
singular string given twice keeps the last, as protobuf's parsers do; a field left out is
empty. A truncated or malformed message raises `WireError`, which the client counts as a
failed List, as it would a message protobuf refused.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Holding", "WireError", "holdings"]


@dataclass(frozen=True, slots=True)
class Holding:
    """One device a container was allocated, as its device plugin names it."""

    resource: str
    device_id: str
    namespace: str
    pod: str
    container: str


class WireError(ValueError):
    """The bytes are not a well-formed ``ListPodResourcesResponse``."""


def _varint(data: bytes, i: int) -> tuple[int, int]:
    """The varint at ``i`` and the offset after it."""
    out = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[i]
        i += 1
        out |= (byte & 0x7F) << shift
        if byte < 0x80:
            return out, i
        shift += 7


def _fields(data: bytes, start: int, end: int,
            group: int = 0) -> tuple[list[tuple[int, int, int]], int]:
    """The length-delimited fields of ``data[start:end]`` as (number, start, end) of their
    payloads, in order, the other wire types skipped; and the offset after them. In a group
    (``group``: its field number) the fields end at the group's end."""
    out = []
    i = start
    while i < end:
        key = data[i]  # one byte for field numbers below 16: the varint read inline
        if key < 0x80:
            i += 1
        else:
            key, i = _varint(data, i)
        number, kind = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if kind == 4:
            if number != group:
                raise WireError(f"field {number}: an end of group with no start")
            return out, i
        if kind == 2:
            if i < end and data[i] < 0x80:  # a length below 128, read inline as well
                n = data[i]
                i += 1
            else:
                n, i = _varint(data, i)
            if i + n > end:
                raise WireError(f"field {number}: {n} bytes past the message's end")
            out.append((number, i, i + n))
            i += n
        elif kind == 0:
            _, i = _varint(data, i)
        elif kind == 1:
            i += 8
        elif kind == 5:
            i += 4
        elif kind == 3:
            _, i = _fields(data, i, end, number)
        else:
            raise WireError(f"field {number}: wire type {kind}")
    if i != end or group:
        raise WireError("a field past the message's end" if i != end else
                        f"group {group} not ended")
    return out, i


def _text(data: bytes, start: int, end: int) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"a string that is not UTF-8: {exc}") from None


def holdings(data: bytes) -> list[Holding]:
    """Each (resource, device id) a container holds, in the answer's order: what
    `PodResourcesClient.list` returns. ``response_deserializer`` of the client's call."""
    out: list[Holding] = []
    for number, start, end in _fields(data, 0, len(data))[0]:
        if number != 1:  # pod_resources
            continue
        name = namespace = ""
        containers = []
        for f, s, e in _fields(data, start, end)[0]:
            if f == 1:
                name = _text(data, s, e)
            elif f == 2:
                namespace = _text(data, s, e)
            elif f == 3:
                containers.append((s, e))
        for s, e in containers:
            container = ""
            devices: list[tuple[str, list[str]]] = []
            for f, ds, de in _fields(data, s, e)[0]:
                if f == 1:
                    container = _text(data, ds, de)
                elif f == 2:  # ContainerDevices: resource_name 1, device_ids 2
                    resource, ids = "", []
                    for g, gs, ge in _fields(data, ds, de)[0]:
                        if g == 1:
                            resource = _text(data, gs, ge)
                        elif g == 2:
                            ids.append(_text(data, gs, ge))
                    devices.append((resource, ids))
            out += [Holding(resource, device_id, namespace, name, container)
                    for resource, ids in devices for device_id in ids]
    return out
