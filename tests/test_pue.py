"""Energy-based PUE per window: known answers, resets, gaps, missing meters, calendar windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from computewatch.pue import monotonic_energy, power_ratio, window_edges, window_pue

T0 = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)  # 08:00 China time
MIN = timedelta(minutes=1)


def meter(site: str, name: str, scope: str, watts, start=T0, step=MIN, offset_j=1e9,
          skip: tuple[datetime, datetime] | None = None) -> pd.DataFrame:
    """Counter readings of a meter drawing ``watts[k]`` W during step k."""
    watts = np.asarray(watts, dtype=float)
    times = [start + k * step for k in range(len(watts) + 1)]
    joules = offset_j + np.concatenate([[0.0], np.cumsum(watts * step.total_seconds())])
    df = pd.DataFrame({"time": times, "site": site, "meter": name, "scope": scope,
                       "joules": joules})
    if skip:
        df = df[(df.time < skip[0]) | (df.time > skip[1])]
    return df


def test_each_window_has_its_exact_pue():
    it = meter("s1", "s1-it", "it", [1000.0] * 120)
    fac = meter("s1", "s1-main", "facility", [1300.0] * 60 + [1500.0] * 60)
    got = window_pue(pd.concat([it, fac]), T0, T0 + timedelta(hours=2), "1h")
    assert got.pue.tolist() == pytest.approx([1.3, 1.5])
    assert got.completeness.tolist() == [1.0, 1.0] and got.flag.tolist() == ["ok", "ok"]
    assert got.it_joules.tolist() == pytest.approx([3.6e6, 3.6e6])
    assert got.facility_joules.tolist() == pytest.approx([1300 * 3600.0, 1500 * 3600.0])
    quarter = window_pue(pd.concat([it, fac]), T0, T0 + timedelta(hours=2), "15m")
    assert len(quarter) == 8 and quarter.pue.tolist() == pytest.approx([1.3] * 4 + [1.5] * 4)


def test_two_it_meters_are_summed_and_pue_is_energy_not_mean_of_ratios():
    # IT: 600 W + 400 W; facility 1,500 W for 10 min then 1,100 W for 50 min.
    it1 = meter("s1", "s1-it-a", "it", [600.0] * 60)
    it2 = meter("s1", "s1-it-b", "it", [400.0] * 60)
    fac = meter("s1", "s1-main", "facility", [1500.0] * 10 + [1100.0] * 50)
    got = window_pue(pd.concat([it1, it2, fac]), T0, T0 + timedelta(hours=1), "1h")
    assert got.pue[0] == pytest.approx((1500 * 10 + 1100 * 50) / (1000 * 60))


def test_missing_it_readings_make_the_window_incomplete_and_the_pue_is_not_invented():
    it = meter("s1", "s1-it", "it", [1000.0] * 120,
               skip=(T0 + timedelta(minutes=70), T0 + timedelta(minutes=89)))
    fac = meter("s1", "s1-main", "facility", [1300.0] * 120)
    got = window_pue(pd.concat([it, fac]), T0, T0 + timedelta(hours=2), "1h")
    first, second = got.iloc[0], got.iloc[1]
    assert first.flag == "ok" and first.pue == pytest.approx(1.3)
    # Readings at 69 and 90 min: 21 minutes without a reading, beyond the 5-minute max gap.
    assert second.flag == "incomplete"
    assert second.completeness == pytest.approx(39 / 60)
    assert np.isnan(second.pue)  # below the 0.9 floor: not reported
    lenient = window_pue(pd.concat([it, fac]), T0, T0 + timedelta(hours=2), "1h",
                         min_completeness=0.5)
    # Over the covered 39 minutes both meters are known: the ratio is still exact.
    assert lenient.pue[1] == pytest.approx(1.3) and lenient.flag[1] == "incomplete"
    assert lenient.it_joules[1] == pytest.approx(1000 * 39 * 60)


def test_a_short_gap_is_bridged_by_the_counter():
    it = meter("s1", "s1-it", "it", [1000.0] * 60,
               skip=(T0 + timedelta(minutes=20), T0 + timedelta(minutes=22)))
    fac = meter("s1", "s1-main", "facility", [1250.0] * 60)
    got = window_pue(pd.concat([it, fac]), T0, T0 + timedelta(hours=1), "1h")
    assert got.completeness[0] == 1.0 and got.pue[0] == pytest.approx(1.25)


def test_counter_reset_is_not_negative_energy():
    fac = meter("s1", "s1-main", "facility", [1300.0] * 60)
    # The meter restarts right after the 30-minute reading: from then on it counts from 0.
    after = fac.time > T0 + timedelta(minutes=30)
    base = fac.loc[fac.time == T0 + timedelta(minutes=30), "joules"].iloc[0]
    fac.loc[after, "joules"] -= base
    it = meter("s1", "s1-it", "it", [1000.0] * 60)
    got = window_pue(pd.concat([it, fac]), T0, T0 + timedelta(hours=1), "1h")
    assert got.pue[0] == pytest.approx(1.3) and got.resets[0] == 1


def test_a_missing_meter_and_a_site_without_it_metering():
    it = meter("s1", "s1-it", "it", [1000.0] * 60)
    fac = meter("s1", "s1-main", "facility", [1300.0] * 60)
    only_fac = meter("s2", "s2-main", "facility", [900.0] * 60)
    data = pd.concat([it, fac, only_fac])
    expected = {("s1",): {"facility": ["s1-main"], "it": ["s1-it", "s1-it-b"]},
                ("s2",): {"facility": ["s2-main"]}}
    got = window_pue(data, T0, T0 + timedelta(hours=1), "1h", expected=expected)
    s1 = got[got.site == "s1"].iloc[0]
    s2 = got[got.site == "s2"].iloc[0]
    assert s1.completeness == 0.0 and s1.flag == "incomplete" and np.isnan(s1.pue)
    assert s2.flag == "no_it_meter" and np.isnan(s2.pue)


def test_month_with_a_day_of_missing_readings():
    # October 2026 in China time, 15-minute readings, one day (Oct 10) without IT readings.
    start = datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    step = timedelta(minutes=15)
    n = 31 * 96
    day10 = (start + timedelta(days=9), start + timedelta(days=10))
    it = meter("s1", "s1-it", "it", [2000.0] * n, start=start, step=step,
               skip=(day10[0] + step / 2, day10[1] - step / 2))
    fac = meter("s1", "s1-main", "facility", [2400.0] * n, start=start, step=step)
    data = pd.concat([it, fac])
    month = window_pue(data, start, start + timedelta(days=31), "month",
                       slot=timedelta(minutes=15), max_gap=timedelta(minutes=30))
    assert len(month) == 1 and month.window_start[0] == pd.Timestamp(start)
    assert month.completeness[0] == pytest.approx(30 / 31)
    assert month.pue[0] == pytest.approx(1.2) and month.flag[0] == "incomplete"
    days = window_pue(data, start, start + timedelta(days=31), "1d",
                      slot=timedelta(minutes=15), max_gap=timedelta(minutes=30))
    assert len(days) == 31
    bad = days[days.completeness < 1]
    assert len(bad) == 1 and bad.window_start.iloc[0] == pd.Timestamp(day10[0])
    assert np.isnan(bad.pue.iloc[0]) and bad.completeness.iloc[0] == 0.0
    assert days.pue.dropna().tolist() == pytest.approx([1.2] * 30)


def test_windows_are_aligned_in_china_time():
    edges = window_edges(datetime(2026, 10, 1, 3, tzinfo=UTC), datetime(2026, 10, 2, 3, tzinfo=UTC),
                         "1d")
    assert [e.isoformat() for e in edges] == ["2026-09-30T16:00:00+00:00",
                                              "2026-10-01T16:00:00+00:00",
                                              "2026-10-02T16:00:00+00:00"]
    months = window_edges(datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC),
                          "month")
    assert len(months) == 4  # Oct, Nov, and Dec (Dec 1 00:00 UTC is 08:00 in China)
    with pytest.raises(ValueError, match="unknown window"):
        window_edges(T0, T0 + MIN, "fortnight")


def test_monotonic_energy_restart_rule():
    cum, resets = monotonic_energy(np.array([0, 1, 2, 3]), np.array([100.0, 160.0, 20.0, 50.0]))
    assert cum.tolist() == [0.0, 60.0, 80.0, 110.0] and resets == 1


def test_power_ratio_is_a_separate_instantaneous_quantity():
    w = pd.DataFrame({"time": [T0, T0, T0 + MIN, T0 + MIN], "site": "s1",
                      "scope": ["facility", "it", "facility", "it"],
                      "watts": [1300.0, 1000.0, 1200.0, 0.0]})
    got = power_ratio(w)
    assert got.power_ratio[0] == pytest.approx(1.3) and np.isnan(got.power_ratio[1])


def test_the_all_window_is_the_requested_range():
    it = meter("s1", "s1-it", "it", [1000.0] * 90)
    fac = meter("s1", "s1-main", "facility", [1200.0] * 30 + [1500.0] * 60)
    start = T0 + timedelta(minutes=5)
    got = window_pue(pd.concat([it, fac]), start, T0 + timedelta(minutes=65), "all")
    assert len(got) == 1 and got.window_start[0] == pd.Timestamp(start)
    assert got.pue[0] == pytest.approx((1200 * 25 + 1500 * 35) / (1000 * 60))
