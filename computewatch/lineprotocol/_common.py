"""What both encoders share: write precisions, the escaping rules and the result type.

The rules are stated in `computewatch.lineprotocol`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONTROL",
    "PRECISIONS",
    "EncodeResult",
    "escape_field_key",
    "escape_measurement",
    "escape_string",
    "escape_tag",
    "precision_factor",
]

PRECISIONS: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
"""Write precisions (the ``precision`` query parameter) and their size in nanoseconds."""

CONTROL = {"\n": r"\n", "\t": r"\t", "\r": r"\r"}
"""Control characters and how an identifier carries them (never as a raw line end)."""
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", **CONTROL})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", **CONTROL})
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


def precision_factor(precision: str) -> int:
    """Nanoseconds per unit of ``precision``; an unknown one is a ValueError naming the known."""
    try:
        return PRECISIONS[precision]
    except (KeyError, TypeError):
        raise ValueError(
            f"line protocol: unknown precision {precision!r} (known: {', '.join(PRECISIONS)})"
        ) from None
