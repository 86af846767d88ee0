r"""InfluxDB line protocol: encoding Samples and frames, writing bodies, reading store URLs.

One package for what the stores (VictoriaMetrics, InfluxDB) and the agent's remote write
share: the encoders, the `Writer` interface with its HTTP implementation `LineProtocolWriter`,
and the parsers of the store URLs that say where to write. Importing it loads neither numpy,
pyarrow, pandas nor influxdb-client: `encode_frame` (numpy, pyarrow) and `LineProtocolWriter`
(influxdb-client) are imported on first use, so an agent that only encodes Samples stays small.

Encoding follows the InfluxDB line-protocol specification (docs.influxdata.com, "Line
protocol": special characters, escaping backslashes, naming restrictions), checked against a
real VictoriaMetrics:

- measurement: comma and space escaped with a backslash; tag keys, tag values and field
  keys: comma, equals sign and space;
- a backslash is doubled where it would otherwise escape what follows it: before another
  backslash, before a comma, equals sign or space, and at the end of an element (the
  specification reads ``\\`` as one backslash and a lone ``\`` before anything else as
  itself; VictoriaMetrics reads both the same way). A lone backslash elsewhere stays single,
  so ``C:\data`` reads the same in InfluxDB 1.x/2.x, which never unescape ``\\``;
- string field values: double quote and backslash.

What line protocol cannot carry is refused, never rewritten: an ASCII control character
(newline, tab, carriage return, NUL...: the specification forbids newlines, InfluxDB's
reference decoder the rest), text that is not valid Unicode, an empty name, a name that
starts with ``_`` (reserved by InfluxDB) or a measurement that starts with ``#`` (a comment),
names over `MAX_NAME_BYTES` and tag values over `MAX_TAG_VALUE_BYTES` (VictoriaMetrics would
drop or truncate them), more than `MAX_TAGS` tags (VictoriaMetrics keeps 30 labels a series),
a field key with a double quote (VictoriaMetrics would read a string value) and a time outside
the nanosecond range. The escaping functions raise `LineProtocolError`; the encoders leave
the line out and count its finite values in ``EncodeResult.refused``, with the first reason in
``EncodeResult.problem``, so a writer counts them as dropped, never as sent.

Tags are written sorted by key and empty tag values are left out (line protocol forbids them).
Fields are written sorted by key. Every value is written as a float, including Python ints: the
frames are float64, and a field whose type depends on the collector would hit InfluxDB's "field
type conflict". Floats are written with Python's shortest round-trip ``repr`` (a trailing
``.0`` dropped, as influxdb-client's Point does), so every value reads back bit-exact. NaN and
infinities cannot be carried: they are left out and counted in ``EncodeResult.skipped``; a
line whose fields are all left out is not written. Each line ends with ``\n``, so payloads
concatenate.

Modules: `_common` (precisions, escaping, `EncodeResult`), `_samples` (Samples, plain
Python), `_frames` (Arrow frames, vectorized), `_transport` (`Writer`, `WriteError`),
`_http` (`LineProtocolWriter`), `_urls` (store and write URLs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from computewatch.lineprotocol._common import (
    MAX_NAME_BYTES,
    MAX_TAG_VALUE_BYTES,
    MAX_TAGS,
    PRECISIONS,
    EncodeResult,
    LineProtocolError,
    check_name,
    escape_field_key,
    escape_measurement,
    escape_string,
    escape_tag,
    escape_tag_key,
)
from computewatch.lineprotocol._samples import encode_samples
from computewatch.lineprotocol._transport import WriteError, Writer, is_retryable_status
from computewatch.lineprotocol._urls import (
    InfluxSettings,
    VMEndpoints,
    WriteTarget,
    check_write_url,
    parse_influx_url,
    parse_prometheus_url,
    parse_rollups_url,
    parse_vm_url,
    parse_write_url,
)

if TYPE_CHECKING:
    from computewatch.lineprotocol._frames import encode_frame
    from computewatch.lineprotocol._http import GZIP_LEVEL, LineProtocolWriter

__all__ = [
    "GZIP_LEVEL",
    "MAX_NAME_BYTES",
    "MAX_TAGS",
    "MAX_TAG_VALUE_BYTES",
    "PRECISIONS",
    "EncodeResult",
    "InfluxSettings",
    "LineProtocolError",
    "LineProtocolWriter",
    "VMEndpoints",
    "WriteError",
    "WriteTarget",
    "Writer",
    "check_name",
    "check_write_url",
    "encode_frame",
    "encode_samples",
    "escape_field_key",
    "escape_measurement",
    "escape_string",
    "escape_tag",
    "escape_tag_key",
    "is_retryable_status",
    "parse_influx_url",
    "parse_prometheus_url",
    "parse_rollups_url",
    "parse_vm_url",
    "parse_write_url",
]


def __getattr__(name: str) -> object:
    """The names whose modules import numpy/pyarrow or influxdb-client, on first use."""
    if name == "encode_frame":
        from computewatch.lineprotocol._frames import encode_frame as value
    elif name == "LineProtocolWriter":
        from computewatch.lineprotocol._http import LineProtocolWriter as value
    elif name == "GZIP_LEVEL":
        from computewatch.lineprotocol._http import GZIP_LEVEL as value
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value
