"""Messages for people: one notification (a group of alerts) as a title and a text, in
Chinese or English, in the markup each chat tool renders, within its size limit.

The words are the message catalogue's (`computewatch.i18n`). In Chinese an alert shows its
zh-CN annotations (``title_zh``, ``summary_zh``, ``description_zh``, written beside the
English ones in alerts/rules/*.yml) where it has them, and its places (hub, cluster, site,
link ends) by their Chinese names from the topology; label names and ids stay as they are.

Limits are in UTF-8 bytes, which is how DingTalk and WeCom count them (a Chinese character
is three). When a message does not fit, whole alerts are left out from the end and the text
says how many, so what remains is readable; the link to the group in Alertmanager is always
kept, because it is where the rest can be seen. Only when a single alert alone is too long is
it cut, at a character boundary.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote
from zoneinfo import ZoneInfo

from computewatch.alerts.bridge.payload import Alert, Notification
from computewatch.finding_text import SEVERITY_NAMES
from computewatch.i18n import _, using_language
from computewatch.place_names import PlaceKind, place_name

if TYPE_CHECKING:
    from computewatch.topology import Topology

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

_SKIP_LABELS = {"alertname", "severity"}
_PLACE_LABELS: dict[str, PlaceKind] = {"hub": "hub", "cluster": "cluster", "site": "site",
                                       "src_site": "site", "dst_site": "site",
                                       "province": "province", "city": "city"}
"""Labels whose values are places, shown by their Chinese names in Chinese messages."""
_SEVERITY_LEVELS = {"info": 0, "warning": 1, "critical": 2}


def _catalogue_language(language: str) -> str:
    """The bridge's ``language`` setting (zh, zh-CN or en) as a catalogue language."""
    return "en" if language == "en" else "zh-CN"


def _words() -> dict[str, str]:
    """The message words in the current language (`computewatch.i18n`)."""
    return {"firing": _("FIRING"), "resolved": _("RESOLVED"), "source": _("Source"),
            "all": _("See all in Alertmanager"),
            "hidden": _("{n} more alerts not shown (message size limit)"),
            "am_truncated": _("Alertmanager left out {n} more alerts"),
            **{sev: _(SEVERITY_NAMES[level]) for sev, level in _SEVERITY_LEVELS.items()}}


class _Places:
    """Place names for one message: label values (ids) to Chinese names, and the same ids
    replaced where they stand alone in an annotation's text."""

    def __init__(self, places: Topology | None, language: str) -> None:
        self.places = places if language != "en" else None
        self.language = language

    def label(self, key: str, value: str) -> str:
        kind = _PLACE_LABELS.get(key)
        if self.places is None or kind is None:
            return value
        return place_name(self.places, kind, value, self.language)

    def text(self, text: str, labels: dict[str, str]) -> str:
        if self.places is None:
            return text
        for key, value in labels.items():
            name = self.label(key, value)
            if name != value and value:
                text = re.sub(rf"(?<![A-Za-z0-9_.-]){re.escape(value)}(?![A-Za-z0-9_-])",
                              name, text)
        return text


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


def _group_name(n: Notification, chinese: bool) -> str:
    name = n.common_labels.get("alertname") or n.group_labels.get("alertname")
    titles = {a.annotations.get("title_zh", "") for a in n.alerts}
    if chinese and name and len(titles) == 1 and "" not in titles:
        return titles.pop()
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


def _annotation(alert: Alert, key: str, chinese: bool) -> tuple[str, bool]:
    """An annotation in the message's language, and whether it is a ``_zh`` one (the only
    text whose place ids become Chinese names: other text is left as its author wrote it)."""
    if chinese and alert.annotations.get(f"{key}_zh"):
        return alert.annotations[f"{key}_zh"], True
    return alert.annotations.get(key, ""), False


def _block(alert: Alert, words: dict[str, str], style: Style, tz: ZoneInfo,
           mixed: bool, places: _Places) -> str:
    chinese = places.language != "en"
    severity = alert.labels.get("severity", "")
    tag = words.get(severity, severity)
    name = (alert.annotations.get("title_zh") if chinese else None) or alert.name
    head = f"[{tag}] {name}" if tag else name
    if mixed and alert.status == "resolved":
        head = f"[{words['resolved']}] {head}"
    lines = [style.bold(style.escape(head))]
    labels = ", ".join(f"{k}={places.label(k, v)}" for k, v in sorted(alert.labels.items())
                       if k not in _SKIP_LABELS)
    if labels:
        lines.append(style.escape(labels))
    for key in ("summary", "description"):
        text, zh = _annotation(alert, key, chinese)
        if text:
            lines.append(style.escape(places.text(text, alert.labels) if zh else text))
    when = _("Started: {time}").format(time=_time(alert.starts_at, tz))
    if alert.status == "resolved" and alert.ends_at is not None:
        when += " · " + _("Ended: {time}").format(time=_time(alert.ends_at, tz))
    lines.append(when)
    runbook, _zh = _annotation(alert, "runbook_url", chinese)
    if runbook:
        lines.append(_("Runbook: {path}").format(path=runbook))
    if alert.generator_url:
        lines.append(style.link(words["source"], alert.generator_url))
    return style.line_break.join(lines)


def render(notification: Notification, *, language: str = "zh", style: Style | str = "markdown",
           max_bytes: int | None = None, timezone: str = "UTC",
           link_base: str | None = None, places: Topology | None = None) -> Message:
    """Title and text of one notification, the text at most ``max_bytes`` UTF-8 bytes;
    ``language`` zh (or zh-CN) or en, ``places`` the topology whose Chinese names a Chinese
    message shows."""
    lang = _catalogue_language(language)
    with using_language(lang):
        return _render(notification, lang, style, max_bytes, timezone, link_base,
                       _Places(places, lang))


def _render(notification: Notification, language: str, style: Style | str,
            max_bytes: int | None, timezone: str, link_base: str | None,
            places: _Places) -> Message:
    st = STYLES[style] if isinstance(style, str) else style
    words = _words()
    tz = ZoneInfo(timezone)
    n = notification
    alerts = n.firing + n.resolved  # firing first: what needs doing comes before what is done
    status_word = words["firing"] if n.status == "firing" else words["resolved"]
    group = _group_name(n, language != "en")
    if len(alerts) > 1:
        title = _("[{status}:{n}] {name}").format(status=status_word, n=len(alerts), name=group)
    else:
        title = _("[{status}] {name}").format(status=status_word, name=group)
    mixed = bool(n.firing and n.resolved)
    blocks = [_block(a, words, st, tz, mixed, places) for a in alerts]
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
