"""Samples to line protocol: one line per (measurement, labels, time), fields merged.

Plain Python, no numpy or pyarrow: what only encodes Samples (the agent's remote write,
``collect --format influx``) stays small. The rules are `computewatch.lineprotocol`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from math import isfinite
from numbers import Real

from computewatch.lineprotocol._common import (
    EncodeResult,
    escape_field_key,
    escape_measurement,
    escape_tag,
    precision_factor,
)
from computewatch.samples import Sample

__all__ = ["encode_samples"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_DAY = 86_400 * 1_000_000_000


def _format_float(v: float) -> str:
    s = repr(v)
    return s[:-2] if s.endswith(".0") else s


def _timestamp(t: datetime, factor: int) -> int:
    if t.tzinfo is None:
        raise ValueError(f"line protocol: time {t.isoformat()} has no timezone")
    d = t - _EPOCH  # exact integer arithmetic: float division would lose nanoseconds
    ns = d.days * _NS_PER_DAY + d.seconds * 1_000_000_000 + d.microseconds * 1_000
    return ns // factor


def encode_samples(samples: Iterable[Sample], precision: str = "ns") -> EncodeResult:
    """Encode samples, one line per (measurement, labels, time) with their fields merged."""
    factor = precision_factor(precision)
    groups: dict[tuple[str, tuple[tuple[str, str], ...], datetime], dict[str, float]] = {}
    skipped = 0
    for s in samples:
        v = s.value
        if type(v) is not float:
            if isinstance(v, bool) or not isinstance(v, Real):
                raise TypeError(f"line protocol: {s.name} value {v!r} is not a number")
            v = float(v)
        key = (s.measurement, s.labels, s.time)
        fields = groups.get(key)
        if fields is None:
            fields = groups[key] = {}
        if isfinite(v):
            fields[s.field] = v
        else:
            skipped += 1
    prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    stamps: dict[datetime, str] = {}
    keys: dict[str, str] = {}
    lines: list[str] = []
    for (meas, labels, time), fields in groups.items():
        if not fields:
            continue
        prefix = prefixes.get((meas, labels))
        if prefix is None:
            prefix = prefixes[(meas, labels)] = _prefix(meas, labels) + " "
        stamp = stamps.get(time)
        if stamp is None:
            stamp = stamps[time] = f" {_timestamp(time, factor)}\n"
        body = []
        for k in sorted(fields):
            ek = keys.get(k)
            if ek is None:
                ek = keys[k] = escape_field_key(k) + "="
            body.append(ek + _format_float(fields[k]))
        lines.append(prefix + ",".join(body) + stamp)
    return EncodeResult("".join(lines).encode(), len(lines), skipped)


def _prefix(meas: str, labels: Iterable[tuple[str, str]]) -> str:
    tags = "".join(
        f",{escape_tag(str(k))}={escape_tag(str(v))}"
        for k, v in sorted(labels)
        if v is not None and str(k) != "" and str(v) != ""
    )
    return escape_measurement(meas) + tags
