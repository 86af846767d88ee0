"""InfluxDB rollups (issue 19): `InfluxDBStore.refresh_rollups` writes hourly and daily state
rows as line protocol and `query` reads them back beyond the raw data, with the answers the
raw data gives.

No InfluxDB 2 server can run here. The state computation is checked on a hand-built hour;
the line protocol written for it by hand; the round trip through `tests.influx_wire`, a
local stand-in for InfluxDB 2's write, query and delete API (a model of Flux's documented
semantics for the query shapes the store sends, not a live InfluxDB), on test_rollups'
hand-built month, whose raw answers come from the embedded store.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import tests.test_rollups as by_duckdb
from computewatch.cli import app
from computewatch.policy import load_policy
from computewatch.pue import meter_readings, windowed_pue
from computewatch.store import Aggregate, DuckDBStore, Query, StoreError, resolution
from computewatch.store import _influxrollups as ir
from computewatch.store._influxdb import InfluxDBStore
from computewatch.store._rollups import GAMMA, ZERO_BUCKET
from computewatch.store._staterows import hour_sketches, hour_states, sketch_quantile
from computewatch.utilization import utilization_totals
from tests.influx_wire import fake_influx2
from tests.test_rollups import MONTH, T0, T1, _accelerators, _links, _meters

H = datetime(2026, 11, 3, 10, tzinfo=UTC)
M = timedelta(minutes=1)
HOUR = timedelta(hours=1)
LATER = H + timedelta(days=2)  # "now" for the hand-built hour's refresh: both hours closed


def _url(srv, extra: str = "") -> str:
    return f"influxdb://127.0.0.1:{srv.server_port}?org=ops&bucket=raw{extra}"


# -- (a) the states of a hand-built hour -------------------------------------------------------

def test_states_of_a_hand_built_hour():
    t = [H, H + 20 * M, H + 40 * M, H + 50 * M, H + 60 * M]
    samples = pd.DataFrame({
        "time": pd.to_datetime(t[:4] * 2 + t[:4] + [t[4]], utc=True),
        "meter": ["m1"] * 4 + ["m2"] * 4 + ["m3"] * 5,
        "field": ["joules_total"] * 4 + ["watts"] * 4 + ["rtt_p95_seconds"] * 5,
        # a counter reset after 150; a NULL reading; latencies for the sketch
        "value": [100.0, 150.0, 10.0, 40.0, 5.0, None, 7.0, 3.0,
                  0.005, 0.0101, 0.0, 0.02, 0.5],
    })
    got = hour_states(samples, ["meter"]).set_index(["meter", "field"])
    assert (got.loc[("m1", "joules_total"), ["n", "sum", "min", "max", "last"]].tolist()
            == [4, 300.0, 10.0, 150.0, 40.0])  # last: the reading after the reset
    assert got.loc[("m1", "joules_total"), "last_time"] == pd.Timestamp(H + 50 * M)
    assert (got.loc[("m2", "watts"), ["n", "sum", "min", "max", "last"]].tolist()
            == [3, 15.0, 3.0, 7.0, 3.0])  # the NULL is no sample
    assert got.loc[("m3", "rtt_p95_seconds"), "n"].tolist() == [4, 1]  # two hours
    assert set(got.time) == {pd.Timestamp(H), pd.Timestamp(H + HOUR)}
    # ln(x) / ln((1.01) / (0.99)) = -264.907, -229.753, -195.595, -34.309 -> their ceilings
    assert math.isclose(math.log(GAMMA), 0.0200006667, rel_tol=1e-9)
    sk = hour_sketches(samples, ["meter"], ["rtt_p95_seconds"])
    assert sorted(zip(sk.time, sk.k, sk.n, strict=True)) == [
        (pd.Timestamp(H), ZERO_BUCKET, 1), (pd.Timestamp(H), -264, 1),
        (pd.Timestamp(H), -229, 1), (pd.Timestamp(H), -195, 1),
        (pd.Timestamp(H + HOUR), -34, 1)]
    # The median of hour H's four: rank 0.5 x 3 = 1.5 between buckets -264 and -229, read
    # back as 2 gamma^k / (gamma + 1) = 0.0050406192 and 0.0101507974 (the raw median of
    # 0, 0.005, 0.0101, 0.02 is 0.00755; this is 0.6% above it).
    med = sketch_quantile(sk[sk.time == pd.Timestamp(H)], ["meter"], 0.5)
    assert med.value.tolist() == pytest.approx([(0.0050406192 + 0.0101507974) / 2], rel=1e-8)
    assert sketch_quantile(sk.iloc[:0], ["meter"], 0.5).empty


# -- (b) the rollup rows as line protocol ------------------------------------------------------

ACC = pd.DataFrame({
    "time": [H, H + 20 * M, H + 40 * M, H + 50 * M, H, H + 30 * M, H + 60 * M],
    "site": ["s1"] * 4 + ["s2"] * 3, "device": ["a"] * 4 + ["b"] * 3,
    "utilization_ratio": [0.2, 0.4, None, 0.9, 0.5, 0.25, 0.75],
    "power_watts": [100.0, 200.0, 300.0, 150.0, 50.0, None, 60.0]})
# 2026-11-03T10:00Z is 1,793,700,000 s after the epoch; 10:50 is 3,000 s later
LINE_A = ("accelerator_rollup_1h,device=a,site=s1 power_watts:last=150,"
          "power_watts:last_time=1793703000000000,power_watts:max=300,power_watts:min=100,"
          "power_watts:n=4,power_watts:sum=750,utilization_ratio:last=0.9,"
          "utilization_ratio:last_time=1793703000000000,utilization_ratio:max=0.9,"
          "utilization_ratio:min=0.2,utilization_ratio:n=3,utilization_ratio:sum=1.5 "
          "1793700000000000")
# device b's day: hours 10 (0.5, 0.25; 50 W) and 11 (0.75; 60 W), stamped 2026-11-03T00:00Z
LINE_B_DAY = ("accelerator_rollup_1d,device=b,site=s2 power_watts:last=60,"
              "power_watts:last_time=1793703600000000,power_watts:max=60,power_watts:min=50,"
              "power_watts:n=2,power_watts:sum=110,utilization_ratio:last=0.75,"
              "utilization_ratio:last_time=1793703600000000,utilization_ratio:max=0.75,"
              "utilization_ratio:min=0.25,utilization_ratio:n=3,utilization_ratio:sum=1.5 "
              "1793664000000000")


def test_rollup_rows_are_written_as_line_protocol_and_rewritten_alike():
    with fake_influx2() as srv, InfluxDBStore(_url(srv, "&rollups=long")) as store:
        store.write("accelerator", ACC)
        assert store.refresh_rollups(now=LATER) == 2  # 10:00 and 11:00
        rolled = [(b, line) for b, body in srv.writes for line in body.splitlines()]
        assert ("long", LINE_A) in rolled and ("long", LINE_B_DAY) in rolled
        assert {b for b, _ in rolled if "_rollup_" in _} == {"long"}  # rollups= bucket
        before = {k: dict(v) for k, v in srv.points.items()}
        assert store.refresh_rollups(now=LATER) == 2  # the last LATE hours again
        assert srv.points == before  # the same points rewritten


# -- (c) the Flux text of the reads, and the month read back -----------------------------------

LAST_ROLLED = """\
data = from(bucket: "raw")
  |> range(start: 1970-01-01T00:00:00.000000Z, stop: 2262-01-01T00:00:00.000000Z)
  |> filter(fn: (r) => r._measurement == "accelerator_rollup_1h")
  |> keep(columns: ["_time"])
  |> group()
data |> min(column: "_time") |> yield(name: "first")
data |> max(column: "_time") |> yield(name: "last")"""

ROLLUP_READ = """\
from(bucket: "raw")
  |> range(start: 2026-11-03T00:00:00.000000Z, stop: 2026-11-04T00:00:00.000000Z)
  |> filter(fn: (r) => r._measurement == "accelerator_rollup_1d")
  |> filter(fn: (r) => r._field == "utilization_ratio:n" or r._field == "utilization_ratio:sum")
  |> filter(fn: (r) => r["site"] == "s2")
  |> keep(columns: ["_time", "_field", "_value", "hub", "cluster", "site", "node", "device", \
"index", "vendor", "model", "ecosystem", "pci_bus_id", "driver_version", "parent", "phy_id", \
"vdie_id", "memory_type", "gpu_instance_id", "gpu_instance_profile", "pod", "namespace", \
"container", "pod_uid", "xid", "error_type", "reason", "position", "chip_name", "chip_type", \
"chip_version", "serial_number", "product_type", "firmware_version"])"""


def test_flux_of_the_last_rolled_hour_and_of_a_rollup_read():
    with fake_influx2() as srv, InfluxDBStore(_url(srv)) as store:
        store.write("accelerator", ACC)
        store.refresh_rollups("accelerator", now=LATER)
        assert srv.queries[1] == LAST_ROLLED
        store.drop_before(H + timedelta(days=1))
        srv.queries.clear()
        got = store.query(Query("accelerator", ("utilization_ratio",), H - 10 * HOUR,
                                H + 14 * HOUR, where={"site": "s2"}))
        assert ROLLUP_READ in srv.queries
        assert got.utilization_ratio.tolist() == [0.5]  # (0.5 + 0.25 + 0.75) / 3
        assert not any("aggregateWindow" in q for q in srv.queries)  # no raw data left
        series = store.series("accelerator", {"site": ["s1", "s2"]})
        assert sorted(zip(series.site, series.device, strict=True)) == [("s1", "a"),
                                                                        ("s2", "b")]


def _every_quarter_hour(frame: pd.DataFrame) -> pd.DataFrame:
    """test_rollups' month at 15-minute samples (its minute data costs the stand-in server
    minutes to serve; what is compared stays the same)."""
    return frame[frame.time.dt.minute % 15 == 0].reset_index(drop=True)


@pytest.fixture(scope="module")
def month():
    """The month raw in DuckDB, and in two stand-in InfluxDB 2 servers rolled up (a day of
    raw data read at a time, to spare the stand-in server requests) and then expired:
    ``mixed`` all but the last five days (at an unaligned minute), ``rolled`` everything."""
    rng = np.random.default_rng(19)
    acc, (meters, _), links = _accelerators(rng), _meters(rng), _links(rng)
    frames = {"accelerator": _every_quarter_hour(acc),
              "facility_power": _every_quarter_hour(meters),
              "link_latency": _every_quarter_hour(links)}
    raw = DuckDBStore(":memory:")
    for name, frame in frames.items():
        raw.write(name, frame)
    with fake_influx2() as mixed_srv, fake_influx2() as rolled_srv, \
            pytest.MonkeyPatch.context() as patch:
        patch.setattr(ir, "BATCH", timedelta(days=1))
        rolled = InfluxDBStore(_url(rolled_srv))
        for meas, frame in frames.items():
            rolled.write(meas, frame)
        hours = rolled.refresh_rollups(now=T1 + timedelta(days=1))
        assert hours == 3 * 30 * 24 + 4  # the meters read from 2 h before to 2 h after
        # The second server gets the first's points: rolling the same raw data up again
        # would write the same points and double the fixture's minute and a half.
        mixed_srv.points = {key: dict(values) for key, values in rolled_srv.points.items()}
        mixed = InfluxDBStore(_url(mixed_srv))
        mixed.drop_before(T1 - timedelta(days=5, minutes=-37))
        rolled.drop_before(T1 + timedelta(days=1))
        stores = {"raw": raw, "mixed": mixed, "rolled": rolled}
        yield {"stores": stores, "frames": frames, "links": frames["link_latency"]}
        for store in stores.values():
            store.close()


@pytest.mark.slow  # the month's rollups through the stand-in server (about 50 s)
def test_the_month_is_kept_as_rollups(month):
    rolled, mixed = month["stores"]["rolled"], month["stores"]["mixed"]
    assert resolution(rolled, "accelerator", T0) == HOUR
    assert resolution(mixed, "accelerator", T0) == HOUR
    assert resolution(mixed, "accelerator", T1 - timedelta(days=2)) == timedelta(0)
    assert rolled.time_bounds("accelerator")[0] == T0
    assert mixed.time_bounds("accelerator") == (T0, T1 - timedelta(minutes=15))
    acc = month["frames"]["accelerator"]
    assert rolled.query(Query("accelerator", ("utilization_ratio",), T0, T1,
                              agg=Aggregate.COUNT)).utilization_ratio[0] == len(acc)


@pytest.mark.slow  # the month's rollups through the stand-in server (about 50 s)
@pytest.mark.parametrize("name", ["mixed", "rolled"])
def test_utilization_and_idle_hours_are_the_raw_ones(month, name):
    acc = month["frames"]["accelerator"]
    by_site = acc.groupby("site").utilization_ratio.agg(["mean", "count", "sum"])
    for store in (month["stores"]["raw"], month["stores"][name]):
        got = utilization_totals(store, T0, T1, by=("site",)).set_index("site")
        assert got.utilization.to_numpy() == pytest.approx(by_site["mean"].to_numpy(), rel=1e-12)
        assert got.samples.tolist() == by_site["count"].tolist()
    raw = utilization_totals(month["stores"]["raw"], T0, T1, by=("site",))
    got = utilization_totals(month["stores"][name], T0, T1, by=("site",))
    assert got.idle_accelerator_hours.to_numpy() == pytest.approx(
        raw.idle_accelerator_hours.to_numpy(), rel=1e-12)


@pytest.mark.slow  # the month's rollups through the stand-in server (about 50 s)
@pytest.mark.parametrize("name", ["mixed", "rolled"])
@pytest.mark.parametrize("agg", [Aggregate.MEAN, Aggregate.SUM, Aggregate.COUNT,
                                 Aggregate.MIN, Aggregate.MAX, Aggregate.LAST])
@pytest.mark.parametrize("window", [timedelta(days=1), timedelta(hours=7), None])
def test_windowed_aggregates_are_the_raw_ones(month, name, agg, window):
    """test_rollups' comparison of every aggregate with the raw data's, on these stores."""
    by_duckdb.test_windowed_aggregates_are_the_same_from_rollups(month, name, agg, window)


@pytest.mark.slow  # the month's rollups through the stand-in server (about 50 s)
@pytest.mark.parametrize("name", ["mixed", "rolled"])
def test_energy_and_pue_are_the_raw_ones(month, name):
    policy = load_policy()

    def pue(store):
        readings = meter_readings(store, MONTH, HOUR)
        got = windowed_pue(readings, MONTH, policy, "all", by=("site",), min_completeness=0.0)
        return got.set_index("site")

    raw, got = pue(month["stores"]["raw"]), pue(month["stores"][name])
    assert got.pue.to_numpy() == pytest.approx(raw.pue.to_numpy(), rel=1e-12)
    q = Query("facility_power", ("joules_total",), T0, T1, group_by=("meter",),
              window=HOUR, agg=Aggregate.MAX)  # the hourly highest readings, reset included
    pd.testing.assert_frame_equal(month["stores"][name].query(q),
                                  month["stores"]["raw"].query(q))


@pytest.mark.slow  # the month's rollups through the stand-in server (about 50 s)
@pytest.mark.parametrize("name", ["mixed", "rolled"])
@pytest.mark.parametrize("window", [None, timedelta(days=1)])
def test_p95_is_within_the_sketch_error(month, name, window):
    """test_rollups' percentile checks (against the raw store and the generated numbers)."""
    by_duckdb.test_percentiles_are_within_the_sketch_error(month, name, window)


@pytest.mark.slow  # the month's rollups through the stand-in server (about 50 s)
def test_before_the_raw_data_a_query_needs_whole_hours(month):
    by_duckdb.test_a_query_before_the_raw_data_must_be_in_whole_hours(month)


def test_rollups_that_match_nothing_answer_an_empty_frame():
    """As the raw data does: the report's pipelines ask for sites with no data."""
    with fake_influx2() as srv, InfluxDBStore(_url(srv)) as store:
        store.write("accelerator", ACC)
        store.refresh_rollups(now=LATER)
        store.drop_before(LATER)
        for agg in (Aggregate.MEAN, Aggregate.COUNT, Aggregate.LAST):
            q = Query("accelerator", ("utilization_ratio",), H, H + 2 * HOUR,
                      where={"device": "nowhere"}, group_by=("site",), window=HOUR, agg=agg)
            got = store.query(q)
            assert got.empty and list(got.columns) == ["time", "site", "utilization_ratio"]
            assert str(got.time.dtype) == "datetime64[us, UTC]"


# -- late data, retention -----------------------------------------------------------------------

def test_late_data_within_the_last_hours_is_rolled_again():
    with fake_influx2() as srv, InfluxDBStore(_url(srv)) as store:
        store.write("accelerator", ACC)
        store.refresh_rollups(now=LATER)
        late = pd.DataFrame({"time": [H + 59 * M], "site": ["s1"], "device": ["a"],
                             "utilization_ratio": [1.0]})
        store.write("accelerator", late)
        store.refresh_rollups(now=LATER)  # 10:00 is within LATE of the last rolled hour
        store.drop_before(LATER)
        hourly = Query("accelerator", ("utilization_ratio",), H, H + 2 * HOUR,
                       group_by=("device",), window=HOUR, agg=Aggregate.SUM)
        got = store.query(hourly)
    assert got.utilization_ratio.tolist() == pytest.approx([0.2 + 0.4 + 0.9 + 1.0, 0.75, 0.75])
    assert got.device.tolist() == ["a", "b", "b"]


def test_retention_rolls_up_first_and_keeps_the_rollups():
    with fake_influx2() as srv, InfluxDBStore(_url(srv)) as store:
        store.write("accelerator", ACC)
        store.refresh_rollups(now=LATER)
        later = pd.DataFrame({"time": [H + 2 * HOUR + M], "site": ["s1"], "device": ["a"],
                              "utilization_ratio": [0.5]})
        store.write("accelerator", later)  # not rolled up yet
        assert store.drop_before(H + 3 * HOUR) == 13  # field values, as InfluxDB counts
        got = store.query(Query("accelerator", ("utilization_ratio",), H, H + 3 * HOUR,
                                agg=Aggregate.COUNT))
        assert got.utilization_ratio.tolist() == [6 + 1]  # six in ACC, then the later one
        assert ("raw", "accelerator") in srv.points and not srv.points["raw", "accelerator"]


# -- (d) the CLI --------------------------------------------------------------------------------

def test_the_rollup_command_on_influxdb():
    with fake_influx2() as srv:
        with InfluxDBStore(_url(srv)) as store:
            store.write("accelerator", ACC)
        result = CliRunner().invoke(app, ["rollup", "--store", _url(srv)])
        assert result.exit_code == 0, result.output
        assert "rolled up 2 hours of influxdb://127.0.0.1" in result.output
        assert any("accelerator_rollup_1h" in body for _, body in srv.writes)
        v3 = f"influxdb://127.0.0.1:{srv.server_port}?bucket=raw&version=3"
        result = CliRunner().invoke(app, ["rollup", "--store", v3])
        assert isinstance(result.exception, StoreError)  # `main` prints it, exit status 1
        message = str(result.exception)
        assert "InfluxDB 2 only" in message and "InfluxDB 3" in message
        assert "vmalert" not in message


def test_only_closed_hours_are_rolled():
    with fake_influx2() as srv, InfluxDBStore(_url(srv)) as store:
        store.write("accelerator", ACC)
        assert store.refresh_rollups(now=H + HOUR + 30 * M) == 1  # 11:00 is still open
        assert ir.rollup_measurement("accelerator", HOUR) == "accelerator_rollup_1h"
        assert not any("_rollup_1d" in body for _, body in srv.writes)  # the day goes on
