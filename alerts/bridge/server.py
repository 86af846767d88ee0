"""The bridge's HTTP side: Alertmanager webhooks in, per-target queues out.

``POST /alertmanager/<receiver>`` takes one webhook notification (payload version 4) and
answers once it is queued for every target of that receiver; delivery happens behind it.
Each refusal has its own status and a one-line reason in the body, and is counted in
``alert_bridge_requests_rejected_total{reason}``:

- 401 unauthorized: no or wrong bearer token / basic credentials (checked first)
- 404 unknown_receiver: the path names no configured receiver
- 411 length_required, 413 too_large (over ``max_body_bytes``; the body is not read)
- 400 malformed_json, invalid_payload (the field and the value are named)
- 503 queue_full: a target's queue is full; Alertmanager retries a 5xx, so nothing is lost

``GET /metrics`` serves the bridge's metrics, ``GET /healthz`` its workers' state; neither
needs credentials.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from computewatch.alerts.bridge.config import (
    BridgeConfig,
    ResolvedSecrets,
    load_bridge_config,
    resolve_secrets,
)
from computewatch.alerts.bridge.deadletter import DeadLetterLog
from computewatch.alerts.bridge.metrics import BridgeMetrics
from computewatch.alerts.bridge.payload import PayloadError, parse_notification
from computewatch.alerts.bridge.queue import Job, TargetWorker
from computewatch.alerts.bridge.ratelimit import SlidingWindowLimiter
from computewatch.alerts.bridge.targets import build_target
from computewatch.config import suggest_known

__all__ = ["AlertBridge", "open_bridge"]

log = logging.getLogger(__name__)

_PREFIX = "/alertmanager/"
_UNKNOWN = "_unknown"  # the receiver label for paths naming no receiver (bounded cardinality)
_DISCARD_MAX = 16 << 20


class AlertBridge:
    """The bridge: an HTTP server plus one worker per target. Start, then stop (or `with`)."""

    def __init__(self, config: BridgeConfig, secrets: ResolvedSecrets, *,
                 listen: str | None = None) -> None:
        self.config = config
        self._secrets = secrets
        self.metrics = BridgeMetrics()
        self.dead_letters = DeadLetterLog(config.dead_letter)
        self.workers: dict[str, TargetWorker] = {}
        for name, tc in config.targets.items():
            target = build_target(name, tc, secrets.urls[name], secrets.signing[name],
                                  config.external_url)
            windows = [(r.messages, r.per) for r in tc.effective_rate_limits]
            limiter = SlidingWindowLimiter(windows) if windows else None
            self.workers[name] = TargetWorker(target, config.delivery, self.metrics,
                                              self.dead_letters, limiter)
        host, _, port = (listen or config.listen).rpartition(":")
        self._address = (host.strip("[]"), int(port))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for receiver in config.receivers:
            self.metrics.received.labels(receiver=receiver)  # exposed at 0 from the start

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    def start(self) -> AlertBridge:
        handler = type("Handler", (_Handler,), {"bridge": self})
        self._server = ThreadingHTTPServer(self._address, handler)  # binds: may raise OSError
        for worker in self.workers.values():
            worker.start()
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        name="bridge-http", daemon=True)
        self._thread.start()
        return self

    def stop(self, grace_s: float | None = None) -> None:
        """Stop taking webhooks, deliver what is queued (up to the grace), dead-letter the rest."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        closers = [threading.Thread(target=w.close, args=(grace_s,)) for w in
                   self.workers.values()]
        for t in closers:
            t.start()
        for t in closers:
            t.join()

    def __enter__(self) -> AlertBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the handler asks ----------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        token = self._secrets.bearer_token
        if scheme.lower() == "bearer" and token is not None:
            return hmac.compare_digest(value.encode(), token.encode())
        if scheme.lower() == "basic" and self._secrets.basic is not None:
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            user, password = self._secrets.basic
            return hmac.compare_digest(decoded, f"{user}:{password}".encode())
        return False

    @property
    def challenge(self) -> str:
        """The WWW-Authenticate value of a 401: the schemes this bridge accepts."""
        schemes = []
        if self._secrets.bearer_token is not None:
            schemes.append('Bearer realm="computewatch-alert-bridge"')
        if self._secrets.basic is not None:
            schemes.append('Basic realm="computewatch-alert-bridge"')
        return ", ".join(schemes)

    def health(self) -> tuple[bool, dict]:
        targets = {name: {"kind": w.target.kind, "alive": w.alive,
                          "queue_depth": w.queue.qsize()} for name, w in self.workers.items()}
        ok = all(t["alive"] for t in targets.values())
        return ok, {"status": "ok" if ok else "degraded", "targets": targets}


class _Handler(BaseHTTPRequestHandler):
    bridge: AlertBridge
    server_version = "computewatch-alert-bridge"
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a client may stall mid-request before its connection is dropped

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, status: int, body: bytes | str, content_type: str = "text/plain; "
               "charset=utf-8", headers: dict[str, str] | None = None,
               close: bool = False) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _reject(self, status: HTTPStatus, receiver: str, reason: str, message: str,
                **kw: object) -> None:
        self.bridge.metrics.rejected.labels(receiver=receiver, reason=reason).inc()
        log.warning("webhook from %s for receiver %s refused (%d %s): %s",
                    self.client_address[0], receiver, status, reason, message)
        self._reply(status, f"{reason}: {message}\n", **kw)  # type: ignore[arg-type]

    def _discard_body(self) -> None:
        """Read and drop a refused body (up to a bound) so the client sees our answer
        instead of a reset connection."""
        text = self.headers.get("Content-Length") or ""
        left = min(int(text), _DISCARD_MAX) if text.isdigit() else 0
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._reply(200, generate_latest(self.bridge.metrics.registry), CONTENT_TYPE_LATEST)
        elif self.path == "/healthz":
            ok, doc = self.bridge.health()
            self._reply(200 if ok else 503, json.dumps(doc), "application/json")
        else:
            self._reply(404, "not found: GET /metrics, GET /healthz, "
                        "POST /alertmanager/<receiver>\n")

    def do_POST(self) -> None:
        bridge = self.bridge
        if not self.path.startswith(_PREFIX):
            self._reply(404, "not found: POST /alertmanager/<receiver>\n", close=True)
            return
        name = self.path[len(_PREFIX):].split("?", 1)[0].strip("/")
        receiver = name if name in bridge.config.receivers else _UNKNOWN
        if not bridge.authorized(self.headers.get("Authorization")):
            given = "no Authorization header" if not self.headers.get("Authorization") \
                else "wrong credentials"
            self._discard_body()
            self._reject(HTTPStatus.UNAUTHORIZED, receiver, "unauthorized", given,
                         headers={"WWW-Authenticate": bridge.challenge}, close=True)
            return
        if receiver == _UNKNOWN:
            self._discard_body()
            known = suggest_known(name, sorted(bridge.config.receivers))
            self._reject(HTTPStatus.NOT_FOUND, receiver, "unknown_receiver",
                         f"no receiver {name!r} ({known})", close=True)
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self._reject(HTTPStatus.LENGTH_REQUIRED, receiver, "length_required",
                         "a Content-Length header is required", close=True)
            return
        length = int(length_text)
        limit = bridge.config.max_body_bytes
        if length > limit:
            self._discard_body()
            self._reject(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, receiver, "too_large",
                         f"body of {length} bytes is over the {limit}-byte limit "
                         f"(max_body_bytes)", close=True)
            return
        body = self.rfile.read(length)
        try:
            notification = parse_notification(body)
        except PayloadError as exc:
            self._reject(HTTPStatus.BAD_REQUEST, receiver, exc.reason, str(exc))
            return
        workers = [bridge.workers[t] for t in bridge.config.receivers[receiver]]
        full = [w.target.name for w in workers if not w.has_room()]
        if full:
            self._reject(HTTPStatus.SERVICE_UNAVAILABLE, receiver, "queue_full",
                         f"queue of target {full[0]!r} is full "
                         f"({bridge.config.delivery.queue_size} messages); retry later",
                         headers={"Retry-After": "10"})
            return
        job = Job(receiver, notification, time.time())
        for w in workers:
            if not w.submit(job):  # filled up (or began closing) since the check: keep it
                reason = "shutdown" if w.closing else "queue_full"
                w.dead_letter(job, None, reason, 0, f"{reason} while accepting")
        bridge.metrics.received.labels(receiver=receiver).inc()
        log.info("webhook for %s: %s, %d alerts -> %s", receiver, notification.status,
                 len(notification.alerts), ", ".join(w.target.name for w in workers))
        self._reply(200, json.dumps({"status": "queued",
                                     "targets": [w.target.name for w in workers]}),
                    "application/json")


def open_bridge(config_path: Path, listen: str | None = None) -> AlertBridge:
    """Load the config, read its secrets and build the bridge (not started)."""
    config = load_bridge_config(config_path)
    secrets = resolve_secrets(config, str(config_path))
    return AlertBridge(config, secrets, listen=listen)
