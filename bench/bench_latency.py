"""1,000 UDP latency probe targets on loopback: the prober's CPU, timing error and drift.

Setup: one responder process serves 10 UDP ports on 127.0.0.1 (`open_responder` on one
`new_responder_loop`), every reply held 2 ms; 1,000 targets (100 per port) are probed at a
1 s interval for 60 s (``python -m bench.bench_latency 20`` for 20 s) with a 1 s timeout. The
prober runs in a process of its own, so the responders' CPU is not counted.

Figures:
- CPU: the prober process's user + system time / wall time, as % of one core (aim <= 25 %).
- Timing error: measured RTT minus the 2 ms the responder holds each reply, median and p99 of
  every reply. It includes the responder's own lateness and loopback, so it is an upper bound
  on the prober's error.
- Drift: actual send time minus the slot's scheduled time, p50 / p99 / max of every probe.

Baseline in the same run: the naive prober, one thread per target doing a blocking
``sendto``/``recv`` then ``time.sleep(interval)``, for the same 1,000 targets for 10 s (or the
run's length when shorter); its CPU, timing error and drift.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench._util import row

TARGETS = 1000
PORTS = 10
DELAY_S = 0.002
INTERVAL_S = 1.0
TIMEOUT_S = 1.0
BASELINE_S = 10.0


def _cpu_s() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def _sys_s() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _quantiles(values: list[float], qs: tuple[float, ...]) -> list[float]:
    from computewatch.collectors.latency import percentile

    ordered = sorted(values)
    return [percentile(ordered, q) for q in qs]


def _responders_child() -> None:
    """Serve PORTS responders until stdin closes; prints their ports as one JSON line.

    One thread and one responder loop for all ports (`serve_responder` runs one port per
    call): threads of one process would queue for the GIL when a send round reaches five
    ports at once, and that wait would show up as timing error."""
    from computewatch.collectors.latency import new_responder_loop, open_responder

    loop = new_responder_loop()
    responders = [loop.run_until_complete(open_responder("127.0.0.1", 0, DELAY_S))
                  for _ in range(PORTS)]
    print(json.dumps([r.address[1] for r in responders]), flush=True)
    done = asyncio.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(done.set)),
                     daemon=True).start()  # until the parent closes the pipe
    loop.run_until_complete(done.wait())
    for r in responders:
        r.close()
    loop.close()


def _targets(ports: list[int]) -> list:
    from computewatch.collectors.latency import ProbeTarget

    return [ProbeTarget("bench", f"peer{i:04d}", "127.0.0.1", ports[i % len(ports)], "udp",
                        "national", 0.0, 0.020) for i in range(TARGETS)]


def _prober_child(ports: list[int], seconds: float) -> None:
    """Probe TARGETS targets for one window of ``seconds``; print the figures as JSON."""
    from computewatch.collectors.latency import Prober, WindowResult

    results: list[WindowResult] = []
    prober = Prober(_targets(ports), interval_s=INTERVAL_S, timeout_s=TIMEOUT_S,
                    window_s=seconds, align_windows=False, on_result=results.append,
                    drift_samples=int(TARGETS * (seconds / INTERVAL_S + 5)))
    c0, s0, t0 = _cpu_s(), _sys_s(), time.perf_counter()
    asyncio.run(prober.run(windows=1))
    cpu, system, wall = _cpu_s() - c0, _sys_s() - s0, time.perf_counter() - t0
    rtts = [x for r in results for x in r.rtts]
    sent = sum(r.sent for r in results)
    print(json.dumps({
        "cpu_pct": 100 * cpu / wall, "sys_pct": 100 * system / wall, "wall": wall,
        "sent": sent, "replies": len(rtts),
        "err": _quantiles([x - DELAY_S for x in rtts], (0.5, 0.99)),
        "drift": [*_quantiles(list(prober.drift), (0.5, 0.99)), max(prober.drift)],
        "skipped": prober.skipped, "rss": _peak_rss_mb(), "windows": len(results),
    }))


def _naive_child(ports: list[int], seconds: float) -> None:
    """The baseline: a thread per target, blocking send/recv, then sleep(interval)."""
    from computewatch.collectors.latency import encode_probe

    start = time.monotonic() + 0.5
    stop_at = start + seconds
    rtts: list[float] = []
    drift: list[float] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(TIMEOUT_S)
        addr = ("127.0.0.1", ports[i % len(ports)])
        first = start + INTERVAL_S * i / TARGETS  # staggered as the prober's
        time.sleep(max(0.0, first - time.monotonic()))
        k = 0
        while (now := time.monotonic()) < stop_at:
            late = now - (first + k * INTERVAL_S)
            t = time.monotonic_ns()
            sock.sendto(encode_probe(0, i, k, t), addr)
            try:
                sock.recv(2048)
                rtt = (time.monotonic_ns() - t) / 1e9
            except TimeoutError:
                rtt = None
            with lock:
                drift.append(late)
                if rtt is not None:
                    rtts.append(rtt)
            k += 1
            time.sleep(INTERVAL_S)
        sock.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(TARGETS)]
    c0, s0, t0 = _cpu_s(), _sys_s(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu, system, wall = _cpu_s() - c0, _sys_s() - s0, time.perf_counter() - t0
    print(json.dumps({
        "cpu_pct": 100 * cpu / wall, "sys_pct": 100 * system / wall, "sent": len(drift),
        "replies": len(rtts),
        "err": _quantiles([x - DELAY_S for x in rtts], (0.5, 0.99)),
        "drift": [*_quantiles(drift, (0.5, 0.99)), max(drift)], "rss": _peak_rss_mb(),
    }))


def _child(kind: str, ports: list[int], seconds: float) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.bench_latency", f"--{kind}",
                           json.dumps(ports), str(seconds)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(seconds: float = 60.0) -> None:
    responders = subprocess.Popen([sys.executable, "-m", "bench.bench_latency", "--responders"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert responders.stdout is not None and responders.stdin is not None
        ports = json.loads(responders.stdout.readline())
        p = _child("prober", ports, seconds)
        base_s = min(BASELINE_S, seconds)
        b = _child("naive", ports, base_s)
    finally:
        if responders.stdin is not None:
            responders.stdin.close()
        try:
            responders.wait(10)
        except subprocess.TimeoutExpired:
            responders.kill()
    print(f"latency prober ({TARGETS} UDP targets on loopback, {PORTS} responder ports, "
          f"{DELAY_S * 1000:g} ms held replies, {INTERVAL_S:g} s interval, {seconds:g} s)")
    loss = 1 - p["replies"] / max(p["sent"], 1)
    row("probes sent / replies", f"{p['sent']} / {p['replies']}", f"(loss {loss:.2%})")
    row("prober CPU", f"{p['cpu_pct']:.1f} %",
        f"of one core (aim <= 25 %); {p['sys_pct']:.1f} % in the kernel")
    row("timing error (RTT - 2 ms), median", f"{p['err'][0] * 1e6:.0f} µs",
        "(responder lateness and loopback included)")
    row("timing error (RTT - 2 ms), p99", f"{p['err'][1] * 1e6:.0f} µs")
    row("schedule drift p50 / p99 / max",
        " / ".join(f"{d * 1e3:.2f}" for d in p["drift"]) + " ms",
        f"({p['skipped']} rounds skipped)")
    row("prober peak RSS", f"{p['rss']:.0f} MB")
    row(f"baseline: thread per target, sleep(interval), {base_s:g} s",
        f"{b['cpu_pct']:.1f} %", f"CPU ({b['sys_pct']:.1f} % kernel), {b['sent']} probes, "
        f"{b['replies']} replies")
    row("baseline timing error, median / p99",
        f"{b['err'][0] * 1e6:.0f} / {b['err'][1] * 1e6:.0f} µs")
    row("baseline drift p50 / p99 / max",
        " / ".join(f"{d * 1e3:.1f}" for d in b["drift"]) + " ms", "(grows with every probe)")
    row("baseline peak RSS", f"{b['rss']:.0f} MB")
    row("ratio CPU baseline / prober", f"{b['cpu_pct'] / p['cpu_pct']:.2f}x",
        "(> 1: the prober is cheaper)")
    row("ratio drift p99 baseline / prober", f"{b['drift'][1] / p['drift'][1]:.0f}x")


if __name__ == "__main__":
    if "--responders" in sys.argv:
        _responders_child()
    elif "--prober" in sys.argv:
        _prober_child(json.loads(sys.argv[2]), float(sys.argv[3]))
    elif "--naive" in sys.argv:
        _naive_child(json.loads(sys.argv[2]), float(sys.argv[3]))
    else:
        main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
