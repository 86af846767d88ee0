"""Running many slow device commands within a budget: a few at a time, the rest next cycle.

npu-smi is slow on loaded nodes (0.3 s and more per call) and a node has dozens of chips, so
the per-chip views cannot all run in one collection cycle without costing the cycle its
table. `CallQueue` runs the commands it is given, ``concurrency`` at a time (npu-smi and
hccn_tool are separate processes; several may run at once, as gpustack's and npu-exporter's
collectors do), until the cycle's budget is spent. What was not started stays queued for the
next cycle; what is still running when the budget ends keeps running (each command has its
own timeout, and a hung one is killed with its process group) and is handed over when it
finishes. After a timeout no further command is started in that cycle: a hung tool should
cost one timeout per cycle, not one per chip.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from computewatch.collectors import CollectorError, ResultCode

__all__ = ["Call", "CallQueue", "Done", "RunStats"]


@dataclass(frozen=True, slots=True)
class Call:
    """One command to run: ``key`` identifies it (never two of one key at once), ``command``
    names it without ids for counting (``npu-smi info -t usages``)."""

    key: Hashable
    argv: tuple[str, ...]
    command: str


@dataclass(frozen=True, slots=True)
class Done:
    call: Call
    text: str | None  # stdout, or None when it failed
    error: CollectorError | None
    seconds: float


@dataclass
class RunStats:
    """What one cycle ran: commands started and each finished one's wall time by command."""

    started: int = 0
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, done: Done) -> None:
        self.seconds.setdefault(done.call.command, []).append(done.seconds)


class CallQueue:
    """Runs `Call`s through ``execute`` on a small thread pool, within a time budget."""

    def __init__(self, execute: Callable[[Sequence[str]], str], concurrency: int = 4,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        self._execute = execute
        self.concurrency = concurrency
        self._clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[Future, Call] = {}  # includes those left from earlier cycles

    def busy(self, key: Hashable) -> bool:
        return any(c.key == key for c in self._running.values())

    def run(self, pending: deque[Call], budget_s: float,
            handle: Callable[[Done], None]) -> RunStats:
        """Start calls from the left of ``pending`` until the budget is spent; ``handle``
        gets each finished one (it may add calls to ``pending``, run in this cycle too)."""
        stats = RunStats()
        deadline = self._clock() + max(0.0, budget_s)
        stopped = False
        self._harvest([f for f in self._running if f.done()], handle, stats)
        while True:
            while (pending and not stopped and len(self._running) < self.concurrency
                   and self._clock() < deadline):
                call = pending.popleft()
                if self.busy(call.key):
                    continue  # its earlier run is still going: that one will answer
                self._running[self._start(call)] = call
                stats.started += 1
            if not self._running:
                break
            left = deadline - self._clock()
            if left <= 0:
                break  # the rest keep running; they are handed over in a later cycle
            done, _ = wait(list(self._running), timeout=left, return_when=FIRST_COMPLETED)
            if self._harvest(list(done), handle, stats):
                stopped = True
            if stopped and not self._running:
                break
        return stats

    def _start(self, call: Call) -> Future:
        if self.concurrency == 1:  # in line: no thread for a one-at-a-time queue
            fut: Future = Future()
            fut.set_result(self._timed(call))
            return fut
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="npu-smi")
        return self._pool.submit(self._timed, call)

    def _timed(self, call: Call) -> Done:
        t0 = self._clock()
        try:
            return Done(call, self._execute(call.argv), None, self._clock() - t0)
        except CollectorError as exc:
            return Done(call, None, exc, self._clock() - t0)

    def _harvest(self, futures: list[Future], handle: Callable[[Done], None],
                 stats: RunStats) -> bool:
        """Hand finished calls over; True when one of them timed out."""
        timed_out = False
        for fut in futures:
            self._running.pop(fut, None)
            done: Done = fut.result()
            stats.add(done)
            timed_out |= done.error is not None and done.error.code is ResultCode.TIMEOUT
            handle(done)
        return timed_out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
