"""Settings shared by the node config and the collectors' own config models.

Kept apart from `collectors.config` so a collector module can declare its config model
(with durations) and the node config can import that model, without an import cycle.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

__all__ = ["CollectorConfig", "Duration", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from ``15s``, ``2m``, ``500ms``, ``1h`` or a bare number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"not a duration: {value!r} (write e.g. 15s, 2m, 500ms)")
        seconds = float(m.group(1)) * _FACTOR[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectorConfig(_Model):
    enabled: bool = True
    interval: Duration | None = None  # default: the node's interval
    timeout: Duration | None = None  # default: the node's timeout


