"""The `Responder`: the UDP echo service a site runs for its peers' probes.

`serve_responder` runs one until stopped (``computewatch responder``); `open_responder` binds
one on a running loop, as the simulator's links do; `new_responder_loop` is the loop whose
timers fire when asked, so held replies (tests, simulator) leave on time.
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
from collections.abc import Callable

try:
    import fcntl
except ImportError:  # not on Windows; the responder then holds replies from its wake-up
    fcntl = None  # type: ignore[assignment]

from computewatch.collectors.latency._wire import MAGIC, PACKET_SIZE, SIOCGSTAMPNS, TIMESPEC

__all__ = ["Responder", "new_responder_loop", "open_responder", "serve_responder"]

log = logging.getLogger(__package__)  # one logger per collector, named as before the split

_PR_SET_TIMERSLACK = 29  # Linux prctl


class Responder(asyncio.DatagramProtocol):
    """The UDP echo service a site runs for its peers' probes.

    Valid probe packets (at least `PACKET_SIZE` bytes starting with `MAGIC`) go back
    unchanged to their sender; anything else is ignored and counted in ``invalid``. For tests
    and the simulator, a reply can be held ``delay_s`` (plus up to ``jitter_s``, uniform) and
    a share ``drop_ratio`` of packets dropped, drawn from a generator seeded with ``seed``,
    so a test's loss is reproducible. Delays are timers on the loop, never a sleep, so one
    held packet never holds up the next; they count from the request's arrival in the kernel
    (Linux), and are only as exact as the loop's timers: run it on `new_responder_loop`.
    """

    def __init__(self, delay_s: float = 0.0, drop_ratio: float = 0.0, *, jitter_s: float = 0.0,
                 seed: int | None = None) -> None:
        if not delay_s >= 0 or not jitter_s >= 0:
            raise ValueError(f"delay_s and jitter_s must be >= 0, got {delay_s!r}, {jitter_s!r}")
        if not 0 <= drop_ratio <= 1:
            raise ValueError(f"drop_ratio must be in 0..1, got {drop_ratio!r}")
        self.delay_s, self.drop_ratio, self.jitter_s = delay_s, drop_ratio, jitter_s
        self._rng = random.Random(seed)
        self.received = self.echoed = self.dropped = self.invalid = 0
        self.transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stamps = fcntl is not None and sys.platform == "linux"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if len(data) < PACKET_SIZE or data[:4] != MAGIC:
            self.invalid += 1
            return
        self.received += 1
        if self.drop_ratio and self._rng.random() < self.drop_ratio:
            self.dropped += 1
            return
        delay = self.delay_s + (self._rng.uniform(0.0, self.jitter_s) if self.jitter_s else 0.0)
        loop = self._loop
        if delay > 0 and loop is not None:
            loop.call_at(self._arrival(loop) + delay, self._echo, data, addr)
        else:
            self._echo(data, addr)

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
        now, now_real = loop.time(), time.time()  # read together, after the system call
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
                         *, jitter_s: float = 0.0, seed: int | None = None) -> Responder:
    """Bind a `Responder` on the running loop; port 0 picks a free one (see ``.address``)."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: Responder(delay_s, drop_ratio, jitter_s=jitter_s, seed=seed),
        local_addr=(host, port))
    return protocol


def serve_responder(host: str, port: int, delay_s: float = 0.0, drop_ratio: float = 0.0,
                    stop: threading.Event | None = None, *, jitter_s: float = 0.0,
                    seed: int | None = None,
                    ready: Callable[[tuple[str, int]], None] | None = None) -> Responder:
    """Serve a `Responder` on host:port until ``stop`` is set (or forever); returns it.

    The loop is `new_responder_loop`'s. ``ready`` gets the bound address once packets are
    answered.
    """
    loop = new_responder_loop()
    responder: Responder | None = None
    try:
        responder = loop.run_until_complete(open_responder(
            host, port, delay_s, drop_ratio, jitter_s=jitter_s, seed=seed))
        log.info("responder listening on udp %s:%d", *responder.address)
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
