"""Latency probes against real echo responders on 127.0.0.1: accuracy, loss, tiers, failures.

One module-scoped run probes six local responders at a 10 ms interval for one 5 s window (500
probes each) through `LatencyCollector`; most tests assert on that run. Drops are seeded, so
the loss each responder produces is the same on every run. The window is taken once the
machine is quiet, and again (up to three times) when other processes held the cores during
it (`machine_load`): the round trips measured are this machine's own timing.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import multiprocessing
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest
from docstring_metrics import documented_fields, readme_metrics
from machine_load import Busy, busy_meter, wait_for_quiet

import computewatch.collectors.latency as latency_module
from computewatch import catalog
from computewatch.collectors import CollectorError
from computewatch.collectors.latency import (
    BUCKETS,
    EMITTED,
    ICMP_DISABLED,
    MAGIC,
    PACKET_SIZE,
    LatencyCollector,
    Prober,
    ProbeTarget,
    Responder,
    WindowResult,
    encode_probe,
    new_responder_loop,
    percentile,
    reply_to,
    serve_responder,
    split_host_port,
    targets_from_topology,
)
from computewatch.policy import load_policy
from computewatch.samples import Sample, sample_value
from computewatch.topology import load_topology
from computewatch.validation import check_sample

LABELS = {"node": "bj-ai-n1", "site": "bj-ai", "hub": "jjj", "cluster": "zjk"}
POLICY = load_policy()
BUDGET = {tier: POLICY.budget_rtt_s(tier) for tier in ("metro", "regional", "national")}
WINDOW_S, INTERVAL_S, TIMEOUT_S = 5.0, 0.010, 0.25
PROBES = round(WINDOW_S / INTERVAL_S)


# --- responders on loopback ----------------------------------------------------------------


@contextmanager
def served(target: Callable[[threading.Event, Callable[[tuple[str, int]], None]], object]
           ) -> Iterator[int]:
    """Run a responder in a thread until the block ends; yields its UDP port."""
    stop, bound = threading.Event(), threading.Event()
    port: list[int] = []

    def ready(address: tuple[str, int]) -> None:
        port.append(address[1])
        bound.set()

    thread = threading.Thread(target=target, args=(stop, ready), daemon=True)
    thread.start()
    assert bound.wait(5), "responder did not start"
    try:
        yield port[0]
    finally:
        stop.set()
        thread.join(5)


def responder(delay_s: float = 0.0, drop_ratio: float = 0.0, *, jitter_s: float = 0.0,
              seed: int = 0):
    def run(stop: threading.Event, ready: Callable) -> object:
        return serve_responder("127.0.0.1", 0, delay_s, drop_ratio, stop, jitter_s=jitter_s,
                               seed=seed, ready=ready)
    return run


class Misbehaving(asyncio.DatagramProtocol):
    """Answers every 10th probe twice (n % 10 == 3) and swaps two (n % 10 == 6 and 7)."""

    def __init__(self) -> None:
        self.n = 0
        self.held: tuple[bytes, tuple] | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        n, self.n = self.n, self.n + 1
        data = reply_to(data)
        if n % 10 == 6:
            self.held = (data, addr)
            return
        self.transport.sendto(data, addr)
        if n % 10 == 3:
            self.transport.sendto(data, addr)
        if n % 10 == 7 and self.held is not None:
            self.transport.sendto(*self.held)
            self.held = None


@contextmanager
def one_loop(*factories: Callable[[], asyncio.DatagramProtocol]) -> Iterator[list[int]]:
    """Several responders on one `new_responder_loop` in a forked child process; yields their
    ports. Not a thread of this process: the prober's thread and the responders' would queue
    for the GIL (a switch waits up to 5 ms), and that wait would show up in the RTTs; a 0.5 ms
    responder then missed the 1 ms metro budget at p95 now and then on a quiet 2-core machine.
    Across a loopback between two processes, as between two sites, it does not."""
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    ports_in, ports_out = ctx.Pipe(duplex=False)

    def main() -> None:
        loop = new_responder_loop()
        transports = []
        for factory in factories:
            transport, _ = loop.run_until_complete(loop.create_datagram_endpoint(
                factory, local_addr=("127.0.0.1", 0)))
            transports.append(transport)
        ports_out.send([t.get_extra_info("sockname")[1] for t in transports])

        async def until() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.05)

        loop.run_until_complete(until())
        for transport in transports:
            transport.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    child = ctx.Process(target=main, daemon=True)
    child.start()
    try:
        assert ports_in.poll(5), "responders did not start"
        yield ports_in.recv()
    finally:
        stop.set()
        child.join(5)
        if child.is_alive():
            child.kill()


def target(dst: str, port: int, tier: str, *, kind: str = "udp", fiber: float = 0.0,
           host: str = "127.0.0.1") -> ProbeTarget:
    return ProbeTarget("bj-ai", dst, host, port, kind, tier, fiber, BUDGET[tier], "jjj", "jjj")


# --- the module's measurement --------------------------------------------------------------


@dataclass
class Run:
    results: dict[str, WindowResult]
    samples: list[Sample]
    drift: list[float]
    skipped: int
    errors: dict[str, int]
    load: list[str]
    """How busy the machine was during each window taken (the last is the one tested)."""


DELAYS = {"d0p2": 0.0002, "d3": 0.003, "d12": 0.012, "d30": 0.030}
ATTEMPTS, OTHERS_MAX_CORES = 3, 0.3
"""A window during which other processes held more than 0.3 cores on average is taken again,
up to three times: the RTTs and the schedule are this machine's own timing, and CI's 2-core
runner once added 0.3-0.5 ms to every probe while something else ran (`machine_load`). The
responders' child process holds 0.08-0.10 of a quiet machine, `make test-realtime`'s outage
test beside it about 0.12; a window at 0.49 was held up 57 times and drifted 1.9 ms."""


def probe_window() -> tuple[Run, Busy]:
    """One window of the six responders, in a fresh child process (so the misbehaving one's
    count and the seeded drops start over), taken once the machine is quiet."""
    with one_loop(lambda: Responder(0.0002, 0.05, seed=6), lambda: Responder(0.003, 0.05, seed=7),
                  lambda: Responder(0.012, 0.05, seed=11), lambda: Responder(0.030, 0.05, seed=25),
                  lambda: Responder(0.001, jitter_s=0.008, seed=1), Misbehaving,
                  ) as (p0, p1, p2, p3, p4, p5):
        targets = [
            target("d0p2", p0, "metro", fiber=0.0001),
            target("d3", p1, "regional"),
            target("d12", p2, "regional"),
            target("d30", p3, "national"),
            target("jittery", p4, "national"),
            target("misbehaving", p5, "metro"),
        ]
        collector = LatencyCollector(LABELS, targets, window_s=WINDOW_S, interval_s=INTERVAL_S,
                                     timeout_s=TIMEOUT_S, align_windows=False)
        wait_for_quiet(OTHERS_MAX_CORES, limit_s=30)
        with busy_meter() as busy:
            try:
                assert collector.collect() is not None  # starts the prober
                deadline = time.monotonic() + WINDOW_S + 10
                while len(collector.prober.latest()) < len(targets):
                    assert time.monotonic() < deadline, "no complete window in time"
                    time.sleep(0.05)
                samples = collector.collect()
            finally:
                collector.close()
    prober = collector.prober
    return Run({r.target.dst_site: r for r in prober.latest()}, samples, list(prober.drift),
               prober.skipped, prober.errors(), []), busy


@pytest.fixture(scope="module")
def run() -> Run:
    load = []
    for attempt in range(1, ATTEMPTS + 1):
        result, busy = probe_window()
        load.append(str(busy))
        if busy.others <= OTHERS_MAX_CORES:
            break
        warnings.warn(f"test_latency: probe window {attempt} of {ATTEMPTS} ran beside other "
                      f"work ({busy}); taken again" if attempt < ATTEMPTS else
                      f"test_latency: every probe window ran beside other work ({load})",
                      stacklevel=1)
    result.load = load
    return result


@pytest.mark.realtime  # reads the module's real-time probe run (~6 s)
@pytest.mark.parametrize("dst", sorted(DELAYS))
def test_median_rtt_is_the_responders_delay(run, dst):
    r = run.results[dst]
    assert PROBES - run.skipped <= r.sent <= PROBES  # a held-up loop skips, and counts it
    assert abs(r.rtt_p50_s - DELAYS[dst]) <= 0.0003, r
    assert r.rtt_min_s <= r.rtt_p50_s <= r.rtt_p95_s <= r.rtt_p99_s <= r.rtt_max_s
    assert r.rtt_min_s >= DELAYS[dst]  # a reply never leaves before its delay


@pytest.mark.realtime  # reads the module's real-time probe run (~6 s)
@pytest.mark.parametrize("dst", sorted(DELAYS))
def test_loss_is_the_responders_drop_ratio(run, dst):
    r = run.results[dst]
    assert r.sent >= 400
    assert abs(r.loss_ratio - 0.05) <= 0.02, r
    assert r.received == len(r.rtts) == r.sent - round(r.loss_ratio * r.sent)
    assert r.late == r.duplicates == r.reordered == 0


@pytest.mark.realtime  # reads the module's real-time probe run (~6 s)
def test_tier_budgets_come_from_the_policy_and_flag_violations(run):
    assert BUDGET == {"metro": 0.001, "regional": 0.005, "national": 0.020}
    within = {dst: run.results[dst].within_budget for dst in DELAYS}
    assert within == {"d0p2": True, "d3": True, "d12": False, "d30": False}
    for dst, r in run.results.items():
        lab = {"dst_site": dst}
        budget = BUDGET[r.target.tier]
        assert sample_value(run.samples, "link_latency.budget_seconds", lab) == budget
        assert sample_value(run.samples, "link_latency.rtt_p95_seconds", lab) == r.rtt_p95_s


@pytest.mark.realtime  # reads the module's real-time probe run (~6 s)
def test_window_samples_carry_the_catalogue_fields_and_labels(run):
    r = run.results["d0p2"]
    lab = {"src_site": "bj-ai", "dst_site": "d0p2", "src_hub": "jjj", "dst_hub": "jjj",
           "tier": "metro", "probe": "udp"}
    assert sample_value(run.samples, "link_latency.samples", lab) == r.sent
    assert sample_value(run.samples, "link_latency.loss_ratio", lab) == r.loss_ratio
    assert sample_value(run.samples, "link_latency.fiber_min_seconds", lab) == 0.0001
    assert sample_value(run.samples, "link_latency.jitter_seconds", lab) == r.jitter_s
    window = [s for s in run.samples if s.label("dst_site") == "d0p2"
              and not s.field.endswith(("_total", "_bucket", "_count", "_sum"))]
    assert {s.time for s in window} == {r.end}  # stamped with the window's end
    assert len(window) == 15
    # Probes answered within the 1 ms metro budget, counted here from the replies' RTTs.
    within = sum(1 for rtt in r.rtts if rtt <= 0.001)
    assert sample_value(run.samples, "link_latency.replies_within_budget", lab) == within
    assert 0 < within <= r.received
    for s in run.samples:
        check_sample(s)  # every sample is one the catalogue accepts


@pytest.mark.realtime  # reads the module's real-time probe run (~6 s)
def test_route_inflation_is_min_rtt_over_fiber_and_nan_on_loopback(run):
    r = run.results["d0p2"]
    assert r.route_inflation == pytest.approx(r.rtt_min_s / 0.0001)
    assert 2.0 <= r.route_inflation < 4.0  # the 0.2 ms delay plus < 0.2 ms of loopback
    assert math.isnan(run.results["d3"].route_inflation)  # fiber minimum 0: loopback
    assert math.isnan(sample_value(run.samples, "link_latency.route_inflation",
                                   {"dst_site": "d3"}))


@pytest.mark.realtime  # reads the module's real-time probe run (~6 s)
def test_percentiles_are_exact_over_the_windows_replies(run):
    r = run.results["jittery"]
    values = np.array(r.rtts)
    for q, got in ((50, r.rtt_p50_s), (95, r.rtt_p95_s), (99, r.rtt_p99_s)):
        assert got == pytest.approx(float(np.percentile(values, q)), abs=1e-12)
    assert (r.rtt_min_s, r.rtt_max_s) == (values.min(), values.max())


@pytest.mark.realtime  # reads the module's real-time probe run (~6 s)
def test_histogram_is_cumulative_and_agrees_with_the_counts(run):
    les = ["5e-05", "0.0001", "0.0002"]
    assert [s.label("le") for s in run.samples
            if s.name == "link_latency.rtt_seconds_bucket" and s.label("dst_site") == "d12"
            ][:3] == les
    for dst, r in run.results.items():
        buckets = [(s.label("le"), s.value) for s in run.samples
                   if s.name == "link_latency.rtt_seconds_bucket" and s.label("dst_site") == dst]
        assert [le for le, _ in buckets] == [repr(b) for b in BUCKETS] + ["+Inf"]
        counts = [n for _, n in buckets]
        assert counts == sorted(counts)  # cumulative
        total = sample_value(run.samples, "link_latency.rtt_seconds_count", {"dst_site": dst})
        requests = sample_value(run.samples, "link_latency.requests_total", {"dst_site": dst})
        assert counts[-1] == total
        assert r.received <= total <= requests  # the histogram runs on past the window
        assert requests >= r.sent
        mean = sample_value(run.samples, "link_latency.rtt_seconds_sum", {"dst_site": dst}) / total
        assert r.rtt_min_s <= mean <= r.rtt_max_s + 0.05
    d12 = dict(buckets for buckets in [(s.label("le"), s.value) for s in run.samples
                                       if s.name == "link_latency.rtt_seconds_bucket"
                                       and s.label("dst_site") == "d12"])
    assert d12["0.0064"] == 0
    assert d12["0.0256"] == d12["+Inf"]


@pytest.mark.realtime  # reads the module's real-time probe run (~6 s)
def test_jitter_is_near_zero_for_a_constant_delay_and_large_for_a_jittery_one(run):
    constant = [run.results[dst].jitter_s for dst in DELAYS]
    jittery = run.results["jittery"].jitter_s
    assert max(constant) < 0.001, constant  # 20-50 µs on loopback; 0.63 ms once under load
    # uniform 0..8 ms: E|U1 - U2| = 8/3 ms
    assert 0.0016 < jittery < 0.004
    assert jittery > 2 * max(constant)


@pytest.mark.realtime  # reads the module's real-time probe run (~6 s)
def test_duplicates_and_reordering_are_counted(run):
    r = run.results["misbehaving"]
    assert r.duplicates == PROBES // 10
    assert r.reordered == PROBES // 10
    assert r.loss_ratio == 0.0
    assert r.received == r.sent >= PROBES - run.skipped
    exported = r.to_samples()
    assert sample_value(exported, "link_latency.duplicates") == PROBES // 10
    assert sample_value(exported, "link_latency.reordered") == PROBES // 10
    assert sample_value(exported, "link_latency.late") == 0


@pytest.mark.realtime  # reads the module's real-time probe run (~6 s)
def test_the_schedule_does_not_drift(run):
    drift = np.array(run.drift)
    assert len(drift) >= 6 * PROBES
    assert np.percentile(drift, 50) < 0.002  # epoll waits in whole ms: ~0.5 ms typical
    assert np.percentile(drift, 99) < 0.010
    tenth = len(drift) // 10
    assert abs(drift[-tenth:].mean() - drift[:tenth].mean()) < 0.001  # no accumulation
    assert run.skipped <= 5
    assert run.errors == {}


# --- TCP, ICMP and failures ----------------------------------------------------------------


def probe_once(targets: list[ProbeTarget], window_s: float = 1.0, interval_s: float = 0.02,
               timeout_s: float = 0.2, **kw) -> tuple[Prober, dict[str, WindowResult]]:
    results: list[WindowResult] = []
    prober = Prober(targets, interval_s=interval_s, timeout_s=timeout_s, window_s=window_s,
                    align_windows=False, on_result=results.append, **kw)
    asyncio.run(asyncio.wait_for(prober.run(windows=1), window_s + 10))
    return prober, {r.target.dst_site: r for r in results}


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.realtime  # counts probes sent in real time; a busy CPU skips ticks
def test_tcp_connect_probe_and_a_closed_port():
    server = socket.create_server(("127.0.0.1", 0), backlog=128)
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except (TimeoutError, OSError):
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        prober, results = probe_once([
            target("listening", server.getsockname()[1], "metro", kind="tcp"),
            target("closed", free_closed_port(), "metro", kind="tcp"),
        ], timeout_s=1.0)  # a loaded 2-core CI machine must not turn a slow accept into loss
    finally:
        stop.set()
        thread.join(2)
        server.close()
    ok, closed = results["listening"], results["closed"]
    assert 50 - prober.skipped <= ok.sent <= 50 and ok.loss_ratio == 0.0
    assert 0 < ok.rtt_p50_s < 0.02  # loopback connect; generous for a loaded machine
    assert 50 - prober.skipped <= closed.sent <= 50
    assert closed.received == 0 and closed.loss_ratio == 1.0
    assert math.isnan(closed.rtt_p50_s) and not closed.within_budget
    requests = {t.dst_site: n for t, n, *_ in prober.histograms()}
    assert prober.errors() == {"connection_refused": requests["closed"]}  # one per probe


def icmp_allowed() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
        return True
    except PermissionError:
        return False


@pytest.mark.realtime  # counts probes sent in real time; a busy CPU skips ticks
def test_icmp_echo_to_loopback_or_one_clear_disabled_message(caplog):
    with served(responder()) as port:
        prober, results = probe_once([target("icmp", 0, "metro", kind="icmp"),
                                      target("udp", port, "metro")], window_s=0.5)
    assert results["udp"].received == results["udp"].sent > 0  # the others keep going
    if icmp_allowed():
        r = results["icmp"]
        assert 25 - prober.skipped <= r.sent <= 25 and r.loss_ratio == 0.0
        assert 0 < r.rtt_p50_s < 0.005
        assert prober.disabled == {}
    else:
        assert "icmp" not in results
        [(t, reason)] = prober.disabled.items()
        assert t.kind == "icmp"
        assert reason.startswith(ICMP_DISABLED) and "net.ipv4.ping_group_range" in reason
        assert prober.errors() == {"icmp_not_permitted": 1}
        lines = [r.getMessage() for r in caplog.records if ICMP_DISABLED in r.getMessage()]
        assert len(lines) == 1


def test_an_unresolvable_target_is_counted_and_the_others_go_on():
    async def resolve(host: str) -> str:
        if host == "good.test":
            return "127.0.0.1"
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with served(responder()) as port:
        collector = LatencyCollector(
            LABELS, [target("good", port, "metro", host="good.test"),
                     target("bad", port, "metro", host="bad.test")],
            window_s=0.5, interval_s=0.02, timeout_s=0.2, align_windows=False,
            resolver=resolve)
        try:
            collector.start()
            deadline = time.monotonic() + 10
            while not collector.prober.latest():
                assert time.monotonic() < deadline
                time.sleep(0.05)
            samples = collector.collect()
        finally:
            collector.close()
    [good] = collector.prober.latest()
    assert good.target.dst_site == "good" and good.received > 0
    assert sample_value(samples, "link_latency.samples", {"dst_site": "bad"}) is None
    errors = sample_value(samples, "agent.collector_errors_total",
                          {**LABELS, "collector": "latency", "error_type": "resolve_failed"})
    assert 1 <= errors <= 3  # retried once per 0.5 s window, not in each 20 ms slot
    for s in samples:
        check_sample(s)


def test_a_crashed_prober_is_a_collector_error():
    collector = LatencyCollector(LABELS, [target("x", 9, "metro")], window_s=1, interval_s=0.5)
    collector.prober._loop = object()  # type: ignore[assignment]  # run() refuses a rerun
    collector.start()
    collector._thread.join(5)
    with pytest.raises(CollectorError, match="prober stopped"):
        collector.collect()


# --- the responder -------------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple]] = []

    def sendto(self, data: bytes, addr: tuple) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str):
        return None


PEER = ("127.0.0.1", 40000)  # a prober's ephemeral port (well-known ports get no answer)


def packet(seq: int) -> bytes:
    return encode_probe(0, 0, seq, 0)


def test_responder_echoes_probes_unchanged_and_ignores_garbage():
    async def go() -> Responder:
        r = Responder()
        r.connection_made(FakeTransport())  # type: ignore[arg-type]
        for data in (packet(1), b"hello", MAGIC + b"short", b"XXXX" + packet(2)[4:],
                     packet(3) + b"padding"):
            r.datagram_received(data, PEER)
        return r

    r = asyncio.run(go())
    # Answered unchanged but for the reply flag (format 2: a responder never answers a reply).
    assert [d for d, _ in r.transport.sent] == [reply_to(packet(1)),
                                                reply_to(packet(3) + b"padding")]
    assert reply_to(packet(1)) == packet(1)[:4] + b"\x01" + packet(1)[5:]
    assert (r.received, r.echoed, r.invalid) == (2, 2, 3)
    assert len(packet(1)) == PACKET_SIZE


def test_responder_drops_are_seeded():
    def dropped(seed: int) -> list[int]:
        async def go() -> list[int]:
            r = Responder(drop_ratio=0.3, seed=seed)
            r.connection_made(FakeTransport())  # type: ignore[arg-type]
            for i in range(200):
                r.datagram_received(packet(i), PEER)
            echoed = {int.from_bytes(d[16:24], "big") for d, _ in r.transport.sent}
            return [i for i in range(200) if i not in echoed]
        return asyncio.run(go())

    assert dropped(3) == dropped(3) != dropped(4)
    assert 40 <= len(dropped(3)) <= 80


def test_responder_holds_replies_with_timers_not_sleeps():
    async def go() -> tuple[float, list[float]]:
        r = Responder(delay_s=0.05)
        transport = FakeTransport()
        r.connection_made(transport)  # type: ignore[arg-type]
        t0 = time.monotonic()
        for i in range(20):
            r.datagram_received(packet(i), PEER)
        returned = time.monotonic() - t0
        done: list[float] = []
        while len(transport.sent) < 20:
            await asyncio.sleep(0.005)
        done.append(time.monotonic() - t0)
        return returned, done

    returned, [all_sent] = asyncio.run(go())
    assert returned < 0.02  # datagram_received never waits
    assert 0.05 <= all_sent < 0.5  # the 20 replies are held together, not one after another


# --- targets, pure helpers, the contract ---------------------------------------------------


def test_targets_from_topology_carry_tier_fiber_and_budget():
    topo = load_topology()
    site = topo.sites[0].id
    peers = [s.id for s in topo.sites if s.id != site]
    addresses = {p: f"10.0.{i // 250}.{i % 250 + 1}" for i, p in enumerate(peers)}
    addresses[peers[0]] = "10.9.9.9:7000"
    targets = targets_from_topology(topo, POLICY, site, addresses)
    assert len(targets) == len(peers)
    for t in targets:
        link = topo.link(site, t.dst_site)
        assert (t.src_site, t.tier, t.fiber_min_rtt_s) == (site, link.tier.value,
                                                           link.fiber_min_rtt_s)
        assert t.budget_rtt_s == POLICY.budget_rtt_s(link.tier)
        # A site outside every hub (Wuhan, Xi'an) has no hub label: empty, left out.
        assert (t.src_hub, t.dst_hub) == (topo.site(site).hub or "",
                                          topo.site(t.dst_site).hub or "")
        assert t.kind == "udp"
    assert {t.tier for t in targets} == {"metro", "regional", "national"} or len(targets) < 3
    by_peer = {t.dst_site: t for t in targets}
    assert (by_peer[peers[0]].host, by_peer[peers[0]].port) == ("10.9.9.9", 7000)
    assert by_peer[peers[1]].port == latency_module.DEFAULT_RESPONDER_PORT
    spokes = targets_from_topology(topo, POLICY, site, addresses, mode="hub_and_spoke")
    assert 0 < len(spokes) < len(targets)


def test_targets_from_topology_name_what_is_missing_or_unknown():
    topo = load_topology()
    site = topo.sites[0].id
    peers = [s.id for s in topo.sites if s.id != site]
    addresses = {p: "10.0.0.1" for p in peers}
    with pytest.raises(ValueError, match=f"no address for site\\(s\\) {peers[3]}"):
        targets_from_topology(topo, POLICY, site, {p: a for p, a in addresses.items()
                                                   if p != peers[3]})
    with pytest.raises(ValueError, match=r"unknown site.*'nowhere'"):
        targets_from_topology(topo, POLICY, site, {**addresses, "nowhere": "10.0.0.2"})
    with pytest.raises(ValueError, match="tcp probe needs host:port"):
        targets_from_topology(topo, POLICY, site, addresses, kind="tcp")
    with pytest.raises(KeyError, match="unknown site"):
        targets_from_topology(topo, POLICY, "nowhere", addresses)


@pytest.mark.parametrize(("address", "expected"), [
    ("10.0.0.1", ("10.0.0.1", 9410)),
    ("10.0.0.1:7000", ("10.0.0.1", 7000)),
    ("peer.example:7000", ("peer.example", 7000)),
    ("[::1]:7000", ("::1", 7000)),
    ("[::1]", ("::1", 9410)),
    ("fe80::1", ("fe80::1", 9410)),
])
def test_split_host_port(address, expected):
    assert split_host_port(address, 9410) == expected


@pytest.mark.parametrize("address", ["10.0.0.1:0", "10.0.0.1:x", "[::1", ":7000", "h:70000"])
def test_split_host_port_refuses_bad_addresses(address):
    with pytest.raises(ValueError, match=re.escape(repr(address))):
        split_host_port(address, 9410)


@pytest.mark.parametrize(("kw", "words"), [
    ({"kind": "ping"}, "unknown probe kind"),
    ({"tier": "galactic"}, "unknown tier"),
    ({"port": 0}, "port 0 outside"),
    ({"budget_rtt_s": 0.0}, "budget_rtt_s must be > 0"),
    ({"fiber_min_rtt_s": -1.0}, "fiber_min_rtt_s must be >= 0"),
])
def test_probe_target_validates(kw, words):
    args = {"src_site": "a", "dst_site": "b", "host": "127.0.0.1", "port": 9410,
            "kind": "udp", "tier": "metro", "fiber_min_rtt_s": 0.0, "budget_rtt_s": 0.001}
    with pytest.raises(ValueError, match=words):
        ProbeTarget(**{**args, **kw})


def test_prober_settings_are_durations_and_checked():
    p = Prober([], interval_s="10ms", timeout_s="200ms", window_s="1m")
    assert (p.interval_s, p.timeout_s, p.window_s) == (0.01, 0.2, 60.0)
    with pytest.raises(ValueError, match="longer than the window"):
        Prober([], interval_s=2, window_s=1)
    with pytest.raises(ValueError, match="same link_latency series"):
        LatencyCollector(LABELS, [target("b", 1, "metro"), target("b", 2, "metro")])


def test_percentile_matches_numpy_linear():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 10, 61):
        values = sorted(rng.exponential(0.01, n))
        for q in (0.0, 0.5, 0.95, 0.99, 1.0):
            assert percentile(values, q) == pytest.approx(np.percentile(values, q * 100))
    assert math.isnan(percentile([], 0.5))


def test_buckets_are_smokeping_probers():
    assert len(BUCKETS) == 20
    assert BUCKETS[0] == 50e-6 and BUCKETS[-1] == pytest.approx(26.2144)
    assert all(b == a * 2 for a, b in itertools.pairwise(BUCKETS))


def test_docstring_metrics_table_matches_the_catalogue():
    doc = readme_metrics(latency_module)
    documented = {f"link_latency.{f}" for f in documented_fields(doc, "link_latency")}
    documented |= {f"agent.{f}" for f in documented_fields(doc, "agent")}
    assert documented == set(EMITTED)
    for name in EMITTED:
        catalog.metric(name)
    assert [m.name for m in LatencyCollector(LABELS, []).describe()] == list(EMITTED)
    assert {m.name for m in catalog.CATALOG if m.measurement == "link_latency"} <= set(EMITTED)
