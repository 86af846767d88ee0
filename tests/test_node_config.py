"""The node agent's config file: the shipped example loads, bad values name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from computewatch.collectors.config import NodeConfig, load_node_config, parse_duration
from computewatch.config import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "node.yaml"


def test_example_loads_with_its_stated_values():
    cfg = load_node_config(EXAMPLE)
    assert cfg.node == "gpu-node-01" and cfg.site == "bj-ai" and cfg.hub == "jjj"
    assert cfg.interval == 15.0 and cfg.timeout == 10.0
    assert cfg.collectors.ascend.interval == 30.0 and cfg.collectors.nvml.interval is None
    assert cfg.exports.prometheus.listen == "127.0.0.1:9400"
    # Apart from the lines marked "example", the file states the defaults.
    d = NodeConfig()
    assert cfg.exports == d.exports
    assert cfg.collectors.nvml == d.collectors.nvml
    assert cfg.collectors.ascend.model_copy(update={"interval": None}) == d.collectors.ascend


@pytest.mark.parametrize(("text", "expected"), [
    ("15s", 15.0), ("2m", 120.0), ("500ms", 0.5), ("1h", 3600.0), (7, 7.0), ("2.5", 2.5)])
def test_durations(text, expected):
    assert parse_duration(text) == expected


def test_bad_values_name_file_line_and_value(tmp_path):
    path = tmp_path / "node.yaml"
    path.write_text("site: bj-ai\ninterval: soon\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_node_config(path)
    msg = str(err.value)
    assert "node.yaml:2: interval:" in msg and "soon" in msg
    path.write_text("exports:\n  prometheus:\n    compat: [dcgm, nvsmi]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"node.yaml:3: exports.prometheus.compat\[1\]"):
        load_node_config(path)
    path.write_text("colectors: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="colectors"):
        load_node_config(path)


def test_example_power_and_latency_lines_are_valid_config(tmp_path):
    """The commented entries in examples/node.yaml, uncommented, load as they stand."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith("# - {") or (stripped.startswith("#    ") and out and
                                            out[-1].lstrip().startswith("- {")):
            line = line.replace("# ", "", 1)
        out.append(line)
    text = "\n".join(out).replace("endpoints: []", "endpoints:").replace(
        "devices: []", "devices:").replace("meters: []", "meters:")
    path = tmp_path / "node.yaml"
    path.write_text(text, encoding="utf-8")
    cfg = load_node_config(path)
    assert cfg.collectors.redfish.endpoints[0].scope == "it"
    assert cfg.collectors.snmp.devices[0].profile == "apc_rpdu2"
    assert cfg.collectors.modbus.meters[0].meter == "main-incomer"
    assert cfg.collectors.pue.windows == ["15m", "1h"] and cfg.collectors.pue.max_gap == 300


def test_days_and_weeks_and_bad_durations():
    assert parse_duration("7d") == 7 * 86400 and parse_duration("1w") == 604800
    for bad in ("soon", "-5s", "0", "5 parsecs"):
        with pytest.raises(ValueError):
            parse_duration(bad)
