"""The `Prober`: many targets at once, each on its own drift-free schedule, in one event loop.

Probe kinds:

- ``udp``: a 32-byte request (magic ``CWL2``, flags, a per-prober session id, the target's
  index, a 64-bit sequence number, the send time in monotonic ns; plus a 16-byte HMAC tag
  with a shared key, see `_wire`) to a `Responder`, which answers with the same packet
  marked as a reply. The sequence number shows loss, duplicates and reordering. Only a
  reply to a probe this prober sent counts: it must come from the target's address and
  port, be marked as a reply, carry this prober's session id, a sequence number in flight
  and its send time, and (with a key) a valid tag; anything else is ignored and counted as
  ``invalid_reply``, ``unsolicited_reply`` or ``unauthenticated_reply``.
- ``tcp``: the time ``connect()`` takes (SYN to SYN-ACK), to any listening port. The socket is
  then closed with SO_LINGER 0 (a reset), so a prober never piles up TIME_WAIT sockets. A
  refused connection is a lost probe and is counted as ``connection_refused``.
- ``icmp``: an echo request through an unprivileged datagram socket (``socket(AF_INET,
  SOCK_DGRAM, IPPROTO_ICMP)``), allowed only where ``net.ipv4.ping_group_range`` includes the
  process's group. Where it is not, the ICMP targets are disabled with one clear log line
  (`ICMP_DISABLED`) and counted as ``icmp_not_permitted``, once per target; nothing crashes.

Schedule: probe k of target i is due at ``start + offset_i + k x interval`` on the loop's
monotonic clock. Offsets spread the targets evenly over one interval in send rounds at least
5 ms apart (1,000 targets at 1 s: 200 rounds of 5 probes, never one burst of 1,000), so the
loop wakes once per round. A late timer does not shift the grid; a round missed by more than
an interval is skipped (``Prober.skipped``), never sent in a burst to catch up. The send time
is taken right before ``sendto``, so the loop's timer lateness (epoll waits in whole
milliseconds: up to 1 ms) is scheduling drift, recorded in `Prober.drift`, not RTT error.

Decisions:

- RTT of UDP and ICMP probes: the kernel's receive stamp of the reply (SO_TIMESTAMPNS,
  CLOCK_REALTIME) minus the wall time taken just before ``sendto``, checked against the
  monotonic RTT so a clock step falls back to it. The prober's own wake-up and queueing are
  then not in the RTT, so replies are read at the next send round (and before a window
  closes) instead of on arrival: the loop wakes once per round, not twice per probe. Without
  kernel stamps (not Linux) replies are read on arrival and timed on the monotonic clock;
  TCP is always timed that way, from just before ``connect`` to its completion.
- A host name is resolved once, in the background; a failure is counted as
  ``resolve_failed`` and retried once per window, and the target's rounds are skipped until
  then (no window result: resolution is not the link's loss).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import ipaddress
import logging
import math
import os
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from computewatch.collectors.latency._targets import ProbeTarget
from computewatch.collectors.latency._windows import BUCKETS, WindowResult, percentile
from computewatch.collectors.latency._wire import (
    ANCILLARY,
    ICMP_ECHO,
    ICMP_HEADER,
    ICMP_PROTO,
    SO_TIMESTAMPNS,
    TIMESPEC,
    ProbePacket,
    decode_probe,
    encode_probe,
)
from computewatch.durations import parse_duration

__all__ = ["ICMP_DISABLED", "Prober", "Resolver"]

log = logging.getLogger(__package__)  # one logger per collector, named as before the split

ICMP_DISABLED = "ICMP probes disabled"
"""How the one log line (and `Prober.disabled`) starts when ICMP echo sockets are refused."""

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH}
_SLOT_S = 0.005  # send rounds at least this far apart: fewer wake-ups, still no burst
_MARGIN_S = 0.02  # a window is closed this long after its last probe's timeout
_GRACE = 2  # inflight probes are remembered for GRACE x timeout, to name late and duplicates


class _Probe:
    """One probe in flight; ``done`` 0 pending, 1 answered in time, 2 answered late."""

    __slots__ = ("done", "sent_ns", "sent_real_ns", "seq", "window")

    def __init__(self, seq: int, sent_ns: int, window: int, sent_real_ns: int = 0) -> None:
        self.seq, self.sent_ns, self.window, self.done = seq, sent_ns, window, 0
        self.sent_real_ns = sent_real_ns


class _Acc:
    """One target's open window."""

    __slots__ = ("duplicates", "jitter_n", "jitter_sum", "last_sent_ns", "late", "reordered",
                 "rtts", "sent")

    def __init__(self) -> None:
        self.sent = self.late = self.duplicates = self.reordered = self.jitter_n = 0
        self.rtts: list[float] = []
        self.jitter_sum = 0.0
        self.last_sent_ns = 0


class _State:
    """Everything the prober keeps about one target."""

    __slots__ = ("acc", "addr", "buckets", "count", "disabled", "family", "highest", "index",
                 "inflight", "jitter", "last_rtt", "order", "requests", "resolving", "retry_at",
                 "seq", "sum", "target")

    def __init__(self, index: int, target: ProbeTarget) -> None:
        self.index, self.target = index, target
        self.addr: tuple | None = None
        self.family = socket.AF_INET
        self.seq = 0
        self.inflight: dict[int, _Probe] = {}
        self.order: deque[_Probe] = deque()
        self.acc: dict[int, _Acc] = {}
        self.highest = -1
        self.jitter = 0.0
        self.last_rtt: float | None = None
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0
        self.requests = 0
        self.disabled = ""
        self.resolving = False
        self.retry_at = 0.0


class _Slot:
    """Targets probed together: round k is due at ``first + k x interval``."""

    __slots__ = ("first", "handle", "states")

    def __init__(self, first: float, states: list[_State]) -> None:
        self.first, self.states = first, states
        self.handle: asyncio.TimerHandle | None = None


Resolver = Callable[[str], Awaitable[str]]
"""Host name -> IP address literal; the one seam for name resolution (tests inject one)."""


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _sockaddr(ip: str, port: int) -> tuple[int, tuple]:
    if ipaddress.ip_address(ip).version == 6:
        return socket.AF_INET6, (ip, port, 0, 0)
    return socket.AF_INET, (ip, port)


class Prober:
    """Probes many targets at once, each on its own drift-free schedule, in one event loop.

    `run` until ``stop`` is set or ``windows`` windows are closed. Results: `latest` (the
    last closed window per target, also passed to ``on_result``), `histograms`, `errors`,
    `disabled`, `drift` (send time minus scheduled time, the last ``drift_samples``),
    `skipped` (slots missed by a held-up loop) and `stray` (replies to probes already
    forgotten). With ``key`` (see `read_probe_key`) probes are signed and only replies
    signed with the same key count. The read methods may be called from other threads.
    """

    def __init__(self, targets: Sequence[ProbeTarget], *, interval_s: float | str = 1.0,
                 timeout_s: float | str = 1.0, window_s: float | str = 60.0,
                 align_windows: bool = True,
                 on_result: Callable[[WindowResult], None] | None = None,
                 resolver: Resolver | None = None, drift_samples: int = 10_000,
                 key: bytes | None = None) -> None:
        self.targets = list(targets)
        self._key = key or None
        self.interval_s = parse_duration(interval_s)
        self.timeout_s = parse_duration(timeout_s)
        self.window_s = parse_duration(window_s)
        if self.interval_s > self.window_s:
            raise ValueError(f"probe interval {self.interval_s:g} s is longer than the "
                             f"window {self.window_s:g} s")
        if self.timeout_s > self.window_s:
            raise ValueError(f"probe timeout {self.timeout_s:g} s is longer than the "
                             f"window {self.window_s:g} s")
        self.align_windows = align_windows
        self.on_result = on_result
        self._resolver = resolver
        self._states = [_State(i, t) for i, t in enumerate(self.targets)]
        self._timeout_ns = int(self.timeout_s * 1e9)
        self._session = random.getrandbits(32)
        self._lock = threading.Lock()
        self._latest: dict[int, WindowResult] = {}
        self._errors: Counter[str] = Counter()
        self._logged: set[tuple[int, str]] = set()
        self.drift: deque[float] = deque(maxlen=drift_samples)
        self.skipped = 0
        self.stray = 0
        self.windows_closed = 0
        self._socks: dict[tuple[str, int], socket.socket] = {}
        self._icmp_refused: dict[int, tuple[str, str]] = {}  # family -> (error_type, reason)
        self._polled: list[tuple[socket.socket, str, int]] = []  # read at each round
        self._slots: list[_Slot] = []
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._wall_minus_mono = 0.0
        self._window_limit: int | None = None
        self._done: asyncio.Future | None = None
        self._window_handle: asyncio.TimerHandle | None = None

    # --- reading results (any thread) ------------------------------------------------------

    def latest(self) -> list[WindowResult]:
        """The last closed window of every target that has one, in target order."""
        with self._lock:
            return [self._latest[i] for i in sorted(self._latest)]

    def histograms(self) -> list[tuple[ProbeTarget, int, list[int], int, float]]:
        """(target, requests, cumulative bucket counts incl. +Inf, count, sum) per target.

        The event loop records a reply without this lock, so a read can fall between its
        bucket and its count: the count given is the +Inf bucket's, which a histogram's
        count must equal (the sum may lag by that one reply)."""
        out = []
        with self._lock:
            for st in self._states:
                running, cumulative = 0, []
                for n in st.buckets:
                    running += n
                    cumulative.append(running)
                out.append((st.target, st.requests, cumulative, cumulative[-1], st.sum))
        return out

    def errors(self) -> dict[str, int]:
        """Probe errors since start, by error_type."""
        with self._lock:
            return dict(self._errors)

    @property
    def disabled(self) -> dict[ProbeTarget, str]:
        """Targets the prober gave up on, with the reason."""
        return {st.target: st.disabled for st in self._states if st.disabled}

    # --- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None, *, windows: int | None = None) -> None:
        """Probe until ``stop`` is set or ``windows`` windows are closed (None: no limit)."""
        if self._loop is not None:
            raise RuntimeError("a Prober runs once; make a new one")
        loop = self._loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._window_limit = windows
        start = loop.time() + 0.01
        self._wall_minus_mono = time.time() - loop.time()
        if self.align_windows:  # window boundaries on UTC multiples of the window
            wall = start + self._wall_minus_mono
            self._t0 = start - (wall % self.window_s)
        else:
            self._t0 = start
        n = max(len(self._states), 1)
        try:
            self._open_icmp()
            for st in self._states:
                literal = _literal(st.target.host)
                if literal is not None:
                    st.family, st.addr = _sockaddr(literal, st.target.port)
            # Targets share send slots at least _SLOT_S apart, spread over one interval:
            # 1,000 targets at 1 s are 200 rounds of 5 probes, never one burst of 1,000.
            rounds = max(1, min(n, int(self.interval_s / _SLOT_S)))
            for j in range(rounds):
                slot = _Slot(start + self.interval_s * j / rounds,
                             [st for st in self._states if st.index * rounds // n == j])
                if slot.states:
                    slot.handle = loop.call_at(slot.first, self._fire, slot, 0)
                    self._slots.append(slot)
            self._window_handle = loop.call_at(self._close_time(0), self._window_tick, 0)
            if stop is None:
                await self._done
            else:
                waiter = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({waiter, self._done}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for slot in self._slots:
            if slot.handle is not None:
                slot.handle.cancel()
        if self._window_handle is not None:
            self._window_handle.cancel()
        for task in list(self._tasks):
            task.cancel()
        assert self._loop is not None
        for sock in self._socks.values():
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._socks.clear()
        self._polled.clear()

    def _close_time(self, w: int) -> float:
        return self._t0 + (w + 1) * self.window_s + self.timeout_s + _MARGIN_S

    # --- errors ----------------------------------------------------------------------------

    def _error(self, st: _State | None, error_type: str, detail: object) -> None:
        with self._lock:
            self._errors[error_type] += 1
        key = (st.index if st is not None else -1, error_type)
        what = str(st.target) if st is not None else "latency prober"
        if key not in self._logged:  # one warning per target and kind, then debug
            self._logged.add(key)
            log.warning("%s: %s: %s", what, error_type, detail)
        else:
            log.debug("%s: %s: %s", what, error_type, detail)

    # --- sockets ---------------------------------------------------------------------------

    def _open_icmp(self) -> None:
        """Open the ICMP sockets the literal targets need now, so a refusal shows at once."""
        for st in self._states:
            if st.target.kind == "icmp" and st.addr is not None:
                self._socket("icmp", st.family)

    def _socket(self, kind: str, family: int) -> socket.socket | None:
        """The shared socket of this kind and family; None where ICMP is refused."""
        sock = self._socks.get((kind, family))
        if sock is not None:
            return sock
        if kind == "icmp" and family in self._icmp_refused:
            return None
        try:
            if kind == "icmp":
                sock = socket.socket(family, socket.SOCK_DGRAM, ICMP_PROTO[family])
            else:
                sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            if kind != "icmp":
                raise
            self._icmp_refused[family] = self._icmp_refusal(exc)
            reason = self._icmp_refused[family][1]
            n = sum(1 for st in self._states if st.target.kind == "icmp")
            log.warning("latency: %s (%d icmp target(s))", reason, n)
            return None
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # capped at rmem_max; a smaller buffer still works
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        stamped = False
        if sys.platform == "linux" and ANCILLARY:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                stamped = True
            except OSError as exc:
                log.info("latency: no kernel receive time stamps (%s): RTTs include the "
                         "loop's wake-up", exc)
        assert self._loop is not None
        if stamped:  # read at the next send round: the kernel's stamps keep the RTTs exact
            self._polled.append((sock, kind, family))
        else:  # no stamps: read on arrival, so the loop's wake-up is all that is added
            self._loop.add_reader(sock.fileno(), self._on_readable, sock, kind, family, False)
        self._socks[(kind, family)] = sock
        return sock

    @staticmethod
    def _icmp_refusal(exc: OSError) -> tuple[str, str]:
        """(error_type, the one clear message) for a refused ICMP echo socket."""
        if not isinstance(exc, PermissionError):
            return "icmp_unavailable", f"{ICMP_DISABLED}: no ICMP echo socket here ({exc})"
        try:
            with open("/proc/sys/net/ipv4/ping_group_range", encoding="ascii") as f:
                allowed = " ".join(f.read().split())
        except OSError:
            allowed = "unknown"
        return "icmp_not_permitted", (
            f"{ICMP_DISABLED}: the kernel does not allow unprivileged ICMP echo sockets for "
            f"this process's groups {sorted({os.getgid(), *os.getgroups()})} "
            f"(net.ipv4.ping_group_range is {allowed!r}); allow them with "
            "sysctl -w net.ipv4.ping_group_range='0 2147483647', or probe these links with "
            "udp or tcp")

    def _disable(self, st: _State, error_type: str, reason: str) -> None:
        """Give up on one target for good, counted once."""
        st.disabled = reason
        with self._lock:
            self._errors[error_type] += 1
        log.debug("%s: disabled: %s", st.target, reason)

    # --- the schedule ----------------------------------------------------------------------

    def _fire(self, slot: _Slot, k: int) -> None:
        """Send the slot's k-th round, after reading the replies that have arrived."""
        loop = self._loop
        assert loop is not None
        for polled in self._polled:
            self._on_readable(*polled, True)
        live = [st for st in slot.states if not st.disabled]
        if not live:  # every target here given up for good: no more rounds
            return
        now = loop.time()
        scheduled = slot.first + k * self.interval_s
        nxt = k + 1
        if now > slot.first + nxt * self.interval_s:  # the loop was held up: skip, don't burst
            caught_up = int((now - slot.first) // self.interval_s) + 1
            self.skipped += (caught_up - nxt) * len(live)
            nxt = caught_up
        # The next round is booked before this one's work, so nothing here can end the slot.
        slot.handle = loop.call_at(slot.first + nxt * self.interval_s, self._fire, slot, nxt)
        window = int((scheduled - self._t0) // self.window_s)
        for st in live:
            if st.addr is None:
                if not st.resolving and now >= st.retry_at:
                    st.resolving = True
                    self._spawn(self._resolve(st))
                continue
            self.drift.append(loop.time() - scheduled)
            self._send(st, window)

    def _spawn(self, coro: Awaitable[None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, st: _State) -> None:
        assert self._loop is not None
        try:
            if self._resolver is not None:
                ip = await self._resolver(st.target.host)
            else:
                infos = await self._loop.getaddrinfo(st.target.host, None,
                                                     type=socket.SOCK_DGRAM)
                ip = infos[0][4][0]
            st.family, st.addr = _sockaddr(ip, st.target.port)
            log.info("%s: resolved to %s", st.target, ip)
        except (OSError, ValueError, IndexError) as exc:
            st.retry_at = self._loop.time() + self.window_s
            self._error(st, "resolve_failed", f"cannot resolve {st.target.host!r}: {exc}")
        finally:
            st.resolving = False

    def _send(self, st: _State, window: int) -> None:
        kind = st.target.kind
        sock = None
        if kind != "tcp":
            try:
                sock = self._socket(kind, st.family)
            except OSError as exc:  # no UDP socket (no IPv6, no file descriptors): next round
                self._error(st, "send_failed", f"cannot open a UDP socket: {exc}")
                return
            if sock is None:  # ICMP refused for this family: disabled, counted once
                self._disable(st, *self._icmp_refused[st.family])
                return
        acc = st.acc.get(window)
        if acc is None:
            acc = st.acc[window] = _Acc()
        order, inflight = st.order, st.inflight
        now_ns = time.monotonic_ns()
        keep_ns = _GRACE * self._timeout_ns
        while order and now_ns - order[0].sent_ns > keep_ns:  # forget the long-answered
            del inflight[order.popleft().seq]
        seq = st.seq
        st.seq += 1
        acc.sent += 1
        st.requests += 1
        if kind == "tcp":
            probe = _Probe(seq, now_ns, window)
            inflight[seq] = probe
            order.append(probe)
            acc.last_sent_ns = now_ns
            self._spawn(self._tcp(st, probe))
            return
        assert st.addr is not None and sock is not None
        if kind == "icmp":
            request, _ = ICMP_ECHO[st.family]
            head = ICMP_HEADER.pack(request, 0, 0, 0, seq & 0xFFFF)
            addr = (st.addr[0], 0, 0, 0) if st.family == socket.AF_INET6 else (st.addr[0], 0)
        else:
            head, addr = b"", st.addr
        sent_ns = time.monotonic_ns()  # the probe's identity, and its time without stamps
        packet = head + encode_probe(self._session, st.index, seq, sent_ns, self._key)
        real_ns = time.time_ns()  # matched with the kernel's receive time stamp
        probe = _Probe(seq, sent_ns, window, real_ns)
        inflight[seq] = probe
        order.append(probe)
        acc.last_sent_ns = sent_ns
        try:
            sock.sendto(packet, addr)
        except (BlockingIOError, InterruptedError) as exc:
            self._error(st, "send_failed", f"send buffer full: {exc}")
        except OSError as exc:
            self._error(st, "unreachable" if exc.errno in _UNREACHABLE else "send_failed", exc)

    async def _tcp(self, st: _State, probe: _Probe) -> None:
        loop = self._loop
        assert loop is not None and st.addr is not None
        try:
            sock = socket.socket(st.family, socket.SOCK_STREAM)
        except OSError as exc:
            self._error(st, "send_failed", exc)
            return
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            probe.sent_ns = time.monotonic_ns()
            await asyncio.wait_for(loop.sock_connect(sock, st.addr), self.timeout_s)
            self._on_reply(st, probe.seq, probe.sent_ns, time.monotonic_ns())
        except TimeoutError:
            pass  # lost: the window counts it
        except ConnectionRefusedError as exc:
            self._error(st, "connection_refused", exc)
        except OSError as exc:
            unreachable = exc.errno in _UNREACHABLE
            self._error(st, "unreachable" if unreachable else "send_failed", exc)
        finally:
            sock.close()

    # --- replies ---------------------------------------------------------------------------

    def _on_readable(self, sock: socket.socket, kind: str, family: int, stamped: bool) -> None:
        reply_type = ICMP_ECHO[family][1]
        for _ in range(4096):  # drain, but let timers run between large bursts
            rx_real_ns = 0
            try:
                if stamped:
                    data, ancillary, _, source = sock.recvmsg(2048, ANCILLARY)
                    for level, ctype, cdata in ancillary:
                        if (level == socket.SOL_SOCKET and ctype == SO_TIMESTAMPNS
                                and len(cdata) >= TIMESPEC.size):
                            sec, nsec = TIMESPEC.unpack_from(cdata)
                            rx_real_ns = sec * 1_000_000_000 + nsec
                else:
                    data, source = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("latency %s socket: %s", kind, exc)
                return
            recv_ns = time.monotonic_ns()
            if kind == "icmp":
                if len(data) < ICMP_HEADER.size or data[0] != reply_type:
                    continue  # not an echo reply
                data = data[ICMP_HEADER.size:]
            probe = decode_probe(data, self._key)
            if not isinstance(probe, ProbePacket):
                error = "invalid_reply" if probe == "invalid" else "unauthenticated_reply"
                self._error(None, error, f"{len(data)}-byte {kind} datagram from {source[0]}")
                continue
            st = self._states[probe.index] if probe.index < len(self._states) else None
            # The kernel echoes an ICMP payload unchanged, so it comes back a request.
            if (probe.session != self._session or st is None or st.target.kind != kind
                    or probe.reply != (kind == "udp") or not self._from_target(st, source)):
                self._error(None, "unsolicited_reply", f"{kind} datagram from {source[0]} "
                            "is not a reply to this prober")
                continue
            self._on_reply(st, probe.seq, probe.sent_ns, recv_ns, rx_real_ns)

    @staticmethod
    def _from_target(st: _State, source: tuple) -> bool:
        """The datagram came from the address probed (and, for UDP, its port)."""
        if st.addr is None:
            return False
        if st.target.kind == "icmp":
            return source[0] == st.addr[0]
        return tuple(source[:2]) == tuple(st.addr[:2])

    def _on_reply(self, st: _State, seq: int, sent_ns: int, recv_ns: int,
                  rx_real_ns: int = 0) -> None:
        """Account one reply. The RTT is the kernel's receive stamp minus the send time
        (both CLOCK_REALTIME) where there is one and it is consistent with the monotonic
        RTT (a clock step would make it wrong), else the monotonic RTT in user space."""
        probe = st.inflight.get(seq)
        if probe is None or probe.sent_ns != sent_ns:
            self.stray += 1  # answered after its window closed, or not ours
            return
        acc = st.acc.get(probe.window)
        if acc is None:
            self.stray += 1
            return
        if probe.done:
            acc.duplicates += 1
            return
        rtt_ns = recv_ns - sent_ns
        if rx_real_ns and probe.sent_real_ns:
            kernel_ns = rx_real_ns - probe.sent_real_ns
            if 0 < kernel_ns <= rtt_ns + 100_000:  # the stamp precedes our own clock read
                rtt_ns = kernel_ns
        rtt = rtt_ns / 1e9
        if rtt_ns > self._timeout_ns:
            probe.done = 2
            acc.late += 1
            return
        probe.done = 1
        if seq < st.highest:
            acc.reordered += 1
        else:
            st.highest = seq
        acc.rtts.append(rtt)
        if st.last_rtt is not None:
            st.jitter += (abs(rtt - st.last_rtt) - st.jitter) / 16.0
            acc.jitter_sum += st.jitter
            acc.jitter_n += 1
        st.last_rtt = rtt
        with self._lock:
            st.buckets[bisect.bisect_left(BUCKETS, rtt)] += 1
            st.count += 1
            st.sum += rtt

    # --- windows ---------------------------------------------------------------------------

    def _window_tick(self, w: int) -> None:
        assert self._loop is not None
        self._window_handle = self._loop.call_at(self._close_time(w + 1), self._window_tick,
                                                 w + 1)
        self._close_window(w)

    def _close_window(self, w: int) -> None:
        assert self._loop is not None
        for polled in self._polled:  # every reply that has arrived counts
            self._on_readable(*polled, True)
        now_ns = time.monotonic_ns()
        later_ns = 0
        closed: list[tuple[int, WindowResult]] = []
        for st in self._states:
            acc = st.acc.get(w)
            if acc is None:
                continue
            ready_ns = acc.last_sent_ns + self._timeout_ns
            if ready_ns > now_ns:  # sent late by a held-up loop: give it its full timeout
                later_ns = max(later_ns, ready_ns)
                continue
            del st.acc[w]
            closed.append((st.index, self._result(st, w, acc)))
        if closed:
            with self._lock:
                self._latest.update(closed)
            self._publish([r for _, r in closed])
        if later_ns:
            delay = (later_ns - now_ns) / 1e9 + _MARGIN_S
            self._loop.call_later(delay, self._close_window, w)
            return
        self.windows_closed += 1
        limit = self._window_limit
        if (limit is not None and self.windows_closed >= limit and self._done is not None
                and not self._done.done()):
            self._done.set_result(None)

    def _publish(self, closed: list[WindowResult]) -> None:
        for r in closed:
            if r.duplicates or r.reordered or r.late:
                log.info("%s: window ending %s: %d duplicate, %d reordered, %d late replies",
                         r.target, r.end.isoformat(), r.duplicates, r.reordered, r.late)
            if self.on_result is not None:
                try:
                    self.on_result(r)
                except Exception:  # a consumer's bug must not stop the probes
                    log.exception("latency: on_result callback failed")

    def _result(self, st: _State, w: int, acc: _Acc) -> WindowResult:
        start_mono = self._t0 + w * self.window_s
        start = datetime.fromtimestamp(start_mono + self._wall_minus_mono, UTC)
        end = datetime.fromtimestamp(start_mono + self.window_s + self._wall_minus_mono, UTC)
        rtts = sorted(acc.rtts)
        return WindowResult(
            target=st.target, start=start, end=end, sent=acc.sent, received=len(rtts),
            late=acc.late, duplicates=acc.duplicates, reordered=acc.reordered,
            rtt_min_s=rtts[0] if rtts else math.nan,
            rtt_p50_s=percentile(rtts, 0.50), rtt_p95_s=percentile(rtts, 0.95),
            rtt_p99_s=percentile(rtts, 0.99), rtt_max_s=rtts[-1] if rtts else math.nan,
            jitter_s=acc.jitter_sum / acc.jitter_n if acc.jitter_n else math.nan,
            rtts=tuple(rtts))
