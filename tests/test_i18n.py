"""The message catalogues and the choice of language (computewatch.i18n).

The catalogue is complete and current: every message the code marks is in the zh-CN .po,
translated (no empty msgstr, no fuzzy entry, the same placeholders), the committed .mo is what
the .po compiles to, and the glossary's official terms (docs/glossary.md) are used wherever
their English terms appear. The language comes from --lang, then COMPUTEWATCH_LANG, then the
locale, else English.
"""

from __future__ import annotations

import gettext
import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from computewatch import i18n
from computewatch.i18n import LanguageError, resolve_language

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "computewatch" / "locale"
PO = LOCALE / "zh_CN" / "LC_MESSAGES" / "computewatch.po"
MO = PO.with_suffix(".mo")
GLOSSARY = ROOT / "docs" / "glossary.md"
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _catalog():
    with PO.open("rb") as f:
        return read_po(f)


def _entries() -> list[tuple[str, str]]:
    return [(m.id, m.string) for m in _catalog() if m.id and isinstance(m.id, str)]


# --- the language of a run ---

@pytest.mark.parametrize(("option", "env", "expected"), [
    (None, {}, "en"),
    (None, {"LANG": "zh_CN.UTF-8"}, "zh-CN"),
    (None, {"LANG": "zh_CN.UTF-8", "LC_ALL": "C.UTF-8"}, "en"),  # LC_ALL overrides LANG
    (None, {"LANG": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, "zh-CN"),
    (None, {"LANGUAGE": "fr:zh_CN", "LANG": "en_US.UTF-8"}, "zh-CN"),  # a preference list
    (None, {"LANG": "fr_FR.UTF-8"}, "en"),  # no French catalogue: English, as gettext does
    (None, {"LANG": "zh_TW.UTF-8"}, "en"),  # traditional Chinese is not zh-CN
    (None, {"COMPUTEWATCH_LANG": "zh-CN", "LANG": "en_US.UTF-8"}, "zh-CN"),
    (None, {"COMPUTEWATCH_LANG": "en", "LANG": "zh_CN.UTF-8"}, "en"),
    ("zh-CN", {"COMPUTEWATCH_LANG": "en"}, "zh-CN"),  # --lang first
    ("en", {"COMPUTEWATCH_LANG": "zh-CN", "LANG": "zh_CN.UTF-8"}, "en"),
    ("zh_CN", {}, "zh-CN"),
    ("zh", {}, "zh-CN"),
    ("zh-Hans", {}, "zh-CN"),
])
def test_language_from_option_then_variable_then_locale(option, env, expected):
    assert resolve_language(option, env) == expected


def test_an_unsupported_language_named_on_purpose_is_an_error_naming_its_source():
    with pytest.raises(LanguageError, match=r"bad --lang 'fr': one of en, zh-CN"):
        resolve_language("fr", {})
    with pytest.raises(LanguageError, match=r"bad COMPUTEWATCH_LANG 'klingon'"):
        resolve_language(None, {"COMPUTEWATCH_LANG": "klingon"})


def test_translation_follows_the_language_set_and_english_is_the_source_text():
    with i18n.using_language("zh-CN"):
        assert i18n._("National") == "全国"
        assert i18n._("a message no catalogue holds") == "a message no catalogue holds"
    with i18n.using_language("en"):
        assert i18n._("National") == "National"
    assert i18n.translations("zh-CN") is i18n.translations("zh-CN")  # read once


# --- the catalogue is complete and current ---

def _extracted() -> set[str]:
    """Every message the code marks, extracted as `make i18n` does (babel.cfg)."""
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    ids = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map):
        ids.add(message if isinstance(message, str) else message[0])
    return ids


def test_every_marked_message_is_in_the_catalogue_and_nothing_stale():
    in_po = {mid for mid, _s in _entries()}
    marked = _extracted()
    assert not marked - in_po, f"run `make i18n` and translate: {sorted(marked - in_po)}"
    assert not in_po - marked, f"stale entries (run `make i18n`): {sorted(in_po - marked)}"


def test_every_entry_is_translated_not_fuzzy_and_keeps_its_placeholders():
    catalog = _catalog()
    entries = [m for m in catalog if m.id]
    assert len(entries) >= 100
    for m in entries:
        assert m.string, f"untranslated: {m.id!r}"
        assert not m.fuzzy, f"fuzzy: {m.id!r}"
        assert sorted(PLACEHOLDER.findall(m.id)) == sorted(PLACEHOLDER.findall(m.string)), m.id
        assert re.search(r"[\u4e00-\u9fff]", m.string) or m.id in NOT_WORDS, (
            f"{m.id!r} -> {m.string!r} has no Chinese")


NOT_WORDS = {"PUE"}
"""Messages whose translation is, rightly, the same symbol."""


def test_the_committed_mo_is_what_the_po_compiles_to():
    buf = io.BytesIO()
    write_mo(buf, _catalog())
    buf.seek(0)
    compiled = gettext.GNUTranslations(buf)._catalog  # type: ignore[attr-defined]
    with MO.open("rb") as f:
        committed = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    assert committed == compiled, "run `make i18n` (pybabel compile) and commit the .mo"


# --- the glossary's terms ---

def _glossary() -> list[tuple[str, str, list[str]]]:
    rows = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not line.startswith("| ") or cells[0].startswith(("English", "-")):
            continue
        rejected = [v.strip() for v in cells[2].split(",") if v.strip()]
        rows.append((cells[0], cells[1], rejected))
    return rows


def _prose(msgid: str) -> str:
    """The English a person reads: no option names, placeholders or `code`."""
    return re.sub(r"--[\w-]+|\{[^{}]*\}|`[^`]*`", " ", msgid)


def _matches(term: str, msgid: str) -> bool:
    if term.startswith('"'):
        return msgid == term.strip('"')
    pattern = rf"(?<![\w-]){re.escape(term)}s?(?![\w-])"
    return re.search(pattern, _prose(msgid), re.IGNORECASE) is not None


def test_the_glossary_lists_the_official_terms():
    chinese = {zh for _en, zh, _r in _glossary()}
    for term in ("全国一体化算力网络", "国家枢纽节点", "数据中心集群", "算力利用率",
                 "闲置算力（卡时）", "电能利用效率", "时延圈", "城市内", "区域", "枢纽间", "告警",
                 "监管报告"):
        assert term in chinese, term


def test_glossary_terms_are_used_wherever_their_english_appears():
    rows = _glossary()
    entries = _entries()
    checked = 0
    for en, zh, rejected in rows:
        for msgid, msgstr in entries:
            if not _matches(en, msgid):
                continue
            checked += 1
            assert zh in msgstr, f"{msgid!r} -> {msgstr!r}: glossary says {en} = {zh}"
            for bad in rejected:
                assert bad not in msgstr, f"{msgid!r} -> {msgstr!r} uses {bad!r}, not {zh!r}"
    assert checked >= 40  # the glossary really bites on the catalogue


def test_the_glossary_check_catches_a_wrong_term():
    """The check above can fail: a translation of 'alert' as 报警 breaks it."""
    assert _matches("alert", "alerts: {firing} firing")
    assert not _matches("alert", "bad --alert-severity {value}")
    assert not _matches("accelerator", "idle accelerator-hours")
    assert _matches('"national"', "national") and not _matches('"national"', "National")
