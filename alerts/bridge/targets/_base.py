"""What every delivery target shares: a message prepared once, a request built per attempt
(so signatures carry a fresh timestamp on every retry), and a verdict on the answer.

The verdict decides what the worker does next: delivered, try again later (timeouts, 5xx,
429 and the chat tools' own "too fast" codes), or give up at once (a 4xx or an error code
that a retry cannot fix, such as a bad signature), which dead-letters the message.
"""

from __future__ import annotations

import email.utils
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from computewatch.alerts.bridge.config import TargetConfig
from computewatch.alerts.bridge.payload import Notification
from computewatch.alerts.bridge.templates import STYLES, Message, Style, render

if TYPE_CHECKING:
    from computewatch.topology import Topology

__all__ = ["OK", "Outcome", "Prepared", "Request", "Target", "errcode_outcome", "http_outcome",
           "json_body"]


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A rendered message and the JSON document carrying it (without any signature)."""

    message: Message
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    retry: bool = False
    reason: str = ""  # the metric label: timeout, http_500, rate_limited, rejected, ...
    detail: str = ""  # for the log and the dead-letter record; never holds a secret
    retry_after: float | None = field(default=None)


OK = Outcome(ok=True)


def json_body(document: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: Chinese text stays 3 bytes a character, as the limits count it."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


def _snippet(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").strip()
    return text.replace("\n", " ")


def http_outcome(status: int, body: bytes, headers: Mapping[str, str]) -> Outcome | None:
    """The verdict from the status alone, or None for a 2xx the target must still read."""
    if 200 <= status < 300:
        return None
    detail = f"HTTP {status}: {_snippet(body)}"
    if status == 429:
        return Outcome(False, True, "rate_limited", detail, _retry_after(headers))
    if status >= 500 or status == 408:
        return Outcome(False, True, f"http_{status}", detail, _retry_after(headers))
    return Outcome(False, False, f"http_{status}", detail)


def errcode_outcome(body: bytes, *, code_keys: tuple[str, ...], message_keys: tuple[str, ...],
                    too_fast: frozenset[int]) -> Outcome:
    """Chat APIs answer 200 with an error code in the JSON; 0 is success."""
    try:
        doc = json.loads(body)
    except ValueError:
        return Outcome(False, True, "bad_response", f"not JSON: {_snippet(body)}")
    if not isinstance(doc, dict):
        return Outcome(False, True, "bad_response", f"not a JSON object: {_snippet(body)}")
    code = next((doc[k] for k in code_keys if k in doc), None)
    msg = next((str(doc[k]) for k in message_keys if k in doc), "")
    if code == 0:
        return OK
    if code is None:
        return Outcome(False, True, "bad_response", f"no error code: {_snippet(body)}")
    if code in too_fast:
        return Outcome(False, True, "rate_limited", f"error {code}: {msg}", 60.0)
    return Outcome(False, False, "rejected", f"error {code}: {msg}")


class Target(ABC):
    """One configured destination. Subclasses set `kind` and build the document and request."""

    kind: ClassVar[str] = ""
    styles: ClassVar[dict[str, str]] = {"markdown": "markdown", "text": "text"}
    body_limit: ClassVar[bool] = False  # max_bytes bounds the whole body, not the text

    def __init__(self, name: str, config: TargetConfig, url: str, secret: str | None,
                 link_base: str | None = None, places: Topology | None = None) -> None:
        self.name = name
        self.places = places
        self.config = config
        self.url = url
        self._secret = secret
        self.link_base = link_base
        self.max_bytes = config.effective_max_bytes
        self.style: Style = STYLES[self.styles[config.effective_format]]

    def __repr__(self) -> str:  # never the URL: it often carries the robot's access token
        return f"<{type(self).__name__} {self.name}>"

    def redact(self, text: str) -> str:
        """``text`` with the URL's query (access tokens, keys) and the secret blanked out."""
        parts = urlsplit(self.url)
        secrets = [self._secret or "", self.url, parts.path, parts.query,
                   *(v for part in parts.query.split("&") for v in part.split("=")[1:])]
        for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def render(self, notification: Notification, max_bytes: int | None) -> Message:
        return render(notification, language=self.config.language, style=self.style,
                      max_bytes=max_bytes, timezone=self.config.effective_timezone,
                      link_base=self.link_base, places=self.places)

    @abstractmethod
    def document(self, message: Message, notification: Notification) -> dict[str, Any]:
        """The JSON document this kind of target posts for one rendered message."""

    def prepare(self, notification: Notification) -> Prepared:
        """Render within the limit; where the limit is on the body, shrink until it fits."""
        if not self.body_limit or self.max_bytes is None:
            message = self.render(notification, self.max_bytes)
            return Prepared(message, self.document(message, notification))
        budget = self.max_bytes - 512  # room for the envelope and the signature fields
        for _ in range(8):
            message = self.render(notification, max(budget, 64))
            doc = self.document(message, notification)
            excess = len(json_body(doc)) + 128 - self.max_bytes
            if excess <= 0:
                break
            budget -= excess
        return Prepared(message, doc)

    def request(self, prepared: Prepared, now: float) -> Request:
        """The HTTP request for one attempt at time ``now`` (Unix seconds)."""
        return Request(self.url, json_body(prepared.document),
                       {"Content-Type": "application/json; charset=utf-8"})

    def outcome(self, status: int, body: bytes, headers: Mapping[str, str]) -> Outcome:
        return http_outcome(status, body, headers) or OK
