"""WeCom group robots (企业微信群机器人): markdown (4,096 bytes) or text (2,048 bytes).

The robot's ``key`` in the webhook URL is its only credential, so the URL belongs in a
secret (``url: {env: ...}``). It answers ``{"errcode": 0, "errmsg": "ok"}``; errcode 45009
means over 20 messages a minute, 93000 an invalid webhook URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from computewatch.alerts.bridge.payload import Notification
from computewatch.alerts.bridge.targets._base import Outcome, Target, errcode_outcome, http_outcome
from computewatch.alerts.bridge.templates import Message

__all__ = ["WeComTarget"]


class WeComTarget(Target):
    kind = "wecom"

    def document(self, message: Message, notification: Notification) -> dict[str, Any]:
        if self.config.effective_format == "text":
            return {"msgtype": "text", "text": {"content": message.text}}
        return {"msgtype": "markdown", "markdown": {"content": message.text}}

    def outcome(self, status: int, body: bytes, headers: Mapping[str, str]) -> Outcome:
        return http_outcome(status, body, headers) or errcode_outcome(
            body, code_keys=("errcode",), message_keys=("errmsg",),
            too_fast=frozenset({45009}))
