"""Each pipeline rule's definition as a catalogue template, and its reading in a language.

A finding states its method in ``definition``: the pipeline fills one of these templates with
the values it applied and stores the English text (what `analyze --format json`, the store
and Alertmanager carry, unchanged). A report in another language does not receive that
sentence in its language at analysis time, which would freeze the language of whoever ran the
pipelines into stored analyses; it reads the English text back against the templates here and
restates it in the report's language (`definition_in_language`), values kept as applied. A
definition no template matches (a pipeline's own wording, an older analysis) is shown as
stored.
"""

from __future__ import annotations

from collections.abc import Mapping

from computewatch.i18n import N_, _, current_language, restate
from computewatch.pue import DEFINITION as PUE_DEFINITION
from computewatch.utilization import ALLOCATION_DEFINITION, COMPLETENESS_DEFINITION, DEFINITIONS

__all__ = ["ANOMALY_HEALTH", "ANOMALY_SITE", "HELD_IDLE", "LATENCY_BUDGET_BELOW_PHYSICS",
           "LATENCY_LINK_DEGRADED", "LATENCY_ROUTE_INFLATION", "LATENCY_TIER_BUDGET_UNMET",
           "PUE_EXCURSION", "PUE_OVER_TARGET", "PUE_WINDOW_NAMES", "RULE_TEMPLATES",
           "SURPLUS", "UNDERUSE", "definition_in_language"]

UNDERUSE = N_("{utilization}; below the {level} minimum on the rolling mean of {hours:g} h in "
              "{minutes:g}-minute windows; completeness: {completeness}; minimum source: "
              "{source}")
"""``*_below_minimum``: the utilization definition applied, the level, the sustained span and
window, the completeness definition and the minimum's source."""

HELD_IDLE = N_("{allocation}; a namespace is reported when its pods hold a card that idle for "
               "{hours:g} h or more in a row")
"""``allocated_idle``: the allocation split (``ALLOCATION_DEFINITION``) and the span."""

PUE_OVER_TARGET = N_("{pue}; {window} window; target source: {source}")
PUE_EXCURSION = N_("{pue}; hourly PUE more than {excursion} above the site's median over the "
                   "period")
PUE_WINDOW_NAMES = {"all": N_("whole-period"), "1d": N_("daily"), "month": N_("calendar-month")}
"""The PUE pipeline's window names, as a definition reads them."""

SURPLUS = N_(
    "RTT city->site: median over the period of the window p50 RTT of probed links between a "
    "site in the city (same name or within {metro_km:g} km) and the site, either direction, "
    "lowest link wins (observed); else great-circle km x 10 us/km x route inflation "
    "{inflation:g} (estimated). Only free accelerators (no pod holds them) are offered. "
    "Idle accelerator-hours: sum over the free accelerators' utilization samples of "
    "(1 - utilization) x the sampling interval, inferred from the data. Idle cards: free "
    "devices whose mean utilization over the period's last hour is below {busy:g}. "
    "Reclaimable, apart: cards pods hold with a last-hour mean below {busy:g}, and the idle "
    "accelerator-hours of the hourly windows in which pods held cards at most that busy.")

ANOMALY_HEALTH = N_(
    "accelerator health (1 healthy, 0 unhealthy or lost) as the minimum per 1-minute bucket; "
    "an episode is a run of unhealthy minutes ended by a healthy reading; it starts at the "
    "first unhealthy minute and ends one minute after the last (or at the period end)")
ANOMALY_SITE = N_(
    "robust z-scores of per-site window features (mean utilization, log watts per unit of "
    "utilization, energy-based PUE, log median RTT to the hub site) against the site's own "
    "trailing baseline (its earlier, not anomalous windows within 7 days; median, scale "
    "IQR/1.349 at least the job-churn noise and a per-feature floor); a window is anomalous "
    "when a feature's |z| >= {z:g}")

LATENCY_LINK_DEGRADED = N_(
    "Per {window} window the p95 round-trip time over every probe of the link (both "
    "directions, every probe kind) is compared with the tier budget read as a round-trip "
    "time: the window is over budget when fewer than {share} of its probes were answered "
    "within the budget (exactly {share} complies). A window is lossy when its mean loss and "
    "the mean loss of the last {loss_span} both exceed {loss_limit:g}. Bad = over budget or "
    "lossy. SLOs on probes: {share} answered within the budget (latency), at most "
    "{loss_limit:g} lost (availability); burn rate = bad share of probes / allowed share "
    "over a look-back with at least half its windows holding data. Multiwindow alerts "
    "(Google SRE workbook): fast when the {fast_lookback} and {fast_short} burn rates of "
    "either SLO are both >= {fast_burn:g}, slow when the {slow_lookback} and {slow_short} "
    "ones are both >= {slow_burn:g}. An episode is a run of bad windows (one good window "
    "bridged, two end it); it is an incident when the link was within budget in its "
    "baseline (the p95 over every probe of the baseline within budget) and an alert fired "
    "during it: CRITICAL when the fast one fired, else WARNING. Baseline: the link's windows "
    "in the {baseline} before the episode, or, where the store holds less than half of that, "
    "its other windows in the analysed range. observed = p95 over every probe of the "
    "episode, merged from the per-minute percentiles weighted by replies (threshold = "
    "budget); completeness = windows with data / windows in the episode.")
LATENCY_TIER_BUDGET_UNMET = N_(
    "Per {window} window the p95 round-trip time over every probe of the link (both "
    "directions, every probe kind) is compared with the tier budget read as a round-trip "
    "time: the window is over budget when fewer than {share} of its probes were answered "
    "within the budget (exactly {share} complies). A link is over budget by design (chronic) "
    "when its windows were over budget in at least {chronic} of those with data over the "
    "period and the {baseline} before it; intermittent when in more than {intermittent} but "
    "less than {chronic}. One planning finding per hub pair and tier, not paged: observed = "
    "chronic links, threshold = 0 (the hub pair and tier's links with data are in detail). "
    "completeness = windows with data / windows, over its links.")
LATENCY_ROUTE_INFLATION = N_(
    "Route inflation = median over the period's {window} windows of the link's minimum RTT / "
    "its fiber minimum RTT (great circle, 10 us per km); over the limit {limit:g} it is "
    "listed. Links whose fiber minimum is below {short_ms:g} ms (under 50 km) are not "
    "scored: equipment delay dominates there. One planning finding per hub pair and tier: "
    "observed = the worst link's inflation, threshold = the limit.")
LATENCY_BUDGET_BELOW_PHYSICS = N_(
    "The link's fiber minimum RTT (great circle at 10 us per km, no equipment, no detour) "
    "alone exceeds its tier budget read as a round-trip time: no route can meet it. One "
    "planning finding per hub pair and tier: observed = the largest fiber minimum (s), "
    "threshold = budget (s).")

RULE_TEMPLATES = (UNDERUSE, HELD_IDLE, PUE_OVER_TARGET, PUE_EXCURSION, SURPLUS, ANOMALY_SITE,
                  LATENCY_LINK_DEGRADED, LATENCY_TIER_BUDGET_UNMET, LATENCY_ROUTE_INFLATION)
"""The templates with fields, tried in turn against a stored definition (the fixed ones,
``PUE_DEFINITION``, ``ANOMALY_HEALTH`` and ``LATENCY_BUDGET_BELOW_PHYSICS``, are catalogue
entries as they stand)."""

_NESTED = {
    "utilization": tuple(DEFINITIONS.values()),
    "completeness": (COMPLETENESS_DEFINITION,),
    "allocation": (ALLOCATION_DEFINITION,),
    "pue": (PUE_DEFINITION,),
}
_LEVELS = {"site": N_("site"), "cluster": N_("cluster"), "hub": N_("hub"),
           "province": N_("province"), "accelerator": N_("accelerator"), "node": N_("node")}
_SPAN_UNITS = {"h": N_("{n} h"), "min": N_("{n} min"), "s": N_("{n} s")}


def _span(text: str) -> str:
    """A span as the latency pipeline writes it (``5 min``, ``1 h``) in the language."""
    n, _sep, unit = text.partition(" ")
    return _(_SPAN_UNITS[unit]).format(n=n) if unit in _SPAN_UNITS else text


def definition_in_language(text: str, sources: Mapping[str, str] | None = None) -> str:
    """A finding's stored (English) definition in the current language: its template
    translated, with the values it applied; ``sources`` maps a policy source as the policy
    states it to the source in the language (`computewatch.policy.Sourced.source_in`).
    English, and a definition no template matches, come back as stored."""
    if current_language() == "en" or not text:
        return text
    translated = _(text)
    if translated != text:  # a fixed definition, a catalogue entry as it stands
        return translated
    sources = sources or {}

    def value(field: str, v: str) -> str:
        if field in _NESTED:
            return _(v) if _(v) != v else (restate(v, _NESTED[field]) or v)
        if field == "source":
            return sources.get(v.strip(), v)
        if field == "level":
            return _(_LEVELS[v]) if v in _LEVELS else v
        if field == "window" and v in PUE_WINDOW_NAMES:
            return _(PUE_WINDOW_NAMES[v])
        if field in ("window", "loss_span", "fast_lookback", "fast_short", "slow_lookback",
                     "slow_short", "baseline"):
            return _span(v)
        return v

    return restate(text, RULE_TEMPLATES, nested=_NESTED, value=value) or text
