"""One agent collection cycle of a simulated node with 8 GPUs and 8 NPUs.

Figures: CPU time per cycle (process CPU, user + system, children included) and the agent's
resident memory after warm-up, measured in a fresh process so nothing else inflates it.
The cycle includes the fake drivers (the simulated NVML calls and the text the fake npu-smi
prints: the table every cycle, the per-chip views every 4th), so it is an upper bound on the
collectors' own cost.
The resident memory includes the simulator (the fleet the node is taken from); an agent on real
hardware imports neither numpy's fleet arrays nor the simulator.

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


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child()
    else:
        main()
