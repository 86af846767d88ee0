"""Surplus: idle accelerators that can serve a demand city within a latency circle.

The national plan asks for compute to reach users within 1 ms (metro), 5 ms (regional) or
20 ms (national). This pipeline answers "which idle NPUs can serve Shanghai within 5 ms?":

- RTT from a city to a site is *observed* where probes exist: the median over the period of
  the window ``rtt_p50_seconds`` of each probed link between a site in the city (same city
  name, or within `METRO_MAX_KM` of the city's coordinates) and the candidate site, either
  direction; the lowest such link median wins (the city's best measured entry point).
  Otherwise it is *estimated*: great-circle km x 10 µs/km x the policy's route-inflation limit,
  the slowest route the MIIT plan allows, so an estimate never flatters a far site.
- Only free capacity is offered: an accelerator a pod holds (its ``namespace`` label is set,
  `computewatch.utilization.ALLOCATION_DEFINITION`) is not surplus, however idle.
- Idle accelerator-hours of a (site, ecosystem, model) group: the core's one definition
  over the free accelerators' samples (`computewatch.utilization.allocation_totals`:
  (samples - utilization sum) x the sampling interval, from one SUM and one COUNT query
  grouped by site, ecosystem, model and namespace).
- Idle cards now: free devices whose mean utilization over the last hour of the period is
  below the policy's busy level (one query grouped by device over that hour only).
- Reclaimable, stated apart: the cards pods hold idle now, and the idle accelerator-hours of
  the windows in which pods held cards idle over the period
  (`computewatch.utilization.held_idle_windows`): what reclaiming them would add.

Memory grows with the devices of the last hour plus sites x groups, never with raw samples.
Findings are INFO: surplus is an opportunity, not a violation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

import numpy as np
import pandas as pd

from computewatch.findings import Finding, Period, Severity
from computewatch.policy import Policy
from computewatch.rule_definitions import SURPLUS
from computewatch.store import Aggregate, Query, Store
from computewatch.topology import (
    METRO_MAX_KM,
    DemandCity,
    Tier,
    Topology,
    fiber_min_rtt_s,
    great_circle_km,
)
from computewatch.utilization import (
    FREE,
    allocation_totals,
    held_idle_windows,
    sampling_interval,
)

__all__ = ["SURPLUS_COLUMNS", "run", "surplus"]

PIPELINE = "surplus"
RULE = "idle_capacity_within_circle"
ECOSYSTEMS = ("cuda", "cann")
DEFAULT_CIRCLES = (0.001, 0.005, 0.020)
BEYOND = "beyond"
"""tier_circle of a site outside the national budget (only with a within_s above it)."""

SURPLUS_COLUMNS = ["site", "hub", "cluster", "city_rtt_s", "rtt_source", "tier_circle",
                   "ecosystem", "model", "accelerators", "idle_cards",
                   "idle_accelerator_hours", "mean_utilization", "reclaimable_cards",
                   "reclaimable_accelerator_hours"]

DEFINITION = SURPLUS
"""The method in words (``{metro_km}``, ``{inflation}``, ``{busy}``: the values applied)."""

_GROUP = ("site", "ecosystem", "model")
_UTIL = "utilization_ratio"
_RTT = "rtt_p50_seconds"


def surplus(store: Store, period: Period, policy: Policy, topology: Topology, *, near: str,
            within_s: float, ecosystem: str | None = None,
            model: str | None = None) -> pd.DataFrame:
    """Idle capacity per site, ecosystem and model within ``within_s`` RTT of city ``near``.

    Sorted by RTT, then most idle cards first; see the module docstring for the method.
    """
    if not within_s > 0:
        raise ValueError(f"within_s must be a positive RTT in seconds, got {within_s!r}")
    city = _resolve_city(topology, near)
    eco = _resolve_ecosystem(ecosystem)
    rtt = _city_rtt(_pair_medians(store, period), policy, topology, city)
    rtt = rtt[rtt.city_rtt_s <= within_s]
    if rtt.empty:
        return pd.DataFrame(columns=SURPLUS_COLUMNS)
    cap = _idle_capacity(store, period, policy, sites=rtt.site.tolist(), ecosystem=eco,
                        model=model)
    return _join(rtt, cap, topology)[SURPLUS_COLUMNS]


def run(store: Store, period: Period, policy: Policy, topology: Topology, *,
        cities: Iterable[str] | None = None,
        circles: Sequence[float] = DEFAULT_CIRCLES) -> list[Finding]:
    """One INFO finding per demand city and circle: idle cards and hours by ecosystem.

    Capacity is read once for every site and the RTTs once per city, so the cost is a few
    queries per city, not per circle.
    """
    if not circles or any(not c > 0 for c in circles):
        raise ValueError(f"circles must be positive RTTs in seconds, got {tuple(circles)!r}")
    chosen = (list(topology.demand_cities) if cities is None
              else [_resolve_city(topology, c) for c in cities])
    if not chosen:
        return []
    cap = _idle_capacity(store, period, policy, sites=[s.id for s in topology.sites])
    definition = DEFINITION.format(metro_km=METRO_MAX_KM,
                                   inflation=policy.latency.route_inflation_limit.value,
                                   busy=policy.utilization.busy_level.value)
    findings = []
    medians = _pair_medians(store, period)  # every city's observed RTTs from one query
    for city in chosen:
        rtt = _city_rtt(medians, policy, topology, city)
        joined = _join(rtt, cap, topology)
        for circle in sorted(circles):
            inside = joined[joined.city_rtt_s <= circle]
            findings.append(_finding(city, circle, inside, period, policy, definition))
    return findings


# --- RTT -------------------------------------------------------------------------------------


def _city_sites(topology: Topology, city: DemandCity) -> list[str]:
    """Sites that stand for the city: same city name, or within the metro radius of it."""
    names = {city.name.casefold(), city.name_zh.casefold(), city.id.casefold()}
    return [s.id for s in topology.sites
            if s.city.strip().casefold() in names
            or great_circle_km(s.lat, s.lon, city.lat, city.lon) <= METRO_MAX_KM]


def _city_rtt(medians: pd.DataFrame, policy: Policy, topology: Topology,
             city: DemandCity) -> pd.DataFrame:
    """Per topology site: ``site``, ``city_rtt_s``, ``rtt_source`` (observed | estimated),
    ``tier_circle``; observed where a city site probes the site (``medians``:
    `_pair_medians`), else the inflated fiber floor.
    """
    inflation = policy.latency.route_inflation_limit.value
    sites = [s.id for s in topology.sites]
    estimated = np.array([fiber_min_rtt_s(topology.distance_km_to_point(s, city.lat, city.lon))
                          * inflation for s in sites])
    observed = _observed_rtt(medians, _city_sites(topology, city))
    obs = np.array([observed.get(s, np.nan) for s in sites], dtype=float)
    has = ~np.isnan(obs)
    out = pd.DataFrame({
        "site": sites,
        "city_rtt_s": np.where(has, obs, estimated),
        "rtt_source": np.where(has, "observed", "estimated"),
    })
    out["tier_circle"] = [_tier_circle(policy, r) for r in out.city_rtt_s]
    return out


def _pair_medians(store: Store, period: Period) -> pd.DataFrame:
    """The period's median p50 RTT per (src_site, dst_site) link direction, probed ones only.
    One query for every city: a city's links are whole groups of it, so their medians are
    those its own filtered query would give."""
    df = store.query(Query("link_latency", (_RTT,), period.start, period.end,
                           group_by=("src_site", "dst_site"), agg=Aggregate.QUANTILE,
                           quantile=0.5))
    df = df.dropna(subset=[_RTT])
    return df[df.src_site != df.dst_site]


def _observed_rtt(medians: pd.DataFrame, anchors: list[str]) -> dict[str, float]:
    """Lowest per-link median p50 (``medians``: `_pair_medians`) from any anchor (city)
    site to each other site."""
    if not anchors:
        return {}
    best: dict[str, float] = {}
    for anchor_tag, other_tag in (("src_site", "dst_site"), ("dst_site", "src_site")):
        df = medians[medians[anchor_tag].isin(anchors)]
        for other, value in zip(df[other_tag], df[_RTT], strict=True):
            if other and (other not in best or value < best[other]):
                best[other] = float(value)
    return best


def _tier_circle(policy: Policy, rtt_s: float) -> str:
    """The smallest latency circle whose RTT budget holds ``rtt_s``."""
    for tier in Tier:
        if rtt_s <= policy.budget_rtt_s(tier):
            return tier.value
    return BEYOND


# --- capacity --------------------------------------------------------------------------------


def _idle_capacity(store: Store, period: Period, policy: Policy, *,
                  sites: Sequence[str] | None = None, ecosystem: str | None = None,
                  model: str | None = None) -> pd.DataFrame:
    """Per (site, ecosystem, model) with samples in the period: ``accelerators``,
    ``idle_cards`` and ``idle_accelerator_hours`` (free accelerators only),
    ``mean_utilization`` (all), ``samples`` (all), ``step_h``, ``reclaimable_cards`` and
    ``reclaimable_accelerator_hours`` (cards pods hold idle).
    """
    cols = [*_GROUP, "accelerators", "idle_cards", "idle_accelerator_hours",
            "mean_utilization", "samples", "step_h", "reclaimable_cards",
            "reclaimable_accelerator_hours"]
    where: dict[str, str | list[str]] = {}
    if sites is not None:
        if not sites:
            return pd.DataFrame(columns=cols)
        where["site"] = list(sites)
    if ecosystem is not None:
        where["ecosystem"] = _resolve_ecosystem(ecosystem)
    series = store.series("accelerator", where)
    if model is not None:
        resolved = _resolve_model(store, series, model)
        if resolved is None:
            return pd.DataFrame(columns=cols)
        where["model"] = resolved
        series = series[series.model == resolved]
    if series.empty:
        return pd.DataFrame(columns=cols)
    step = sampling_interval(store, period.start, period.end, where=where)
    per = allocation_totals(store, period.start, period.end, by=_GROUP, where=where,
                            interval=step)
    if per.empty:
        return pd.DataFrame(columns=cols)
    free = per.namespace == FREE
    g = per.assign(free_idle=per.idle_accelerator_hours.where(free, 0.0)) \
        .groupby(list(_GROUP), as_index=False)[["samples", "utilization_sum", "free_idle"]].sum()
    out = pd.DataFrame({**{k: g[k] for k in _GROUP}, "samples": g.samples,
                        "mean_utilization": g.utilization_sum / g.samples,
                        "idle_accelerator_hours": g.free_idle})

    busy = policy.utilization.busy_level.value
    last_start = max(period.start, period.end - timedelta(hours=1))
    dev_mean = store.query(Query("accelerator", (_UTIL,), last_start, period.end, where=where,
                                 group_by=(*_GROUP, "namespace", "device"))).drop(columns="time")
    idle = dev_mean[dev_mean[_UTIL] < busy]
    held_now = idle[idle.namespace != FREE]
    free_now = idle[(idle.namespace == FREE) & ~idle.device.isin(held_now.device)]
    idle_now = free_now.groupby(list(_GROUP)).device.nunique().rename("idle_cards")
    reclaim_now = held_now.groupby(list(_GROUP)).device.nunique().rename("reclaimable_cards")

    held = held_idle_windows(store, period, busy_level=busy, where=where, interval=step)
    kinds = series.drop_duplicates("device").set_index("device")[["ecosystem", "model"]]
    held = held.join(kinds, on="device")
    reclaim_h = (held.hours * (1.0 - held.utilization)).groupby(
        [held.site, held.ecosystem, held.model]).sum().rename("reclaimable_accelerator_hours")
    reclaim_h.index.names = list(_GROUP)

    devices = series.groupby(list(_GROUP)).device.nunique().rename("accelerators")
    for extra in (devices, idle_now, reclaim_now, reclaim_h):
        out = out.merge(extra.reset_index(), on=list(_GROUP), how="left")
    for name in ("accelerators", "idle_cards", "reclaimable_cards"):
        out[name] = out[name].fillna(0).astype(int)
    out["reclaimable_accelerator_hours"] = out.reclaimable_accelerator_hours.fillna(0.0)
    out["step_h"] = step / timedelta(hours=1)
    return out[cols].reset_index(drop=True)


# --- helpers ---------------------------------------------------------------------------------


def _join(rtt: pd.DataFrame, cap: pd.DataFrame, topology: Topology) -> pd.DataFrame:
    """Capacity rows with their site's RTT, hub and cluster; sorted by RTT, idle cards."""
    df = cap.merge(rtt, on="site", how="inner")
    df["hub"] = [topology.site(s).hub or "" for s in df.site]
    df["cluster"] = [topology.site(s).cluster or "" for s in df.site]
    df = df.sort_values(["city_rtt_s", "idle_cards", "site", "ecosystem", "model"],
                        ascending=[True, False, True, True, True], kind="stable")
    return df.reset_index(drop=True)


def _resolve_city(topology: Topology, near: str) -> DemandCity:
    try:
        return topology.city(near)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def _resolve_ecosystem(ecosystem: str | None) -> str | None:
    if ecosystem is None:
        return None
    eco = ecosystem.strip().casefold()
    if eco not in ECOSYSTEMS:
        raise ValueError(f"unknown ecosystem {ecosystem!r} (known: {', '.join(ECOSYSTEMS)})")
    return eco


def _resolve_model(store: Store, series: pd.DataFrame, model: str) -> str | None:
    """The stored spelling of ``model`` (case-insensitive); None when only other sites or
    ecosystems hold it; a model the store never saw is a ValueError naming the known ones."""
    wanted = model.strip().casefold()
    for name in series.model.unique():
        if str(name).casefold() == wanted:
            return str(name)
    known = sorted({str(m) for m in store.series("accelerator").model.unique() if m})
    if any(m.casefold() == wanted for m in known) or not known:
        return None
    raise ValueError(f"unknown accelerator model {model!r} (known: {', '.join(known)})")


def _finding(city: DemandCity, circle: float, inside: pd.DataFrame, period: Period,
             policy: Policy, definition: str) -> Finding:
    """Summarize the capacity within one circle of one city, by ecosystem."""
    by_eco: dict[str, dict] = {}
    for eco, g in inside.groupby("ecosystem", sort=True):
        idle_models = g[g.idle_cards > 0].groupby("model").idle_cards.sum()
        by_eco[str(eco)] = {
            "accelerators": int(g.accelerators.sum()),
            "idle_cards": int(g.idle_cards.sum()),
            "idle_accelerator_hours": float(g.idle_accelerator_hours.sum()),
            "models": sorted(idle_models.index.astype(str),
                             key=lambda m: (-int(idle_models[m]), m)),
            "sites": sorted(g[g.idle_cards > 0].site.unique().tolist()),
            "reclaimable_cards": int(g.reclaimable_cards.sum()),
            "reclaimable_accelerator_hours": float(g.reclaimable_accelerator_hours.sum()),
        }
    idle = sum(e["idle_cards"] for e in by_eco.values())
    hours = sum(e["idle_accelerator_hours"] for e in by_eco.values())
    expected = float((inside.accelerators * period.hours
                      / inside.step_h.where(inside.step_h > 0)).sum()) if len(inside) else 0.0
    completeness = min(float(inside.samples.sum()) / expected, 1.0) if expected > 0 else 0.0
    ms = f"{circle * 1000:g} ms"
    order = sorted(by_eco, key=lambda e: (-by_eco[e]["idle_cards"], e))
    parts = [_cards(by_eco[e]["idle_cards"], e)
             + (f" ({', '.join(by_eco[e]['models'])})" if by_eco[e]["models"] else "")
             for e in order if by_eco[e]["idle_cards"]]
    if parts:
        head = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
    else:
        head = "No idle cards"
    message = f"{head} within {ms} of {city.name}"
    if hours:
        split = ", ".join(f"{e.upper()} {_hours(by_eco[e]['idle_accelerator_hours'])}"
                          for e in order if by_eco[e]["idle_accelerator_hours"])
        message += (f"; {_hours(hours)} free idle accelerator-hours over {period.hours:g} h "
                    f"({split})")
    reclaim_cards = sum(e["reclaimable_cards"] for e in by_eco.values())
    reclaim_hours = sum(e["reclaimable_accelerator_hours"] for e in by_eco.values())
    if reclaim_cards or reclaim_hours:
        message += (f"; reclaiming cards that pods hold idle would add {reclaim_cards:,} "
                    f"now and {_hours(reclaim_hours)} accelerator-hours over the period")
    return Finding(
        pipeline=PIPELINE, rule=RULE, subject_type="city", subject=city.id,
        severity=Severity.INFO, observed=float(idle), threshold=0.0, unit="accelerators",
        start=period.start, end=period.end, completeness=completeness, hub=city.hub,
        definition=definition, message=message,
        detail={"circle_s": circle, "tier": _circle_name(policy, circle),
                "variant": f"{circle * 1000:g}ms", "idle_cards": idle,
                "idle_accelerator_hours": hours, "sites": int(inside.site.nunique()),
                "reclaimable_cards": reclaim_cards,
                "reclaimable_accelerator_hours": reclaim_hours,
                "observed_rtt_sites": int(inside[inside.rtt_source == "observed"]
                                          .site.nunique()),
                "by_ecosystem": by_eco})


def _cards(n: int, ecosystem: str) -> str:
    return f"{n:,} idle {ecosystem.upper()} card{'' if n == 1 else 's'}"


def _hours(h: float) -> str:
    """Whole hours once they are many; one decimal while small enough to matter."""
    return f"{h:,.0f}" if h >= 100 else f"{h:,.1f}"


def _circle_name(policy: Policy, circle: float) -> str:
    """The tier whose budget the circle is (metro 1 ms, ...), else the circle in ms."""
    for tier in Tier:
        if abs(circle - policy.budget_rtt_s(tier)) < 1e-9:
            return tier.value
    return f"{circle * 1000:g} ms"
