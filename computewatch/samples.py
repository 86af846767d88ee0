"""Sample and the frame shape: what collectors produce and what stores accept.

A collector yields `Sample`s, one value of one catalogued metric with its labels. A store
takes *frames*: an Arrow table per measurement with a ``time`` column (UTC), one column per
label and one column per field, so that a whole scrape or a simulated hour is written in
one columnar call. `samples_to_frames` turns the first into the second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from computewatch import catalog

if TYPE_CHECKING:  # pyarrow is imported where frames are built: the agent does not need it
    import pyarrow as pa

__all__ = ["EARLIEST_TIME", "LATEST_TIME", "TIME", "Sample", "sample_value", "samples_to_frames"]

TIME = "time"
"""The name of the timestamp column in every frame."""

EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2262, 4, 11, tzinfo=UTC)
"""The times every store keeps: from the Unix epoch (VictoriaMetrics keeps nothing earlier)
to the last day of nanosecond timestamps in 64 bits (InfluxDB, Arrow, pandas). A period or a
time given on the command line outside them is refused."""


@dataclass(frozen=True, slots=True, init=False)
class Sample:
    """One value of one catalogued metric; labels are sorted (name, value) pairs."""

    measurement: str
    field: str
    value: float
    labels: tuple[tuple[str, str], ...]
    time: datetime

    def __init__(self, measurement: str, field: str, value: float,
                 labels: tuple[tuple[str, str], ...], time: datetime) -> None:
        # What the dataclass's own __init__ does (it checks nothing), with the slots set
        # through their descriptors rather than object.__setattr__ by name, which a frozen
        # dataclass's __init__ calls for each field: 0.5 against 0.9 to 1.5 us a sample,
        # and an agent's cycle makes ~650 (bench/bench_agent.py).
        _SET_MEASUREMENT(self, measurement)
        _SET_FIELD(self, field)
        _SET_VALUE(self, value)
        _SET_LABELS(self, labels)
        _SET_TIME(self, time)

    @classmethod
    def of(cls, name: str, value: float, labels: Mapping[str, str],
           time: datetime | None = None) -> Sample:
        """Build a sample from ``measurement.field``; the time defaults to now (UTC)."""
        meas, _, field = name.partition(".")
        if time is None:
            time = datetime.now(UTC)
        elif time.tzinfo is None:
            raise ValueError(f"sample {name}: time {time.isoformat()} has no timezone")
        return cls(meas, field, value, tuple(sorted((k, str(v)) for k, v in labels.items())),
                   time)

    @property
    def name(self) -> str:
        return f"{self.measurement}.{self.field}"

    def label(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.labels:
            if k == key:
                return v
        return default


_SET_MEASUREMENT, _SET_FIELD, _SET_VALUE, _SET_LABELS, _SET_TIME = (
    getattr(Sample, f).__set__ for f in ("measurement", "field", "value", "labels", "time"))


def sample_value(samples: Iterable[Sample], name: str,
                 labels: Mapping[str, str] | None = None) -> float | None:
    """The value of the first sample named ``name`` whose labels include ``labels``."""
    want = set((labels or {}).items())
    for s in samples:
        if s.name == name and want <= set(s.labels):
            return s.value
    return None


def samples_to_frames(samples: Iterable[Sample]) -> dict[str, pa.Table]:
    """Pivot samples into one frame per measurement, one row per (time, label set)."""
    import pyarrow as pa

    rows: dict[str, dict[tuple[datetime, tuple[tuple[str, str], ...]], dict[str, float]]] = {}
    for s in samples:
        # Labels that only some fields carry (xid, error_type) make their own rows.
        rows.setdefault(s.measurement, {}).setdefault((s.time, s.labels), {})[s.field] = s.value
    frames = {}
    for meas_name, by_key in rows.items():
        try:
            spec = catalog.measurement(meas_name)
        except catalog.UnknownMetricError:  # kept whole: validation names and counts it
            spec = catalog.Measurement(meas_name, (), ())
        present = {k for _, lab in by_key for k, _ in lab}
        # Unknown labels are kept so that validation can name and count them.
        label_keys = [k for k in spec.labels if k in present] + sorted(present - set(spec.labels))
        field_keys = [f for f in spec.fields if any(f in v for v in by_key.values())]
        unknown = {f for v in by_key.values() for f in v} - set(spec.fields)
        field_keys += sorted(unknown)  # kept so that validation can name and count them
        cols: dict[str, list] = {TIME: [t for t, _ in by_key]}
        for k in label_keys:
            cols[k] = [dict(lab).get(k) for _, lab in by_key]
        for f in field_keys:
            cols[f] = [v.get(f) for v in by_key.values()]
        schema = pa.schema(
            [pa.field(TIME, pa.timestamp("us", tz="UTC"))]
            + [pa.field(k, pa.string()) for k in label_keys]
            + [pa.field(f, pa.float64()) for f in field_keys]
        )
        frames[meas_name] = pa.table(cols, schema=schema)
    return frames
