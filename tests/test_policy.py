"""Policy: sourced defaults, lookup precedence, RTT semantics and precise errors."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from computewatch.config import ConfigError, load_yaml_model_from_text
from computewatch.policy import LEVELS, Policy, Sourced, load_policy
from computewatch.topology import Tier, load_topology

SHIPPED_TEXT = (resources.files("computewatch") / "data" / "policy.yaml").read_text("utf-8")


def line_of(text: str, needle: str) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def edit(old: str, new: str, text: str = SHIPPED_TEXT) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def policy_from(text: str, **context: Any) -> Policy:
    return load_yaml_model_from_text(text, Policy, source_name="policy.yaml", context=context)


def policy_error(text: str, **context: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        policy_from(text, **context)
    assert "\n" not in str(info.value)
    return info.value


def sourced_entries(model: BaseModel) -> list[Sourced[Any]]:
    """Every {value, source} pair in the policy, however deeply nested."""
    found: list[Sourced[Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, Sourced):
            found.append(value)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(model)
    return found


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(topology=load_topology())


def test_shipped_defaults(policy: Policy) -> None:
    assert policy.utilization.busy_level.value == 0.10
    assert policy.utilization.sustained_hours.value == 6
    expected = {
        "accelerator": 0.10,
        "node": 0.30,
        "site": 0.30,
        "cluster": 0.50,
        "hub": 0.50,
        "province": 0.50,
    }
    assert {level: policy.utilization_minimum(level) for level in LEVELS} == expected
    assert policy.pue_target("east") == 1.25
    assert policy.pue_target("west") == 1.20
    assert policy.pue_target(None) == 1.50
    assert policy.pue.min_completeness.value == 0.90
    assert policy.latency.rtt_semantics.value == "round_trip"
    assert policy.latency.route_inflation_limit.value == 1.5
    assert (policy.latency.metro_max_km.value, policy.latency.regional_max_km.value) == (50, 300)


def test_every_shipped_value_has_a_source(policy: Policy) -> None:
    entries = sourced_entries(policy)
    # 10 utilization + 6 definitions (4 shipped, accelerator and node by default) + 4 PUE
    # + 3 GB 40879 grades + 7 latency (2 tier distances)
    assert len(entries) == 30
    for entry in entries:
        assert len(entry.source.strip()) >= 10, entry


def test_each_level_states_its_utilization_definition(policy: Policy) -> None:
    """Sites are judged on utilization, the levels above on occupancy (the busy share)."""
    got = {level: policy.utilization_definition_entry(level).value for level in LEVELS}
    assert got == {"accelerator": "time_weighted", "node": "time_weighted",
                   "site": "time_weighted", "cluster": "busy_fraction",
                   "hub": "busy_fraction", "province": "busy_fraction"}
    assert "上架率" in policy.utilization_definition_entry("hub").source


def test_a_bad_definition_names_the_field() -> None:
    bad = edit("        value: busy_fraction\n        source: >-\n          computewatch choice: "
               "the hub", "        value: busiest\n        source: >-\n          computewatch "
               "choice: the hub")
    err = policy_error(bad)
    assert "utilization.minimums.hub.definition.value" in str(err)
    assert "busiest" in str(err)


def test_sources_cite_the_reference(policy: Policy) -> None:
    assert "1742" in policy.utilization_minimum_entry("hub", "west").source
    assert "1711" in policy.pue.min_completeness.source
    assert "20-30%" in policy.utilization_minimum_entry("site").source
    assert "1.5x" in policy.latency.route_inflation_limit.source
    assert "1.5" in policy.pue_target_entry(None).source


def test_round_trip_budgets(policy: Policy) -> None:
    assert policy.budget_rtt_s(Tier.METRO) == 0.001
    assert policy.budget_rtt_s("regional") == 0.005
    assert policy.budget_rtt_s(Tier.NATIONAL) == 0.020


def test_one_way_budgets_are_doubled() -> None:
    policy = policy_from(edit("value: round_trip", "value: one_way"))
    assert policy.budget_rtt_s(Tier.METRO) == pytest.approx(0.002)
    assert policy.budget_rtt_s(Tier.REGIONAL) == pytest.approx(0.010)
    assert policy.budget_rtt_s(Tier.NATIONAL) == pytest.approx(0.040)


def test_unknown_tier_is_refused(policy: Policy) -> None:
    with pytest.raises(ValueError):
        policy.budget_rtt_s("galactic")


def test_precedence_subject_then_region_then_default() -> None:
    text = edit(
        "      subjects: {}\n",
        "      regions:\n"
        "        west: {value: 0.25, source: test west}\n"
        "      subjects:\n"
        "        zjk-a: {value: 0.40, source: test site}\n",
    )
    policy = policy_from(text, topology=load_topology())
    assert policy.utilization_minimum("site") == 0.30
    assert policy.utilization_minimum("site", "east") == 0.30
    assert policy.utilization_minimum("site", "west") == 0.25
    assert policy.utilization_minimum("site", "west", "zjk-a") == 0.40
    assert policy.utilization_minimum("site", "west", "zjk-b") == 0.25
    assert policy.utilization_minimum_entry("site", "east", "zjk-a").source == "test site"
    with pytest.raises(KeyError, match="unknown level"):
        policy.utilization_minimum("rack")  # type: ignore[arg-type]


def test_site_pue_override() -> None:
    text = edit("  sites: {}\n", "  sites:\n    zjk-a: {value: 1.30, source: test exemption}\n")
    policy = policy_from(text)
    assert policy.pue_target("east", "zjk-a") == 1.30
    assert policy.pue_target("east", "zjk-b") == 1.25
    assert policy.pue_target_entry("east", "zjk-a").source == "test exemption"


def test_load_policy_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(edit("value: 0.90", "value: 0.95"), encoding="utf-8")
    assert load_policy(path).pue.min_completeness.value == 0.95


def test_missing_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(info.value) == f"{path}: file not found"


# --- precise errors ---


def test_ratio_above_one() -> None:
    text = edit("value: 0.90", "value: 90")
    err = policy_error(text)
    line = line_of(text, "value: 90")
    assert str(err) == f"policy.yaml:{line}: pue.min_completeness.value: must be <= 1 (got 90)"


def test_pue_below_one() -> None:
    text = edit("value: 1.20", "value: 0.8")
    err = policy_error(text)
    line = line_of(text, "value: 0.8")
    assert str(err) == f"policy.yaml:{line}: pue.targets.west.value: must be >= 1 (got 0.8)"


def test_budget_must_be_positive() -> None:
    text = edit("value: 0.001", "value: 0")
    err = policy_error(text)
    assert err.path == ("latency", "tiers", "metro", "value")
    lines = text.splitlines()
    assert err.line == lines.index("      value: 0") + 1
    assert str(err).endswith("must be > 0 (got 0)")


def test_budgets_must_grow_with_tier() -> None:
    text = edit("value: 0.020", "value: 0.004")
    err = policy_error(text)
    line = line_of(text, "value: 0.004")
    assert str(err) == (
        f"policy.yaml:{line}: latency.tiers.national.value: "
        "must be >= the regional budget (0.005) (got 0.004)"
    )


def test_bad_rtt_semantics() -> None:
    err = policy_error(edit("value: round_trip", "value: both"))
    assert "latency.rtt_semantics.value: must be 'round_trip' or 'one_way' (got 'both')" in str(err)


def test_source_is_required() -> None:
    text = edit(
        "    value: 0.10\n    source: >-\n      computewatch default: no official definition",
        "    value: 0.10\n    sourc: >-\n      computewatch default: no official definition",
    )
    err = policy_error(text)
    assert err.path == ("utilization", "busy_level", "sourc")
    assert err.line == line_of(text, "sourc:")
    assert "unknown key 'sourc' (did you mean 'source'?" in str(err)


def test_blank_source() -> None:
    text = edit(
        "      value: 0.001\n      source:", "      value: 0.001\n      source: ' '\n      x:"
    )
    err = policy_error(text)
    line = line_of(text, "source: ' '")
    assert str(err) == (
        f"policy.yaml:{line}: latency.tiers.metro.source: "
        "must say where the value comes from (got ' ')"
    )


def test_unknown_region() -> None:
    text = edit("    east:\n      value: 1.25", "    north:\n      value: 1.25")
    err = policy_error(text)
    assert err.line == line_of(text, "north:")
    assert err.path == ("pue", "targets", "north")
    assert "must be 'east' or 'west'" in str(err)


def test_overrides_must_name_known_ids_given_a_topology() -> None:
    text = edit("  sites: {}\n", "  sites:\n    zjk-x: {value: 1.30, source: test}\n")
    policy_from(text)  # no topology: nothing to check against
    err = policy_error(text, topology=load_topology())
    line = line_of(text, "zjk-x")
    assert str(err).startswith(f"policy.yaml:{line}: pue.sites.zjk-x: unknown site 'zjk-x' (")
    text = edit(
        "      subjects: {}\n", "      subjects:\n        atlantis: {value: 0.2, source: t}\n"
    )
    err = policy_error(text, topology=load_topology())
    assert err.path == ("utilization", "minimums", "site", "subjects", "atlantis")
    assert err.line == line_of(text, "atlantis")
