"""`ModbusMeter`: one meter's settings in the node config, validated at load, no I/O."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from computewatch.collectors.modbus._maps import FrozenModel, is_map_path, shipped_maps
from computewatch.config import suggest_known
from computewatch.durations import Duration

__all__ = ["ModbusMeter"]

class ModbusMeter(FrozenModel):
    """One meter: where it answers, which map reads it, and what it measures."""

    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    map: str = Field(min_length=1, description="shipped map name or path to a map file")
    meter: str = Field(min_length=1, description="the meter's id, unique within its site")
    scope: Literal["facility", "it", "cooling", "other"]
    timeout: Duration = 2.0

    @field_validator("map")
    @classmethod
    def _known_map(cls, value: str) -> str:
        if not is_map_path(value) and value not in shipped_maps():
            raise ValueError(f"unknown register map {value!r} "
                             f"({suggest_known(value, shipped_maps())}); or give a path to a "
                             ".yaml file")
        return value

    @property
    def source(self) -> str:
        return f"modbus://{self.host}:{self.port}/{self.unit_id}"
