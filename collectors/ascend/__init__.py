"""Huawei Ascend NPUs through ``npu-smi``: one ``accelerator`` series per NPU chip.

Running the tool and reading its output are separate steps (Telegraf's nvidia_smi split):
`AscendCollector` runs ``npu-smi`` through one injected ``run(argv, timeout)`` seam; the
parsers (`parse_info_table`, `parse_key_values`, `parse_mapping`) and `chip_samples` are
pure, so they are tested on real captures and the simulator's fake ``npu-smi`` drives the
same code path as a real node.

This folder's README.md states the decisions and the metrics; sample.yaml is the sample
configuration. Modules, one job each: `_parse` (npu-smi output to rows), `_samples` (a chip's
row and views to samples), `_collector` (running npu-smi, counting what fails).
"""

from computewatch.collectors.ascend._collector import AscendCollector, NpuSmiTimeout, run_npu_smi
from computewatch.collectors.ascend._parse import (
    ChipMapping,
    ChipRow,
    parse_info_table,
    parse_key_values,
    parse_mapping,
)
from computewatch.collectors.ascend._samples import DETAIL_SOURCE, chip_samples, model_name

__all__ = [
    "DETAIL_SOURCE",
    "AscendCollector",
    "ChipMapping",
    "ChipRow",
    "NpuSmiTimeout",
    "chip_samples",
    "model_name",
    "parse_info_table",
    "parse_key_values",
    "parse_mapping",
    "run_npu_smi",
]
