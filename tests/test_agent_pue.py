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


class MixedMeters:
    """Incomer counter 62.5 kW, PDU counter 25 kW, a UPS-MIB UPS reporting 25 kW as watts only,
    and the IT PDU's counter restarting from zero at minute 40 (just after its reading)."""

    name = "meters"

    def collect(self):
        out = []
        start = NOW - timedelta(minutes=75)
        for k in range(76):
            t = start + timedelta(minutes=k)
            lab = {"site": "bj-ai", "hub": "jjj", "source": "snmp://10.0.0.9"}
            pdu_j = 4e8 + 25e3 * 60 * k if k <= 40 else 25e3 * 60 * (k - 40)
            out += [Sample.of("facility_power.joules_total", 9e8 + 62.5e3 * 60 * k,
                              {**lab, "meter": "main", "scope": "facility"}, t),
                    Sample.of("facility_power.joules_total", pdu_j,
                              {**lab, "meter": "pdu", "scope": "it"}, t),
                    Sample.of("facility_power.watts", 25e3, {**lab, "meter": "ups", "scope": "it"},
                              t)]
        return out


def declared(*ids):
    from computewatch.topology import Meter

    points = {"main": ("facility", "incomer"), "pdu": ("it", "pdu_output"),
              "ups": ("it", "ups_output"), "aux": ("facility", "incomer")}
    return {"bj-ai": [Meter(id=i, scope=points[i][0], point=points[i][1]) for i in ids]}


def test_agent_adds_a_watts_only_ups_to_counters_and_undoes_a_reset_on_raw_readings():
    tap = MeterTap()
    Agent([Scheduled(MixedMeters(), 60, 5)], [tap], {"node": "n1", "site": "bj-ai"}).run_once()
    samples = PueCollector(tap, clock=lambda: NOW, meters=declared("main", "pdu", "ups")).collect()
    lab = {"site": "bj-ai", "window": "1h"}
    # 62.5 kWh / (25 kWh + 25 kWh) = 1.25; the reset loses nothing between readings here.
    assert sample_value(samples, "pue.energy_ratio", lab) == pytest.approx(1.25)
    assert sample_value(samples, "pue.it_joules", lab) == pytest.approx(50e3 * 3600)
    assert sample_value(samples, "pue.completeness_ratio", lab) == 1.0


def test_agent_expects_every_declared_meter():
    tap = MeterTap()
    Agent([Scheduled(MixedMeters(), 60, 5)], [tap], {"node": "n1", "site": "bj-ai"}).run_once()
    samples = PueCollector(tap, clock=lambda: NOW,
                           meters=declared("main", "aux", "pdu", "ups")).collect()
    lab = {"site": "bj-ai", "window": "1h"}
    assert sample_value(samples, "pue.completeness_ratio", lab) == 0.0  # 'aux' never reported
    assert not [s for s in samples if s.name == "pue.energy_ratio"]
