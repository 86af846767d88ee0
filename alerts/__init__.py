"""Alerting: Prometheus rules and tests, Alertmanager routing, findings pushed as alerts,
and the bridge to DingTalk, WeCom, Feishu, Slack and signed webhooks."""

__all__: list[str] = []
