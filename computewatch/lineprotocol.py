"""InfluxDB line protocol encoding of Samples and frames, for VictoriaMetrics and InfluxDB.

Escaping follows influxdb-client's ``Point.to_line_protocol()`` (1.50) so that what we write
is byte-for-byte what that client would write for the same point:

- measurement: comma, space, and newline, tab and carriage return (as ``\\n``, ``\\t``, ``\\r``:
  a control character must never end a line early);
- tag keys, tag values, field keys: the same plus the equals sign; backslash is not escaped;
- string field values: double quote and backslash.

One deliberate difference: an identifier that ends in a backslash gets a space appended, so the
backslash cannot escape the delimiter that follows. Point does this for tag values only and
writes a broken line for such a measurement, tag key or field key.

Tags are written sorted by key and empty tag values are left out (line protocol forbids them).
Fields are written sorted by key. Every value is written as a float, including Python ints: the
frames are float64, and a field whose type depends on the collector would hit InfluxDB's "field
type conflict". Floats are written with Python's shortest round-trip ``repr`` (a trailing
``.0`` dropped, as Point does), so every value reads back bit-exact. NaN and infinities cannot
be carried: they are left out and counted in ``EncodeResult.skipped``; a line whose fields are
all left out is not written. Each line ends with ``\\n``, so payloads concatenate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from math import isfinite
from numbers import Real
from typing import TYPE_CHECKING

from computewatch.samples import Sample

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "PRECISIONS",
    "EncodeResult",
    "encode_frame",
    "encode_samples",
    "escape_field_key",
    "escape_measurement",
    "escape_string",
    "escape_tag",
]

PRECISIONS: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
"""Write precisions (the ``precision`` query parameter) and their size in nanoseconds."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_DAY = 86_400 * 1_000_000_000

_CONTROL = {"\n": r"\n", "\t": r"\t", "\r": r"\r"}
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", **_CONTROL})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", **_CONTROL})
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


@dataclass(frozen=True, slots=True)
class EncodeResult:
    """An encoded payload, how many lines it holds and how many NaN/inf values were left out."""

    payload: bytes
    lines: int
    skipped: int


def _guard_backslash(escaped: str) -> str:
    return escaped + " " if escaped.endswith("\\") else escaped


def escape_measurement(s: str) -> str:
    """Escape a measurement name; refuse names that line protocol cannot carry."""
    if not s:
        raise ValueError("line protocol: empty measurement name")
    if s.startswith("#"):  # the whole line would be read as a comment and lost
        raise ValueError(f"line protocol: measurement {s!r} starts with '#'")
    return _guard_backslash(s.translate(_ESCAPE_MEASUREMENT))


def escape_tag(s: str) -> str:
    """Escape a tag key or tag value."""
    return _guard_backslash(s.translate(_ESCAPE_KEY))


def escape_field_key(s: str) -> str:
    """Escape a field key."""
    return _guard_backslash(s.translate(_ESCAPE_KEY))


def escape_string(s: str) -> str:
    """Escape the inside of a string field value (the caller adds the double quotes)."""
    return s.translate(_ESCAPE_STRING)


def _factor(precision: str) -> int:
    try:
        return PRECISIONS[precision]
    except (KeyError, TypeError):
        raise ValueError(
            f"line protocol: unknown precision {precision!r} (known: {', '.join(PRECISIONS)})"
        ) from None


def _format_float(v: float) -> str:
    s = repr(v)
    return s[:-2] if s.endswith(".0") else s


def _timestamp(t: datetime, factor: int) -> int:
    if t.tzinfo is None:
        raise ValueError(f"line protocol: time {t.isoformat()} has no timezone")
    d = t - _EPOCH  # exact integer arithmetic: float division would lose nanoseconds
    ns = d.days * _NS_PER_DAY + d.seconds * 1_000_000_000 + d.microseconds * 1_000
    return ns // factor


# --- samples -------------------------------------------------------------------------------

def encode_samples(samples: Iterable[Sample], precision: str = "ns") -> EncodeResult:
    """Encode samples, one line per (measurement, labels, time) with their fields merged."""
    factor = _factor(precision)
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


# --- frames --------------------------------------------------------------------------------

def encode_frame(measurement: str, table: pa.Table, precision: str = "ns") -> EncodeResult:
    """Encode a frame (``time``, string label columns, numeric field columns), vectorized.

    Tag sets are escaped once per distinct label combination and floats are formatted by
    Arrow, so the cost per row is a handful of columnar passes, not Python code. (The
    encoder lives in `computewatch._lineframes`, imported here on first use.)
    """
    from computewatch._lineframes import encode_frame as encode

    return encode(measurement, table, precision)
