"""Facility truth on hand-computed meters: every declared meter of a site accounted for,
power-only meters integrated and mixed with counters, counter resets on raw readings, one
PUE finding per site and window, and the ISO/IEC 30134-2 labels (issues 13.6 and 14.1-3).

Each case is written into a real DuckDB store at 1-minute readings and read back the way the
summary, the pipelines and the report read it (`meter_readings` + `windowed_pue`), over one
China day, 2026-10-01 (UTC 2026-09-30 16:00 to 2026-10-01 16:00). Sites are in hub jjj
(east: PUE target 1.25).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from computewatch.findings import Period
from computewatch.pipelines import run_pipelines
from computewatch.policy import load_policy
from computewatch.pue import meter_readings, pue_label, window_pue, windowed_pue
from computewatch.reports import build_report, parse_period, render_html
from computewatch.store import DuckDBStore
from computewatch.topology import Site, Topology, load_topology

SHIPPED = load_topology()
POLICY = load_policy()
DAY0 = datetime(2026, 9, 30, 16, tzinfo=UTC)  # 2026-10-01 00:00 China time
DAY = Period(DAY0, DAY0 + timedelta(days=1))
MIN = timedelta(minutes=1)
# Readings every minute from 15 minutes before the day to 15 minutes after it.
TIMES = [DAY0 - 15 * MIN + k * MIN for k in range(24 * 60 + 31)]


def site(site_id: str, *meters: tuple[str, str, str]) -> Site:
    """A jjj site (bj-ai's place and inventory) declaring ``meters`` (id, scope, point)."""
    base = SHIPPED.site("bj-ai").model_dump()
    return Site.model_validate({**base, "id": site_id, "nodes": [], "meters": [
        {"id": m, "scope": scope, "point": point, "interval": "1m"}
        for m, scope, point in meters]})


def topology(*sites: Site) -> Topology:
    return Topology(hubs=SHIPPED.hubs, clusters=SHIPPED.clusters,
                    demand_cities=SHIPPED.demand_cities, sites=list(sites))


def counter(site_id: str, meter: str, scope: str, watts: float, times=TIMES,
            reset: datetime | None = None) -> pd.DataFrame:
    """An energy counter drawing ``watts``; after ``reset`` it restarts from zero."""
    t0 = times[0]
    joules = [7e9 + watts * (t - t0).total_seconds() for t in times]
    if reset is not None:
        joules = [watts * (t - reset).total_seconds() if t > reset else j
                  for t, j in zip(times, joules, strict=True)]
    return pd.DataFrame({"time": times, "hub": "jjj", "cluster": "", "site": site_id,
                         "meter": meter, "scope": scope, "joules_total": joules})


def power(site_id: str, meter: str, scope: str, watts: float, times=TIMES) -> pd.DataFrame:
    """A power-only meter (UPS-MIB reports watts, no energy counter)."""
    return pd.DataFrame({"time": times, "hub": "jjj", "cluster": "", "site": site_id,
                         "meter": meter, "scope": scope, "watts": watts})


@pytest.fixture
def store(tmp_path):
    s = DuckDBStore(tmp_path / "meters.duckdb")
    yield s
    s.close()


def write(store: DuckDBStore, *frames: pd.DataFrame) -> None:
    for f in frames:
        store.write("facility_power", f)


def day_pue(store: DuckDBStore, topo: Topology, window: str = "all",
            min_completeness: float | None = None) -> pd.DataFrame:
    return windowed_pue(meter_readings(store, DAY), DAY, POLICY, window, topology=topo,
                        min_completeness=min_completeness)


def pue_findings(store: DuckDBStore, topo: Topology, period: Period = DAY) -> list:
    analysis = run_pipelines(store, period, POLICY, topo, only=("pue",), write=False)
    assert analysis.failed == ()
    return [f for f in analysis.findings if f.pipeline == "pue"]


# --- 1. a silent facility meter ---------------------------------------------------------------

SILENT = site("s1", ("s1-main", "facility", "incomer"), ("s1-aux", "facility", "incomer"),
              ("s1-it", "it", "ups_output"))


def test_a_declared_facility_meter_that_never_reports_states_no_pue_and_is_named(store):
    # Incomer 125 kW, IT 100 kW, and a second incomer (truly 50 kW) that never reports: the
    # meters that report say 1.25, the truth is (125 + 50) / 100 = 1.75. Not one slot has
    # every declared meter, so the completeness is 0 and no PUE is stated.
    write(store, counter("s1", "s1-main", "facility", 125e3), counter("s1", "s1-it", "it", 100e3))
    topo = topology(SILENT)
    (row,) = day_pue(store, topo).itertuples()
    assert row.completeness == 0.0 and np.isnan(row.pue) and row.flag == "incomplete"
    assert row.silent_meters == ("s1-aux",)
    assert row.meter_coverage == {"s1-main": 1.0, "s1-aux": 0.0, "s1-it": 1.0}
    (f,) = pue_findings(store, topo)
    assert (f.rule, f.subject, f.observed) == ("pue_incomplete", "s1", 0.0)
    assert (f.start, f.end) == (DAY.start, DAY.end)
    assert "s1-aux 0%" in f.message and f.detail["silent_meters"] == ["s1-aux"]


def test_a_partly_silent_meter_gives_the_true_pue_over_the_time_it_covers(store):
    # The second incomer reports its 50 kW for the first 12 hours only: over those hours
    # every meter is there and the PUE is the truth, 1.75, at completeness 0.5.
    half = [t for t in TIMES if t <= DAY0 + timedelta(hours=12)]
    write(store, counter("s1", "s1-main", "facility", 125e3),
          counter("s1", "s1-aux", "facility", 50e3, times=half),
          counter("s1", "s1-it", "it", 100e3))
    topo = topology(SILENT)
    (row,) = day_pue(store, topo, min_completeness=0.0).itertuples()
    assert row.pue == pytest.approx(1.75) and row.completeness == 0.5
    assert row.silent_meters == ("s1-aux",) and row.meter_coverage["s1-aux"] == 0.5
    (stated,) = day_pue(store, topo).itertuples()  # the policy floor, 0.90: not stated
    assert np.isnan(stated.pue)
    report = build_report(store, topo, POLICY, parse_period("2026-10-01"),
                          run_pipelines(store, DAY, POLICY, topo, only=("pue",), write=False))
    r = report.sites.set_index("id").loc["s1"]
    assert r.pue_verdict == "incomplete" and r.pue_completeness == 0.5
    assert r.pue_silent_meters == "s1-aux 50%"
    assert ">interim, cat. 1 (UPS output) · silent: s1-aux 50%</td>" in render_html(report)


def test_without_declarations_the_meters_that_report_are_expected(store):
    write(store, counter("s1", "s1-main", "facility", 125e3), counter("s1", "s1-it", "it", 100e3))
    (row,) = day_pue(store, topology(site("s1"))).itertuples()
    assert row.pue == pytest.approx(1.25) and row.completeness == 1.0
    assert row.category == 0 and row.silent_meters == ()


def test_a_site_whose_declared_meters_are_all_silent_is_a_no_data_row_not_a_finding(store):
    write(store, counter("s1", "s1-main", "facility", 125e3), counter("s1", "s1-it", "it", 100e3))
    topo = topology(SILENT, site("s9", ("s9-main", "facility", "incomer"),
                                 ("s9-it", "it", "it_input")))
    rows = day_pue(store, topo).set_index("site")
    assert rows.at["s9", "flag"] == "no_data" and rows.at["s9", "completeness"] == 0.0
    assert rows.at["s9", "silent_meters"] == ("s9-it", "s9-main")
    assert not [f for f in pue_findings(store, topo) if f.subject == "s9"]
    report = build_report(store, topo, POLICY, parse_period("2026-10-01"),
                          run_pipelines(store, DAY, POLICY, topo, only=("pue",), write=False))
    assert report.sites.set_index("id").at["s9", "pue_verdict"] == "no_data"


def test_an_undeclared_meter_is_left_out_and_named(store):
    # A sub-meter of the incomer reports too; counting it would double the facility energy.
    write(store, counter("s1", "s1-main", "facility", 125e3), counter("s1", "s1-it", "it", 100e3),
          counter("s1", "s1-aux", "facility", 50e3),
          counter("s1", "chiller-7", "facility", 30e3))
    (row,) = day_pue(store, topology(SILENT)).itertuples()
    assert row.pue == pytest.approx(1.75) and row.undeclared_meters == ("chiller-7",)


# --- 2. power-only meters beside counters -----------------------------------------------------

MIXED = site("s2", ("s2-main", "facility", "incomer"), ("s2-pdu", "it", "pdu_output"),
             ("s2-ups", "it", "ups_output"))


def test_a_watts_only_ups_and_a_counter_pdu_add_up(store):
    # Incomer 62.5 kWh per hour; IT: a PDU counter at 25 kW and a UPS-MIB UPS at 25 kW that
    # reports watts only. IT energy is 50 kWh per hour, the PUE 62.5 / 50 = 1.25 (leaving the
    # UPS out says 2.5).
    write(store, counter("s2", "s2-main", "facility", 62.5e3),
          counter("s2", "s2-pdu", "it", 25e3), power("s2", "s2-ups", "it", 25e3))
    topo = topology(MIXED)
    (row,) = day_pue(store, topo).itertuples()
    assert row.pue == pytest.approx(1.25) and row.completeness == 1.0 and row.flag == "ok"
    assert row.it_joules == pytest.approx(50e3 * 86400)
    assert row.category == 1  # UPS output and PDU output mix: the lowest, 1
    hourly = day_pue(store, topo, "1h")
    assert len(hourly) == 24 and hourly.pue.tolist() == pytest.approx([1.25] * 24)
    assert pue_findings(store, topo) == []  # 1.25 is the eastern target, not above it


def test_a_gap_in_a_power_only_meter_is_missing_not_estimated(store):
    # The UPS is silent from 06:00 to 06:20 (China time): more than the 5-minute gap, so the
    # slots 06:00-06:30 are not covered by it: 2 of 96 slots lost.
    gap = (DAY0 + timedelta(hours=6), DAY0 + timedelta(hours=6, minutes=20))
    times = [t for t in TIMES if not gap[0] < t < gap[1]]
    write(store, counter("s2", "s2-main", "facility", 62.5e3),
          counter("s2", "s2-pdu", "it", 25e3), power("s2", "s2-ups", "it", 25e3, times=times))
    (row,) = day_pue(store, topology(MIXED)).itertuples()
    assert row.completeness == pytest.approx(94 / 96) and row.pue == pytest.approx(1.25)
    assert row.silent_meters == ("s2-ups",)


def test_trapezoid_rule_on_raw_power_readings():
    # 1 kW for 10 minutes then a ramp to 3 kW over 10 minutes, readings every minute: the
    # trapezoid integral is 600 kJ + 1,200 kJ; the facility counter draws 1.5x that.
    t = [DAY0 + k * MIN for k in range(21)]
    w = [1000.0] * 11 + [1000.0 + 200.0 * k for k in range(1, 11)]
    it = pd.DataFrame({"time": t, "site": "s", "meter": "ups", "scope": "it", "watts": w})
    e = np.concatenate([[0.0], np.cumsum(1.5 * (np.array(w[1:]) + w[:-1]) / 2 * 60)])
    fac = pd.DataFrame({"time": t, "site": "s", "meter": "main", "scope": "facility",
                        "joules": 1e9 + e})
    got = window_pue(pd.concat([it, fac]), t[0], t[-1], "all", slot=MIN)
    assert got.it_joules[0] == pytest.approx(600e3 + 1200e3)
    assert got.pue[0] == pytest.approx(1.5)


# --- 3. counter resets on raw readings --------------------------------------------------------

RESET = site("s3", ("s3-main", "facility", "incomer"), ("s3-it", "it", "ups_output"))
RESET_AT = DAY0 + timedelta(hours=12, minutes=7, seconds=30)  # inside the 12:00 bucket


def test_an_it_counter_reset_mid_day_loses_at_most_one_reading_and_raises_no_excursion(store):
    # The IT meter (100 kW) restarts from zero at 12:07:30, between its 12:07 and 12:08
    # readings: only those 30 seconds are lost, so the day's IT energy is 86,370 s x 100 kW,
    # the hour's 3,570 s, and no hour looks like an excursion (1.25 x 3,600 / 3,570 = 1.2605).
    write(store, counter("s3", "s3-main", "facility", 125e3),
          counter("s3", "s3-it", "it", 100e3, reset=RESET_AT))
    topo = topology(RESET)
    (row,) = day_pue(store, topo).itertuples()
    assert row.resets == 1 and row.completeness == 1.0
    assert row.it_joules == pytest.approx(100e3 * (86400 - 30))
    assert row.pue == pytest.approx(1.25 * 86400 / 86370)
    assert abs(row.pue - 1.25) <= 1.25 * 60 / 86400  # at most one reading's energy
    hourly = day_pue(store, topo, "1h").set_index("window_start").pue
    assert hourly.max() == pytest.approx(1.25 * 3600 / 3570)
    assert [f.rule for f in pue_findings(store, topo)] == ["pue_over_target"]  # 1.2504 > 1.25


def test_a_replaced_meter_that_restarts_from_another_value_invents_no_energy(store):
    # At 12:07:30 the IT meter is replaced by one whose counter already reads 3 GJ: counting
    # that reading as energy since the reset would add 3 GJ (a PUE near 0.9). The step is
    # implausible (over 10x the meter's draw), so its slot is missing: 95 of 96 slots, and
    # the PUE of the rest is exact.
    it = counter("s3", "s3-it", "it", 100e3, reset=RESET_AT)
    it.loc[it.time > RESET_AT, "joules_total"] += 3e9
    write(store, counter("s3", "s3-main", "facility", 125e3), it)
    topo = topology(RESET)
    (row,) = day_pue(store, topo).itertuples()
    assert row.resets == 1 and row.completeness == pytest.approx(95 / 96)
    assert row.pue == pytest.approx(1.25)
    assert not [f for f in pue_findings(store, topo) if f.rule == "pue_excursion"]


def test_raw_readings_and_bucketed_readings_agree_on_a_reset():
    raw = pd.concat([counter("s3", "s3-main", "facility", 125e3),
                     counter("s3", "s3-it", "it", 100e3, reset=RESET_AT)]).rename(
        columns={"joules_total": "joules"})
    got = window_pue(raw, DAY.start, DAY.end, "all", meters={"s3": RESET.meters})
    assert got.resets[0] == 1 and got.it_joules[0] == pytest.approx(100e3 * (86400 - 30))


# --- 4. one finding per site and window -------------------------------------------------------


def test_one_pue_finding_per_site_and_day(store):
    # PUE 1.32 over one China day: the whole period and the day are one window, one finding.
    write(store, counter("s4", "s4-main", "facility", 132e3), counter("s4", "s4-it", "it", 100e3))
    topo = topology(site("s4", ("s4-main", "facility", "incomer"), ("s4-it", "it", "it_input")))
    (f,) = pue_findings(store, topo)
    assert (f.rule, f.subject, f.observed, f.threshold) == ("pue_over_target", "s4",
                                                            pytest.approx(1.32), 1.25)
    assert (f.start, f.end) == (DAY.start, DAY.end) and f.detail["window"] == "1d"
    assert f.detail["category"] == 3 and f.detail["interim"] is True
    assert f.detail["label"] == "interim PUE, category 3 (IT equipment input)"
    assert f.detail["grade"] == 3  # GB 40879-2021: 1.32 is within grade 3 (<= 1.50)
    assert "interim PUE, category 3" in f.message and "GB 40879-2021 grade 3" in f.message


# --- 5. ISO/IEC 30134-2 labels ----------------------------------------------------------------


def test_a_site_mixing_pdu_output_and_it_input_is_category_2_and_a_year_is_not_interim():
    # Hourly readings over 2026 in China time: IT at the PDU output (40 kW) and at the IT
    # inputs of another hall (10 kW); the incomer 60 kW.
    start = datetime(2025, 12, 31, 16, tzinfo=UTC)
    hours = [start + timedelta(hours=h) for h in range(-1, 365 * 24 + 2)]
    mixed = site("s5", ("s5-main", "facility", "incomer"), ("s5-pdu", "it", "pdu_output"),
                 ("s5-srv", "it", "it_input"))
    frames = [counter("s5", m, scope, w, times=hours) for m, scope, w in (
        ("s5-main", "facility", 60e3), ("s5-pdu", "it", 40e3), ("s5-srv", "it", 10e3))]
    data = pd.concat(frames).rename(columns={"joules_total": "joules"})
    end = start + timedelta(days=365)
    year = window_pue(data, start, end, "year", meters={"s5": mixed.meters},
                      slot=timedelta(hours=1), max_gap=timedelta(hours=2))
    assert len(year) == 1 and year.pue[0] == pytest.approx(1.2)
    assert year.category[0] == 2 and not year.interim[0]
    assert pue_label(2, False) == "PUE (12 months), category 2 (PDU output)"
    months = window_pue(data, start, end, "month", meters={"s5": mixed.meters},
                        slot=timedelta(hours=1), max_gap=timedelta(hours=2))
    assert len(months) == 12 and months.interim.all() and (months.category == 2).all()


def test_the_report_gives_the_12_month_figure_when_the_store_holds_12_months(store):
    # Hourly readings from 2025-10-01 to 2026-10-31 (China time): the October 2026 report
    # states October's interim PUE and the 12 months to its end: IT 100 kW all year, the
    # facility 120 kW until 2026-09-30 and 130 kW in October 2026, so October is 1.3 and the
    # 12 months (Nov 2025 - Oct 2026: 334 days at 1.2, 31 at 1.3) (334 x 1.2 + 31 x 1.3) / 365.
    start = datetime(2025, 9, 30, 16, tzinfo=UTC)
    october = datetime(2026, 9, 30, 16, tzinfo=UTC)
    end = datetime(2026, 10, 31, 16, tzinfo=UTC)
    hours = [start + timedelta(hours=h) for h in range(-1, int((end - start).total_seconds()
                                                             // 3600) + 2)]
    fac_j, e = [], 9e9
    for k, t in enumerate(hours):
        if k:
            e += (130e3 if t > october else 120e3) * 3600
        fac_j.append(e)
    meters = site("s6", ("s6-main", "facility", "incomer"), ("s6-it", "it", "ups_output"))
    meters = Site.model_validate({**meters.model_dump(), "meters": [
        {**m.model_dump(), "interval": 3600.0} for m in meters.meters]})
    topo = topology(meters)
    write(store, counter("s6", "s6-it", "it", 100e3, times=hours),
          pd.DataFrame({"time": hours, "hub": "jjj", "cluster": "", "site": "s6",
                        "meter": "s6-main", "scope": "facility", "joules_total": fac_j}))
    period = parse_period("2026-10")
    analysis = run_pipelines(store, period.period, POLICY, topo, only=("pue",), write=False)
    r = build_report(store, topo, POLICY, period, analysis).sites.set_index("id").loc["s6"]
    # Readings are stamped at the end of the minute that holds them: a window edge between
    # an hour at 120 kW and one at 130 kW is off by at most that minute (< 3e-6 here).
    assert r.pue == pytest.approx(1.3, abs=1e-5) and r.pue_interim and r.pue_category == 1
    assert r.pue_12m == pytest.approx((334 * 1.2 + 31 * 1.3) / 365, abs=1e-5)
    assert r.pue_12m_completeness == 1.0 and r.pue_grade == "2"
