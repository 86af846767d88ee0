"""Durations as people write them (``500ms``, ``15s``, ``2m``, ``24h``, ``7d``, ``1w``): the one
parser shared by the configuration files and the command line.

A duration is a finite number of seconds from `MIN_DURATION_S` (1 ms, the finest unit one is
written in) to `MAX_DURATION_S` (100 years: longer than any retention, and short enough
that every clock, timer and date computation can add it to now). NaN, infinities and
anything outside that range are refused with a message that names the value. Schedules that
would spin a core when too short ask for more: `Interval` (collection intervals, 100 ms) and
`ShortInterval` (probe and flush intervals, 10 ms).
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import Annotated

from pydantic import BeforeValidator

__all__ = ["MAX_DURATION_S", "MIN_DURATION_S", "Duration", "Interval", "ShortInterval",
           "format_seconds", "parse_duration"]

MIN_DURATION_S = 0.001
"""1 ms: the shortest duration accepted anywhere."""

MAX_DURATION_S = 100 * 365.25 * 86400
"""100 years (3.16e9 s): the longest duration accepted anywhere."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
           None: 1.0}


def format_seconds(seconds: float) -> str:
    """``0.1`` -> ``100ms``, ``3.15576e9`` -> ``100 years``: a limit as a person reads it."""
    if seconds >= 365.25 * 86400:
        return f"{seconds / (365.25 * 86400):g} years"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(value: object, *, minimum: float = MIN_DURATION_S,
                   maximum: float = MAX_DURATION_S) -> float:
    """Seconds from ``500ms``, ``15s``, ``2m``, ``1h``, ``7d``, ``1w`` or a bare number, within
    [``minimum``, ``maximum``]; a ValueError names the value otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
    else:
        m = _DURATION.match(str(value)[:100])
        if not m:
            raise ValueError(f"not a duration: {_shown(value)} (write e.g. 15s, 2m, 500ms, 7d)")
        seconds = float(m.group(1)) * _FACTOR[m.group(2)]
    if math.isnan(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be positive, got {_shown(value)}")
    if seconds > maximum:
        raise ValueError(f"a duration must be at most {format_seconds(maximum)}, got "
                         f"{_shown(value)}")
    if seconds < minimum:
        raise ValueError(f"a duration must be at least {format_seconds(minimum)} here, got "
                         f"{_shown(value)}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: seconds, written as a duration in YAML."""


Interval = Annotated[float, BeforeValidator(partial(parse_duration, minimum=0.1))]
"""A schedule's period (a collection interval): at least 100 ms, so a typo cannot spin a core."""

ShortInterval = Annotated[float, BeforeValidator(partial(parse_duration, minimum=0.01))]
"""A fast loop's period (a probe or flush interval): at least 10 ms."""
