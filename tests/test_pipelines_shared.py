"""The runner's shared scan: the period's utilization read once per device and hour answers
the pipelines' sums, counts and means exactly as the store does, and what it cannot answer
exactly goes to the store unchanged."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from computewatch.findings import Period
from computewatch.pipelines import PIPELINES, run_pipelines
from computewatch.pipelines._shared import SharedScan
from computewatch.policy import load_policy
from computewatch.sim import build_fleet, simulate
from computewatch.store import Aggregate, DuckDBStore, Query
from computewatch.topology import load_topology

END = datetime(2026, 10, 2, tzinfo=UTC)
H = timedelta(hours=1)
PERIOD = Period(END - 5 * H, END)


class CountingStore:
    """The store, with every query it answers noted (those it answers per series too);
    ``per_series`` False hides the DuckDB store's per-series reads (`series_ids`,
    `series_windows`), as any other store lacks them."""

    def __init__(self, store: DuckDBStore, per_series: bool = True) -> None:
        self._store, self.url, self.queries = store, store.url, []
        self.per_series = per_series

    def __getattr__(self, name: str):
        if not self.per_series and name in ("series_ids", "series_windows"):
            raise AttributeError(name)
        return getattr(self._store, name)

    def series_windows(self, queries: list[Query]):
        if not self.per_series:
            raise AttributeError("series_windows")
        self.queries.extend(queries)
        return self._store.series_windows(queries)

    def query(self, q: Query) -> pd.DataFrame:
        self.queries.append(q)
        return self._store.query(q)

    def query_many(self, queries: list[Query]) -> list[pd.DataFrame]:
        self.queries.extend(queries)
        return self._store.query_many(queries)


@pytest.fixture(scope="module")
def fleet_store():
    fleet = build_fleet(load_topology(), sites=12, accelerators=400, seed=5)
    store = DuckDBStore(":memory:")
    for measurement, frame in simulate(fleet, hours=6, end=END).chunks():
        store.write(measurement, frame)
    yield fleet, store
    store.close()


def _queries(sites: list[str]) -> list[Query]:
    out = []
    for agg in (Aggregate.SUM, Aggregate.COUNT, Aggregate.MEAN):
        for group in ((), ("site",), ("site", "device"), ("site", "ecosystem", "model"),
                      ("hub",)):
            for window in (None, 2 * H):
                for start, end in ((PERIOD.start, PERIOD.end), (PERIOD.start + H, PERIOD.end),
                                   (PERIOD.start + H, PERIOD.start + 3 * H)):
                    for where in ({}, {"site": sites}):
                        out.append(Query("accelerator", ("utilization_ratio",), start, end,
                                         where=where, group_by=group, window=window, agg=agg))
    return out


@pytest.mark.parametrize("per_series", [True, False], ids=["per-series", "grouped"])
def test_answers_as_the_store_does(fleet_store, per_series):
    fleet, store = fleet_store
    counting = CountingStore(store, per_series)
    shared = SharedScan(counting, PERIOD)
    queries = _queries(sorted(s.id for s in fleet.topology.sites[:3]))
    for q in queries:
        pd.testing.assert_frame_equal(shared.query(q).reset_index(drop=True),
                                      store.query(q).reset_index(drop=True),
                                      check_dtype=False, rtol=1e-12, atol=0)
    # one SUM, one COUNT and one MIN by hour, whatever was asked after: per series where the
    # store reads so, else by device (and the labels that change on one)
    by = () if per_series else ("device",)
    assert [(q.agg, q.group_by[:1], q.window) for q in counting.queries] == [
        (Aggregate.SUM, by, H), (Aggregate.COUNT, by, H), (Aggregate.MIN, by, H)]


def test_per_series_and_grouped_reads_give_the_same_sums_to_the_last_bit(fleet_store):
    """The per-series scan adds its rows in the order of the store's grouped answer (hour,
    device, series), so a sum comes out the same to the last bit either way."""
    fleet, store = fleet_store
    fast = SharedScan(CountingStore(store, per_series=True), PERIOD)
    grouped = SharedScan(CountingStore(store, per_series=False), PERIOD)
    sites = sorted(s.id for s in fleet.topology.sites[:3])
    for q in _queries(sites):
        pd.testing.assert_frame_equal(fast.query(q), grouped.query(q), check_exact=True)


def test_the_store_per_series_read_by_hand(fleet_store):
    """`series_windows`: one row per series and hour with its samples' sum, count and
    minimum, checked against the raw samples in pandas; `series_ids` names the label sets
    as `series` does."""
    _, store = fleet_store
    labels, ids = store.series_ids("accelerator")
    pd.testing.assert_frame_equal(labels, store.series("accelerator"))
    q = dict(start=PERIOD.start, end=PERIOD.end, window=H)
    got = store.series_windows([
        Query("accelerator", ("utilization_ratio",), agg=Aggregate.SUM, **q),
        Query("accelerator", ("utilization_ratio",), agg=Aggregate.COUNT, **q),
        Query("accelerator", ("health",), agg=Aggregate.MIN, **q)])
    raw = store._con.execute(
        "SELECT time, series_id, utilization_ratio, health FROM samples_accelerator").df()
    t = pd.to_datetime(raw.time).dt.tz_localize(UTC)
    raw = raw[(t >= PERIOD.start) & (t < PERIOD.end)]
    raw["time"] = pd.to_datetime(raw.time).dt.floor("h").astype("datetime64[ns]")
    by = raw.groupby(["series_id", "time"])
    expected = pd.DataFrame({"s": by.utilization_ratio.sum(min_count=1),  # all NULL: NULL
                             "n": by.utilization_ratio.count(), "m": by.health.min()})
    rows = pd.DataFrame({"series_id": got["series_id"],
                         "time": pd.to_datetime(got["time"], unit="ns"),
                         "s": got["0:utilization_ratio"], "n": got["1:utilization_ratio"],
                         "m": got["2:health"]}).set_index(["series_id", "time"]).sort_index()
    pd.testing.assert_frame_equal(rows, expected, check_dtype=False, rtol=1e-12)
    assert set(rows.index.get_level_values(0)) <= set(ids) and len(rows) > len(ids)


def test_a_sum_read_by_hand(fleet_store):
    """The national sum over the period's second hour, from the raw samples in pandas."""
    _, store = fleet_store
    raw = store._con.execute(
        "SELECT time, utilization_ratio FROM samples_accelerator").df()
    t = pd.to_datetime(raw.time).dt.tz_localize(UTC)
    inside = (t >= PERIOD.start + H) & (t < PERIOD.start + 2 * H)
    expected = float(raw.utilization_ratio[inside].sum())
    got = SharedScan(store, PERIOD).query(Query(
        "accelerator", ("utilization_ratio",), PERIOD.start + H, PERIOD.start + 2 * H,
        agg=Aggregate.SUM))
    assert got.utilization_ratio.iloc[0] == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(expected) and expected > 0


def test_what_it_cannot_answer_goes_to_the_store(fleet_store):
    _, store = fleet_store
    counting = CountingStore(store)
    shared = SharedScan(counting, PERIOD)
    others = [
        # a quantile, another field, a range before the period, a window off the hour grid,
        # a start off the grid
        Query("accelerator", ("utilization_ratio",), PERIOD.start, PERIOD.end,
              agg=Aggregate.QUANTILE, quantile=0.9),
        Query("accelerator", ("temperature_celsius",), PERIOD.start, PERIOD.end,
              agg=Aggregate.SUM),
        Query("accelerator", ("health",), PERIOD.start, PERIOD.end, agg=Aggregate.MEAN),
        Query("accelerator", ("utilization_ratio",), PERIOD.start - H, PERIOD.end,
              agg=Aggregate.SUM),
        Query("accelerator", ("utilization_ratio",), PERIOD.start, PERIOD.end,
              window=timedelta(minutes=30), agg=Aggregate.SUM),
        Query("accelerator", ("utilization_ratio",), PERIOD.start + timedelta(minutes=5),
              PERIOD.end, agg=Aggregate.SUM),
    ]
    for q in others:
        pd.testing.assert_frame_equal(shared.query(q), store.query(q))
    assert counting.queries == others


def test_power_health_and_a_baseline_before_an_empty_past_as_the_store_gives_them(fleet_store):
    """Power's sums, counts and means and health's minima come from the scan too; and with
    nothing stored before the period (here: the whole 6 h stored is the period), a query
    starting a week earlier (anomaly's baseline) reads what the scan holds."""
    fleet, store = fleet_store
    whole = Period(END - 6 * H, END)
    counting = CountingStore(store)
    shared = SharedScan(counting, whole)
    sites = sorted(s.id for s in fleet.topology.sites[:3])
    week = whole.start - timedelta(days=7)
    asked = [
        Query("accelerator", ("utilization_ratio", "power_watts"), week, whole.end,
              group_by=("site",), window=H, agg=Aggregate.MEAN),
        Query("accelerator", ("utilization_ratio",), week, whole.end,
              group_by=("site", "device"), agg=Aggregate.COUNT),
        Query("accelerator", ("health",), whole.start, whole.end,
              group_by=("hub", "cluster", "site", "node", "device"), agg=Aggregate.MIN),
        Query("accelerator", ("power_watts",), whole.start + H, whole.end, where={"site": sites},
              group_by=("site",), window=2 * H, agg=Aggregate.SUM),
    ]
    for q in asked:
        pd.testing.assert_frame_equal(shared.query(q).reset_index(drop=True),
                                      store.query(q).reset_index(drop=True),
                                      check_dtype=False, rtol=1e-12, atol=0)
    assert [q.agg for q in counting.queries] == [Aggregate.SUM, Aggregate.COUNT, Aggregate.MIN]


def test_series_come_from_the_index_it_read(fleet_store):
    fleet, store = fleet_store
    shared = SharedScan(store, PERIOD)
    sites = sorted(s.id for s in fleet.topology.sites[:2])
    before = shared.series("accelerator", {"site": sites})  # nothing read yet: the store's
    shared.query(Query("accelerator", ("utilization_ratio",), PERIOD.start, PERIOD.end,
                       agg=Aggregate.SUM))
    for where in (None, {"site": sites}, {"site": sites, "ecosystem": "cuda"}, {"site": []}):
        pd.testing.assert_frame_equal(shared.series("accelerator", where),
                                      store.series("accelerator", where), check_dtype=False)
    pd.testing.assert_frame_equal(before, store.series("accelerator", {"site": sites}))
    pd.testing.assert_frame_equal(shared.series("facility_power"),
                                  store.series("facility_power"))


@pytest.mark.parametrize("per_series", [True, False], ids=["per-series", "grouped"])
def test_a_device_with_two_series(per_series):
    """A card moved to another node halfway (two series of one device): each series is a
    row of the scan, and sums by node and device come out as the store's. By hand: d1 sends
    0.2 every minute on n1 in the first hour and 0.6 on n2 in the second, d2 0.5 on n1."""
    store = DuckDBStore(":memory:")
    minutes = pd.date_range(PERIOD.start, periods=120, freq="min")
    first = minutes < PERIOD.start + H
    frame = pd.DataFrame({
        "time": [*minutes, *minutes], "device": ["d1"] * 120 + ["d2"] * 120,
        "node": [*np.where(first, "n1", "n2"), *["n1"] * 120], "site": "s1",
        "utilization_ratio": [*np.where(first, 0.2, 0.6), *[0.5] * 120]})
    store.write("accelerator", frame)
    counting = CountingStore(store, per_series)
    shared = SharedScan(counting, PERIOD)
    q = Query("accelerator", ("utilization_ratio",), PERIOD.start, PERIOD.end,
              group_by=("node", "device"), agg=Aggregate.SUM)
    got = shared.query(q)
    assert got[["node", "device"]].values.tolist() == [["n1", "d1"], ["n1", "d2"], ["n2", "d1"]]
    assert got.utilization_ratio.tolist() == pytest.approx([60 * 0.2, 120 * 0.5, 60 * 0.6])
    pd.testing.assert_frame_equal(got, store.query(q), check_dtype=False)
    assert counting.queries[0].group_by == (() if per_series else ("device", "node"))


def test_a_scan_too_large_is_not_made(fleet_store):
    """Above its cap (device-hours) every query goes to the store."""
    _, store = fleet_store
    counting = CountingStore(store)
    q = Query("accelerator", ("utilization_ratio",), PERIOD.start, PERIOD.end,
              group_by=("site",), agg=Aggregate.SUM)
    got = SharedScan(counting, PERIOD, max_rows=100).query(q)
    pd.testing.assert_frame_equal(got, store.query(q))
    assert counting.queries == [q]


def test_the_runner_finds_the_same_with_and_without_it(fleet_store):
    fleet, store = fleet_store
    policy = load_policy(topology=fleet.topology)
    shared = run_pipelines(store, PERIOD, policy, fleet.topology, write=False)

    def reading_the_store(run):  # each pipeline on the store itself, as before the scan
        return lambda _shared, period, pol, topo: run(store, period, pol, topo)

    alone = run_pipelines(store, PERIOD, policy, fleet.topology, write=False,
                          registry={n: reading_the_store(r) for n, r in PIPELINES.items()})

    def key(a):
        return sorted((f.rule, f.subject, f.start, f.end, round(f.observed, 9)) for f in a.findings)

    assert key(shared) == key(alone) and len(shared.findings) > 0


def test_over_rollups_the_store_is_asked_by_labels():
    """A period the store keeps as hourly rollups only: `series_windows` declines (None) and
    the scan reads by labels, with the answers the store gives. By hand: d1 sends 0.2 every
    minute for two hours, d2 0.5."""
    store = DuckDBStore(":memory:")
    minutes = pd.date_range(PERIOD.start, periods=120, freq="min")
    store.write("accelerator", pd.DataFrame({
        "time": [*minutes, *minutes], "device": ["d1"] * 120 + ["d2"] * 120, "site": "s1",
        "utilization_ratio": [0.2] * 120 + [0.5] * 120}))
    store.refresh_rollups()
    store.drop_before(END + timedelta(days=1))
    span = Period(PERIOD.start, PERIOD.start + 2 * H)
    sums = [Query("accelerator", ("utilization_ratio",), span.start, span.end, window=H,
                  agg=Aggregate.SUM)]
    assert store.series_windows(sums) is None
    counting = CountingStore(store)
    q = Query("accelerator", ("utilization_ratio",), span.start, span.end,
              group_by=("device",), agg=Aggregate.SUM)
    got = SharedScan(counting, span).query(q)
    assert got.utilization_ratio.tolist() == pytest.approx([120 * 0.2, 120 * 0.5])
    pd.testing.assert_frame_equal(got, store.query(q), check_dtype=False)
    # the SUM, COUNT and MIN asked per series (declined), then by device
    assert [q.group_by for q in counting.queries] == [()] * 3 + [("device",)] * 3


def test_per_series_reads_take_alike_queries_only(fleet_store):
    _, store = fleet_store
    q = Query("accelerator", ("utilization_ratio",), PERIOD.start, PERIOD.end, window=H,
              agg=Aggregate.SUM)
    for other in (replace(q, window=2 * H), replace(q, agg=Aggregate.QUANTILE)):
        with pytest.raises(ValueError, match="differ only in their fields"):
            store.series_windows([q, other])
