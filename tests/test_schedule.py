"""run_every: a fixed grid, failures survived, overruns skip ticks instead of piling up."""

from __future__ import annotations

import threading

import pytest

from computewatch.schedule import run_every


class FakeClock:
    """Time that moves only when the job or the wait says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeStop(threading.Event):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        self.clock.now += timeout or 0.0
        return self.is_set()


def test_runs_on_a_fixed_grid_and_survives_a_failing_run(caplog):
    clock = FakeClock()
    stop = FakeStop(clock)
    starts: list[float] = []

    def job() -> None:
        starts.append(clock.now)
        clock.now += 2.0  # each run takes 2 s
        if len(starts) == 2:
            raise RuntimeError("store down")

    assert run_every(10.0, job, stop, name="analyze", max_runs=4, clock=clock) == 4
    assert starts == [0.0, 10.0, 20.0, 30.0]  # no drift by the runs' own duration
    assert "analyze failed; the next run is still scheduled" in caplog.text


def test_an_overrun_skips_the_missed_ticks():
    clock = FakeClock()
    stop = FakeStop(clock)
    starts: list[float] = []

    def job() -> None:
        starts.append(clock.now)
        clock.now += 25.0 if len(starts) == 1 else 1.0

    run_every(10.0, job, stop, max_runs=3, clock=clock)
    assert starts == [0.0, 30.0, 40.0]


def test_stop_ends_the_schedule_and_bad_intervals_are_refused():
    stop = threading.Event()
    stop.set()
    assert run_every(1.0, lambda: None, stop) == 0
    with pytest.raises(ValueError, match="interval must be positive"):
        run_every(0, lambda: None, threading.Event())
