"""The embedded store's row order (each series' samples together, in time order) and its
large-write path (two connections appending halves): the stored rows are exactly the
written ones, whatever shape the frame has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from computewatch.store import Aggregate, DuckDBStore, Query, _order
from computewatch.store._duckdb import PARALLEL_ROWS

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def _stored(store: DuckDBStore) -> list[tuple]:
    """(device, pod, time, power) of every stored row, in storage order."""
    return store._con.execute(
        "SELECT s.device, s.pod, t.time, t.power_watts FROM samples_accelerator t "
        "JOIN series_accelerator s USING (series_id) ORDER BY t.rowid").fetchall()


def _naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None)


def test_a_time_major_frame_is_stored_series_by_series_and_a_pod_change_starts_a_series(
        tmp_path):
    """Three minutes of two devices, one row each per minute; gpu1's pod changes after the
    first minute. Expected by hand: gpu0's three rows, gpu1 under pod a, gpu1 under pod b."""
    minutes = [T0 + timedelta(minutes=m) for m in range(3)]
    frame = pa.table({
        "time": pa.array([t for t in minutes for _ in range(2)], pa.timestamp("us", tz="UTC")),
        "device": ["gpu0", "gpu1"] * 3,
        "pod": ["", "a", "", "b", "", "b"],
        "power_watts": [10.0, 20.0, 11.0, 21.0, 12.0, 22.0],
    })
    with DuckDBStore(tmp_path / "t.duckdb") as store:
        store.write("accelerator", frame)
        assert _stored(store) == [
            ("gpu0", "", _naive(minutes[0]), 10.0), ("gpu0", "", _naive(minutes[1]), 11.0),
            ("gpu0", "", _naive(minutes[2]), 12.0), ("gpu1", "a", _naive(minutes[0]), 20.0),
            ("gpu1", "b", _naive(minutes[1]), 21.0), ("gpu1", "b", _naive(minutes[2]), 22.0)]
        assert len(store.series("accelerator")) == 3


def test_nulls_keep_their_place_when_rows_move(tmp_path):
    """A field with missing values, rows out of order: each value stays with its row."""
    frame = pa.table({
        "time": pa.array([T0 + timedelta(minutes=m) for m in (1, 0, 0, 1)],
                         pa.timestamp("us", tz="UTC")),
        "device": ["b", "b", "a", "a"],
        "power_watts": pa.array([None, 5.0, 7.0, None], pa.float64()),
    })
    with DuckDBStore(tmp_path / "n.duckdb") as store:
        store.write("accelerator", frame)
        got = {(d, t): p for d, _, t, p in _stored(store)}
    t0, t1 = _naive(T0), _naive(T0 + timedelta(minutes=1))
    assert got == {("a", t0): 7.0, ("a", t1): None, ("b", t0): 5.0, ("b", t1): None}


def test_a_hash_collision_falls_back_to_exact_series(tmp_path, monkeypatch):
    """With every row's hash forced equal, the store still tells the series apart."""
    monkeypatch.setattr(_order, "_PRIME", np.uint64(0))
    frame = pa.table({
        "time": pa.array([T0, T0 + timedelta(minutes=1), T0], pa.timestamp("us", tz="UTC")),
        "device": ["a", "a", "b"],
        "power_watts": [1.0, 2.0, 3.0],
    })
    with DuckDBStore(tmp_path / "c.duckdb") as store:
        store.write("accelerator", frame)
        rows = [(d, p) for d, _, _, p in _stored(store)]
    assert rows in ([("a", 1.0), ("a", 2.0), ("b", 3.0)], [("b", 3.0), ("a", 1.0), ("a", 2.0)])


@pytest.mark.parametrize("time_major", [True, False])
def test_a_period_puts_each_periods_rows_first_in_series_order(time_major):
    """Four minutes of two devices (rows 0-7: minute by minute, gpu0 then gpu1), gpu1's pod
    changing after minute 0, in periods of two minutes. Expected by hand: period 0's gpu0
    (rows 0, 2), gpu1 under pod a (1) and under pod b (3), then period 1's gpu0 (4, 6)
    and gpu1 (5, 7); a series begins at each of those runs."""
    rows = np.arange(8)
    if not time_major:  # the same rows, shuffled: sorted, not transposed
        rows = np.array([5, 2, 7, 0, 3, 6, 1, 4])
    minute, device = rows // 2, rows % 2
    frame = pa.table({
        "time": pa.array([T0 + timedelta(minutes=int(m)) for m in minute],
                         pa.timestamp("us", tz="UTC")),
        "device": [f"gpu{d}" for d in device],
        "pod": ["" if d == 0 else "a" if m == 0 else "b" for m, d in zip(minute, device,
                                                                           strict=True)],
        "row": rows,
    })
    def runs(layout: _order.SeriesOrder) -> list[list[tuple[int, ...]]]:
        """Each period's runs (rows), sorted (shuffled rows order the series by hash)."""
        moved = layout.apply(frame.column("row")).to_pylist()
        got = [tuple(moved[a:b]) for a, b in zip(layout.starts, [*layout.starts[1:], 8],
                                                 strict=True)]
        assert [r[0] for r in got] == rows[layout.first].tolist()
        return [sorted(r for r in got if r[0] < 4), sorted(r for r in got if r[0] >= 4)]

    layout = _order.series_order(frame, ["device", "pod"], period=120 * 10 ** 6)
    assert (layout.blocks is not None) == time_major
    assert sorted(layout.apply(frame.column("row")).to_pylist()[:4]) == [0, 1, 2, 3]
    assert runs(layout) == [[(0, 2), (1,), (3,)], [(4, 6), (5, 7)]]
    assert layout.edges == (0, 4, 8)
    # Without a period: each series' rows together, in time order.
    assert sorted(runs(_order.series_order(frame, ["device", "pod"]))[0]) == [
        (0, 2, 4, 6), (1,), (3, 5, 7)]


@pytest.mark.parametrize("time_major", [True, False])
def test_a_large_write_is_stored_whole_by_two_connections(tmp_path, time_major):
    """More rows than `PARALLEL_ROWS`: both halves land, every value with its series and
    time (counted and summed per device against the frame), in one series index."""
    devices, minutes = 2100, 120
    assert devices * minutes >= PARALLEL_ROWS
    rng = np.random.default_rng(3)
    times = np.repeat(np.arange(minutes), devices)
    dev = np.tile(np.arange(devices), minutes)
    if not time_major:
        perm = rng.permutation(len(times))
        times, dev = times[perm], dev[perm]
    power = rng.integers(0, 7000, len(times)) / 10
    frame = pa.table({
        "time": pa.array([T0 + timedelta(minutes=int(m)) for m in times],
                         pa.timestamp("us", tz="UTC")),
        "device": pa.array([f"gpu{d:04d}" for d in dev]).dictionary_encode(),
        "power_watts": power,
    })
    with DuckDBStore(tmp_path / "p.duckdb") as store:
        assert store.write("accelerator", frame).rows == devices * minutes
        got = store.query(Query("accelerator", ("power_watts",), T0,
                                T0 + timedelta(minutes=minutes), group_by=("device",),
                                agg=Aggregate.SUM))
        count = store.query(Query("accelerator", ("power_watts",), T0,
                                  T0 + timedelta(minutes=minutes), agg=Aggregate.COUNT))
        assert len(store.series("accelerator")) == devices
        last = store.query(Query("accelerator", ("power_watts",), T0,
                                 T0 + timedelta(minutes=minutes), where={"device": "gpu0007"},
                                 agg=Aggregate.LAST))
    want = np.bincount(dev, weights=power, minlength=devices)
    np.testing.assert_allclose(got.sort_values("device").power_watts, want, rtol=1e-12)
    assert count.power_watts[0] == devices * minutes
    assert last.power_watts[0] == power[(dev == 7) & (times == minutes - 1)][0]
