"""PUE derived inside the agent from its meters' samples (MeterTap + PueCollector)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from computewatch.collectors.agent import Agent, Scheduled
from computewatch.collectors.pue import MeterTap, PueCollector
from computewatch.samples import Sample, sample_value

NOW = datetime(2026, 10, 1, 2, 3, tzinfo=UTC)


class Meters:
    """A power collector replaying an hour and a bit of two meters at 1-minute readings."""

    name = "meters"

    def collect(self):
        out = []
        start = NOW - timedelta(minutes=75)
        for k in range(76):
            t = start + timedelta(minutes=k)
            for meter, scope, watts in (("bj-ai-main", "facility", 1320.0),
                                        ("bj-ai-ups", "it", 1000.0)):
                lab = {"site": "bj-ai", "hub": "jjj", "meter": meter, "scope": scope,
                       "source": "modbus://10.0.0.1:502/1"}
                out.append(Sample.of("facility_power.watts", watts, lab, t))
                out.append(Sample.of("facility_power.joules_total", 5e8 + watts * 60 * k, lab, t))
        return out


def test_agent_reports_energy_pue_of_the_last_complete_windows():
    tap = MeterTap()
    pue = PueCollector(tap, clock=lambda: NOW)
    agent = Agent([Scheduled(Meters(), 60, 5)], [tap], {"node": "n1", "site": "bj-ai"})
    agent.run_once()
    samples = pue.collect()
    for window in ("15m", "1h"):
        lab = {"site": "bj-ai", "window": window}
        assert sample_value(samples, "pue.energy_ratio", lab) == pytest.approx(1.32)
        assert sample_value(samples, "pue.completeness_ratio", lab) == 1.0
    assert sample_value(samples, "pue.it_joules", {"window": "1h"}) == pytest.approx(3.6e6)
    assert sample_value(samples, "pue.power_ratio", {"window": "instant"}) == pytest.approx(1.32)
    ends = {s.time for s in samples if s.name == "pue.energy_ratio"}
    assert ends == {datetime(2026, 10, 1, 2, 0, tzinfo=UTC)}  # the last complete windows


def test_without_readings_nothing_is_derived_and_bad_windows_are_refused():
    assert PueCollector(MeterTap()).collect() == []
    with pytest.raises(ValueError, match="unknown PUE window"):
        PueCollector(MeterTap(), windows=("5m",))
