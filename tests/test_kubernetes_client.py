"""The PodResources client (`collectors/kubernetes/_client.py`, gRPC spoken over HTTP/2 by
hand, HPACK from `hpack`) against real gRPC servers: grpcio's, on a unix socket, serving the
stubs grpcio-tools generated from the published v1 API, answering, failing and stalling as a
kubelet can; a socket that accepts and closes, one that says nothing, one nobody listens on,
one that speaks HTTP/1.1 and one that breaks HTTP/2's framing; and a scripted HTTP/2 server
(h2's server side) for what grpcio sends only sometimes or never: padded DATA, a message split
across frames and reads, PING and SETTINGS mid-answer, CONTINUATION, a trailers-only answer,
bad messages, HTTP errors, RST_STREAM and GOAWAY.

Expected values are what the servers were given: the pods and their devices, the status codes
and messages; the mappings of HTTP statuses and RST_STREAM codes are gRPC's documents'.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

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


def test_each_list_reads_the_answer_in_force(serve):
    """The client keeps the last answer's decoding for an answer the same byte for byte: a
    changed answer must still be read anew, and each List's list is the caller's own."""
    lister = _Lister(_pods(3))
    client = PodResourcesClient(serve(lister))
    first = client.list()
    again = client.list()
    assert _got(first) == _got(again) == _want(3)
    again.clear()  # the caller's to change: the next List still gives the whole answer
    assert _got(client.list()) == _want(3)
    lister.answer = _pods(5)
    assert _got(client.list()) == _want(5)
    lister.answer = pb.ListPodResourcesResponse()
    assert client.list() == []
    lister.answer = _pods(3)
    assert _got(client.list()) == _want(3)
    assert _got(client.list()) == _want(3)


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


# --- a scripted HTTP/2 server: what grpcio sends only sometimes, or never ----------------------
# h2's server side writes the frames (HPACK, CONTINUATION, padding, PING, RST_STREAM, GOAWAY),
# so the client's own framing is checked against another implementation of RFC 9113.
OK_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]
MESSAGE = _pods(2).SerializeToString()
FRAMED = b"\0" + len(MESSAGE).to_bytes(4, "big") + MESSAGE  # gRPC's length prefix


class Scripted:
    """An HTTP/2 server on a unix socket: reads one request, then ``answer(conn, stream)``
    writes the reply with h2's server side, sent at once or a byte at a time."""

    def __init__(self, path: Path, answer: Callable[[H2Connection, int], None],
                 byte_by_byte: bool = False) -> None:
        self.path, self.answer, self.byte_by_byte = path, answer, byte_by_byte
        self.request: dict[str, str] = {}
        self.body = b""
        self.events: list[str] = []  # the kinds of h2 event the client's frames made
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        sock, _ = self.listener.accept()
        with sock, self.listener:
            conn = H2Connection(H2Configuration(client_side=False, header_encoding="ascii"))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            stream, ended = 0, False
            while not ended:
                data = sock.recv(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    self.events.append(type(event).__name__)
                    if isinstance(event, RequestReceived):
                        stream, self.request = event.stream_id, dict(event.headers)
                    elif isinstance(event, DataReceived):
                        self.body += event.data
                    elif isinstance(event, StreamEnded):
                        ended = True
                sock.sendall(conn.data_to_send())
            self.answer(conn, stream)
            out = conn.data_to_send()
            if not self.byte_by_byte:
                sock.sendall(out)
            for i in range(len(out)) if self.byte_by_byte else ():
                sock.sendall(out[i:i + 1])  # each byte its own read, if the client keeps up
                time.sleep(0.0002)
            sock.settimeout(5)
            with contextlib.suppress(OSError, ProtocolError):
                while data := sock.recv(65536):  # until the client closes
                    self.events += [type(e).__name__ for e in conn.receive_data(data)]


@pytest.fixture
def scripted(sockdir) -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def start(answer: Callable[[H2Connection, int], None], **kw) -> Scripted:
        servers.append(Scripted(sockdir / f"scripted{len(servers)}.sock", answer, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.thread.join(10)


def _ok(conn: H2Connection, stream: int, frames: list[bytes],
        pad_length: int | None = None) -> None:
    conn.send_headers(stream, OK_HEADERS)
    for frame in frames:
        conn.send_data(stream, frame, pad_length=pad_length)
    conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)


def _failure(path: Path, timeout_s: float = 2.0) -> KubeletUnavailable:
    with pytest.raises(KubeletUnavailable) as caught:
        PodResourcesClient(path, timeout_s).list()
    return caught.value


def test_the_request_is_a_grpc_unary_call(scripted):
    server = scripted(lambda conn, stream: _ok(conn, stream, [FRAMED]))
    assert _got(PodResourcesClient(server.path, 2.0).list()) == _want(2)
    assert server.request == {":method": "POST", ":scheme": "http",
                              ":path": "/v1.PodResourcesLister/List",
                              ":authority": "localhost", "content-type": "application/grpc",
                              "te": "trailers", "grpc-accept-encoding": "identity",
                              "grpc-timeout": "2000m"}
    assert server.body == b"\0\0\0\0\0"  # uncompressed, length 0: the empty request


def test_a_server_is_told_the_deadline(serve):
    """``grpc-timeout``: the server's context has at most the client's timeout left."""
    remaining: list[float] = []

    class Noting(_Lister):
        def List(self, request, context):
            remaining.append(context.time_remaining())
            return super().List(request, context)

    PodResourcesClient(serve(Noting(_pods(1))), timeout_s=0.5).list()
    assert len(remaining) == 1 and 0.0 < remaining[0] <= 0.5


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["whole", "a-byte-a-read"])
@pytest.mark.parametrize("pad_length", [None, 7], ids=["plain", "padded"])  # RFC 9113 6.1
def test_a_message_split_across_frames_and_reads_is_joined(scripted, byte_by_byte, pad_length):
    parts = [FRAMED[:3], FRAMED[3:20], FRAMED[20:]]  # the first cuts the 5-byte prefix
    server = scripted(lambda conn, stream: _ok(conn, stream, parts, pad_length),
                      byte_by_byte=byte_by_byte)
    assert _got(PodResourcesClient(server.path, 2.0).list()) == _want(2)


def test_a_ping_and_new_settings_mid_answer_are_acknowledged_and_the_answer_read(scripted):
    def answer(conn: H2Connection, stream: int) -> None:
        conn.ping(b"12345678")
        conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 10})
        _ok(conn, stream, [FRAMED])
    server = scripted(answer)
    assert _got(PodResourcesClient(server.path, 2.0).list()) == _want(2)
    server.thread.join(5)
    assert server.events.count("PingAckReceived") == 1
    assert server.events.count("SettingsAcknowledged") == 2  # the first SETTINGS and these


def test_trailers_past_one_frame_continue_in_continuation_frames(scripted):
    """A 20,000-character grpc-message does not fit a 16 KiB HEADERS frame: h2 sends the
    rest in CONTINUATION frames, which the client must join before decoding."""
    details = "x" * 20_000

    def answer(conn: H2Connection, stream: int) -> None:
        conn.send_headers(stream, OK_HEADERS)
        conn.send_headers(stream, [("grpc-status", "13"), ("grpc-message", details)],
                          end_stream=True)
    failed = _failure(scripted(answer).path)
    assert failed.reason == "error"
    assert str(failed).endswith(f": INTERNAL {details}")


def test_a_trailers_only_answer_gives_its_status(scripted):
    server = scripted(lambda conn, stream: conn.send_headers(stream, [
        *OK_HEADERS, ("grpc-status", "14"), ("grpc-message", "kubelet%20is%20shutting%20down")],
        end_stream=True))
    failed = _failure(server.path)
    assert failed.reason == "unavailable"
    assert str(failed).endswith(": UNAVAILABLE kubelet is shutting down")


def test_a_status_in_the_trailers_after_a_message_wins(scripted):
    def answer(conn: H2Connection, stream: int) -> None:
        conn.send_headers(stream, OK_HEADERS)
        conn.send_data(stream, FRAMED)
        conn.send_headers(stream, [("grpc-status", "4"), ("grpc-message", "late")],
                          end_stream=True)
    failed = _failure(scripted(answer).path)
    assert (failed.reason, str(failed).split(": ")[-1]) == ("timeout", "DEADLINE_EXCEEDED late")


@pytest.mark.parametrize(("frames", "says"), [
    ([b"\x01" + FRAMED[1:]], "compressed"),  # flag 1, though only identity was offered
    ([], "no gRPC message"),
    ([FRAMED, FRAMED], "one message expected"),
    ([FRAMED[:-1]], "one message expected"),  # shorter than its prefix says
])
def test_a_bad_message_is_an_error(scripted, frames, says):
    failed = _failure(scripted(lambda conn, stream: _ok(conn, stream, frames)).path)
    assert failed.reason == "error"
    assert says in str(failed)


@pytest.mark.parametrize(("status", "reason"), [
    # gRPC's HTTP-to-gRPC status mapping (grpc/doc/http-grpc-status-mapping.md)
    ("404", "unimplemented"), ("503", "unavailable"), ("429", "unavailable"),
    ("500", "error"), ("401", "error")])
def test_an_http_error_status_is_read_as_grpc_reads_it(scripted, status, reason):
    server = scripted(lambda conn, stream: conn.send_headers(
        stream, [(":status", status), ("content-type", "text/plain")], end_stream=True))
    failed = _failure(server.path)
    assert failed.reason == reason
    assert f"HTTP status {status}" in str(failed)


def test_an_ok_answer_without_grpc_status_is_an_error(scripted):
    def answer(conn: H2Connection, stream: int) -> None:
        conn.send_headers(stream, OK_HEADERS)
        conn.send_data(stream, FRAMED, end_stream=True)
    failed = _failure(scripted(answer).path)
    assert failed.reason == "error" and "gRPC status" in str(failed)


@pytest.mark.parametrize(("code", "reason"), [(0x7, "unavailable"), (0x8, "error"),
                                              (0x2, "error")])
def test_a_reset_stream_is_read_as_grpc_reads_it(scripted, code, reason):
    """RST_STREAM REFUSED_STREAM (7): UNAVAILABLE (nothing was done, try again); CANCEL (8):
    CANCELLED; INTERNAL_ERROR (2): INTERNAL (grpc/doc/PROTOCOL-HTTP2.md, "Errors")."""
    failed = _failure(scripted(lambda conn, stream: conn.reset_stream(stream, code)).path)
    assert failed.reason == reason
    assert f"HTTP/2 error {code}" in str(failed)


def test_a_goaway_before_the_answer_is_unavailable(scripted):
    """GOAWAY naming stream 0 as the last processed: the call was not served."""
    failed = _failure(scripted(lambda conn, stream: conn.close_connection(
        0, last_stream_id=0)).path)
    assert failed.reason == "unavailable"
    assert "GOAWAY" in str(failed)


def test_a_goaway_after_the_answer_keeps_the_answer(scripted):
    def answer(conn: H2Connection, stream: int) -> None:
        _ok(conn, stream, [FRAMED])
        conn.close_connection(0)
    assert _got(PodResourcesClient(scripted(answer).path, 2.0).list()) == _want(2)


def test_a_peer_that_accepts_and_says_nothing_is_a_timeout(sockdir):
    """Not even the server's SETTINGS: the deadline covers the whole call, not each read."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sockdir / "silent.sock"))
    listener.listen(1)
    started = time.monotonic()
    try:
        failed = _failure(sockdir / "silent.sock", 0.3)
    finally:
        listener.close()
    assert failed.reason == "timeout"
    assert time.monotonic() - started < 0.9
