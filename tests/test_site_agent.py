"""A site agent configured by YAML: Modbus meters on a real pymodbus server, PUE derived."""

from __future__ import annotations

import pytest
from test_modbus import MeterServer, f32

from computewatch.collectors.config import load_node_config
from computewatch.collectors.setup import build_agent
from computewatch.samples import sample_value


@pytest.fixture
def meters():
    # Facility main 13.2 kW, IT (UPS output) 10 kW, as Schneider PM5000 float32 kW at 3059.
    server = MeterServer({1: {"holding": {3059: f32(13.2), 3203: [0, 0, 0, 1000]}},
                          2: {"holding": {3059: f32(10.0), 3203: [0, 0, 0, 800]}}}).start()
    yield server
    server.stop()


def test_node_yaml_with_meters_gives_power_and_pue(tmp_path, meters):
    config = tmp_path / "node.yaml"
    config.write_text(f"""
node: bj-ai-ops1
site: bj-ai
hub: jjj
collectors:
  nvml: {{enabled: false}}
  ascend: {{enabled: false}}
  modbus:
    meters:
      - {{host: 127.0.0.1, port: {meters.port}, unit_id: 1, map: schneider-pm5000,
          meter: bj-ai-main, scope: facility}}
      - {{host: 127.0.0.1, port: {meters.port}, unit_id: 2, map: schneider-pm5000,
          meter: bj-ai-ups, scope: it}}
exports:
  prometheus: {{enabled: false}}
""", encoding="utf-8")
    agent = build_agent(load_node_config(config))
    try:
        assert agent.collector_names == ["modbus", "pue"]
        agent.run_once()
        samples = agent.run_once()  # the PUE collector sees the meters' first readings
    finally:
        agent.close()
    # float32 kW on the wire: 13.2 is 13.19999980926513671875 in single precision.
    assert sample_value(samples, "facility_power.watts", {"meter": "bj-ai-main"}) == \
        pytest.approx(13_200.0, rel=1e-7)
    assert sample_value(samples, "facility_power.joules_total",
                        {"meter": "bj-ai-ups"}) == 800 * 3600.0
    assert sample_value(samples, "pue.power_ratio", {"site": "bj-ai"}) == pytest.approx(1.32)
    # Seconds of readings cannot cover a 15-minute window: stated as incomplete, no PUE.
    assert sample_value(samples, "pue.completeness_ratio", {"window": "15m"}) == 0.0
    assert sample_value(samples, "pue.energy_ratio") is None
    assert sample_value(samples, "agent.collector_up", {"collector": "modbus"}) == 1.0
