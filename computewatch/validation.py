"""Catalogue validation of samples and frames, with every rejection counted.

Nothing is dropped silently: a value outside its unit's range, a NaN where the metric does not
allow one, a metric the catalogue does not know, or a label value that is not valid Unicode
(a lone surrogate, e.g. from a JSON ``"\\ud800"``: no exposition, store or wire format can
carry it) is refused, counted in `Rejections` by
(component, measurement, field, reason), and logged once per batch with an example value.
The counts are themselves exported as ``computewatch_samples_rejected_total``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from computewatch import catalog
from computewatch.samples import TIME, Sample

if TYPE_CHECKING:  # imported where frames are validated: the agent's Sample path needs none
    import pyarrow as pa

__all__ = ["InvalidSampleError", "Rejections", "check_sample", "filter_samples", "validate_frame"]

log = logging.getLogger(__name__)


class InvalidSampleError(ValueError):
    """A sample the catalogue refuses; the message names the metric, value and labels."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Rejections:
    """Thread-safe counts of refused values, exportable as samples."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, component: str, measurement: str, field: str, reason: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._counts[(component, measurement, field, reason)] += n

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def counts(self) -> dict[tuple[str, str, str, str], int]:
        with self._lock:
            return dict(self._counts)

    def as_samples(self, time: datetime | None = None) -> list[Sample]:
        time = time or datetime.now(UTC)
        return [
            Sample.of("computewatch.samples_rejected_total", float(n),
                      {"component": c, "measurement": m, "field": f, "reason": r}, time)
            for (c, m, f, r), n in self.counts().items()
        ]


def _reason_code(why: str) -> str:
    if why.startswith("NaN"):
        return "nan"
    if why.startswith("not a number"):
        return "not_a_number"
    return "out_of_range"


def _subject(sample: Sample) -> str:
    where = ",".join(f"{k}={v}" for k, v in sample.labels)
    return f"{sample.name}{{{where}}}"


_SCHEMA_OK: dict[tuple[str, tuple[str, ...]], catalog.Metric] = {}
"""(metric name, label keys) pairs already checked against the catalogue: an agent sends the
same few shapes every cycle, so only their values need checking again."""


def _bad_text(labels: tuple[tuple[str, str], ...]) -> str | None:
    """The first label whose value is not valid Unicode (cannot be written as UTF-8)."""
    for k, v in labels:
        if not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return k
    return None


_SERIES_OK: dict[tuple[str, str, tuple[tuple[str, str], ...]], catalog.Metric] = {}
"""Whole series (metric and label values) already checked: the same series come back every
cycle, and hashing their label tuple is cheaper than rebuilding its key tuple."""


_SEEN_TUPLES: dict[tuple[str, str, int], tuple[tuple[tuple[str, str], ...], catalog.Metric]] = {}
"""Series already checked, by their label tuple's identity: an agent's collectors keep a
series' tuple from run to run (`LabelSets`), and hashing its 13 to 19 pairs for `_SERIES_OK`
was a third of the check. The entry holds the tuple, so its id is not reused while the entry
lives; past 5,000 entries they start again (a collector that makes its tuples afresh every
run adds new ones each cycle)."""


def _remember(seen: tuple[str, str, int], labels: tuple[tuple[str, str], ...],
              m: catalog.Metric) -> None:
    if len(_SEEN_TUPLES) >= 5_000:
        _SEEN_TUPLES.clear()
    _SEEN_TUPLES[seen] = (labels, m)


def check_sample(sample: Sample) -> Sample:
    """Return the sample if the catalogue accepts it, else raise InvalidSampleError."""
    labels = sample.labels
    seen = (sample.measurement, sample.field, id(labels))
    hit = _SEEN_TUPLES.get(seen)
    if hit is not None and hit[0] is labels:
        m = hit[1]
    else:
        m = _SERIES_OK.get((sample.measurement, sample.field, labels))
        if m is not None:
            _remember(seen, labels, m)
    if m is not None:
        why = m.check(sample.value)
        if why is not None:
            raise InvalidSampleError(f"{_subject(sample)}: {why}", _reason_code(why))
        return sample
    series = (sample.measurement, sample.field, labels)
    key = (sample.name, tuple(k for k, _ in sample.labels))
    m = _SCHEMA_OK.get(key)
    if m is None:
        try:
            m = catalog.metric(sample.name)
        except catalog.UnknownMetricError as exc:
            raise InvalidSampleError(f"{_subject(sample)} = {sample.value!r}: {exc}",
                                     "unknown_metric") from None
        allowed = catalog.LABEL_SETS[m.name]
        extra = [k for k in key[1] if k not in allowed]
        if extra:
            raise InvalidSampleError(
                f"{_subject(sample)} = {sample.value!r}: unknown label {extra[0]!r} "
                f"(allowed: {', '.join(m.labels)})",
                "unknown_label",
            )
        if len(_SCHEMA_OK) < 10_000:
            _SCHEMA_OK[key] = m
    bad = _bad_text(sample.labels)
    if bad is not None:
        raise InvalidSampleError(f"{sample.name}: label {bad!r} value "
                                 f"{sample.label(bad)!r} is not valid Unicode", "invalid_label")
    if len(_SERIES_OK) < 5_000:
        _SERIES_OK[series] = m
    _remember(seen, labels, m)
    why = m.check(sample.value)
    if why is not None:
        raise InvalidSampleError(f"{_subject(sample)}: {why}", _reason_code(why))
    return sample


def filter_samples(samples: Iterable[Sample], rejections: Rejections,
                   component: str) -> list[Sample]:
    """Keep the valid samples; count and log (once per batch and reason) the others."""
    kept: list[Sample] = []
    first_error: dict[str, str] = {}
    for s in samples:
        try:
            kept.append(check_sample(s))
        except InvalidSampleError as exc:
            rejections.add(component, s.measurement, s.field, exc.reason)
            first_error.setdefault(exc.reason, str(exc))
    for msg in first_error.values():
        log.warning("%s: rejected sample: %s", component, msg)
    return kept


def validate_frame(measurement: str, table: pa.Table, rejections: Rejections,
                   component: str) -> pa.Table:
    """Return ``table`` with refused values set to null and unknown columns removed.

    Every refused cell is counted. An unknown measurement refuses the whole frame, counted
    under field ``*``; the caller gets an empty table of the same rows.
    """
    import pyarrow as pa

    try:
        spec = catalog.measurement(measurement)
    except catalog.UnknownMetricError as exc:
        rejections.add(component, measurement, "*", "unknown_metric", table.num_rows)
        log.warning("%s: rejected %d rows: %s", component, table.num_rows, exc)
        return table.select([TIME]) if TIME in table.column_names else table.select([])
    if TIME not in table.column_names:
        raise ValueError(f"{component}: frame for {measurement!r} has no {TIME!r} column")
    keep = [TIME]
    for name in table.column_names:
        if name == TIME:
            continue
        if name in spec.labels:
            keep.append(name)
            continue
        col = table.column(name)
        if name not in spec.fields and (pa.types.is_string(col.type)
                                        or pa.types.is_dictionary(col.type)):
            # A label the catalogue does not declare: dropped, every non-empty value counted.
            n = table.num_rows - col.null_count
            rejections.add(component, measurement, name, "unknown_label", n)
            log.warning("%s: %s: dropped %d values of unknown label %r (labels: %s)", component,
                        measurement, n, name, ", ".join(spec.labels))
            continue
        try:
            m = spec.metric(name)
        except catalog.UnknownMetricError as exc:
            reason = "unknown_metric"
            n = table.num_rows - col.null_count
            rejections.add(component, measurement, name, reason, n)
            log.warning("%s: rejected %d values: %s", component, n, exc)
            continue
        keep.append(name)
        table = _null_invalid(table, name, m, rejections, component)
    return table.select(keep)


def _null_invalid(table: pa.Table, name: str, m: catalog.Metric, rejections: Rejections,
                  component: str) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name)
    if not pa.types.is_floating(col.type):
        try:
            col = col.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            n = table.num_rows - col.null_count
            rejections.add(component, m.measurement, m.field, "not_a_number", n)
            log.warning("%s: %s: column of type %s is not numeric (%s)", component, m.name,
                        col.type, exc)
            return table.set_column(table.schema.get_field_index(name), name,
                                    pa.nulls(table.num_rows, pa.float64()))
    low, high = m.valid_range
    if _all_valid(col, low, high):
        return table.set_column(table.schema.get_field_index(name), name, col)
    is_nan = pc.is_nan(col)
    bad_range = pc.or_(pc.or_(pc.less(col, low), pc.greater(col, high)), pc.is_inf(col))
    bad = pc.fill_null(pc.or_(bad_range, is_nan) if not m.nan_ok else bad_range, False)
    n_bad = pc.sum(bad).as_py() or 0
    if n_bad:
        n_nan = 0 if m.nan_ok else (pc.sum(pc.fill_null(is_nan, False)).as_py() or 0)
        rejections.add(component, m.measurement, m.field, "nan", n_nan)
        rejections.add(component, m.measurement, m.field, "out_of_range", n_bad - n_nan)
        example = pc.filter(col, bad)[0].as_py()
        log.warning("%s: %s: rejected %d values, e.g. %r (valid range [%g, %g])", component,
                    m.name, n_bad, example, low, high)
        col = pc.if_else(bad, pa.scalar(None, pa.float64()), col)
    return table.set_column(table.schema.get_field_index(name), name, col)


def _all_valid(col, low: float, high: float) -> bool:
    """True when no value of ``col`` can be refused: the minimum and maximum of each
    chunk's value buffer finite and within [low, high]. numpy's min and max carry a NaN
    through, so one pass each decides it. The buffer's null slots are read too (whatever
    they hold): a false alarm there only sends the frame down the exact slow path (nine
    compute passes), which is also where every frame with a refused value goes."""
    import numpy as np
    import pyarrow as pa

    for chunk in col.chunks:
        if chunk.null_count == len(chunk):
            continue
        if not pa.types.is_floating(chunk.type):
            return False
        width = chunk.type.bit_width // 8
        values = np.frombuffer(chunk.buffers()[1], dtype=f"<f{width}",
                               count=chunk.offset + len(chunk))[chunk.offset:]
        lo, hi = values.min(), values.max()
        if not (np.isfinite(lo) and np.isfinite(hi) and low <= lo and hi <= high):
            return False
    return True
