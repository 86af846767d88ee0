"""Settings shared by the node config and the collectors' own config models.

Kept apart from `collectors.config` so a collector module can declare its config model
(with durations) and the node config can import that model, without an import cycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from computewatch.durations import Duration, Interval, ShortInterval, parse_duration

__all__ = ["CollectorConfig", "Duration", "Interval", "ShortInterval", "parse_duration"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectorConfig(_Model):
    enabled: bool = True
    interval: Interval | None = None  # default: the node's interval
    timeout: Duration | None = None  # default: the node's timeout


