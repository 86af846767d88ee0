"""The Store protocol that every part downstream of the collectors talks to.

Callers state *what* they want (a measurement, a time range, tag filters, group-by tags,
a window and an aggregate) and each backend turns that into its own query language: SQL for
the embedded DuckDB file, PromQL/MetricsQL for VictoriaMetrics and Prometheus, Flux or SQL
for InfluxDB. Aggregation happens inside the store, so a caller's memory grows with
groups x windows, never with raw samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from computewatch import catalog
from computewatch.errors import StoreError

if TYPE_CHECKING:  # annotations only: the agent's remote write imports this without pandas
    import pandas as pd
    import pyarrow as pa

__all__ = ["Aggregate", "Query", "Store", "StoreError", "WriteResult", "check_query",
           "check_where"]


class Aggregate(StrEnum):
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    SUM = "sum"
    COUNT = "count"
    QUANTILE = "quantile"


@dataclass(frozen=True, slots=True)
class Query:
    """A windowed aggregate over one measurement.

    ``where`` maps a tag to a value or a list of accepted values. ``window`` None makes one
    bucket of the whole range. Windows start at ``start`` and are half-open ``[t, t+window)``.
    The result has a ``time`` column (window start, UTC), one column per group-by tag and one
    column per field, holding the aggregate of every sample of every series in the group.
    """

    measurement: str
    fields: tuple[str, ...]
    start: datetime
    end: datetime
    where: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    window: timedelta | None = None
    agg: Aggregate = Aggregate.MEAN
    quantile: float = 0.5

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("query start and end must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise ValueError(f"query end {self.end} is not after start {self.start}")
        if self.window is not None and self.window <= timedelta(0):
            raise ValueError(f"query window must be positive, got {self.window}")
        if not 0.0 <= self.quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {self.quantile}")
        if not self.fields:
            raise ValueError("query names no field")


def check_query(q: Query, source: str) -> catalog.Measurement:
    """The query's measurement, once every field and group-by tag is known to the catalogue.

    Every backend calls this before translating, so a typo fails the same way on each.
    """
    meas = catalog.measurement(q.measurement)
    for f in q.fields:
        meas.metric(f)
    for g in q.group_by:
        if g not in meas.labels:
            raise StoreError(f"{source}: {meas.name!r} has no tag {g!r} to group by")
    return meas


def check_where(meas: catalog.Measurement, where: Mapping[str, str | Sequence[str]] | None,
                source: str) -> list[tuple[str, list[str]]] | None:
    """``where`` checked against the catalogue: each tag with its sorted distinct values.

    None when some tag accepts no value at all (an empty list): nothing can match, and each
    backend answers with an empty result rather than sending a query.
    """
    out: list[tuple[str, list[str]]] = []
    for tag, want in (where or {}).items():
        if tag not in meas.labels:
            raise StoreError(f"{source}: {meas.name!r} has no tag {tag!r} "
                             f"(tags: {', '.join(meas.labels)})")
        values = [want] if isinstance(want, str) else list(want)
        for v in values:
            if not isinstance(v, str):
                raise StoreError(f"{source}: where[{tag!r}] value {v!r} is not a string")
        if not values:
            return None
        out.append((tag, sorted(set(values))))
    return out


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: rows stored, and values refused by catalogue validation."""

    rows: int
    rejected: int = 0


@runtime_checkable
class Store(Protocol):
    url: str

    def write(self, measurement: str, frame: pa.Table | pd.DataFrame) -> WriteResult:
        """Store one frame (``time``, label columns, field columns) of one measurement."""
        ...

    def query(self, query: Query) -> pd.DataFrame:
        """Run a windowed aggregate; see `Query` for the shape of the result."""
        ...

    def series(self, measurement: str,
               where: Mapping[str, str | Sequence[str]] | None = None) -> pd.DataFrame:
        """The distinct label sets stored for a measurement (one row per series)."""
        ...

    def time_bounds(self, measurement: str) -> tuple[datetime, datetime] | None:
        """First and last sample time of a measurement, or None when it holds nothing."""
        ...

    def drop_before(self, cutoff: datetime) -> int:
        """Retention: delete every sample older than ``cutoff``; returns rows deleted."""
        ...

    def close(self) -> None: ...
