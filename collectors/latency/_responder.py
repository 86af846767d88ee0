"""The `Responder`: the UDP service a site runs to answer its peers' probes.

`serve_responder` runs one until stopped (``computewatch responder``); `open_responder` binds
one on a running loop, as the simulator's links do; `new_responder_loop` is the loop whose
timers fire when asked, so held replies (tests, simulator) leave on time.

It listens on every site's UDP 9410, so it must never be a reflector: it answers only
requests (never a reply, so two responders cannot bounce a packet between them), never a
source port below 1024 (echo, chargen, DNS, NTP...) or its own port, at most `rate`
packets a second per source address, never with more bytes than it received, and with a
shared key only probes signed with it. Everything it does not answer is counted by reason.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import selectors
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

try:
    import fcntl
except ImportError:  # not on Windows; the responder then holds replies from its wake-up
    fcntl = None  # type: ignore[assignment]

from computewatch.collectors.latency._wire import (
    SIOCGSTAMPNS,
    TIMESPEC,
    ProbePacket,
    decode_probe,
    reply_to,
)

__all__ = ["DEFAULT_RATE", "DROP_REASONS", "Responder", "new_responder_loop", "open_responder",
           "serve_responder"]

log = logging.getLogger(__package__)  # one logger per collector, named as before the split

_PR_SET_TIMERSLACK = 29  # Linux prctl
_SOURCES = 4096  # source addresses whose rate is tracked; the least recent is forgotten

DEFAULT_RATE = 200.0
"""Probes a second answered per source address (and as many in a burst). A site probes
each peer once a second; a burst above this is a flood, not a prober."""

DROP_REASONS = ("invalid", "reply", "port", "rate_limited", "unauthenticated", "drop_ratio")
"""Why a datagram went unanswered (`Responder.unanswered`): not a probe of this format, a
reply, from a well-known port or the responder's own, over the source's rate, not signed
with the key, or dropped on purpose (``drop_ratio``, tests and the simulator)."""


class _Bucket:
    """A token bucket: ``rate`` a second, at most ``rate`` saved up."""

    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens, self.at = tokens, at


class Responder(asyncio.DatagramProtocol):
    """The UDP service a site runs to answer its peers' probes.

    A request (at least `PACKET_SIZE` bytes starting with `MAGIC`, the reply flag clear)
    goes back to its sender as a reply: the same bytes with the reply flag set. Anything
    else is not answered and counted in `unanswered` by reason (`DROP_REASONS`). ``key``
    (at least 16 bytes, see `read_probe_key`) makes it answer only probes signed with that
    key, and sign its replies. ``rate`` caps the probes answered per source address and
    second (None: no cap). For tests and the simulator, a reply can be held ``delay_s``
    (plus up to ``jitter_s``, uniform) and a share ``drop_ratio`` of probes dropped, drawn
    from a generator seeded with ``seed``, so a test's loss is reproducible. Delays are
    timers on the loop, never a sleep, so one held packet never holds up the next; they
    count from the request's arrival in the kernel (Linux), and are only as exact as the
    loop's timers: run it on `new_responder_loop`.
    """

    def __init__(self, delay_s: float = 0.0, drop_ratio: float = 0.0, *, jitter_s: float = 0.0,
                 seed: int | None = None, key: bytes | None = None,
                 rate: float | None = DEFAULT_RATE) -> None:
        if not delay_s >= 0 or not jitter_s >= 0:
            raise ValueError(f"delay_s and jitter_s must be >= 0, got {delay_s!r}, {jitter_s!r}")
        if not 0 <= drop_ratio <= 1:
            raise ValueError(f"drop_ratio must be in 0..1, got {drop_ratio!r}")
        if rate is not None and not 0 < rate < float("inf"):
            raise ValueError(f"rate must be a positive number of probes a second, got {rate!r}")
        self.delay_s, self.drop_ratio, self.jitter_s = delay_s, drop_ratio, jitter_s
        self.rate = rate
        self._key = key or None
        self._rng = random.Random(seed)
        self.received = self.echoed = 0
        self.unanswered: Counter[str] = Counter()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._own_port = -1
        self._stamps = fcntl is not None and sys.platform == "linux"

    def __repr__(self) -> str:  # the key stays out of every repr and log line
        keyed = "signed" if self._key else "unsigned"
        return f"<Responder {keyed}, {self.echoed} answered, {dict(self.unanswered)} not>"

    @property
    def invalid(self) -> int:
        """Datagrams that were not a probe of this format (`unanswered` ``invalid``)."""
        return self.unanswered["invalid"]

    @property
    def dropped(self) -> int:
        """Probes dropped on purpose (``drop_ratio``)."""
        return self.unanswered["drop_ratio"]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        sockname = transport.get_extra_info("sockname")
        if sockname:
            self._own_port = sockname[1]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        why = self._refuse(data, addr)
        if why:
            self.unanswered[why] += 1
            return
        self.received += 1
        if self.drop_ratio and self._rng.random() < self.drop_ratio:
            self.unanswered["drop_ratio"] += 1
            return
        reply = reply_to(data, self._key)
        delay = self.delay_s + (self._rng.uniform(0.0, self.jitter_s) if self.jitter_s else 0.0)
        loop = self._loop
        if delay > 0 and loop is not None:
            loop.call_at(self._arrival(loop) + delay, self._echo, reply, addr)
        else:
            self._echo(reply, addr)

    def _refuse(self, data: bytes, addr: tuple) -> str:
        """Why this datagram gets no answer; empty when it does."""
        port = addr[1]
        if port < 1024 or port == self._own_port:
            return "port"
        probe = decode_probe(data, self._key)
        if not isinstance(probe, ProbePacket):
            return probe
        if probe.reply:
            return "reply"
        if self.rate is not None and not self._take(addr[0]):
            return "rate_limited"
        return ""

    def _take(self, source: str) -> bool:
        """One token from ``source``'s bucket; False when it has none left."""
        now = time.monotonic()
        rate = self.rate
        assert rate is not None
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(rate, now)
            if len(self._buckets) > _SOURCES:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
            bucket.tokens = min(rate, bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _arrival(self, loop: asyncio.AbstractEventLoop) -> float:
        """When the datagram just read reached this host, on the loop's clock: the kernel's
        receive stamp (SIOCGSTAMPNS) where there is one, so a held reply leaves ``delay``
        after the request arrived, not after this loop woke up; else now."""
        if not self._stamps or self.transport is None:
            return loop.time()
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return loop.time()
        try:
            sec, nsec = TIMESPEC.unpack(fcntl.ioctl(sock.fileno(), SIOCGSTAMPNS,
                                                     bytes(TIMESPEC.size)))
        except OSError as exc:  # ENOENT for the very first datagram: stamping starts now
            if exc.errno != errno.ENOENT:
                self._stamps = False
            return loop.time()
        # Both clocks after the system call, the wall clock first: a pause between the two
        # reads (the thread preempted) then makes the arrival late, never early, so a held
        # reply never leaves before its delay. Read the other way round, such a pause makes
        # the reply early: the slow suite once timed a 12 ms responder at 11.73 ms.
        now_real, now = time.time(), loop.time()
        queued = now_real - (sec + nsec / 1e9)
        return now - queued if 0.0 <= queued < 0.1 else now

    def _echo(self, data: bytes, addr: tuple) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)
            self.echoed += 1

    def error_received(self, exc: Exception) -> None:
        log.debug("responder: %s", exc)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) it is bound to, with the real port when 0 was asked for."""
        if self.transport is None:
            raise RuntimeError("responder not bound")
        sockname = self.transport.get_extra_info("sockname")
        return sockname[0], sockname[1]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_responder(host: str, port: int, delay_s: float = 0.0, drop_ratio: float = 0.0,
                         *, jitter_s: float = 0.0, seed: int | None = None,
                         key: bytes | None = None,
                         rate: float | None = DEFAULT_RATE) -> Responder:
    """Bind a `Responder` on the running loop; port 0 picks a free one (see ``.address``)."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: Responder(delay_s, drop_ratio, jitter_s=jitter_s, seed=seed, key=key,
                          rate=rate),
        local_addr=(host, port))
    return protocol


def serve_responder(host: str, port: int, delay_s: float = 0.0, drop_ratio: float = 0.0,
                    stop: threading.Event | None = None, *, jitter_s: float = 0.0,
                    seed: int | None = None,
                    ready: Callable[[tuple[str, int]], None] | None = None,
                    key: bytes | None = None,
                    rate: float | None = DEFAULT_RATE) -> Responder:
    """Serve a `Responder` on host:port until ``stop`` is set (or forever); returns it.

    The loop is `new_responder_loop`'s. ``ready`` gets the bound address once packets are
    answered.
    """
    loop = new_responder_loop()
    responder: Responder | None = None
    try:
        responder = loop.run_until_complete(open_responder(
            host, port, delay_s, drop_ratio, jitter_s=jitter_s, seed=seed, key=key, rate=rate))
        log.info("responder listening on udp %s:%d (%s probes)", *responder.address,
                 "signed" if key else "unsigned")
        if ready is not None:
            ready(responder.address)
        loop.run_until_complete(_until(stop))
        return responder
    finally:
        if responder is not None:
            responder.close()
            loop.run_until_complete(asyncio.sleep(0))  # let the transport close
        loop.close()


def new_responder_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers fire when asked, for responders; run it in this thread.

    Held replies must leave on time, so the loop waits with select(), not epoll (epoll
    rounds its timeout up to whole milliseconds, which would add up to 1 ms to every held
    reply), and on Linux this thread's timer slack is set to 1 ns (default 50 µs). select()
    takes file descriptors below 1024 only: a few responder sockets, not thousands. Several
    responders can share one such loop (`open_responder`), as the simulator's links do.
    """
    if sys.platform == "linux":
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
        except (OSError, AttributeError) as exc:
            log.debug("responder: timer slack unchanged: %s", exc)
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


async def _until(stop: threading.Event | None) -> None:
    """Return once ``stop`` is set; never, without one."""
    if stop is None:
        await asyncio.get_running_loop().create_future()
    while not stop.is_set():  # type: ignore[union-attr]
        await asyncio.sleep(0.05)
