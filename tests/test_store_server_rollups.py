"""VictoriaMetrics beyond its raw data: `query` reads the rollup records that a real vmalert
wrote, and answers as by hand and as the embedded store does over the same data.

Nine hours of minutes (read 30 s past each minute, so no sample lies on an hour, where the
records' ``(t - 1h, t]`` and the raw windows' ``[t, t + 1h)`` differ) go into a raw
VictoriaMetrics; vmalert replays the rollup rules over them into a second instance (the
compose stack's ``victoriametrics-rollups``, named by ``rollups=``); then the raw instance
loses every sample and gets back the last three hours only: raw data begins at 06:00:30, so
the line is 07:00 and seven hours are read from records. The DuckDB store gets the same
minutes, rolls them up and drops the raw samples before 06:00.

Card ``d0`` reads ``h/10 + k/1000`` at minute ``k`` of hour ``h``: an hour sums to
``6 h + 1.77`` over 60 readings, peaks at ``h/10 + 0.059`` and ends there; ``d1`` reads 0.5;
``d2`` reads 0.25 until 06:00 only (raw retention forgets it: only records know it).
The meter's counter reads ``1e6 + 100 i`` at its ``i``-th minute. A link's RTT histogram
(buckets 10, 20, 50 ms and +Inf) counts, at each reading before 07:00 but the first, 1 more
reply within 10 ms, 3 more within 20 and 2 more within 50 (distribution A), and from 07:00,
0, 2 and 4 (B).
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from servers import free_port, installed, start_prometheus, start_victoriametrics

from computewatch.errors import StoreURLError
from computewatch.findings import Period
from computewatch.lineprotocol import parse_rollups_url
from computewatch.pue import meter_readings
from computewatch.render import OutputFormat, render_summary
from computewatch.rollup_rules import ROLLUP_RULES_FILE
from computewatch.store import Aggregate, DuckDBStore, Query, StoreError, open_store, resolution
from computewatch.store._promrollups import bucket_quantile
from computewatch.utilization import utilization_totals

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 2, tzinfo=UTC)
HOURS = 9
RAW_FROM = T0 + timedelta(hours=6)  # the raw instance keeps what is read after this
LINE = T0 + timedelta(hours=7)  # the first whole hour of raw data
END = T0 + timedelta(hours=HOURS)
H = timedelta(hours=1)


LES = ("0.01", "0.02", "0.05", "+Inf")
HUB = "hub-x"  # the link's hubs and tier, for the summary
A, B = (1, 4, 6, 6), (0, 2, 6, 6)  # cumulative replies a minute per bucket


def _histogram(times: pd.DatetimeIndex) -> pd.DataFrame:
    """A reading counts the replies since the one before it: A or B by the reading's time;
    the counters start at 0 (so every engine's increase is exact)."""
    replies = np.array([A if t < LINE else B for t in times], dtype=float)
    replies[0] = 0
    totals = np.cumsum(replies, axis=0)
    return pd.concat([pd.DataFrame({"time": times, "src_site": "a", "dst_site": "b",
                                    "src_hub": HUB, "dst_hub": HUB, "tier": "regional",
                                    "le": le, "rtt_seconds_bucket": totals[:, j]})
                      for j, le in enumerate(LES)], ignore_index=True)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    times = pd.date_range(T0 + timedelta(seconds=30), periods=HOURS * 60, freq="1min")
    i = np.arange(len(times))
    d0 = (i // 60) / 10 + (i % 60) / 1000
    acc = pd.concat([pd.DataFrame({"time": times, "site": "s1", "device": d,
                                   "utilization_ratio": v})
                     for d, v in (("d0", d0), ("d1", np.full(len(times), 0.5)))]
                    + [pd.DataFrame({"time": times[times < RAW_FROM], "site": "s1",
                                     "device": "d2", "utilization_ratio": 0.25})],
                    ignore_index=True)
    meter = pd.DataFrame({"time": times, "site": "s1", "meter": "m", "scope": "facility",
                          "joules_total": 1e6 + 100.0 * i})
    return acc, meter, _histogram(times)


def _recent(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame.time >= RAW_FROM]


def _flush(url: str) -> None:
    requests.get(f"{url}/internal/force_flush", timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The VictoriaMetrics store reading records from its rollups instance, the Prometheus
    store reading the same records (raw: the last three hours, backfilled), DuckDB."""
    tmp = tmp_path_factory.mktemp("server-rollups")
    acc, meter, link = _frames()
    with start_victoriametrics(tmp / "raw") as raw, \
            start_victoriametrics(tmp / "rollups") as rolled:
        url = f"victoriametrics://127.0.0.1:{raw.port}?rollups=127.0.0.1:{rolled.port}"
        vm = open_store(url)
        vm.write("accelerator", acc)
        vm.write("facility_power", meter)
        vm.write("link_latency", link)
        _flush(raw.url)
        done = subprocess.run(
            [installed("vmalert"), f"-rule={ROOT / ROLLUP_RULES_FILE}",
             f"-datasource.url={raw.url}", f"-remoteWrite.url={rolled.url}",
             f"-replay.timeFrom={T0:%Y-%m-%dT%H:%M:%SZ}",
             f"-replay.timeTo={END + H:%Y-%m-%dT%H:%M:%SZ}",
             # one record an hour, as vmalert evaluates the hourly group when not replaying
             # (a replay steps by -datasource.queryStep, 5 minutes unless told)
             "-datasource.queryStep=1h",
             "-replay.disableProgressBar", "-replay.rulesDelay=0s", "-loggerLevel=WARN",
             f"-httpListenAddr=127.0.0.1:{free_port()}"],
            capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        _flush(rolled.url)
        # The raw instance's retention: every sample goes, the last three hours come back.
        for name in ("accelerator_utilization_ratio", "facility_power_joules_total",
                     "link_latency_rtt_seconds_bucket"):
            requests.post(f"{raw.url}/api/v1/admin/tsdb/delete_series",
                          data={"match[]": name}, timeout=30).raise_for_status()
        vm.write("accelerator", _recent(acc))
        vm.write("facility_power", _recent(meter))
        vm.write("link_latency", _recent(link))
        duck = DuckDBStore(tmp / "d.duckdb")
        duck.write("accelerator", acc)
        duck.write("facility_power", meter)
        duck.refresh_rollups()
        duck.drop_before(RAW_FROM)
        (tmp / "raw.om").write_text(_openmetrics(
            ("accelerator_utilization_ratio", _recent(acc), "utilization_ratio"),
            ("facility_power_joules_total", _recent(meter), "joules_total")))
        done = subprocess.run([installed("promtool"), "tsdb", "create-blocks-from",
                               "openmetrics", str(tmp / "raw.om"), str(tmp / "prom-data")],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        (tmp / "prometheus.yml").write_text("global: {}\n")
        with start_prometheus(tmp, tmp / "prometheus.yml",
                              args=["--storage.tsdb.retention.time=100y"]) as server:
            prom = open_store(f"prometheus://127.0.0.1:{server.port}"
                              f"?rollups=127.0.0.1:{rolled.port}")
            yield {"victoriametrics": vm, "prometheus": prom, "duckdb": duck}
            prom.close()
        vm.close()
        duck.close()


def _openmetrics(*families: tuple[str, pd.DataFrame, str]) -> str:
    """Frames as OpenMetrics text for promtool's backfill: (name, frame, value column)."""
    out = []
    for name, frame, column in families:
        out.append(f"# TYPE {name} gauge\n")
        labels = [c for c in frame.columns if c not in ("time", column)]
        for key, part in frame.groupby(labels):
            tags = ",".join(f'{k}="{v}"' for k, v in zip(labels, key, strict=True))
            seconds = (part.time - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
            out.extend(f"{name}{{{tags}}} {v!r} {t:.3f}\n"
                       for t, v in zip(seconds, part[column], strict=True))
    out.append("# EOF\n")
    return "".join(out)


def _d0_hour_sum(h: int) -> float:
    return 6 * h + 1.77


def _ask(stores, q: Query) -> pd.DataFrame:
    """The VictoriaMetrics answer, checked equal to Prometheus' and the embedded store's."""
    got = stores["victoriametrics"].query(q)
    want = stores["duckdb"].query(q)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12)
    pd.testing.assert_frame_equal(stores["prometheus"].query(q), want, check_dtype=False,
                                  rtol=1e-12)
    return got


def _util(agg: Aggregate, window: timedelta | None, start: datetime = T0,
          end: datetime = END, group_by: tuple[str, ...] = ("device",)) -> Query:
    return Query("accelerator", ("utilization_ratio",), start, end, group_by=group_by,
                 window=window, agg=agg)


@pytest.mark.slow  # two real VictoriaMetrics, a vmalert replay, a Prometheus (about 6 s)
def test_the_line_and_the_resolution_are_where_raw_data_begins(stores):
    vm, duck = stores["victoriametrics"], stores["duckdb"]
    for store in stores.values():
        assert resolution(store, "accelerator", T0) == H
        assert resolution(store, "accelerator", LINE - timedelta(minutes=1)) == H
        assert resolution(store, "accelerator", LINE) == timedelta(0)
    assert vm.time_bounds("accelerator") == (T0, END - timedelta(seconds=30))
    assert stores["prometheus"].time_bounds("accelerator") == (T0, END - timedelta(seconds=30))
    assert duck.time_bounds("accelerator")[0] == T0
    # d2 left the raw data with the old samples; its records keep it listed
    for store in stores.values():
        assert store.series("accelerator").device.tolist() == ["d0", "d1", "d2"]
        assert store.series("accelerator", {"device": "d2"}).site.tolist() == ["s1"]


@pytest.mark.slow
def test_mean_sum_count_over_records_and_raw_data_are_the_hand_computed_ones(stores):
    mean = _ask(stores, _util(Aggregate.MEAN, None)).set_index("device").utilization_ratio
    total = sum(_d0_hour_sum(h) for h in range(HOURS))  # 231.93
    assert mean["d0"] == pytest.approx(total / 540, rel=1e-12)
    assert mean["d1"] == pytest.approx(0.5, rel=1e-12)
    sums = _ask(stores, _util(Aggregate.SUM, 3 * H))
    d0 = sums[sums.device == "d0"]
    assert list(d0.time) == [T0, T0 + 3 * H, T0 + 6 * H]
    # the last window straddles the line: 06:00-07:00 from records, the rest raw
    assert d0.utilization_ratio.tolist() == pytest.approx(
        [sum(_d0_hour_sum(h) for h in range(k, k + 3)) for k in (0, 3, 6)], rel=1e-12)
    count = _ask(stores, _util(Aggregate.COUNT, None, group_by=()))
    assert count.utilization_ratio.tolist() == [2 * HOURS * 60 + 6 * 60]
    assert count.utilization_ratio.dtype == np.int64


@pytest.mark.slow
def test_max_min_last_per_hour_and_per_window(stores):
    hourly = _ask(stores, _util(Aggregate.MAX, H))
    d0 = hourly[hourly.device == "d0"]
    assert d0.utilization_ratio.tolist() == pytest.approx([h / 10 + 0.059
                                                           for h in range(HOURS)])
    low = _ask(stores, _util(Aggregate.MIN, 2 * H, end=LINE))  # records only, last window 1 h
    assert low[low.device == "d0"].utilization_ratio.tolist() == pytest.approx(
        [0.0, 0.2, 0.4, 0.6])
    last = _ask(stores, _util(Aggregate.LAST, 3 * H))
    assert last[last.device == "d0"].utilization_ratio.tolist() == pytest.approx(
        [0.259, 0.559, 0.859])
    assert last[last.device == "d1"].utilization_ratio.tolist() == [0.5] * 3


@pytest.mark.slow
def test_a_meters_counter_per_hour_as_the_pue_reads_it(stores):
    for agg, want in ((Aggregate.LAST, [1e6 + 100 * (60 * h + 59) for h in range(HOURS)]),
                      (Aggregate.MAX, [1e6 + 100 * (60 * h + 59) for h in range(HOURS)]),
                      (Aggregate.COUNT, [60] * HOURS)):
        got = _ask(stores, Query("facility_power", ("joules_total",), T0, END,
                                 group_by=("site", "meter", "scope"), window=H, agg=agg))
        assert got.joules_total.tolist() == pytest.approx(want), agg


@pytest.mark.slow
def test_queries_the_records_cannot_answer_are_refused_naming_the_line(stores):
    vm = stores["victoriametrics"]
    for q in (_util(Aggregate.MEAN, H, start=T0 + timedelta(minutes=30)),
              _util(Aggregate.MEAN, timedelta(minutes=90))):
        for store in stores.values():
            with pytest.raises(StoreError, match=r"before 2026-11-02 07:00 UTC is kept as "
                                                 r"hourly rollups.*whole hours"):
                store.query(q)
    with pytest.raises(StoreError, match=r"07:00 UTC.*cannot answer the quantile of "
                                         r"'utilization_ratio'"):
        vm.query(_util(Aggregate.QUANTILE, H))
    with pytest.raises(StoreError, match="cannot answer the sum of 'joules_total'"):
        vm.query(Query("facility_power", ("joules_total",), T0, END, agg=Aggregate.SUM))
    # after the line, raw data answers any window as before
    raw = _ask(stores, _util(Aggregate.MEAN, timedelta(minutes=7), start=LINE))
    assert len(raw) == 2 * 18


def _interpolated(phi: float, minutes_a: int, minutes_b: int) -> float:
    """By hand: the rank's bucket among the summed cumulative counts, linearly inside it."""
    cum = [minutes_a * a + minutes_b * b for a, b in zip(A, B, strict=True)]
    rank, lower, below = phi * cum[-1], 0.0, 0.0
    for upper, n in zip((0.01, 0.02, 0.05), cum, strict=False):
        if rank <= n:
            return lower + (upper - lower) * (rank - below) / (n - below)
        lower, below = upper, n
    raise AssertionError("rank in +Inf")


def test_bucket_quantile_interpolates_as_prometheus_does():
    les = pd.Series(LES)
    two_thirds = 0.01 + 0.01 * 2 / 3  # rank 3 of 6: 2 of the 3 replies in (10, 20] ms
    assert bucket_quantile(0.5, les, pd.Series([1.0, 4, 6, 6])) == pytest.approx(two_thirds)
    assert bucket_quantile(0.1, les, pd.Series([1.0, 4, 6, 6])) == pytest.approx(0.006)
    assert bucket_quantile(1.0, les, pd.Series([1.0, 4, 6, 7])) == 0.05  # +Inf: highest bound
    assert np.isnan(bucket_quantile(0.5, les, pd.Series([0.0, 0, 0, 0])))


@pytest.mark.slow
def test_the_rtt_quantile_sums_the_histogram_records_and_raw_buckets(stores):
    vm = stores["victoriametrics"]  # Prometheus' increase extrapolates: not by hand
    q = Query("link_latency", ("rtt_seconds_bucket",), T0, END, group_by=("src_site",),
              window=3 * H, agg=Aggregate.QUANTILE, quantile=0.5)
    got = vm.query(q)
    assert list(got.time) == [T0, T0 + 3 * H, T0 + 6 * H]
    # records only, then 06:00-07:00 from records (A) and 07:00-09:00 raw (B)
    assert got.rtt_seconds_bucket.tolist() == pytest.approx(
        [_interpolated(0.5, 179, 0), _interpolated(0.5, 180, 0), _interpolated(0.5, 60, 120)])
    p95 = vm.query(replace(q, window=None, quantile=0.95)).rtt_seconds_bucket
    assert p95.tolist() == pytest.approx([_interpolated(0.95, 419, 120)])
    # after the line, the same histogram read from raw buckets only
    late = vm.query(replace(q, start=LINE, window=None)).rtt_seconds_bucket
    assert late.tolist() == pytest.approx([_interpolated(0.5, 0, 120)])
    with pytest.raises(StoreError, match=r"cannot answer the quantile of 'rtt_p95_seconds'.*"
                                         r"histogram, 'rtt_seconds_bucket'"):
        vm.query(replace(q, fields=("rtt_p95_seconds",)))


@pytest.mark.slow
def test_the_pue_meter_readings_are_the_embedded_stores(stores):
    """The PUE's readings widen to the records' hour before the line (`resolution`) and come
    out the same from every store: each counter's last and highest reading per hour."""
    period = Period(T0 + H, END - H)
    want = meter_readings(stores["duckdb"], period)
    assert len(want) == HOURS
    assert want.joules.tolist() == pytest.approx([1e6 + 100 * (60 * h + 59)
                                                  for h in range(HOURS)])
    for name in ("victoriametrics", "prometheus"):
        got = meter_readings(stores[name], period)
        pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12, obj=name)


@pytest.mark.parametrize(("url", "base"), [
    ("victoriametrics://vm:8428", None),
    ("victoriametrics://vm:8428?rollups=vm-rollups:8428", "http://vm-rollups:8428"),
    ("victoriametrics://vm:8428?tls=1&rollups=vm-rollups:443", "https://vm-rollups:443"),
    ("prometheus://prom:9090?rollups=10.0.0.7:8428", "http://10.0.0.7:8428"),
])
def test_the_rollups_parameter_names_the_records_instance(url, base):
    assert parse_rollups_url(url) == base


@pytest.mark.parametrize("url", ["victoriametrics://vm:8428?rollups=vm-rollups",
                                 "prometheus://prom:9090?rollups=h:99999"])
def test_a_bad_rollups_parameter_is_named(url):
    with pytest.raises(StoreURLError, match=r"rollups .* is not host:port"):
        open_store(url)


@pytest.mark.slow
def test_utilization_totals_and_idle_hours_are_the_embedded_stores(stores):
    """The summary's utilization over records and raw data: d0's 540 readings sum to 231.93
    (by hand, above), d1's to 270, d2's 360 to 90; one reading a minute, so idle hours are
    (readings - sum) / 60."""
    want = utilization_totals(stores["duckdb"], T0, END, by=("device",))
    assert want.utilization_sum.tolist() == pytest.approx([231.93, 270.0, 90.0], rel=1e-12)
    assert want.idle_accelerator_hours.tolist() == pytest.approx(
        [(540 - 231.93) / 60, (540 - 270) / 60, (360 - 90) / 60], rel=1e-12)
    for name in ("victoriametrics", "prometheus"):
        got = utilization_totals(stores[name], T0, END, by=("device",))
        pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12, obj=name)


@pytest.mark.slow
def test_the_summary_reads_a_links_p95_from_the_probes_histogram_beyond_raw_data(stores):
    """The records keep no quantile state of the window p95 gauge, so the summary asks the
    probes' histogram (records and raw buckets merged) and says so; before, it failed."""
    from computewatch.policy import load_policy
    from computewatch.summary import national_summary
    from computewatch.topology import load_topology

    topology, policy = load_topology(), load_policy()
    budget = policy.budget_rtt_s("regional")
    got = national_summary(stores["victoriametrics"], topology, policy, T0, END)
    want = _interpolated(0.95, 419, 120)  # 7 h of A from records (the first 0), 2 h of B raw
    assert got.links.p95_source.tolist() == ["probe_histogram"]
    assert got.links.rtt_p95_seconds.tolist() == pytest.approx([want])
    national = got.rows.set_index("level").loc["national"]
    assert national.worst_link == "a ↔ b"
    assert national.worst_link_p95_s == pytest.approx(want)
    assert national.worst_link_budget_s == budget
    assert national.worst_link_p95_source == "probe_histogram"
    table = io.StringIO()
    render_summary(got, OutputFormat.TABLE, table)
    assert "probes' RTTs from their histogram" in " ".join(table.getvalue().split())
    # Prometheus holds no raw link data here: the records answer all nine hours
    prom = national_summary(stores["prometheus"], topology, policy, T0, END)
    assert prom.links.p95_source.tolist() == ["probe_histogram"]
    assert prom.links.rtt_p95_seconds.tolist() == pytest.approx([_interpolated(0.95, 419, 120)])
