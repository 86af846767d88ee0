"""Sealed hours of raw samples (`computewatch.store._sealed`): Parquet files beside the DuckDB
file, read as one with the live table. Real DuckDB and real files; the expected answers are
worked out by hand from the few samples written."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
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


REAL_PART_ROWS = _sealed.PART_ROWS
PARQUET = _sealed._PARQUET


@pytest.fixture(autouse=True)
def parts_of_one_row(monkeypatch):
    """The tests below write a few rows an hour: a part of one row or more, so that each
    complete hour is sealed on its own (the real threshold is tried by the sparse tests)."""
    monkeypatch.setattr(_sealed, "PART_ROWS", 1)


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
    store.flush()  # its parts are written in the background
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
    store.flush()  # its parts are written in the background
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
    # The write returns while its parts are written; its commit, and the failure, come
    # when the store is next used.
    store.write("accelerator", _span([40, 50, 60, 70], [0.1, 0.3, 0.5, 0.9]))
    with pytest.raises(RuntimeError, match="disk gone"):
        store.flush()
    assert _files(path) == []
    assert store._con.execute("SELECT count(*) FROM series_accelerator").fetchall() == [(0,)]
    assert _means(store, 2) == {}
    store.close()



def test_rows_written_to_parts_in_the_background_are_read_at_once(path, direct_at_4_rows):
    store = DuckDBStore(path)
    store.write("accelerator", _span([40, 50, 60, 70], [0.1, 0.3, 0.5, 0.9]))
    # No flush: the query waits for the parts and the write's commit.
    assert _means(store, 2) == {(0, "bj-1"): 0.2, (1, "bj-1"): 0.7}
    store.write("accelerator", _span([80, 90, 100, 110], [0.2, 0.2, 0.2, 0.2]))
    assert store.time_bounds("accelerator") == (T0 + timedelta(minutes=40),
                                                T0 + timedelta(minutes=110))
    store.write("accelerator", _span([120, 130, 140, 150], [0.4, 0.4, 0.4, 0.4]))
    store.close()  # commits the last write
    store = DuckDBStore(path, read_only=True)
    assert _means(store, 3) == {(0, "bj-1"): 0.2, (1, "bj-1"): round((0.5 + 0.9 + 4 * 0.2) / 6, 6),
                                (2, "bj-1"): 0.4}
    store.close()


def test_a_part_that_fails_in_the_background_is_raised_on_the_next_read_naming_it(
        path, direct_at_4_rows, monkeypatch):
    store = DuckDBStore(path)
    store.write("accelerator", _span([0, 10], [0.3, 0.5]))  # live: a small write
    monkeypatch.setattr(_sealed, "_PARQUET", "FORMAT parquet, COMPRESSION no_such_codec")
    store.write("accelerator", _span([40, 50, 60, 70], [0.1, 0.3, 0.5, 0.9]))
    with pytest.raises(StoreError, match=r"writing \S+20261001T00\.0\.parquet failed"):
        _means(store, 2)
    # The write is dropped whole (no file, its rows unread); the store goes on.
    assert _files(path) == []
    assert _means(store, 2) == {(0, "bj-1"): 0.4}
    monkeypatch.setattr(_sealed, "_PARQUET", PARQUET)
    store.write("accelerator", _span([40, 50, 60, 70], [0.1, 0.3, 0.5, 0.9]))
    assert _means(store, 2) == {(0, "bj-1"): (0.3 + 0.5 + 0.1 + 0.3) / 4, (1, "bj-1"): 0.7}
    store.close()
    # A failure the next use does not meet (the last write before close) is raised there.
    store = DuckDBStore(path)
    monkeypatch.setattr(_sealed, "_PARQUET", "FORMAT parquet, COMPRESSION no_such_codec")
    store.write("accelerator", _span([180, 190, 200, 210], [0.1, 0.3, 0.5, 0.7]))
    with pytest.raises(StoreError, match=r"20261001T03\.0\.parquet"):
        store.close()
    assert _files(path) == ["20261001T00.0.parquet", "20261001T01.0.parquet"]


def test_a_process_that_exits_without_closing_its_store_commits_its_last_write(path):
    script = (
        "import sys; from datetime import datetime, timedelta, UTC; import pandas as pd\n"
        "from computewatch.store import DuckDBStore, _sealed\n"
        "_sealed.DIRECT_ROWS, _sealed.PART_ROWS = 4, 1\n"
        "t0 = datetime(2026, 10, 1, tzinfo=UTC)\n"
        "store = DuckDBStore(sys.argv[1])\n"
        "store.write('accelerator', pd.DataFrame({'time': [t0 + timedelta(minutes=m) for m "
        "in (40, 50, 60, 70)], 'site': 'bj-1', 'device': 'a', "
        "'utilization_ratio': [0.1, 0.3, 0.5, 0.9]}))\n")
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120)
    store = DuckDBStore(path, read_only=True)
    assert _means(store, 2) == {(0, "bj-1"): 0.2, (1, "bj-1"): 0.7}
    store.close()


def _probes(minutes: list[int], rtt: list[float], jitter: list[float]) -> pd.DataFrame:
    """One probed link (bj-1 to sh-1) at the given minutes after T0."""
    n = len(minutes)
    return pd.DataFrame({"time": [T0 + timedelta(minutes=m) for m in minutes],
                         "src_site": ["bj-1"] * n, "dst_site": ["sh-1"] * n,
                         "src_hub": ["north"] * n, "dst_hub": ["east"] * n,
                         "tier": ["backbone"] * n, "probe": ["icmp"] * n,
                         "rtt_min_seconds": rtt, "jitter_seconds": jitter,
                         "samples": [60.0] * n})


def _part_types(path, measurement: str) -> dict[str, str]:
    """Each column's physical type in the measurement's one part."""
    [part] = (path.parent / (path.name + ".parquet") / measurement).glob("*.parquet")
    con = duckdb.connect()
    return dict(con.execute("SELECT name, type FROM parquet_schema(?) WHERE type IS NOT NULL",
                            [str(part)]).fetchall())


def _raw_values(store: DuckDBStore, measurement: str, field: str) -> list[float]:
    return [r[0] for r in store._con.execute(
        f'SELECT "{field}" FROM {store._raw(measurement)} ORDER BY time').fetchall()]


def test_probe_times_of_7_decimals_are_stored_as_integers_and_read_back_equal(
        path, direct_at_4_rows):
    rtt = [0.0003192, 0.0003204, 0.0012345, 0.0003166]  # tenths of a microsecond
    jitter = [1 / 3, 0.0000123, 0.0000456, 0.0000789]  # a third has no exact decimals
    store = DuckDBStore(path)
    store.write("link_latency", _probes([0, 10, 20, 30], rtt, jitter))
    store.flush()  # its parts are written in the background
    types = _part_types(path, "link_latency")
    # The round-trip times as integers; the jitter (1/3) and the whole counts as doubles.
    assert (types["rtt_min_seconds"], types["jitter_seconds"], types["samples"]) == (
        "INT32", "DOUBLE", "DOUBLE")
    assert store._con.execute("SELECT scales FROM sealed_files").fetchall() == [
        ('{"rtt_min_seconds": 7}',)]
    # Read back: the very doubles written (== on floats: exact, not approximate).
    assert _raw_values(store, "link_latency", "rtt_min_seconds") == rtt
    assert _raw_values(store, "link_latency", "jitter_seconds") == jitter
    got = store.query(Query("link_latency", ("rtt_min_seconds",), T0, T0 + H,
                            agg=Aggregate.MAX))
    assert list(got.rtt_min_seconds) == [0.0012345]
    # delete rewrites the part, still scaled, the other values still exact.
    assert store.delete("link_latency", T0 + timedelta(minutes=20),
                        T0 + timedelta(minutes=21)) == 1
    assert _part_types(path, "link_latency")["rtt_min_seconds"] == "INT32"
    assert _raw_values(store, "link_latency", "rtt_min_seconds") == [
        0.0003192, 0.0003204, 0.0003166]
    store.close()
    store = DuckDBStore(path, read_only=True)
    assert _raw_values(store, "link_latency", "rtt_min_seconds") == [
        0.0003192, 0.0003204, 0.0003166]
    store.close()


def test_a_value_inexact_past_the_rows_tried_keeps_its_field_as_doubles(
        path, direct_at_4_rows, monkeypatch):
    monkeypatch.setattr(_sealed, "_SAMPLE", 2)  # the first two rows say 4 decimals
    rtt = [0.0001, 0.0002, 0.12345678912, 0.0004]
    store = DuckDBStore(path)
    store.write("link_latency", _probes([0, 10, 20, 30], rtt, [0.0] * 4))
    store.flush()  # its parts are written in the background
    assert _part_types(path, "link_latency")["rtt_min_seconds"] == "DOUBLE"
    assert _raw_values(store, "link_latency", "rtt_min_seconds") == rtt
    store.close()


def test_a_sealed_hour_with_probe_times_is_scaled_too(path):
    store = DuckDBStore(path)
    store.write("link_latency", _probes([0], [0.0003192], [0.0]))
    store.write("link_latency", _probes([60], [0.0004321], [0.0]))  # hour 0 sealed
    assert _part_types(path, "link_latency")["rtt_min_seconds"] == "INT32"
    assert _raw_values(store, "link_latency", "rtt_min_seconds") == [0.0003192, 0.0004321]
    store.close()


def test_a_query_over_a_range_reads_only_the_parts_overlapping_it(path, direct_at_4_rows):
    store = DuckDBStore(path)
    # Hours 0, 1 and 2, one part each: 0.1/0.3, 0.5/0.7, 0.2/0.4.
    store.write("accelerator", _span([0, 30, 60, 90, 120, 150],
                                     [0.1, 0.3, 0.5, 0.7, 0.2, 0.4]))
    store.flush()  # its parts are written in the background
    assert len(_files(path)) == 3
    relation = store._raw("accelerator", datetime(2026, 10, 1, 1), datetime(2026, 10, 1, 2))
    assert re.findall(r"T\d\d\.\d\.parquet", relation) == ["T01.0.parquet"]
    got = store.query(Query("accelerator", ("utilization_ratio",), T0 + H, T0 + 2 * H,
                            agg=Aggregate.MEAN))
    assert list(got.utilization_ratio) == [pytest.approx(0.6)]
    # A range ending where a part's first sample is does not name it; one past a part's
    # last sample (01:30) does not either.
    relation = store._raw("accelerator", datetime(2026, 10, 1, 1, 31),
                          datetime(2026, 10, 1, 2))
    assert "parquet" not in relation
    assert _means(store, 3) == {(0, "bj-1"): 0.2, (1, "bj-1"): 0.6, (2, "bj-1"): 0.3}
    store.close()


def test_a_year_of_hourly_sparse_rows_makes_a_handful_of_parts_and_reads_back(
        path, monkeypatch):
    # 20 meters read hourly for a year (175,200 rows), written in one frame as `demo --days
    # 365` backfills: no hour holds a part's worth, so the rows are sealed in runs of
    # consecutive hours of `PART_ROWS` rows together, not one part an hour (8,760).
    monkeypatch.setattr(_sealed, "PART_ROWS", REAL_PART_ROWS)
    meters, hours = 20, 8760
    times = pd.date_range(T0, periods=hours, freq="1h", tz="UTC")
    frame = pd.DataFrame({
        "time": np.tile(times, meters),
        "site": np.repeat([f"m-{i:02d}" for i in range(meters)], hours),
        "meter": "main", "scope": "facility",
        # A counter in whole joules climbing by a different step a meter and hour.
        "joules_total": (np.arange(meters * hours) * 1000.0 + np.repeat(np.arange(meters),
                                                                       hours)),
        "watts": np.tile(np.arange(hours) % 97, meters) * 10.0})
    store = DuckDBStore(path)
    store.write("facility_power", frame)
    files = sorted(p.name for p in (path.parent / (path.name + ".parquet") / "facility_power")
                   .glob("*"))
    assert 1 <= len(files) <= 5
    # Every row read back exactly, from the parts and the live table together.
    got = store._con.execute(
        "SELECT s.site, t.time, t.joules_total, t.watts FROM "
        f"{store._raw('facility_power')} t JOIN series_facility_power s USING (series_id) "
        "ORDER BY s.site, t.time").fetchall()
    want = frame.sort_values(["site", "time"])
    assert [r[0] for r in got] == list(want.site)
    assert [r[1] for r in got] == [t.to_pydatetime().replace(tzinfo=None) for t in want.time]
    assert [r[2] for r in got] == list(want.joules_total)
    assert [r[3] for r in got] == list(want.watts)
    # A query across parts and live rows: each meter's last counter reading.
    last = store.query(Query("facility_power", ("joules_total",), T0, T0 + hours * H,
                             group_by=("site",), agg=Aggregate.LAST))
    assert dict(zip(last.site, last.joules_total, strict=True)) == {
        f"m-{i:02d}": ((i + 1) * hours - 1) * 1000.0 + i for i in range(meters)}
    parts = len(files)
    # Two more months written a day at a time (480 rows a write) add no part an hour
    # either: the year's 75,200 rows short of a second part, and these 28,800, make one
    # more once together they reach 100,000.
    for day in range(60):
        store.write("facility_power", frame.assign(
            time=frame.time + pd.Timedelta(days=365)).iloc[
                [i * hours + h for i in range(meters) for h in range(day * 24, day * 24 + 24)]])
    assert len(list((path.parent / (path.name + ".parquet") / "facility_power").glob("*"))
               ) == parts + 1
    assert store._con.execute(f"SELECT count(*) FROM {store._raw('facility_power')}"
                              ).fetchall() == [(meters * (hours + 60 * 24),)]
    store.close()


def test_a_write_sends_only_its_dense_hours_to_parts(path, direct_at_4_rows, monkeypatch):
    monkeypatch.setattr(_sealed, "PART_ROWS", 3)
    store = DuckDBStore(path)
    # Hour 0 holds 3 rows (a part), hour 1 one (live: the newest hour).
    store.write("accelerator", _span([0, 20, 40, 60], [0.1, 0.2, 0.3, 0.4]))
    store.flush()  # its parts are written in the background
    assert _files(path) == ["20261001T00.0.parquet"]
    assert _live_rows(store) == 1
    # Hour 1 now holds two live rows, hour 2 one: neither a part alone; once hour 3 begins,
    # the two hours together hold 3: one part named by hour 1, spanning both.
    store.write("accelerator", _span([70, 130], [0.5, 0.6]))
    assert _live_rows(store) == 3
    store.write("accelerator", _span([180], [0.7]))
    assert _files(path) == ["20261001T00.0.parquet", "20261001T01.0.parquet"]
    assert _live_rows(store) == 1
    assert _means(store, 4) == {(0, "bj-1"): 0.2, (1, "bj-1"): 0.45, (2, "bj-1"): 0.6,
                                (3, "bj-1"): 0.7}
    # delete of hour 2 rewrites the two-hour part without it.
    assert store.delete("accelerator", T0 + 2 * H, T0 + 3 * H) == 1
    assert _files(path) == ["20261001T00.0.parquet", "20261001T01.1.parquet"]
    assert _means(store, 4) == {(0, "bj-1"): 0.2, (1, "bj-1"): 0.45, (3, "bj-1"): 0.7}
    store.close()


def _energy(minutes: list[int], a: list[float], b: list[float | None]) -> pd.DataFrame:
    """bj-1's cards "a" and "b" at the given minutes after T0 with these energy counters."""
    n = len(minutes)
    return pd.DataFrame({"time": [T0 + timedelta(minutes=m) for m in minutes] * 2,
                         "site": ["bj-1"] * 2 * n, "device": ["a"] * n + ["b"] * n,
                         "energy_joules_total": [*a, *b]})


def _counter(store: DuckDBStore) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {}
    for device, value in store._con.execute(
            f"SELECT s.device, r.energy_joules_total FROM {store._raw('accelerator')} r "
            "JOIN series_accelerator s USING (series_id) ORDER BY s.device, r.time"
    ).fetchall():
        got.setdefault(device, []).append(value)
    return got


def test_the_energy_counter_is_stored_as_deltas_and_read_back_equal(path, direct_at_4_rows):
    # Card a counts in tenths of a joule and is reset at minute 30 (back to 7.5); card b
    # counts past 2^32 tenths. Hour 1 (minutes 60, 70) is a second part.
    a = [1_000.1, 1_060.3, 1_120.0, 7.5, 67.9, 128.2]
    b = [500_000_000.2, 500_000_600.4, 500_001_200.6, 500_001_800.8, 500_002_400.9,
         500_003_001.0]
    store = DuckDBStore(path)
    store.write("accelerator", _energy([0, 10, 20, 30, 60, 70], a, b))
    store.flush()  # its parts are written in the background
    assert _files(path) == ["20261001T00.0.parquet", "20261001T01.0.parquet"]
    part = path.parent / (path.name + ".parquet") / "accelerator" / "20261001T00.0.parquet"
    con = duckdb.connect()
    assert con.execute("SELECT type FROM parquet_schema(?) WHERE name = "
                       "'energy_joules_total'", [str(part)]).fetchall() == [("INT64",)]
    # Stored: the first row's tenths, then each row's tenths less the row before it.
    stored = [r[0] for r in con.execute(
        "SELECT energy_joules_total FROM read_parquet(?)", [str(part)]).fetchall()]
    assert stored == [10_001, 602, 597, -11_125, 4_999_999_927, 6_002, 6_002, 6_002]
    assert store._con.execute("SELECT DISTINCT scales FROM sealed_files").fetchall() == [
        ('{"energy_joules_total": {"delta": 1}}',)]
    # Read back: the very doubles written, the reset too, each part from its own first row.
    assert _counter(store) == {"a": a, "b": b}
    got = store.query(Query("accelerator", ("energy_joules_total",), T0, T0 + 2 * H,
                            group_by=("device",), window=H, agg=Aggregate.MAX))
    assert sorted(zip(got.device, got.energy_joules_total, strict=True)) == [
        ("a", 128.2), ("a", 1_120.0), ("b", 500_001_800.8), ("b", 500_003_001.0)]
    # Rollups from the parts: card a's hour 0 sums its four readings.
    store.refresh_rollups()
    assert store._con.execute(
        'SELECT "energy_joules_total:last" FROM rollup_1h_accelerator r JOIN '
        "series_accelerator s USING (series_id) WHERE s.device = 'a' ORDER BY time"
    ).fetchall() == [(7.5,), (128.2,)]
    # delete rewrites the part, still as deltas, the rest exact (minute 10 goes).
    assert store.delete("accelerator", T0 + timedelta(minutes=10),
                        T0 + timedelta(minutes=11)) == 2
    assert _counter(store) == {"a": [a[0], *a[2:]], "b": [b[0], *b[2:]]}
    store.close()
    store = DuckDBStore(path, read_only=True)
    assert _counter(store) == {"a": [a[0], *a[2:]], "b": [b[0], *b[2:]]}
    store.close()


def _stored_counter(path, name: str) -> list[int | None]:
    part = path.parent / (path.name + ".parquet") / "accelerator" / name
    return [r[0] for r in duckdb.connect().execute(
        "SELECT energy_joules_total FROM read_parquet(?)", [str(part)]).fetchall()]


def test_a_counter_with_missing_readings_is_stored_as_deltas_its_nulls_kept(
        path, direct_at_4_rows):
    # Card a misses its first and third readings and is reset at minute 30 (back to 1.0);
    # card b misses the last reading of hour 0 and the first of hour 1 (a second part).
    a = [None, 100.5, None, 1.0, 5.5, None]
    b = [2.0, 3.5, 4.5, None, None, 7.5]
    store = DuckDBStore(path)
    store.write("accelerator", _energy([0, 10, 20, 30, 60, 70], a, b))
    store.flush()  # its parts are written in the background
    assert store._con.execute("SELECT DISTINCT scales FROM sealed_files").fetchall() == [
        ('{"energy_joules_total": {"delta": 1}}',)]
    # Each reading's tenths less the previous reading's in the part (a NULL skipped and
    # kept), the part's first reading as it is.
    assert _stored_counter(path, "20261001T00.0.parquet") == [
        None, 1_005, None, -995, 20 - 10, 15, 10, None]
    assert _stored_counter(path, "20261001T01.0.parquet") == [55, None, None, 75 - 55]
    assert _counter(store) == {"a": a, "b": b}
    # delete rewrites the part, still as deltas (minute 10 goes).
    assert store.delete("accelerator", T0 + timedelta(minutes=10),
                        T0 + timedelta(minutes=11)) == 2
    assert _stored_counter(path, "20261001T00.1.parquet") == [None, None, 10, 10, 25, None]
    assert _counter(store) == {"a": [None, None, *a[3:]], "b": [b[0], *b[2:]]}
    store.close()


def test_a_counter_with_no_exact_decimals_stays_doubles(path, direct_at_4_rows):
    third = [1 / 3, 2 / 3, 1.0, 4 / 3]  # no decimals at which a third is exact
    store = DuckDBStore(path)
    store.write("accelerator", _energy([0, 10, 20, 30], third, [1.0, None, 3.0, 4.0]))
    store.flush()  # its parts are written in the background
    assert store._con.execute("SELECT scales FROM sealed_files").fetchall() == [("",)]
    assert _counter(store) == {"a": third, "b": [1.0, None, 3.0, 4.0]}
    store.close()


def test_a_series_dropped_by_retention_is_indexed_again_when_written_again(path):
    store = DuckDBStore(path)
    store.write("accelerator", _span([0, 30], [0.1, 0.3]))
    assert _means(store, 1) == {(0, "bj-1"): 0.2}
    # No rollups refer to the card: retention drops its samples and its series.
    store.drop_before(T0 + 2 * H)
    assert store._con.execute("SELECT count(*) FROM series_accelerator").fetchall() == [(0,)]
    store.write("accelerator", _span([180, 190], [0.5, 0.7]))
    assert store._con.execute("SELECT count(*) FROM series_accelerator").fetchall() == [(1,)]
    assert _means(store, 4) == {(3, "bj-1"): 0.6}
    store.close()


def test_small_writes_look_for_hours_to_seal_only_once_a_part_could_be_made(
        path, monkeypatch):
    monkeypatch.setattr(_sealed, "PART_ROWS", 5)
    store = DuckDBStore(path)
    looks = []
    seal_complete = store._sealed._seal_complete
    monkeypatch.setattr(store._sealed, "_seal_complete",
                        lambda *a: looks.append(1) or seal_complete(*a))
    # Two rows an hour. Hour 0: a first look. Hour 1: 4 rows live, no part possible, no
    # look. Hour 2: 6 rows live, a look, but hours 0 and 1 hold 4: no part. Hour 3: hours
    # 0 to 2 hold 6: one part, named by hour 0, and 2 rows stay live.
    for h, util in enumerate([(0.1, 0.3), (0.5, 0.7), (0.2, 0.4), (0.6, 0.8)]):
        store.write("accelerator", _span([60 * h, 60 * h + 30], list(util)))
    assert len(looks) == 3
    assert _files(path) == ["20261001T00.0.parquet"]
    assert _live_rows(store) == 2
    assert _means(store, 4) == {(0, "bj-1"): 0.2, (1, "bj-1"): 0.6, (2, "bj-1"): 0.3,
                                (3, "bj-1"): 0.7}
    store.close()
