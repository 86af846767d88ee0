"""What store URLs say: ``victoriametrics://``, ``influxdb://``, ``prometheus://`` and the
plain ``http(s)://`` write URL, without any backend.

The stores and the agent's remote write read a URL the same way (tenants, ``insert=``,
``tls=1``, ``token_env``/``token_file``): the backends take their endpoints from
`parse_vm_url`, `parse_influx_url` and `parse_prometheus_url`; the remote exporter takes its
`WriteTarget` from `parse_write_url`. This module imports neither pandas, pyarrow nor
influxdb-client, so an agent that only writes stays small (the agent benchmark's RSS aim).
``prometheus://`` is read-only, but it shares the parameter rules (``tls``, ``timeout``), so
they live in one place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlsplit

from computewatch.durations import parse_duration
from computewatch.errors import StoreError, StoreURLError
from computewatch.redact import redact_url, register_secret

__all__ = ["InfluxSettings", "VMEndpoints", "WriteTarget", "check_write_url", "parse_influx_url",
           "parse_prometheus_url", "parse_rollups_url", "parse_vm_url", "parse_write_url"]


def _bad(url: str, message: str) -> StoreURLError:
    """The error for a bad URL: its credentials hidden (`redact_url`), then what is wrong."""
    return StoreURLError(f"{redact_url(url)}: {message}")


def _split(url: str) -> SplitResult:
    """``urlsplit``, with a bracket left open or a port that is not 0-65535 named as bad."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises for a port that is not a number in 0-65535)
    except ValueError as exc:
        reason = str(exc)
        if "Port" in reason or "port" in reason:
            port = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].rpartition(":")[2]
            reason = f"port {port!r} is not a number from 1 to 65535"
        raise _bad(url, reason) from None
    if parts.netloc and not parts.hostname:
        raise _bad(url, "no host name before the port")
    if parts.port == 0:
        raise _bad(url, "port 0 is not a port a store listens on (1-65535)")
    return parts


def _host_port(url: str, key: str, value: str) -> str:
    """A ``host:port`` query parameter (``insert=``, ``select=``), its port checked."""
    m = re.match(r"^[\w.\-\[\]:]+:(\d+)$", value)
    if m is None or not 1 <= int(m.group(1)) <= 65535:
        raise _bad(url, f"{key} {value!r} is not host:port (port 1-65535)")
    return value


def _params(url: str, known: set[str]) -> dict[str, str]:
    """The URL's query parameters (the last of each), refusing one the backend does not know."""
    params = {k: v[-1] for k, v in parse_qs(_split(url).query, keep_blank_values=True).items()}
    unknown = sorted(set(params) - known)
    if unknown:
        raise _bad(url, f"unknown parameter {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return params


def _http_and_timeout(url: str, params: Mapping[str, str]) -> tuple[str, float]:
    """``http`` or ``https`` (``tls=1``) and the request timeout (``timeout=60s``)."""
    http = "https" if params.get("tls", "0").lower() in ("1", "true", "yes") else "http"
    try:
        return http, parse_duration(params.get("timeout", "60s"))
    except ValueError as exc:
        raise _bad(url, f"timeout: {exc}") from None


_TENANT = re.compile(r"^\d+(:\d+)?$")
_VM_PARAMS = {"tenant", "insert", "select", "tls", "timeout", "flush", "rollups"}


@dataclass(frozen=True, slots=True)
class VMEndpoints:
    """Where a VictoriaMetrics URL writes and reads."""

    write: str  # base for LineProtocolWriter (``/api/v2/write`` is appended)
    read: str  # base for ``/api/v1/...``
    delete: str  # base for ``/api/v1/admin/tsdb/delete_series``
    cluster: bool
    flush: bool = False  # make each write searchable at once (single node only)


def parse_vm_url(url: str) -> tuple[VMEndpoints, float]:
    """Endpoints and HTTP timeout of a ``victoriametrics://`` URL; bad parts are named."""
    parts = _split(url)
    if parts.scheme != "victoriametrics":
        raise _bad(url, "not a victoriametrics:// URL")
    params = _params(url, _VM_PARAMS)
    http, timeout_s = _http_and_timeout(url, params)
    tenant = params.get("tenant")
    if tenant is not None and not _TENANT.match(tenant):
        raise _bad(url, f"tenant {tenant!r} is not accountID or accountID:projectID "
                   "(e.g. 0 or 42:7)")
    insert, select = params.get("insert"), params.get("select")
    for key, host in (("insert", insert), ("select", select)):
        if host is not None:
            _host_port(url, key, host)
    if (insert is None) != (select is None):
        raise _bad(url, "give both insert=host:port and select=host:port, or neither")
    flush = params.get("flush", "1").lower() in ("1", "true", "yes")
    if insert is not None:
        tenant = tenant or "0"
        write = f"{http}://{insert}/insert/{tenant}/influx"
        read = f"{http}://{select}/select/{tenant}/prometheus"
        return VMEndpoints(write, read, f"{http}://{select}/delete/{tenant}/prometheus",
                           True), timeout_s
    if not parts.netloc:
        raise _bad(url, "no host:port; write victoriametrics://host:8428")
    base = f"{http}://{parts.netloc}{parts.path.rstrip('/')}"
    if tenant is not None:
        return VMEndpoints(f"{base}/insert/{tenant}/influx", f"{base}/select/{tenant}/prometheus",
                           f"{base}/delete/{tenant}/prometheus", True), timeout_s
    return VMEndpoints(base, base, base, False, flush), timeout_s


_INFLUX_PARAMS = {"org", "bucket", "database", "version", "query", "token_env", "token_file",
                 "tls", "timeout", "rollups"}
_LANGUAGES = {"2": ("flux",), "3": ("sql", "influxql")}


class InfluxSettings:
    """What an ``influxdb://`` URL says; `parse_influx_url` builds it."""

    def __init__(self, base: str, org: str | None, bucket: str, version: str, language: str,
                 token: str | None, timeout_s: float, rollups: str | None = None) -> None:
        self.base, self.org, self.bucket = base, org, bucket
        self.version, self.language = version, language
        self.token, self.timeout_s = token, timeout_s
        self.rollups = rollups or bucket  # the rollup measurements' bucket: ``rollups=NAME``


def _token(url: str, params: Mapping[str, str]) -> str | None:
    if "token_file" in params:
        path = Path(params["token_file"])
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _bad(url, f"token_file {str(path)!r}: {exc.strerror}") from None
        register_secret(value)
        return value
    name = params.get("token_env")
    if name is not None:
        value = os.environ.get(name)
        if not value:
            raise _bad(url, f"token_env {name!r}: the environment variable is not set")
    else:
        value = os.environ.get("INFLUX_TOKEN") or None
    register_secret(value)
    return value


def parse_influx_url(url: str) -> InfluxSettings:
    """The settings of an ``influxdb://`` URL; a bad or missing part is named."""
    parts = _split(url)
    if parts.scheme != "influxdb":
        raise _bad(url, "not an influxdb:// URL")
    if not parts.netloc:
        raise _bad(url, "no host:port; write influxdb://host:8086?org=...&bucket=...")
    if "token" in parse_qs(parts.query, keep_blank_values=True):
        raise _bad(url, "a token in the URL is refused; use token_env=NAME or token_file=PATH")
    params = _params(url, _INFLUX_PARAMS)
    version = params.get("version", "2")
    if version not in _LANGUAGES:
        raise _bad(url, f"version {version!r} is not 2 or 3")
    language = params.get("query", _LANGUAGES[version][0])
    if language not in _LANGUAGES[version]:
        raise _bad(url, f"query {language!r} is not available on InfluxDB {version} "
                   f"(choose {' or '.join(_LANGUAGES[version])})")
    bucket = params.get("bucket") or params.get("database")
    if not bucket:
        raise _bad(url, "no bucket; add ?bucket=NAME")
    org = params.get("org")
    if version == "2" and not org:
        raise _bad(url, "InfluxDB 2 needs an organization; add &org=NAME")
    http, timeout_s = _http_and_timeout(url, params)
    base = f"{http}://{parts.netloc}{parts.path.rstrip('/')}"
    return InfluxSettings(base, org, bucket, version, language, _token(url, params), timeout_s,
                          params.get("rollups"))


_PROMETHEUS_PARAMS = {"tls", "timeout", "rollups"}


def parse_prometheus_url(url: str) -> tuple[str, float]:
    """The HTTP base and timeout of a ``prometheus://`` URL; bad parts are named."""
    parts = _split(url)
    if parts.scheme != "prometheus":
        raise _bad(url, "not a prometheus:// URL")
    if not parts.netloc:
        raise _bad(url, "no host:port; write prometheus://host:9090")
    http, timeout_s = _http_and_timeout(url, _params(url, _PROMETHEUS_PARAMS))
    return f"{http}://{parts.netloc}{parts.path.rstrip('/')}", timeout_s


def parse_rollups_url(url: str) -> str | None:
    """The HTTP base of the instance holding the rollup series a ``victoriametrics://`` or
    ``prometheus://`` URL names (``rollups=host:port``, https with ``tls=1``), or None: the
    store's own instance holds them."""
    known = _VM_PARAMS if _split(url).scheme == "victoriametrics" else _PROMETHEUS_PARAMS
    params = _params(url, known)
    if "rollups" not in params:
        return None
    http, _ = _http_and_timeout(url, params)
    return f"{http}://{_host_port(url, 'rollups', params['rollups'])}"


# --- the write target of any of them -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WriteTarget:
    """Where line protocol goes: the writer's base URL and InfluxDB's org, bucket, token."""

    base_url: str
    org: str | None = None
    bucket: str | None = None
    token: str | None = field(default=None, repr=False)


_SCHEMES = ("victoriametrics", "influxdb", "http", "https")


def check_write_url(url: str) -> str:
    """A quick look at a remote URL (no I/O), for config validation; `parse_write_url`
    checks the rest when the exporter starts."""
    parts = _split(url)
    shown = redact_url(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"{shown!r}: scheme {parts.scheme!r} is not one of "
                         f"{', '.join(_SCHEMES)}")
    if not parts.netloc and "insert=" not in parts.query:
        raise ValueError(f"{shown!r}: no host:port, e.g. victoriametrics://127.0.0.1:8428")
    if parts.scheme == "influxdb" and "token" in parse_qs(parts.query):
        raise ValueError(f"{shown!r}: a token in the URL is refused; use token_env=NAME or "
                         "token_file=PATH")
    return url


def parse_write_url(url: str) -> WriteTarget:
    """The write target of a remote URL, read as the stores read it (`parse_vm_url`,
    `parse_influx_url`: tenants, ``insert=``, ``tls=1``, ``token_env``/``token_file``);
    a ValueError names what is wrong."""
    check_write_url(url)
    parts = urlsplit(url)
    try:
        if parts.scheme == "victoriametrics":
            return WriteTarget(parse_vm_url(url)[0].write)
        if parts.scheme == "influxdb":
            s = parse_influx_url(url)
            return WriteTarget(s.base, s.org, s.bucket, s.token)
    except StoreError as exc:
        raise ValueError(str(exc)) from None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    token = None
    if "token_env" in query:
        token = os.environ.get(query["token_env"])
        if not token:
            raise ValueError(f"{redact_url(url)}: token_env {query['token_env']!r}: the "
                             "environment variable is not set")
        register_secret(token)
    return WriteTarget(url.split("?")[0].rstrip("/"), query.get("org"), query.get("bucket"),
                       token)
