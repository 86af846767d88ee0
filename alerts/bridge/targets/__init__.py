"""Delivery targets, one module per kind, registered in one explicit table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from computewatch.alerts.bridge.config import TargetConfig
from computewatch.alerts.bridge.targets._base import OK, Outcome, Prepared, Request, Target
from computewatch.alerts.bridge.targets.dingtalk import DingTalkTarget
from computewatch.alerts.bridge.targets.feishu import FeishuTarget
from computewatch.alerts.bridge.targets.slack import SlackTarget
from computewatch.alerts.bridge.targets.webhook import WebhookTarget, verify_signature
from computewatch.alerts.bridge.targets.wecom import WeComTarget

if TYPE_CHECKING:
    from computewatch.topology import Topology

__all__ = ["KINDS", "OK", "Outcome", "Prepared", "Request", "Target", "build_target",
           "verify_signature"]

KINDS: dict[str, type[Target]] = {
    "dingtalk": DingTalkTarget,
    "wecom": WeComTarget,
    "feishu": FeishuTarget,
    "slack": SlackTarget,
    "webhook": WebhookTarget,
}


def build_target(name: str, config: TargetConfig, url: str, secret: str | None,
                 link_base: str | None = None, places: Topology | None = None) -> Target:
    return KINDS[config.kind](name, config, url, secret, link_base, places)
