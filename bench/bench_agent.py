"""One agent collection cycle of a simulated node with 8 GPUs and 8 NPUs.

Figures: CPU time per cycle (process CPU, user + system, children included) and the agent's
resident memory after warm-up, measured in a fresh process so nothing else inflates it.
The cycle includes the fake drivers (the simulated NVML calls and the text the fake npu-smi
prints: the table every cycle, the per-chip views every 4th), so it is an upper bound on the
collectors' own cost.
The resident memory includes the simulator (the fleet the node is taken from); an agent on real
hardware imports neither numpy's fleet arrays nor the simulator.

With workload attribution (``kubernetes.enabled``), measured in a second fresh process
against a kubelet PodResources server in a third (its CPU is not the agent's), every GPU and
NPU held by a pod, so every accelerator series is relabelled: CPU per cycle with the List call
in every cycle (an upper bound), as the node config schedules it (a List every ``refresh``,
60 s, or sooner when a device's processes change: every 4th 15 s cycle here, counted), and
with the relabel step alone; and the peak RSS after the agent's first Lists.

How the four are timed (since 6 December, 15:20 UTC): all four agents alive in one process,
each running 5 cycles in turn (the order turning each block), 200 cycles each, CPU summed per
agent. Before, each agent ran 200 cycles in one stretch, 3 rounds, and the least of each was
taken: the machine's speed drifts by a third within a minute, so the plain agent ranged 7.4 to
11.4 ms over six such rounds of one run (quiet machine) and the differences moved by 1 to 2 ms
from run to run ("relabel alone" -1.42 ms in one, +1.51 ms in the next). Alternated in blocks,
two runs of each tree agree within 0.5 ms.

The List without grpcio (6 December, 15:20 UTC, quiet machine, load 0.3 to 1.2): the client
now speaks gRPC's unary call over HTTP/2 itself (`collectors/kubernetes/_client.py`). CPU of
one List against this bench's kubelet (100 Lists 10 ms apart, three rounds, in a fresh
interpreter): grpcio's channel 2.5 to 3.4 ms; h2 (the pure-Python HTTP/2 library) 2.0 to 2.1
ms; the frames read and written by the module, HPACK from `hpack`, 0.53 to 0.78 ms. RSS in that
interpreter with the agent's modules imported, after the first List: +16.1 MB with grpcio,
+0.6 MB now. This bench, before and after alternated, two runs each: a List every cycle
+4.30 / +4.36 ms before, +2.10 / +2.18 ms after; relabel alone +0.83 / +1.45 ms and +0.77 /
+1.19 ms (unchanged code); as configured (50 Lists in 200 cycles) +1.96 / +1.96 ms before,
+0.96 / +1.46 ms after; peak RSS 71 MB (+10 MB) before, 61 MB (+0 MB) after. What is left is
the relabel step and the hook (0.35 and 0.11 ms a cycle by thread CPU) and the 16
``allocated`` samples and larger label sets they add to the cycle.
A second check of h2 against the module's own framing (helper a22, 6 December 15:49 UTC,
load 4.5 to 6.3; h2's client kept on branch a22-h2, which also handed the flow-control
window back frame by frame): 200 Lists 10 ms apart against this bench's kubelet, each tree
in a fresh interpreter, 4 rounds alternated: 0.74 to 0.84 ms of CPU a List here, 1.59 to
1.96 ms with h2 (3 rounds at load 9: 0.58 to 0.63 against 1.39 to 1.72 ms); 5.5 to 7.3
context switches a List in both; RSS +0.2 MB after the first List here (above the agent's
modules), +0.7 MB with h2. So h2 stays out of the agent.

The relabel step puts each relabelled sample in its original's place in the agent's own list
of the run's batch, so the original is freed at once. Building a second list beside the first
(before 6 December) kept ~570 more objects alive each cycle, and the cyclic garbage collector
then ran about once a cycle instead of every 8th (100 collections in 100 cycles, not 13;
timed with ``gc.callbacks`` under load, 0.55 ms a cycle against 0.09 ms). On the node's two
batches alone, fresh copies each cycle, old and new steps interleaved in one process (least
of 7, load 6): +0.67 ms before, +0.53 ms after; in the whole agent (least of 8, load 5 to 8)
+1.06 and +1.02 ms, not told apart. What remains is one new `Sample` per sample of a held
device (566 here).
Labels given where the collectors build them (6 December, helpers a20 and a21): the agent
installs workload attribution's `DeviceLabels` hook in the NVML and Ascend collectors, so a
held device's samples are made with namespace/pod/container, and the relabel step only
checks each label set against the answer in force (copying what a newer answer changes);
and the collectors keep their label tuples across runs (`LabelSets`: per device, compared
with the labels given, so a changed label makes a new tuple; 4,096 entries at most), so a
series carries the same tuple object every cycle. The hook alone did not pay (its samples
carried fresh 13-pair tuples that the catalogue check compared pair by pair and the
garbage collector traversed, where the relabel step's copies carried its cache's shared
ones); with the kept tuples it does, and the plain agent gains as well. Instructions per
cycle (callgrind, the cycle without the agent's threads, 20 cycles, the answer from a fake
client): main as it was, plain 43.03 M, with the copies 46.35 M (+3.3 M); the hook on main
51.11 M; now plain 39.19 M, copies 45.59 M, hook (as built) 40.15 M (+0.96 M). A second
round at load 9 (the counts move with the load, the npu-smi worker threads' GIL handoffs
included): main 47.32 / 51.14 M (+3.8 M), now 43.68 / 45.68 M (+2.0 M). CPU per
``run_once`` cycle with the agent's threads, least of 5 alternating runs of 3x50 cycles
(load 6 to 8): main plain 7.98 ms, copies 8.46 ms; now plain 6.93 ms, hook 6.49 ms, copies
7.57 ms. The labels of a cycle's samples are those main gives, in all three ways. This
bench, main and now alternated, 4 runs each (load 6 to 13, beside another helper's runs):
as configured +2.60 to +4.58 ms before, +1.71 to +3.26 ms now (+0.75 ms in one run at load
5); the relabel step alone +1.0 to +2.3 ms before, -0.40 to +2.0 ms now; peak RSS 73 MB
(+12 to +13 MB) before, 71 to 72 MB (+10 to +11 MB) now. Not told apart from the load's
noise; the instruction counts decide. This bench times several agents in one process,
which may not be fair to the later ones: in one check (callgrind, 10 cycles of the hook's
agent) the cycle took 65.1 and 67.0 M instructions after a plain agent had run 3 cycles
and closed in the same process, 45.7 and 53.9 M without it; not explained yet.
The List's answer is read by hand from the protobuf wire format (`_wire`), not through
the generated classes: the agent loads grpc but not the protobuf runtime. RSS in a fresh
interpreter with the agent's modules loaded: grpc and the stubs +14.8 MB at import, +19.0
MB after the first List; grpc alone +11.9 and +16.2 MB. The rest is grpcio's, which the
issue requires: importing it maps about 6.4 MB of its library's code and makes 3.2 MB of
Python objects (cygrpc imports asyncio and ssl, grpc imports grpc.aio), and the first
connection touches 3.8 MB more of the library's code. Measured and of no effect on it:
channel options (no retries, no HTTP proxy, no service-config lookup, a local subchannel
pool), ``GRPC_POLL_STRATEGY=poll``, ``GRPC_ENABLE_FORK_SUPPORT=0``, ``GRPC_EXPERIMENTS``,
``MALLOC_ARENA_MAX=2``, ``madvise(MADV_RANDOM)`` on the library. grpc is imported only
when the kubelet's socket exists.
Where a List's CPU goes (a21, against this bench's kubelet, load 5 to 9): grpc is
initialised for the channel and shut down when it closes, so every List starts six
threads (``grpc_global_timer``, four ``event_engine`` workers, ``lifeguard``) and ends
them: about 55 to 65 context switches a List, 0.5 to 2 ms of it system time, and 0.4 to
0.7 ms of CPU in those threads after the call returns, while they exit (gone within 10
ms; measured over the first 0.5 s, main thread apart by its schedstat). After
that the process costs what it does with grpc imported and no channel (the next 10 s of
sleep: 0.26 to 0.35 ms, against 0.26 to 0.31 ms; the 1.5 to 5 ms measured before included
the threads' exit). An unused channel held open keeps the threads (and grpc initialised):
a List then costs ~2.2 ms instead of ~2.9 to 4.8 ms and 41 context switches, but the idle
process 0.36 ms of CPU a second (5.4 ms a 15 s cycle, against a List every 4th cycle), so
it is not done; ``GRPC_ENABLE_FORK_SUPPORT``, ``GRPC_POLL_STRATEGY`` (poll, epoll1) and
``GRPC_EXPERIMENTS=-event_engine_client,-event_engine_dns,-event_engine_listener`` kept the
threads and changed the per-List CPU by less than the runs' spread. A channel kept open
between Lists would save ~0.5 ms a List but costs ~1 ms of CPU a second idle.
Instructions a List (callgrind, 10 Lists 10 ms apart, grpc's threads included): 1.80 M
decoding with the generated classes, 2.17 M with `_wire` (+0.37 M, about 0.1 ms; at a List
every 4th cycle +0.09 M a cycle) for 2.9 MB less RSS: kept.
Earlier figures (a20, 6 December): a List's own cost through `PodResourcesClient.list`
1.18 ms of CPU (100 Lists 10 ms apart, least of 5 rounds, load 2.2; 0.08 ms of it system),
1.04 ms for the call alone on a new channel, 0.57 ms on a channel kept open; in the agent
a List every cycle added 2.7 M instructions a cycle but about 3.4 ms of CPU: kernel time
and contention that callgrind does not count, to which the six thread starts and stops
above, beside the collectors' threads, are the likely main part (not separated).

Baseline in the same run: what Telegraf's nvidia_smi input does each cycle, spawning a
subprocess that prints a recorded ``nvidia-smi --query-gpu=... --format=csv`` (8 GPUs) and
parsing its output into samples; it covers only the 8 GPUs.
"""

from __future__ import annotations

import csv
import io
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench._util import row

RECORDED = Path(__file__).parent / "data" / "nvidia-smi-query-gpu.csv"
CYCLES = 200
BLOCK = 5
"""Cycles each agent runs in turn when agents with and without attribution are compared."""


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _peak_rss_mb() -> float:
    """This program's peak resident set (VmHWM). Not ru_maxrss: Linux carries that across
    exec from the parent, so a child of a big process would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _number(cell: str) -> float:
    return float(cell.strip().split(" ")[0])


def nvidia_smi_cycle() -> int:
    """Spawn, read, parse: the per-cycle work of a nvidia-smi based input."""
    from computewatch.samples import Sample

    out = subprocess.run(["cat", str(RECORDED)], capture_output=True, text=True,
                         check=True).stdout
    rows = list(csv.reader(io.StringIO(out), skipinitialspace=True))
    now = datetime.now(UTC)
    samples = []
    for r in rows[1:]:
        labels = {"model": r[0], "device": r[1], "pci_bus_id": r[2], "driver_version": r[3],
                  "vendor": "nvidia", "ecosystem": "cuda"}
        samples += [
            Sample.of("accelerator.utilization_ratio", _number(r[4]) / 100, labels, now),
            Sample.of("accelerator.memory_utilization_ratio", _number(r[5]) / 100, labels, now),
            Sample.of("accelerator.memory_used_bytes", _number(r[6]) * 2**20, labels, now),
            Sample.of("accelerator.memory_total_bytes", _number(r[7]) * 2**20, labels, now),
            Sample.of("accelerator.power_watts", _number(r[8]), labels, now),
            Sample.of("accelerator.temperature_celsius", _number(r[9]), labels, now),
            Sample.of("accelerator.sm_clock_hertz", _number(r[10]) * 1e6, labels, now),
            Sample.of("accelerator.memory_clock_hertz", _number(r[11]) * 1e6, labels, now),
        ]
    return len(samples)


def _child() -> None:
    """Runs in a fresh interpreter: warm up, then time CYCLES agent cycles."""
    from computewatch.collectors.config import NodeConfig
    from computewatch.collectors.setup import build_agent
    from computewatch.sim.node import simulated_node

    node = simulated_node()

    def per_cycle(config: NodeConfig) -> tuple[int, float, float]:
        agent = build_agent(config, simulate=node, exporters=[])
        n = len(agent.run_once())
        for _ in range(5):
            agent.run_once()
        c0, t0 = _cpu(), time.perf_counter()
        for _ in range(CYCLES):
            agent.run_once()
        agent.close()
        return n, (_cpu() - c0) / CYCLES, (time.perf_counter() - t0) / CYCLES

    n, cpu, wall = per_cycle(NodeConfig())
    rss = _peak_rss_mb()
    gpus_only = NodeConfig.model_validate({"collectors": {"ascend": {"enabled": False}}})
    n_gpu, cpu_gpu, _ = per_cycle(gpus_only)
    c0 = _cpu()
    for _ in range(CYCLES // 4):
        base_n = nvidia_smi_cycle()
    base = (_cpu() - c0) / (CYCLES // 4)
    print(json.dumps({"samples": n, "cpu": cpu, "wall": wall, "rss": rss, "base": base,
                      "base_samples": base_n, "gpu_samples": n_gpu, "cpu_gpu": cpu_gpu}))


def _kubelet(socket: str) -> None:
    """A PodResources server holding every device of the simulated node (its own process)."""
    from concurrent import futures

    import grpc

    from computewatch.collectors.kubernetes import _podresources_pb2 as pb
    from computewatch.collectors.kubernetes import _podresources_pb2_grpc as pb_grpc
    from computewatch.sim.node import simulated_node

    node = simulated_node()
    gpus = [d.uuid for d in node.of_vendor("nvidia")]
    npus = [f"Ascend910-{d.index}" for d in node.of_vendor("huawei")]
    answer = pb.ListPodResourcesResponse(pod_resources=[
        pb.PodResources(namespace=f"team-{i % 3}", name=f"job-{i}", containers=[
            pb.ContainerResources(name="worker", devices=[
                pb.ContainerDevices(resource_name=res, device_ids=[dev])])])
        for i, (res, dev) in enumerate([("nvidia.com/gpu", g) for g in gpus]
                                       + [("huawei.com/Ascend910", n) for n in npus])])

    class Lister(pb_grpc.PodResourcesListerServicer):
        def List(self, request, context):
            return answer

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    pb_grpc.add_PodResourcesListerServicer_to_server(Lister(), server)
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def _child_attributed(socket: str) -> None:
    """Runs in a fresh interpreter: the agent with attribution on, against ``socket``.

    Three ways, each over the node's own collectors: the List in every cycle (an upper
    bound), the agent's default (a List every ``kubernetes.refresh``, 60 s, and sooner when
    a device's processes change; the attribution's clock moved 15 s a cycle, so this is the
    real schedule, hints included), and the relabel step alone from one cached answer."""
    from computewatch.collectors.agent import Agent, Scheduled
    from computewatch.collectors.config import NodeConfig
    from computewatch.collectors.kubernetes import PodAttribution, PodResourcesClient
    from computewatch.collectors.setup import build_agent, build_collectors
    from computewatch.sim.node import simulated_node

    node = simulated_node()
    config = NodeConfig.model_validate({"kubernetes": {"enabled": True,
                                                       "pod_resources_socket": socket}})

    def attributed(refresh_s: float) -> tuple[Agent, list[int], list[float]]:
        """The agent, the count of its Lists (its client's calls), and its own clock (moved
        one interval a cycle)."""
        client, asked, clock = PodResourcesClient(Path(socket)), [0], [0.0]
        ask = client.list

        def counted():
            asked[0] += 1
            return ask()

        client.list = counted  # type: ignore[method-assign]
        att = PodAttribution(node.labels, client, refresh_s=refresh_s, clock=lambda: clock[0])
        agent = Agent([Scheduled(att, config.interval), *build_collectors(config, node)], [],
                      node.labels, relabel=att.relabel, device_labels=att.device_labels)
        return agent, asked, clock

    built = build_agent(config, simulate=node, exporters=[])  # what the node config builds
    assert built.collector_names == ["kubernetes", *(c.name for c in
                                                     build_collectors(config, node))]
    built.close()
    agent, asked, clock = attributed(config.kubernetes.refresh)
    for _ in range(CYCLES // 4):
        agent.run_once()
        clock[0] += config.interval
    rss = _peak_rss_mb()  # one agent as configured, before the others are made
    agent.close()
    # an answer cached once, for the relabel step alone (no List in the timed cycles)
    cached = PodAttribution(node.labels, PodResourcesClient(Path(socket)))
    cached.collect()
    listing, _, list_clock = attributed(0.0)
    default, asked, clock = attributed(config.kubernetes.refresh)
    agents = {
        "plain": (Agent(build_collectors(config, node), [], node.labels), [0.0]),
        "list": (listing, list_clock),
        "default": (default, clock),
        "relabel": (Agent(build_collectors(config, node), [], node.labels,
                          relabel=cached.relabel, device_labels=cached.device_labels), [0.0]),
    }
    samples = agents["list"][0].run_once()
    for agent, own in agents.values():  # warm-up
        for _ in range(5):
            agent.run_once()
            own[0] += config.interval
    asked[0] = 0
    # Alternated in short blocks, in a turning order, all four agents alive throughout: the
    # machine's speed drifts by a third within a minute (other work, frequency, caches), and
    # timing each agent's cycles in one stretch put that drift into the differences.
    cpu = dict.fromkeys(agents, 0.0)
    names = list(agents)
    for block in range(CYCLES // BLOCK):
        for name in names[block % 4:] + names[:block % 4]:
            agent, own = agents[name]
            c0 = _cpu()
            for _ in range(BLOCK):
                agent.run_once()
                own[0] += config.interval
            cpu[name] += _cpu() - c0
    for agent, _ in agents.values():
        agent.close()
    cached.close()
    cycles = CYCLES // BLOCK * BLOCK
    held = sum(1 for s in samples if s.name == "accelerator.allocated" and s.value == 1.0)
    print(json.dumps({"samples": len(samples), "rss": rss, "held": held,
                      **{f"cpu_{k}": v / cycles for k, v in cpu.items()},
                      "lists": asked[0], "cycles": cycles,
                      "refresh": config.kubernetes.refresh, "interval": config.interval}))


def _attributed() -> dict:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kl", dir="/tmp") as d:
        socket = f"{d}/kubelet.sock"
        kubelet = subprocess.Popen([sys.executable, "-m", "bench.bench_agent", "--kubelet",
                                    socket], stdout=subprocess.PIPE, text=True)
        try:
            assert kubelet.stdout is not None and kubelet.stdout.readline().strip() == "ready"
            proc = subprocess.run([sys.executable, "-m", "bench.bench_agent",
                                   "--child-attributed", socket],
                                  capture_output=True, text=True, check=True)
        finally:
            kubelet.terminate()
            kubelet.wait(10)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.bench_agent", "--child"],
                          capture_output=True, text=True, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"agent collection cycle (simulated node, 8 GPUs + 8 NPUs, {r['samples']} samples "
          f"per cycle, {CYCLES} cycles)")
    row("CPU time per cycle", f"{r['cpu'] * 1000:.1f} ms", "(aim <= 5 ms)")
    row("wall time per cycle", f"{r['wall'] * 1000:.1f} ms")
    row("agent peak RSS", f"{r['rss']:.0f} MB", "(aim <= 64 MB)")
    row("baseline: subprocess nvidia-smi CSV + parse", f"{r['base'] * 1000:.1f} ms",
        f"CPU per cycle, 8 GPUs only, {r['base_samples']} samples")
    row("agent, 8 GPUs only (NVML collector)", f"{r['cpu_gpu'] * 1000:.1f} ms",
        f"CPU per cycle, {r['gpu_samples']} samples incl. the agent's own")
    row("ratio baseline / agent, 8 GPUs each", f"{r['base'] / r['cpu_gpu']:.2f}x",
        "(> 1: the agent is cheaper)")
    row("ratio baseline / agent, whole node", f"{r['base'] / r['cpu']:.2f}x",
        "(the agent also reads 8 NPUs)")
    per_base = r["base"] / r["base_samples"]
    per_agent = r["cpu_gpu"] / r["gpu_samples"]
    row("ratio per sample, 8 GPUs each", f"{per_base / per_agent:.2f}x",
        f"({per_base * 1e6:.0f} µs vs {per_agent * 1e6:.0f} µs CPU per sample)")
    k = _attributed()
    print(f"with workload attribution (kubelet PodResources, {k['held']} of the devices held "
          f"by pods, {k['samples']} samples per cycle)")
    plain = k["cpu_plain"]
    row("CPU per cycle, the same agent without attribution", f"{plain * 1000:.1f} ms",
        f"(baseline; the four alternated in blocks of {BLOCK} cycles, {k['cycles']} each)")
    row("CPU per cycle, List every cycle", f"{k['cpu_list'] * 1000:.1f} ms",
        f"(+{(k['cpu_list'] - plain) * 1000:.2f} ms; an upper bound)")
    row("CPU per cycle, relabel only", f"{k['cpu_relabel'] * 1000:.1f} ms",
        f"(+{(k['cpu_relabel'] - plain) * 1000:.2f} ms; the answer cached)")
    row(f"CPU per cycle, as configured (refresh {k['refresh']:g} s)",
        f"{k['cpu_default'] * 1000:.1f} ms",
        f"(+{(k['cpu_default'] - plain) * 1000:.2f} ms at a {k['interval']:g} s interval, "
        f"{k['lists']} Lists in {k['cycles']} cycles; aim <= +1 ms)")
    row("agent peak RSS with attribution", f"{k['rss']:.0f} MB",
        f"(+{k['rss'] - r['rss']:.0f} MB; aim <= +10 MB)")


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child()
    elif "--kubelet" in sys.argv:
        _kubelet(sys.argv[-1])
    elif "--child-attributed" in sys.argv:
        _child_attributed(sys.argv[-1])
    else:
        main()
