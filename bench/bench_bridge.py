"""The alert bridge under load: webhook posts at a fixed rate while slow clients hold connections.

Setup, all on 127.0.0.1: a sink process answering every POST with 200 (a webhook target's
endpoint); the bridge as a process (`computewatch alert-bridge`) with four receivers, each
with its own signed webhook target; and a load process that posts Alertmanager
notifications at ``rate`` a second for ``seconds`` over 32 keep-alive connections, while
``slow`` other connections each send a request head one byte a second (reconnecting when the
bridge cuts them off at ``header_timeout``). Accept latency is from the request's first byte
to the end of its answer. Afterwards the bridge's own metrics must account for every accepted
notification: delivered or dead-lettered, nothing left in a queue; the sink's count must
equal the deliveries.

Baseline: the same load without slow clients, measured in the same run, for the p99 ratio.
``python -m bench.bench_bridge [SECONDS] [RATE]`` (default 60 s at 1,000 a second).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

TOKEN = "bench-bearer-token"
RECEIVERS = ("r0", "r1", "r2", "r3")
CONNECTIONS = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notification(i: int, receiver: str) -> bytes:
    return json.dumps({
        "version": "4", "status": "firing", "receiver": receiver,
        "groupKey": f'{{}}:{{alertname="Load{i % 50}"}}', "truncatedAlerts": 0,
        "groupLabels": {"alertname": f"Load{i % 50}"}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{"status": "firing",
                    "labels": {"alertname": f"Load{i % 50}", "severity": "warning",
                               "site": "bj-ai", "instance": f"n{i}"},
                    "annotations": {"summary": f"load test notification {i}"},
                    "startsAt": "2026-05-09T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph", "fingerprint": f"{i:016x}"}],
    }).encode()


# --- the sink ------------------------------------------------------------------------------

async def _sink_main(port: int, count_file: str) -> None:
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                count += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        while True:
            await asyncio.sleep(0.2)
            Path(count_file).write_text(str(count))


# --- the load --------------------------------------------------------------------------------

async def _slow_client(port: int, stop: float, cut: list[int]) -> None:
    head = b"POST /alertmanager/r0 HTTP/1.1\r\nHost: bridge\r\nContent-Length: 10\r\n\r\n"
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        try:
            for i in range(len(head)):
                if time.monotonic() >= stop:
                    break
                writer.write(head[i:i + 1])
                await writer.drain()
                try:  # one byte a second, or the bridge's answer if it cuts us off
                    answer = await asyncio.wait_for(reader.read(1024), 1.0)
                except TimeoutError:
                    continue
                if answer.startswith(b"HTTP/1.1 408"):
                    cut[0] += 1
                break
        except ConnectionError:
            pass
        finally:
            writer.close()


async def _load_main(port: int, seconds: float, rate: float, slow: int) -> dict:
    bodies = [_notification(i, RECEIVERS[i % len(RECEIVERS)]) for i in range(1000)]
    requests = [(f"POST /alertmanager/{RECEIVERS[i % len(RECEIVERS)]} HTTP/1.1\r\n"
                 f"Host: bridge\r\nAuthorization: Bearer {TOKEN}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n")
                .encode() + b for i, b in enumerate(bodies)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    behind = [0.0]
    start = time.monotonic() + 0.5
    stop = start + seconds
    cut = [0]
    slow_tasks = [asyncio.create_task(_slow_client(port, stop, cut)) for _ in range(slow)]
    total = int(seconds * rate)
    nxt = [0]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            i = nxt[0]
            if i >= total:
                break
            nxt[0] += 1
            due = start + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                behind[0] = max(behind[0], -wait)
            t0 = time.monotonic()
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latencies.append(time.monotonic() - t0)
            statuses[status] = statuses.get(status, 0) + 1
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    for t in slow_tasks:
        t.cancel()
    await asyncio.gather(*slow_tasks, return_exceptions=True)
    latencies.sort()
    return {"sent": len(latencies), "statuses": statuses, "cut": cut[0],
            "p50_ms": latencies[len(latencies) // 2] * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
            "max_ms": latencies[-1] * 1e3, "behind_s": behind[0],
            "elapsed_s": time.monotonic() - start}


# --- the run ---------------------------------------------------------------------------------

def _metrics(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _total(metrics: dict, name: str, **match: str) -> float:
    return sum(v for (n, labels), v in metrics.items()
               if n == name and all(dict(labels).get(k) == w for k, w in match.items()))


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used: what a notification costs, apart
    from whatever else shares the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(seconds: float, rate: float, slow: int, *, header_timeout: str = "10s",
             work: Path | None = None) -> dict:
    """One run: start the sink and the bridge, load them, account for every notification."""
    work = Path(work or tempfile.mkdtemp(prefix="bench-bridge-"))
    sink_port, bridge_port = _free_port(), _free_port()
    count_file = work / "sink-count"
    config = work / "bridge.yaml"
    targets = "\n".join(f"  t{i}: {{kind: webhook, url: \"http://127.0.0.1:{sink_port}/hook\", "
                        f"secret: {{env: BENCH_SECRET}}, language: en}}"
                        for i in range(len(RECEIVERS)))
    receivers = "\n".join(f"  {r}: [t{i}]" for i, r in enumerate(RECEIVERS))
    config.write_text(
        f"listen: 127.0.0.1:{bridge_port}\nauth: {{bearer_token: {{env: BENCH_TOKEN}}}}\n"
        f"dead_letter: {work / 'dead.jsonl'}\n"
        f"delivery: {{timeout: 5s, queue_size: 10000, shutdown_grace: 30s}}\n"
        f"server: {{header_timeout: {header_timeout}}}\n"
        f"targets:\n{targets}\nreceivers:\n{receivers}\n", encoding="utf-8")
    env = {**os.environ, "BENCH_TOKEN": TOKEN, "BENCH_SECRET": "bench-signing-secret"}
    sink = subprocess.Popen([sys.executable, "-c", "import asyncio, sys; "
                             "from bench.bench_bridge import _sink_main; "
                             f"asyncio.run(_sink_main({sink_port}, {str(count_file)!r}))"],
                            env=env, cwd=Path(__file__).resolve().parents[1])
    bridge = subprocess.Popen([sys.executable, "-m", "computewatch", "alert-bridge",
                               "--config", str(config)], env=env,
                              stdout=subprocess.DEVNULL, stderr=(work / "bridge.log").open("w"))
    url = f"http://127.0.0.1:{bridge_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or bridge.poll() is not None:
                    raise RuntimeError("the bridge did not start: "
                                       + (work / "bridge.log").read_text()[-2000:]) from None
                time.sleep(0.1)
        cpu0 = _cpu_s(bridge.pid)
        load = asyncio.run(_load_main(bridge_port, seconds, rate, slow))
        deadline = time.monotonic() + 120  # let the queues drain
        while True:
            m = _metrics(url)
            received = _total(m, "alert_bridge_notifications_received_total")
            delivered = _total(m, "alert_bridge_messages_delivered_total")
            dead = _total(m, "alert_bridge_messages_dead_lettered_total")
            queued = _total(m, "alert_bridge_queue_depth")
            if (delivered + dead >= received and queued == 0) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        cpu = _cpu_s(bridge.pid) - cpu0
        time.sleep(0.5)  # the sink writes its count every 0.2 s
        rejected = {dict(labels)["reason"]: v for (n, labels), v in m.items()
                    if n == "alert_bridge_requests_rejected_total"}
        return {**load, "accepted": received, "delivered": delivered, "dead_lettered": dead,
                "queued": queued, "sink": int(count_file.read_text() or 0),
                "rejected": rejected, "cpu_ms_per_notification": cpu / max(received, 1) * 1e3}
    finally:
        for proc in (bridge, sink):
            proc.terminate()
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()


def _show(name: str, r: dict) -> None:
    print(f"  {name}: {r['sent']} posts in {r['elapsed_s']:.1f} s "
          f"({r['sent'] / r['elapsed_s']:.0f}/s, at most {r['behind_s'] * 1e3:.0f} ms behind "
          f"schedule), statuses {r['statuses']}")
    print(f"    accept latency p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
          f"max {r['max_ms']:.1f} ms; slow clients cut off {r['cut']} times")
    cost = r["cpu_ms_per_notification"]
    print(f"    the bridge's CPU: {cost:.2f} ms a notification, accepted and delivered (one core "
          f"would take {1e3 / cost:.0f}/s); load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    print(f"    accepted {r['accepted']:.0f} = delivered {r['delivered']:.0f} + dead-lettered "
          f"{r['dead_lettered']:.0f} (queued {r['queued']:.0f}); the sink counted {r['sink']}; "
          f"refused by reason {r['rejected']}")


def main(seconds: float = 60.0, rate: float = 1000.0) -> dict:
    print(f"alert bridge: {rate:.0f} webhook posts/s for {seconds:.0f} s over {CONNECTIONS} "
          "keep-alive connections, with and without 100 slow clients (1 byte/s)")
    base = run_load(min(seconds, 20.0), rate, 0)
    _show("baseline, no slow clients", base)
    loaded = run_load(seconds, rate, 100)
    _show("with 100 slow clients", loaded)
    ok = (loaded["accepted"] == loaded["delivered"] + loaded["dead_lettered"]
          and loaded["queued"] == 0 and loaded["sink"] == loaded["delivered"])
    print(f"  every accepted notification delivered or dead-lettered: {ok}; "
          f"p99 ratio with/without slow clients: {loaded['p99_ms'] / base['p99_ms']:.2f}")
    return loaded


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:3]]
    main(*args)
