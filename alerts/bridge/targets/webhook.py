"""Generic webhooks, signed with HMAC-SHA256 over the timestamp and the body.

Each attempt sends::

    X-Computewatch-Timestamp: <Unix seconds>
    X-Computewatch-Signature: v1=<hex HMAC-SHA256(key=secret, msg=f"{timestamp}.".encode() + body)>

A receiver recomputes the HMAC over the raw body, compares in constant time, and refuses a
timestamp outside its replay window (300 s by default in `verify_signature`): a captured
request cannot be replayed later, and a retry carries a fresh timestamp. The body is JSON:
version, receiver, target, status, language, title, text, truncated, and the Alertmanager
notification as received (``alertmanager``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from computewatch.alerts.bridge.payload import Notification
from computewatch.alerts.bridge.targets._base import Prepared, Request, Target, json_body
from computewatch.alerts.bridge.templates import Message

__all__ = ["REPLAY_WINDOW_S", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookTarget",
           "verify_signature", "webhook_signature"]

TIMESTAMP_HEADER = "X-Computewatch-Timestamp"
SIGNATURE_HEADER = "X-Computewatch-Signature"
REPLAY_WINDOW_S = 300.0


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(secret: str, headers: Mapping[str, str], body: bytes, *,
                     now: float | None = None, window_s: float = REPLAY_WINDOW_S) -> str | None:
    """For receivers: None when the request is authentic and fresh, else why it is not."""
    lower = {k.lower(): v for k, v in headers.items()}
    ts_text = lower.get(TIMESTAMP_HEADER.lower())
    given = lower.get(SIGNATURE_HEADER.lower())
    if not ts_text or not given:
        return "missing timestamp or signature header"
    try:
        ts = int(ts_text)
    except ValueError:
        return f"timestamp {ts_text!r} is not Unix seconds"
    now = time.time() if now is None else now
    if abs(now - ts) > window_s:
        return f"timestamp {ts} is outside the {window_s:g} s replay window"
    if not hmac.compare_digest(given, webhook_signature(secret, ts, body)):
        return "signature does not match"
    return None


class WebhookTarget(Target):
    kind = "webhook"

    def document(self, message: Message, notification: Notification) -> dict[str, Any]:
        return {"version": "1", "receiver": notification.receiver, "target": self.name,
                "status": notification.status, "language": self.config.language,
                "title": message.title, "text": message.text, "truncated": message.truncated,
                "link": message.link, "alertmanager": notification.raw}

    def request(self, prepared: Prepared, now: float) -> Request:
        body = json_body(prepared.document)
        ts = int(now)
        assert self._secret is not None  # the config requires it
        return Request(self.url, body, {"Content-Type": "application/json; charset=utf-8",
                                        TIMESTAMP_HEADER: str(ts),
                                        SIGNATURE_HEADER: webhook_signature(self._secret, ts,
                                                                            body)})
