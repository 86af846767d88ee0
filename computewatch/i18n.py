"""The one place a language is chosen and a message translated, for every layer.

Messages are written in English in the code and marked with `_` (translated where they are
used) or `N_` (marked only, for module-level tables translated later); `pybabel extract`
collects them into ``computewatch/locale/computewatch.pot``, translators fill
``locale/<lang>/LC_MESSAGES/computewatch.po`` and `pybabel compile` writes the ``.mo`` that
runtime reads with the standard library's `gettext` (``make i18n`` runs the three; the
``.mo`` files are committed so an installed wheel needs no Babel). English is the source
language: it has no catalogue and its text is exactly what the code says.

The language of a run comes from ``--lang``, then ``COMPUTEWATCH_LANG``, then the POSIX locale
(``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``, as gettext reads them), else English.
A language named on purpose (the option or the variable) that is not supported is an error; a
locale in a language without a catalogue (``fr_FR.UTF-8``) falls back to English, as gettext
does. Catalogues load once per process.
"""

from __future__ import annotations

import gettext
import os
import re
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

__all__ = ["DEFAULT_LANGUAGE", "DOMAIN", "ENV_VAR", "LANGUAGES", "LOCALE_DIR", "N_",
           "LanguageError", "_", "current_language", "gettext_dir", "language_of_locale",
           "ngettext", "normalize_language", "resolve_language", "restate", "set_language",
           "translations", "using_language"]

DOMAIN = "computewatch"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("en", "zh-CN")
"""Supported languages as users write them (BCP 47 tags); ``en`` is the source language."""
DEFAULT_LANGUAGE = "en"
ENV_VAR = "COMPUTEWATCH_LANG"
_LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")

_ALIASES = {
    "en": "en", "c": "en", "posix": "en",
    "zh": "zh-CN", "zh-cn": "zh-CN", "zh-hans": "zh-CN", "zh-hans-cn": "zh-CN",
    "zh-sg": "zh-CN", "chinese": "zh-CN",
}

_current: ContextVar[str] = ContextVar("computewatch_language", default=DEFAULT_LANGUAGE)


class LanguageError(ValueError):
    """A language named on purpose that computewatch has no catalogue for."""


def normalize_language(text: str) -> str | None:
    """The supported language a tag or locale name means (``zh_CN.UTF-8``, ``zh-Hans``,
    ``en_US``, ``C`` ...), or None. Any English variant is English; Chinese in simplified
    script (mainland, Singapore, or no region) is zh-CN."""
    tag = text.strip().split(".")[0].split("@")[0].replace("_", "-").casefold()
    if tag in _ALIASES:
        return _ALIASES[tag]
    if tag.startswith("en-"):
        return "en"
    return None


def gettext_dir(language: str) -> str:
    """The catalogue folder of a supported language: ``zh-CN`` -> ``zh_CN``."""
    return language.replace("-", "_")


def language_of_locale(environ: Mapping[str, str]) -> str | None:
    """The supported language of the POSIX locale, read as gettext reads it: the first of
    LANGUAGE (a colon-separated list), LC_ALL, LC_MESSAGES, LANG that is set; None when that
    names no supported language."""
    for var in _LOCALE_VARS:
        value = environ.get(var, "")
        if not value:
            continue
        for part in value.split(":") if var == "LANGUAGE" else (value,):
            lang = normalize_language(part)
            if lang is not None:
                return lang
        if var != "LANGUAGE":  # the first set variable decides, as in gettext
            return None
    return None


def resolve_language(option: str | None = None,
                     environ: Mapping[str, str] | None = None) -> str:
    """The language of a run: ``--lang``, then ``COMPUTEWATCH_LANG``, then the locale, then
    English. Raises `LanguageError` naming the option or variable for an unsupported one."""
    environ = os.environ if environ is None else environ
    for source, value in (("--lang", option), (ENV_VAR, environ.get(ENV_VAR))):
        if value:
            lang = normalize_language(value)
            if lang is None:
                raise LanguageError(f"bad {source} {value!r}: one of {', '.join(LANGUAGES)}")
            return lang
    return language_of_locale(environ) or DEFAULT_LANGUAGE


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of a supported language, read once; English is the code's own text."""
    if language not in LANGUAGES:
        raise LanguageError(f"unsupported language {language!r}: one of {', '.join(LANGUAGES)}")
    if language == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[gettext_dir(language)])


def set_language(language: str) -> None:
    """Make ``language`` the one `_` translates into, in this context (thread or task)."""
    translations(language)  # unsupported: raise here, not at the first message
    _current.set(language)


def current_language() -> str:
    return _current.get()


@contextmanager
def using_language(language: str) -> Iterator[None]:
    """Translate into ``language`` within the block (a bridge target's own language)."""
    translations(language)
    token = _current.set(language)
    try:
        yield
    finally:
        _current.reset(token)


def _(message: str) -> str:
    """``message`` in the current language."""
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n`` in the current language."""
    return translations(_current.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark ``message`` for the catalogue without translating it (module-level tables, which
    are built before a language is chosen: translate them with `_` where they are shown)."""
    return message


def _fields(template: str) -> list[tuple[str, str | None]]:
    """``template``'s literal text and field names, in order (a format spec dropped)."""
    return [(literal, field) for literal, field, _spec, _conv in string.Formatter().parse(template)]


@cache
def _pattern(template: str, nested: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> re.Pattern:
    """A regular expression matching the whole of any text ``template`` formats to: each
    field a named group (a field met again must repeat its value), a field in ``nested``
    one of its templates."""
    inner = dict(nested)
    seen: set[str] = set()
    out = []
    for literal, field in _fields(template):
        out.append(re.escape(literal))
        if field is None:
            continue
        name = field.split(".")[0].split("[")[0]
        if name in seen:
            out.append(f"(?P={name})")
            continue
        seen.add(name)
        if name in inner:
            body = "|".join(_loose(t) for t in inner[name])
            out.append(f"(?P<{name}>{body})")
        else:
            out.append(f"(?P<{name}>.*?)")
    return re.compile("".join(out), re.S)


def _loose(template: str) -> str:
    """A pattern for any text ``template`` formats to, without groups (a nested value)."""
    return "".join(re.escape(literal) + ("" if field is None else ".*?")
                   for literal, field in _fields(template))


def _fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each field replaced by its value as text (specs dropped: the value
    is already formatted, as the English text showed it)."""
    return "".join(literal + ("" if field is None else values[field.split(".")[0]])
                   for literal, field in _fields(template))


def restate(text: str, templates: Sequence[str], *,
            nested: Mapping[str, Sequence[str]] | None = None,
            value: Callable[[str, str], str] | None = None) -> str | None:
    """``text``, an English message formatted from one of ``templates`` (catalogue msgids
    with named fields), in the current language: the first template whose pattern matches
    all of it is translated and filled with the values read back from the text, each passed
    through ``value(field, text)`` (e.g. a word, a nested definition, a policy source) or
    kept verbatim. ``nested`` names the fields whose value is itself one of some templates
    (matched as such, so a "; " inside one cannot split it). None when no template matches.

    This is for text that is stored or raised in English (a finding's definition, a library's
    error) and read later in a language: the reading, not the writing, picks the language."""
    key = tuple(sorted((k, tuple(v)) for k, v in (nested or {}).items()))
    for template in templates:
        m = _pattern(template, key).fullmatch(text)
        if m is None:
            continue
        got = {k: (value(k, v) if value else v) for k, v in m.groupdict().items()}
        return _fill(_(template), got)
    return None
