"""The same simulated fleet in the embedded store and in a real VictoriaMetrics: the store
queries the pipelines make agree, and all five pipelines reach the same findings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from computewatch.findings import Period
from computewatch.pipelines import PIPELINES, run_pipelines
from computewatch.policy import load_policy
from computewatch.sim import build_fleet, simulate
from computewatch.store import Aggregate, DuckDBStore, Query, open_store
from computewatch.topology import load_topology
from tests.servers import start_victoriametrics
from tests.store_compare import assert_same

pytestmark = pytest.mark.slow  # a simulated fleet through DuckDB and VictoriaMetrics

END = datetime(2026, 10, 2, tzinfo=UTC)
HOURS = 12


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    fleet = build_fleet(load_topology(), sites=6, accelerators=200, seed=3)
    history = simulate(fleet, hours=HOURS, end=END)
    duck = DuckDBStore(":memory:")
    with start_victoriametrics(tmp_path_factory.mktemp("vm-cross")) as server:
        vm = open_store(f"victoriametrics://127.0.0.1:{server.port}")
        for measurement, frame in history.chunks():
            assert vm.write(measurement, frame).rows == duck.write(measurement, frame).rows
        yield fleet, history, duck, vm
        vm.close()
    duck.close()


def _queries(history, sites: list[str]) -> list[Query]:
    s, e = history.start, history.end
    odd = s + timedelta(minutes=7, seconds=13)  # windows off the simulator's minute grid
    return [
        Query("accelerator", ("utilization_ratio", "power_watts"), s, e, group_by=("site",),
              window=timedelta(hours=1)),
        Query("accelerator", ("utilization_ratio",), odd, e - timedelta(seconds=29),
              group_by=("hub", "cluster"), window=timedelta(minutes=50), agg=Aggregate.SUM),
        Query("accelerator", ("utilization_ratio",), s, e, group_by=("site", "device"),
              agg=Aggregate.COUNT),
        Query("accelerator", ("health",), s, e, where={"site": sites[:2]},
              group_by=("device",), window=timedelta(minutes=15), agg=Aggregate.MIN),
        Query("accelerator", ("temperature_celsius",), odd, e, where={"ecosystem": "cann"},
              group_by=("model",), window=timedelta(hours=2), agg=Aggregate.MAX),
        Query("accelerator", ("memory_used_bytes",), s, e, group_by=("vendor", "model"),
              window=timedelta(hours=3), agg=Aggregate.MEAN),
        Query("facility_power", ("joules_total",), s, e,
              group_by=("hub", "cluster", "site", "meter", "scope"),
              window=timedelta(minutes=15), agg=Aggregate.LAST),
        # computewatch.pue.meter_readings: each counter's highest reading and reading count
        # per bucket (resets and silences on the raw readings), power-only meters per minute
        Query("facility_power", ("joules_total",), s - timedelta(hours=1), e,
              where={"scope": ["facility", "it"]},
              group_by=("hub", "cluster", "site", "meter", "scope"),
              window=timedelta(minutes=15), agg=Aggregate.MAX),
        Query("facility_power", ("joules_total",), s, e + timedelta(hours=1),
              where={"scope": ["facility", "it"]},
              group_by=("hub", "cluster", "site", "meter", "scope"),
              window=timedelta(minutes=15), agg=Aggregate.COUNT),
        Query("facility_power", ("watts",), s, e, where={"meter": [f"{sites[0]}-it"]},
              group_by=("hub", "cluster", "site", "meter", "scope"),
              window=timedelta(minutes=1), agg=Aggregate.MEAN),
        Query("facility_power", ("watts",), odd, e, group_by=("site", "scope"),
              window=timedelta(minutes=45), agg=Aggregate.MEAN),
        Query("link_latency", ("rtt_p95_seconds",), s, e,
              group_by=("src_site", "dst_site", "src_hub", "dst_hub", "tier"),
              agg=Aggregate.QUANTILE, quantile=0.95),
        Query("link_latency", ("rtt_p50_seconds", "loss_ratio"), odd, e,
              where={"src_site": sites}, group_by=("src_site", "dst_site"),
              window=timedelta(hours=1), agg=Aggregate.QUANTILE, quantile=0.5),
        Query("link_latency", ("rtt_min_seconds",), s, e, group_by=("tier",),
              window=timedelta(hours=4), agg=Aggregate.MIN),
    ]


def test_the_pipelines_queries_agree(world):
    fleet, history, duck, vm = world
    sites = sorted(s.id for s in fleet.topology.sites)
    for q in _queries(history, sites):
        want = duck.query(q)
        assert len(want) > 0, q
        assert_same(vm.query(q), want, ["time", *q.group_by], list(q.fields), rtol=1e-9)


@pytest.mark.parametrize("measurement", ["accelerator", "facility_power", "link_latency"])
def test_series_and_time_bounds_agree(world, measurement):
    _, _, duck, vm = world
    want = duck.series(measurement)
    assert len(want) > 0
    assert_same(vm.series(measurement), want, list(want.columns), [])
    assert vm.time_bounds(measurement) == duck.time_bounds(measurement)


def test_all_five_pipelines_find_the_same_on_both_stores(world):
    fleet, history, duck, vm = world
    policy, period = load_policy(), Period(history.start, history.end)
    found = {}
    for name, store in (("duckdb", duck), ("victoriametrics", vm)):
        f = run_pipelines(store, period, policy, fleet.topology).frame()
        keys = ["pipeline", "rule", "subject_type", "subject", "start", "end"]
        found[name] = f.sort_values(keys, ignore_index=True)
    want, got = found["duckdb"], found["victoriametrics"]
    assert set(want.pipeline) == set(PIPELINES)
    assert_same(got[want.columns], want,
                ["pipeline", "rule", "subject_type", "subject", "start", "end", "unit",
                 "severity", "hub", "cluster", "site"],
                ["observed", "threshold", "completeness"], rtol=1e-9)
    # and the findings written back read the same from both stores
    later = END.replace(year=END.year + 1)
    q = Query("finding", ("severity", "observed"), history.start, later, group_by=("pipeline",
              "rule"), agg=Aggregate.COUNT)
    written = duck.query(q)
    assert written.severity.sum() == len(want)
    assert_same(vm.query(q), written, ["time", "pipeline", "rule"], ["severity", "observed"],
                rtol=0)
    assert np.isfinite(got.observed).all()
