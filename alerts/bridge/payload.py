"""Alertmanager's webhook payload (version 4), parsed into frozen dataclasses.

A body that is not JSON, or JSON that is not a version-4 payload, raises `PayloadError`
whose message names the field and the value, so the 400 answer tells the sender what to fix.
Fields Alertmanager may add later are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from computewatch.config import format_path

__all__ = ["MAX_DEPTH", "Alert", "Notification", "PayloadError", "json_depth",
           "parse_notification"]

_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
MAX_DEPTH = 32
"""Nesting of arrays and objects a body may have (Alertmanager's payload has 3)."""
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # unrolled: linear, fast
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


class PayloadError(ValueError):
    """A webhook body the bridge cannot use; `reason` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class _AlertModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL")
    fingerprint: str = ""


class _PayloadModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str
    alerts: list[_AlertModel] = Field(min_length=1)
    group_key: str = Field("", alias="groupKey")
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL")


@dataclass(frozen=True, slots=True)
class Alert:
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None  # None while firing with no end known
    generator_url: str = ""
    fingerprint: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True, slots=True)
class Notification:
    """One Alertmanager notification: a group of alerts for one receiver."""

    receiver: str
    status: str
    alerts: tuple[Alert, ...]
    group_key: str = ""
    group_labels: dict[str, str] = field(default_factory=dict)
    common_labels: dict[str, str] = field(default_factory=dict)
    common_annotations: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    truncated_alerts: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "resolved"]


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return None if t <= _ZERO_TIME else t.astimezone(UTC)  # Go's zero time: "not set"


def json_depth(body: bytes, stop_at: int | None = None) -> int:
    """How deeply the arrays and objects of a JSON text nest (strings are skipped), counted
    without parsing it, so a body nested 200,000 deep costs a scan, not a RecursionError.
    Counting stops once ``stop_at`` is reached."""
    brackets = _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for c in brackets:
        if c in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_at is not None and deepest >= stop_at:
                    return deepest
        else:
            depth -= 1
    return deepest


def parse_notification(body: bytes, max_depth: int = MAX_DEPTH) -> Notification:
    """Decode and validate one webhook body; raises PayloadError saying what is wrong
    (``too_deep`` for arrays and objects nested deeper than ``max_depth``)."""
    if json_depth(body, max_depth + 1) > max_depth:
        raise PayloadError("too_deep", f"JSON nested deeper than {max_depth} levels "
                           "(max_json_depth)")
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise PayloadError("malformed_json", f"body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise PayloadError("malformed_json", f"malformed JSON at line {exc.lineno} column "
                           f"{exc.colno}: {exc.msg}") from None
    except RecursionError:  # cannot happen below the depth bound; never a dropped answer
        raise PayloadError("too_deep", "JSON nested too deeply to decode") from None
    if not isinstance(data, dict):
        raise PayloadError("invalid_payload", f"expected a JSON object, got "
                           f"{type(data).__name__}")
    try:
        model = _PayloadModel.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = format_path(tuple(p for p in err["loc"] if isinstance(p, str | int))) or "body"
        shown = repr(err.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        got = "" if err["type"] == "missing" else f" (got {shown})"
        raise PayloadError("invalid_payload", f"not an Alertmanager webhook payload "
                           f"(version 4): {where}: {err['msg']}{got}") from None
    alerts = tuple(Alert(a.status, a.labels, a.annotations, _utc(a.starts_at) or _ZERO_TIME,
                         _utc(a.ends_at), a.generator_url, a.fingerprint) for a in model.alerts)
    return Notification(model.receiver, model.status, alerts, model.group_key,
                        model.group_labels, model.common_labels, model.common_annotations,
                        model.external_url, model.truncated_alerts, data)
