"""Feishu / Lark custom bots (飞书自定义机器人): an interactive card, or plain text, signed.

Signing ("签名校验"): ``timestamp`` in seconds and
``sign = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))``, both as string fields
of the JSON body. Feishu refuses a timestamp more than an hour off and a body over 20 KB.
It answers ``{"code": 0, "msg": "success"}`` (older deployments ``{"StatusCode": 0}``);
code 19021 is a bad signature, 11232 "frequency limited" (100 a minute, 5 a second).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

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

__all__ = ["FeishuTarget", "feishu_sign"]


def feishu_sign(secret: str, timestamp_s: int) -> str:
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


class FeishuTarget(Target):
    kind = "feishu"
    body_limit = True

    def document(self, message: Message, notification: Notification) -> dict[str, Any]:
        if self.config.effective_format == "text":
            return {"msg_type": "text", "content": {"text": message.text}}
        colour = "red" if notification.status == "firing" else "green"
        return {"msg_type": "interactive", "card": {
            "config": {"wide_screen_mode": True},
            "header": {"template": colour,
                       "title": {"tag": "plain_text", "content": message.title}},
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": message.text}}],
        }}

    def request(self, prepared: Prepared, now: float) -> Request:
        doc = prepared.document
        if self._secret:
            ts = int(now)
            doc = {"timestamp": str(ts), "sign": feishu_sign(self._secret, ts), **doc}
        return Request(self.url, json_body(doc),
                       {"Content-Type": "application/json; charset=utf-8"})

    def outcome(self, status: int, body: bytes, headers: Mapping[str, str]) -> Outcome:
        return http_outcome(status, body, headers) or errcode_outcome(
            body, code_keys=("code", "StatusCode"), message_keys=("msg", "StatusMessage"),
            too_fast=frozenset({11232}))
