"""Public datasheet figures for the accelerator models the simulator places in sites.

TDP and memory are from the vendors' datasheets (SXM/OAM parts where a model has several);
idle power is a typical observed floor, not a datasheet value. Unknown models fall back to a
generic 400 W card so a user's own topology never breaks the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AcceleratorSpec", "spec_for"]

GIB = 2**30


@dataclass(frozen=True, slots=True)
class AcceleratorSpec:
    model: str
    tdp_w: float
    idle_w: float
    memory_bytes: float
    max_clock_hz: float
    memory_clock_hz: float


_SPECS = {
    s.model.lower(): s
    for s in (
        AcceleratorSpec("V100", 300.0, 40.0, 32 * GIB, 1.530e9, 0.877e9),
        AcceleratorSpec("A100", 400.0, 55.0, 80 * GIB, 1.410e9, 1.593e9),
        AcceleratorSpec("H100", 700.0, 75.0, 80 * GIB, 1.980e9, 2.619e9),
        AcceleratorSpec("H20", 400.0, 60.0, 96 * GIB, 1.755e9, 2.619e9),
        AcceleratorSpec("L20", 275.0, 30.0, 48 * GIB, 2.520e9, 9.001e9),
        AcceleratorSpec("Ascend 910B", 400.0, 85.0, 64 * GIB, 1.800e9, 1.600e9),
        AcceleratorSpec("Ascend 910A", 310.0, 70.0, 32 * GIB, 1.000e9, 1.200e9),
        AcceleratorSpec("Ascend 310P", 72.0, 12.0, 24 * GIB, 1.080e9, 3.200e9),
    )
}

_GENERIC = AcceleratorSpec("generic", 400.0, 60.0, 64 * GIB, 1.5e9, 2.0e9)


def spec_for(model: str) -> AcceleratorSpec:
    return _SPECS.get(model.lower(), _GENERIC)
