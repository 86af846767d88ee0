"""Underuse on hand-computable data: thresholds, sustained episodes, gaps, definitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from computewatch.findings import Period, Severity
from computewatch.pipelines import pue as pue_pipeline
from computewatch.pipelines.underuse import run
from computewatch.policy import load_policy
from computewatch.store import DuckDBStore
from computewatch.topology import load_topology

T0 = datetime(2026, 10, 1, tzinfo=UTC)
TOPO = load_topology()
POLICY = load_policy()  # site minimum 0.30, sustained 6 h, busy level 0.10


def write_site(store, site: str, hourly: list[float | None], devices: int = 4) -> None:
    """Each device reports ``hourly[h]`` every 10 minutes of hour h (None: no data)."""
    s = TOPO.site(site)
    rows = []
    for h, u in enumerate(hourly):
        if u is None:
            continue
        for m in range(0, 60, 10):
            for d in range(devices):
                rows.append({"time": T0 + timedelta(hours=h, minutes=m), "site": site,
                             "hub": s.hub, "cluster": s.cluster or "",
                             "device": f"{site}-d{d}", "utilization_ratio": u})
    store.write("accelerator", pd.DataFrame(rows))


@pytest.fixture
def store(tmp_path):
    s = DuckDBStore(tmp_path / "u.duckdb")
    yield s
    s.close()


def site_findings(findings, site):
    return [f for f in findings if f.rule == "site_below_minimum" and f.subject == site]


def test_a_site_exactly_at_its_minimum_is_not_flagged(store):
    write_site(store, "bj-ai", [0.30] * 12)
    assert site_findings(run(store, Period(T0, T0 + timedelta(hours=12)), POLICY, TOPO),
                         "bj-ai") == []


def test_sustained_episode_with_its_period_severity_and_idle_hours(store):
    # 3 h fine, 7 h at 0.10 (critical: below half of 0.30), 2 h fine.
    write_site(store, "bj-ai", [0.6] * 3 + [0.10] * 7 + [0.6] * 2)
    (f,) = site_findings(run(store, Period(T0, T0 + timedelta(hours=12)), POLICY, TOPO),
                         "bj-ai")
    assert f.start == T0 + timedelta(hours=3) and f.end == T0 + timedelta(hours=10)
    assert f.observed == pytest.approx(0.10) and f.threshold == 0.30
    assert f.severity is Severity.CRITICAL and f.completeness == 1.0
    assert f.detail["idle_accelerator_hours"] == pytest.approx(4 * 7 * 0.9)
    assert "time-weighted" in f.definition


def test_a_shortfall_shorter_than_the_sustained_window_is_not_flagged(store):
    write_site(store, "bj-ai", [0.6] * 3 + [0.2] * 5 + [0.6] * 4)
    assert site_findings(run(store, Period(T0, T0 + timedelta(hours=12)), POLICY, TOPO),
                         "bj-ai") == []
    # With a 4-hour rule the same 5 hours are one warning episode (0.2 is not below 0.15).
    (f,) = site_findings(run(store, Period(T0, T0 + timedelta(hours=12)), POLICY, TOPO,
                             sustained_hours=4), "bj-ai")
    assert f.severity is Severity.WARNING and f.end - f.start == timedelta(hours=5)


def test_a_gap_in_the_data_lowers_completeness_and_keeps_the_episode(store):
    # 4 h low, 1 h without data, 4 h low: one 9-hour shortfall seen in 8 of its 9 hours
    # (issue 13: gaps lower completeness, they do not split or erase a finding).
    write_site(store, "bj-ai", [0.1] * 4 + [None] + [0.1] * 4)
    period = Period(T0, T0 + timedelta(hours=9))
    for sustained in (None, 4):
        (f,) = site_findings(run(store, period, POLICY, TOPO, sustained_hours=sustained),
                             "bj-ai")
        assert (f.start, f.end) == (T0, T0 + timedelta(hours=9))
        assert f.observed == pytest.approx(0.1)
        assert f.completeness == pytest.approx(8 / 9)
        assert f.detail["idle_accelerator_hours"] == pytest.approx(4 * 8 * 0.9)


def test_cluster_and_hub_levels_weight_sites_by_samples(store):
    # Zhangjiakou sites: zjk-a 8 cards at 0.2, zjk-b 2 cards at 0.8 -> cluster 0.32 < 0.50.
    write_site(store, "zjk-a", [0.2] * 8, devices=8)
    write_site(store, "zjk-b", [0.8] * 8, devices=2)
    findings = run(store, Period(T0, T0 + timedelta(hours=8)), POLICY, TOPO,
                   definition="time_weighted")
    (cl,) = [f for f in findings if f.rule == "cluster_below_minimum"]
    assert cl.subject == "zhangjiakou" and cl.observed == pytest.approx((8 * 0.2 + 2 * 0.8) / 10)


def test_busy_fraction_definition(store):
    # Two of four cards busy (0.5) and two idle (0.05): busy fraction 0.5; mean 0.275.
    s = TOPO.site("bj-ai")
    rows = [{"time": T0 + timedelta(hours=h, minutes=m), "site": "bj-ai", "hub": s.hub,
             "device": f"d{d}", "utilization_ratio": 0.5 if d < 2 else 0.05}
            for h in range(8) for m in range(0, 60, 10) for d in range(4)]
    store.write("accelerator", pd.DataFrame(rows))
    period = Period(T0, T0 + timedelta(hours=8))
    (tw,) = site_findings(run(store, period, POLICY, TOPO), "bj-ai")
    assert tw.observed == pytest.approx(0.275)
    assert site_findings(run(store, period, POLICY, TOPO, definition="busy_fraction"),
                         "bj-ai") == []  # 0.5 of card-hours busy: above 0.30
    with pytest.raises(ValueError, match="unknown definition"):
        run(store, period, POLICY, TOPO, definition="vibes")


def test_pue_pipeline_month_with_a_day_of_missing_meter_readings(store):
    start = datetime(2026, 9, 30, 16, tzinfo=UTC)  # October in China time
    step = timedelta(minutes=15)
    n = 31 * 96
    rows = []
    for scope, watts in (("facility", 1300.0), ("it", 1000.0)):
        for k in range(n + 1):
            t = start + k * step
            if scope == "it" and start + timedelta(days=9) < t < start + timedelta(days=10):
                continue  # October 10: the IT meter's readings never arrived
            rows.append({"time": t, "site": "bj-ai", "hub": "jjj", "meter": f"bj-ai-{scope}",
                         "scope": scope, "watts": watts,
                         "joules_total": 1e9 + watts * step.total_seconds() * k})
    store.write("facility_power", pd.DataFrame(rows))
    findings = pue_pipeline.run(store, Period(start, start + timedelta(days=31)), POLICY, TOPO)
    incomplete = [f for f in findings if f.rule == "pue_incomplete"]
    assert [f.start for f in incomplete] == [start + timedelta(days=9)]
    over = [f for f in findings if f.rule == "pue_over_target"]
    (month,) = [f for f in over if f.end - f.start == timedelta(days=31)
                and "month" in f.definition]
    assert month.observed == pytest.approx(1.3) and month.threshold == 1.25
    assert month.completeness == pytest.approx(30 / 31, abs=0.002)
    days = [f for f in over if f.end - f.start == timedelta(days=1)]
    assert len(days) == 30 and np.allclose([f.observed for f in days], 1.3)


def test_pue_pipeline_fully_metered_days_are_complete(store):
    """The reading just before the period opens is the first slot's baseline: a day metered
    throughout is 100% complete, not 95/96."""
    start = datetime(2026, 9, 30, 16, tzinfo=UTC)  # October 1 in China time
    step = timedelta(minutes=15)
    rows = [{"time": start + k * step - timedelta(minutes=1), "site": "bj-ai", "hub": "jjj",
             "meter": f"bj-ai-{scope}", "scope": scope, "watts": watts,
             "joules_total": 1e9 + watts * step.total_seconds() * k}
            for scope, watts in (("facility", 1300.0), ("it", 1000.0))
            for k in range(2 * 96 + 2)]
    store.write("facility_power", pd.DataFrame(rows))
    findings = pue_pipeline.run(store, Period(start, start + timedelta(days=2)), POLICY, TOPO)
    days = [f for f in findings if f.rule == "pue_over_target"
            and f.end - f.start == timedelta(days=1)]
    assert [f.start for f in days] == [start, start + timedelta(days=1)]
    assert [f.completeness for f in days] == [1.0, 1.0]
    assert all(f.observed == pytest.approx(1.3) for f in days)


def test_pue_pipeline_merges_adjacent_unmetered_days_into_one_finding(store):
    """A month of which the store holds two days: one finding for the 29 days without meter
    readings (and one for the month, which is also the whole period: issue 13.6, one finding
    per site and window, not one for "all" and another for "month"), not 29."""
    start = datetime(2026, 9, 30, 16, tzinfo=UTC)  # October in China time
    step = timedelta(minutes=15)
    rows = [{"time": start + k * step - timedelta(minutes=1), "site": "bj-ai", "hub": "jjj",
             "meter": f"bj-ai-{scope}", "scope": scope, "watts": watts,
             "joules_total": 1e9 + watts * step.total_seconds() * k}
            for scope, watts in (("facility", 1300.0), ("it", 1000.0))
            for k in range(2 * 96 + 1)]
    store.write("facility_power", pd.DataFrame(rows))
    month_end = start + timedelta(days=31)
    findings = pue_pipeline.run(store, Period(start, month_end), POLICY, TOPO)
    incomplete = sorted((f for f in findings if f.rule == "pue_incomplete"),
                        key=lambda f: (f.end - f.start, f.start))
    days, *whole = incomplete
    assert (days.start, days.end) == (start + timedelta(days=2), month_end)
    assert days.completeness == 0.0 and "29 consecutive 1d windows" in days.message
    assert [(f.start, f.end) for f in whole] == [(start, month_end)]  # the month = "all"
    assert whole[0].detail["window"] == "month"
    assert all(f.completeness == pytest.approx(2 / 31) for f in whole)
    over = [f for f in findings if f.rule == "pue_over_target" and f.end - f.start ==
            timedelta(days=1)]
    assert [f.start for f in over] == [start, start + timedelta(days=1)]


# --- issue 13: churn, gaps, silent sites, definitions, chronic or acute ----------------------

def write_cards(store, site: str, cards: list[float], hours: int) -> None:
    """Card k reports ``cards[k]`` every 10 minutes for ``hours`` hours."""
    s = TOPO.site(site)
    store.write("accelerator", pd.DataFrame([
        {"time": T0 + timedelta(hours=h, minutes=m), "site": site, "hub": s.hub,
         "cluster": s.cluster or "", "device": f"{site}-c{k}", "utilization_ratio": u}
        for h in range(hours) for m in range(0, 60, 10) for k, u in enumerate(cards)]))


def test_a_site_at_its_minimum_on_the_busy_fraction_is_not_flagged(store):
    # Two of four cards busy all day: busy fraction 0.5, the cluster minimum, a tie.
    write_cards(store, "zjk-a", [0.6, 0.6, 0.02, 0.02], hours=12)
    findings = run(store, Period(T0, T0 + timedelta(hours=12)), POLICY, TOPO)
    assert [f for f in findings if f.rule == "cluster_below_minimum"] == []


def test_a_site_at_a_quarter_with_every_other_hour_missing(store):
    # 0.25 in the even hours of a day, nothing in the odd ones: still below 0.30 on every
    # 6-hour rolling mean (three hours of data each); one finding for the day, half seen.
    write_site(store, "bj-ai", [0.25 if h % 2 == 0 else None for h in range(24)])
    (f,) = site_findings(run(store, Period(T0, T0 + timedelta(hours=24)), POLICY, TOPO),
                         "bj-ai")
    assert (f.start, f.end) == (T0, T0 + timedelta(hours=24))
    assert f.observed == pytest.approx(0.25) and f.severity is Severity.WARNING
    assert f.completeness == pytest.approx(0.5)
    assert f.detail["windows_with_data"] == 12 and f.detail["windows"] == 24
    assert f.detail["idle_accelerator_hours"] == pytest.approx(4 * 12 * 0.75)
    assert "50% of the data" in f.message


def test_a_busy_hour_inside_an_underused_day_does_not_split_it(store):
    # 0.20 all day but 0.50 from 11:00 to 12:00 (job churn). Every 6-hour run holding the
    # busy hour averages (5 x 0.20 + 0.50) / 6 = 0.25 < 0.30: one episode, the whole day.
    hourly = [0.2] * 11 + [0.5] + [0.2] * 12
    (f,) = site_findings(run_with(store, "bj-ai", hourly), "bj-ai")
    assert (f.start, f.end) == (T0, T0 + timedelta(hours=24))
    assert f.observed == pytest.approx((23 * 0.2 + 0.5) / 24)
    assert f.detail["chronic"] is True


def run_with(store, site, hourly):
    write_site(store, site, hourly)
    return run(store, Period(T0, T0 + timedelta(hours=len(hourly))), POLICY, TOPO)


def test_a_busy_edge_is_trimmed_and_a_busier_burst_splits(store):
    # 0.1 for 8 h, 0.9 for 2 h, 0.1 for 8 h: runs holding the burst average up to 0.37, so
    # two episodes, each ending or starting on a low hour, not on the burst.
    hourly = [0.1] * 8 + [0.9] * 2 + [0.1] * 8
    a, b = sorted(site_findings(run_with(store, "bj-ai", hourly), "bj-ai"),
                  key=lambda f: f.start)
    assert (a.start, a.end) == (T0, T0 + timedelta(hours=8))
    assert (b.start, b.end) == (T0 + timedelta(hours=10), T0 + timedelta(hours=18))
    assert a.observed == pytest.approx(0.1) and b.observed == pytest.approx(0.1)


def test_a_silent_site_in_a_cluster_and_a_hub_lowers_their_completeness(store):
    # Zhangjiakou has four sites; only zjk-a reports (4 cards, all idle at 0.02). The
    # cluster's busy fraction is 0 for 8 hours, but three of its four sites said nothing:
    # completeness 1/4, not 1. Hub jjj has seven sites: 1/7.
    write_site(store, "zjk-a", [0.02] * 8)
    findings = run(store, Period(T0, T0 + timedelta(hours=8)), POLICY, TOPO)
    (cl,) = [f for f in findings if f.rule == "cluster_below_minimum"]
    assert cl.subject == "zhangjiakou" and cl.observed == 0.0
    assert cl.completeness == pytest.approx(1 / 4)
    (hub,) = [f for f in findings if f.rule == "hub_below_minimum"]
    assert hub.subject == "jjj" and hub.completeness == pytest.approx(1 / 7)
    (site,) = site_findings(findings, "zjk-a")
    assert site.completeness == 1.0  # the site itself reported every sample


def test_each_level_applies_the_policy_definition_and_states_it(store):
    # Four cards: two at 0.35, two idle at 0.02 -> time-weighted 0.185 (< 0.30 at the site),
    # busy fraction 0.5 (not below the cluster's 0.50): the policy judges sites on the mean
    # and clusters, hubs and provinces on the busy fraction.
    write_cards(store, "zjk-a", [0.35, 0.35, 0.02, 0.02], hours=8)
    findings = run(store, Period(T0, T0 + timedelta(hours=8)), POLICY, TOPO)
    (site,) = site_findings(findings, "zjk-a")
    assert site.observed == pytest.approx(0.185)
    assert site.detail["definition"] == "time_weighted" and "time-weighted" in site.definition
    assert "utilization 18.5%" in site.message
    assert [f.rule for f in findings if f.subject_type != "site"] == []
    # The same data judged on the busy fraction everywhere: the site is not below either.
    assert run(store, Period(T0, T0 + timedelta(hours=8)), POLICY, TOPO,
               definition="busy_fraction") == []


def test_an_idle_afternoon_of_a_busy_site_is_acute_and_an_underused_day_chronic(store):
    hourly = [0.7] * 10 + [0.02] * 7 + [0.7] * 7
    (idle,) = site_findings(run_with(store, "bj-ai", hourly), "bj-ai")
    assert (idle.start, idle.end) == (T0 + timedelta(hours=10), T0 + timedelta(hours=17))
    assert idle.detail["chronic"] is False and idle.message.startswith("site bj-ai: new: ")
    (day,) = site_findings(run_with(store, "zjk-a", [0.2] * 24), "zjk-a")
    assert day.detail["chronic"] is True and "new" not in day.message
