"""Durations as people write them (``500ms``, ``15s``, ``2m``, ``24h``, ``7d``, ``1w``): the one
parser shared by the configuration files and the command line."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

__all__ = ["Duration", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
           None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from ``500ms``, ``15s``, ``2m``, ``1h``, ``7d``, ``1w`` or a bare number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"not a duration: {value!r} (write e.g. 15s, 2m, 500ms, 7d)")
        seconds = float(m.group(1)) * _FACTOR[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: seconds, written as a duration in YAML."""
