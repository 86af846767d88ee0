"""Inter-site latency: UDP, TCP and ICMP probes on a drift-free grid, one series per link.

Each site probes its peers (`targets_from_topology` picks them from the topology's links, each
target knowing its tier, fiber minimum and budget) and runs a `Responder`, the UDP echo
service its peers probe. The `Prober` runs on asyncio: every target on its own schedule, all
in one event loop and, for UDP and ICMP, on one shared socket per address family, so 1,000
targets cost one thread. `LatencyCollector` runs a Prober in a background thread and hands the
agent the last completed window of every target plus the cumulative histograms.

Probe kinds:

- ``udp``: a 28-byte packet (magic ``CWL1``, a per-prober session id, the target's index, a
  64-bit sequence number, the send time in monotonic ns) to a `Responder`, which echoes it
  back unchanged. The sequence number shows loss, duplicates and reordering; the session id
  and the echoed send time must match what the prober remembers, anything else is ignored.
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

Windows: a probe belongs to the window its *scheduled* time falls in; windows are aligned to
UTC multiples of the window length (the first one is partial). A window is closed once its
last probe has had ``timeout`` to answer. Per target and window (`WindowResult`):

- min, p50, p95, p99, max of the replies' RTTs: exact percentiles over the window's replies,
  linear interpolation between closest ranks (numpy's default); NaN without a reply.
- loss ratio: (sent - unique sequence numbers answered within the timeout) / sent. A reply
  after the timeout is *late* and counts as lost. A probe that could not be sent (an error
  on ``sendto``, a refused connection) counts as sent and lost.
- jitter: RFC 3550's interarrival estimator ``J += (|D| - J) / 16``, D the difference of
  consecutive replies' RTTs in arrival order. It runs continuously across windows as RTP's
  does (no restart bias at each window), and the window reports its mean over the window's
  replies: its value at one instant reflects only the last ~16 replies, so one late outlier
  would swing a window's figure.
- route inflation: window minimum RTT / the link's fiber minimum. NaN where the fiber minimum
  is below `MIN_FIBER_RTT_S` (1 µs, 100 m of fiber: loopback and same-building tests), where
  the ratio would be meaningless, and in windows without a reply.
- duplicates (a second reply to one sequence number), reordered (a reply whose sequence
  number is below the highest already answered, RFC 4737's notion) and late replies are
  counted on the `WindowResult` and logged; the catalogue has no field for them yet.

The cumulative histogram per target uses smokeping_prober's buckets (`BUCKETS`: 50 µs x 2^k,
k = 0..19, then +Inf) over the replies within the timeout, so ``requests_total -
rtt_seconds_count`` is the loss since start, as smokeping's requests minus responses.

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
- Sample times: the window's results carry the window's end (UTC), so the same window
  written twice is one point; the cumulative series carry the collection time.
- One prober per site: link series carry no node label, so two nodes of one site probing the
  same peers would write the same series.

Metrics
-------

- link_latency
  - tags:
    - src_site, dst_site (the probing site and its peer), src_hub, dst_hub (their hubs)
    - tier (``metro`` | ``regional`` | ``national``), probe (``udp`` | ``tcp`` | ``icmp``)
    - le (rtt_seconds_bucket only: upper bound in seconds, ``5e-05`` .. ``26.2144``, ``+Inf``)
  - fields:
    - rtt_min_seconds (float, seconds): per window; NaN without a reply
    - rtt_p50_seconds (float, seconds): per window, exact; NaN without a reply
    - rtt_p95_seconds (float, seconds): per window, exact; NaN without a reply
    - rtt_p99_seconds (float, seconds): per window, exact; NaN without a reply
    - rtt_max_seconds (float, seconds): per window; NaN without a reply
    - loss_ratio (float, ratio 0..1): per window, late replies counted as lost
    - jitter_seconds (float, seconds): RFC 3550 estimator, its mean over the window's replies
    - samples (float, count): probes sent in the window
    - fiber_min_seconds (float, seconds): the link's physical minimum RTT (topology)
    - budget_seconds (float, seconds): the link's tier budget as an RTT (policy)
    - route_inflation (float, factor): window min RTT / fiber minimum; NaN below 1 µs
    - late (float, count): replies in the window after the probe timeout (lost)
    - duplicates (float, count): replies in the window for a probe already answered
    - reordered (float, count): replies in the window that came after a later probe's
    - requests_total (float, count, counter): probes sent since the prober started
    - rtt_seconds_bucket (float, count, counter): replies with RTT <= le, since start
    - rtt_seconds_count (float, count, counter): replies within the timeout, since start
    - rtt_seconds_sum (float, seconds, counter): sum of their RTTs, since start
- agent
  - tags: node, site, cluster, hub, collector (``latency``), error_type
    (``resolve_failed``, ``connection_refused``, ``unreachable``, ``send_failed``,
    ``icmp_not_permitted``, ``icmp_unavailable``, ``invalid_reply``)
  - fields:
    - collector_errors_total (float, count, counter): probe errors since the prober started

Example output (line protocol)::

    link_latency,dst_hub=jjj,dst_site=zjk-b,probe=udp,src_hub=jjj,src_site=zjk-a,tier=metro budget_seconds=0.001,fiber_min_seconds=0.000214,jitter_seconds=0.0000213,loss_ratio=0,route_inflation=1.52,rtt_max_seconds=0.000412,rtt_min_seconds=0.000326,rtt_p50_seconds=0.000341,rtt_p95_seconds=0.000377,rtt_p99_seconds=0.000398,samples=60 1767225660000000000

Raw data for a bug report: ``ss -uanp`` on both ends, ``sysctl net.ipv4.ping_group_range``,
and the prober's log lines (window results with duplicates, reordering and late replies).
"""  # noqa: E501 (the example line is one line of line protocol)

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
import selectors
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

try:
    import fcntl
except ImportError:  # not on Windows; the responder then holds replies from its wake-up
    fcntl = None  # type: ignore[assignment]

from computewatch import catalog
from computewatch.collectors._base import CollectorError, placement_labels
from computewatch.collectors._settings import parse_duration
from computewatch.policy import Policy
from computewatch.samples import Sample
from computewatch.topology import LinkMode, Tier, Topology

__all__ = [
    "BUCKETS",
    "DEFAULT_RESPONDER_PORT",
    "EMITTED",
    "ICMP_DISABLED",
    "KINDS",
    "MAGIC",
    "MIN_FIBER_RTT_S",
    "PACKET_SIZE",
    "LatencyCollector",
    "ProbeKind",
    "ProbeTarget",
    "Prober",
    "Responder",
    "WindowResult",
    "new_responder_loop",
    "open_responder",
    "percentile",
    "serve_responder",
    "split_host_port",
    "targets_from_topology",
]

log = logging.getLogger(__name__)

ProbeKind = Literal["udp", "tcp", "icmp"]
KINDS: tuple[ProbeKind, ...] = ("udp", "tcp", "icmp")

MAGIC = b"CWL1"
"""First bytes of every UDP/ICMP probe payload (computewatch latency, format 1)."""

_PACKET = struct.Struct("!4sIIQQ")  # magic, session, target index, sequence, send time (ns)
PACKET_SIZE = _PACKET.size
_ICMP_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, id, seq (kernel sets id, sum)
_ICMP_ECHO = {socket.AF_INET: (8, 0), socket.AF_INET6: (128, 129)}  # (request, reply)
_ICMP_PROTO = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}

DEFAULT_RESPONDER_PORT = 9410
"""UDP port of the `Responder` where an address gives none (the agent's /metrics is 9400)."""

BUCKETS: tuple[float, ...] = tuple(50e-6 * 2**k for k in range(20))
"""Histogram upper bounds in seconds, smokeping_prober's: 50 µs x 2^k up to 26.2144 s."""
_LE = (*(repr(b) for b in BUCKETS), "+Inf")  # 5e-05, 0.0001, ... as Go's %g writes them

MIN_FIBER_RTT_S = 1e-6
"""Below this fiber minimum (100 m) route inflation is NaN: the ratio would only measure the
equipment, not the route."""

ICMP_DISABLED = "ICMP probes disabled"
"""How the one log line (and `Prober.disabled`) starts when ICMP echo sockets are refused."""

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH}
_SO_TIMESTAMPNS = 35  # Linux (asm-generic); the socket module does not name it
_TIMESPEC = struct.Struct("@ll")  # struct timespec as SCM_TIMESTAMPNS delivers it
_SIOCGSTAMPNS = 0x8907  # Linux ioctl: the kernel's receive time of the last datagram read
_PR_SET_TIMERSLACK = 29  # Linux prctl
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
_SLOT_S = 0.005  # send rounds at least this far apart: fewer wake-ups, still no burst
_MARGIN_S = 0.02  # a window is closed this long after its last probe's timeout
_GRACE = 2  # inflight probes are remembered for GRACE x timeout, to name late and duplicates

EMITTED: tuple[str, ...] = (
    "link_latency.rtt_min_seconds",
    "link_latency.rtt_p50_seconds",
    "link_latency.rtt_p95_seconds",
    "link_latency.rtt_p99_seconds",
    "link_latency.rtt_max_seconds",
    "link_latency.loss_ratio",
    "link_latency.jitter_seconds",
    "link_latency.samples",
    "link_latency.fiber_min_seconds",
    "link_latency.budget_seconds",
    "link_latency.route_inflation",
    "link_latency.late",
    "link_latency.duplicates",
    "link_latency.reordered",
    "link_latency.requests_total",
    "link_latency.rtt_seconds_bucket",
    "link_latency.rtt_seconds_count",
    "link_latency.rtt_seconds_sum",
    "agent.collector_errors_total",
)
"""Every metric this collector can emit (``measurement.field``)."""


# --- targets -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One peer to probe, with what its results are judged against (tier, fiber, budget)."""

    src_site: str
    dst_site: str
    host: str
    port: int
    kind: ProbeKind
    tier: str
    fiber_min_rtt_s: float
    budget_rtt_s: float
    src_hub: str = ""
    dst_hub: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            known = ", ".join(KINDS)
            raise ValueError(f"{self}: unknown probe kind {self.kind!r} (known: {known})")
        try:
            object.__setattr__(self, "tier", Tier(self.tier).value)
        except ValueError:
            known = ", ".join(t.value for t in Tier)
            raise ValueError(f"{self}: unknown tier {self.tier!r} (known: {known})") from None
        if not self.host:
            raise ValueError(f"{self}: empty host")
        if self.kind != "icmp" and not 0 < self.port < 65536:
            raise ValueError(f"{self}: port {self.port!r} outside 1..65535")
        if not self.fiber_min_rtt_s >= 0 or math.isinf(self.fiber_min_rtt_s):
            raise ValueError(f"{self}: fiber_min_rtt_s must be >= 0, got {self.fiber_min_rtt_s!r}")
        if not self.budget_rtt_s > 0 or math.isinf(self.budget_rtt_s):
            raise ValueError(f"{self}: budget_rtt_s must be > 0, got {self.budget_rtt_s!r}")

    def __str__(self) -> str:
        where = self.host if self.kind == "icmp" else f"{self.host}:{self.port}"
        return f"{self.kind} {self.src_site}->{self.dst_site} ({where})"

    @property
    def labels(self) -> dict[str, str]:
        """The catalogue's link labels; empty hubs are left out."""
        out = {"src_site": self.src_site, "dst_site": self.dst_site, "src_hub": self.src_hub,
               "dst_hub": self.dst_hub, "tier": self.tier, "probe": self.kind}
        return {k: v for k, v in out.items() if v}


def split_host_port(address: str, default_port: int | None) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port)."""
    text = address.strip()
    port_text = ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"address {address!r}: write [ipv6]:port")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text  # a name, an IPv4 address or a bare IPv6 address
    if not host:
        raise ValueError(f"address {address!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"address {address!r}: port {port_text!r} is not in 1..65535")
    return host, int(port_text)


def targets_from_topology(topology: Topology, policy: Policy, local_site: str,
                          addresses: Mapping[str, str], mode: LinkMode = "full_mesh",
                          kind: ProbeKind = "udp",
                          default_port: int = DEFAULT_RESPONDER_PORT) -> list[ProbeTarget]:
    """The targets ``local_site`` probes: its links in ``mode``, peers at ``addresses``.

    ``addresses`` maps site ids to ``host[:port]``; a UDP peer without a port gets
    ``default_port`` (the Responder's), a TCP peer must name one. A peer without an address,
    or an address for a site the topology does not know, is a ValueError naming them all.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown probe kind {kind!r} (known: {', '.join(KINDS)})")
    local = topology.site(local_site)  # KeyError naming the site when unknown
    known = sorted(s.id for s in topology.sites)
    from computewatch.config import suggest_known

    unknown = [s for s in addresses if s not in known]
    if unknown:
        raise ValueError(f"addresses name unknown site(s) {', '.join(map(repr, unknown))} "
                         f"({suggest_known(unknown[0], known)})")
    targets: list[ProbeTarget] = []
    missing: list[str] = []
    for link in topology.links(mode):
        if local_site not in (link.a, link.b):
            continue
        peer = link.b if link.a == local_site else link.a
        if peer not in addresses:
            missing.append(peer)
            continue
        host, port = split_host_port(addresses[peer],
                                     None if kind == "tcp" else default_port)
        if port is None:
            raise ValueError(f"address {addresses[peer]!r} of site {peer!r}: a tcp probe "
                             "needs host:port")
        targets.append(ProbeTarget(
            local_site, peer, host, port if kind != "icmp" else 0, kind, link.tier.value,
            link.fiber_min_rtt_s, policy.budget_rtt_s(link.tier), local.hub,
            topology.site(peer).hub))
    if missing:
        raise ValueError(f"no address for site(s) {', '.join(missing)}, which {local_site} "
                         f"probes in {mode} mode: add them to addresses (site id -> host[:port])")
    return targets


# --- window results ------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN when empty."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    h = (n - 1) * q
    lo = int(h)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One target's window: what it sent, what came back, and the statistics of the RTTs."""

    target: ProbeTarget
    start: datetime
    end: datetime
    sent: int
    received: int
    late: int
    duplicates: int
    reordered: int
    rtt_min_s: float
    rtt_p50_s: float
    rtt_p95_s: float
    rtt_p99_s: float
    rtt_max_s: float
    jitter_s: float
    rtts: tuple[float, ...] = field(repr=False)
    """The replies' RTTs in seconds, sorted: the data behind the statistics."""

    @property
    def loss_ratio(self) -> float:
        return (self.sent - self.received) / self.sent if self.sent else math.nan

    @property
    def budget_s(self) -> float:
        return self.target.budget_rtt_s

    @property
    def route_inflation(self) -> float:
        fiber = self.target.fiber_min_rtt_s
        return self.rtt_min_s / fiber if fiber >= MIN_FIBER_RTT_S else math.nan

    @property
    def within_budget(self) -> bool:
        """p95 RTT within the tier budget (the national summary's test); False without a
        reply. Pipelines apply their own rule to the stored percentiles."""
        return self.rtt_p95_s <= self.budget_s

    def to_samples(self) -> list[Sample]:
        """The window's ``link_latency`` samples, stamped with the window's end."""
        lab = self.target.labels
        values = (
            ("rtt_min_seconds", self.rtt_min_s), ("rtt_p50_seconds", self.rtt_p50_s),
            ("rtt_p95_seconds", self.rtt_p95_s), ("rtt_p99_seconds", self.rtt_p99_s),
            ("rtt_max_seconds", self.rtt_max_s), ("loss_ratio", self.loss_ratio),
            ("jitter_seconds", self.jitter_s), ("samples", float(self.sent)),
            ("fiber_min_seconds", self.target.fiber_min_rtt_s),
            ("budget_seconds", self.budget_s), ("route_inflation", self.route_inflation),
            ("late", float(self.late)), ("duplicates", float(self.duplicates)),
            ("reordered", float(self.reordered)),
        )
        return [Sample.of(f"link_latency.{f}", v, lab, self.end) for f, v in values]


# --- the prober ----------------------------------------------------------------------------


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
    forgotten). The read methods may be called from other threads.
    """

    def __init__(self, targets: Sequence[ProbeTarget], *, interval_s: float | str = 1.0,
                 timeout_s: float | str = 1.0, window_s: float | str = 60.0,
                 align_windows: bool = True,
                 on_result: Callable[[WindowResult], None] | None = None,
                 resolver: Resolver | None = None, drift_samples: int = 10_000) -> None:
        self.targets = list(targets)
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
        """(target, requests, cumulative bucket counts incl. +Inf, count, sum) per target."""
        out = []
        with self._lock:
            for st in self._states:
                running, cumulative = 0, []
                for n in st.buckets:
                    running += n
                    cumulative.append(running)
                out.append((st.target, st.requests, cumulative, st.count, st.sum))
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
                sock = socket.socket(family, socket.SOCK_DGRAM, _ICMP_PROTO[family])
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
        if sys.platform == "linux" and _ANCILLARY:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
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
            request, _ = _ICMP_ECHO[st.family]
            head = _ICMP_HEADER.pack(request, 0, 0, 0, seq & 0xFFFF)
            addr = (st.addr[0], 0, 0, 0) if st.family == socket.AF_INET6 else (st.addr[0], 0)
        else:
            head, addr = b"", st.addr
        real_ns = time.time_ns()  # matched with the kernel's receive time stamp
        sent_ns = time.monotonic_ns()  # as close to the send as Python gets
        probe = _Probe(seq, sent_ns, window, real_ns)
        inflight[seq] = probe
        order.append(probe)
        acc.last_sent_ns = sent_ns
        try:
            sock.sendto(head + _PACKET.pack(MAGIC, self._session, st.index, seq, sent_ns), addr)
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
        reply_type = _ICMP_ECHO[family][1]
        for _ in range(4096):  # drain, but let timers run between large bursts
            rx_real_ns = 0
            try:
                if stamped:
                    data, ancillary, _, _ = sock.recvmsg(2048, _ANCILLARY)
                    for level, ctype, cdata in ancillary:
                        if (level == socket.SOL_SOCKET and ctype == _SO_TIMESTAMPNS
                                and len(cdata) >= _TIMESPEC.size):
                            sec, nsec = _TIMESPEC.unpack_from(cdata)
                            rx_real_ns = sec * 1_000_000_000 + nsec
                else:
                    data = sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("latency %s socket: %s", kind, exc)
                return
            recv_ns = time.monotonic_ns()
            if kind == "icmp":
                if len(data) < _ICMP_HEADER.size or data[0] != reply_type:
                    continue  # not an echo reply
                data = data[_ICMP_HEADER.size:]
            if len(data) < PACKET_SIZE:
                self._error(None, "invalid_reply", f"{len(data)}-byte {kind} datagram")
                continue
            magic, session, index, seq, sent_ns = _PACKET.unpack_from(data)
            if magic != MAGIC or session != self._session or index >= len(self._states):
                self._error(None, "invalid_reply", f"{kind} datagram not from this prober")
                continue
            st = self._states[index]
            if st.target.kind != kind:
                continue
            self._on_reply(st, seq, sent_ns, recv_ns, rx_real_ns)

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




# --- the collector -------------------------------------------------------------------------


class LatencyCollector:
    """Runs a `Prober` in a background thread; `collect` reads its latest windows.

    ``labels`` are the agent's placement labels (they go on ``agent.collector_errors_total``;
    link series carry only the catalogue's link labels). `start` is implicit in the first
    `collect`; `close` stops the thread. Collect at least once per window: each collect
    returns the last completed window only.
    """

    name = "latency"

    def __init__(self, labels: Mapping[str, str], targets: Iterable[ProbeTarget],
                 window_s: float | str = 60.0, interval_s: float | str = 1.0,
                 timeout_s: float | str = 1.0, *, align_windows: bool = True,
                 resolver: Resolver | None = None) -> None:
        self._place = placement_labels(labels)
        targets = list(targets)
        seen: dict[tuple[str, str, str], ProbeTarget] = {}
        for t in targets:
            key = (t.src_site, t.dst_site, t.kind)
            if key in seen:
                raise ValueError(f"{t} and {seen[key]} would write the same link_latency "
                                 "series: probe each site pair once per probe kind")
            seen[key] = t
        self.prober = Prober(targets, interval_s=interval_s, timeout_s=timeout_s,
                             window_s=window_s, align_windows=align_windows, resolver=resolver)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None

    def describe(self) -> list[catalog.Metric]:
        """The catalogued metrics this collector may emit."""
        return [catalog.metric(name) for name in EMITTED]

    def start(self) -> None:
        """Start probing in a background thread with its own event loop (idempotent)."""
        if self._thread is not None:
            return
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            try:
                self._loop, self._stop = loop, asyncio.Event()
                ready.set()
                loop.run_until_complete(self.prober.run(self._stop))
            except BaseException as exc:  # reported by the next collect()
                self._failure = exc
                log.exception("latency: the prober stopped")
            finally:
                ready.set()
                loop.close()

        self._thread = threading.Thread(target=main, name="latency-prober", daemon=True)
        self._thread.start()
        ready.wait()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the probes and wait for the thread (up to ``timeout_s``)."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(timeout_s)

    def __enter__(self) -> LatencyCollector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collect(self) -> list[Sample]:
        """The last completed window per target, the cumulative series and the errors."""
        self.start()
        if self._failure is not None:
            raise CollectorError(f"latency: the prober stopped: {self._failure!r}")
        if self._thread is not None and not self._thread.is_alive():
            raise CollectorError("latency: the prober thread has stopped")
        now = datetime.now(UTC)
        samples: list[Sample] = []
        for result in self.prober.latest():
            samples += result.to_samples()
        for target, requests, cumulative, count, total in self.prober.histograms():
            lab = target.labels
            samples.append(Sample.of("link_latency.requests_total", float(requests), lab, now))
            for le, n in zip(_LE, cumulative, strict=True):
                samples.append(Sample.of("link_latency.rtt_seconds_bucket", float(n),
                                         {**lab, "le": le}, now))
            samples.append(Sample.of("link_latency.rtt_seconds_count", float(count), lab, now))
            samples.append(Sample.of("link_latency.rtt_seconds_sum", total, lab, now))
        for error_type, n in sorted(self.prober.errors().items()):
            samples.append(Sample.of("agent.collector_errors_total", float(n),
                                     {**self._place, "collector": self.name,
                                      "error_type": error_type}, now))
        return samples


# --- the responder -------------------------------------------------------------------------


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
            sec, nsec = _TIMESPEC.unpack(fcntl.ioctl(sock.fileno(), _SIOCGSTAMPNS,
                                                     bytes(_TIMESPEC.size)))
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
