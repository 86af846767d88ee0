"""History backfilled as rollups (`computewatch.sim.backfill`) against the same hours built
from minutes: one small fleet, two days, simulated twice from the same seed. ``minutes``
writes the minute data and rolls it up (`refresh_rollups`, then the raw samples dropped);
``hourly`` and ``daily`` write the backfill's rows (`write_rollup`). The occupancy is exact
(samples, allocated minutes, series and pods); sums from the model are within the stated
tolerances of the minute data's; a day merged in the backfill is the store's own merge of
its hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from computewatch.compliance import window_compliance
from computewatch.findings import Period
from computewatch.policy import load_policy
from computewatch.pue import meter_readings, windowed_pue
from computewatch.sim import build_fleet, simulate
from computewatch.sim.backfill import rollup_frames
from computewatch.store import Aggregate, DuckDBStore, Query, resolution
from computewatch.topology import load_topology
from computewatch.utilization import allocation_totals, utilization_totals

END = datetime(2026, 12, 6, tzinfo=UTC)
HOURS = 48
START = END - timedelta(hours=HOURS)
SPAN = Period(START, END)
POLICY = load_policy()


def _history():
    fleet = build_fleet(load_topology(), sites=12, accelerators=600, seed=3)
    return simulate(fleet, hours=HOURS, end=END, policy=POLICY)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    out = {}
    for name in ("minutes", "hourly", "daily"):
        store = DuckDBStore(tmp_path_factory.mktemp(name) / "b.duckdb")
        history = _history()
        if name == "minutes":
            links = []
            for measurement, frame in history.chunks():
                store.write(measurement, frame)
                if measurement == "link_latency":
                    links.append(frame.to_pandas())
            out["links"] = pd.concat(links, ignore_index=True)
            store.refresh_rollups()
            store.drop_before(END + timedelta(days=1))
        else:
            grain = timedelta(hours=1) if name == "hourly" else timedelta(days=1)
            for measurement, frame, g in rollup_frames(history, HOURS, grain):
                store.write_rollup(measurement, frame, g)
        out[name] = (store, history)
    yield out
    for name in ("minutes", "hourly", "daily"):
        out[name][0].close()


def test_the_stores_hold_rollups_only(stores):
    for name, grain in (("minutes", 1), ("hourly", 1), ("daily", 24)):
        store, _ = stores[name]
        assert resolution(store, "accelerator", START) == timedelta(hours=grain), name


@pytest.mark.parametrize("name", ["hourly", "daily"])
def test_samples_and_allocated_minutes_are_exact(stores, name):
    want = allocation_totals(stores["minutes"][0], START, END, by=("site",))
    got = allocation_totals(stores[name][0], START, END, by=("site",))
    keys = ["site", "namespace"]
    want, got = (f.sort_values(keys).reset_index(drop=True) for f in (want, got))
    assert got[keys].values.tolist() == want[keys].values.tolist()
    assert got.samples.tolist() == want.samples.tolist()
    q = Query("accelerator", ("allocated",), START, END, group_by=("site",), agg=Aggregate.SUM)
    assert stores[name][0].query(q).allocated.tolist() == \
        stores["minutes"][0].query(q).allocated.tolist()


def test_an_hourly_backfill_names_the_same_series_and_pods(stores):
    cols = ["device", "namespace", "pod", "container"]
    want = stores["minutes"][0].series("accelerator")[cols]
    got = stores["hourly"][0].series("accelerator")[cols]
    assert sorted(map(tuple, got.values.tolist())) == sorted(map(tuple, want.values.tolist()))


@pytest.mark.parametrize("name", ["hourly", "daily"])
def test_utilization_and_idle_hours_are_the_models(stores, name):
    """The model's expectation plus the noise of a sum: a site's two days within 0.003 of
    the minute data's mean, its idle hours within 0.5%."""
    want = utilization_totals(stores["minutes"][0], START, END, by=("site",))
    got = utilization_totals(stores[name][0], START, END, by=("site",))
    assert got.site.tolist() == want.site.tolist()
    np.testing.assert_allclose(got.utilization, want.utilization, atol=3e-3)
    np.testing.assert_allclose(got.idle_accelerator_hours, want.idle_accelerator_hours,
                               rtol=5e-3)


def test_a_backfilled_day_is_the_stores_merge_of_its_hours(stores):
    """The daily rows merged in the backfill answer what the hourly rows merged by the
    store do (utilization and power sums, sample counts)."""
    q = Query("accelerator", ("utilization_ratio", "power_watts"), START, END,
              group_by=("site",), window=timedelta(days=1), agg=Aggregate.SUM)
    hourly, daily = (stores[n][0].query(q) for n in ("hourly", "daily"))
    np.testing.assert_allclose(daily.utilization_ratio, hourly.utilization_ratio, rtol=1e-9)
    np.testing.assert_allclose(daily.power_watts, hourly.power_watts, rtol=1e-9)


@pytest.mark.parametrize("name", ["hourly", "daily"])
def test_pue_is_the_models(stores, name):
    """Meters driven by the modelled accelerator power: each site's PUE within 0.2% of the
    minute data's (the cooling fault included over the two days). A counter's energy needs
    a reading before the period: with daily rows that is the first day's end, so the daily
    store is read over the second day."""
    span = SPAN if name == "hourly" else Period(START + timedelta(days=1), END)

    def pue(store):
        got = windowed_pue(meter_readings(store, span), span, POLICY, "all", by=("site",),
                           min_completeness=0.0)
        return got.set_index("site").pue.sort_index()

    want, got = pue(stores["minutes"][0]), pue(stores[name][0])
    assert got.index.tolist() == want.index.tolist()
    np.testing.assert_allclose(got, want, rtol=2e-3)


@pytest.mark.parametrize("name", ["hourly", "daily"])
def test_tier_compliance_is_the_models(stores, name):
    """Probes sent are exact; the share answered within the tier budget is the expected one
    (minute draws against the hour's expectation): within 0.01 per link, 0.002 overall."""
    def compliance(store):
        got = window_compliance(store, SPAN, POLICY, window=timedelta(days=1))
        return got.groupby(["src_site", "dst_site"])[["probes", "probes_within_budget"]].sum()

    want, got = compliance(stores["minutes"][0]), compliance(stores[name][0])
    assert got.index.tolist() == want.index.tolist()
    np.testing.assert_allclose(got.probes, want.probes, rtol=1e-3)
    np.testing.assert_allclose(got.probes_within_budget / got.probes,
                               want.probes_within_budget / want.probes, atol=0.01)
    assert got.probes_within_budget.sum() / got.probes.sum() == pytest.approx(
        want.probes_within_budget.sum() / want.probes.sum(), abs=2e-3)


@pytest.mark.parametrize("name", ["hourly", "daily"])
@pytest.mark.parametrize(("field", "q"), [("rtt_p95_seconds", 0.95), ("rtt_p50_seconds", 0.5),
                                          ("rtt_p99_seconds", 0.99), ("rtt_p95_seconds", 0.05)])
def test_link_percentiles_over_two_days_are_the_minute_datas(stores, name, field, q):
    """The backfill writes each link-hour's sketch of its per-minute percentiles, so a
    quantile over the two days per link direction is read from every minute (not averaged
    from hourly values). Against ``quantile_cont`` of the minute data's own values: within
    the sketch's 1% plus 1% for the model (one hour's minutes as 12 equal-mass values at
    mid-hour load, against 60 random draws)."""
    raw = stores["links"]
    want = raw.groupby(["src_site", "dst_site"], observed=True)[field].quantile(q)
    got = stores[name][0].query(Query("link_latency", (field,), START, END,
                                      group_by=("src_site", "dst_site"),
                                      agg=Aggregate.QUANTILE, quantile=q))
    got = got.set_index(["src_site", "dst_site"])[field]
    assert sorted(got.index) == sorted(want.index)
    np.testing.assert_allclose(got[want.index], want, rtol=0.02)
    # The degraded link's hours are in it: its p99 is its incident's, far above its median.


def test_the_ground_truth_is_the_minute_datas(stores):
    """The incidents and the allocation truth's samples are the same whichever way the
    hours were written; the utilization sums recorded are within the model's noise."""
    (_, minutes), (_, hourly) = stores["minutes"], stores["hourly"]
    assert minutes.truth.incidents == hourly.truth.incidents
    for a, b in zip(minutes.truth.allocation, hourly.truth.allocation, strict=True):
        assert (a.site, a.namespace) == (b.site, b.namespace)
        assert a.samples == b.samples and a.idle_samples == b.idle_samples
        # Two draws of the same model: within 4 sd of the difference of two sums of
        # that many samples (a busy minute's sd is 0.06).
        spread = 4 * 0.06 * np.sqrt(2 * sum(a.samples))
        assert abs(sum(b.utilization_sum) - sum(a.utilization_sum)) <= spread


@pytest.mark.slow  # two real commands: a 40-day demo and a year report (about a minute)
def test_demo_days_then_the_year_report(tmp_path):
    """`computewatch demo --days 40` (40 sites, the last day raw, the rest hourly rollups)
    and `computewatch report --period 2026` over it: each site's utilization and idle hours
    are what the simulator wrote (its allocation truth), its probes are every link's 60 a
    minute for the 40 days, its PUE the configured one (season aside)."""
    import csv
    import subprocess
    import sys

    from computewatch.sim import GroundTruth

    store, truth_path, out = tmp_path / "y.duckdb", tmp_path / "t.json", tmp_path / "r.csv"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "computewatch", *args],
                              capture_output=True, text=True, timeout=900)

    demo = run("demo", "--sites", "40", "--accelerators", "1200", "--days", "40",
               "--no-analyze", "--store", str(store), "--truth", str(truth_path),
               "--format", "json")
    assert demo.returncode == 0, demo.stderr
    assert "40 days: 936 h as rollups, the last 24 h at 1-minute resolution" in \
        " ".join(demo.stderr.split())
    truth = GroundTruth.load(truth_path)
    with DuckDBStore(store) as st:
        assert resolution(st, "accelerator", truth.start) == timedelta(hours=1)
        assert resolution(st, "accelerator", truth.end - timedelta(hours=2)) == timedelta(0)
    report = run("report", "--period", "2026", "--store", str(store), "--format", "csv",
                 "--out", str(out), "--definition", "time_weighted")
    assert report.returncode == 0, report.stderr
    rows = {r["id"]: r for r in csv.DictReader(out.open()) if r["level"] == "site"}
    written: dict[str, list[float]] = {}
    for a in truth.allocation:
        got = written.setdefault(a.site, [0.0, 0.0, 0.0])
        got[0] += sum(a.samples)
        got[1] += sum(a.utilization_sum)
        got[2] += (sum(a.samples) - sum(a.utilization_sum)) / 60.0 if a.namespace else 0.0
    fault = next(i.subject for i in truth.incidents if i.kind == "cooling_fault")
    for site, (samples, usum, held_idle) in written.items():
        r = rows[site]
        assert float(r["utilization"]) == pytest.approx(usum / samples, rel=1e-9), site
        assert float(r["idle_accelerator_hours"]) == pytest.approx(
            (samples - usum) / 60.0, rel=1e-9), site
        assert float(r["allocated_idle_hours"]) == pytest.approx(held_idle, rel=1e-9), site
        touching = sum(1 for lt in truth.links if site in (lt.src, lt.dst))
        assert float(r["link_probes"]) == pytest.approx(touching * 60 * 1440 * 40), site
    # 40 days of a year are below the completeness floor: the year report states no PUE.
    # Over the days held, every site's PUE (meters from the per-hour model) is the configured
    # one, the season's drift aside; the cooling fault's site is above it.
    span = Period(truth.start + timedelta(days=1), truth.end)
    with DuckDBStore(store) as st:
        pue = windowed_pue(meter_readings(st, span), span, POLICY, "all", by=("site",),
                           min_completeness=0.0).set_index("site").pue
    for site in written:
        if site != fault:
            assert pue[site] == pytest.approx(truth.site_pue[site], abs=0.05), site
    assert pue[fault] > truth.site_pue[fault] + 0.05
    # `analyze --since 2d` back from a time not on the hour (an agent's last sample)
    # reaches into the hourly rollups: read from the next whole hour, said on stderr,
    # every pipeline answers (the store refused the period before)
    until = (truth.end - timedelta(minutes=30)).isoformat()
    found = run("analyze", "--since", "2d", "--until", until, "--store", str(store),
                "--format", "json")
    assert found.returncode == 0, found.stderr
    assert "rollups" in found.stderr


def test_a_report_over_daily_rollups_reads_utc_days_and_says_so(stores):
    """China days start at 16:00 UTC, inside a daily rollup: the report reads the period
    from the next UTC midnight, states it, and its numbers are those of the UTC days."""
    from computewatch.findings import Analysis
    from computewatch.reports import build_report, parse_period, readable_period

    store, history = stores["daily"]
    asked = parse_period("2026-12-04/2026-12-05")  # China dates: 12-03 16:00 to 12-05 16:00
    assert asked.start == datetime(2026, 12, 3, 16, tzinfo=UTC)
    got = readable_period(store, asked)
    assert (got.start, got.end) == (START, END)
    assert "daily rollups" in got.note and got.label == asked.label
    assert readable_period(stores["hourly"][0], asked) == asked  # hours answer China days
    topology = history.fleet.topology
    report = build_report(store, topology, POLICY, got, Analysis.of(got.period, [], []))
    assert report.coverage["period_note"] == got.note
    want = utilization_totals(store, START, END, by=("site",)).set_index("site")
    rows = report.rows[report.rows.level == "site"].set_index("id")
    for site in want.index:
        assert rows.utilization[site] == pytest.approx(want.utilization[site], rel=1e-9)
        assert rows.idle_accelerator_hours[site] == pytest.approx(
            want.idle_accelerator_hours[site], rel=1e-9)


@pytest.mark.parametrize("name, since, until, start, end", [
    # 4 Dec 23:30 to 5 Dec 23:30 over hourly rollups: 5 Dec 00:00 to 23:00
    ("hourly", "1d", END - timedelta(minutes=30), START + timedelta(hours=24),
     END - timedelta(hours=1)),
    # 4 Dec 12:00 to 6 Dec 00:00 over daily rollups: 5 Dec 00:00 to 6 Dec 00:00
    ("daily", "36h", END, START + timedelta(days=1), END),
])
def test_a_cli_period_inside_rollups_is_read_in_whole_windows(
        stores, name, since, until, start, end, capsys):
    """`analyze --since 1d --until 23:30`: over rollups the store answers whole hours (or
    days), so the period's ends move inward to them and stderr says so (the windows by
    hand in the parameters)."""
    from computewatch.cli._common import period_of

    store = stores[name][0]
    got = period_of(store, since, until.isoformat())
    assert (got.start, got.end) == (start, end)
    assert "rollups" in capsys.readouterr().err
    store.query(Query("accelerator", ("utilization_ratio",), got.start, got.end,
                      agg=Aggregate.MEAN, group_by=("site",)))  # answered, not refused
    exact = period_of(store, "1d", END.isoformat())  # whole days: read as asked
    assert (exact.start, exact.end) == (END - timedelta(days=1), END)
