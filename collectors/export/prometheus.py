"""Prometheus exposition of the latest samples: catalogue names, plus compatible names.

Names, types and help come from the catalogue: ``{measurement}_{field}``, counters exposed
with ``_total``, written by prometheus-client from a custom collector. ``compat`` adds the
names existing dashboards query: DCGM-exporter's for NVIDIA devices
(``DCGM_FI_DEV_GPU_UTIL{gpu,UUID,pci_bus_id,device,modelName,Hostname,
DCGM_FI_DRIVER_VERSION}`` in DCGM's units: %, MiB, MHz, mJ; labels in `_dcgm`) and
npu-exporter's for Ascend devices (``npu_chip_info_utilization{id,vdie_id,model_name,...}``),
each converted with the metric's ``compat_scale`` and typed as that exporter types it
(``compat_kind``). Those exporters write their own text format, and a counter of theirs has
no ``_total`` (``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``): a client library would add one, so
the compatible families are written here, in text format 0.0.4, after prometheus-client's.
The HTTP server always answers in that format (as dcgm-exporter does): in OpenMetrics a
counter must end in ``_total``. npu-exporter's families are built apart (`_npu_exporter`), as
npu-exporter writes them.

``/metrics`` is served over HTTP, or with a web configuration file (`webconfig`: the
exporter-toolkit's format) over TLS, optionally requiring client certificates, and with
basic auth: a request without good credentials gets 401. The TLS handshake happens in the
connection's own thread, within `HANDSHAKE_TIMEOUT_S`, so a slow client holds up nobody.

Two probe paths answer without credentials (they tell nothing about the devices), for a
kubelet's or load balancer's probes: ``/healthz`` is 200 while the server answers (liveness),
``/readyz`` is 200 once any collector's samples have arrived and 503 before (readiness).
"""

from __future__ import annotations

import gzip
import logging
import math
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from computewatch import catalog
from computewatch.addresses import parse_listen
from computewatch.collectors.export._base import ExportResult
from computewatch.collectors.export._dcgm import DCGM_HELP, dcgm_labels
from computewatch.collectors.export._npu_exporter import npu_exporter_families
from computewatch.collectors.export.webconfig import WebConfig, load_web_config
from computewatch.samples import Sample

__all__ = ["COMPAT_CHOICES", "HANDSHAKE_TIMEOUT_S", "PrometheusExporter", "SnapshotCollector",
           "exposition"]

log = logging.getLogger(__name__)

COMPAT_CHOICES = ("dcgm", "npu-exporter")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HANDSHAKE_TIMEOUT_S = 10.0
"""Seconds a client gets for the TLS handshake, and for each read of its request."""

PROBE_PATHS = ("/healthz", "/readyz")
"""Liveness and readiness, answered without credentials (the Kubernetes probes use them)."""


def _family(m: catalog.Metric, name: str | None = None, help_: str | None = None) -> Metric:
    typ = "counter" if m.kind is catalog.Kind.COUNTER else "gauge"
    base = name or m.prometheus
    if typ == "counter" and base.endswith("_total"):
        base = base[: -len("_total")]
    return Metric(base, help_ or m.help, typ)


def _sample_name(family: Metric) -> str:
    return family.name + "_total" if family.type == "counter" else family.name


@dataclass
class CompatFamily:
    """One family under another exporter's name, TYPE and HELP, written verbatim."""

    name: str
    type: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


_COMPAT: tuple[tuple[str, str, Callable[[dict[str, str], str, float], dict[str, str]]], ...] = (
    ("nvidia", "dcgm", dcgm_labels),
)
"""Per compat choice: the vendor whose samples it names, and its labels."""


def _compat_families(m: catalog.Metric, group: list[Sample],
                     compat: Sequence[str]) -> list[CompatFamily]:
    """The compatible families of one catalogued metric (whole, or split by a label)."""
    kind = (m.compat_kind or m.kind).value
    out = []
    for vendor, want, relabel in _COMPAT:
        if want not in compat:
            continue
        whole = m.dcgm if want == "dcgm" else m.npu_exporter
        names = [(whole, None)] if whole else []
        names += [(p.name, p) for p in m.compat_parts if p.exporter == want]
        for name, part in names:
            picked = [s for s in group if s.label("vendor") == vendor
                      and (part is None or s.label(part.label) == part.value)]
            if not picked:
                continue
            help_ = DCGM_HELP.get(name) or f"{m.help} ({want}-compatible name and unit)"
            fam = CompatFamily(name, kind, help_)
            for s in picked:
                value = s.value * m.compat_scale
                fam.samples.append((relabel(dict(s.labels), name, value), value))
            out.append(fam)
    return out


def families(samples: Iterable[Sample],
             compat: Sequence[str] = ()) -> tuple[list[Metric], list[CompatFamily]]:
    """Catalogue families in catalogue order, one per metric, and the compatible ones."""
    by_metric: dict[str, list[Sample]] = {}
    for s in samples:
        by_metric.setdefault(s.name, []).append(s)
    out = []
    compatible: list[CompatFamily] = []
    histograms: dict[str, Metric] = {}
    for m in catalog.CATALOG:
        group = by_metric.get(m.name)
        if not group:
            continue
        if m.histogram:  # _bucket, _count and _sum parts go into one histogram family
            fam = histograms.get(m.histogram)
            if fam is None:
                # The family's help is its first part's (the _bucket entry, by catalogue order).
                fam = histograms[m.histogram] = Metric(m.histogram, m.help, "histogram")
                out.append(fam)
            for s in group:
                fam.add_sample(m.prometheus, dict(s.labels), s.value)
            continue
        fam = _family(m)
        for s in group:
            fam.add_sample(_sample_name(fam), dict(s.labels), s.value)
        out.append(fam)
        if compat:
            compatible += _compat_families(m, group, compat)
    if "npu-exporter" in compat:
        out += npu_exporter_families(s for group in by_metric.values() for s in group)
    return out, compatible


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    """Integral values as integers (as the exporters print their integer fields)."""
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return floatToGoString(value)


def compat_text(fams: Iterable[CompatFamily]) -> str:
    """Text format 0.0.4 of the compatible families, names and TYPEs exactly as given."""
    lines = []
    for fam in fams:
        help_ = fam.help.replace("\\", r"\\").replace("\n", r"\n")
        lines.append(f"# HELP {fam.name} {help_}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for labels, value in fam.samples:
            inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{fam.name}{{{inner}}} {_number(value)}")
    return "\n".join(lines) + "\n" if lines else ""


class SnapshotCollector:
    """Holds the latest sample set per source; a prometheus-client collector of its catalogue
    families, and `exposition` of those plus the compatible ones."""

    def __init__(self, compat: Sequence[str] = ()) -> None:
        unknown = set(compat) - set(COMPAT_CHOICES)
        if unknown:
            raise ValueError(f"unknown --compat {', '.join(sorted(unknown))!r} "
                             f"(choose from {', '.join(COMPAT_CHOICES)})")
        self.compat = tuple(compat)
        self._samples: dict[str, list[Sample]] = {}
        self._lock = threading.Lock()
        self._compatible: list[CompatFamily] = []

    def update(self, source: str, samples: Sequence[Sample]) -> None:
        """Replace what ``source`` (a collector) last reported."""
        with self._lock:
            self._samples[source] = list(samples)

    @property
    def ready(self) -> bool:
        """Whether any collector has reported yet (what ``/readyz`` answers)."""
        with self._lock:
            return bool(self._samples)

    def _current(self) -> list[Sample]:
        with self._lock:
            return [s for group in self._samples.values() for s in group]

    def collect(self) -> Iterator[Metric]:
        """The catalogue families (compatible names are written by `exposition`)."""
        fams, _ = families(self._current())
        yield from fams

    def exposition(self) -> bytes:
        """Text format 0.0.4: the catalogue families, then the compatible ones."""
        fams, compatible = families(self._current(), self.compat)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(fams))
        return generate_latest(registry) + compat_text(compatible).encode("utf-8")


class _Fixed:
    """A prometheus-client collector of families already built."""

    def __init__(self, fams: list[Metric]) -> None:
        self._fams = fams

    def collect(self) -> Iterator[Metric]:
        yield from self._fams


def exposition(samples: Iterable[Sample], compat: Sequence[str] = ()) -> bytes:
    """The text exposition format (0.0.4) of ``samples``."""
    snap = SnapshotCollector(compat)
    snap.update("all", list(samples))
    return snap.exposition()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _MetricsServer(ThreadingMixIn, WSGIServer):
    """A thread per connection; with a TLS context, the handshake is done in that thread."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request, client_address) -> None:  # type: ignore[override]
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:  # a plain-HTTP client, a refused certificate
            log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()


def _guarded(app: Callable, web: WebConfig, ready: Callable[[], bool]) -> Callable:
    """The metrics app behind basic auth (when users are configured) and extra headers; the
    probe paths before it."""
    auth = web.basic_auth()
    extra = list(web.http_server_config.headers.items())

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list, *rest: object) -> object:
            return start_response(status, headers + extra, *rest)

        path = environ.get("PATH_INFO", "")
        if path in PROBE_PATHS:
            ok = path == "/healthz" or ready()
            start("200 OK" if ok else "503 Service Unavailable",
                  [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n" if ok else b"no collection yet\n"]
        if auth is not None and not auth.check(environ.get("HTTP_AUTHORIZATION")):
            start("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                       ("WWW-Authenticate", 'Basic realm="computewatch"')])
            return [b"Unauthorized\n"]
        return app(environ, start)

    return guarded


class PrometheusExporter:
    """Serves ``/metrics`` on ``listen`` (host:port); `export` just swaps the snapshot.

    ``web_config``: an exporter-toolkit web configuration file (TLS, basic auth)."""

    name = "prometheus"

    def __init__(self, listen: str = "127.0.0.1:9400", compat: Sequence[str] = (),
                 web_config: Path | str | None = None) -> None:
        host, port = parse_listen(listen)  # a ValueError naming the text
        web = load_web_config(web_config) if web_config is not None else WebConfig()
        tls = web.tls_server_config.context() if web.tls_server_config is not None else None
        self.scheme = "https" if tls is not None else "http"
        self.snapshot = SnapshotCollector(compat)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.snapshot)

        class Server(_MetricsServer):
            address_family = _family_of(host, port)

        self._server: WSGIServer | None = make_server(
            host, port, _guarded(self._app, web, lambda: self.snapshot.ready), Server,
            handler_class=_Quiet)
        self._server.tls = tls  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.2,),
                                        name="metrics-http", daemon=True)
        self._thread.start()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        body = self.snapshot.exposition()
        headers = [("Content-Type", CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_port)

    def export(self, batch: Sequence[Sample], source: str = "all") -> ExportResult:
        self.snapshot.update(source, batch)
        return ExportResult.ok(len(batch))

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _family_of(host: str, port: int) -> int:
    """IPv4 or IPv6, whichever the listen address is."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                              flags=socket.AI_PASSIVE)[0][0]
