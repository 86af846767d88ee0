"""Whole Arrow frames to line protocol, vectorized: a few columnar passes per frame.

Kept apart so that what only encodes Samples (the agent's remote write, ``collect --format
influx``) never imports numpy or pyarrow; `computewatch.lineprotocol` imports this module on
first use of `encode_frame`. The escaping rules are the ones `computewatch.lineprotocol`
states, and each value is formatted as `encode_samples` formats it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
from computewatch.samples import TIME

__all__ = ["encode_frame"]

_STR = pa.large_string()  # large offsets: a payload of millions of lines passes 2 GiB


def _s(text: str) -> pa.Scalar:
    return pa.scalar(text, _STR)


def _concat_present(parts: list[pa.Array | pa.Scalar]) -> pa.Array:
    """Concatenate element-wise, reading a null part as the empty string."""
    return pc.binary_join_element_wise(*parts, _s(""), null_handling="replace",
                                       null_replacement="")


class _Refusals:
    """Finite values left out because their line cannot be written, and the first reason."""

    def __init__(self) -> None:
        self.values = 0
        self.problem = ""

    def add(self, n: int, exc: LineProtocolError) -> None:
        self.values += n
        self.problem = self.problem or str(exc)


def encode_frame(measurement: str, table: pa.Table, precision: str = "ns") -> EncodeResult:
    """Encode a frame (``time``, string label columns, numeric field columns), vectorized.

    Tag sets are escaped once per distinct label value and floats are formatted by Arrow, so
    the cost per row is a handful of columnar passes, not Python code. Rows that line
    protocol cannot carry (a label value with a control character, too many tags, a time out
    of range) are left out and their finite values counted in ``refused``.
    """
    factor = precision_factor(precision)
    if TIME not in table.column_names:
        raise ValueError(f"line protocol: frame for {measurement!r} has no {TIME!r} column")
    if table.num_rows == 0:
        return EncodeResult(b"", 0, 0)
    table = table.unify_dictionaries().combine_chunks()
    labels: list[tuple[str, pa.Array]] = []
    fields: list[tuple[str, pa.Array]] = []
    for name in table.column_names:
        if name == TIME:
            continue
        col = table.column(name).chunk(0)
        kind = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            if name != "":
                labels.append((name, col))
        elif pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
            if name == "":
                raise ValueError(f"line protocol: frame for {measurement!r} has an unnamed field")
            fields.append((name, col))
        else:
            raise TypeError(f"line protocol: {measurement}.{name}: column type {col.type} is "
                            "neither a string label nor a numeric field")
    labels.sort(key=lambda kv: kv[0])
    fields.sort(key=lambda kv: kv[0])
    times = table.column(TIME).chunk(0)
    _check_time_type(times, measurement)

    if not fields:
        return EncodeResult(b"", 0, 0)
    refusals = _Refusals()
    skipped = 0
    keys: list[str] = []
    columns: list[pa.Array] = []
    valid = np.empty((len(fields), table.num_rows), dtype=bool)
    for name, col in fields:
        values = col.cast(pa.float64())
        finite = pc.is_finite(values)
        n_finite = pc.sum(finite).as_py() or 0
        if n_finite < len(values) - values.null_count:
            skipped += len(values) - values.null_count - n_finite
            values = pc.if_else(finite, values, pa.scalar(None, pa.float64()))
        try:
            keys.append(escape_field_key(name))
        except LineProtocolError as exc:
            refusals.add(n_finite, exc)
            continue
        valid[len(columns)] = np.asarray(values.is_valid())
        columns.append(values)
    valid = valid[:len(columns)]
    try:
        meas = escape_measurement(measurement)
    except LineProtocolError as exc:
        refusals.add(int(valid.sum()), exc)
        return EncodeResult(b"", 0, skipped, refusals.values, refusals.problem)
    present = valid.any(axis=0)
    bad = _Rows(table.num_rows)
    time_text = _time_strings(times, factor, bad)
    prefix = _prefixes(meas, labels, table.num_rows, bad)
    if bad.problem is not None:
        n_refused = int(valid[:, bad.mask].sum())
        if n_refused:
            refusals.add(n_refused, bad.problem)
        present &= ~bad.mask
    if not present.all():  # a row whose fields are all left out makes no line
        keep = pa.array(present)
        columns = [c.filter(keep) for c in columns]
        valid, time_text = valid[:, present], time_text.filter(keep)
        if isinstance(prefix, pa.Array):
            prefix = prefix.filter(keep)
        if not present.any():
            return EncodeResult(b"", 0, skipped, refusals.values, refusals.problem)
    # Each field contributes a separator ("" when absent, " key=" when it is the row's first
    # field, ",key=" otherwise) and its value, so one join builds every line.
    first = valid.argmax(axis=0)
    parts: list[pa.Array | pa.Scalar] = [prefix]
    for i, (key, values) in enumerate(zip(keys, columns, strict=True)):
        code = np.where(valid[i], np.where(first == i, 1, 2), 0).astype(np.int32)
        parts.append(pa.array(["", f" {key}=", f",{key}="], _STR).take(pa.array(code)))
        parts.append(_format_floats(values))
    parts += [_s(" "), time_text, _s("\n")]
    lines = _concat_present(parts)
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset:]
    start, end = int(offsets[0]), int(offsets[len(lines)])
    return EncodeResult(lines.buffers()[2][start:end].to_pybytes(), len(lines), skipped,
                        refusals.values, refusals.problem)


class _Rows:
    """Rows refused so far, and why the first of them was."""

    def __init__(self, n: int) -> None:
        self.mask = np.zeros(n, dtype=bool)
        self.problem: LineProtocolError | None = None

    def add(self, rows: np.ndarray, problem: LineProtocolError | None) -> None:
        if problem is not None and rows.any():
            self.mask |= rows
            self.problem = self.problem or problem


def _check_time_type(col: pa.Array, measurement: str) -> None:
    if not pa.types.is_timestamp(col.type):
        raise TypeError(f"line protocol: {measurement}.{TIME} is {col.type}, not a timestamp")
    if col.type.tz is None:
        raise ValueError(f"line protocol: {measurement}.{TIME} has no timezone")
    if col.null_count:
        raise ValueError(f"line protocol: {measurement}.{TIME} has {col.null_count} null times")


def _time_strings(col: pa.Array, factor: int, bad: _Rows) -> pa.Array:
    """Each row's timestamp at the write precision; rows whose time is out of range go to
    ``bad``."""
    unit_ns = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[col.type.unit]
    raw = col.cast(pa.int64()).to_numpy()
    limit = TIMESTAMP_RANGE_NS[1] // unit_ns
    out_of_range = (raw > limit) | (raw < -limit)
    if out_of_range.any():
        bad.add(out_of_range, LineProtocolError(
            "line protocol: a time outside the range line protocol carries (1677-09-21 to "
            "2262-04-11)"))
        raw = np.where(out_of_range, 0, raw)
    # Floor at a coarser precision, like the sample path.
    out = raw * (unit_ns // factor) if unit_ns >= factor else raw // (factor // unit_ns)
    return pa.array(out).cast(_STR)


def _fragments(key: str, values: list[str | None]) -> tuple[list[str | None], np.ndarray,
                                                              LineProtocolError | None]:
    """``,key=value`` per dictionary entry (None when empty) and which entries are refused."""
    frags: list[str | None] = []
    refused = np.zeros(len(values) + 1, dtype=bool)  # the extra code: an absent label
    problem = None
    try:
        ekey = escape_tag_key(key)
    except LineProtocolError as exc:
        ekey, problem = "", exc
    for i, v in enumerate(values):
        if not v:
            frags.append(None)
            continue
        if problem is not None and not ekey:
            refused[i] = True
            frags.append(None)
            continue
        try:
            frags.append(f",{ekey}={escape_tag(v)}")
        except LineProtocolError as exc:
            refused[i] = True
            problem = problem or exc
            frags.append(None)
    return frags, refused, problem


def _prefixes(meas: str, labels: list[tuple[str, pa.Array]], n: int, bad: _Rows
              ) -> pa.Array | pa.Scalar:
    """The escaped ``measurement,tag=value,...`` of every row, built once per label set; rows
    with a label line protocol cannot carry, or too many tags, go to ``bad``."""
    if not labels:
        return _s(meas)
    frags: list[pa.Array] = []
    codes: list[np.ndarray] = []
    tags = np.zeros(n, dtype=np.int64)
    for key, col in labels:
        enc = col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col)
        values = enc.dictionary.cast(_STR).to_pylist()
        frag, refused, problem = _fragments(key, values)
        # One fragment per dictionary entry, plus a null one (code len) for absent labels.
        frags.append(pa.array([*frag, None], _STR))
        indices = enc.indices.cast(pa.int64())  # int8 indices cannot hold the extra code
        code = pc.fill_null(indices, len(values)).to_numpy()
        codes.append(code)
        bad.add(refused[code], problem)
        present = np.array([bool(v) for v in values] + [False])
        tags += present[code]
    too_many = tags > MAX_TAGS
    if too_many.any():
        bad.add(too_many, LineProtocolError(
            f"line protocol: {meas} has {int(tags.max())} tags; the stores keep {MAX_TAGS} "
            "at most"))
    # One integer per row naming its label combination (mixed radix, re-encoded before the
    # product could overflow), then a dictionary of the combinations that occur.
    key_codes, size = codes[0], len(frags[0])
    for frag, code in zip(frags[1:], codes[1:], strict=True):
        if size * len(frag) >= 2**62:
            key_codes = pc.dictionary_encode(pa.array(key_codes)).indices.to_numpy()
            key_codes = key_codes.astype(np.int64)
            size = int(key_codes.max()) + 1
        key_codes = key_codes * len(frag) + code
        size *= len(frag)
    combos = pc.dictionary_encode(pa.array(key_codes))
    row_combo = combos.indices
    example = np.empty(len(combos.dictionary), dtype=np.int64)
    example[row_combo.to_numpy()] = np.arange(n, dtype=np.int64)  # any row of each combination
    parts = [frag.take(pa.array(code[example])) for frag, code in zip(frags, codes, strict=True)]
    unique = _concat_present([_s(meas), *parts])
    return unique.take(row_combo)


# Python's repr and Arrow's float-to-string cast choose the same shortest digits, but Arrow
# writes decimal exponents -6..9 positionally and repr -4..15, and Arrow writes "1e-7" where
# repr writes "1e-07". These rewrite Arrow's text into repr's where the two differ.
_SMALL_FIXES = (
    (r"^(-?)0\.0000([1-9])(\d*)$", r"\1\2.\3e-05"),
    (r"^(-?)0\.00000([1-9])(\d*)$", r"\1\2.\3e-06"),
    (r"\.e", "e"),
    (r"e-(\d)$", r"e-0\1"),
)


def _format_floats(values: pa.Array) -> pa.Array:
    """Format finite float64 values (nulls stay null) exactly as `encode_samples` formats them."""
    text = pc.cast(values, _STR)
    x = np.abs(values.to_numpy(zero_copy_only=False))
    with np.errstate(invalid="ignore"):
        small = (x < 1e-4) & (x > 0)
        big = (x >= 1e10) & (x < 1e16)
    if small.any():
        sub = text.filter(pa.array(small))
        for pattern, replacement in _SMALL_FIXES:
            sub = pc.replace_substring_regex(sub, pattern, replacement)
        text = pc.replace_with_mask(text, pa.array(small), sub)
    if big.any():
        # An integral value below 1e16 prints as that integer (below 2**53 every integer is
        # a double; above it the zero-padded shortest digits are even, hence exact).
        whole = big & (np.floor(x) == x)
        if whole.any():
            ints = values.filter(whole).to_numpy().astype(np.int64)
            text = pc.replace_with_mask(text, pa.array(whole), pa.array(ints).cast(_STR))
        frac = big & ~whole
        if frac.any():
            text = pc.replace_with_mask(text, pa.array(frac), _positional(values.filter(frac),
                                                                          text.filter(frac)))
    return text


def _positional(values: pa.Array, text: pa.Array) -> pa.Array:
    """Rewrite Arrow's ``d.ddde+X`` (X in 10..15) of non-integral values positionally.

    A non-integral value's shortest digits always reach past the decimal point.
    """
    x = np.abs(values.to_numpy())
    exponent = np.full(len(x), 10)
    for k in range(11, 16):
        exponent += x >= 10.0**k  # powers of ten up to 1e22 are exact doubles
    for e in np.unique(exponent):
        mask = pa.array(exponent == e)
        sub = pc.replace_substring_regex(text.filter(mask), rf"^(-?\d)\.(\d{{{e}}})(\d+)e\+{e}$",
                                         r"\1\2.\3")
        text = pc.replace_with_mask(text, mask, sub)
    return text
