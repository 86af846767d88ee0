"""`LineProtocolWriter`: one line-protocol POST to ``/api/v2/write``, through influxdb-client.

VictoriaMetrics (single node at ``http://host:8428``, cluster vminsert at
``http://host:8480/insert/<tenant>/influx``), InfluxDB 2 and InfluxDB 3 all accept line protocol
on ``/api/v2/write``. The body is sent as influxdb-client's raw ``bytes`` record through its
synchronous write API, gzip-compressed by the client (``enable_gzip``), with the client's own
retries off: `LineProtocolWriter.write` makes exactly ONE attempt, as every `Writer` does
(`computewatch.lineprotocol._transport`). influxdb-client is imported with this module, which
`computewatch.lineprotocol` loads on first use of the writer.
"""

from __future__ import annotations

import gzip
import logging
from urllib.parse import urlsplit

import urllib3
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from computewatch.errors import StoreError
from computewatch.lineprotocol._common import PRECISIONS
from computewatch.lineprotocol._transport import WriteError, is_retryable_status
from computewatch.redact import redact, redact_url

__all__ = ["GZIP_LEVEL", "LineProtocolWriter"]

log = logging.getLogger(__name__)

GZIP_LEVEL = 1
"""influxdb-client compresses with ``gzip.compress``'s default level 9: on simulated accelerator
line protocol that runs at about 35 MB/s (~250 k lines/s, a third of what `encode_frame` makes)
against about 185 MB/s at level 1, for bodies about 25% smaller. The writer uses level 1; the
header, the client and the wire format are unchanged. End to end into VictoriaMetrics the
store writes 1.5x the samples/s of level 9 (``python -m bench store_vm``)."""

# VictoriaMetrics ignores org and bucket; influxdb-client refuses to send without them.
_PLACEHOLDER = "computewatch"


class LineProtocolWriter:
    """Posts line-protocol bodies to one ``/api/v2/write`` endpoint, one attempt per call.

    ``url`` is the base ``http(s)://host:port``, plus a path prefix where the endpoint has one
    (VictoriaMetrics cluster: ``http://vminsert:8480/insert/0:0/influx``). ``token`` is sent as
    ``Authorization: Token ...`` (InfluxDB 2 and 3; VictoriaMetrics ignores it). Thread-safe
    for concurrent ``write`` calls (urllib3's pool). A `Writer`.
    """

    def __init__(self, url: str, *, token: str | None = None, org: str | None = None,
                 bucket: str | None = None, gzip: bool = True, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise StoreError(f"line-protocol writer: {redact_url(url)!r} is not an "
                             "http(s)://host:port URL")
        self.url = url.rstrip("/")
        self.endpoint = redact_url(self.url + "/api/v2/write")  # for messages: no password
        self.org = org or _PLACEHOLDER
        self.bucket = bucket or _PLACEHOLDER
        self.gzip = gzip
        self.timeout_s = timeout_s
        self._client = InfluxDBClient(url=self.url, token=token or "", org=self.org,
                                      timeout=int(timeout_s * 1000), enable_gzip=gzip,
                                      retries=False)
        if gzip:
            _compress_faster(self._client)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, body: bytes, precision: str = "ns") -> None:
        """POST one body; raises `WriteError` (with ``retryable`` and ``status``) on failure."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if not body:
            return
        try:
            self._api.write(bucket=self.bucket, org=self.org, record=body,
                            write_precision=precision)
        except ApiException as exc:
            status = int(exc.status) if exc.status else None
            text = _reason(exc)
            retryable = status is None or is_retryable_status(status)
            raise WriteError(f"{self.endpoint}: HTTP {status}: {text}", retryable=retryable,
                             status=status) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise WriteError(f"{self.endpoint}: {type(exc).__name__}: {redact(exc)}",
                             retryable=True) from None

    def close(self) -> None:
        if self._client is None:
            return
        self._api.close()
        self._client.close()
        # influxdb-client's __del__ closes its pool again; at interpreter exit that fails
        # noisily, so the last references go now.
        self._api = self._client = None

    def __enter__(self) -> LineProtocolWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LineProtocolWriter {self.endpoint} gzip={self.gzip}>"


def _reason(exc: ApiException) -> str:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
    text = (body or exc.reason or "").strip().replace("\n", " ")
    return text[:500]


def _compress_faster(client: InfluxDBClient) -> None:
    """Swap the client's level-9 gzip of write bodies for level 1 (see `GZIP_LEVEL`)."""
    conf = client.api_client.configuration
    original = conf.update_request_body

    def update_request_body(path: str, body):
        if path == "/api/v2/write":
            data = body if isinstance(body, bytes) else str(body).encode()
            return gzip.compress(data, compresslevel=GZIP_LEVEL)
        return original(path, body)

    conf.update_request_body = update_request_body
