"""The responder is not a reflector, and the prober takes only its own replies (issue 15, 1).

Real responders on loopback, real UDP sockets. Format 1 responders echoed any 28-byte
datagram starting with ``CWL1`` back to its source port, so one spoofed packet whose source
was another responder made the two answer each other forever (about 24k packets a second
each on loopback).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from computewatch.cli._healthcheck import check
from computewatch.collectors.latency import (
    DEFAULT_RATE,
    PACKET_SIZE,
    ProbePacket,
    Prober,
    ProbeTarget,
    Responder,
    decode_probe,
    encode_probe,
    new_responder_loop,
    open_responder,
    read_probe_key,
    reply_to,
)
from computewatch.status import ExitStatus

KEY = b"0123456789abcdef-shared-probe-key"


def target(port: int) -> ProbeTarget:
    return ProbeTarget("a", "b", "127.0.0.1", port, "udp", "metro", 0.0, 0.001, "jjj", "jjj")


@contextmanager
def responders(*kwargs: dict) -> Iterator[tuple[asyncio.AbstractEventLoop, list[Responder]]]:
    """Responders bound on 127.0.0.1 on one loop, run by the caller (``loop.run_until...``)."""
    loop = new_responder_loop()
    made = [loop.run_until_complete(open_responder("127.0.0.1", 0, **kw)) for kw in kwargs]
    try:
        yield loop, made
    finally:
        for r in made:
            r.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


@contextmanager
def served(**kw) -> Iterator[Responder]:
    """One responder answering in a background thread (for blocking clients)."""
    loop = new_responder_loop()
    responder = loop.run_until_complete(open_responder("127.0.0.1", 0, **kw))
    stop = threading.Event()

    async def until_stopped() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.01)

    thread = threading.Thread(target=loop.run_until_complete, args=(until_stopped(),),
                              daemon=True)
    thread.start()
    try:
        yield responder
    finally:
        stop.set()
        thread.join(5)
        responder.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def client(source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(1.0)
    return sock


def answers(sock: socket.socket, wait_s: float = 0.3) -> list[bytes]:
    got, sock_timeout = [], sock.gettimeout()
    sock.settimeout(wait_s)
    try:
        while True:
            got.append(sock.recv(2048))
    except TimeoutError:
        return got
    finally:
        sock.settimeout(sock_timeout)


def test_one_spoofed_packet_does_not_start_a_ping_pong_between_two_responders():
    with responders({}, {}) as (loop, (a, b)):
        # A request whose source is responder a, sent to responder b: what a spoofer does.
        a.transport.sendto(encode_probe(7, 0, 1, 0), b.address)
        loop.run_until_complete(asyncio.sleep(3.0))  # count packets for a few seconds
        # b answers the request once; a gets a reply and never answers a reply.
        assert (b.echoed, a.echoed) == (1, 0)
        assert a.unanswered["reply"] == 1
        assert b.received + a.received == 1


def test_format_1_packets_replies_and_well_known_or_own_ports_get_no_answer():
    with responders({}) as (loop, [r]):
        old = b"CWL1" + bytes(24)  # what every format-1 responder echoed
        sock = client()
        sock.sendto(old, r.address)
        sock.sendto(encode_probe(1, 0, 1, 0, reply=True), r.address)
        r.transport.sendto(encode_probe(1, 0, 2, 0), r.address)  # from its own port
        loop.run_until_complete(asyncio.sleep(0.2))
        r.datagram_received(encode_probe(1, 0, 3, 0), ("127.0.0.1", 123))  # NTP, say
        r.datagram_received(encode_probe(1, 0, 4, 0), ("127.0.0.1", 7))  # echo
        loop.run_until_complete(asyncio.sleep(0.1))
        assert r.echoed == 0
        assert dict(r.unanswered) == {"invalid": 1, "reply": 1, "port": 3}
        sock.sendto(encode_probe(1, 0, 5, 0), r.address)  # a proper request still works
        loop.run_until_complete(asyncio.sleep(0.2))
        [reply] = answers(sock)
        got = decode_probe(reply)
        assert isinstance(got, ProbePacket) and got.reply and got.seq == 5
        sock.close()


def test_a_reply_is_never_longer_than_its_request():
    request = encode_probe(1, 2, 3, 4) + b"pad"
    assert len(reply_to(request)) == len(request)
    assert len(reply_to(encode_probe(1, 2, 3, 4, KEY), KEY)) == len(encode_probe(1, 2, 3, 4, KEY))
    assert len(encode_probe(1, 2, 3, 4)) == PACKET_SIZE


def test_each_source_is_rate_limited_on_its_own():
    with served(rate=50) as r:
        flood, other = client(), client("127.0.0.2")
        for seq in range(400):
            flood.sendto(encode_probe(1, 0, seq, 0), r.address)
        time.sleep(0.3)
        flooded = answers(flood)
        other.sendto(encode_probe(2, 0, 1, 0), r.address)
        assert len(answers(other)) == 1  # another source is not held back by the flood
        # A burst of 50, plus what 50 a second refills while the flood is read.
        assert 50 <= len(flooded) < 50 + 50
        # Whatever the kernel's buffers held of the flood was read, and refused as such.
        assert r.unanswered["rate_limited"] >= 100
        assert r.echoed == len(flooded) + 1
        flood.close()
        other.close()
    assert DEFAULT_RATE >= 100  # a 10 ms test prober (100 a second) is never limited


def test_with_a_key_only_signed_probes_are_answered_and_replies_are_signed():
    with served(key=KEY) as r:
        sock = client()
        sock.sendto(encode_probe(1, 0, 1, 0), r.address)  # unsigned
        sock.sendto(encode_probe(1, 0, 2, 0, b"another-key-of-16-bytes"), r.address)
        assert answers(sock) == []
        sock.sendto(encode_probe(1, 0, 3, 0, KEY), r.address)
        [reply] = answers(sock)
        got = decode_probe(reply, KEY)
        assert isinstance(got, ProbePacket) and got.reply and got.seq == 3
        assert decode_probe(reply, b"another-key-of-16-bytes") == "unauthenticated"
        assert r.unanswered["unauthenticated"] == 2
        sock.close()
    assert KEY.decode() not in repr(r)


def run_prober(port: int, key: bytes | None = None, window_s: float = 1.0) -> Prober:
    prober = Prober([target(port)], interval_s=0.02,
                    timeout_s=0.2, window_s=window_s, align_windows=False, key=key)
    asyncio.run(prober.run(windows=1))
    return prober


def test_a_prober_with_the_key_measures_and_one_without_it_gets_nothing():
    with served(key=KEY) as r:
        # 50 slots of 20 ms; a loop held up on a loaded machine skips a slot (and counts
        # it) rather than send in a burst: every slot is sent or counted skipped.
        prober = run_prober(r.address[1], KEY)
        [good] = prober.latest()
        assert good.sent + prober.skipped == 50 and good.received == good.sent
        prober = run_prober(r.address[1], b"the-wrong-key-of-16-bytes")
        [bad] = prober.latest()
        assert bad.sent + prober.skipped == 50 and bad.received == 0
    # Every probe of the wrong key's run (its window's, and those sent while it closed).
    assert r.unanswered["unauthenticated"] >= bad.sent and r.echoed >= good.sent


class Forger(asyncio.DatagramProtocol):
    """Stands where a responder should, sees every probe, and answers it wrongly."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.how == "other_port":  # the right reply, from somewhere else
            self.other.sendto(reply_to(data), addr)
        elif self.how == "request":  # the probe sent back unchanged, as format 1 did
            self.transport.sendto(data, addr)
        elif self.how == "unsigned":  # a reply without the key
            self.transport.sendto(reply_to(data), addr)


@pytest.mark.parametrize(("how", "key", "error"), [
    ("other_port", None, "unsolicited_reply"),
    ("request", None, "unsolicited_reply"),
    ("unsigned", KEY, "unauthenticated_reply"),
])
def test_the_prober_takes_only_replies_to_its_own_probes(how, key, error):
    async def go() -> Prober:
        loop = asyncio.get_running_loop()
        transport, forger = await loop.create_datagram_endpoint(
            lambda: Forger(how), local_addr=("127.0.0.1", 0))
        prober = Prober([target(transport.get_extra_info("sockname")[1])],
                        interval_s=0.02, timeout_s=0.2, window_s=0.5, align_windows=False,
                        key=key)
        try:
            await prober.run(windows=1)
        finally:
            transport.close()
            forger.other.close()
        return prober

    prober = asyncio.run(go())
    [result] = prober.latest()
    assert result.sent + prober.skipped == 25 and result.received == 0
    errors = prober.errors()  # every answer to the window's 25 probes and later ones
    assert set(errors) == {error} and errors[error] >= 25


def test_healthcheck_sends_a_proper_request_signed_when_asked(tmp_path, monkeypatch):
    with served() as plain:
        assert check(f"udp://127.0.0.1:{plain.address[1]}") is None
        assert plain.received == 1
    key_file = tmp_path / "probe.key"
    key_file.write_text(KEY.decode() + "\n", encoding="utf-8")
    with served(key=KEY) as keyed:
        port = keyed.address[1]
        assert check(f"udp://127.0.0.1:{port}?key_file={key_file}") is None
        monkeypatch.setenv("PROBE_KEY", KEY.decode())
        assert check(f"udp://127.0.0.1:{port}?key_env=PROBE_KEY") is None
        problem = check(f"udp://127.0.0.1:{port}", timeout_s=0.5)
        assert problem is not None and problem.startswith("no answer")


def test_probe_keys_are_read_from_a_file_or_the_environment_never_shown(tmp_path, monkeypatch):
    short = tmp_path / "short.key"
    short.write_text("tooshort", encoding="utf-8")
    with pytest.raises(ValueError, match="holds 8 bytes; a probe key needs at least 16") as info:
        read_probe_key(short)
    assert "tooshort" not in str(info.value)
    with pytest.raises(ValueError, match="is not set"):
        read_probe_key(env="NO_SUCH_PROBE_KEY")
    with pytest.raises(ValueError, match="cannot read the probe key file"):
        read_probe_key(tmp_path / "missing")
    monkeypatch.setenv("PROBE_KEY", f"  {KEY.decode()}\n")
    assert read_probe_key(env="PROBE_KEY") == KEY
    assert read_probe_key() is None


def test_cli_responder_refuses_a_missing_key_in_one_line():
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "computewatch", "responder", "--listen",
                           "127.0.0.1:0", "--key-env", "NO_SUCH_PROBE_KEY"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == ExitStatus.BAD_INPUT
    assert "the probe key variable NO_SUCH_PROBE_KEY is not set" in done.stderr
    assert "Traceback" not in done.stderr
