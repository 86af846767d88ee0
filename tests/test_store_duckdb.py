"""The embedded store's windowed aggregation, checked against pandas on random data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from computewatch.errors import StoreURLError
from computewatch.store import (
    Aggregate,
    DuckDBStore,
    Query,
    StoreError,
    open_store,
    query_many,
)

T0 = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def random_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 20_000
    sites = np.array(["bj-1", "bj-2", "sh-1", "gy-1"])
    hubs = {"bj-1": "jjj", "bj-2": "jjj", "sh-1": "yrd", "gy-1": "guizhou"}
    site = rng.choice(sites, n)
    device = np.char.add(site.astype(str), np.char.add("-", rng.integers(0, 5, n).astype(str)))
    seconds = rng.choice(6 * 3600, n, replace=False)  # unique, so "last" is well defined
    return pd.DataFrame({
        "time": pd.to_datetime(T0) + pd.to_timedelta(seconds, unit="s"),
        "site": site,
        "hub": [hubs[s] for s in site],
        "device": device,
        "utilization_ratio": rng.random(n),
        "power_watts": rng.random(n) * 700,
    })


@pytest.fixture
def store(tmp_path, random_frame) -> DuckDBStore:
    s = DuckDBStore(tmp_path / "t.duckdb")
    # Two writes, so the series index must match label sets across batches.
    half = len(random_frame) // 2
    s.write("accelerator", random_frame.iloc[:half])
    s.write("accelerator", pa.Table.from_pandas(random_frame.iloc[half:], preserve_index=False))
    yield s
    s.close()


def _pandas_windowed(df: pd.DataFrame, start: datetime, end: datetime, window: timedelta,
                     by: list[str], field: str, how) -> pd.DataFrame:
    d = df[(df.time >= start) & (df.time < end)].copy()
    d["bucket"] = start + ((d.time - start) // window) * window
    out = d.groupby(["bucket", *by])[field].agg(how).reset_index()
    return out.rename(columns={"bucket": "time"}).sort_values(["time", *by]).reset_index(
        drop=True)


@pytest.mark.parametrize(("agg", "how"), [
    (Aggregate.MEAN, "mean"), (Aggregate.MIN, "min"), (Aggregate.MAX, "max"),
    (Aggregate.SUM, "sum"), (Aggregate.COUNT, "count"),
])
def test_windowed_aggregate_matches_pandas(store, random_frame, agg, how):
    start = T0 + timedelta(minutes=17)  # windows are aligned to the query's start
    end = T0 + timedelta(hours=5, minutes=3)
    window = timedelta(minutes=45)
    got = store.query(Query("accelerator", ("utilization_ratio",), start, end,
                            group_by=("site",), window=window, agg=agg))
    want = _pandas_windowed(random_frame, start, end, window, ["site"], "utilization_ratio", how)
    assert len(got) == len(want) > 20
    assert list(got.time) == list(want.time)
    assert list(got.site) == list(want.site)
    np.testing.assert_allclose(got.utilization_ratio.astype(float),
                               want.utilization_ratio.astype(float), rtol=1e-9)


def test_quantile_matches_pandas_linear_interpolation(store, random_frame):
    end = T0 + timedelta(hours=6)
    got = store.query(Query("accelerator", ("power_watts",), T0, end, group_by=("hub",),
                            window=timedelta(hours=2), agg=Aggregate.QUANTILE, quantile=0.95))
    want = _pandas_windowed(random_frame, T0, end, timedelta(hours=2), ["hub"], "power_watts",
                            lambda x: x.quantile(0.95))
    np.testing.assert_allclose(got.power_watts, want.power_watts, rtol=1e-9)


def test_last_takes_the_latest_sample_of_the_group(store, random_frame):
    end = T0 + timedelta(hours=6)
    got = store.query(Query("accelerator", ("power_watts",), T0, end, group_by=("device",),
                            agg=Aggregate.LAST))
    want = random_frame.sort_values("time").groupby("device").power_watts.last()
    assert len(got) == random_frame.device.nunique()
    np.testing.assert_allclose(got.set_index("device").power_watts.sort_index(),
                               want.sort_index(), rtol=1e-12)


def test_tag_filters_and_multiple_fields(store, random_frame):
    end = T0 + timedelta(hours=6)
    got = store.query(Query("accelerator", ("utilization_ratio", "power_watts"), T0, end,
                            where={"hub": "jjj", "site": ["bj-1", "sh-1"]}))
    sel = random_frame[random_frame.site == "bj-1"]
    assert len(got) == 1
    assert got.time[0] == T0
    assert got.utilization_ratio[0] == pytest.approx(sel.utilization_ratio.mean(), rel=1e-12)
    assert got.power_watts[0] == pytest.approx(sel.power_watts.mean(), rel=1e-12)


def test_series_index_holds_each_label_set_once(store, random_frame):
    series = store.series("accelerator")
    assert len(series) == random_frame.device.nunique()
    assert set(series.columns) >= {"hub", "cluster", "site", "device", "vendor"}
    assert (series.cluster == "").all()  # absent labels are stored as ''
    assert len(store.series("accelerator", where={"site": "gy-1"})) == \
        random_frame[random_frame.site == "gy-1"].device.nunique()


def test_time_bounds_and_retention(store, random_frame):
    lo, hi = store.time_bounds("accelerator")
    assert lo == random_frame.time.min() and hi == random_frame.time.max()
    cutoff = T0 + timedelta(hours=3)
    deleted = store.drop_before(cutoff)
    assert deleted == int((random_frame.time < cutoff).sum())
    assert store.time_bounds("accelerator")[0] >= cutoff


def test_invalid_values_are_nulled_and_counted(tmp_path):
    s = DuckDBStore(tmp_path / "v.duckdb")
    # An Arrow table: in a pandas frame NaN means "missing" and arrives as null.
    frame = pa.table({
        "time": pa.array([T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]),
        "device": ["a", "a", "a"],
        "utilization_ratio": [0.5, 1.7, float("nan")],
        "power_watts": [100.0, -3.0, 200.0],
    })
    result = s.write("accelerator", frame)
    assert result.rows == 3 and result.rejected == 3
    counts = s.rejections.counts()
    comp = f"store {s.url}"
    assert counts[(comp, "accelerator", "utilization_ratio", "out_of_range")] == 1
    assert counts[(comp, "accelerator", "utilization_ratio", "nan")] == 1
    assert counts[(comp, "accelerator", "power_watts", "out_of_range")] == 1
    got = s.query(Query("accelerator", ("utilization_ratio", "power_watts"), T0,
                        T0 + timedelta(hours=1), agg=Aggregate.COUNT))
    assert got.utilization_ratio[0] == 1 and got.power_watts[0] == 2


def test_unknown_field_never_reaches_the_table(tmp_path):
    s = DuckDBStore(tmp_path / "u.duckdb")
    frame = pd.DataFrame({"time": pd.to_datetime([T0]), "device": ["a"], "bogus": [1.0],
                          "power_watts": [10.0]})
    s.write("accelerator", frame)
    assert s.rejections.counts()[(f"store {s.url}", "accelerator", "bogus", "unknown_metric")] == 1
    with pytest.raises(Exception, match="bogus"):
        s.query(Query("accelerator", ("bogus",), T0, T0 + timedelta(hours=1)))


def test_query_of_unwritten_field_and_measurement(tmp_path):
    s = DuckDBStore(tmp_path / "e.duckdb")
    empty = s.query(Query("pue", ("energy_ratio",), T0, T0 + timedelta(hours=1)))
    assert empty.empty and list(empty.columns) == ["time", "energy_ratio"]
    s.write("accelerator", pd.DataFrame({"time": pd.to_datetime([T0]), "device": ["a"],
                                         "power_watts": [10.0]}))
    got = s.query(Query("accelerator", ("power_watts", "temperature_celsius"), T0,
                        T0 + timedelta(hours=1)))
    assert got.power_watts[0] == 10.0 and pd.isna(got.temperature_celsius[0])


def test_bad_queries_name_the_problem(store):
    with pytest.raises(StoreError, match="no tag 'nope'"):
        store.query(Query("accelerator", ("power_watts",), T0, T0 + timedelta(hours=1),
                          where={"nope": "x"}))
    with pytest.raises(ValueError, match="timezone"):
        Query("accelerator", ("power_watts",), datetime(2026, 1, 1), T0)
    with pytest.raises(ValueError, match="not after"):
        Query("accelerator", ("power_watts",), T0, T0)


def test_open_store_by_url(tmp_path):
    s = open_store(f"duckdb:///{tmp_path}/x.duckdb")
    assert isinstance(s, DuckDBStore) and (tmp_path / "x.duckdb").exists()
    s.close()
    with pytest.raises(StoreError, match="unknown store URL"):
        open_store("carrierpigeon://x")


def test_data_survives_reopen(tmp_path):
    path = tmp_path / "r.duckdb"
    with DuckDBStore(path) as s:
        s.write("accelerator", pd.DataFrame({"time": pd.to_datetime([T0]), "device": ["a"],
                                             "power_watts": [42.0]}))
    with DuckDBStore(path) as s:
        s.write("accelerator", pd.DataFrame({"time": pd.to_datetime([T0]), "device": ["a"],
                                             "temperature_celsius": [50.0]}))
        got = s.query(Query("accelerator", ("power_watts", "temperature_celsius"), T0,
                            T0 + timedelta(minutes=1), agg=Aggregate.MAX))
        assert got.power_watts[0] == 42.0 and got.temperature_celsius[0] == 50.0
        assert len(s.series("accelerator")) == 1


def test_infinite_values_and_unknown_labels_are_refused_and_counted(tmp_path):
    s = DuckDBStore(tmp_path / "i.duckdb")
    frame = pa.table({
        "time": pa.array([T0, T0 + timedelta(minutes=1)]),
        "device": ["a", "a"],
        "rack": ["r1", "r2"],
        "power_watts": [float("inf"), 300.0],
    })
    s.write("accelerator", frame)
    counts = s.rejections.counts()
    comp = f"store {s.url}"
    assert counts[(comp, "accelerator", "power_watts", "out_of_range")] == 1
    assert counts[(comp, "accelerator", "rack", "unknown_label")] == 2
    got = s.query(Query("accelerator", ("power_watts",), T0, T0 + timedelta(hours=1),
                        agg=Aggregate.MAX))
    assert got.power_watts[0] == 300.0
    assert "rack" not in s.series("accelerator").columns


def test_where_that_accepts_nothing_is_an_empty_answer_and_bad_values_are_named(store):
    """The same `check_where` rule as the server backends: an empty value list matches no
    series (not a SQL error), and a value that is not a string names the tag."""
    q = Query("accelerator", ("utilization_ratio",), T0, T0 + timedelta(hours=6),
              where={"site": []}, group_by=("site",))
    assert store.query(q).empty
    assert store.series("accelerator", {"site": []}).empty
    assert len(store.series("accelerator", {"site": ["bj-1", "sh-1", "bj-1"]})) == 10
    with pytest.raises(StoreError, match=r"where\['site'\] value 7 is not a string"):
        store.series("accelerator", {"site": [7]})


def test_rows_out_of_order_and_chunks_with_their_own_dictionaries(tmp_path):
    """Rows are stored sorted by series and time whatever order and chunking they come in."""
    times = [T0 + timedelta(minutes=m) for m in (2, 0, 1)]
    dev = pa.array(["a", "b", "a"]).dictionary_encode()
    first = pa.table({"time": pa.array(times, pa.timestamp("us", tz="UTC")), "device": dev,
                      "power_watts": [102.0, 200.0, 101.0]})
    second = pa.table({"time": pa.array([T0 + timedelta(minutes=3)], pa.timestamp("us", tz="UTC")),
                       "device": pa.array(["b"]).dictionary_encode(), "power_watts": [203.0]})
    # The second chunk's dictionary holds only "b", at index 0 where the first has "a".
    frame = pa.concat_tables([first, second])
    s = DuckDBStore(tmp_path / "o.duckdb")
    assert s.write("accelerator", frame).rows == 4
    assert sorted(s.series("accelerator").device) == ["a", "b"]
    got = s.query(Query("accelerator", ("power_watts",), T0, T0 + timedelta(minutes=4),
                        group_by=("device",), agg=Aggregate.LAST))
    assert dict(zip(got.device, got.power_watts, strict=True)) == {"a": 102.0, "b": 203.0}
    rows = s._con.execute("SELECT time, power_watts FROM samples_accelerator").fetchall()
    assert [r[1] for r in rows] in ([101.0, 102.0, 200.0, 203.0], [200.0, 203.0, 101.0, 102.0])
    s.close()


def test_the_buffer_pool_can_be_capped(tmp_path):
    """memory_limit reaches DuckDB (512 MB is 488.2 MiB in its own words); a size it cannot
    read is refused before the store opens."""
    with DuckDBStore(tmp_path / "capped.duckdb", memory_limit="512MB") as store:
        got = store._con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert got == "488.2 MiB"
    with pytest.raises(ValueError, match="'lots' is not a size"):
        DuckDBStore(tmp_path / "other.duckdb", memory_limit="lots")


def test_the_url_caps_the_buffer_pool(tmp_path):
    with open_store(f"duckdb:///{tmp_path}/capped.duckdb?memory_limit=256MB") as store:
        got = store._con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert got == "244.1 MiB"
    with pytest.raises(StoreURLError, match="unknown option 'threads'"):
        open_store(f"duckdb:///{tmp_path}/x.duckdb?threads=2")
    with pytest.raises(StoreURLError, match="'lots' is not a size"):
        open_store(f"duckdb:///{tmp_path}/x.duckdb?memory_limit=lots")


def test_aggregates_of_one_scan_each_match_pandas(store, random_frame):
    """`query_many`: a MEAN, a SUM, a COUNT, a MAX and a LAST of the same fields, groups
    and windows and a MIN of another field (read in one scan), a quantile and a query of
    another window beside them;
    each answer is what pandas computes from the frame that was written."""
    start, end, window = T0 + timedelta(minutes=7), T0 + timedelta(hours=5), timedelta(hours=1)
    where = {"site": ["bj-1", "sh-1", "gy-1"]}
    subset = random_frame[random_frame.site.isin(where["site"])]
    hows = [(Aggregate.MEAN, "mean"), (Aggregate.SUM, "sum"), (Aggregate.COUNT, "count"),
            (Aggregate.MAX, "max"), (Aggregate.LAST, "last")]
    queries = [Query("accelerator", ("power_watts",), start, end, where=where,
                     group_by=("hub", "device"), window=window, agg=agg) for agg, _ in hows]
    queries.append(Query("accelerator", ("power_watts",), start, end, where=where,
                         group_by=("hub", "device"), window=window, agg=Aggregate.QUANTILE,
                         quantile=0.5))
    queries.append(Query("accelerator", ("power_watts",), start, end, where=where,
                         group_by=("hub", "device"), window=2 * window, agg=Aggregate.SUM))
    queries.append(Query("accelerator", ("utilization_ratio",), start, end, where=where,
                         group_by=("hub", "device"), window=window, agg=Aggregate.MIN))
    answers = query_many(store, queries)
    ordered = subset.sort_values("time")
    expected = [_pandas_windowed(ordered, start, end, window, ["hub", "device"], "power_watts",
                                 how) for _, how in hows]
    expected.append(_pandas_windowed(ordered, start, end, window, ["hub", "device"],
                                     "power_watts", "median"))
    expected.append(_pandas_windowed(ordered, start, end, 2 * window, ["hub", "device"],
                                     "power_watts", "sum"))
    expected.append(_pandas_windowed(ordered, start, end, window, ["hub", "device"],
                                     "utilization_ratio", "min"))
    assert len(answers) == len(expected)
    for got, want in zip(answers, expected, strict=True):
        got = got.copy()
        got["time"] = got.time.dt.tz_convert(UTC)
        pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-9, atol=0)


def test_a_store_without_query_many_answers_one_by_one(store):
    class Plain:
        url = "plain://"

        def __init__(self) -> None:
            self.asked: list[Query] = []

        def query(self, q: Query) -> pd.DataFrame:
            self.asked.append(q)
            return store.query(q)

    plain = Plain()
    qs = [Query("accelerator", ("utilization_ratio",), T0, T0 + timedelta(hours=6), agg=agg)
          for agg in (Aggregate.SUM, Aggregate.COUNT)]
    got = query_many(plain, qs)
    assert plain.asked == qs
    assert got[1].utilization_ratio.iloc[0] == 20_000
