"""The bridge's HTTP side: Alertmanager webhooks in, per-target queues out.

``POST /alertmanager/<receiver>`` takes one webhook notification (payload version 4) and
answers once it is queued for every target of that receiver; delivery happens behind it.
Each refusal has its own status and a one-line reason in the body, and is counted in
``alert_bridge_requests_rejected_total{reason}``:

- 401 unauthorized: no or wrong bearer token / basic credentials (checked first)
- 404 unknown_receiver: the path names no configured receiver
- 411 length_required, 413 too_large (over ``max_body_bytes``; the body is not kept)
- 400 malformed_json, invalid_payload (the field and the value are named), too_deep (arrays
  and objects nested deeper than ``server.max_json_depth``)
- 408 body_timeout: the body did not arrive within ``server.body_timeout``
- 503 queue_full: a target's queue is full; Alertmanager retries a 5xx, so nothing is lost
- and before a request reaches the app (receiver ``_unknown``): 408 header_timeout (the
  request head not in within ``server.header_timeout``), 503 connection_limit (over
  ``server.max_connections``), 400 bad_request (not HTTP/1.1 that h11 can parse)

It runs on uvicorn (the ASGI server behind most Python web services, maintained, with h11
for HTTP/1.1) with a small Starlette app: the standard library's ``http.server``, which the
first bridge used, is documented as not for production, and held a thread per slow client
indefinitely with a listen backlog of 5. Here one event loop serves every connection; the
backlog is ``server.backlog``; slow clients are cut off at the deadlines (`_http`).

``GET /metrics`` serves the bridge's metrics, ``GET /healthz`` its workers' state; neither
needs credentials.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from computewatch.addresses import parse_listen
from computewatch.alerts.bridge._http import Guards, guarded_protocol
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
from computewatch.config import ConfigError, suggest_known

__all__ = ["AlertBridge", "check_bridge", "open_bridge"]

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
        places = None
        if any(tc.language != "en" for tc in config.targets.values()):
            from computewatch.topology import load_topology

            places = load_topology(config.topology)
        for name, tc in config.targets.items():
            target = build_target(name, tc, secrets.urls[name], secrets.signing[name],
                                  config.external_url, places)
            windows = [(r.messages, r.per) for r in tc.effective_rate_limits]
            limiter = SlidingWindowLimiter(windows) if windows else None
            self.workers[name] = TargetWorker(target, config.delivery, self.metrics,
                                              self.dead_letters, limiter)
        self._address = parse_listen(listen or config.listen)  # a ValueError naming the text
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        for receiver in config.receivers:
            self.metrics.received.labels(receiver=receiver)  # exposed at 0 from the start

    @property
    def port(self) -> int:
        assert self._socket is not None, "not started"
        return self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        host = self._address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def start(self) -> AlertBridge:
        """Bind (an OSError if the address is taken), start the workers and the server."""
        limits = self.config.server
        family = socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET
        # IPPROTO_TCP named, so asyncio sets TCP_NODELAY on each accepted connection (it
        # checks the socket's proto): else Nagle holds a response's body until the client's
        # delayed ACK, 40 ms a request.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(self._address)
            sock.listen(limits.backlog)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        guards = Guards(limits.max_connections, limits.header_timeout,
                        lambda reason: self.count_rejection(_UNKNOWN, reason))
        config = uvicorn.Config(
            _app(self), http=guarded_protocol(guards), lifespan="off", log_config=None,
            access_log=False, server_header=False, backlog=limits.backlog,
            timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]
            timeout_graceful_shutdown=limits.shutdown_timeout)  # type: ignore[arg-type]
        self._server = uvicorn.Server(config)
        for worker in self.workers.values():
            worker.start()
        self._thread = threading.Thread(target=self._serve, name="bridge-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("the bridge's HTTP server did not start within 10 s")
            time.sleep(0.005)
        if not self._server.started:
            raise RuntimeError("the bridge's HTTP server failed to start (see the log)")
        return self

    def _serve(self) -> None:
        assert self._server is not None and self._socket is not None
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def stop(self, grace_s: float | None = None) -> None:
        """Stop taking webhooks, deliver what is queued (up to the grace), dead-letter the rest."""
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(self.config.server.shutdown_timeout + 5)
            self._server = None
        if self._socket is not None:
            self._socket.close()
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


    def count_rejection(self, receiver: str, reason: str) -> None:
        self.metrics.rejected.labels(receiver=receiver, reason=reason).inc()


def _text(status: int, text: str, headers: dict[str, str] | None = None,
          close: bool = False) -> Response:
    headers = dict(headers or {})
    if close:
        headers["Connection"] = "close"
    return Response(text, status, headers, media_type="text/plain; charset=utf-8")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes (the caller bounds the time)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadError("too_large", f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _app(bridge: AlertBridge) -> Starlette:
    """The ASGI app: the bridge's routes, each refusal counted by reason."""
    limits = bridge.config.server

    def reject(request: Request, status: int, receiver: str, reason: str, message: str,
               **kw: object) -> Response:
        bridge.count_rejection(receiver, reason)
        client = request.client.host if request.client else "?"
        log.warning("webhook from %s for receiver %s refused (%d %s): %s", client, receiver,
                    status, reason, message)
        return _text(status, f"{reason}: {message}\n", **kw)  # type: ignore[arg-type]

    async def discard(request: Request) -> None:
        """Read and drop a refused body (up to a bound and the body deadline), so the
        client sees our answer instead of a reset connection."""
        text = request.headers.get("content-length") or ""
        if not text.isdigit() or int(text) > _DISCARD_MAX:
            return
        try:
            async with asyncio.timeout(limits.body_timeout):
                async for _ in request.stream():
                    pass
        except (TimeoutError, ClientDisconnect):
            pass

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(bridge.metrics.registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: Request) -> Response:
        ok, doc = bridge.health()
        return Response(json.dumps(doc), 200 if ok else 503, media_type="application/json")

    async def webhook(request: Request) -> Response:
        name = request.path_params["receiver"].strip("/")
        receiver = name if name in bridge.config.receivers else _UNKNOWN
        header = request.headers.get("authorization")
        if not bridge.authorized(header):
            await discard(request)
            given = "no Authorization header" if not header else "wrong credentials"
            return reject(request, 401, receiver, "unauthorized", given,
                          headers={"WWW-Authenticate": bridge.challenge}, close=True)
        if receiver == _UNKNOWN:
            await discard(request)
            known = suggest_known(name, sorted(bridge.config.receivers))
            return reject(request, 404, receiver, "unknown_receiver",
                          f"no receiver {name!r} ({known})", close=True)
        length_text = request.headers.get("content-length")
        if length_text is None or not length_text.isdigit():
            return reject(request, 411, receiver, "length_required",
                          "a Content-Length header is required", close=True)
        length, limit = int(length_text), bridge.config.max_body_bytes
        if length > limit:
            await discard(request)
            return reject(request, 413, receiver, "too_large",
                          f"body of {length} bytes is over the {limit}-byte limit "
                          f"(max_body_bytes)", close=True)
        try:
            async with asyncio.timeout(limits.body_timeout):
                body = await _read_body(request, limit)
        except TimeoutError:
            return reject(request, 408, receiver, "body_timeout",
                          f"the body did not arrive within {limits.body_timeout:g} s "
                          "(server.body_timeout)", close=True)
        except ClientDisconnect:
            bridge.count_rejection(receiver, "client_disconnected")
            return _text(400, "client_disconnected\n", close=True)
        try:
            notification = parse_notification(body, limits.max_json_depth)
        except PayloadError as exc:
            return reject(request, 400, receiver, exc.reason, str(exc))
        workers = [bridge.workers[t] for t in bridge.config.receivers[receiver]]
        full = [w.target.name for w in workers if not w.has_room()]
        if full:
            return reject(request, 503, receiver, "queue_full",
                          f"queue of target {full[0]!r} is full "
                          f"({bridge.config.delivery.queue_size} messages); retry later",
                          headers={"Retry-After": "10"})
        job = Job(receiver, notification, time.time())
        for w in workers:
            if not w.submit(job):  # filled up (or began closing) since the check: keep it
                reason = "shutdown" if w.closing else "queue_full"
                w.dead_letter(job, None, reason, 0, f"{reason} while accepting")
        bridge.metrics.received.labels(receiver=receiver).inc()
        log.info("webhook for %s: %s, %d alerts -> %s", receiver, notification.status,
                 len(notification.alerts), ", ".join(w.target.name for w in workers))
        return Response(json.dumps({"status": "queued",
                                    "targets": [w.target.name for w in workers]}),
                        media_type="application/json")

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.method == "POST":
            return _text(404, "not found: POST /alertmanager/<receiver>\n", close=True)
        return _text(404, "not found: GET /metrics, GET /healthz, "
                     "POST /alertmanager/<receiver>\n")

    routes = [Route("/metrics", metrics, methods=["GET"]),
              Route("/healthz", healthz, methods=["GET"]),
              Route(_PREFIX + "{receiver:path}", webhook, methods=["POST"])]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})


def check_bridge(config_path: Path, listen: str | None = None) -> AlertBridge:
    """Everything starting would check, without binding or starting anything: the config
    (ports, durations, ...), every secret, the listen address and that the dead-letter
    file can be written. A problem is a ConfigError naming the file and the field."""
    bridge = open_bridge(config_path, listen)
    path = bridge.config.dead_letter
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    writable = os.access(path, os.W_OK) if path.exists() else (
        folder.is_dir() and os.access(folder, os.W_OK | os.X_OK))
    if not writable:
        raise ConfigError(str(config_path), f"cannot write the dead-letter file "
                          f"{str(path)!r} (no write permission)", path=("dead_letter",))
    return bridge


def open_bridge(config_path: Path, listen: str | None = None) -> AlertBridge:
    """Load the config, read its secrets and build the bridge (not started)."""
    config = load_bridge_config(config_path)
    secrets = resolve_secrets(config, str(config_path))
    return AlertBridge(config, secrets, listen=listen)
