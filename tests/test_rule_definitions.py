"""The pipelines' rule definitions: stored in English as the pipelines applied them, restated
in zh-CN when read (a report rendered in Chinese), every value kept, no English left; text no
template matches is shown as stored. Expected Chinese is written here by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from report_text import english_words

from computewatch.i18n import restate, using_language
from computewatch.pipelines import anomaly, latency, surplus
from computewatch.policy import load_policy
from computewatch.pue import DEFINITION as PUE_DEFINITION
from computewatch.rule_definitions import (
    HELD_IDLE,
    PUE_EXCURSION,
    PUE_OVER_TARGET,
    UNDERUSE,
    definition_in_language,
)
from computewatch.topology import load_topology
from computewatch.utilization import ALLOCATION_DEFINITION, COMPLETENESS_DEFINITION, DEFINITIONS

TOPO = load_topology()
POLICY = load_policy(topology=TOPO)
SOURCES = POLICY.sources_in("zh-CN")
EAST = POLICY.pue.targets["east"]
SITE_MIN = POLICY.utilization.minimums.site.default


def _stored() -> dict[str, str]:
    """Every rule's definition as its pipeline writes it (the same calls, the shipped values)."""
    lat = latency._definitions(timedelta(minutes=5), timedelta(hours=24), 0.01, 1.5)
    return {
        "site_below_minimum": UNDERUSE.format(
            utilization=DEFINITIONS["time_weighted"], level="site", hours=6.0, minutes=60.0,
            completeness=COMPLETENESS_DEFINITION, source=SITE_MIN.source),
        "hub_below_minimum": UNDERUSE.format(
            utilization=DEFINITIONS["busy_fraction"], level="hub", hours=6.0, minutes=60.0,
            completeness=COMPLETENESS_DEFINITION, source=SITE_MIN.source),
        "allocated_idle": HELD_IDLE.format(allocation=ALLOCATION_DEFINITION.format(busy=0.1),
                                           hours=2.0),
        "pue_over_target": PUE_OVER_TARGET.format(pue=PUE_DEFINITION, window="month",
                                                  source=EAST.source),
        "pue_excursion": PUE_EXCURSION.format(pue=PUE_DEFINITION, excursion=0.15),
        "pue_incomplete": PUE_DEFINITION,
        "idle_capacity_within_circle": surplus.DEFINITION.format(metro_km=50, inflation=1.5,
                                                                 busy=0.1),
        "accelerator_lost": anomaly.HEALTH_DEFINITION,
        "site_anomaly": anomaly.SITE_DEFINITION.format(z=anomaly.Z_FLAG),
        **lat,
    }


STORED = _stored()


def test_the_stored_text_is_the_english_the_pipelines_always_wrote():
    assert STORED["site_below_minimum"].startswith(
        "time-weighted mean utilization (mean of all utilization samples in each window); "
        "below the site minimum on the rolling mean of 6 h in 60-minute windows; "
        "completeness: completeness of a site's window = ")
    assert STORED["pue_over_target"].endswith(
        "windows in China time; month window; target source: " + EAST.source)
    assert STORED["link_degraded"].startswith(
        "Per 5 min window the p95 round-trip time over every probe of the link")
    assert "fewer than 95% of its probes" in STORED["link_degraded"]
    assert "in at least 50% of those with data" in STORED["tier_budget_unmet"]
    with using_language("en"):
        assert all(definition_in_language(d, SOURCES) == d for d in STORED.values())


@pytest.mark.parametrize("rule", sorted(STORED))
def test_every_rule_reads_in_chinese_with_no_english_left(rule):
    with using_language("zh-CN"):
        text = definition_in_language(STORED[rule], SOURCES)
    assert text != STORED[rule]
    assert english_words(text, TOPO) == [], text


def test_values_and_sources_are_kept_and_words_translated():
    with using_language("zh-CN"):
        site = definition_in_language(STORED["site_below_minimum"], SOURCES)
        pue = definition_in_language(STORED["pue_over_target"], SOURCES)
        link = definition_in_language(STORED["link_degraded"], SOURCES)
        surplus_zh = definition_in_language(STORED["idle_capacity_within_circle"], SOURCES)
    assert site.startswith("时间加权平均算力利用率（")
    assert ("；按 60 分钟窗口计算的 6 h 滚动平均值低于站点最低值；"
            "数据完整度：站点窗口的数据完整度") in site
    assert site.endswith("；最低值来源：" + SITE_MIN.source_zh.strip())
    assert pue.endswith("；自然月窗口；目标值来源：" + EAST.source_zh.strip())
    assert pue.startswith("基于电能计量的 PUE")
    assert link.startswith("每个 5 分钟窗口内") and "少于 95% 时该窗口超出预算" in link
    assert "最近 30 分钟的平均丢包率均超过 0.01" in link and "之前 24 小时内" in link
    assert "同名或在 50 km 以内" in surplus_zh and "路由迂回系数 1.5" in surplus_zh
    assert surplus_zh.count("低于 0.1 的") == 2


def test_a_definition_no_template_reads_is_shown_as_stored():
    own = "a site's own rule: below 20% for 3 h"
    with using_language("zh-CN"):
        assert definition_in_language(own, SOURCES) == own
        # a source the policy does not hold is kept as written
        other = PUE_OVER_TARGET.format(pue=PUE_DEFINITION, window="1d", source="site memo 7")
        assert definition_in_language(other, SOURCES).endswith(
            "；每日窗口；目标值来源：site memo 7")


def test_restate_matches_the_whole_text_and_a_repeated_field_must_agree():
    templates = ["{a} and {b:g} and {b:g}"]
    assert restate("x and 1.5 and 1.5", templates) == "x and 1.5 and 1.5"
    assert restate("x and 1.5 and 2", templates) is None
    assert restate("x and 1.5 and 1.5 more", templates) is None
    # a nested value that holds the separator is read as the whole nested text
    nested = restate("p; q; r; all window; target source: s; t", [PUE_OVER_TARGET],
                     nested={"pue": ["p; q; r"]}, value=lambda f, v: f"<{v}>")
    assert nested == "<p; q; r>; <all> window; target source: <s; t>"
