"""DingTalk custom robots (钉钉自定义机器人): markdown or text messages, signed.

Signing ("加签"): ``timestamp`` is the current time in milliseconds and
``sign = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")))``; both
go into the query string next to ``access_token``. DingTalk refuses a timestamp more than an
hour off. It answers 200 with ``{"errcode": 0, "errmsg": "ok"}``; errcode 130101 means more
than 20 messages a minute (the robot is then muted for 10 minutes), 310000 a bad signature,
keyword or IP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote_plus

from computewatch.alerts.bridge.payload import Notification
from computewatch.alerts.bridge.targets._base import (
    Outcome,
    Prepared,
    Request,
    Target,
    errcode_outcome,
    http_outcome,
    json_body,
)
from computewatch.alerts.bridge.templates import Message

__all__ = ["DingTalkTarget", "dingtalk_sign"]


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query value, already URL-encoded."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


class DingTalkTarget(Target):
    kind = "dingtalk"
    styles: ClassVar[dict[str, str]] = {"markdown": "dingtalk", "text": "text"}

    def document(self, message: Message, notification: Notification) -> dict[str, Any]:
        if self.config.effective_format == "text":
            return {"msgtype": "text", "text": {"content": message.text}}
        return {"msgtype": "markdown", "markdown": {"title": message.title,
                                                    "text": message.text}}

    def request(self, prepared: Prepared, now: float) -> Request:
        url = self.url
        if self._secret:
            ts = int(now * 1000)
            joiner = "&" if "?" in url else "?"
            url += f"{joiner}timestamp={ts}&sign={dingtalk_sign(self._secret, ts)}"
        return Request(url, json_body(prepared.document),
                       {"Content-Type": "application/json; charset=utf-8"})

    def outcome(self, status: int, body: bytes, headers: Mapping[str, str]) -> Outcome:
        return http_outcome(status, body, headers) or errcode_outcome(
            body, code_keys=("errcode",), message_keys=("errmsg",),
            too_fast=frozenset({130101}))
