"""The collectors with a folder of their own (Telegraf's plugins/inputs/<name>/): each has a
README with the Metrics table and a sample.yaml that is a valid node.yaml at the pydantic
defaults (anything else is marked "example"), and loading a node config imports no collector
and no device library."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from computewatch.collectors.config import load_node_config

FOLDERS = ("latency", "redfish", "snmp", "modbus", "ascend", "nvml")
DEVICE_LIBRARIES = ("pysnmp", "pyasn1", "pymodbus", "requests", "urllib3", "pynvml", "numpy",
                    "pandas", "pyarrow", "duckdb", "influxdb_client")


def _folder(name: str) -> Path:
    module = importlib.import_module(f"computewatch.collectors.{name}")
    return Path(module.__file__).parent


def _spans(node: yaml.Node, path: tuple = ()) -> dict[tuple, tuple[int, int]]:
    """Each key path of a YAML document -> (first, last) 0-based line of its key and value."""
    out: dict[tuple, tuple[int, int]] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*path, key.value)
            last = value.end_mark.line - (1 if value.end_mark.column == 0 else 0)
            out[here] = (key.start_mark.line, max(key.start_mark.line, last))
            out.update(_spans(value, here))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_spans(item, (*path, i)))
    return out


def _marked(lines: list[str], span: tuple[int, int]) -> bool:
    first, last = span
    return any("example" in line for line in lines[first:last + 1])


def _check_model(model: BaseModel, raw: dict, path: tuple, spans: dict, lines: list[str]) -> None:
    """Every field written; a value other than the default (or a required one) marked example."""
    fields = type(model).model_fields
    assert set(raw) == set(fields), f"{path}: sample keys differ from the settings"
    for name, info in fields.items():
        value = getattr(model, name)
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            for i, item in enumerate(value):  # a device list: each entry checked field by field
                _check_model(item, raw[name][i], (*path, name, i), spans, lines)
            continue
        required = info.is_required()
        if required or value != info.get_default(call_default_factory=True):
            where = spans[(*path, name)]
            assert _marked(lines, where), (f"{(*path, name)}: {value!r} is not the default; "
                                           f"mark line {where[0] + 1} as an example")


@pytest.mark.parametrize("name", FOLDERS)
def test_sample_yaml_is_a_node_config_at_the_defaults_unless_marked(name):
    path = _folder(name) / "sample.yaml"
    text = path.read_text(encoding="utf-8")
    config = load_node_config(path)
    raw = yaml.safe_load(text)
    assert list(raw) == ["collectors"] and list(raw["collectors"]) == [name]
    _check_model(getattr(config.collectors, name), raw["collectors"][name],
                 ("collectors", name), _spans(yaml.compose(text)), text.splitlines())


@pytest.mark.parametrize("name", FOLDERS)
def test_readme_shows_the_sample_and_the_metrics(name):
    folder = _folder(name)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    sample = (folder / "sample.yaml").read_text(encoding="utf-8")
    assert f"```yaml\n{sample}```" in readme
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    assert headings == ["## Configuration", "## Metrics", "## Example output",
                        "## Troubleshooting"]


def test_a_sample_that_strays_from_the_defaults_unmarked_is_caught(tmp_path):
    """The check above can fail: a changed default without the word fails it."""
    text = (_folder("ascend") / "sample.yaml").read_text(encoding="utf-8")
    text = text.replace("command_timeout: 5s ", "command_timeout: 9s ")
    path = tmp_path / "sample.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_node_config(path)
    with pytest.raises(AssertionError, match="command_timeout"):
        _check_model(config.collectors.ascend, yaml.safe_load(text)["collectors"]["ascend"],
                     ("collectors", "ascend"), _spans(yaml.compose(text)), text.splitlines())


def test_loading_a_node_config_imports_no_collector_and_no_device_library():
    samples = [str(_folder(name) / "sample.yaml") for name in FOLDERS]
    code = (
        "import json, sys\n"
        "from computewatch.collectors.config import load_node_config\n"
        f"for path in {samples!r}:\n"
        "    load_node_config(path)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    loaded = json.loads(done.stdout)
    assert "computewatch.collectors.snmp._config" in loaded  # the settings models were read
    assert not [m for m in loaded if m.split(".")[0] in DEVICE_LIBRARIES]
    assert not [m for m in loaded if m.startswith("computewatch.collectors.")
                and m.rsplit(".", 1)[-1] in ("_collector", "_prober", "_wire", "_client",
                                             "_values", "_state")]
