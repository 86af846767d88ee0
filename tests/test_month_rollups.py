"""Month rollups (`computewatch.store._months`): a hand-built span of 20 May to 10 July
2026 (UTC; two sites of two accelerators, an IT and a facility meter per site, a link probed
both ways, every ten minutes) read from raw data, from daily rollups and from month rows
gives the same utilization, idle hours, PUE and compliance, each also computed here from the
generated numbers; percentiles within the sketch's stated 1%. The month rows follow late
data, retention and a store written before they existed; a store opened read-only (reports
side by side) where nothing is left to write, read-write or a clear error where something is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest
from store_files import copy_store

from computewatch import catalog
from computewatch.compliance import window_compliance
from computewatch.findings import Period
from computewatch.policy import load_policy
from computewatch.pue import meter_readings, windowed_pue
from computewatch.store import Aggregate, DuckDBStore, Query, StoreError, most
from computewatch.store._duckdb import open_reader
from computewatch.store._rollups import DAY, MONTH, RELATIVE_ERROR
from computewatch.utilization import utilization_totals

START = datetime(2026, 5, 20, tzinfo=UTC)
JUNE = datetime(2026, 6, 1, tzinfo=UTC)
JULY = datetime(2026, 7, 1, tzinfo=UTC)
END = datetime(2026, 7, 10, tzinfo=UTC)
STEP = timedelta(minutes=10)
SITES = {"s1": ("h1", "c1"), "s2": ("h2", "c2")}
BUDGET = 0.005


def _times(lo: datetime = START, hi: datetime = END) -> pd.DatetimeIndex:
    return pd.date_range(lo, hi, freq=STEP, inclusive="left")


def _frames(rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    times = _times()
    acc, meters, links = [], [], []
    for site, (hub, cluster) in SITES.items():
        for d in range(2):
            u = rng.uniform(0.0, 1.0, len(times)) ** (1 + d + (site == "s2"))
            acc.append(pd.DataFrame({"time": times, "hub": hub, "cluster": cluster,
                                     "site": site, "device": f"{site}-gpu{d}",
                                     "utilization_ratio": u}))
        it_w = rng.uniform(8e5, 1.2e6, len(times))
        for scope, watts in (("it", it_w), ("facility", it_w * rng.uniform(1.1, 1.4,
                                                                           len(times)))):
            joules = 5e9 + np.concatenate([[0.0], np.cumsum(watts[:-1] * STEP.seconds)])
            meters.append(pd.DataFrame({"time": times, "hub": hub, "cluster": cluster,
                                        "site": site, "meter": f"{site}-{scope}",
                                        "scope": scope, "joules_total": joules}))
    for src, dst in (("s1", "s2"), ("s2", "s1")):
        links.append(pd.DataFrame({
            "time": times, "src_site": src, "dst_site": dst, "src_hub": SITES[src][0],
            "dst_hub": SITES[dst][0], "tier": "regional", "probe": "udp", "samples": 60.0,
            "replies_within_budget": rng.integers(50, 61, len(times)).astype(float),
            "budget_seconds": BUDGET,
            "rtt_p95_seconds": rng.lognormal(np.log(0.8 * BUDGET), 0.3, len(times))}))
    return {"accelerator": pd.concat(acc, ignore_index=True),
            "facility_power": pd.concat(meters, ignore_index=True),
            "link_latency": pd.concat(links, ignore_index=True)}


@pytest.fixture(scope="module")
def span(tmp_path_factory):
    frames = _frames(np.random.default_rng(21))
    stores = {}
    for name in ("raw", "rolled"):
        path = tmp_path_factory.mktemp(name) / "s.duckdb"
        store = DuckDBStore(path)
        for day in range((END - START).days):  # a day at a time, as data lands
            lo, hi = START + timedelta(days=day), START + timedelta(days=day + 1)
            for meas, frame in frames.items():
                store.write(meas, frame[(frame.time >= lo) & (frame.time < hi)])
        if name == "rolled":
            store.refresh_rollups()
            store.drop_before(END + DAY)  # rollups alone are left
        stores[name] = store
    yield {"stores": stores, **frames}
    for store in stores.values():
        store.close()


def _segments(store: DuckDBStore, q: Query) -> list[tuple]:
    return [(grain, lo, hi) for _, grain, lo, hi in
            store._plan(q, catalog.measurement(q.measurement))]


def _naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


def _one(store: DuckDBStore, measurement: str, fields: tuple[str, ...], lo: datetime,
         hi: datetime, agg: Aggregate, group_by: tuple[str, ...]) -> pd.DataFrame:
    return store.query(Query(measurement, fields, lo, hi, agg=agg, group_by=group_by))


def test_a_whole_month_is_read_from_its_month_rows(span):
    rolled = span["stores"]["rolled"]
    q = Query("accelerator", ("utilization_ratio",), JUNE, JULY, agg=Aggregate.SUM)
    assert _segments(rolled, q) == [(MONTH, _naive(JUNE), _naive(JULY))]
    # windows shorter than the range are read from days; a range of whole months and days
    # from both, days at its edges
    daily = Query("accelerator", ("utilization_ratio",), JUNE, JULY, window=DAY)
    assert {g for g, _, _ in _segments(rolled, daily)} == {DAY}
    mixed = Query("accelerator", ("utilization_ratio",), START, END)
    assert _segments(rolled, mixed) == [(DAY, _naive(START), _naive(JUNE)),
                                        (MONTH, _naive(JUNE), _naive(JULY)),
                                        (DAY, _naive(JULY), _naive(END))]
    # June and July are kept as month rows of the days merged: one per series and month
    rows = rolled._con.execute(
        "SELECT time, count(*) FROM rollup_1mo_accelerator GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [(datetime(2026, 5, 1), 4), (datetime(2026, 6, 1), 4),
                    (datetime(2026, 7, 1), 4)]


def test_month_rows_hold_the_months_states(span):
    """The stored June row of each card against the raw samples' count, sum, min, max
    and last, computed here."""
    acc = span["accelerator"]
    june = acc[(acc.time >= JUNE) & (acc.time < JULY)].sort_values("time")
    want = june.groupby("device").utilization_ratio.agg(["count", "sum", "min", "max", "last"])
    got = span["stores"]["rolled"]._con.execute(
        'SELECT s.device, t."utilization_ratio:n", t."utilization_ratio:sum", '
        't."utilization_ratio:min", t."utilization_ratio:max", t."utilization_ratio:last", '
        't."utilization_ratio:last_time" FROM rollup_1mo_accelerator t '
        "JOIN series_accelerator s USING (series_id) WHERE t.time = ? ORDER BY 1",
        [_naive(JUNE)]).fetchall()
    assert [r[0] for r in got] == want.index.tolist()
    for row, (_, w) in zip(got, want.iterrows(), strict=True):
        assert row[1] == w["count"] == 30 * 144
        assert row[2] == pytest.approx(w["sum"], rel=1e-12)
        assert (row[3], row[4], row[5]) == (w["min"], w["max"], w["last"])
        assert row[6] == datetime(2026, 6, 30, 23, 50)


@pytest.mark.parametrize(("lo", "hi"), [(JUNE, JULY), (START, END)])
def test_utilization_and_idle_hours_from_months_days_and_raw_data(span, lo, hi):
    acc = span["accelerator"]
    part = acc[(acc.time >= lo) & (acc.time < hi)]
    by_site = part.groupby("site").utilization_ratio.agg(["mean", "count", "sum"])
    want_idle = (by_site["count"] - by_site["sum"]) * (STEP / timedelta(hours=1))
    for store in span["stores"].values():
        got = utilization_totals(store, lo, hi, by=("site",), interval=STEP).set_index("site")
        assert got.utilization.to_numpy() == pytest.approx(by_site["mean"].to_numpy(),
                                                           rel=1e-12)
        assert got.samples.tolist() == by_site["count"].tolist()
        assert got.idle_accelerator_hours.to_numpy() == pytest.approx(want_idle.to_numpy(),
                                                                     rel=1e-12)
    # the same from the daily rollups alone: the days' sums and counts added up here
    rolled = span["stores"]["rolled"]
    sums, counts = (rolled.query(Query("accelerator", ("utilization_ratio",), lo, hi,
                                       window=DAY, group_by=("site",), agg=agg))
                    .groupby("site").utilization_ratio.sum() for agg in (Aggregate.SUM,
                                                                         Aggregate.COUNT))
    assert (sums / counts).to_numpy() == pytest.approx(by_site["mean"].to_numpy(), rel=1e-12)


def test_pue_from_month_rows_days_and_raw_data(span):
    """June's energy-based PUE per site: the meters' last readings of May and June (month
    rows) against the generated counters, and the core's PUE from days as from raw data."""
    meters = span["facility_power"]

    def last(frame: pd.DataFrame, before: datetime) -> pd.Series:
        return frame[frame.time < before].sort_values("time").groupby("meter").joules_total.last()

    want = {}
    for site in SITES:
        delta = last(meters, JULY) - last(meters, JUNE)
        want[site] = delta[f"{site}-facility"] / delta[f"{site}-it"]
    rolled = span["stores"]["rolled"]
    ends = [_one(rolled, "facility_power", ("joules_total",), lo, hi, Aggregate.LAST,
                 ("meter",)).set_index("meter").joules_total
            for lo, hi in ((datetime(2026, 5, 1, tzinfo=UTC), JUNE), (JUNE, JULY))]
    assert _segments(rolled, Query("facility_power", ("joules_total",), JUNE, JULY,
                                   agg=Aggregate.LAST))[0][0] == MONTH
    delta = ends[1] - ends[0]
    got = {site: delta[f"{site}-facility"] / delta[f"{site}-it"] for site in SITES}
    assert got == pytest.approx(want, rel=1e-12)
    june = Period(JUNE, JULY)
    policy = load_policy()
    by_store = [windowed_pue(meter_readings(store, june, DAY), june, policy, "all",
                             by=("site",), min_completeness=0.0).set_index("site").pue
                for store in span["stores"].values()]
    assert by_store[1].to_numpy() == pytest.approx(by_store[0].to_numpy(), rel=1e-12)
    assert by_store[1].to_dict() == pytest.approx(want, rel=1e-12)


def test_compliance_and_percentiles_from_month_rows_days_and_raw_data(span):
    links = span["link_latency"]
    june = links[(links.time >= JUNE) & (links.time < JULY)]
    rolled, raw = span["stores"]["rolled"], span["stores"]["raw"]
    sums = _one(rolled, "link_latency", ("samples", "replies_within_budget"), JUNE, JULY,
                Aggregate.SUM, ())
    assert sums.samples[0] == june.samples.sum()
    assert sums.replies_within_budget[0] == june.replies_within_budget.sum()
    policy = load_policy()
    period = Period(JUNE, JULY)
    cols = ["windows", "windows_with_data", "windows_within_budget", "probes",
            "probes_within_budget"]
    got, want = (window_compliance(s, period, policy, window=DAY) for s in (rolled, raw))
    assert got[cols].to_numpy().tolist() == want[cols].to_numpy().tolist()
    assert got.probes_within_budget[0] == june.replies_within_budget.sum()
    q = Query("link_latency", ("rtt_p95_seconds",), JUNE, JULY, group_by=("src_site",),
              agg=Aggregate.QUANTILE, quantile=0.95)
    assert _segments(rolled, q) == [(MONTH, _naive(JUNE), _naive(JULY))]
    exact = june.groupby("src_site").rtt_p95_seconds.quantile(0.95)
    for store in (rolled, raw):
        p95 = store.query(q).set_index("src_site").rtt_p95_seconds
        assert p95.to_numpy() == pytest.approx(exact.to_numpy(), rel=RELATIVE_ERROR)


def _june_n(store: DuckDBStore) -> int:
    return store._con.execute(
        'SELECT sum("utilization_ratio:n") FROM rollup_1mo_accelerator WHERE time = ?',
        [_naive(JUNE)]).fetchall()[0][0]


def test_a_late_write_into_a_day_rolls_its_month_again(span, tmp_path):
    acc = span["accelerator"]
    store = DuckDBStore(tmp_path / "late.duckdb")
    store.write("accelerator", acc)
    store.refresh_rollups()
    assert _june_n(store) == 4 * 30 * 144
    late = pd.DataFrame({"time": [datetime(2026, 6, 15, 3, 2, tzinfo=UTC)], "hub": "h1",
                         "cluster": "c1", "site": "s1", "device": "s1-gpu0",
                         "utilization_ratio": 1.0})
    store.write("accelerator", late)
    store.refresh_rollups()  # the hour, its day, then its month
    assert _june_n(store) == 4 * 30 * 144 + 1
    store.drop_before(END + DAY)
    want = (acc[(acc.time >= JUNE) & (acc.time < JULY)].utilization_ratio.sum() + 1.0)
    got = _one(store, "accelerator", ("utilization_ratio",), JUNE, JULY, Aggregate.SUM, ())
    assert got.utilization_ratio[0] == pytest.approx(want, rel=1e-12)
    # a day of history written as a daily rollup: its month is merged again before a query
    day = pd.DataFrame({"time": [datetime(2026, 6, 30, tzinfo=UTC)], "site": "s9",
                        "device": "s9-gpu0", "utilization_ratio:n": [144],
                        "utilization_ratio:sum": [72.0]})
    store.write_rollup("accelerator", day, grain=DAY)
    got = _one(store, "accelerator", ("utilization_ratio",), JUNE, JULY, Aggregate.SUM, ())
    assert got.utilization_ratio[0] == pytest.approx(want + 72.0, rel=1e-12)
    assert _june_n(store) == 4 * 30 * 144 + 1 + 144
    store.close()


def test_retention_keeps_month_rows_and_cuts_the_month_it_falls_in(span, tmp_path):
    path = tmp_path / "kept.duckdb"
    span["stores"]["rolled"]._con.execute("CHECKPOINT")
    copy_store(span["stores"]["rolled"].path, path)
    acc = span["accelerator"]
    store = DuckDBStore(path)
    store.expire(raw=timedelta(days=1), now=END + timedelta(days=30))
    assert _june_n(store) == 4 * 30 * 144  # raw data's retention leaves rollups alone
    cutoff = datetime(2026, 6, 10, 7, 30, tzinfo=UTC)
    store.expire(raw=timedelta(days=1), rollups=END - cutoff, now=END)
    left = acc[(acc.time >= datetime(2026, 6, 11, tzinfo=UTC)) & (acc.time < JULY)]
    assert _june_n(store) == len(left)  # June's row holds the days left
    got = _one(store, "accelerator", ("utilization_ratio",), JUNE, JULY, Aggregate.SUM, ())
    assert got.utilization_ratio[0] == pytest.approx(left.utilization_ratio.sum(), rel=1e-12)
    days = store.query(Query("accelerator", ("utilization_ratio",), JUNE, JULY, window=DAY,
                             agg=Aggregate.SUM))
    assert days.utilization_ratio.sum() == pytest.approx(got.utilization_ratio[0], rel=1e-12)
    months = [r[0] for r in store._con.execute(
        "SELECT DISTINCT time FROM rollup_1mo_accelerator ORDER BY 1").fetchall()]
    assert months == [datetime(2026, 6, 1), datetime(2026, 7, 1)]
    store.close()


def test_a_store_from_before_month_rows_gets_them(span, tmp_path):
    path = tmp_path / "older.duckdb"
    span["stores"]["rolled"]._con.execute("CHECKPOINT")
    copy_store(span["stores"]["rolled"].path, path)
    con = duckdb.connect(str(path))
    for table in ("rollup_1mo_accelerator", "rollup_1mo_facility_power",
                  "rollup_1mo_link_latency", "sketch_1mo_link_latency", "pending_months"):
        con.execute(f"DROP TABLE {table}")
    con.close()
    store = DuckDBStore(path)
    acc = span["accelerator"]
    june = acc[(acc.time >= JUNE) & (acc.time < JULY)]
    got = _one(store, "accelerator", ("utilization_ratio",), JUNE, JULY, Aggregate.SUM,
               ("site",))
    assert got.utilization_ratio.to_numpy() == pytest.approx(
        june.groupby("site").utilization_ratio.sum().to_numpy(), rel=1e-12)
    assert _june_n(store) == len(june)
    store.close()


# --- read-only opening (reports side by side) ------------------------------------------------


def _copy_of_rolled(span, path) -> None:
    span["stores"]["rolled"]._con.execute("CHECKPOINT")
    copy_store(span["stores"]["rolled"].path, path)


def _june_by_site(span) -> np.ndarray:
    acc = span["accelerator"]
    june = acc[(acc.time >= JUNE) & (acc.time < JULY)]
    return june.groupby("site").utilization_ratio.sum().to_numpy()


@contextmanager
def _held_read_only(path):
    """Another process with ``path`` open read-only (as a report has it) until the block
    ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys\n"
         f"con = duckdb.connect({str(path)!r}, read_only=True)\n"
         "print('open', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        yield
    finally:
        proc.communicate("", timeout=60)


def test_readers_share_a_store_with_nothing_to_write(span, tmp_path):
    """Rollups up to date: `open_reader` opens the file read-only, beside another process
    and another reader, and answers as the read-write store does; it writes nothing."""
    path = tmp_path / "shared.duckdb"
    _copy_of_rolled(span, path)
    with _held_read_only(path):
        one, two = open_reader(path), open_reader(path)
        assert one.read_only and two.read_only
        for store in (one, two):
            got = _one(store, "accelerator", ("utilization_ratio",), JUNE, JULY,
                       Aggregate.SUM, ("site",))
            assert got.utilization_ratio.to_numpy() == pytest.approx(_june_by_site(span),
                                                                     rel=1e-12)
        with pytest.raises(duckdb.Error, match="read-only"):
            one._con.execute("CREATE TABLE written (x INTEGER)")
        one.close()
        two.close()


def test_a_store_with_rollups_to_write_is_opened_read_write_or_says_why(span, tmp_path):
    """A store from before month rows (they are made on its first read): read-only it
    refuses the read with what to run; `open_reader` opens it read-write and the read makes
    them, as before; when another process has the file open, it says so and what to run."""
    path = tmp_path / "older.duckdb"
    _copy_of_rolled(span, path)
    con = duckdb.connect(str(path))
    for table in ("rollup_1mo_accelerator", "rollup_1mo_facility_power",
                  "rollup_1mo_link_latency", "sketch_1mo_link_latency", "pending_months"):
        con.execute(f"DROP TABLE {table}")
    con.close()
    with DuckDBStore(path, create=False, read_only=True) as store:
        assert store.writes_pending()
    with _held_read_only(path), pytest.raises(StoreError, match="computewatch rollup"):
        open_reader(path)
    store = open_reader(path)
    assert not store.read_only
    got = _one(store, "accelerator", ("utilization_ratio",), JUNE, JULY, Aggregate.SUM,
               ("site",))
    assert got.utilization_ratio.to_numpy() == pytest.approx(_june_by_site(span), rel=1e-12)
    store.refresh_rollups()  # every measurement's months (`computewatch rollup`)
    store.close()
    with open_reader(path) as store:  # its months made: read-only from now on
        assert store.read_only and _june_n(store) == 4 * 30 * 144


def test_a_read_only_store_with_raw_data_to_roll_up_refuses_the_read(span, tmp_path):
    """A late sample in an hour kept as rollups only waits for the refresh a read runs:
    read-only, the read says so and what to run (it would answer without it); `open_reader`
    takes the file read-write and answers as a read-write store (the report before) does."""
    path, before = tmp_path / "late.duckdb", tmp_path / "as-before.duckdb"
    _copy_of_rolled(span, path)
    with DuckDBStore(path, create=False) as store:
        store.write("accelerator", pd.DataFrame({
            "time": [datetime(2026, 6, 15, 3, 2, tzinfo=UTC)], "hub": "h1", "cluster": "c1",
            "site": "s1", "device": "s1-gpu0", "utilization_ratio": 1.0}))
    shutil.copy(path, before)
    june = ("accelerator", ("utilization_ratio",), JUNE, JULY, Aggregate.COUNT, ("site",))
    with DuckDBStore(path, create=False, read_only=True) as store:
        assert store.writes_pending()
        with pytest.raises(StoreError, match="computewatch rollup"):
            _one(store, *june)
    with DuckDBStore(before, create=False) as store:
        want = _one(store, *june)
    with open_reader(path) as store:
        assert not store.read_only
        pd.testing.assert_frame_equal(_one(store, *june), want)


def test_the_most_samples_a_device_sent_in_a_day(span):
    """`most` of a day's counts by device (the sampling interval's probe): every device
    sent one sample each ten minutes, 144 a day; from rollups DuckDB finds it without the
    groups' rows, from raw data the rows are read; another aggregate (a SUM) is read from
    the rows too, the largest device-day sum of the generated numbers."""
    q = Query("accelerator", ("utilization_ratio",), JUNE, JUNE + 3 * DAY,
              group_by=("device",), window=DAY, agg=Aggregate.COUNT)
    rolled, raw = span["stores"]["rolled"], span["stores"]["raw"]
    assert rolled.most(q) == 144.0 and raw.most(q) is None
    assert most(rolled, q) == most(raw, q) == 144.0
    assert most(rolled, replace(q, agg=Aggregate.SUM)) == pytest.approx(max(
        span["accelerator"][(span["accelerator"].time >= JUNE + d * DAY)
                            & (span["accelerator"].time < JUNE + (d + 1) * DAY)]
        .groupby("device").utilization_ratio.sum().max() for d in range(3)), rel=1e-12)
