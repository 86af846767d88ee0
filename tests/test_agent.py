"""The agent's isolation and accounting, with collectors that behave, fail, hang or crash."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from computewatch.collectors import (
    CollectorError,
    DriverAbsent,
    NoData,
    ResultCode,
    readings_or_no_data,
)
from computewatch.collectors.agent import Agent, Scheduled
from computewatch.collectors.export import ExportResult
from computewatch.samples import Sample, sample_value

LABELS = {"node": "n1", "site": "bj-ai", "hub": "jjj", "cluster": ""}


class Good:
    name = "good"

    def __init__(self) -> None:
        self.runs = 0

    def collect(self):
        self.runs += 1
        return [Sample.of("accelerator.power_watts", 100.0 + self.runs,
                          {"node": "n1", "device": "d0"})]


class Hangs:
    name = "hangs"

    def __init__(self) -> None:
        self.release = threading.Event()

    def collect(self):
        self.release.wait(5)
        return []


class Absent:
    name = "absent"

    def collect(self):
        raise DriverAbsent("libnvidia-ml.so not found")


class Broken:
    name = "broken"

    def collect(self):
        raise ZeroDivisionError("bug")


class Bad:
    name = "bad"

    def collect(self):
        return [Sample.of("accelerator.utilization_ratio", 1.7, {"device": "d1"}),
                Sample.of("accelerator.utilization_ratio", 0.5, {"device": "d2"})]


class Recorder:
    name = "rec"

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[str, list[Sample]]] = []
        self.fail = fail

    def export(self, batch: Sequence[Sample], source: str = "") -> ExportResult:
        if self.fail:
            return ExportResult.failed(len(batch), "server down")
        self.batches.append((source, list(batch)))
        return ExportResult.ok(len(batch))

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        pass


def run_for(agent: Agent, seconds: float) -> None:
    """``agent.run`` in a thread of its own for ``seconds``, then stopped (it must end within
    5 s) and closed."""
    stop = threading.Event()
    t = threading.Thread(target=agent.run, args=(stop,))
    t.start()
    time.sleep(seconds)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    agent.close()


def test_one_bad_collector_never_stops_the_others():
    hang = Hangs()
    rec = Recorder()
    agent = Agent([Scheduled(Good(), 1, 1), Scheduled(hang, 1, 0.2), Scheduled(Absent(), 1, 1),
                   Scheduled(Broken(), 1, 1)], [rec], LABELS)
    t0 = time.monotonic()
    samples = agent.run_once()
    assert time.monotonic() - t0 < 1.5  # the hang costs its timeout, not more
    assert sample_value(samples, "accelerator.power_watts") == 101.0

    def code(name):
        return sample_value(samples, "agent.collector_result_code", {"collector": name})

    assert code("good") == ResultCode.OK and code("hangs") == ResultCode.TIMEOUT
    assert code("absent") == ResultCode.ABSENT and code("broken") == ResultCode.ERROR
    assert sample_value(samples, "agent.collector_up", {"collector": "good"}) == 1
    assert sample_value(samples, "agent.collector_up", {"collector": "hangs"}) == 0
    # The hung run is still in its worker: the next cycle counts another timeout at once.
    samples = agent.run_once()
    assert sample_value(samples, "agent.collector_errors_total",
                        {"collector": "hangs", "error_type": "timeout"}) == 2
    assert sample_value(samples, "agent.collector_errors_total",
                        {"collector": "absent", "error_type": "absent"}) == 2
    assert sample_value(samples, "accelerator.power_watts") == 102.0
    hang.release.set()
    agent.close()
    sources = {s for s, _ in rec.batches}
    assert {"good", "hangs", "absent", "broken", "agent"} <= sources


def test_driver_absent_is_logged_once(caplog):
    agent = Agent([Scheduled(Absent(), 1, 1)], [], LABELS)
    for _ in range(3):
        agent.run_once()
    lines = [r for r in caplog.records if "disabled" in r.getMessage()]
    assert len(lines) == 1 and "libnvidia-ml.so not found" in lines[0].getMessage()


def test_invalid_samples_are_refused_and_counted():
    rec = Recorder()
    agent = Agent([Scheduled(Bad(), 1, 1)], [rec], LABELS)
    samples = agent.run_once()
    values = [s for s in samples if s.name == "accelerator.utilization_ratio"]
    assert [s.value for s in values] == [0.5]
    assert sample_value(samples, "computewatch.samples_rejected_total",
                        {"field": "utilization_ratio", "reason": "out_of_range"}) == 1
    assert sample_value(samples, "agent.samples_collected_total", {"collector": "bad"}) == 1


def test_exporter_failures_are_counted_per_exporter_and_reason(caplog):
    good, bad = Recorder(), Recorder(fail=True)
    bad.name = "down"
    agent = Agent([Scheduled(Good(), 1, 1)], [good, bad], LABELS)
    agent.run_once()
    samples = agent.run_once()
    assert sample_value(samples, "agent.samples_dropped_total",
                        {"exporter": "down", "reason": "export_failed"}) > 0
    assert sample_value(samples, "agent.samples_exported_total", {"exporter": "rec"}) > 0
    assert sum("failing" in r.getMessage() for r in caplog.records) == 1  # once per episode


def test_run_keeps_each_collector_on_its_grid():
    class Stamp:
        def __init__(self, name):
            self.name, self.times = name, []

        def collect(self):
            self.times.append(time.monotonic())
            time.sleep(0.03)  # work that must not push later runs back
            return []

    fast, slow = Stamp("fast"), Stamp("slow")
    run_for(Agent([Scheduled(fast, 0.1, 1), Scheduled(slow, 0.25, 1)], [], LABELS), 1.02)
    assert len(fast.times) in (10, 11) and len(slow.times) in (4, 5)
    t0 = fast.times[0]
    drift = [abs((ts - t0) - k * 0.1) for k, ts in enumerate(fast.times)]
    # On the grid: a run may start late on a loaded machine (56 ms once, on 2 busy cores),
    # but the lateness does not carry over; pushed back by each run's 30 ms of work, the
    # k-th run would start 30k ms late (120 ms by the 4th, 270 ms by the 9th).
    assert max(drift) < 0.1


def test_duplicate_collector_names_are_refused():
    with pytest.raises(ValueError, match="unique"):
        Agent([Scheduled(Good()), Scheduled(Good())], [], LABELS)


def test_collector_error_message_reaches_the_log(caplog):
    class Fails:
        name = "fails"

        def collect(self):
            raise CollectorError("npu-smi exited 1: permission denied")

    Agent([Scheduled(Fails(), 1, 1)], [], LABELS).run_once()
    assert any("permission denied" in r.getMessage() for r in caplog.records)


class Silent:
    """A meter collector whose configured devices all fail: only its own counters to say."""

    name = "meters"

    def __init__(self) -> None:
        self.dead = True

    def collect(self):
        counters = [Sample.of("agent.collector_errors_total", 2.0,
                              {**LABELS, "collector": "meters", "error_type": "snmp_timeout"})]
        readings = [] if self.dead else [
            Sample.of("facility_power.watts", 1210.0, {"site": "bj-ai", "meter": "pdu-1",
                                                       "scope": "it", "source": "snmp://x"})]
        return readings_or_no_data(counters + readings,
                                   lambda: "no reading from any of 2 devices: pdu-1 timed out")


def test_a_collector_that_reads_nothing_is_down_with_no_data_and_keeps_its_counters(caplog):
    silent = Silent()
    rec = Recorder()
    agent = Agent([Scheduled(silent, 1, 1)], [rec], LABELS)
    for _ in range(2):
        samples = agent.run_once()
    assert sample_value(samples, "agent.collector_up", {"collector": "meters"}) == 0
    assert sample_value(samples, "agent.collector_result_code",
                        {"collector": "meters"}) == ResultCode.NO_DATA == 5
    assert sample_value(samples, "agent.collector_errors_total",
                        {"collector": "meters", "error_type": "no_data"}) == 2
    # The collector's own counters still go out with the failed run.
    assert any(s.label("error_type") == "snmp_timeout" for _, batch in rec.batches
               for s in batch)
    said = [r.getMessage() for r in caplog.records if "reads no data" in r.getMessage()]
    assert said == ["collector meters reads no data: no reading from any of 2 devices: "
                    "pdu-1 timed out"]  # once per episode, not once per run
    silent.dead = False
    samples = agent.run_once()
    assert sample_value(samples, "agent.collector_up", {"collector": "meters"}) == 1
    assert sample_value(samples, "facility_power.watts") == 1210.0
    assert any("reads data again" in r.getMessage() for r in caplog.records)
    agent.close()


def test_readings_or_no_data_passes_a_run_with_one_reading():
    one = [Sample.of("facility_power.watts", 5.0, {"meter": "m", "scope": "it", "source": "s"})]
    assert readings_or_no_data(one, lambda: "unused") == one
    with pytest.raises(NoData) as info:
        readings_or_no_data([], lambda: "no devices answered")
    assert info.value.code is ResultCode.NO_DATA and info.value.samples == ()


def test_a_hung_exporter_delays_neither_the_schedule_nor_the_stop():
    class HangingExporter(Recorder):
        name = "hung"

        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()

        def export(self, batch, source=""):
            self.release.wait(30)  # an endpoint that never answers
            return super().export(batch, source)

    good, hung = Good(), HangingExporter()
    rec = Recorder()
    agent = Agent([Scheduled(good, 0.1, 1)], [hung, rec], LABELS)
    stop = threading.Event()
    t = threading.Thread(target=agent.run, args=(stop,))
    t.start()
    time.sleep(1.0)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert good.runs >= 9  # every 0.1 s, though the first export never returned
    assert len([s for s, _ in rec.batches if s == "good"]) >= 9  # the other exporter too
    t0 = time.monotonic()
    agent.close(timeout_s=1.0)
    assert time.monotonic() - t0 < 1.5
    # What the hung exporter never took is counted, not lost silently: its backlog was
    # dropped as "shutdown" (one batch is still inside export()).
    dropped = sample_value(agent.self_samples(), "agent.samples_dropped_total",
                           {"exporter": "hung", "reason": "shutdown"})
    assert dropped >= 9
    hung.release.set()


def test_an_exporter_that_falls_behind_loses_its_oldest_batches_counted():
    from computewatch.collectors.agent import BACKLOG

    class Slow(Recorder):
        name = "slow"

        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()

        def export(self, batch, source=""):
            self.release.wait(10)
            return super().export(batch, source)

    slow = Slow()
    agent = Agent([Scheduled(Good(), 1, 1)], [slow], LABELS)
    sample = [Sample.of("accelerator.power_watts", 1.0, {"node": "n1", "device": "d0"})]
    for i in range(BACKLOG + 11):  # one taken by the worker, BACKLOG queued, 10 too many
        agent._submit(f"s{i}", sample)
        time.sleep(0.001 if i else 0.1)
    dropped = sample_value(agent.self_samples(), "agent.samples_dropped_total",
                           {"exporter": "slow", "reason": "backlog_full"})
    assert dropped == 10
    slow.release.set()
    agent.close(timeout_s=5)
    assert [s for s, _ in slow.batches][-1] == f"s{BACKLOG + 10}"  # the newest kept
    assert len(slow.batches) == BACKLOG + 1


def test_a_run_under_way_when_the_stop_comes_is_still_exported():
    """A stop between a run's reading and its export must not lose what it read (the
    durable-delivery fault test lost one batch this way when SIGTERM came mid-run)."""

    class Slow(Good):
        name = "slow"

        def __init__(self) -> None:
            super().__init__()
            self.started = threading.Event()

        def collect(self):
            self.started.set()
            time.sleep(0.3)  # the stop arrives while this run is reading
            return super().collect()

    slow, rec = Slow(), Recorder()
    agent = Agent([Scheduled(slow, 10, 5)], [rec], LABELS)
    stop = threading.Event()
    t = threading.Thread(target=agent.run, args=(stop,))
    t.start()
    assert slow.started.wait(5)
    stop.set()
    t.join(5)
    agent.close()
    assert slow.runs == 1
    assert [len(b) for s, b in rec.batches if s == "slow"] == [1]


def test_label_sets_keep_a_tuple_while_its_labels_stay_the_same():
    """`LabelSets` gives the tuple `Sample.of` would make, the same object while a key's
    labels are unchanged, a new one when a value changes; ``plus`` adds pairs in order."""
    from computewatch.collectors._base import LabelSets

    sets = LabelSets()
    gpu = {"node": "n1", "device": "GPU-1", "index": "0"}
    first = sets.of("0", gpu)
    assert first == (("device", "GPU-1"), ("index", "0"), ("node", "n1"))
    assert sets.of("0", dict(gpu)) is first  # an equal dict, not the same one
    held = sets.of("0", {**gpu, "pod": "train-0"})
    assert held == (("device", "GPU-1"), ("index", "0"), ("node", "n1"), ("pod", "train-0"))
    assert sets.of("0", gpu) == first and sets.of("0", gpu) is not held
    ecc = sets.plus(first, (("error_type", "corrected"),))
    assert ecc == (("device", "GPU-1"), ("error_type", "corrected"), ("index", "0"),
                   ("node", "n1"))
    assert sets.plus(first, (("error_type", "corrected"),)) is ecc
    assert sets.plus(first, (("index", "7"), ("pid", "12"))) == (
        ("device", "GPU-1"), ("index", "7"), ("node", "n1"), ("pid", "12"))
    assert sets.plus(tuple(first), (("error_type", "corrected"),)) == ecc


def test_label_sets_start_again_past_their_limit():
    """A process's series is a label set of its own: the sets must not keep every pid a
    node ever ran, and still answer right after they start again."""
    from computewatch.collectors._base import LabelSets

    sets = LabelSets(limit=100)
    base = sets.of("gpu", {"device": "GPU-1"})
    for pid in range(1000):
        assert sets.plus(base, (("pid", str(pid)),)) == (("device", "GPU-1"), ("pid", str(pid)))
        assert sets.of(("proc", pid), {"pid": str(pid)}) == (("pid", str(pid)),)
        assert len(sets._plus) <= 100 and len(sets._sets) <= 100


class Sometimes:
    """Due every other run; records the thread each run is made in."""

    name = "sometimes"

    def __init__(self) -> None:
        self.asked, self.threads = 0, []

    def due(self) -> bool:
        self.asked += 1
        return self.asked % 2 == 1

    def collect(self):
        self.threads.append(threading.current_thread().name)
        return [Sample.of("accelerator.power_watts", 100.0, {"node": "n1", "device": "d0"})]


def test_a_collector_with_nothing_due_is_not_run_in_its_worker():
    c = Sometimes()
    agent = Agent([Scheduled(c)], [], LABELS)
    try:
        cycles = [agent.run_once() for _ in range(4)]
    finally:
        agent.close()
    assert c.asked == 4
    assert len(c.threads) == 2 and all(t.startswith("collect-sometimes") for t in c.threads)
    power = [sample_value(s, "accelerator.power_watts") for s in cycles]
    assert power == [100.0, None, 100.0, None]  # cycles 2 and 4: nothing due, no samples
    # a run with nothing due is a run that went well: up, result code 0, duration 0
    up = [sample_value(s, "agent.collector_up", {"collector": "sometimes"}) for s in cycles]
    assert up == [1.0, 1.0, 1.0, 1.0]
    assert sample_value(cycles[1], "agent.collector_duration_seconds",
                        {"collector": "sometimes"}) == 0.0
    assert sample_value(cycles[3], "agent.samples_collected_total",
                        {"collector": "sometimes"}) == 2.0


def test_run_counts_a_run_with_nothing_due_as_done():
    """Under `Agent.run` too: a run with nothing due goes out at once, empty and up, and the
    next slot runs the collector again in its worker."""
    c, rec = Sometimes(), Recorder()
    run_for(Agent([Scheduled(c, 0.1, 1)], [rec], LABELS), 0.65)
    runs = [batch for source, batch in rec.batches if source == "sometimes"]
    assert len(runs) == c.asked >= 5
    assert [len(batch) for batch in runs] == [1, 0] * (len(runs) // 2) + [1] * (len(runs) % 2)
    assert len(c.threads) == (c.asked + 1) // 2
    assert all(t.startswith("collect-sometimes") for t in c.threads)
    own = [batch for source, batch in rec.batches if source == "agent"]
    assert len(own) == len(runs)
    assert all(sample_value(batch, "agent.collector_up", {"collector": "sometimes"}) == 1.0
               for batch in own)
