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
    MAX_TAGS,
    TIMESTAMP_RANGE_NS,
    EncodeResult,
    LineProtocolError,
    escape_field_key,
    escape_measurement,
    escape_tag,
    escape_tag_key,
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
    if not TIMESTAMP_RANGE_NS[0] <= ns <= TIMESTAMP_RANGE_NS[1]:
        raise LineProtocolError(f"line protocol: time {t.isoformat()} is outside the range "
                                "line protocol carries (1677-09-21 to 2262-04-11)")
    return ns // factor


def encode_samples(samples: Iterable[Sample], precision: str = "ns") -> EncodeResult:
    """Encode samples, one line per (measurement, labels, time) with their fields merged.

    A line that line protocol cannot carry (see `check_name`) is left out, its finite values
    counted in ``refused``; a field key it cannot carry leaves out that field only.
    """
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
    prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str | LineProtocolError] = {}
    stamps: dict[datetime, str | LineProtocolError] = {}
    keys: dict[str, str | LineProtocolError] = {}
    lines: list[str] = []
    refused = 0
    problem = ""
    for (meas, labels, time), fields in groups.items():
        if not fields:
            continue
        prefix = prefixes.get((meas, labels))
        if prefix is None:
            try:
                prefix = _prefix(meas, labels) + " "
            except LineProtocolError as exc:
                prefix = exc
            prefixes[(meas, labels)] = prefix
        stamp = stamps.get(time)
        if stamp is None:
            try:
                stamp = f" {_timestamp(time, factor)}\n"
            except LineProtocolError as exc:
                stamp = exc
            stamps[time] = stamp
        for bad in (prefix, stamp):
            if isinstance(bad, LineProtocolError):
                refused += len(fields)
                problem = problem or str(bad)
                break
        else:
            body = []
            for k in sorted(fields):
                ek = keys.get(k)
                if ek is None:
                    try:
                        ek = escape_field_key(k) + "="
                    except LineProtocolError as exc:
                        ek = exc
                    keys[k] = ek
                if isinstance(ek, LineProtocolError):
                    refused += 1
                    problem = problem or str(ek)
                    continue
                body.append(ek + _format_float(fields[k]))
            if body:
                lines.append(prefix + ",".join(body) + stamp)  # type: ignore[operator]
    return EncodeResult("".join(lines).encode(), len(lines), skipped, refused, problem)


def _prefix(meas: str, labels: Iterable[tuple[str, str]]) -> str:
    """``measurement,tag=value,...``; empty tag values are left out (line protocol has none)."""
    tags = [(k, v) for k, v in sorted(labels) if v is not None and str(v) != ""]
    if len(tags) > MAX_TAGS:
        raise LineProtocolError(f"line protocol: {meas} has {len(tags)} tags; the stores keep "
                                f"{MAX_TAGS} at most")
    return escape_measurement(meas) + "".join(
        f",{escape_tag_key(str(k))}={escape_tag(str(v))}" for k, v in tags)
