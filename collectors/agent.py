"""The node agent: runs each collector on its own interval, isolated, and fans out the samples.

Scheduling is kept apart from delivery. Each collector runs in its own worker thread on a
fixed grid (``start + k x interval`` on the monotonic clock, so runs never drift); a run that
outlasts its timeout is abandoned and counted (a Python thread cannot be killed, so a hung
collector keeps its worker and skips its later slots, counted as timeouts, until it
returns), and never delays another collector. A collector that says it has nothing due
(``due()``, workload attribution between its Lists) is not handed to its worker: its run is
counted done at once, with no samples. Each finished run's samples are validated
against the catalogue, then handed to every exporter; an exporter that fails is counted,
never retried here (the durable buffer of the stores issue does that).

Delivery never holds up the schedule: while `Agent.run` runs, each exporter has its own
worker thread and a bounded backlog of batches (the oldest batch is dropped and counted as
``backlog_full`` when an exporter falls that far behind), so an export hung on an
unreachable endpoint delays neither collection nor the other exporters. `Agent.close` works
to one deadline for everything (default 3 s): exporters and collectors are flushed and
closed in parallel, and whatever has not finished by then is abandoned (its threads are
daemons), so the agent stops within 5 s of a signal whatever its exporters are doing.

The agent reports on itself in the catalogue's ``agent`` measurement: up and result code,
duration, errors by type (every type from the first cycle, at 0) and samples collected per
collector; the counters a collector keeps itself (its ``self_samples(time)``, such as parse
errors per source), every cycle whatever its run's outcome; samples exported and dropped
per exporter; catalogue rejections as ``computewatch.samples_rejected_total``; and whatever an
exporter with a ``self_samples(labels, now)`` method reports on itself (the remote-write
exporter's ``agent_buffer_*`` queue metrics).

An optional ``relabel`` step (workload attribution: collectors/kubernetes) sees each run's
samples before validation and may add labels and samples; it must not do I/O that can hang
(its data is refreshed by a collector of its own), and a failure of it costs its labels,
logged once, never the batch. It is given the agent's own list of the run's samples (never
the collector's) and may rewrite it in place. With it may come a `DeviceLabels` hook, which
the agent gives every collector that takes one (``set_device_labels``), so that the labels the
step would add are there when the samples are made; a failure of the hook costs its labels
(the collector keeps the ones it read), logged once, never the run.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime

from computewatch.collectors._base import (
    Collector,
    CollectorError,
    DeviceLabels,
    ResultCode,
    placement_labels,
)
from computewatch.collectors.export import Exporter, ExportOutcome, ExportResult
from computewatch.samples import Sample
from computewatch.validation import Rejections, filter_samples

__all__ = ["Agent", "RunResult", "Scheduled"]

log = logging.getLogger(__name__)


class _Episode:
    """A step that may fail run after run: its traceback logged at the first failure of an
    episode, not every cycle (an agent runs every 15 s for months)."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.failing = False

    def failed(self) -> None:
        """Called in the ``except`` block of the failure."""
        if not self.failing:
            log.exception(self.message)
            self.failing = True

    def ended(self) -> None:
        self.failing = False


SELF = "agent"
"""Pseudo-collector name under which the agent's own metrics are exported."""

ERROR_TYPES = {ResultCode.ABSENT: "absent", ResultCode.PARSE_ERROR: "parse_error",
               ResultCode.TIMEOUT: "timeout", ResultCode.ERROR: "error",
               ResultCode.NO_DATA: "no_data"}
"""``agent.collector_errors_total{error_type}`` of a failed run, by its result code."""

_EPISODIC = {ResultCode.ABSENT: "disabled", ResultCode.NO_DATA: "reads no data"}
"""Outcomes that last (no driver; every configured device silent): logged once per episode,
the devices' own failures are logged by the collector."""

BACKLOG = 64
"""Batches waiting for one exporter before the oldest is dropped (about a minute of
cycles of a node's collectors at a 15 s interval, far more than one slow export)."""

CLOSE_TIMEOUT_S = 3.0
"""How long `Agent.close` waits, all exporters and collectors together (the agent must
stop within 5 s of a signal; this leaves the rest for the process to exit)."""

_Labels = tuple[tuple[str, str], ...]
_OWN_LABELS_MAX = 4096
"""The agent's own series whose labels `Agent._own` keeps (collectors x error types,
exporters x drop reasons: tens); past it they start again."""

STOP_GRACE_S = 1.0
"""How long a stop waits for a collector run already under way (then `close`'s 3 s)."""


@dataclass
class Scheduled:
    """A collector with its interval and timeout (seconds)."""

    collector: Collector
    interval_s: float = 15.0
    timeout_s: float = 10.0

    @property
    def name(self) -> str:
        return self.collector.name


@dataclass
class RunResult:
    name: str
    code: ResultCode
    duration_s: float
    samples: list[Sample] = field(default_factory=list)
    error: str = ""


def _reason_code(reason: str) -> str:
    """A label-safe reason: exporters' short codes pass, free text becomes export_failed.

    Free-text reasons (an HTTP status line, an exception message) would make a new series of
    ``agent.samples_dropped_total`` per distinct message; the text goes to the log instead.
    """
    return reason if re.fullmatch(r"[a-z][a-z0-9_]{0,39}", reason or "") else "export_failed"


_Started = Future | RunResult | None
"""A run begun (`Agent._start`): its future, its result at once when nothing was due, or None
while an earlier run is still hung."""


class _Slot:
    """Per-collector state: its worker, the run in flight and its counters."""

    def __init__(self, spec: Scheduled) -> None:
        self.spec = spec
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"collect-{spec.name}")
        self.inflight: Future | None = None
        self.last: RunResult | None = None
        self.errors: Counter[str] = Counter({kind: 0 for kind in ERROR_TYPES.values()})
        self.collected = 0
        self.logged: ResultCode | None = None  # ABSENT or NO_DATA: logged once per episode
        due = getattr(spec.collector, "due", None)
        self.due: Callable[[], bool] | None = due if callable(due) else None


class _Outlet:
    """One exporter's worker: exports queued batches in order, off the schedule's thread."""

    def __init__(self, exporter: Exporter, record: Callable[[Exporter, int, object], None],
                 backlog: int = BACKLOG) -> None:
        self.exporter = exporter
        self._record = record
        self._backlog = backlog
        self._queue: deque[tuple[str, list[Sample]]] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None

    def submit(self, source: str, batch: list[Sample]) -> None:
        with self._cond:
            if self._closing:
                self._record(self.exporter, len(batch), "shutdown")
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"export-{self.exporter.name}")
                self._thread.start()
            if len(self._queue) >= self._backlog:
                _, oldest = self._queue.popleft()
                self._record(self.exporter, len(oldest), "backlog_full")
            self._queue.append((source, batch))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                source, batch = self._queue.popleft()
                self._busy = True
            try:
                self._record(self.exporter, len(batch), _export(self.exporter, source, batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def drain(self, deadline: float) -> None:
        """Stop taking batches; wait until the backlog is exported or the deadline passes."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while (self._queue or self._busy) and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))

    def abandon(self) -> None:
        """Count what is still queued as dropped (``shutdown``); the worker takes no more."""
        with self._cond:
            self._closing = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for _, batch in left:
            self._record(self.exporter, len(batch), "shutdown")


def _export(exporter: Exporter, source: str, batch: list[Sample]) -> object:
    """The exporter's result, or the exception's name when it raised (it must not)."""
    try:
        return exporter.export(batch, source)
    except Exception as exc:  # an exporter must not raise; count it if it does
        log.exception("exporter %s raised", exporter.name)
        return type(exc).__name__


class Agent:
    """Runs collectors and feeds exporters; `run_once` for one cycle, `run` until stopped."""

    def __init__(self, collectors: Sequence[Scheduled], exporters: Sequence[Exporter],
                 labels: dict[str, str], *, clock: Callable[[], float] = time.monotonic,
                 relabel: Callable[[list[Sample]], list[Sample]] | None = None,
                 device_labels: DeviceLabels | None = None) -> None:
        names = [c.name for c in collectors]
        if len(set(names)) != len(names):
            raise ValueError(f"collector names must be unique, got {names}")
        self.labels = placement_labels(labels)
        self.exporters = list(exporters)
        self.rejections = Rejections()
        self._slots = {c.name: _Slot(c) for c in collectors}
        self._exported: Counter[str] = Counter()
        self._dropped: Counter[tuple[str, str]] = Counter()
        self._failing: set[str] = set()
        self._clock = clock
        self._lock = threading.Lock()
        self._outlets = [_Outlet(e, self._account) for e in self.exporters]
        self._relabel = relabel
        self._own_labels: dict[_Labels, _Labels] = {}
        self._relabel_failures = _Episode("relabel step failed; samples go out without its labels")
        self._hook_failures = _Episode("device labels hook failed; devices keep the labels read")
        if device_labels is not None:
            hook = self._guarded(device_labels)
            for c in collectors:
                install = getattr(c.collector, "set_device_labels", None)
                if callable(install):
                    install(hook)

    @property
    def collector_names(self) -> list[str]:
        return list(self._slots)

    # -- one collector run ---------------------------------------------------------------
    def _collect(self, spec: Scheduled) -> RunResult:
        t0 = self._clock()
        try:
            samples = list(spec.collector.collect())
            return RunResult(spec.name, ResultCode.OK, self._clock() - t0, samples)
        except CollectorError as exc:  # what it could still say about itself goes out too
            return RunResult(spec.name, exc.code, self._clock() - t0, list(exc.samples),
                             str(exc))
        except Exception as exc:  # a collector bug must not stop the agent
            log.exception("collector %s crashed", spec.name)
            return RunResult(spec.name, ResultCode.ERROR, self._clock() - t0, [],
                             f"{type(exc).__name__}: {exc}")

    def _start(self, slot: _Slot) -> _Started:
        """The run begun (`_Started`)."""
        if slot.inflight is not None and not slot.inflight.done():
            return None  # still hung in an earlier run
        if slot.due is not None and not slot.due():
            # nothing due (workload attribution between Lists): the run is done here, with
            # no samples, rather than handed to its worker and waited for (a thread woken
            # and two context switches every cycle for nothing); nor is a Future made for
            # it (its lock and condition cost ten times the result)
            slot.inflight = None
            return RunResult(slot.spec.name, ResultCode.OK, 0.0)
        slot.inflight = slot.pool.submit(self._collect, slot.spec)
        return slot.inflight

    def _finish(self, slot: _Slot, fut: _Started, deadline: float) -> RunResult:
        spec = slot.spec
        if fut is None:
            result = RunResult(spec.name, ResultCode.TIMEOUT, spec.timeout_s, [],
                               f"previous run still busy after {spec.timeout_s:g} s")
        elif isinstance(fut, RunResult):
            result = fut
        else:
            try:
                result = fut.result(timeout=max(0.0, deadline - self._clock()))
            except FutureTimeout:
                result = RunResult(spec.name, ResultCode.TIMEOUT, spec.timeout_s, [],
                                   f"no answer within {spec.timeout_s:g} s")
        self._record(slot, result)
        return result

    def _record(self, slot: _Slot, result: RunResult) -> None:
        if result.code is not ResultCode.OK:
            slot.errors[ERROR_TYPES.get(result.code, "error")] += 1
            if result.code in _EPISODIC:
                if slot.logged is not result.code:  # one clear line, not one per cycle
                    log.warning("collector %s %s: %s", result.name, _EPISODIC[result.code],
                                result.error)
                    slot.logged = result.code
            else:
                log.warning("collector %s: %s", result.name, result.error)
        else:
            if slot.logged is ResultCode.NO_DATA:
                log.warning("collector %s reads data again", result.name)
            slot.logged = None
        result.samples = filter_samples(self._relabelled(result.samples), self.rejections,
                                        f"collector {result.name}")
        slot.collected += len(result.samples)
        slot.last = result

    def _relabelled(self, samples: list[Sample]) -> list[Sample]:
        """The relabel step's output (workload attribution), or, when it fails, the samples
        as it left them (it may rewrite the list in place): a bug there must cost labels,
        never a batch."""
        if self._relabel is None or not samples:
            return samples
        try:
            out = self._relabel(samples)
        except Exception:
            self._relabel_failures.failed()
            return samples
        self._relabel_failures.ended()
        return out

    def _guarded(self, hook: DeviceLabels) -> DeviceLabels:
        """``hook`` as the collectors call it: when it fails, the labels as they were read
        (the relabel step still adds what it knows), logged once per episode."""

        def guarded(labels: dict[str, str]) -> dict[str, str]:
            try:
                out = hook(labels)
            except Exception:
                self._hook_failures.failed()
                return labels
            self._hook_failures.ended()
            return out

        return guarded

    # -- self metrics ---------------------------------------------------------------------
    def _own(self, field: str, value: float, extra: _Labels, now: datetime) -> Sample:
        """One of the agent's own samples (``agent.<field>``), the placement labels and
        ``extra`` on it; each series' sorted labels made once, not every cycle (the same ~60
        series a cycle: sorting their labels each time cost twice making the samples)."""
        labels = self._own_labels.get(extra)
        if labels is None:
            if len(self._own_labels) >= _OWN_LABELS_MAX:
                self._own_labels = {}
            labels = self._own_labels[extra] = tuple(sorted({**self.labels,
                                                             **dict(extra)}.items()))
        return Sample("agent", field, value, labels, now)

    def self_samples(self, now: datetime | None = None) -> list[Sample]:
        now = now or datetime.now(UTC)
        out: list[Sample] = []
        own = self._own
        for name, slot in self._slots.items():
            lab = (("collector", name),)
            if slot.last is not None:
                code = slot.last.code
                out.append(own("collector_up", float(code is ResultCode.OK), lab, now))
                out.append(own("collector_result_code", float(code), lab, now))
                out.append(own("collector_duration_seconds", slot.last.duration_s, lab, now))
            for kind, n in slot.errors.items():
                out.append(own("collector_errors_total", float(n),
                               (*lab, ("error_type", kind)), now))
            out.append(own("samples_collected_total", float(slot.collected), lab, now))
            counters = getattr(slot.spec.collector, "self_samples", None)
            if callable(counters):  # its counters, also while its runs fail
                try:
                    out.extend(counters(now))
                except Exception:
                    log.exception("collector %s failed to report on itself", name)
        with self._lock:
            for exp, n in self._exported.items():
                out.append(own("samples_exported_total", float(n), (("exporter", exp),), now))
            for (exp, reason), n in self._dropped.items():
                out.append(own("samples_dropped_total", float(n),
                               (("exporter", exp), ("reason", reason)), now))
        for exporter in self.exporters:  # exporters with state of their own (a durable queue)
            counters = getattr(exporter, "self_samples", None)
            if callable(counters):
                try:
                    out.extend(counters(self.labels, now))
                except Exception:
                    log.exception("exporter %s failed to report on itself", exporter.name)
        out.extend(self.rejections.as_samples(now))
        return out

    # -- delivery -------------------------------------------------------------------------
    def _deliver(self, source: str, batch: list[Sample]) -> None:
        """Export now, in this thread (`run_once`: one cycle, then the caller reads)."""
        for exp in self.exporters:
            self._account(exp, len(batch), _export(exp, source, batch))

    def _submit(self, source: str, batch: list[Sample]) -> None:
        """Queue for every exporter's worker (`run`: the schedule never waits on one)."""
        for outlet in self._outlets:
            outlet.submit(source, batch)

    def _account(self, exp: Exporter, n: int, res: object) -> None:
        """Count one export's outcome: an ExportResult, or why the batch never went out."""
        with self._lock:
            if isinstance(res, ExportResult) and res.outcome is ExportOutcome.SUCCESS:
                self._exported[exp.name] += res.exported
                if exp.name in self._failing:
                    log.warning("exporter %s recovered", exp.name)
                    self._failing.discard(exp.name)
                return
            if isinstance(res, ExportResult):
                n, reason = res.dropped, res.reason
            else:
                reason = str(res)
            self._dropped[(exp.name, _reason_code(reason))] += n
            if exp.name not in self._failing:  # logged once per episode
                log.warning("exporter %s failing: %s", exp.name, reason)
                self._failing.add(exp.name)

    # -- driving --------------------------------------------------------------------------
    def run_once(self) -> list[Sample]:
        """Run every collector once, concurrently, then export; returns all samples."""
        started = {name: (self._start(slot), self._clock() + slot.spec.timeout_s)
                   for name, slot in self._slots.items()}
        everything: list[Sample] = []
        for name, (fut, deadline) in started.items():
            result = self._finish(self._slots[name], fut, deadline)
            self._deliver(name, result.samples)
            everything.extend(result.samples)
        own = self.self_samples()
        self._deliver(SELF, own)
        return everything + own

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; each collector on its own drift-free grid."""
        t0 = self._clock()
        due = {name: t0 for name in self._slots}
        pending: dict[str, tuple[_Started, float]] = {}
        while not stop.is_set():
            now = self._clock()
            for name, slot in self._slots.items():
                if name not in pending and now >= due[name]:
                    pending[name] = (self._start(slot), now + slot.spec.timeout_s)
                    k = int((now - t0) // slot.spec.interval_s) + 1
                    due[name] = t0 + k * slot.spec.interval_s  # the grid, not now + interval
            for name, (fut, deadline) in list(pending.items()):
                if (fut is None or isinstance(fut, RunResult) or fut.done()
                        or self._clock() >= deadline):
                    result = self._finish(self._slots[name], fut, deadline)
                    del pending[name]
                    self._submit(name, result.samples)
                    self._submit(SELF, self.self_samples())
            wake = min([*due.values(), *(d for _, d in pending.values())])
            stop.wait(min(max(0.0, wake - self._clock()), 0.05 if pending else 1.0))
        self._finish_in_flight(pending)

    def _finish_in_flight(self, pending: dict[str, tuple[_Started, float]]) -> None:
        """A run that was under way when ``stop`` came has read its devices already: wait
        for it (at most STOP_GRACE_S, the stop must stay prompt) and queue what it read, so
        that a stop between a run's reading and its export loses nothing unseen."""
        grace = self._clock() + STOP_GRACE_S
        for name, (fut, deadline) in pending.items():
            result = self._finish(self._slots[name], fut, min(deadline, grace))
            self._submit(name, result.samples)
        if pending:
            self._submit(SELF, self.self_samples())

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Export what is queued, then flush and close every exporter and collector, all in
        parallel and all within ``timeout_s``; whatever is still busy then is abandoned."""
        deadline = time.monotonic() + timeout_s

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        def close_exporter(outlet: _Outlet) -> None:
            outlet.drain(deadline)
            exp = outlet.exporter
            try:
                exp.flush(left())
                exp.close(left())
            except Exception:
                log.exception("exporter %s failed to close", exp.name)

        def close_collector(slot: _Slot) -> None:
            slot.pool.shutdown(wait=False, cancel_futures=True)
            close = getattr(slot.spec.collector, "close", None)
            if callable(close):  # connections, sessions, a prober thread
                try:
                    close()
                except Exception:
                    log.exception("collector %s failed to close", slot.spec.name)

        closers = [threading.Thread(target=close_exporter, args=(o,), daemon=True,
                                    name=f"close-{o.exporter.name}") for o in self._outlets]
        closers += [threading.Thread(target=close_collector, args=(slot,), daemon=True,
                                     name=f"close-{slot.spec.name}")
                    for slot in self._slots.values()]
        for t in closers:
            t.start()
        for t in closers:
            t.join(left())
        for outlet in self._outlets:
            outlet.abandon()
        late = [t.name.removeprefix("close-") for t in closers if t.is_alive()]
        if late:
            log.warning("stopped without waiting for %s (still busy after %g s)",
                        ", ".join(late), timeout_s)
