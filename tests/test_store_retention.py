"""Retention of the embedded store: raw samples expire and free their space; rollups stay.

Complete hours of raw samples are sealed into Parquet files beside the file
(`computewatch.store._sealed`), so the raw rows read here are the live table's and the files'.

The rollup table here is a stand-in named as helper i19b's rollups are
(``rollup_<grain>_<measurement>``, from its ``computewatch/store/_rollups.rollup_table``),
filled with daily sums computed in SQL from the raw rows before they expire.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from computewatch.store import DuckDBStore, StoreError

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 10
DEVICES = 100
NOW = T0 + timedelta(days=DAYS)


def _all_raw(p) -> str:
    """SQL of every raw accelerator sample: the live table and the sealed files on disk."""
    files = sorted(str(f) for f in Path(f"{p}.parquet").glob("accelerator/*.parquet"))
    return (f"(SELECT * FROM samples_accelerator UNION ALL BY NAME SELECT * FROM "
            f"read_parquet({files}))") if files else "samples_accelerator"


def _disk(p) -> int:
    """The store's bytes on disk: the file and its folder of sealed files."""
    return p.stat().st_size + sum(f.stat().st_size for f in
                                  p.parent.glob(p.name + ".parquet/*/*"))


def _day(day: int, devices: range) -> pd.DataFrame:
    rng = np.random.default_rng(day)
    times = pd.date_range(T0 + timedelta(days=day), periods=1440, freq="1min", tz="UTC")
    n = len(devices)
    return pd.DataFrame({
        "time": np.repeat(times, n),
        "site": "gy-1",
        "device": np.tile([f"gpu-{d:03d}" for d in devices], len(times)),
        "utilization_ratio": rng.random(len(times) * n).round(4),
        "power_watts": (rng.random(len(times) * n) * 700).round(1),
    })


@pytest.fixture
def path(tmp_path):
    """Ten days of 100 devices at 1 minute; device gpu-099 reports on the first day only."""
    p = tmp_path / "r.duckdb"
    with DuckDBStore(p) as st:
        for day in range(DAYS):
            st.write("accelerator", _day(day, range(DEVICES if day == 0 else DEVICES - 1)))
    con = duckdb.connect(str(p))
    # i19b's bookkeeping table shares the prefix; expiry must leave it alone.
    con.execute("CREATE TABLE rollup_dirty (measurement VARCHAR, lo TIMESTAMP, hi TIMESTAMP)")
    con.execute("INSERT INTO rollup_dirty VALUES ('accelerator', '2026-03-01', '2026-03-02')")
    con.execute("CREATE TABLE rollup_1d_accelerator AS SELECT date_trunc('day', time) AS time, "
                "series_id, sum(utilization_ratio) AS utilization_ratio_sum, "
                "count(utilization_ratio) AS utilization_ratio_n "
                f"FROM {_all_raw(p)} GROUP BY ALL")
    con.close()
    return p


def _rollups(p) -> tuple[int, float]:
    con = duckdb.connect(str(p))
    n, s = con.execute("SELECT count(*), sum(utilization_ratio_sum) "
                       "FROM rollup_1d_accelerator").fetchone()
    con.close()
    return n, s


def _raw_first(st: DuckDBStore) -> datetime | None:
    """The first raw sample's time (`time_bounds` also counts rollups once a store has them)."""
    t = st._con.execute(f"SELECT min(time) FROM {_all_raw(st.path)}").fetchone()[0]
    return None if t is None else t.replace(tzinfo=UTC)


def test_expiry_deletes_old_raw_rows_and_frees_their_blocks(path):
    rollups_before = _rollups(path)
    with DuckDBStore(path) as st:
        got = st.expire(timedelta(days=3), now=NOW)
        # Days 0..6 go: day 0 had 100 devices, days 1..6 had 99; 1,440 minutes each.
        assert got.raw_rows == 1440 * (100 + 6 * 99)
        assert got.raw_cutoff == T0 + timedelta(days=7)
        assert _raw_first(st) == T0 + timedelta(days=7)
        assert got.rollup_rows == 0
        # 7 of 10 days gone: the blocks in use fall to about half (not to 30%: DuckDB frees
        # whole blocks of 256 KiB, a row group of 122,880 rows that straddles the cutoff
        # keeps its blocks, and the rollups and series stay). Without expiry: 100%.
        assert got.used_bytes_after <= 0.6 * got.used_bytes_before
        # The series of gpu-099, now only in the rollups, keeps its labels.
        assert len(st.series("accelerator")) == DEVICES
    assert _rollups(path) == rollups_before


def test_freed_blocks_are_reused_so_the_store_stops_growing(path):
    size = _disk(path)
    with DuckDBStore(path) as st:
        st.expire(timedelta(days=3), now=NOW)
        for day in range(DAYS, DAYS + 6):  # six new days where seven were freed
            st.write("accelerator", _day(day, range(DEVICES - 1)))
        st.expire(timedelta(days=100), now=NOW)  # a checkpoint; nothing is old enough
    # Without reuse the store would grow by about 6/10; a few partly filled blocks are
    # allowed. (A day written at once goes to Parquet parts, so the file itself holds the
    # rollups and the index: its blocks freed by expiry are reused by the new days' rollups.)
    assert _disk(path) <= size * 1.1


def test_compact_shrinks_the_file_and_keeps_the_data(path):
    size = _disk(path)
    with DuckDBStore(path) as st:
        got = st.expire(timedelta(days=3), now=NOW, compact=True)
        assert got.file_bytes == _disk(path) < 0.5 * size
        assert len(st.series("accelerator")) == DEVICES
        # The reopened store still writes and reads.
        st.write("accelerator", _day(DAYS, range(2)))
        assert st._con.execute("SELECT max(time) FROM samples_accelerator").fetchone()[0] \
            == (NOW + timedelta(minutes=1439)).replace(tzinfo=None)
    assert _rollups(path)[0] > 0


def test_rollup_retention_drops_old_rollups_and_their_orphan_series(path):
    with DuckDBStore(path) as st:
        got = st.expire(timedelta(days=3), rollups=timedelta(days=8), now=NOW)
        # Rollup days 0 and 1 go: 100 + 99 device-days.
        assert got.rollup_rows == 100 + 99
        assert got.rollup_cutoff == T0 + timedelta(days=2)
        # gpu-099 had raw data and a rollup on day 0 only: nothing refers to it now.
        assert len(st.series("accelerator")) == DEVICES - 1
    n, _ = _rollups(path)
    assert n == 100 + 9 * 99 - (100 + 99)
    con = duckdb.connect(str(path))
    assert con.execute("SELECT count(*) FROM rollup_dirty").fetchone()[0] == 1
    con.close()


def test_retention_must_be_positive(path):
    with DuckDBStore(path) as st, pytest.raises(StoreError, match="retention must be positive"):
        st.expire(timedelta(0), now=NOW)


def test_store_expire_command_reports_what_it_freed(path):
    from typer.testing import CliRunner

    from computewatch.cli import app

    # The fixture's data ends on 2026-03-11, long past any retention measured from today.
    result = CliRunner().invoke(app, ["store", "expire", "--store", str(path),
                                      "--raw-retention", "35d", "--compact"])
    assert result.exit_code == 0, result.output
    assert f"{1440 * (100 + 9 * 99):,} raw rows before" in result.output
    with DuckDBStore(path) as st:
        assert _raw_first(st) is None
        assert len(st.series("accelerator")) == DEVICES  # the rollups still name them all
    bad = CliRunner().invoke(app, ["store", "expire", "--store", str(path),
                                   "--raw-retention", "30m"])
    # (main() turns a UserError into exit code 2; the runner hands back the exception)
    assert "bad --raw-retention" in str(bad.exception) and "at least 1h" in str(bad.exception)


def test_late_samples_for_an_expired_hour_leave_its_rollup_whole(tmp_path, caplog):
    """An hour whose raw samples expired keeps the rollup made from them: a late sample
    written there afterwards is kept raw and logged, not rolled up in place of the hour.
    By hand: 60 minutes at 0.5 give an hourly mean of 0.5 over 60 samples; rolled up from the
    late sample alone it would read 1.0 over 1."""
    from computewatch.store import Aggregate, Query

    hour = datetime(2026, 3, 1, 10, tzinfo=UTC)
    minutes = pd.date_range(hour, periods=60, freq="1min", tz="UTC")
    frame = pd.DataFrame({"time": minutes, "site": "gy-1", "device": "gpu-000",
                          "utilization_ratio": 0.5})
    late = pd.DataFrame({"time": [hour + timedelta(minutes=30, seconds=10)], "site": "gy-1",
                         "device": "gpu-000", "utilization_ratio": [1.0]})
    with DuckDBStore(tmp_path / "late.duckdb") as st:
        st.write("accelerator", frame)
        st.refresh_rollups()
        st.drop_before(hour + timedelta(minutes=45))  # the hour's raw samples partly gone
        st.write("accelerator", late)
        caplog.set_level("WARNING")
        st.refresh_rollups()
        got = st.query(Query("accelerator", ("utilization_ratio",), hour,
                             hour + timedelta(hours=1), agg=Aggregate.MEAN,
                             window=timedelta(hours=1)))
        n = st.query(Query("accelerator", ("utilization_ratio",), hour,
                           hour + timedelta(hours=1), agg=Aggregate.COUNT,
                           window=timedelta(hours=1)))
    assert got["utilization_ratio"].tolist() == [0.5]
    assert n["utilization_ratio"].tolist() == [60]
    assert any("before the raw samples' expiry" in r.getMessage() for r in caplog.records)
