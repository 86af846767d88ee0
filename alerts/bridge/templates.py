"""Messages for people: one notification (a group of alerts) as a title and a text, in
Chinese or English, in the markup each chat tool renders, within its size limit.

Limits are in UTF-8 bytes, which is how DingTalk and WeCom count them (a Chinese character
is three). When a message does not fit, whole alerts are left out from the end and the text
says how many, so what remains is readable; the link to the group in Alertmanager is always
kept, because it is where the rest can be seen. Only when a single alert alone is too long is
it cut, at a character boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

from computewatch.alerts.bridge.payload import Alert, Notification

__all__ = ["STYLES", "Message", "Style", "cut_utf8", "group_link", "render", "utf8_len"]

ELLIPSIS = "…"


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that is at most ``max_bytes`` in UTF-8, whole characters."""
    if max_bytes <= 0:
        return ""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


@dataclass(frozen=True, slots=True)
class Style:
    """The markup of one chat tool: bold, links, escaping and line breaks."""

    name: str
    bold: Callable[[str], str]
    link: Callable[[str, str], str]
    escape: Callable[[str], str]
    line_break: str


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _same(text: str) -> str:
    return text


STYLES: dict[str, Style] = {
    # DingTalk markdown: a bare newline is not a line break, two trailing spaces are.
    "dingtalk": Style("dingtalk", lambda s: f"**{s}**", lambda t, u: f"[{t}]({u})", _same,
                      "  \n"),
    "markdown": Style("markdown", lambda s: f"**{s}**", lambda t, u: f"[{t}]({u})", _same, "\n"),
    "slack": Style("slack", lambda s: f"*{s}*", lambda t, u: f"<{u}|{t}>", _slack_escape, "\n"),
    "text": Style("text", _same, lambda t, u: f"{t}: {u}", _same, "\n"),
}

_WORDS = {
    "zh": {"firing": "告警", "resolved": "已恢复", "started": "开始", "ended": "结束",
           "source": "查看来源", "all": "在 Alertmanager 中查看全部",
           "hidden": "还有 {n} 条告警因长度限制未显示",
           "am_truncated": "Alertmanager 另有 {n} 条告警未发送",
           "count": "（{n} 条）", "critical": "严重", "warning": "警告", "info": "提示"},
    "en": {"firing": "FIRING", "resolved": "RESOLVED", "started": "Started", "ended": "Ended",
           "source": "Source", "all": "See all in Alertmanager",
           "hidden": "{n} more alerts not shown (message size limit)",
           "am_truncated": "Alertmanager left out {n} more alerts", "count": " ({n})",
           "critical": "critical", "warning": "warning", "info": "info"},
}
_SKIP_LABELS = {"alertname", "severity"}


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    text: str
    status: str  # firing | resolved
    shown: int  # alerts shown in full or in part
    total: int
    truncated: bool
    link: str


def group_link(notification: Notification, base: str | None = None) -> str:
    """Alertmanager's page for this group: its receiver, filtered by the group's labels."""
    base = (base or notification.external_url).rstrip("/")
    if not base:
        return ""
    link = f"{base}/#/alerts?receiver={quote(notification.receiver, safe='')}"
    if notification.group_labels:
        matchers = ",".join(f'{k}="{v}"' for k, v in sorted(notification.group_labels.items()))
        link += f"&filter={quote('{' + matchers + '}', safe='')}"
    return link


def _group_name(n: Notification) -> str:
    name = n.common_labels.get("alertname") or n.group_labels.get("alertname")
    if name:
        return name
    if n.group_labels:
        return " ".join(f"{k}={v}" for k, v in sorted(n.group_labels.items()))
    return n.alerts[0].name or "alert"


def _time(t: datetime, tz: ZoneInfo) -> str:
    local = t.astimezone(tz)
    offset = local.strftime("%z")
    zone = "UTC" if offset == "+0000" else f"UTC{offset[:3]}:{offset[3:]}"
    return f"{local:%Y-%m-%d %H:%M:%S} ({zone})"


def _block(alert: Alert, words: dict[str, str], style: Style, tz: ZoneInfo,
           mixed: bool) -> str:
    severity = alert.labels.get("severity", "")
    tag = words.get(severity, severity)
    head = f"[{tag}] {alert.name}" if tag else alert.name
    if mixed and alert.status == "resolved":
        head = f"[{words['resolved']}] {head}"
    lines = [style.bold(style.escape(head))]
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())
                       if k not in _SKIP_LABELS)
    if labels:
        lines.append(style.escape(labels))
    for key in ("summary", "description"):
        if alert.annotations.get(key):
            lines.append(style.escape(alert.annotations[key]))
    when = f"{words['started']}: {_time(alert.starts_at, tz)}"
    if alert.status == "resolved" and alert.ends_at is not None:
        when += f" · {words['ended']}: {_time(alert.ends_at, tz)}"
    lines.append(when)
    if alert.generator_url:
        lines.append(style.link(words["source"], alert.generator_url))
    return style.line_break.join(lines)


def render(notification: Notification, *, language: str = "zh", style: Style | str = "markdown",
           max_bytes: int | None = None, timezone: str = "UTC",
           link_base: str | None = None) -> Message:
    """Title and text of one notification, the text at most ``max_bytes`` UTF-8 bytes."""
    st = STYLES[style] if isinstance(style, str) else style
    words = _WORDS[language]
    tz = ZoneInfo(timezone)
    n = notification
    alerts = n.firing + n.resolved  # firing first: what needs doing comes before what is done
    status_word = words["firing"] if n.status == "firing" else words["resolved"]
    count = words["count"].format(n=len(alerts)) if len(alerts) > 1 else ""
    if language == "zh":
        title = f"【{status_word}】{_group_name(n)}{count}"
    else:
        title = f"[{status_word}{':' + str(len(alerts)) if len(alerts) > 1 else ''}] " \
                f"{_group_name(n)}"
    mixed = bool(n.firing and n.resolved)
    blocks = [_block(a, words, st, tz, mixed) for a in alerts]
    link = group_link(n, link_base)
    header = st.bold(st.escape(title))
    sep = st.line_break * 2 if st.name == "dingtalk" else "\n\n"

    def footer(hidden: int) -> str:
        lines = []
        if hidden:
            lines.append(words["hidden"].format(n=hidden))
        if n.truncated_alerts:
            lines.append(words["am_truncated"].format(n=n.truncated_alerts))
        if link:
            lines.append(st.link(words["all"], link))
        return st.line_break.join(lines)

    def compose(shown: list[str], hidden: int) -> str:
        tail = footer(hidden)
        return sep.join([header, *shown, *([tail] if tail else [])])

    def message(text: str, shown: int) -> Message:
        return Message(title, text, n.status, shown, len(alerts), True, link)

    full = compose(blocks, 0)
    if max_bytes is None or utf8_len(full) <= max_bytes:
        return Message(title, full, n.status, len(alerts), len(alerts), False, link)
    for k in range(len(blocks) - 1, 0, -1):  # leave whole alerts out, from the end
        text = compose(blocks[:k], len(blocks) - k)
        if utf8_len(text) <= max_bytes:
            return message(text, k)
    # Not even one alert fits whole: cut the first, keep the header and the link.
    rest = compose([], len(blocks) - 1)
    budget = max_bytes - utf8_len(rest) - utf8_len(sep) - utf8_len(ELLIPSIS)
    if budget > 0:
        first = cut_utf8(blocks[0], budget) + ELLIPSIS
        tail = footer(len(blocks) - 1)
        text = sep.join([header, first, *([tail] if tail else [])])
        return message(text, 1)
    return message(cut_utf8(full, max_bytes - utf8_len(ELLIPSIS)) + ELLIPSIS, 0)
