"""Frames to line-protocol bodies of a bounded size, each posted with retries.

Shared by the stores that write line protocol (VictoriaMetrics, InfluxDB). A frame is
validated against the catalogue (refusals counted), encoded by `encode_frame` (rows line
protocol cannot carry counted as refused, reason ``unencodable``, never as written) in bodies of
about `BODY_BYTES`, and each body is posted by `LineProtocolWriter`; a body that fails with a
retryable error (network, timeout, 429, 5xx) is sent again up to `ATTEMPTS` times with
doubling pauses; any other failure stops the write with a StoreError that says how many rows
were stored before it.
"""

from __future__ import annotations

import logging
import time

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from computewatch import catalog
from computewatch.lineprotocol import WriteError, Writer, encode_frame
from computewatch.samples import TIME
from computewatch.store._protocol import StoreError, WriteResult
from computewatch.validation import Rejections, validate_frame

__all__ = ["ATTEMPTS", "BACKOFF_S", "BODY_BYTES", "lp_table", "post_table", "post_with_retries",
           "write_frame"]

log = logging.getLogger(__name__)

BODY_BYTES = 8 << 20
"""Uncompressed line protocol per request: big enough to amortize a request, small enough
that a retry resends little (both servers read line protocol as a stream)."""
ATTEMPTS = 4
BACKOFF_S = 0.25


def lp_table(table: pa.Table, meas: catalog.Measurement) -> pa.Table:
    """A validated frame as `encode_frame` wants it: UTC times, string tags."""
    t = table.column(TIME)
    if not pa.types.is_timestamp(t.type):
        raise StoreError(f"frame for {meas.name!r}: column {TIME!r} is {t.type}, not a timestamp")
    if t.type.tz is None:  # naive times are UTC, as in the embedded store
        table = table.set_column(table.schema.get_field_index(TIME), TIME,
                                 t.cast(pa.timestamp(t.type.unit, tz="UTC")))
    for lab in meas.labels:
        if lab in table.column_names:
            col = table.column(lab)
            if not (pa.types.is_string(col.type) or pa.types.is_dictionary(col.type)):
                table = table.set_column(table.schema.get_field_index(lab), lab,
                                         pc.cast(col, pa.string()))
    return table


def post_with_retries(writer: Writer, body: bytes, precision: str, *,
                      attempts: int | None = None, backoff_s: float | None = None) -> None:
    """One body, sent again after a retryable failure (doubling pauses); raises the last."""
    attempts = ATTEMPTS if attempts is None else attempts
    backoff_s = BACKOFF_S if backoff_s is None else backoff_s
    for attempt in range(attempts):
        try:
            writer.write(body, precision)
            return
        except WriteError as exc:
            if not exc.retryable or attempt == attempts - 1:
                raise
            pause = backoff_s * 2 ** attempt
            log.warning("%s; attempt %d of %d, again in %.2f s", exc, attempt + 1, attempts,
                        pause)
            time.sleep(pause)


def write_frame(writer: Writer, measurement: str, frame: pa.Table | pd.DataFrame,
                rejections: Rejections, source: str, precision: str) -> WriteResult:
    """Validate, encode in bodies of about `BODY_BYTES`, post each with retries."""
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(
        frame, preserve_index=False)
    before = rejections.total()
    table = validate_frame(measurement, table, rejections, f"store {source}")
    rejected = rejections.total() - before
    if table.num_rows == 0 or len(table.column_names) <= 1:
        return WriteResult(0, rejected)
    table = lp_table(table, catalog.measurement(measurement))
    written, refused = post_table(writer, measurement, table, rejections, source, precision)
    return WriteResult(written, rejected + refused)


def post_table(writer: Writer, measurement: str, table: pa.Table, rejections: Rejections,
               source: str, precision: str) -> tuple[int, int]:
    """Encode a table as `encode_frame` wants it in bodies of about `BODY_BYTES` and post
    each with retries; (lines written, values refused). Rollup rows go this way too."""
    n_fields = len(table.column_names) - 1
    rows = max(100, BODY_BYTES // (100 + 30 * n_fields))  # a guess until a body is measured
    written, offset, refused = 0, 0, 0
    while offset < table.num_rows:
        chunk = table.slice(offset, rows)
        encoded = encode_frame(measurement, chunk, precision)
        if encoded.refused:
            if not refused:
                log.warning("store %s: %s: %d values cannot be written as line protocol (%s); "
                            "refused and counted", source, measurement, encoded.refused,
                            encoded.problem)
            refused += encoded.refused
            rejections.add(f"store {source}", measurement, "*", "unencodable", encoded.refused)
        try:
            post_with_retries(writer, encoded.payload, precision)
        except WriteError as exc:
            raise StoreError(f"{source}: write of {measurement!r} stopped after {written} of "
                             f"{table.num_rows} rows: {exc}") from None
        written += encoded.lines
        offset += chunk.num_rows
        if encoded.payload:  # size the next body from this one's bytes per row
            rows = max(100, int(BODY_BYTES * chunk.num_rows / len(encoded.payload)))
    return written, refused
