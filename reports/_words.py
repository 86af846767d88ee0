"""The report's words that stand for codes: verdicts, the CSV's column titles and meanings,
and (from the core, `computewatch.finding_text`) severities, pipelines, tiers and rules.

Codes (``pass``, ``pue_verdict``, ``site_below_minimum``) stay what scripts read; these
tables say them in the report's language. Every entry is marked for the catalogue with `N_`
and translated where it is shown.
"""

from __future__ import annotations

from computewatch.finding_text import (
    PIPELINE_NAMES,
    SEVERITY_NAMES,
    TIER_NAMES,
    rule_title,
    word,
)
from computewatch.i18n import N_, _
from computewatch.reports._model import COLUMNS

__all__ = ["COLUMN_TITLES", "LEVEL_NAMES", "PIPELINE_NAMES", "SEVERITY_NAMES", "TIER_NAMES",
           "VERDICTS", "column_meaning", "column_title", "rule_title", "word"]

VERDICTS = {"pass": N_("pass"), "fail": N_("fail"), "incomplete": N_("incomplete"),
            "no_data": N_("no data"), "no_it_meter": N_("no IT meter"),
            "no_facility_meter": N_("no facility meter")}
LEVEL_NAMES = {"site": N_("site"), "hub": N_("hub")}

COLUMN_TITLES: dict[str, str] = {
    "level": N_("Level"), "id": N_("ID"), "name": N_("Name"), "hub": N_("Hub"),
    "cluster": N_("Cluster"), "region": N_("Region"),
    "accelerators": N_("Accelerators reporting"),
    "accelerators_installed": N_("Accelerators installed"),
    "utilization": N_("Utilization"), "utilization_minimum": N_("Utilization minimum"),
    "utilization_verdict": N_("Utilization verdict"),
    "utilization_shortfall_hours": N_("Shortfall hours"),
    "utilization_completeness": N_("Utilization completeness"),
    "idle_accelerator_hours": N_("Idle accelerator-hours"),
    "allocated_idle_hours": N_("Idle accelerator-hours held by pods"),
    "free_idle_hours": N_("Idle accelerator-hours free"),
    "pue": N_("PUE"), "pue_target": N_("PUE target"), "pue_verdict": N_("PUE verdict"),
    "pue_completeness": N_("PUE completeness"), "pue_category": N_("PUE category"),
    "pue_interim": N_("Interim PUE"), "pue_grade": N_("GB 40879 grade"),
    "facility_energy_kwh": N_("Facility energy (kWh)"), "it_energy_kwh": N_("IT energy (kWh)"),
    "pue_silent_meters": N_("Silent meters"), "pue_12m": N_("12-month PUE"),
    "pue_12m_completeness": N_("12-month PUE completeness"),
    "link_windows": N_("Link windows"), "link_windows_with_data": N_("Link windows with data"),
    "link_windows_within_budget": N_("Link windows within budget"),
    "link_probes": N_("Probes"), "link_probes_within_budget": N_("Probes within budget"),
    "latency_compliance": N_("Latency-tier compliance"),
    "latency_completeness": N_("Latency completeness"),
    "findings_critical": N_("Critical findings"), "findings_warning": N_("Warning findings"),
    "findings_info": N_("Info findings"),
    "utilization_definition": N_("Utilization definition"), "period": N_("Period"),
    "period_start": N_("Period start (UTC)"), "period_end": N_("Period end (UTC)"),
}
"""A short title per CSV column: the zh-CN CSV's header row (English keeps the ids)."""


def column_title(name: str) -> str:
    return word(COLUMN_TITLES, name)


def column_meaning(name: str) -> str:
    """What a column holds, in the current language (`COLUMNS` is the English text)."""
    return _(COLUMNS[name])
