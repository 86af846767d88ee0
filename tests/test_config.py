"""The YAML loader: every failure is one line naming file, line, field path and value."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from computewatch.config import (
    ConfigError,
    PathError,
    format_path,
    load_yaml_model,
    load_yaml_model_from_text,
    suggest_known,
)


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    size: int = Field(ge=0, le=10)


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    items: list[Item]
    refs: list[str] = []

    @model_validator(mode="after")
    def _refs_resolve(self, info: ValidationInfo) -> Doc:
        names = [i.name for i in self.items]
        names += list((info.context or {}).get("extra_names", []))
        for i, ref in enumerate(self.refs):
            if ref not in names:
                raise PathError(("refs", i), f"unknown item {ref!r}", ref)
        return self


class Wrapper(BaseModel):
    model_config = ConfigDict(extra="forbid")
    docs: list[Doc]


GOOD = """\
title: demo
items:
  - name: a
    size: 1
  - name: b
    size: 2
refs: [a, b]
"""


def line_of(text: str, needle: str) -> int:
    """1-based line of the only line containing `needle` (computed without the loader)."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def load(text: str, model: type[BaseModel] = Doc, **kw: object) -> BaseModel:
    return load_yaml_model_from_text(text, model, source_name="doc.yaml", **kw)


def error(text: str, model: type[BaseModel] = Doc, **kw: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text, model, **kw)
    message = str(info.value)
    assert "\n" not in message
    return info.value


def test_good_document_loads() -> None:
    doc = load(GOOD)
    assert isinstance(doc, Doc)
    assert [i.size for i in doc.items] == [1, 2]


def test_bound_violation_names_line_path_and_value() -> None:
    text = GOOD.replace("size: 2", "size: 200")
    err = error(text)
    assert err.line == line_of(text, "size: 200") == 6
    assert err.path == ("items", 1, "size")
    assert err.value == 200
    assert str(err) == "doc.yaml:6: items[1].size: must be <= 10 (got 200)"


def test_type_error_shows_value_repr() -> None:
    text = GOOD.replace("size: 1", "size: lots")
    err = error(text)
    assert str(err).startswith("doc.yaml:4: items[0].size: ")
    assert str(err).endswith("(got 'lots')")


def test_missing_field_points_at_its_parent_mapping() -> None:
    text = GOOD.replace("    size: 2\n", "")
    err = error(text)
    assert err.line == line_of(text, "name: b")
    assert str(err) == f"doc.yaml:{err.line}: items[1].size: required field is missing"


def test_unknown_key_lists_allowed_keys() -> None:
    text = GOOD.replace("    size: 1\n", "    size: 1\n    colour: red\n")
    err = error(text)
    assert err.line == line_of(text, "colour: red")
    assert str(err) == (
        f"doc.yaml:{err.line}: items[0].colour: unknown key 'colour' "
        "(allowed: name, size) (got 'red')"
    )


def test_misspelt_key_is_reported_as_unknown_not_missing() -> None:
    text = GOOD.replace("title: demo", "titel: demo")
    err = error(text)
    assert err.line == 1
    assert "unknown key 'titel' (did you mean 'title'?" in str(err)


def test_path_error_from_validator_gets_path_and_line() -> None:
    text = GOOD.replace("refs: [a, b]", "refs:\n  - a\n  - zz")
    err = error(text)
    assert err.line == line_of(text, "- zz")
    assert str(err) == f"doc.yaml:{err.line}: refs[1]: unknown item 'zz'"


def test_nested_path_error_joins_the_outer_path() -> None:
    text = "docs:\n  - title: one\n    items: []\n  - title: two\n    items: []\n    refs: [x]\n"
    err = error(text, Wrapper)
    assert err.path == ("docs", 1, "refs", 0)
    assert err.line == 6
    assert str(err) == "doc.yaml:6: docs[1].refs[0]: unknown item 'x'"


def test_context_reaches_validators() -> None:
    text = GOOD.replace("refs: [a, b]", "refs: [a, outside]")
    error(text)
    doc = load(text, context={"extra_names": ["outside"]})
    assert isinstance(doc, Doc)
    assert doc.refs == ["a", "outside"]


def test_yaml_syntax_error_names_line() -> None:
    text = GOOD.replace("refs: [a, b]", "refs: [a, b")
    err = error(text)
    assert str(err).startswith("doc.yaml:")
    assert "YAML syntax error" in str(err)
    # PyYAML notices the unclosed sequence at end of input, reported as the last line.
    assert err.line == line_of(text, "refs: [a, b") == 7
    assert "from line 7" in str(err)


def test_yaml_bad_indentation_names_line() -> None:
    text = "title: demo\nitems:\n  - name: a\n   size: 1\n"
    err = error(text)
    assert err.line == 4
    assert "YAML syntax error" in str(err)


def test_duplicate_key_is_an_error() -> None:
    text = GOOD.replace("title: demo", "title: demo\ntitle: again")
    err = error(text)
    assert err.line == 2
    assert str(err) == "doc.yaml:2: title: duplicate key 'title' (first at line 1)"


def test_empty_file() -> None:
    assert str(error("# nothing here\n")) == "doc.yaml:1: file is empty"


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_yaml_model(missing, Doc)
    assert str(info.value) == f"{missing}: file not found"
    assert info.value.line is None


def test_file_errors_carry_the_path(tmp_path: Path) -> None:
    path = tmp_path / "doc.yaml"
    path.write_text(GOOD.replace("size: 2", "size: -1"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml_model(path, Doc)
    assert str(info.value) == f"{path}:6: items[1].size: must be >= 0 (got -1)"


def test_long_values_are_shortened() -> None:
    text = GOOD.replace("title: demo", "title: [" + ", ".join(["x"] * 100) + "]")
    message = str(error(text))
    assert message.endswith("...)")
    assert len(message) < 200


def test_format_path() -> None:
    assert format_path(("sites", 3, "hub")) == "sites[3].hub"
    assert format_path((0, "a")) == "[0].a"
    assert format_path(("pue", "sites", "zjk-a")) == "pue.sites.zjk-a"
    assert format_path(("odd key",)) == "['odd key']"
    assert format_path(()) == ""


def test_suggest_known() -> None:
    assert suggest_known("x", ["a", "b"]) == "known: a, b"
    many = [f"site-{n:02d}" for n in range(30)]
    hint = suggest_known("site-7", many)
    assert hint.startswith("did you mean ") and "site-07" in hint and hint.endswith("30 known")
    assert suggest_known("qqq", many).startswith("30 known: site-00, site-01")
