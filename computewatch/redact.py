"""Secrets out of every message: the one helper for log lines and errors that can carry a URL
or a configured secret.

Three things leak in practice, and each has its rule:

- credentials written into a URL: ``user:password@`` (store, remote-write, OTLP and Grafana
  URLs) keeps the user and hides the password; query parameters that carry a credential
  (``token=``, ``access_token=``, ``key=``, ``sign=``, ``password=``, ...) keep their name and
  hide their value; the path of a chat-robot webhook (Slack ``/services/...``, Feishu and Lark
  ``/hook/...``) is hidden after its fixed prefix;
- configured secrets (bearer tokens, basic-auth passwords, robot signing keys, InfluxDB and
  Grafana tokens, OTLP header values): whoever reads one calls `register_secret`, and every
  later message has each registered value replaced wherever it appears, whatever the message;
- a secret written inline where a reference was expected: the config loader never shows the
  value of a field whose name says it holds one (`is_secret_key`).

`redact` applies the first two to any text; `RedactingFormatter` applies it to every log
record (the command line installs it on the root logger), and the command line's error
printer applies it to every error. Redaction shows ``***`` in place of what it hides.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "RedactingFormatter",
    "is_secret_key",
    "redact",
    "redact_url",
    "register_secret",
]

MASK = "***"
"""What a hidden value is shown as."""

_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words; no real credential is this short

_SECRET_PARAM = re.compile(
    r"^(?:.*[_-])?(?:token|access[_-]?token|api[_-]?key|apikey|key|secret|password|passwd|pwd|"
    r"sign|signature|sig|auth|authorization|credentials?|client[_-]?secret)$", re.IGNORECASE)
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:secrets?|tokens?|password|passwd|credentials?|api_?key|private_key|auth|"
    r"authorization|headers?|bearer)(?:$|_)", re.IGNORECASE)
# Webhook URLs whose path is the credential: keep the fixed prefix, hide the rest.
_SECRET_PATHS = (
    re.compile(r"^(/services/)(.+)$"),  # Slack incoming webhooks
    re.compile(r"^(/open-apis/bot/v2/hook/)(.+)$"),  # Feishu / Lark custom bots
)
# A URL inside free text: a scheme, then anything up to whitespace or a closing quote/bracket.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]*(?:\[[0-9A-Fa-f:.]+\]"
                          r"[^\s'\"<>(){}]*)?")
# userinfo in something that is not a parseable URL (e.g. "Failed to parse: http://u:p@[::1")
_USERINFO = re.compile(r"(//[^/\s:@]+:)[^@\s/]+(@)")

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Hide ``value`` from every later message of this process (values under 4 characters
    are ignored: they would mask ordinary words)."""
    global _pattern
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is hidden whole.
        alternatives = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def is_secret_key(key: object) -> bool:
    """Whether a config key names a secret (``secret``, ``bearer_token``, ``password``,
    ``headers``...), so its value must never be shown."""
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def redact_url(url: str) -> str:
    """``url`` with its password, credential query values and webhook-path secrets hidden.

    Text that is not a URL comes back with only a ``//user:password@`` hidden.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:  # e.g. "http://[::1": not a URL, but may still carry userinfo
        return _USERINFO.sub(rf"\g<1>{MASK}\g<2>", url)
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{userinfo}@{hostport}"
    path = parts.path
    for pattern in _SECRET_PATHS:
        path = pattern.sub(rf"\g<1>{MASK}", path)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.match(k) for k, _ in pairs):
            query = "&".join(f"{quote(k, safe='')}={MASK if _SECRET_PARAM.match(k) else v}"
                             for k, v in pairs)
    if (netloc, path, query) == (parts.netloc, parts.path, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def _redact_match(m: re.Match[str]) -> str:
    url = m.group()
    core = url.rstrip(".,;:!?")  # punctuation after a URL in a sentence is not part of it
    return redact_url(core) + url[len(core):]


def redact(text: object) -> str:
    """``str(text)`` with every URL's credentials and every registered secret hidden."""
    out = str(text)
    if "://" in out:
        out = _URL_IN_TEXT.sub(_redact_match, out)
        out = _USERINFO.sub(rf"\g<1>{MASK}\g<2>", out)
    pattern = _pattern
    if pattern is not None:
        out = pattern.sub(MASK, out)
    return out


class RedactingFormatter(logging.Formatter):
    """A log formatter whose every line (traceback included) goes through `redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
