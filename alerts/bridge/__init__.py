"""The alert bridge: Alertmanager webhooks to DingTalk, WeCom, Feishu, Slack and signed
generic webhooks, with per-target queues, rate limits, retries and a dead-letter log.

Alertmanager has no DingTalk or Feishu receiver, and its ``wechat_configs`` speak the WeCom
application API, not group robots; this is the piece in between. Run it with
``computewatch alert-bridge --config bridge.yaml`` (example: examples/alert-bridge.yaml).
"""

from computewatch.alerts.bridge.config import (
    BridgeConfig,
    load_bridge_config,
    resolve_secrets,
)
from computewatch.alerts.bridge.deadletter import read_dead_letters
from computewatch.alerts.bridge.payload import Alert, Notification, PayloadError, parse_notification
from computewatch.alerts.bridge.server import AlertBridge, check_bridge, open_bridge
from computewatch.alerts.bridge.targets import KINDS, verify_signature
from computewatch.alerts.bridge.templates import render

__all__ = [
    "KINDS",
    "Alert",
    "AlertBridge",
    "BridgeConfig",
    "Notification",
    "PayloadError",
    "check_bridge",
    "load_bridge_config",
    "open_bridge",
    "parse_notification",
    "read_dead_letters",
    "render",
    "resolve_secrets",
    "verify_signature",
]
