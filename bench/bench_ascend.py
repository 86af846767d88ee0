"""A slow npu-smi on an Atlas A3 node: does every cycle still deliver its table values?

The node: 8 NPUs x 2 dies (16 chips) in the A3 table layout, the simulator's fake ``npu-smi``
and ``hccn_tool`` answering every call after 0.3 s (npu-smi is that slow on loaded nodes).
The agent runs the collector on its defaults (interval 15 s, run timeout 10 s; views every
4th cycle, 4 at a time, within 4 s per cycle), cycle after cycle without the idle time in
between. Figures per cycle: commands started, wall time, process CPU, and whether the 16
chips' table values arrived.

Baseline in the same run: the previous collector's way, every per-chip view of every chip
every cycle, one after another, with no budget (``-t usages`` and ``-t common`` per chip,
``-t power`` for the dies the table shows none for: 41 calls), on the same slow node.
"""

from __future__ import annotations

import resource
import subprocess
import time
from collections.abc import Sequence

from bench._util import row

CYCLES = 20
LATENCY_S = 0.3
RUN_TIMEOUT_S = 10.0


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def _node():
    from computewatch.sim import build_fleet
    from computewatch.sim.node import mixed_node
    from computewatch.topology import load_topology

    node = mixed_node(build_fleet(load_topology()), gpus=0, npus=16, npu_model="Ascend 910B")
    node.npu_layout = "a3"
    return node


class _Slow:
    """A tool that answers after ``latency_s``, as a loaded node's does; counts its calls."""

    def __init__(self, tool, latency_s: float) -> None:
        self.tool, self.latency_s = tool, latency_s
        self.calls = 0

    def __call__(self, argv: Sequence[str], timeout: float) -> str:
        self.calls += 1
        if self.latency_s > timeout:
            time.sleep(timeout)
            raise subprocess.TimeoutExpired(list(argv), timeout)
        time.sleep(self.latency_s)
        return self.tool(argv, timeout)


class _ChipFormOnly:
    """The previous collector asked each chip (``-c``); refuse the card form at once."""

    def __init__(self, tool) -> None:
        self.tool = tool

    def __call__(self, argv: Sequence[str], timeout: float) -> str:
        if "-t" in argv and "-c" not in argv:
            raise subprocess.CalledProcessError(1, list(argv), output="use -c\n")
        return self.tool(argv, timeout)


def _run(collector, cycles: int) -> list[dict]:
    from computewatch.collectors.agent import Agent, Scheduled
    from computewatch.samples import sample_value

    agent = Agent([Scheduled(collector, 15.0, RUN_TIMEOUT_S)], [], {"node": "a3-bench"})
    out = []
    try:
        for _ in range(cycles):
            c0, t0 = _cpu(), time.perf_counter()
            samples = agent.run_once()
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            utils = [s for s in samples if s.name == "accelerator.utilization_ratio"]
            commands = sample_value(samples, "agent.collector_commands", {"collector": "ascend"})
            out.append({"wall": wall, "cpu": cpu, "chips": len(utils),
                        "commands": commands or 0.0})
    finally:
        agent.close()
    return out


def main() -> None:
    from computewatch.collectors.ascend import AscendCollector
    from computewatch.sim.fake_hccn import FakeHccnTool
    from computewatch.sim.fake_npusmi import FakeNpuSmi

    node = _node()
    labels = {"node": "a3-bench"}
    ours = AscendCollector(labels, run=_Slow(FakeNpuSmi(node), LATENCY_S),
                           hccn_run=_Slow(FakeHccnTool(node), LATENCY_S),
                           run_timeout_s=RUN_TIMEOUT_S)
    runs = _run(ours, CYCLES)
    # The baseline, run to its end (the agent would abandon it at the run timeout).
    slow = _Slow(FakeNpuSmi(node), LATENCY_S)
    old = AscendCollector(labels, run=_ChipFormOnly(slow), detail_every=1,
                          detail_concurrency=1, detail_budget_s=1e9, views=("usages", "common"),
                          slow_views=(), static_views=(), hccn_tool=None)
    c0, t0 = _cpu(), time.perf_counter()
    old.collect()
    base_wall, base_cpu = time.perf_counter() - t0, _cpu() - c0

    def mean(rs: list[dict], key: str) -> float:
        return sum(r[key] for r in rs) / len(rs)

    steady = runs[4:]  # after the first round's one-off reads (boards, chip map)
    landed = sum(r["chips"] == 16 for r in runs)
    print(f"Ascend collector on a slow A3 node (16 dies, npu-smi and hccn_tool {LATENCY_S} s "
          f"per call; {CYCLES} agent cycles, defaults: views every 4th cycle, slow views and "
          "hccn_tool every 16th)")
    row("cycles whose table values arrived", f"{landed}/{CYCLES}", "(all 16 chips)")
    row("commands per cycle", f"{mean(runs, 'commands'):.1f}",
        f"(after the first round {mean(steady, 'commands'):.1f}; "
        f"max {max(r['commands'] for r in runs):.0f})")
    row("cycle wall time", f"{mean(runs, 'wall'):.2f} s",
        f"(after the first round {mean(steady, 'wall'):.2f} s; max "
        f"{max(r['wall'] for r in runs):.2f} s; run timeout {RUN_TIMEOUT_S:g} s)")
    row("CPU per cycle", f"{mean(runs, 'cpu') * 1000:.1f} ms",
        "(agent, collector and the fakes; the waits cost none)")
    row("baseline: each chip's views in turn, every cycle", f"{slow.calls} commands",
        f"{base_wall:.1f} s, CPU {base_cpu * 1000:.0f} ms: past the {RUN_TIMEOUT_S:g} s "
        "timeout, the cycle exports nothing" if base_wall > RUN_TIMEOUT_S else
        f"{base_wall:.1f} s")
    row("ratio cycle wall time baseline / ours", f"{base_wall / mean(runs, 'wall'):.1f}x",
        "(> 1: ours is quicker)")


if __name__ == "__main__":
    main()
