"""InfluxDB line protocol: encoding Samples and frames, writing bodies, reading store URLs.

One package for what the stores (VictoriaMetrics, InfluxDB) and the agent's remote write
share: the encoders, the `Writer` interface with its HTTP implementation `LineProtocolWriter`,
and the parsers of the store URLs that say where to write. Importing it loads neither numpy,
pyarrow, pandas nor influxdb-client: `encode_frame` (numpy, pyarrow) and `LineProtocolWriter`
(influxdb-client) are imported on first use, so an agent that only encodes Samples stays small.

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

Modules: `_common` (precisions, escaping, `EncodeResult`), `_samples` (Samples, plain
Python), `_frames` (Arrow frames, vectorized), `_transport` (`Writer`, `WriteError`),
`_http` (`LineProtocolWriter`), `_urls` (store and write URLs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from computewatch.lineprotocol._common import (
    PRECISIONS,
    EncodeResult,
    escape_field_key,
    escape_measurement,
    escape_string,
    escape_tag,
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
    parse_vm_url,
    parse_write_url,
)

if TYPE_CHECKING:
    from computewatch.lineprotocol._frames import encode_frame
    from computewatch.lineprotocol._http import GZIP_LEVEL, LineProtocolWriter

__all__ = [
    "GZIP_LEVEL",
    "PRECISIONS",
    "EncodeResult",
    "InfluxSettings",
    "LineProtocolWriter",
    "VMEndpoints",
    "WriteError",
    "WriteTarget",
    "Writer",
    "check_write_url",
    "encode_frame",
    "encode_samples",
    "escape_field_key",
    "escape_measurement",
    "escape_string",
    "escape_tag",
    "is_retryable_status",
    "parse_influx_url",
    "parse_prometheus_url",
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
