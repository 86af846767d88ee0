"""Local HTTP sinks standing in for DingTalk, WeCom, Feishu, Slack and a signed webhook.

Each sink checks what the real service checks, with its own few lines of verification (it
never imports the bridge's signer): DingTalk's ``timestamp``/``sign`` query parameters,
Feishu's body fields, the webhook's HMAC header and replay window, the WeCom robot ``key``.
It answers as the service does (``{"errcode": 0}``, ``{"code": 0}``, ``ok``), or as told:
HTTP 500 for the first N requests, a hang, or the service's "too fast" code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

__all__ = ["Received", "Sink"]


@dataclass
class Received:
    kind: str
    at: float  # time.time() when the request arrived
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    verified: bool
    problem: str = ""

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The message text, wherever this kind puts it."""
        doc = self.json
        if self.kind == "dingtalk":
            return doc.get("markdown", {}).get("text") or doc["text"]["content"]
        if self.kind == "wecom":
            return (doc.get("markdown") or doc.get("text"))["content"]
        if self.kind == "feishu":
            if doc["msg_type"] == "text":
                return doc["content"]["text"]
            return doc["card"]["elements"][0]["text"]["content"]
        return doc["text"]


def _verify_dingtalk(secret: str, query: dict[str, str]) -> str:
    ts, sign = query.get("timestamp"), query.get("sign")
    if not ts or not sign:
        return "timestamp or sign missing"
    if abs(int(ts) - time.time() * 1000) > 3600_000:
        return "timestamp more than an hour off"
    want = base64.b64encode(hmac.new(secret.encode(), f"{ts}\n{secret}".encode(),
                                     hashlib.sha256).digest()).decode()
    return "" if hmac.compare_digest(want, sign) else "sign not match"


def _verify_feishu(secret: str, doc: dict) -> str:
    ts, sign = doc.get("timestamp"), doc.get("sign")
    if not ts or not sign:
        return "timestamp or sign missing"
    if abs(int(ts) - time.time()) > 3600:
        return "timestamp more than an hour off"
    key = f"{ts}\n{secret}".encode()
    want = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    return "" if hmac.compare_digest(want, sign) else "sign match fail"


def _verify_webhook(secret: str, headers: dict[str, str], body: bytes, window: float) -> str:
    ts = headers.get("x-computewatch-timestamp")
    sig = headers.get("x-computewatch-signature")
    if not ts or not sig:
        return "headers missing"
    if abs(int(ts) - time.time()) > window:
        return "outside the replay window"
    want = "v1=" + hmac.new(secret.encode(), ts.encode() + b"." + body,
                            hashlib.sha256).hexdigest()
    return "" if hmac.compare_digest(want, sig) else "bad signature"


@dataclass
class _Behaviour:
    fail_first: int = 0  # answer HTTP 500 to this many requests first
    hang_s: float = 0.0  # sleep this long before answering
    too_fast_first: int = 0  # answer the service's rate-limit code to this many first
    seen: int = 0


@dataclass
class Sink:
    """One fake endpoint of one kind; ``url`` is what the bridge config points at."""

    kind: str
    secret: str = ""
    key: str = "robot-key-123"  # WeCom's ?key=, DingTalk's ?access_token=
    window_s: float = 300.0
    received: list[Received] = field(default_factory=list)
    behaviour: _Behaviour = field(default_factory=_Behaviour)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                sink._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        path = {"dingtalk": f"/robot/send?access_token={self.key}",
                "wecom": f"/cgi-bin/webhook/send?key={self.key}",
                "feishu": "/open-apis/bot/v2/hook/0f0e-feishu-hook",
                "slack": "/services/T000/B000/slackhookpath",
                "webhook": "/hooks/computewatch"}[self.kind]
        return f"http://127.0.0.1:{port}{path}"

    def behave(self, **kw: float) -> Sink:
        self.behaviour = _Behaviour(**kw)  # type: ignore[arg-type]
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout_s: float = 30.0, *, verified_only: bool = True,
                 where=None) -> list[Received]:
        """Block until ``count`` matching requests arrived; returns them (all, on timeout)."""
        def matching() -> list[Received]:
            return [r for r in self.received if (r.verified or not verified_only)
                    and (where is None or where(r))]
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while len(matching()) < count and time.monotonic() < deadline:
                self._arrived.wait(timeout=max(0.0, deadline - time.monotonic()))
            return matching()

    # --- one request ----------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        at = time.time()
        body = h.rfile.read(int(h.headers.get("Content-Length", "0")))
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in h.headers.items()}
        problem = self._verify(parts.path, query, headers, body)
        with self._lock:
            b = self.behaviour
            b.seen += 1
            seen = b.seen
        status, answer = self._answer(problem, seen)
        record = Received(self.kind, at, parts.path, query, headers, body,
                          not problem and status == 200 and not self._refused(answer), problem)
        with self._arrived:
            self.received.append(record)
            self._arrived.notify_all()
        if b.hang_s:  # recorded on arrival, answered (too) late
            time.sleep(b.hang_s)
        data = answer.encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json" if answer.startswith("{")
                          else "text/plain")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:  # the bridge gave up waiting (a hang longer than its timeout)
            pass

    def _verify(self, path: str, query: dict[str, str], headers: dict[str, str],
                body: bytes) -> str:
        try:
            doc = json.loads(body)
        except ValueError:
            return "body is not JSON"
        if self.kind == "dingtalk":
            if query.get("access_token") != self.key:
                return "bad access_token"
            return _verify_dingtalk(self.secret, query) if self.secret else ""
        if self.kind == "wecom":
            return "" if query.get("key") == self.key else "invalid webhook url"
        if self.kind == "feishu":
            return _verify_feishu(self.secret, doc) if self.secret else ""
        if self.kind == "webhook":
            return _verify_webhook(self.secret, headers, body, self.window_s)
        return "" if path == "/services/T000/B000/slackhookpath" else "no_service"

    @staticmethod
    def _refused(answer: str) -> bool:
        if not answer.startswith("{"):
            return answer != "ok"
        doc = json.loads(answer)
        return bool(doc.get("errcode") or doc.get("code"))

    def _answer(self, problem: str, seen: int) -> tuple[int, str]:
        b = self.behaviour
        if seen <= b.fail_first:
            return 500, "internal error"
        too_fast = seen <= b.fail_first + b.too_fast_first
        if self.kind in ("dingtalk", "wecom"):
            if problem:
                code = 310000 if self.kind == "dingtalk" else 93000
                return 200, json.dumps({"errcode": code, "errmsg": problem})
            if too_fast:
                code = 130101 if self.kind == "dingtalk" else 45009
                return 200, json.dumps({"errcode": code, "errmsg": "send too fast"})
            return 200, json.dumps({"errcode": 0, "errmsg": "ok"})
        if self.kind == "feishu":
            if problem:
                return 200, json.dumps({"code": 19021, "msg": problem, "data": {}})
            if too_fast:
                return 200, json.dumps({"code": 11232, "msg": "frequency limited", "data": {}})
            return 200, json.dumps({"code": 0, "msg": "success", "data": {}})
        if self.kind == "slack":
            return (404, problem) if problem else (200, "ok")
        return (401, problem) if problem else (200, "ok")
