"""Prometheus exposition of the latest samples, through a prometheus-client custom collector.

Names, types and help come from the catalogue: ``{measurement}_{field}``, counters exposed
with ``_total``. ``compat`` adds the names existing dashboards query: DCGM-exporter's for
NVIDIA devices (``DCGM_FI_DEV_GPU_UTIL{gpu,UUID,pci_bus_id,device,modelName,Hostname}`` in
DCGM's units: %, MiB, MHz, mJ), converted with the metric's ``compat_scale``, and
npu-exporter's for Ascend devices, as npu-exporter writes them (`_npu_exporter`). Label
values are escaped by prometheus-client's exposition code.

``/metrics`` is served over HTTP, or with a web configuration file (`webconfig`: the
exporter-toolkit's format) over TLS, optionally requiring client certificates, and with
basic auth: a request without good credentials gets 401. The TLS handshake happens in the
connection's own thread, within `HANDSHAKE_TIMEOUT_S`, so a slow client holds up nobody.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import Metric

from computewatch import catalog
from computewatch.collectors.export._base import ExportResult
from computewatch.collectors.export._npu_exporter import npu_exporter_families
from computewatch.collectors.export.webconfig import WebConfig, load_web_config
from computewatch.samples import Sample

__all__ = ["COMPAT_CHOICES", "HANDSHAKE_TIMEOUT_S", "PrometheusExporter", "SnapshotCollector",
           "exposition"]

log = logging.getLogger(__name__)

COMPAT_CHOICES = ("dcgm", "npu-exporter")
HANDSHAKE_TIMEOUT_S = 10.0
"""Seconds a client gets for the TLS handshake, and for each read of its request."""


def _family(m: catalog.Metric, name: str | None = None, help_: str | None = None) -> Metric:
    typ = "counter" if m.kind is catalog.Kind.COUNTER else "gauge"
    base = name or m.prometheus
    if typ == "counter" and base.endswith("_total"):
        base = base[: -len("_total")]
    return Metric(base, help_ or m.help, typ)


def _sample_name(family: Metric) -> str:
    return family.name + "_total" if family.type == "counter" else family.name


def _dcgm_labels(labels: dict[str, str]) -> dict[str, str]:
    out = {"gpu": labels.get("index", ""), "UUID": labels.get("device", ""),
           "pci_bus_id": labels.get("pci_bus_id", ""),
           "device": f"nvidia{labels.get('index', '')}", "modelName": labels.get("model", ""),
           "Hostname": labels.get("node", "")}
    if labels.get("parent"):
        out["UUID"], out["GPU_I_ID"] = labels["parent"], labels.get("index", "")
    return out


def families(samples: Iterable[Sample], compat: Sequence[str] = ()) -> list[Metric]:
    """Metric families in catalogue order, one per metric (plus compat names when asked)."""
    by_metric: dict[str, list[Sample]] = {}
    for s in samples:
        by_metric.setdefault(s.name, []).append(s)
    out = []
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
        for vendor, want, name, relabel in (("nvidia", "dcgm", m.dcgm, _dcgm_labels),):
            if want not in compat or not name:
                continue
            picked = [s for s in group if s.label("vendor") == vendor]
            if not picked:
                continue
            cfam = _family(m, name, f"{m.help} ({want}-compatible name and unit)")
            for s in picked:
                cfam.add_sample(_sample_name(cfam), relabel(dict(s.labels)),
                                s.value * m.compat_scale)
            out.append(cfam)
    if "npu-exporter" in compat:
        out += npu_exporter_families(s for group in by_metric.values() for s in group)
    return out


class SnapshotCollector:
    """A prometheus-client collector serving the latest complete sample set."""

    def __init__(self, compat: Sequence[str] = ()) -> None:
        unknown = set(compat) - set(COMPAT_CHOICES)
        if unknown:
            raise ValueError(f"unknown --compat {', '.join(sorted(unknown))!r} "
                             f"(choose from {', '.join(COMPAT_CHOICES)})")
        self.compat = tuple(compat)
        self._samples: dict[str, list[Sample]] = {}
        self._lock = threading.Lock()

    def update(self, source: str, samples: Sequence[Sample]) -> None:
        """Replace what ``source`` (a collector) last reported."""
        with self._lock:
            self._samples[source] = list(samples)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            current = [s for group in self._samples.values() for s in group]
        yield from families(current, self.compat)


def exposition(samples: Iterable[Sample], compat: Sequence[str] = ()) -> bytes:
    """The text exposition format (0.0.4) of ``samples``."""
    registry = CollectorRegistry(auto_describe=False)
    snap = SnapshotCollector(compat)
    snap.update("all", list(samples))
    registry.register(snap)
    return generate_latest(registry)


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


def _guarded(app: Callable, web: WebConfig) -> Callable:
    """The metrics app behind basic auth (when users are configured) and extra headers."""
    auth = web.basic_auth()
    extra = list(web.http_server_config.headers.items())

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list, *rest: object) -> object:
            return start_response(status, headers + extra, *rest)

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
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"--listen {listen!r}: expected host:port with a port in "
                             "0..65535, e.g. 127.0.0.1:9400")
        web = load_web_config(web_config) if web_config is not None else WebConfig()
        tls = web.tls_server_config.context() if web.tls_server_config is not None else None
        self.scheme = "https" if tls is not None else "http"
        self.snapshot = SnapshotCollector(compat)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.snapshot)
        host = host.strip("[]")

        class Server(_MetricsServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self._server: WSGIServer | None = make_server(
            host, int(port), _guarded(make_wsgi_app(self.registry), web), Server,
            handler_class=_Quiet)
        self._server.tls = tls  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.2,),
                                        name="metrics-http", daemon=True)
        self._thread.start()

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
