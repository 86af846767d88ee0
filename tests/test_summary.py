"""The national summary and the period PUE on hand-computable data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from computewatch.findings import Period
from computewatch.policy import load_policy
from computewatch.pue import meter_readings, window_pue
from computewatch.store import DuckDBStore
from computewatch.summary import national_summary
from computewatch.topology import load_topology

T0 = datetime(2026, 10, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.fixture
def store(tmp_path):
    s = DuckDBStore(tmp_path / "s.duckdb")
    times = [T0 + k * MIN for k in range(61)]  # one hour, 61 readings
    # Two cards at bj-ai: one always at 0.25, one at 0.75 for the first 30 min then 0.
    rows = []
    for k, t in enumerate(times[:60]):
        rows.append({"time": t, "hub": "jjj", "cluster": "", "site": "bj-ai", "device": "a",
                     "ecosystem": "cuda", "utilization_ratio": 0.25})
        rows.append({"time": t, "hub": "jjj", "cluster": "", "site": "bj-ai", "device": "b",
                     "ecosystem": "cann", "utilization_ratio": 0.75 if k < 30 else 0.0})
    s.write("accelerator", pd.DataFrame(rows))
    # Meters: IT draws 1,000 W, the facility 1,300 W -> PUE exactly 1.3 over the hour.
    meters = []
    for k, t in enumerate(times):
        for scope, watts in (("it", 1000.0), ("facility", 1300.0)):
            meters.append({"time": t, "hub": "jjj", "cluster": "", "site": "bj-ai",
                           "meter": f"bj-ai-{scope}", "scope": scope, "watts": watts,
                           "joules_total": 5e9 + watts * 60.0 * k})
    s.write("facility_power", pd.DataFrame(meters))
    s.write("link_latency", pd.DataFrame([
        {"time": t, "src_site": "bj-ai", "dst_site": "zjk-a", "src_hub": "jjj", "dst_hub": "jjj",
         "tier": "regional", "rtt_p95_seconds": 0.004 if k % 10 else 0.009}
        for k, t in enumerate(times[:60])]))
    yield s
    s.close()


def test_period_pue_is_facility_over_it_energy(store):
    # The one PUE derivation (computewatch.pue), here at the readings' own 1-minute
    # resolution: each minute's last reading, stamped at the minute's end, so the hour of
    # readings (T0 .. T0 + 60 min) is exactly 60 covered minutes of the 2-hour period.
    minute = timedelta(minutes=1)
    period = Period(T0, T0 + timedelta(hours=2))
    readings = meter_readings(store, period, bucket=minute)
    got = window_pue(readings, period.start, period.end, "all", by=("site",), slot=minute,
                     max_gap=2 * minute, min_completeness=0.0)
    assert got.site.tolist() == ["bj-ai"]
    assert got.facility_joules[0] == pytest.approx(1300.0 * 3600)
    assert got.it_joules[0] == pytest.approx(1000.0 * 3600)
    assert got.pue[0] == pytest.approx(1.3)
    assert got.completeness[0] == pytest.approx(0.5)  # one metered hour of two


def test_summary_figures_by_hand(store):
    s = national_summary(store, load_topology(), load_policy(), T0, T0 + timedelta(hours=1))
    jjj = s.rows[(s.rows.level == "hub") & (s.rows.hub == "jjj")].iloc[0]
    assert jjj.accelerators == 2 and jjj.cuda == 1 and jjj.cann == 1
    # Mean of all samples: (60 x 0.25 + 30 x 0.75) / 120 = 0.3125.
    assert jjj.mean_utilization == pytest.approx(0.3125)
    # Idle: sum of (1 - u) x 1 min = (60 x 0.75 + 30 x 0.25 + 30 x 1) / 60 h = 1.375 h.
    assert jjj.idle_accelerator_hours == pytest.approx(1.375)
    assert jjj.pue == pytest.approx(1.3)
    # 15-minute slots: the first has no reading at or before T0 to start from, so 3 of 4.
    assert jjj.pue_completeness == pytest.approx(0.75)
    # 95th percentile of the window p95s: 6 of 60 windows at 9 ms -> interpolated 9 ms.
    assert jjj.worst_link == "bj-ai ↔ zjk-a" and jjj.worst_link_budget_s == 0.005
    assert jjj.worst_link_p95_s == pytest.approx(0.009)
    other = s.rows[(s.rows.level == "hub") & (s.rows.hub == "gansu")].iloc[0]
    assert other.accelerators == 0 and other.worst_link == ""
