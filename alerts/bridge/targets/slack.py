"""Slack incoming webhooks: mrkdwn text (``*bold*``, ``<url|label>``), about one a second.

Slack answers 200 with the body ``ok``; 429 with Retry-After when sent too fast; 400/403/404/
410 with a reason (invalid_payload, no_service, channel_is_archived) that no retry fixes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from computewatch.alerts.bridge.payload import Notification
from computewatch.alerts.bridge.targets._base import OK, Outcome, Target, http_outcome
from computewatch.alerts.bridge.templates import Message

__all__ = ["SlackTarget"]


class SlackTarget(Target):
    kind = "slack"
    styles: ClassVar[dict[str, str]] = {"markdown": "slack", "text": "text"}

    def document(self, message: Message, notification: Notification) -> dict[str, Any]:
        return {"text": message.text, "mrkdwn": self.config.effective_format == "markdown"}

    def outcome(self, status: int, body: bytes, headers: Mapping[str, str]) -> Outcome:
        verdict = http_outcome(status, body, headers)
        if verdict is not None:
            return verdict
        text = body.decode("utf-8", "replace").strip()
        if text not in ("ok", ""):
            return Outcome(False, False, "rejected", f"Slack answered {text[:200]!r}")
        return OK
