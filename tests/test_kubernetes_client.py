"""The PodResources client (`collectors/kubernetes/_client.py`, gRPC spoken over HTTP/2 with
`h2`) against real gRPC servers: grpcio's, on a unix socket, serving the stubs grpcio-tools
generated from the published v1 API, answering, failing and stalling as a kubelet can; and a
socket that accepts and closes, one nobody listens on, one that speaks HTTP/1.1 and one that
breaks HTTP/2's framing.

Expected values are what the servers were given: the pods and their devices, the status codes
and messages.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from computewatch.collectors.kubernetes import KubeletUnavailable, PodResourcesClient
from computewatch.collectors.kubernetes import _podresources_pb2 as pb
from computewatch.collectors.kubernetes import _podresources_pb2_grpc as pb_grpc


class _Lister(pb_grpc.PodResourcesListerServicer):
    def __init__(self, answer=None, *, code: grpc.StatusCode | None = None,
                 details: str = "", delay_s: float = 0.0) -> None:
        self.answer, self.code, self.details, self.delay_s = answer, code, details, delay_s

    def List(self, request, context):
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.code is not None:
            context.abort(self.code, self.details)
        return self.answer


@pytest.fixture
def sockdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kc", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def serve(sockdir):
    """Starts a grpcio server on a unix socket with the given servicer (None: no service)."""
    servers = []

    def start(lister: _Lister | None) -> Path:
        path = sockdir / f"kubelet{len(servers)}.sock"
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        if lister is not None:
            pb_grpc.add_PodResourcesListerServicer_to_server(lister, server)
        server.add_insecure_port(f"unix://{path}")
        server.start()
        servers.append(server)
        return path

    yield start
    for server in servers:
        server.stop(grace=None).wait(5)


def _pods(n: int) -> pb.ListPodResourcesResponse:
    """``n`` pods, each holding one GPU by a 40-character id, and a container holding none."""
    return pb.ListPodResourcesResponse(pod_resources=[
        pb.PodResources(namespace=f"ns-{i % 7}", name=f"job-{i:05d}", containers=[
            pb.ContainerResources(name="main", devices=[pb.ContainerDevices(
                resource_name="nvidia.com/gpu", device_ids=[f"GPU-{i:036d}"])]),
            pb.ContainerResources(name="sidecar")])
        for i in range(n)])


def _want(n: int) -> list[tuple[str, str, str, str, str]]:
    return sorted(("nvidia.com/gpu", f"GPU-{i:036d}", f"ns-{i % 7}", f"job-{i:05d}", "main")
                  for i in range(n))


def _got(holdings) -> list[tuple[str, str, str, str, str]]:
    return sorted((h.resource, h.device_id, h.namespace, h.pod, h.container) for h in holdings)


def test_an_answer_is_read_whole(serve):
    assert _got(PodResourcesClient(serve(_Lister(_pods(3)))).list()) == _want(3)


def test_an_answer_larger_than_http2s_default_window_is_read_whole(serve):
    """5,000 pods are ~480 KB, over HTTP/2's initial 64 KiB window: the client must let the
    server send on (flow control), or the call stalls until its deadline."""
    answer = _pods(5000)
    assert answer.ByteSize() > 7 * 65535
    started = time.monotonic()
    assert _got(PodResourcesClient(serve(_Lister(answer)), timeout_s=10).list()) == _want(5000)
    assert time.monotonic() - started < 5


def test_an_empty_answer_holds_nothing(serve):
    assert PodResourcesClient(serve(_Lister(pb.ListPodResourcesResponse()))).list() == []


@pytest.mark.parametrize(("code", "reason"), [
    (grpc.StatusCode.UNAVAILABLE, "unavailable"),
    (grpc.StatusCode.PERMISSION_DENIED, "error"),
    (grpc.StatusCode.INTERNAL, "error"),
])
def test_a_status_names_its_reason_code_and_message(serve, code, reason):
    path = serve(_Lister(code=code, details="pod resources: 无法读取 100%"))
    with pytest.raises(KubeletUnavailable) as caught:
        PodResourcesClient(path).list()
    assert caught.value.reason == reason
    assert f"{path}: {code.name} pod resources: 无法读取 100%" in str(caught.value)


def test_a_kubelet_without_the_v1_service_is_unimplemented(serve):
    with pytest.raises(KubeletUnavailable, match="UNIMPLEMENTED") as caught:
        PodResourcesClient(serve(None)).list()
    assert caught.value.reason == "unimplemented"


def test_a_kubelet_slower_than_the_timeout_is_a_timeout(serve):
    path = serve(_Lister(_pods(1), delay_s=1.5))
    started = time.monotonic()
    with pytest.raises(KubeletUnavailable) as caught:
        PodResourcesClient(path, timeout_s=0.3).list()
    assert caught.value.reason == "timeout"
    assert time.monotonic() - started < 1.2  # the deadline, not the server's 1.5 s


def test_a_socket_nobody_listens_on_is_unavailable(sockdir):
    path = sockdir / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, as a stopped kubelet's does
    with pytest.raises(KubeletUnavailable, match="UNAVAILABLE") as caught:
        PodResourcesClient(path).list()
    assert caught.value.reason == "unavailable"


def test_no_socket_is_absent(sockdir):
    with pytest.raises(KubeletUnavailable, match="no kubelet socket") as caught:
        PodResourcesClient(sockdir / "none.sock").list()
    assert caught.value.reason == "absent"


def _one_shot(path: Path, reply: bytes) -> threading.Thread:
    """A server that accepts one connection, reads what comes, sends ``reply``, closes."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def run() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        if reply:
            conn.sendall(reply)
        conn.close()
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_peer_that_closes_before_answering_is_unavailable(sockdir):
    thread = _one_shot(sockdir / "closes.sock", b"")
    with pytest.raises(KubeletUnavailable, match="closed the connection") as caught:
        PodResourcesClient(sockdir / "closes.sock").list()
    assert caught.value.reason == "unavailable"
    thread.join(5)


@pytest.mark.parametrize(("reply", "reason", "message"), [
    # read as the header of a 4.7 MB frame
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "error", "HTTP/2: a frame of 4,740,180 bytes"),
    # an empty DATA frame on stream 0 where the server's SETTINGS must come first
    (bytes(9), "error", "HTTP/2"),
])
def test_a_peer_that_does_not_speak_http2_is_named(sockdir, reply, reason, message):
    thread = _one_shot(sockdir / "other.sock", reply)
    with pytest.raises(KubeletUnavailable, match=message) as caught:
        PodResourcesClient(sockdir / "other.sock").list()
    assert caught.value.reason == reason
    thread.join(5)
