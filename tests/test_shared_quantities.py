"""One definition per quantity: utilization (both definitions), idle accelerator-hours and PUE
computed by hand on a small store, and the core functions, the national summary, the
pipelines' runner and the regulator report all stating exactly those numbers.

The store (DuckDB), 8 hours from T0 = 2026-10-01 00:00 China time, hub jjj:

- bj-ai (no cluster): card d0 at 0.2 for all 8 h; card d1 at 0.0 from 04:30 to the end.
  Both sample every 10 minutes, so a sample stands for 1/6 h. bj-ai's meters read every
  5 minutes from 15 minutes before T0: IT at 1,000 W, facility at 1,300 W, and the facility
  meter restarts from zero just after its 03:55 reading (a counter reset).
- zjk-a (cluster zhangjiakou): cards e0, e1 at 0.5 for all 8 h; meters IT 2,000 W, facility
  2,400 W, silent from 02:00 to 03:00 (no readings from 02:00 up to, not including, 03:00).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from computewatch.findings import Period
from computewatch.pipelines import PIPELINES, run_pipelines
from computewatch.policy import load_policy
from computewatch.pue import meter_readings, windowed_pue
from computewatch.reports import build_report, parse_period
from computewatch.store import DuckDBStore
from computewatch.summary import national_summary
from computewatch.topology import load_topology
from computewatch.utilization import (
    sampling_interval,
    utilization_totals,
    utilization_windows,
    window_totals,
)

TOPO = load_topology()
POLICY = load_policy(topology=TOPO)  # busy level 0.10; site minimum 0.30, hub 0.50; east PUE 1.25
T0 = datetime(2026, 9, 30, 16, tzinfo=UTC)  # 2026-10-01 00:00 in China
PERIOD = Period(T0, T0 + timedelta(hours=8))
REPORT_PERIOD = "2026-10-01T00:00/2026-10-01T08:00"  # the same 8 hours, China time

# Utilization, by hand. bj-ai: d0 48 samples x 0.2; d1 3 samples in 04:30-05:00 plus 18 in
# 05:00-08:00, 21 samples x 0.0.
BJ_SAMPLES, BJ_SUM = 48 + 21, 48 * 0.2
BJ_MEAN = BJ_SUM / BJ_SAMPLES  # 9.6 / 69 = 0.13913...
# Idle: each sample stands for 10 min: (48 x 0.8 + 21 x 1.0) / 6 = 59.4 / 6 = 9.9 h. (Had d1's
# half-covered 04:00 window counted as a whole accelerator-hour, as the underuse pipeline
# and the report once counted it, bj-ai would show 10.33 h.)
BJ_IDLE = (48 * 0.8 + 21 * 1.0) / 6
# Busy fraction: accelerator-windows with mean > 0.10: d0's 8 hourly windows are busy, d1's
# 4 (04:00 to 07:00) are not: 8 / 12.
BJ_BUSY = 8 / 12
ZJK_SAMPLES, ZJK_SUM = 96, 96 * 0.5  # 2 cards x 48 samples at 0.5
ZJK_IDLE = 96 * 0.5 / 6  # 8 h
JJJ_MEAN = (BJ_SUM + ZJK_SUM) / (BJ_SAMPLES + ZJK_SAMPLES)  # 57.6 / 165 = 0.34909...
JJJ_IDLE = BJ_IDLE + ZJK_IDLE  # 17.9 h

# PUE, by hand. The store keeps each meter's last reading per 15-minute slot, stamped at the
# slot's end. bj-ai: every slot covered; the reset is undone (the first reading after it is
# the energy since), so 8 h of energy at 1,300 W over 8 h at 1,000 W: PUE 1.3, completeness 1.
# zjk-a: the last reading before the silence (01:55) is stamped 02:00 and the next (03:10)
# 03:15: 75 minutes apart, more than the 30 allowed, so the five slots 02:00-03:15 are not
# covered: 27 of 32 slots, completeness 0.84375 (below the 0.90 floor: a report states no
# PUE); over the covered slots 2,400 / 2,000 = 1.2. The hub: a slot counts when every meter
# of the hub covers it, the same 27 slots: (1,300 + 2,400) / (1,000 + 2,000) = 37/30.
BJ_PUE, ZJK_PUE, JJJ_PUE = 1.3, 1.2, 37 / 30
ZJK_PUE_COMPLETENESS = 27 / 32


def _accelerators() -> pd.DataFrame:
    rows = []
    for k in range(48):
        t = T0 + timedelta(minutes=10 * k)
        cards = [("bj-ai", "jjj", "", "d0", 0.2), ("zjk-a", "jjj", "zhangjiakou", "e0", 0.5),
                 ("zjk-a", "jjj", "zhangjiakou", "e1", 0.5)]
        if t >= T0 + timedelta(hours=4, minutes=30):
            cards.append(("bj-ai", "jjj", "", "d1", 0.0))
        rows += [{"time": t, "site": site, "hub": hub, "cluster": cluster, "device": dev,
                  "vendor": "nvidia", "model": "H100", "ecosystem": "cuda",
                  "utilization_ratio": u} for site, hub, cluster, dev, u in cards]
    return pd.DataFrame(rows)


def _meters() -> pd.DataFrame:
    step = timedelta(minutes=5)
    times = [T0 - timedelta(minutes=15) + k * step for k in range(3 + 96)]  # to 07:55
    reset = T0 + timedelta(hours=3, minutes=55)
    rows = []
    for site, cluster, it_w, fac_w in (("bj-ai", "", 1000.0, 1300.0),
                                       ("zjk-a", "zhangjiakou", 2000.0, 2400.0)):
        for t in times:
            if site == "zjk-a" and T0 + timedelta(hours=2) <= t < T0 + timedelta(hours=3):
                continue  # the meters' silence
            s = (t - times[0]).total_seconds()
            fac = 2e6 + fac_w * s
            if site == "bj-ai" and t > reset:  # restarted from zero just after 03:55
                fac = fac_w * (t - reset).total_seconds()
            for scope, joules in (("it", 1e6 + it_w * s), ("facility", fac)):
                rows.append({"time": t, "site": site, "hub": "jjj", "cluster": cluster,
                             "meter": f"{site}-{scope}", "scope": scope,
                             "joules_total": joules})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = DuckDBStore(tmp_path_factory.mktemp("shared") / "shared.duckdb")
    s.write("accelerator", _accelerators())
    s.write("facility_power", _meters())
    yield s
    s.close()


def test_the_core_definitions_give_the_hand_numbers(store):
    assert sampling_interval(store, PERIOD.start, PERIOD.end) == timedelta(minutes=10)
    totals = utilization_totals(store, PERIOD.start, PERIOD.end, by=("site",)).set_index("site")
    assert totals.at["bj-ai", "samples"] == BJ_SAMPLES
    assert totals.at["bj-ai", "utilization"] == pytest.approx(BJ_MEAN)
    assert totals.at["bj-ai", "idle_accelerator_hours"] == pytest.approx(BJ_IDLE)
    assert totals.at["zjk-a", "idle_accelerator_hours"] == pytest.approx(ZJK_IDLE)
    for definition, value in (("time_weighted", BJ_MEAN), ("busy_fraction", BJ_BUSY)):
        sites = utilization_windows(store, PERIOD, TOPO, definition=definition,
                                    busy_level=0.10)["site"]
        # idle accelerator-hours are one quantity, whichever utilization definition
        assert window_totals(sites[sites.subject == "bj-ai"]) == (
            pytest.approx(value), pytest.approx(BJ_IDLE))
    hubs = utilization_windows(store, PERIOD, TOPO)["hub"]
    assert window_totals(hubs[hubs.subject == "jjj"]) == (pytest.approx(JJJ_MEAN),
                                                          pytest.approx(JJJ_IDLE))

    readings = meter_readings(store, PERIOD)
    sites = windowed_pue(readings, PERIOD, POLICY, "all").set_index("site")
    assert sites.at["bj-ai", "pue"] == pytest.approx(BJ_PUE)
    assert sites.at["bj-ai", "completeness"] == 1.0 and sites.at["bj-ai", "resets"] == 1
    assert np.isnan(sites.at["zjk-a", "pue"])  # below the completeness floor
    assert sites.at["zjk-a", "completeness"] == pytest.approx(ZJK_PUE_COMPLETENESS)
    stated = windowed_pue(readings, PERIOD, POLICY, "all", min_completeness=0.0)
    assert stated.set_index("site").at["zjk-a", "pue"] == pytest.approx(ZJK_PUE)


def test_the_summary_states_the_hand_numbers(store):
    s = national_summary(store, TOPO, POLICY, PERIOD.start, PERIOD.end)
    jjj = s.rows[(s.rows.level == "hub") & (s.rows.hub == "jjj")].iloc[0]
    assert jjj.accelerators == 4
    assert jjj.mean_utilization == pytest.approx(JJJ_MEAN)
    assert jjj.idle_accelerator_hours == pytest.approx(JJJ_IDLE)
    assert jjj.pue == pytest.approx(JJJ_PUE)
    assert jjj.pue_completeness == pytest.approx(ZJK_PUE_COMPLETENESS)
    zjk = s.rows[(s.rows.level == "cluster") & (s.rows.cluster == "zhangjiakou")].iloc[0]
    assert zjk.mean_utilization == pytest.approx(0.5)
    assert zjk.idle_accelerator_hours == pytest.approx(ZJK_IDLE)
    assert zjk.pue == pytest.approx(ZJK_PUE)
    national = s.rows[s.rows.level == "national"].iloc[0]
    assert national.idle_accelerator_hours == pytest.approx(JJJ_IDLE)
    assert national.pue == pytest.approx(JJJ_PUE)


def test_the_runner_states_the_hand_numbers(store):
    # The hub on the time-weighted mean (the policy judges hubs on the busy fraction).
    analysis = run_pipelines(store, PERIOD, POLICY, TOPO, only=("underuse", "pue"),
                             write=False, registry={**PIPELINES,
                                                    "underuse": _time_weighted_underuse})
    assert analysis.succeeded == ("underuse", "pue") and analysis.failed == ()
    by = {(f.rule, f.subject): f for f in analysis.findings}
    # bj-ai is below its 0.30 minimum in all 8 windows: one episode, the whole period.
    site = by[("site_below_minimum", "bj-ai")]
    assert (site.start, site.end) == (PERIOD.start, PERIOD.end)
    assert site.observed == pytest.approx(BJ_MEAN)
    assert site.detail["idle_accelerator_hours"] == pytest.approx(BJ_IDLE)
    hub = by[("hub_below_minimum", "jjj")]
    assert hub.observed == pytest.approx(JJJ_MEAN)
    assert hub.detail["idle_accelerator_hours"] == pytest.approx(JJJ_IDLE)
    assert ("site_below_minimum", "zjk-a") not in by  # 0.5 >= 0.30
    over = by[("pue_over_target", "bj-ai")]
    assert over.observed == pytest.approx(BJ_PUE) and over.threshold == 1.25
    incomplete = by[("pue_incomplete", "zjk-a")]
    assert incomplete.observed == pytest.approx(ZJK_PUE_COMPLETENESS)
    busy = run_pipelines(store, PERIOD, POLICY, TOPO, only=("underuse",), write=False,
                         registry={"underuse": _busy_fraction_underuse})
    assert ("site_below_minimum", "bj-ai") not in {(f.rule, f.subject) for f in busy.findings}


def _time_weighted_underuse(store, period, policy, topology):
    from computewatch.pipelines import underuse

    return underuse.run(store, period, policy, topology, definition="time_weighted")


def _busy_fraction_underuse(store, period, policy, topology):
    from computewatch.pipelines import underuse

    return underuse.run(store, period, policy, topology, definition="busy_fraction")


@pytest.mark.parametrize(("definition", "bj_value"), [("time_weighted", BJ_MEAN),
                                                      ("busy_fraction", BJ_BUSY)])
def test_the_report_states_the_hand_numbers(store, definition, bj_value):
    period = parse_period(REPORT_PERIOD)
    assert period.period == PERIOD
    analysis = run_pipelines(store, PERIOD, POLICY, TOPO, only=("underuse", "pue"),
                             write=False)
    report = build_report(store, TOPO, POLICY, period, analysis, definition=definition)
    rows = report.rows.set_index(["level", "id"])
    bj, zjk, jjj = rows.loc[("site", "bj-ai")], rows.loc[("site", "zjk-a")], \
        rows.loc[("hub", "jjj")]
    assert bj.utilization == pytest.approx(bj_value)
    assert bj.idle_accelerator_hours == pytest.approx(BJ_IDLE)
    assert zjk.idle_accelerator_hours == pytest.approx(ZJK_IDLE)
    assert jjj.idle_accelerator_hours == pytest.approx(JJJ_IDLE)
    if definition == "time_weighted":
        assert jjj.utilization == pytest.approx(JJJ_MEAN)
    assert bj.pue == pytest.approx(BJ_PUE) and bj.pue_completeness == 1.0
    assert bj.pue_verdict == "fail"  # 1.3 > the eastern target 1.25
    assert np.isnan(zjk.pue) and zjk.pue_verdict == "incomplete"
    assert zjk.pue_completeness == pytest.approx(ZJK_PUE_COMPLETENESS)
    assert jjj.pue_completeness == pytest.approx(ZJK_PUE_COMPLETENESS)
    assert report.pipelines == {"underuse": str(analysis.status[0]),
                                "pue": str(analysis.status[1])}
    assert report.findings.equals(analysis.frame())  # the national scope keeps them all


@pytest.mark.parametrize("offset_min", [0, 10, 25, 30, 45])
def test_idle_hours_do_not_depend_on_how_the_windows_line_up(offset_min):
    """Two cards at 0.25 every 10 minutes from 07:05 to 11:55 but silent 09:00-10:00: 30 - 6
    = 24 samples each, each standing for 10 minutes, so (1 - 0.25) x 48 / 6 = 6 idle
    accelerator-hours, however the hourly windows are laid over the data (issue 13: partly
    covered windows count only their covered time, and the gap does not stretch a sample)."""
    store = DuckDBStore(":memory:")
    t0 = T0 + timedelta(hours=7, minutes=5)
    times = [t0 + timedelta(minutes=10 * k) for k in range(30)]
    times = [t for t in times if not T0 + timedelta(hours=9) <= t < T0 + timedelta(hours=10)]
    store.write("accelerator", pd.DataFrame([
        {"time": t, "site": "bj-ai", "hub": "jjj", "device": d, "utilization_ratio": 0.25}
        for t in times for d in ("d0", "d1")]))
    start = T0 + timedelta(hours=6, minutes=offset_min)
    period = Period(start, start + timedelta(hours=8))
    want = 0.75 * 2 * len(times) / 6
    assert sampling_interval(store, period.start, period.end) == timedelta(minutes=10)
    windows = utilization_windows(store, period, TOPO)["site"]
    assert windows.idle_hours.sum() == pytest.approx(want)
    totals = utilization_totals(store, period.start, period.end, by=("site",))
    assert totals.idle_accelerator_hours.sum() == pytest.approx(want)


def test_a_gap_before_the_last_hour_does_not_stretch_the_sampling_interval():
    # Every 10 minutes in the even hours only: the last hour of data follows a silent hour.
    store = DuckDBStore(":memory:")
    store.write("accelerator", pd.DataFrame([
        {"time": T0 + timedelta(hours=h, minutes=m), "site": "bj-ai", "hub": "jjj",
         "device": "d0", "utilization_ratio": 0.25}
        for h in range(0, 24, 2) for m in range(0, 60, 10)]))
    assert sampling_interval(store, T0, T0 + timedelta(hours=24)) == timedelta(minutes=10)


def test_window_totals_of_arrays_are_the_frames_to_the_bit():
    """The report sums a subject's windows from arrays (`_rows_by`), underuse from a frame:
    the same numbers, NaN skipped. By hand: weights 2 + 2 (the NaN one counts for nothing),
    values 0.5 and 0.25 weighted: (1.0 + 0.5) / 4; idle 1 + 2 hours."""
    from types import SimpleNamespace

    frame = pd.DataFrame({"value": [0.5, np.nan, 0.25], "weight": [2.0, np.nan, 2.0],
                          "idle_hours": [1.0, 2.0, np.nan]})
    arrays = SimpleNamespace(**{c: frame[c].to_numpy() for c in frame})
    assert window_totals(frame) == window_totals(arrays) == (0.375, 3.0)
    empty = window_totals(frame.iloc[0:0])
    assert np.isnan(empty[0]) and empty[1] == 0.0
