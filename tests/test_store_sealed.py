"""Sealed hours of raw samples (`computewatch.store._sealed`): Parquet files beside the DuckDB
file, read as one with the live table. Real DuckDB and real files; the expected answers are
worked out by hand from the few samples written."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from computewatch.store import Aggregate, DuckDBStore, Query, StoreError, _sealed

T0 = datetime(2026, 10, 1, tzinfo=UTC)
H = timedelta(hours=1)
# Two cards, samples at minutes 0 and 30: bj-1's utilization climbs by 0.1 a sample,
# sh-1's stays at 0.9.
BJ = {0: (0.1, 0.2), 1: (0.3, 0.4), 2: (0.5, 0.6), 3: (0.7, 0.8)}


def _hour(h: int) -> pd.DataFrame:
    times = [T0 + h * H, T0 + h * H + timedelta(minutes=30)]
    return pd.DataFrame({"time": times * 2, "site": ["bj-1"] * 2 + ["sh-1"] * 2,
                         "device": ["a"] * 2 + ["b"] * 2,
                         "utilization_ratio": [*BJ[h], 0.9, 0.9]})


def _means(store: DuckDBStore, hours: int = 4, agg: Aggregate = Aggregate.MEAN) -> dict:
    got = store.query(Query("accelerator", ("utilization_ratio",), T0, T0 + hours * H,
                            group_by=("site",), window=H, agg=agg))
    return {(int((t - T0) / H), s): round(float(v), 6)
            for t, s, v in zip(got.time, got.site, got.utilization_ratio, strict=True)}


def _files(path) -> list[str]:
    return sorted(p.name for p in (path.parent / (path.name + ".parquet") / "accelerator")
                  .glob("*"))


def _live_rows(store: DuckDBStore) -> int:
    return store._con.execute("SELECT count(*) FROM samples_accelerator").fetchall()[0][0]


@pytest.fixture
def path(tmp_path):
    return tmp_path / "s.duckdb"


def _write(path, hours) -> DuckDBStore:
    store = DuckDBStore(path)
    for h in hours:
        store.write("accelerator", _hour(h))
    return store


def test_answers_are_the_same_before_and_after_sealing(path):
    store = _write(path, [0, 1])
    # Hour 0 is complete once hour 1 began: sealed; hour 1 (the newest) stays live.
    assert _files(path) == ["20261001T00.0.parquet"]
    assert _live_rows(store) == 4
    want = {(0, "bj-1"): 0.15, (0, "sh-1"): 0.9, (1, "bj-1"): 0.35, (1, "sh-1"): 0.9}
    before = {agg: _means(store, 2, agg) for agg in (Aggregate.MEAN, Aggregate.MAX,
                                                      Aggregate.COUNT, Aggregate.LAST)}
    assert before[Aggregate.MEAN] == want
    store.write("accelerator", _hour(2))
    assert _files(path) == ["20261001T00.0.parquet", "20261001T01.0.parquet"]
    assert _live_rows(store) == 4
    for agg, answer in before.items():
        assert _means(store, 2, agg) == answer
    assert before[Aggregate.MAX][(1, "bj-1")] == 0.4
    assert before[Aggregate.COUNT][(0, "sh-1")] == 2
    assert before[Aggregate.LAST][(1, "bj-1")] == 0.4
    assert store.time_bounds("accelerator") == (T0, T0 + 2 * H + timedelta(minutes=30))
    store.close()


def test_a_late_row_for_a_sealed_hour_is_read_and_becomes_a_part(path):
    store = _write(path, [0, 1, 2])
    late = pd.DataFrame({"time": [T0 + timedelta(minutes=45)], "site": ["bj-1"],
                         "device": ["a"], "utilization_ratio": [0.8]})
    store.write("accelerator", late)
    # Hour 2 is the newest live hour, so the late row is sealed at once, as hour 0's second
    # part: the first is not rewritten.
    assert _files(path) == ["20261001T00.0.parquet", "20261001T00.1.parquet",
                            "20261001T01.0.parquet"]
    assert _live_rows(store) == 4
    assert _means(store, 3)[(0, "bj-1")] == round((0.1 + 0.2 + 0.8) / 3, 6)
    assert _means(store, 3, Aggregate.COUNT)[(0, "bj-1")] == 3
    store.close()


def test_delete_across_sealed_hours_rewrites_their_files(path):
    store = _write(path, [0, 1, 2])
    # bj-1's samples at 00:30 and 01:00 (both sealed); not 01:30's: the end is open.
    assert store.delete("accelerator", T0 + timedelta(minutes=30), T0 + H + timedelta(minutes=30),
                        where={"site": "bj-1"}) == 2
    assert _files(path) == ["20261001T00.1.parquet", "20261001T01.1.parquet"]
    assert _means(store, 3) == {(0, "bj-1"): 0.1, (0, "sh-1"): 0.9, (1, "bj-1"): 0.4,
                                (1, "sh-1"): 0.9, (2, "bj-1"): 0.55, (2, "sh-1"): 0.9}
    # A whole sealed hour deleted: its file goes.
    assert store.delete("accelerator", T0, T0 + H) == 3
    assert _files(path) == ["20261001T01.1.parquet"]
    assert (0, "bj-1") not in _means(store, 3)
    store.close()


def test_expiry_removes_whole_files_rewrites_a_cut_one_and_keeps_rollups(path):
    store = _write(path, [0, 1, 2, 3])
    store.refresh_rollups()
    want = _means(store, 4)
    assert want[(0, "bj-1")] == 0.15 and want[(1, "bj-1")] == 0.35
    got = store.expire(timedelta(hours=1, minutes=30), now=T0 + 3 * H)  # cutoff 01:30
    # Hour 0's 4 samples and hour 1's two at 01:00.
    assert got.raw_rows == 6
    assert _files(path) == ["20261001T01.1.parquet", "20261001T02.0.parquet"]
    raw = store._con.execute(
        f"SELECT count(*) FROM {store._raw('accelerator')} WHERE time < ?",
        [datetime(2026, 10, 1, 2)]).fetchall()[0][0]
    assert raw == 2
    # The expired hours are answered from their rollups, as before.
    assert _means(store, 4) == want
    assert got.file_bytes == store.disk_bytes() > path.stat().st_size
    store.close()


def test_an_orphan_file_is_removed_on_open_and_a_missing_one_is_an_error(path):
    store = _write(path, [0, 1])
    want = _means(store, 2)
    store.close()
    folder = path.parent / (path.name + ".parquet") / "accelerator"
    # A crash after the rename, before the manifest row committed: the rows are still live.
    shutil.copy(folder / "20261001T00.0.parquet", folder / "20261001T01.0.parquet")
    (folder / "20261001T02.0.parquet.tmp").write_bytes(b"half a file")
    store = DuckDBStore(path)
    assert _files(path) == ["20261001T00.0.parquet"]
    assert _means(store, 2) == want
    store.close()
    (folder / "20261001T00.0.parquet").unlink()
    with pytest.raises(StoreError, match=re.escape("20261001T00.0.parquet")):
        DuckDBStore(path)


def test_a_read_only_open_sees_the_sealed_hours(path):
    _write(path, [0, 1, 2]).close()
    store = DuckDBStore(path, read_only=True)
    assert _means(store, 3) == {(0, "bj-1"): 0.15, (0, "sh-1"): 0.9, (1, "bj-1"): 0.35,
                                (1, "sh-1"): 0.9, (2, "bj-1"): 0.55, (2, "sh-1"): 0.9}
    store.close()
    assert _files(path) == ["20261001T00.0.parquet", "20261001T01.0.parquet"]


def test_a_store_in_memory_seals_nothing():
    store = DuckDBStore(":memory:")
    for h in (0, 1, 2):
        store.write("accelerator", _hour(h))
    assert _live_rows(store) == 12
    assert _means(store, 3)[(2, "bj-1")] == 0.55
    store.close()


def _span(minutes: list[int], util: list[float]) -> pd.DataFrame:
    """bj-1's card "a" at the given minutes after T0 with the given utilization."""
    return pd.DataFrame({"time": [T0 + timedelta(minutes=m) for m in minutes],
                         "site": ["bj-1"] * len(minutes), "device": ["a"] * len(minutes),
                         "utilization_ratio": util})


@pytest.fixture
def direct_at_4_rows(monkeypatch):
    """Writes of 4 rows or more spanning 15 minutes go straight to parts (the real
    threshold, 10,000 rows, is the demo's and the benches' hour of a fleet)."""
    monkeypatch.setattr(_sealed, "DIRECT_ROWS", 4)


def test_a_large_write_goes_straight_to_one_part_per_hour(path, direct_at_4_rows):
    store = DuckDBStore(path)
    # 00:40, 00:50 | 01:00, 01:10: spans 30 minutes and two hours.
    store.write("accelerator", _span([40, 50, 60, 70], [0.1, 0.3, 0.5, 0.9]))
    assert _files(path) == ["20261001T00.0.parquet", "20261001T01.0.parquet"]
    assert _live_rows(store) == 0
    assert _means(store, 2) == {(0, "bj-1"): 0.2, (1, "bj-1"): 0.7}
    # The bounds come from the manifest's first and last times of the parts.
    assert store.time_bounds("accelerator") == (T0 + timedelta(minutes=40),
                                                T0 + timedelta(minutes=70))
    # The series index has the card, and the rollups are computed from the parts.
    assert store._con.execute("SELECT count(*) FROM series_accelerator").fetchall() == [(1,)]
    store.refresh_rollups()
    assert store._con.execute(
        'SELECT time, "utilization_ratio:sum" FROM rollup_1h_accelerator ORDER BY time'
    ).fetchall() == [(datetime(2026, 10, 1, 0), pytest.approx(0.4)),
                     (datetime(2026, 10, 1, 1), pytest.approx(1.4))]
    # A second large write into hour 1 adds a part; the first is not rewritten.
    first = (path.parent / (path.name + ".parquet") / "accelerator" / "20261001T01.0.parquet"
             ).stat().st_mtime_ns
    store.write("accelerator", _span([80, 90, 100, 110], [0.2, 0.2, 0.2, 0.2]))
    assert _files(path) == ["20261001T00.0.parquet", "20261001T01.0.parquet",
                            "20261001T01.1.parquet"]
    assert (path.parent / (path.name + ".parquet") / "accelerator" / "20261001T01.0.parquet"
            ).stat().st_mtime_ns == first
    assert _means(store, 2)[(1, "bj-1")] == round((0.5 + 0.9 + 4 * 0.2) / 6, 6)
    # A small write stays live.
    store.write("accelerator", _span([115], [0.8]))
    assert _live_rows(store) == 1
    # delete rewrites only the part holding the rows: 01:10's 0.9 goes.
    assert store.delete("accelerator", T0 + timedelta(minutes=70),
                        T0 + timedelta(minutes=71)) == 1
    assert _files(path) == ["20261001T00.0.parquet", "20261001T01.1.parquet",
                            "20261001T01.2.parquet"]
    assert _means(store, 2)[(1, "bj-1")] == round((0.5 + 4 * 0.2 + 0.8) / 6, 6)
    store.close()
    store = DuckDBStore(path, read_only=True)
    assert _means(store, 2) == {(0, "bj-1"): 0.2, (1, "bj-1"): round(2.1 / 6, 6)}
    store.close()


def test_a_direct_write_that_fails_leaves_no_part_and_no_rows(path, direct_at_4_rows,
                                                              monkeypatch):
    store = DuckDBStore(path)

    def fail(*_a, **_k):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(store, "_mark_dirty", fail)  # after the parts, before the commit
    with pytest.raises(RuntimeError, match="disk gone"):
        store.write("accelerator", _span([40, 50, 60, 70], [0.1, 0.3, 0.5, 0.9]))
    assert _files(path) == []
    assert store._con.execute("SELECT count(*) FROM series_accelerator").fetchall() == [(0,)]
    assert _means(store, 2) == {}
    store.close()
