"""What both encoders share: write precisions, the escaping rules, the result type.

The rules are stated in `computewatch.lineprotocol`'s docstring; `check_name` and
`check_tag_value` say what line protocol cannot carry, the ``escape_*`` functions write the
rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_TAGS",
    "MAX_TAG_VALUE_BYTES",
    "PRECISIONS",
    "TIMESTAMP_RANGE_NS",
    "EncodeResult",
    "LineProtocolError",
    "check_name",
    "check_tag_value",
    "escape_field_key",
    "escape_measurement",
    "escape_string",
    "escape_tag",
    "escape_tag_key",
    "precision_factor",
]

PRECISIONS: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
"""Write precisions (the ``precision`` query parameter) and their size in nanoseconds."""

MAX_NAME_BYTES = 256
"""Longest measurement, tag key or field key, in UTF-8 bytes: VictoriaMetrics drops label
names longer than this (``vm_too_long_label_names_total``)."""

MAX_TAG_VALUE_BYTES = 4096
"""Longest tag value, in UTF-8 bytes: VictoriaMetrics 1.79 truncates label values past
16 KiB (``-maxLabelValueLen``) and InfluxDB refuses series keys past 64 KiB; a quarter of the
smaller stays clear of both."""

MAX_TAGS = 29
"""Most tags on one line: VictoriaMetrics keeps 30 labels a series (``-maxLabelsPerTimeseries``,
the metric name included) and silently drops the rest."""

TIMESTAMP_RANGE_NS = (-9223372036854775806, 9223372036854775806)
"""The timestamps line protocol carries (InfluxDB's documented minimum and maximum)."""

# ASCII control characters: the specification forbids newlines in every element, and
# InfluxDB's reference decoder refuses the other non-printable bytes (0x00-0x1f, 0x7f) in
# measurements, keys and tag values.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters escaped with a backslash, and backslashes that must be doubled because they
# stand before one of those, before another backslash or at the end of the element (where
# they would escape the delimiter that follows). A lone backslash before anything else is
# a literal backslash, as the specification says, and stays single: InfluxDB 1.x and 2.x read
# ``\\`` as two backslashes, so doubling only where needed keeps paths like ``C:\data``
# intact in every store.
_ESCAPE_KEY = re.compile(r"\\(?=[\\,= ]|\Z)|[,= ]")
_ESCAPE_MEASUREMENT = re.compile(r"\\(?=[\\,= ]|\Z)|[, ]")
_NEEDS_ESCAPE = re.compile(r"[\\,= ]")
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


class LineProtocolError(ValueError):
    """A name, label or value that line protocol cannot carry; says which and why."""


@dataclass(frozen=True, slots=True)
class EncodeResult:
    """An encoded payload and what did not go into it.

    ``lines``: lines in ``payload``. ``skipped``: NaN and infinite values left out (line
    protocol has no representation for them). ``refused``: finite values left out because
    their line could not be written (a name or label that line protocol cannot carry, see
    `check_name`); ``problem`` says why for the first of them.
    """

    payload: bytes
    lines: int
    skipped: int
    refused: int = 0
    problem: str = ""


def _utf8_len(s: str, element: str) -> int:
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise LineProtocolError(f"line protocol: {element} {s!r} is not valid Unicode "
                                f"({exc.reason})") from None


def check_name(s: str, element: str = "name") -> str:
    """Refuse a measurement, tag key or field key that line protocol cannot carry.

    Refused: empty; not encodable as UTF-8 (a lone surrogate); an ASCII control character
    (newline, tab, carriage return, NUL...); a leading underscore (reserved by InfluxDB);
    longer than `MAX_NAME_BYTES`.
    """
    if not s:
        raise LineProtocolError(f"line protocol: empty {element}")
    if _CONTROL.search(s):
        raise LineProtocolError(f"line protocol: {element} {s!r} holds a control character")
    if s.startswith("_"):
        raise LineProtocolError(f"line protocol: {element} {s!r} starts with '_' (reserved "
                                "by InfluxDB)")
    if _utf8_len(s, element) > MAX_NAME_BYTES:
        raise LineProtocolError(f"line protocol: {element} {s[:40]!r}... is longer than "
                                f"{MAX_NAME_BYTES} bytes")
    return s


def check_tag_value(s: str, key: str = "") -> str:
    """Refuse a non-empty tag value that line protocol cannot carry (control character,
    invalid Unicode, longer than `MAX_TAG_VALUE_BYTES`)."""
    element = f"tag {key!r} value" if key else "tag value"
    if _CONTROL.search(s):
        raise LineProtocolError(f"line protocol: {element} {s!r} holds a control character")
    if _utf8_len(s, element) > MAX_TAG_VALUE_BYTES:
        raise LineProtocolError(f"line protocol: {element} {s[:40]!r}... is longer than "
                                f"{MAX_TAG_VALUE_BYTES} bytes")
    return s


def _escape(s: str, pattern: re.Pattern[str]) -> str:
    if not _NEEDS_ESCAPE.search(s):
        return s
    return pattern.sub(lambda m: "\\" + m.group(), s)


def escape_measurement(s: str) -> str:
    """Escape a measurement name (comma, space); `LineProtocolError` if it cannot be carried."""
    check_name(s, "measurement")
    if s.startswith("#"):  # the whole line would be read as a comment and lost
        raise LineProtocolError(f"line protocol: measurement {s!r} starts with '#'")
    return _escape(s, _ESCAPE_MEASUREMENT)


def escape_tag(s: str) -> str:
    """Escape a tag value (or key): comma, equals sign, space. `LineProtocolError` if it
    cannot be carried: empty (leave the tag out instead), a control character, invalid
    Unicode, longer than `MAX_TAG_VALUE_BYTES`."""
    if not s:
        raise LineProtocolError("line protocol: empty tag value (leave the tag out instead)")
    check_tag_value(s)
    return _escape(s, _ESCAPE_KEY)


def escape_tag_key(s: str) -> str:
    """Escape a tag key, refusing what `check_name` refuses."""
    check_name(s, "tag key")
    return _escape(s, _ESCAPE_KEY)


def escape_field_key(s: str) -> str:
    """Escape a field key (comma, equals sign, space); a double quote is refused too, since
    VictoriaMetrics would read it as the start of a string value."""
    check_name(s, "field key")
    if '"' in s:
        raise LineProtocolError(f"line protocol: field key {s!r} holds a double quote")
    return _escape(s, _ESCAPE_KEY)


def escape_string(s: str) -> str:
    """Escape the inside of a string field value (double quote, backslash); the caller adds
    the quotes. A newline is refused: VictoriaMetrics splits lines on it even inside quotes."""
    if "\n" in s:
        raise LineProtocolError(f"line protocol: string value {s!r} holds a newline")
    _utf8_len(s, "string value")
    return s.translate(_ESCAPE_STRING)


def precision_factor(precision: str) -> int:
    """Nanoseconds per unit of ``precision``; an unknown one is a ValueError naming the known."""
    try:
        return PRECISIONS[precision]
    except (KeyError, TypeError):
        raise ValueError(
            f"line protocol: unknown precision {precision!r} (known: {', '.join(PRECISIONS)})"
        ) from None
