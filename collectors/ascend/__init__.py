"""Huawei Ascend NPUs through ``npu-smi``: one ``accelerator`` series per NPU chip.

Running the tool and reading its output are separate steps (Telegraf's nvidia_smi split):
`AscendCollector` runs ``npu-smi`` through one injected ``run(argv, timeout)`` seam; the
parsers (`parse_info_table`, `parse_processes`, `parse_view`, `parse_mapping`,
`parse_hccn`) and `chip_samples` are pure, so they are tested on real captures and the
simulator's fake ``npu-smi`` drives the same code path as a real node.

This folder's README.md states the decisions and the metrics; sample.yaml is the sample
configuration. Modules, one job each: `_parse` (the table, its processes, the chip map),
`_views` (a view split by the chip ids it states), `_hccn` (hccn_tool output), `_samples`
(a chip's row and views to samples), `_run` (a command killed with its children on
timeout), `_calls` (many slow commands within a budget), `_collector` (what runs when).
"""

from computewatch.collectors.ascend._collector import (
    DEFAULT_VIEWS,
    HCCN_TOOL,
    SLOW_VIEWS,
    STATIC_VIEWS,
    AscendCollector,
    NpuSmiTimeout,
    run_npu_smi,
)
from computewatch.collectors.ascend._hccn import HCCN_QUERIES, parse_hccn
from computewatch.collectors.ascend._parse import (
    ChipMapping,
    ChipRow,
    ProcessRow,
    parse_info_table,
    parse_key_values,
    parse_mapping,
    parse_processes,
)
from computewatch.collectors.ascend._run import run_command
from computewatch.collectors.ascend._samples import DETAIL_SOURCE, chip_samples, model_name
from computewatch.collectors.ascend._views import ViewBlocks, parse_view

__all__ = [
    "DEFAULT_VIEWS",
    "DETAIL_SOURCE",
    "HCCN_QUERIES",
    "HCCN_TOOL",
    "SLOW_VIEWS",
    "STATIC_VIEWS",
    "AscendCollector",
    "ChipMapping",
    "ChipRow",
    "NpuSmiTimeout",
    "ProcessRow",
    "ViewBlocks",
    "chip_samples",
    "model_name",
    "parse_hccn",
    "parse_info_table",
    "parse_key_values",
    "parse_mapping",
    "parse_processes",
    "parse_view",
    "run_command",
    "run_npu_smi",
]
