"""THE fault test of durable delivery (about 2 minutes): 2,000 samples/s into a real
VictoriaMetrics for 2 minutes; the server is stopped for the middle 60 s, and the agent is
SIGKILLed and restarted once during the outage. Afterwards VictoriaMetrics holds exactly the
samples generated minus the counted drops, each once, and the drops are 0 with the default
buffer size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port, start_victoriametrics
from vmexport import exported, wait_for_count

pytestmark = pytest.mark.mostly_waits  # an outage and a killed agent, in real time (~2 min)

RATE = 2000  # series, one sample each per 1 s run
RUN_S = 120
OUTAGE = (30, 90)  # seconds into the run: VictoriaMetrics stopped, then started again
KILL_AT = 60
LOAD_AGENT = Path(__file__).with_name("load_agent.py")
SERIES = 'accelerator_utilization_ratio{node="load-node",vendor="synthetic"}'


def scrape(port: int) -> dict[str, list]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(body)}


def drops(port: int) -> dict[str, float]:
    """What the agent says it dropped: the queue's drops by reason, and failed exports."""
    fams = scrape(port)
    out = {f"buffer:{s.labels['reason']}": s.value
           for s in fams.get("agent_buffer_dropped_samples", [])}
    out |= {f"export:{s.labels['reason']}": s.value
            for s in fams.get("agent_samples_dropped", [])}
    return out


def tally(path: Path) -> dict[int, int]:
    """Samples generated per agent process, from the collector's own tally."""
    per_pid: dict[int, int] = {}
    for line in path.read_text().splitlines():
        pid, n = map(int, line.split())
        per_pid[pid] = per_pid.get(pid, 0) + n
    return per_pid


def start_agent(config: Path, tally_file: Path, port: int, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, str(LOAD_AGENT), str(config), str(tally_file),
                                 str(RATE), f"127.0.0.1:{port}"], stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            scrape(port)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"load agent did not start:\n{log.read_text()[-3000:]}")


def kill_between_runs(proc: subprocess.Popen, tally_file: Path) -> None:
    """SIGKILL between two 1 s runs, once the last run's batch is on disk. On a loaded
    machine a batch can take longer than half a run to get there, so wait until the
    remote exporter has taken every batch the collector tallied (load_agent notes each in
    TALLY.persisted), then kill before the next run."""
    persisted = tally_file.with_name(tally_file.name + ".persisted")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        generated = tally(tally_file).get(proc.pid, 0)
        if generated and persisted.exists() \
                and tally(persisted).get(proc.pid, 0) >= generated \
                and tally(tally_file).get(proc.pid, 0) == generated:
            break
        time.sleep(0.01)
    else:
        raise AssertionError("the agent's exporter never caught up with its collector")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def at(t0: float, second: float) -> None:
    time.sleep(max(0.0, t0 + second - time.monotonic()))


@pytest.mark.mostly_waits
def test_an_outage_and_a_killed_agent_lose_nothing(tmp_path):
    vm = start_victoriametrics(tmp_path / "vm")
    agent_port = free_port()
    config = tmp_path / "node.yaml"
    config.write_text(
        "node: load-node\nsite: bj-ai\nhub: jjj\ninterval: 1s\n"
        "exports:\n  remote:\n    enabled: true\n"
        f"    url: victoriametrics://127.0.0.1:{vm.port}\n"
        f"    buffer_dir: {tmp_path / 'buffer'}\n"
        "    max_backoff: 5s\n",  # the buffer's size and everything else: the defaults
        encoding="utf-8")
    tally_file = tmp_path / "tally"
    log = tmp_path / "agent.log"
    first = second = None
    try:
        t0 = time.monotonic()
        first = start_agent(config, tally_file, agent_port, log)
        at(t0, OUTAGE[0])
        vm.stop()
        at(t0, KILL_AT)
        dropped_first = drops(agent_port)
        kill_between_runs(first, tally_file)
        second = start_agent(config, tally_file, agent_port, log)
        at(t0, OUTAGE[1])
        vm.start()  # same port, same data directory
        at(t0, RUN_S)
        dropped_second = drops(agent_port)
        second.send_signal(signal.SIGTERM)  # a clean stop flushes what is left
        assert second.wait(timeout=60) == 0, log.read_text()[-3000:]

        generated = tally(tally_file)
        assert sorted(generated) == sorted([first.pid, second.pid])
        total = sum(generated.values())
        assert total >= RATE * (RUN_S - 10)  # both agents really ran at the rate
        dropped = sum(dropped_first.values()) + sum(dropped_second.values())
        # VictoriaMetrics may make the last batch searchable a moment after acknowledging it
        # (a failed run's data directory, reopened, held all 240,000): wait for the count.
        wait_for_count(vm.url, SERIES, total - dropped, timeout_s=30)
        series = exported(vm.url, SERIES)
        stored = sum(len(s["values"]) for s in series)
        assert stored == total - dropped, (
            f"generated {total} ({generated}), dropped {dropped_first} + {dropped_second}, "
            f"stored {stored}\n{log.read_text()[-3000:]}")
        assert dropped == 0
        assert len(series) == RATE
        assert all(len(set(s["timestamps"])) == len(s["timestamps"]) for s in series), \
            "a batch was written twice"
        log_text = log.read_text()
        assert "failing" in log_text and "reachable again" in log_text
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        vm.stop()
