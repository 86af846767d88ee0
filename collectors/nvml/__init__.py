"""NVIDIA GPUs through NVML (the ``pynvml`` module of nvidia-ml-py): one ``accelerator``
series per GPU or MIG device.

The one seam is the NVML module itself: `NvmlCollector` takes any object with pynvml's
function names, signatures, return types and ``NVMLError``, so the simulator's
`computewatch.sim.fake_nvml.FakeNvml` runs exactly the code path a real driver does.

This folder's README.md states the decisions and the metrics; sample.yaml is the sample
configuration. Modules, one job each: `_calls` (one NVML call and what its failure means),
`_gpm` (profiling ratios and byte rates through GPM), `_processes` (the processes on a
device, bounded), `_events` (XID errors), `_collector` (a run over every GPU and MIG device).
"""

from computewatch.collectors.nvml._collector import EMITTED, THROTTLE_REASONS, NvmlCollector

__all__ = ["EMITTED", "THROTTLE_REASONS", "NvmlCollector"]
