"""The compute processes on each device, with a bounded number of series.

``nvmlDeviceGetComputeRunningProcesses`` lists every process holding a CUDA context on a GPU
(pid, device memory used, and on a MIG-enabled GPU the GPU instance it runs in). A node can
run hundreds of short processes, and a pid label makes a new series for each, so a device
exports the count of all its processes and the memory of at most ``top`` of them (the
largest first): enough to name the job on a device, and the pid for a later attribution to
pods (``/proc/<pid>/cgroup``). Names come from ``nvmlSystemGetProcessName``, cached per pid
while it runs; a process that exits between the two calls just has no name.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from computewatch.collectors._base import Labels, LabelSets
from computewatch.collectors.nvml._calls import Dev, DriverCalls
from computewatch.samples import Sample

__all__ = ["ProcessReader"]


class ProcessReader:
    """Reads each GPU's process table and turns it into count and top-N memory samples."""

    def __init__(self, top: int = 5) -> None:
        if top < 0:
            raise ValueError(f"nvml: top processes must be >= 0, got {top}")
        self.top = top
        self._names: dict[int, str] = {}
        self._seen: set[int] = set()

    def read(self, nv: Any, calls: DriverCalls, dev: Dev, h: Any) -> list[Any] | None:
        """The GPU's compute processes (pynvml's objects), or None where it cannot say."""
        procs = calls.call(nv, dev, "processes", ("nvmlDeviceGetComputeRunningProcesses",), h)
        if procs is not None:
            self._seen.update(int(p.pid) for p in procs)
        return procs

    def samples(self, nv: Any, procs: Iterable[Any], labels: Labels, now: datetime,
                sets: LabelSets) -> list[Sample]:
        """``accelerator.processes`` (all of them) and, for the largest ``top``,
        ``accelerator_process.memory_used_bytes{pid, process_name}``; ``labels`` are the
        device's, a process's are made from them through ``sets``."""
        procs = list(procs)
        out = [Sample("accelerator", "processes", float(len(procs)), labels, now)]
        known = [p for p in procs if p.usedGpuMemory is not None]
        known.sort(key=lambda p: (-int(p.usedGpuMemory), int(p.pid)))
        for p in known[:self.top]:
            pid = int(p.pid)
            name = self._name(nv, pid)
            extra = (("pid", str(pid)), ("process_name", name)) if name else (("pid", str(pid)),)
            out.append(Sample("accelerator_process", "memory_used_bytes",
                              float(p.usedGpuMemory), sets.plus(labels, extra), now))
        return out

    def end_run(self) -> None:
        """Forget the names of processes that are gone (pids are reused)."""
        self._names = {pid: n for pid, n in self._names.items() if pid in self._seen}
        self._seen = set()

    def _name(self, nv: Any, pid: int) -> str:
        if pid not in self._names:
            try:
                raw = nv.nvmlSystemGetProcessName(pid)
            except (nv.NVMLError, AttributeError):  # exited, not permitted, or an old binding
                return ""
            name = raw.split(b"\0", 1)[0].decode("utf-8", "replace") if isinstance(
                raw, bytes) else str(raw)
            self._names[pid] = name
        return self._names[pid]
