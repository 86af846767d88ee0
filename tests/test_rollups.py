"""A hand-built month read from raw data and from rollups gives the same answers.

Three DuckDB stores hold the same month (November 2026: two sites of three accelerators, a
facility and an IT meter per site with a counter reset, one link probed both ways, every
minute): ``raw`` keeps every sample; ``mixed`` rolled up and then expired all but the last
five days (at an unaligned minute); ``rolled`` rolled up and then expired everything. The
month's utilization, idle accelerator-hours, PUE and tier compliance are computed with the
core's own functions on each and compared with each other and with the values computed here
from the generated numbers; percentiles within the sketch's stated 1%.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from computewatch.compliance import window_compliance
from computewatch.findings import Period
from computewatch.policy import load_policy
from computewatch.pue import meter_readings, windowed_pue
from computewatch.store import (
    Aggregate,
    DuckDBStore,
    Query,
    StoreError,
    prefetch,
    resolution,
)
from computewatch.store._rollups import RELATIVE_ERROR
from computewatch.utilization import utilization_totals

T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = datetime(2026, 12, 1, tzinfo=UTC)
MONTH = Period(T0, T1)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
SITES = {"s1": ("h1", "c1"), "s2": ("h2", "c2")}
BUDGET = 0.005  # the shipped policy's regional budget as a round-trip time
RESET_AT = T0 + timedelta(days=11, hours=5, minutes=17)


def _minutes(lo: datetime, hi: datetime) -> pd.DatetimeIndex:
    return pd.date_range(lo, hi, freq="1min", inclusive="left")


def _accelerators(rng: np.random.Generator) -> pd.DataFrame:
    times = _minutes(T0, T1)
    frames = []
    for site, (hub, cluster) in SITES.items():
        for d in range(3):
            u = rng.uniform(0.0, 1.0, len(times)) ** (1 + d)  # a different mean per card
            keep = np.ones(len(times), bool)
            if site == "s2" and d == 2:  # a card silent for three days
                keep[(times >= T0 + timedelta(days=9)) & (times < T0 + timedelta(days=12))] = 0
            frames.append(pd.DataFrame({
                "time": times[keep], "hub": hub, "cluster": cluster, "site": site,
                "device": f"{site}-gpu{d}", "utilization_ratio": u[keep],
                "power_watts": 100 + 300 * u[keep]}))
    return pd.concat(frames, ignore_index=True)


def _meters(rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, float]]:
    """Counters read every minute from two hours before the month to two hours after it.
    A meter draws ``watts[k]`` during minute k; s1's facility counter restarts from 0."""
    times = _minutes(T0 - timedelta(hours=2), T1 + timedelta(hours=2))
    frames, pue = [], {}
    for site, (hub, cluster) in SITES.items():
        it_w = rng.uniform(8e5, 1.2e6, len(times))
        fac_w = it_w * rng.uniform(1.15, 1.35, len(times))
        inside = (times >= T0) & (times < T1)
        pue[site] = fac_w[inside].sum() / it_w[inside].sum()
        for scope, watts in (("it", it_w), ("facility", fac_w)):
            joules = 5e9 + np.concatenate([[0.0], np.cumsum(watts[:-1] * 60.0)])
            if site == "s1" and scope == "facility":
                after = times >= RESET_AT
                joules[after] -= joules[after][0]
            frames.append(pd.DataFrame({
                "time": times, "hub": hub, "cluster": cluster, "site": site,
                "meter": f"{site}-{scope}", "scope": scope, "joules_total": joules}))
    return pd.concat(frames, ignore_index=True), pue


def _links(rng: np.random.Generator) -> pd.DataFrame:
    times = _minutes(T0, T1)
    frames = []
    for src, dst in (("s1", "s2"), ("s2", "s1")):
        within = rng.integers(52, 61, len(times)).astype(float)
        frames.append(pd.DataFrame({
            "time": times, "src_site": src, "dst_site": dst, "src_hub": SITES[src][0],
            "dst_hub": SITES[dst][0], "tier": "regional", "probe": "udp",
            "samples": 60.0, "replies_within_budget": within, "budget_seconds": BUDGET,
            "rtt_p95_seconds": rng.lognormal(np.log(0.8 * BUDGET), 0.3, len(times))}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    rng = np.random.default_rng(19)
    acc, (meters, pue), links = _accelerators(rng), _meters(rng), _links(rng)
    stores = {}
    for name in ("raw", "mixed", "rolled"):
        store = DuckDBStore(tmp_path_factory.mktemp(name) / "m.duckdb")
        for day in range(-1, 32):  # a day at a time, as data lands
            lo, hi = T0 + timedelta(days=day), T0 + timedelta(days=day + 1)
            for meas, frame in (("accelerator", acc), ("facility_power", meters),
                                ("link_latency", links)):
                part = frame[(frame.time >= lo) & (frame.time < hi)]
                if len(part):
                    store.write(meas, part)
        if name != "raw":
            assert store.refresh_rollups() > 0
            store.drop_before(T1 - timedelta(days=5, minutes=-37) if name == "mixed" else
                              T1 + timedelta(days=1))
        stores[name] = store
    yield {"stores": stores, "acc": acc, "pue": pue, "links": links}
    for store in stores.values():
        store.close()


def test_the_stores_hold_what_they_should(month):
    raw, mixed, rolled = (month["stores"][n] for n in ("raw", "mixed", "rolled"))
    assert rolled.query(Query("accelerator", ("utilization_ratio",), T0, T1,
                              agg=Aggregate.COUNT)).utilization_ratio[0] == len(month["acc"])
    assert resolution(raw, "accelerator", T0) == timedelta(0)
    assert resolution(rolled, "accelerator", T0) == timedelta(hours=1)
    assert resolution(mixed, "accelerator", T0) == timedelta(hours=1)
    assert resolution(mixed, "accelerator", T1 - timedelta(days=2)) == timedelta(0)
    lo, _ = rolled.time_bounds("accelerator")
    assert lo == T0  # the rollups reach back where raw data is gone
    assert set(rolled.series("accelerator").device) == set(month["acc"].device)


@pytest.mark.parametrize("name", ["mixed", "rolled"])
def test_utilization_and_idle_hours_are_the_same_from_rollups(month, name):
    acc = month["acc"]
    by_site = acc.groupby("site").utilization_ratio.agg(["mean", "count", "sum"])
    want_idle = (by_site["count"] - by_site["sum"]) / 60.0  # one-minute samples
    for store in (month["stores"]["raw"], month["stores"][name]):
        got = utilization_totals(store, T0, T1, by=("site",)).set_index("site")
        assert got.utilization.to_numpy() == pytest.approx(by_site["mean"].to_numpy(), rel=1e-12)
        assert got.samples.tolist() == by_site["count"].tolist()
        assert got.idle_accelerator_hours.to_numpy() == pytest.approx(want_idle.to_numpy(),
                                                                     rel=1e-12)


@pytest.mark.parametrize("name", ["mixed", "rolled"])
@pytest.mark.parametrize("agg", [Aggregate.MEAN, Aggregate.SUM, Aggregate.COUNT,
                                 Aggregate.MIN, Aggregate.MAX, Aggregate.LAST])
@pytest.mark.parametrize("window", [timedelta(days=1), timedelta(hours=6), None])
def test_windowed_aggregates_are_the_same_from_rollups(month, name, agg, window):
    q = Query("accelerator", ("utilization_ratio", "power_watts"), T0, T1,
              group_by=("site", "device"), window=window, agg=agg)
    want = month["stores"]["raw"].query(q)
    got = month["stores"][name].query(q)
    assert len(want) == len(got) > 0
    assert (got.time == want.time).all() and (got.device == want.device).all()
    for f in q.fields:
        assert got[f].to_numpy(dtype=float) == pytest.approx(want[f].to_numpy(dtype=float),
                                                             rel=1e-12)


@pytest.mark.parametrize("name", ["mixed", "rolled"])
def test_pue_is_the_same_from_rollups(month, name):
    policy = load_policy()

    def pue(store, bucket=None):
        readings = (meter_readings(store, MONTH) if bucket is None
                    else meter_readings(store, MONTH, bucket))
        got = windowed_pue(readings, MONTH, policy, "all", by=("site",), min_completeness=0.0)
        return got.set_index("site")

    hourly_raw = pue(month["stores"]["raw"], timedelta(hours=1))
    hourly = pue(month["stores"][name], timedelta(hours=1))
    assert hourly.pue.to_numpy() == pytest.approx(hourly_raw.pue.to_numpy(), rel=1e-12)
    assert hourly.completeness.tolist() == hourly_raw.completeness.tolist() == [1.0, 1.0]
    # The default 15-minute readings from raw data, hourly ones where only rollups are left:
    # the month's PUE agrees with the generated energy (one reset minute lost of 43,200).
    default = pue(month["stores"][name])
    for got in (default, pue(month["stores"]["raw"])):
        assert got.pue.to_dict() == pytest.approx(month["pue"], rel=1e-4)


@pytest.mark.parametrize("name", ["mixed", "rolled"])
def test_compliance_is_the_same_from_rollups(month, name):
    policy = load_policy()
    links = month["links"]
    raw = window_compliance(month["stores"]["raw"], MONTH, policy, window=timedelta(hours=1))
    got = window_compliance(month["stores"][name], MONTH, policy, window=timedelta(hours=1))
    cols = ["windows", "windows_with_data", "windows_within_budget", "probes",
            "probes_within_budget"]
    assert got[cols].to_numpy().tolist() == raw[cols].to_numpy().tolist()
    assert got.probes[0] == links.samples.sum()
    assert got.probes_within_budget[0] == links.replies_within_budget.sum()
    # The default five-minute windows widen to the rollups' hour; the probes are the same.
    auto = window_compliance(month["stores"][name], MONTH, policy)
    assert auto.windows[0] == 30 * 24 and auto.probes[0] == links.samples.sum()


@pytest.mark.parametrize("name", ["mixed", "rolled"])
@pytest.mark.parametrize("window", [None, timedelta(days=1)])
def test_percentiles_are_within_the_sketch_error(month, name, window):
    q = Query("link_latency", ("rtt_p95_seconds",), T0, T1,
              group_by=("src_site", "dst_site"), window=window, agg=Aggregate.QUANTILE,
              quantile=0.95)
    want = month["stores"]["raw"].query(q)
    got = month["stores"][name].query(q)
    assert len(got) == len(want) == (2 if window is None else 60)
    err = np.abs(got.rtt_p95_seconds - want.rtt_p95_seconds) / want.rtt_p95_seconds
    assert err.max() <= RELATIVE_ERROR
    # The month's p95 is read from every probe minute, not averaged from the days' p95s.
    if window is None:
        links = month["links"]
        exact = links.groupby(["src_site", "dst_site"]).rtt_p95_seconds.quantile(0.95)
        assert got.rtt_p95_seconds.to_numpy() == pytest.approx(exact.to_numpy(),
                                                               rel=RELATIVE_ERROR)


def test_a_query_before_the_raw_data_must_be_in_whole_hours(month):
    rolled = month["stores"]["rolled"]
    with pytest.raises(StoreError, match="whole hours"):
        rolled.query(Query("accelerator", ("utilization_ratio",), T0, T1,
                           window=timedelta(minutes=15)))
    with pytest.raises(StoreError, match="whole hours"):
        rolled.query(Query("accelerator", ("utilization_ratio",), T0 + MIN, T1))
    with pytest.raises(StoreError, match="no sketch of power_watts"):
        rolled.query(Query("accelerator", ("power_watts",), T0, T1, agg=Aggregate.QUANTILE))


def test_late_data_is_rolled_up_again(tmp_path):
    store = DuckDBStore(tmp_path / "late.duckdb")
    frame = pd.DataFrame({"time": _minutes(T0, T0 + timedelta(hours=2)), "site": "s1",
                          "device": "d", "utilization_ratio": 0.5})
    store.write("accelerator", frame)
    store.refresh_rollups()
    late = pd.DataFrame({"time": [T0 + timedelta(minutes=30, seconds=30)], "site": "s1",
                         "device": "d", "utilization_ratio": 1.0})
    store.write("accelerator", late)
    hourly = Query("accelerator", ("utilization_ratio",), T0, T0 + timedelta(hours=2),
                   window=timedelta(hours=1), agg=Aggregate.SUM)
    assert store.query(hourly).utilization_ratio.tolist() == pytest.approx(
        [60 * 0.5 + 1.0, 60 * 0.5])  # raw data
    assert resolution(store, "accelerator", T0) == timedelta(0)
    store.drop_before(T0 + timedelta(days=1))  # rolls up the late sample before expiry
    assert resolution(store, "accelerator", T0) == timedelta(hours=1)
    got = store.query(hourly)
    assert got.utilization_ratio.tolist() == pytest.approx([60 * 0.5 + 1.0, 60 * 0.5])
    # Raw data written again before the rollups' end takes over from there on.
    store.write("accelerator", frame.iloc[60:])
    assert resolution(store, "accelerator", T0) == timedelta(hours=1)
    assert resolution(store, "accelerator", T0 + timedelta(hours=1)) == timedelta(0)
    assert store.query(hourly).utilization_ratio.tolist() == pytest.approx(
        [60 * 0.5 + 1.0, 60 * 0.5])
    store.close()


def test_history_written_as_rollups_reads_like_raw_data(month, tmp_path):
    """A backfill at rollup resolution (no raw data ever): hourly states computed here with
    pandas from the month's samples give the raw store's utilization and idle hours."""
    acc = month["acc"].assign(hour=month["acc"].time.dt.floor("h"))
    g = acc.groupby(["hour", "hub", "cluster", "site", "device"]).utilization_ratio
    states = g.agg(**{"utilization_ratio:n": "count", "utilization_ratio:sum": "sum",
                      "utilization_ratio:min": "min", "utilization_ratio:max": "max",
                      "utilization_ratio:last": "last"}).reset_index()
    states["utilization_ratio:last_time"] = acc.groupby(
        ["hour", "hub", "cluster", "site", "device"]).time.max().to_numpy()
    store = DuckDBStore(tmp_path / "history.duckdb")
    assert store.write_rollup("accelerator", states.rename(columns={"hour": "time"})) == \
        len(states)
    want = utilization_totals(month["stores"]["raw"], T0, T1, by=("site",))
    got = utilization_totals(store, T0, T1, by=("site",))
    cols = ["samples", "utilization", "idle_accelerator_hours"]
    assert got[cols].to_numpy() == pytest.approx(want[cols].to_numpy(), rel=1e-12)
    daily = Query("accelerator", ("utilization_ratio",), T0, T1, group_by=("device",),
                  window=timedelta(days=1), agg=Aggregate.MAX)
    assert store.query(daily).utilization_ratio.tolist() == pytest.approx(
        month["stores"]["raw"].query(daily).utilization_ratio.tolist())
    with pytest.raises(StoreError, match="not an hour start"):
        store.write_rollup("accelerator", states.rename(columns={"hour": "time"}).assign(
            time=lambda d: d.time + MIN))
    with pytest.raises(StoreError, match="neither a label nor field:state"):
        store.write_rollup("accelerator", states.rename(columns={"hour": "time",
                                                                 "utilization_ratio:n": "x"}))
    store.close()


@pytest.mark.parametrize("grain", [timedelta(hours=1), timedelta(days=1)])
def test_history_written_with_sketches_answers_percentiles(month, tmp_path, grain):
    """A backfill's link rows carry each bucket's samples as ``field:sketch`` (here every
    sample of the hour or day, by its value): a month's percentiles per direction are then
    the raw ``quantile_cont``'s within the sketch's 1%, as from rolled-up raw data; counts
    that do not add up to ``field:n`` are refused, naming the field."""
    links = month["links"].assign(bucket=month["links"].time.dt.floor(
        "h" if grain == timedelta(hours=1) else "D"))
    keys = ["bucket", "src_site", "dst_site", "src_hub", "dst_hub", "tier", "probe"]
    g = links.groupby(keys).rtt_p95_seconds
    rows = g.agg(**{"rtt_p95_seconds:n": "count", "rtt_p95_seconds:sum": "sum"}).reset_index()
    rows["rtt_p95_seconds:sketch"] = [[{"value": v, "n": 1} for v in values]
                                      for _, values in g]
    rows = rows.rename(columns={"bucket": "time"})
    store = DuckDBStore(tmp_path / "sketched.duckdb")
    assert store.write_rollup("link_latency", rows, grain) == len(rows)
    for q in (0.05, 0.5, 0.95, 0.99):
        query = Query("link_latency", ("rtt_p95_seconds",), T0, T1,
                      group_by=("src_site", "dst_site"), agg=Aggregate.QUANTILE, quantile=q)
        want = links.groupby(["src_site", "dst_site"]).rtt_p95_seconds.quantile(q).to_numpy()
        assert store.query(query).rtt_p95_seconds.to_numpy() == pytest.approx(
            want, rel=RELATIVE_ERROR)
    short = rows.iloc[:3].assign(**{"rtt_p95_seconds:n": rows["rtt_p95_seconds:n"][:3] + 1})
    with pytest.raises(StoreError, match="3 rows' rtt_p95_seconds:sketch counts do not add"):
        store.write_rollup("link_latency", short.assign(
            time=short.time + 40 * timedelta(days=1)), grain)
    store.close()


def test_sketch_lists_with_zero_and_repeated_values(tmp_path):
    """Entries of one row that share a bucket add up; a zero is counted as 0 (its own
    bucket, far below every positive one); an entry of count 0 is nothing."""
    store = DuckDBStore(tmp_path / "zero.duckdb")
    sketch = [[{"value": 0.0, "n": 1}, {"value": 0.010, "n": 2}, {"value": 0.01001, "n": 1},
               {"value": 0.5, "n": 0}]]
    store.write_rollup("link_latency", pd.DataFrame({
        "time": [T0], "src_site": ["a"], "dst_site": ["b"], "rtt_p95_seconds:n": [4],
        "rtt_p95_seconds:sum": [0.03001], "rtt_p95_seconds:sketch": sketch}))

    def q(quantile: float) -> float:
        return float(store.query(Query("link_latency", ("rtt_p95_seconds",), T0, T0 + HOUR,
                                       agg=Aggregate.QUANTILE, quantile=quantile)
                                 ).rtt_p95_seconds[0])

    assert q(0.0) == 0.0  # the zero: 1 of 4
    assert q(1.0) == pytest.approx(0.010, rel=RELATIVE_ERROR)  # not 0.5 (count 0)
    assert q(2 / 3) == pytest.approx(0.010, rel=RELATIVE_ERROR)
    store.close()


@pytest.mark.parametrize("far", [2 ** 30, 2 ** 61])  # one int64 key; too wide for one
def test_sketch_entries_add_up_per_row_and_bucket(far):
    """Entries of the same row and bucket add up, in (row, bucket) order, whichever way they
    are summed: a dense grid, or sorted on a key (here, buckets far apart)."""
    from computewatch.store._duckdb import _per_row_buckets
    from computewatch.store._rollups import ZERO_BUCKET

    rows = np.array([0, 2, 0, 2, 0, 2, 2])
    k = np.array([5, 5, far, ZERO_BUCKET, 5, 5, far])
    n = np.array([1, 2, 3, 4, 5, 6, 7])
    got = [a.tolist() for a in _per_row_buckets(rows, k, n, 3)]
    assert got == [[0, 0, 2, 2, 2], [5, far, ZERO_BUCKET, 5, far], [6, 3, 4, 8, 7]]
    dense = [a.tolist() for a in _per_row_buckets(rows, np.array([5, 5, 6, 4, 5, 5, 6]), n, 3)]
    assert dense == [[0, 0, 2, 2, 2], [5, 6, 4, 5, 6], [6, 3, 4, 8, 7]]


def test_the_numpy_bucketing_is_the_sqls():
    """Sketch lists are bucketed in numpy, raw samples in SQL: the same bucket for every
    value, bucket edges, zero and negatives included."""
    import duckdb

    from computewatch.store._rollups import GAMMA, bucket_of, bucket_sql

    rng = np.random.default_rng(7)
    edges = GAMMA ** np.arange(-900, 50, dtype=float)
    values = np.concatenate([rng.lognormal(np.log(0.01), 3.0, 20_000), edges,
                             np.nextafter(edges, 0), np.nextafter(edges, 1), [0.0, -1.0]])
    con = duckdb.connect()
    con.register("v", pd.DataFrame({"x": values}))
    want = con.execute(f"SELECT {bucket_sql('x')} FROM v").fetchnumpy()
    assert bucket_of(values).tolist() == next(iter(want.values())).tolist()


def _daily_states(frame: pd.DataFrame, labels: list[str], fields: list[str]) -> pd.DataFrame:
    """Per series and UTC day, every state of ``fields``, computed here with pandas."""
    frame = frame.sort_values("time").assign(day=frame.time.dt.floor("D"))
    g = frame.groupby(["day", *labels])
    out = {}
    for f in fields:
        out[f"{f}:n"] = g[f].count()
        out[f"{f}:sum"] = g[f].sum()
        out[f"{f}:min"] = g[f].min()
        out[f"{f}:max"] = g[f].max()
        out[f"{f}:last"] = g[f].last()
        out[f"{f}:last_time"] = g.time.max()
    return pd.DataFrame(out).reset_index().rename(columns={"day": "time"})


def test_history_kept_as_daily_rollups_only_answers_in_whole_days(month, tmp_path):
    """A year's backfill writes days, not hours: the month's utilization, idle hours,
    compliance and PUE from daily rows alone are the raw month's."""
    rng = np.random.default_rng(19)
    _accelerators(rng)
    meters, pue_want = _meters(rng)
    store = DuckDBStore(tmp_path / "days.duckdb")
    store.write_rollup("accelerator", _daily_states(
        month["acc"], ["hub", "cluster", "site", "device"], ["utilization_ratio"]),
        grain=timedelta(days=1))
    store.write_rollup("facility_power", _daily_states(
        meters, ["hub", "cluster", "site", "meter", "scope"], ["joules_total"]),
        grain=timedelta(days=1))
    store.write_rollup("link_latency", _daily_states(
        month["links"], ["src_site", "dst_site", "src_hub", "dst_hub", "tier", "probe"],
        ["samples", "replies_within_budget", "budget_seconds"]), grain=timedelta(days=1))
    assert resolution(store, "accelerator", T0) == timedelta(days=1)
    raw = month["stores"]["raw"]
    want = utilization_totals(raw, T0, T1, by=("site",))
    got = utilization_totals(store, T0, T1, by=("site",))
    cols = ["samples", "utilization", "idle_accelerator_hours"]
    assert got[cols].to_numpy() == pytest.approx(want[cols].to_numpy(), rel=1e-12)
    policy = load_policy()
    links = window_compliance(store, MONTH, policy)
    assert links.windows[0] == 30
    assert links.probes[0] == month["links"].samples.sum()
    assert links.probes_within_budget[0] == month["links"].replies_within_budget.sum()
    readings = meter_readings(store, MONTH)
    pue = windowed_pue(readings, MONTH, policy, "all", by=("site",), min_completeness=0.0)
    assert pue.set_index("site").pue.to_dict() == pytest.approx(pue_want, rel=1e-4)
    with pytest.raises(StoreError, match="whole days"):
        store.query(Query("accelerator", ("utilization_ratio",), T0, T1,
                          window=timedelta(hours=1)))
    store.close()


@pytest.mark.slow  # three runs of the real command (a Python start-up each, about 6 s)
def test_the_rollup_command_rolls_up_what_was_written_since_its_last_run(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "cli.duckdb"
    store = DuckDBStore(path)
    store.write("accelerator", pd.DataFrame({
        "time": _minutes(T0, T0 + timedelta(hours=3)), "site": "s1", "device": "d",
        "utilization_ratio": 0.25}))
    store.close()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "computewatch", "rollup", *args],
                              capture_output=True, text=True, timeout=120)

    beat, no_beat = tmp_path / "rollup.heartbeat", tmp_path / "failed.heartbeat"
    before = datetime.now(UTC)
    first = run("--store", str(path))
    again = run("--store", str(path), "--heartbeat", str(beat))
    assert first.returncode == 0 and f"rolled up 3 hours of {path}" in first.stdout
    assert again.returncode == 0 and "rolled up 0 hours" in again.stdout
    assert before <= datetime.fromisoformat(beat.read_text().strip()) <= datetime.now(UTC)
    vm = run("--store", "victoriametrics://127.0.0.1:9", "--heartbeat", str(no_beat))
    assert vm.returncode == 2 and "deploy/rollups/computewatch-rollups.yml" in vm.stderr
    assert not no_beat.exists()
    store = DuckDBStore(path)
    store.drop_before(T0 + timedelta(days=1))
    got = store.query(Query("accelerator", ("utilization_ratio",), T0,
                            T0 + timedelta(hours=3), agg=Aggregate.SUM))
    assert got.utilization_ratio[0] == pytest.approx(180 * 0.25)
    store.close()


@pytest.mark.parametrize("name", ["mixed", "rolled"])
def test_the_national_summary_reads_rollups_unaware(month, name):
    """The summary asks its usual queries; the store answers from rollups where raw data
    is gone, and the month's national row is the raw month's."""
    from computewatch.summary import national_summary
    from computewatch.topology import load_topology

    topology, policy = load_topology(), load_policy()
    want = national_summary(month["stores"]["raw"], topology, policy, T0, T1)
    got = national_summary(month["stores"][name], topology, policy, T0, T1)
    w, g = (s.rows.set_index("level").loc["national"] for s in (want, got))
    assert g.accelerators == w.accelerators == 6
    assert g.mean_utilization == pytest.approx(month["acc"].utilization_ratio.mean(), rel=1e-12)
    assert g.idle_accelerator_hours == pytest.approx(w.idle_accelerator_hours, rel=1e-12)
    assert g.pue == pytest.approx(w.pue, rel=1e-4)  # hourly readings against 15-minute ones
    # Each direction's p95 within the sketch's error (so two close ones may swap places).
    keys = ["src_site", "dst_site"]
    lw, lg = (s.links.sort_values(keys).rtt_p95_seconds.to_numpy() for s in (want, got))
    assert lg == pytest.approx(lw, rel=RELATIVE_ERROR)
    assert g.worst_link_p95_s == pytest.approx(w.worst_link_p95_s, rel=RELATIVE_ERROR)


def _rolled_copy(acc: pd.DataFrame, path) -> DuckDBStore:
    """The month's accelerator samples, rolled up and then expired: rollups only."""
    store = DuckDBStore(path)
    store.write("accelerator", acc)
    store.refresh_rollups()
    store.drop_before(T1 + timedelta(days=1))
    return store


def test_a_range_is_merged_from_the_kept_ranges_that_partition_it(month, tmp_path,
                                                                 monkeypatch):
    """A year report asks each quarter, then the year: the year's state rows are merged from
    the quarters' (no second scan), and every aggregate is still the samples' own."""
    acc = month["acc"]
    store = _rolled_copy(acc, tmp_path / "parts.duckdb")
    scans = []
    original = DuckDBStore._scan_states
    monkeypatch.setattr(DuckDBStore, "_scan_states",
                        lambda self, *a: scans.append(a[0].start) or original(self, *a))
    cuts = [T0, T0 + timedelta(days=9), T0 + timedelta(days=23), T1]
    fields = ("utilization_ratio", "power_watts")
    for lo, hi in pairwise(cuts):  # one window each, as quarters are
        store.query(Query("accelerator", fields, lo, hi, group_by=("site",), window=hi - lo,
                          agg=Aggregate.MEAN))
    assert len(scans) == 3
    by_device = acc.sort_values("time").groupby("device")
    want = {Aggregate.MEAN: by_device.utilization_ratio.mean(),
            Aggregate.COUNT: by_device.utilization_ratio.count(),
            Aggregate.SUM: by_device.utilization_ratio.sum()}
    for agg, expected in want.items():
        got = store.query(Query("accelerator", fields, T0, T1, group_by=("device",),
                                agg=agg)).set_index("device").utilization_ratio
        assert got.to_numpy(dtype=float) == pytest.approx(
            expected.loc[got.index].to_numpy(dtype=float), rel=1e-12)
        assert len(got) == 6
    assert len(scans) == 3  # MEAN, COUNT and SUM of the month: the three parts merged
    # States a part does not keep (MAX, LAST) need a scan of their own, and are exact too.
    got = store.query(Query("accelerator", fields, T0, T1, group_by=("device",),
                            agg=Aggregate.MAX)).set_index("device").power_watts
    assert got.to_numpy() == pytest.approx(by_device.power_watts.max().loc[got.index].to_numpy())
    got = store.query(Query("accelerator", fields, T0, T1, group_by=("device",),
                            agg=Aggregate.LAST)).set_index("device").utilization_ratio
    assert got.to_numpy() == pytest.approx(
        by_device.utilization_ratio.last().loc[got.index].to_numpy())
    assert len(scans) == 5
    store.close()


def test_label_sets_of_one_window_are_grouped_together_and_kept(month, tmp_path,
                                                                monkeypatch):
    """A month report asks four label sets of the month's one window from three places:
    told first (`prefetch`), the store groups them in one statement (one set asked in two
    label orders apart), and each query then reads what was kept: the samples' own numbers,
    in the order of its labels, whatever order they come in ((hub, site, device) and
    (device, hub) alike)."""
    acc = month["acc"]
    store = _rolled_copy(acc, tmp_path / "sets.duckdb")
    calls = []
    for name in ("_grouping_sets", "_group_states"):
        original = getattr(DuckDBStore, name)
        monkeypatch.setattr(DuckDBStore, name, staticmethod(
            lambda *a, _o=original, _n=name: calls.append(_n) or _o(*a)))

    def ask(by: tuple[str, ...], agg: Aggregate, window: timedelta | None = T1 - T0) -> Query:
        return Query("accelerator", ("utilization_ratio",), T0, T1, group_by=by, agg=agg,
                     window=window)

    asked = [ask(("site",), Aggregate.SUM), ask(("site", "device"), Aggregate.MEAN),
             ask(("device", "site"), Aggregate.COUNT, None), ask(("hub",), Aggregate.COUNT),
             ask(("site",), Aggregate.COUNT, None), ask(("device", "hub"), Aggregate.SUM),
             ask(("hub", "site", "device"), Aggregate.MEAN)]
    prefetch(store, asked)
    assert sorted(calls) == ["_group_states", "_grouping_sets"]
    calls.clear()
    got = [store.query(q) for q in asked]
    assert calls == []  # every answer was kept
    u = acc.utilization_ratio
    want = [u.groupby(acc.site).sum(), u.groupby([acc.site, acc.device]).mean(),
            u.groupby([acc.device, acc.site]).count(), u.groupby(acc.hub).count(),
            u.groupby(acc.site).count(), u.groupby([acc.device, acc.hub]).sum(),
            u.groupby([acc.hub, acc.site, acc.device]).mean()]
    for q, frame, expected in zip(asked, got, want, strict=True):
        assert (frame.time == pd.Timestamp(T0)).all()
        labels = [tuple(r) for r in frame[list(q.group_by)].itertuples(index=False)]
        assert labels == sorted(labels)  # in label order, as each query alone answers
        keys = labels if len(q.group_by) > 1 else [k for (k,) in labels]
        assert frame.utilization_ratio.to_numpy(dtype=float) == pytest.approx(
            expected.loc[keys].to_numpy(dtype=float), rel=1e-12)
    store.close()


def test_kept_states_are_forgotten_when_the_data_changes(tmp_path):
    """A query answered from kept state rows never returns what the store held before a
    write: late raw data and rollup rows written into hours already read both count."""
    store = DuckDBStore(tmp_path / "late.duckdb")
    frame = pd.DataFrame({"time": _minutes(T0, T0 + timedelta(hours=2)), "site": "s1",
                          "device": "d", "utilization_ratio": 0.5})
    store.write("accelerator", frame)
    store.refresh_rollups()
    store.drop_before(T0 + timedelta(days=1))
    total = Query("accelerator", ("utilization_ratio",), T0, T0 + timedelta(hours=3),
                  group_by=("site",), agg=Aggregate.SUM)
    assert store.query(total).utilization_ratio.tolist() == pytest.approx([120 * 0.5])
    assert store.query(total).utilization_ratio.tolist() == pytest.approx([120 * 0.5])
    late = pd.DataFrame({"time": [T0 + timedelta(hours=2, seconds=30)], "site": "s1",
                         "device": "d", "utilization_ratio": 1.0})
    store.write("accelerator", late)
    assert store.query(total).utilization_ratio.tolist() == pytest.approx([120 * 0.5 + 1.0])
    more = pd.DataFrame({"time": [T0 + timedelta(hours=1)], "site": "s1", "device": "d",
                         "utilization_ratio:n": [1], "utilization_ratio:sum": [0.25]})
    store.write_rollup("accelerator", more)
    assert store.query(total).utilization_ratio.tolist() == pytest.approx([120 * 0.5 + 1.25])
    store.close()


def test_label_sets_summed_apart_match_sql_with_nulls_and_any_labels(tmp_path):
    """Sums, counts and means of one window's state rows per label set are grouped by numpy
    (`_summed_sets`); minima go through SQL. Both against one plain SQL statement per set
    written here (GROUP BY, ORDER BY): the same rows in the same order (strings in byte
    order: empty, capitals, accents, Chinese; NULL labels last), NULL where a group holds
    no value (a state row with NULL states, a group of n = 0: no mean), numbers equal up to
    the order of the additions."""
    import duckdb
    import pyarrow as pa

    from computewatch import catalog

    rng = np.random.default_rng(19)
    names = np.array(["", "a", "B", "é", "中心", "a-2", "Z", None], dtype=object)
    n = 3_000
    ids = np.arange(1, n + 1, dtype=np.uint64)
    series = pa.table({"series_id": ids, "site": rng.choice(names, n),
                       "device": rng.choice(names, n), "pod": rng.choice(names[:3], n)})
    count = rng.integers(0, 4, n)  # some series sent nothing: n = 0, sum NULL
    count[:20] = 0  # and all of site "silent"'s
    series = series.set_column(1, "site", pa.array(["silent"] * 20 + series.column(
        "site").to_pylist()[20:], pa.string()))
    total = np.where(count > 0, rng.random(n) * count, np.nan)
    states = pa.table({
        "time": pa.array(np.full(n, np.datetime64("2026-06-01T00:00:00", "us"))),
        "series_id": ids,
        "utilization_ratio:n": pa.array(count.astype(np.int64)),
        "utilization_ratio:sum": pa.array(total, mask=np.isnan(total)),
        "utilization_ratio:min": pa.array(rng.random(n))})
    con = duckdb.connect()
    con.register("series_src", series)
    con.execute("CREATE TABLE series_accelerator AS SELECT * FROM series_src")
    con.register("_rollup_states", states)
    meas = catalog.measurement("accelerator")
    sets = [("site",), ("device", "site"), ("pod", "device", "site")]  # as `_grouped_once`
    # asks: no two sets of the same labels
    for columns in (["sum:utilization_ratio", "count:utilization_ratio",
                     "mean:utilization_ratio"], ["min:utilization_ratio"]):
        got = DuckDBStore._grouping_sets(con, meas, sets, columns)
        aggs = {"sum": 'sum(t."utilization_ratio:sum")',
                "count": 'CAST(coalesce(sum(t."utilization_ratio:n"), 0) AS BIGINT)',
                "mean": 'sum(t."utilization_ratio:sum") / nullif(sum(t."utilization_ratio:n"), 0)',
                "min": 'min(t."utilization_ratio:min")'}
        for one in sets:
            labels = ", ".join(f"s.{g}" for g in one)
            want = con.sql(
                f"SELECT t.time AS time, {labels}, "
                + ", ".join(f'{aggs[c.split(":")[0]]} AS "{c}"' for c in columns)
                + " FROM _rollup_states t JOIN series_accelerator s USING (series_id) "
                f"GROUP BY t.time, {labels} ORDER BY t.time, {labels}").to_arrow_table()
            mine = got[one]
            assert mine.column_names == want.column_names
            assert mine.select(["time", *one]).equals(want.select(["time", *one])), one
            for c in columns:
                a, b = mine.column(c), want.column(c)
                assert a.type == b.type, (one, c)
                assert a.is_null().to_pylist() == b.is_null().to_pylist(), (one, c)
                ok = b.is_valid().to_numpy(zero_copy_only=False)
                assert a.to_numpy(zero_copy_only=False)[ok].astype(float) == pytest.approx(
                    b.to_numpy(zero_copy_only=False)[ok].astype(float), rel=1e-12)
    assert got[("site",)].num_rows == 9  # every name, "silent" and NULL once
