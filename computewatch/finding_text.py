"""The words a person reads about findings, in the run's language: severities, pipelines,
rules, latency tiers, and a finding's one-line message.

A pipeline writes its message in English when it finds something (stored with the finding,
pushed to Alertmanager, asserted by tests). zh-CN output does not translate that sentence;
it states the finding anew from its fields (place, rule, observed value, threshold, window)
through the catalogue, so every rule reads in official terms (`docs/glossary.md`).
"""

from __future__ import annotations

import math
from datetime import datetime

from computewatch.findings import Finding
from computewatch.i18n import N_, _, translations, using_language
from computewatch.place_names import subject_name
from computewatch.topology import Topology

__all__ = ["ACUTE_NAMES", "PIPELINE_NAMES", "RULE_TITLES", "SEVERITY_NAMES", "TIER_NAMES",
           "finding_message", "format_value", "rule_title", "word"]

SEVERITY_NAMES = {0: N_("info"), 1: N_("warning"), 2: N_("critical")}
PIPELINE_NAMES = {"underuse": N_("underuse"), "latency": N_("latency"), "pue": N_("pue"),
                  "anomaly": N_("anomaly"), "surplus": N_("surplus")}
TIER_NAMES = {"metro": N_("metro"), "regional": N_("regional"), "national": N_("national")}
ACUTE_NAMES = {True: N_("acute"), False: N_("chronic")}
RULE_TITLES = {
    "accelerator_below_minimum": N_("accelerator utilization below the minimum"),
    "node_below_minimum": N_("node utilization below the minimum"),
    "site_below_minimum": N_("site utilization below the minimum"),
    "cluster_below_minimum": N_("cluster utilization below the minimum"),
    "hub_below_minimum": N_("hub utilization below the minimum"),
    "province_below_minimum": N_("province utilization below the minimum"),
    "allocated_idle": N_("idle accelerator-hours held by pods"),
    "link_degraded": N_("link latency degraded"),
    "tier_budget_unmet": N_("latency circle budget not met"),
    "route_inflation": N_("route inflation over the limit"),
    "budget_below_physics": N_("latency budget below the fiber minimum"),
    "accelerator_lost": N_("accelerator unhealthy or lost"),
    "site_anomaly": N_("site anomaly"),
    "pue_over_target": N_("PUE over target"),
    "pue_excursion": N_("PUE excursion"),
    "pue_incomplete": N_("PUE data incomplete"),
    "idle_capacity_within_circle": N_("idle accelerator-hours within the latency circle"),
}
"""A short title per rule (the rule's id stays the id scripts and alert rules use)."""


def word(table: dict, key: object) -> str:
    """A table's word for ``key`` in the current language; an unknown key as it is."""
    text = table.get(key)
    return _(text) if text is not None else str(key)


def rule_title(rule: str) -> str:
    """The rule's title in the current language; a rule without one keeps its id."""
    return word(RULE_TITLES, rule)


def format_value(v: float, unit: str) -> str:
    """A finding's observed value or threshold in its unit, as tables and reports show it."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if unit == "ratio":
        return f"{v:.1%}"
    if unit == "s":
        return f"{v * 1000:.2f} ms"
    return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"


def _when(t: datetime) -> str:
    return f"{t:%Y-%m-%d %H:%M}"


def finding_message(f: Finding, language: str, topology: Topology | None = None) -> str:
    """The finding's one line in ``language``: English is the pipeline's own message;
    another language states place, rule, observed value, threshold and window."""
    if language == "en":
        return f.message or f.rule
    translations(language)
    with using_language(language):
        return _("{subject}: {title}, observed {observed} against {threshold}, "
                 "{start} to {end} UTC").format(
            subject=subject_name(topology, f.subject_type, f.subject, language),
            title=rule_title(f.rule), observed=format_value(f.observed, f.unit),
            threshold=format_value(f.threshold, f.unit), start=_when(f.start),
            end=_when(f.end))
