"""A real agent process fed by a synthetic load collector, for the durable-delivery fault test.

    python tests/load_agent.py NODE.yaml TALLY SERIES LISTEN

The agent is the real one (`collectors.agent.Agent`, the exporters that NODE.yaml configures,
signals as `computewatch agent` handles them); only the collector is synthetic: every run
emits SERIES samples (one per series) and then appends ``<pid> <samples>`` to TALLY, so the
test knows exactly how many samples were generated, independently of the delivery path.
Each exporter is wrapped so that, once its ``export`` of a load batch returned (for the
remote-write exporter: the batch is on disk), ``<pid> <samples>`` is appended to
TALLY.persisted: the test times its SIGKILL by it, it never counts with it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from computewatch.collectors.agent import Agent, Scheduled
from computewatch.collectors.config import load_node_config
from computewatch.collectors.setup import build_exporters
from computewatch.samples import Sample


class LoadCollector:
    name = "load"

    def __init__(self, labels: dict[str, str], series: int, tally: Path) -> None:
        self.labels = [{**labels, "device": f"syn-{i}", "index": str(i), "vendor": "synthetic"}
                       for i in range(series)]
        self.tally = os.open(tally, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.runs = 0

    def collect(self) -> list[Sample]:
        now = datetime.now(UTC)
        self.runs += 1
        value = (self.runs % 100) / 100
        out = [Sample.of("accelerator.utilization_ratio", value, lab, now) for lab in self.labels]
        os.write(self.tally, f"{os.getpid()} {len(out)}\n".encode())
        return out


class Persisted:
    """An exporter that notes each load batch it has taken (the kill's timing, not a count)."""

    def __init__(self, exporter, path: Path) -> None:
        self._exporter = exporter
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def __getattr__(self, name: str):
        return getattr(self._exporter, name)

    def export(self, batch, source: str = ""):
        result = self._exporter.export(batch, source)
        if source == LoadCollector.name:
            os.write(self._fd, f"{os.getpid()} {len(batch)}\n".encode())
        return result


def main() -> None:
    config, tally, series, listen = sys.argv[1:5]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_node_config(Path(config))
    persisted = Path(tally + ".persisted")
    exporters = [e if e.name == "prometheus" else Persisted(e, persisted)
                 for e in build_exporters(cfg, listen=listen)]
    collector = LoadCollector(cfg.labels, int(series), Path(tally))
    agent = Agent([Scheduled(collector, cfg.interval, cfg.timeout)], exporters, cfg.labels)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("ready", flush=True)
    try:
        agent.run(stop)
    finally:
        agent.close()


if __name__ == "__main__":
    main()
