"""Namespaces that hold accelerators idle: the allocated half of idle capacity, by tenant.

Rule ``allocated_idle`` (subject type ``namespace``, subject ``<site>/<namespace>``): a
namespace's pods held at least one accelerator whose mean utilization stayed at or below the
policy's busy level in every window of a run of at least the policy's sustained hours (6 h).
Runs of the namespace's cards that overlap make one episode, one finding, which says how
many cards, which pods, for how long, and the card-hours held idle
(`computewatch.utilization.held_idle_windows`). Held-idle windows come from the store
grouped by site, namespace, pod and device, so memory grows with cards x windows.

A card held idle for an hour is job churn; held idle for the sustained hours it is a
reservation nobody uses, capacity the surplus pipeline cannot offer. Severity, for the two
readers: a NOC is never paged for it (nothing is broken and no service is at risk, so never
critical); a regulator reads it as waste the tenant, not the site, causes. WARNING when it
is material: the episode lasts a day or more (`WARNING_HOURS`, an idle reservation past any
scheduler's idle timeout) or the cards held idle are a quarter or more of the site's
accelerators (`WARNING_SHARE`); INFO otherwise.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from computewatch.findings import Finding, Period, Severity
from computewatch.policy import Policy
from computewatch.rule_definitions import HELD_IDLE
from computewatch.store import Store
from computewatch.topology import Topology
from computewatch.utilization import ALLOCATION_DEFINITION, held_idle_windows

__all__ = ["RULE", "WARNING_HOURS", "WARNING_SHARE", "allocated_idle_findings"]

RULE = "allocated_idle"
WARNING_HOURS = 24.0
"""An episode this long or longer is a WARNING: a day's reservation left idle."""
WARNING_SHARE = 0.25
"""Held-idle cards that are this share of the site's accelerators or more: a WARNING."""


def allocated_idle_findings(store: Store, period: Period, policy: Policy, topology: Topology,
                            *, window: timedelta = timedelta(hours=1),
                            sustained_hours: float | None = None,
                            site_accelerators: dict[str, float] | None = None
                            ) -> list[Finding]:
    """One finding per (site, namespace) episode of cards held idle for the sustained hours.

    ``site_accelerators`` (site -> accelerators reporting) sizes the WARNING share; without
    it the share is not judged.
    """
    busy = float(policy.utilization.busy_level.value)
    sustained = float(sustained_hours if sustained_hours is not None
                      else policy.utilization.sustained_hours.value)
    span = max(1, int(np.ceil(timedelta(hours=sustained) / window)))
    held = held_idle_windows(store, period, busy_level=busy, window=window)
    if held.empty:
        return []
    grid = pd.date_range(period.start, period.end, freq=window, inclusive="left")
    runs = _runs(held, period, window, span)
    out = []
    for (site, ns), mine in _by_tenant(runs).items():
        out.extend(_episodes_of(site, ns, mine, grid, window, period, topology, sustained,
                                busy, (site_accelerators or {}).get(site)))
    return out


def _runs(held: pd.DataFrame, period: Period, window: timedelta, span: int) -> list[tuple]:
    """(site, namespace, device, first window, last window, held-idle hours, pods) of every
    run of at least ``span`` consecutive windows in which one namespace held one card idle;
    vectorized over every card, so the cost grows with rows, not with cards x pandas calls."""
    keys = ["site", "namespace", "device"]
    per = held.groupby([*keys, "time"], as_index=False).hours.sum()
    per["k"] = ((per.time - pd.Timestamp(period.start)) / window).astype(int)
    per = per.sort_values([*keys, "k"], kind="stable").reset_index(drop=True)
    same = (per[keys] == per[keys].shift()).all(axis=1) & (per.k == per.k.shift() + 1)
    per["run"] = (~same).cumsum()
    runs = per.groupby("run").agg(site=("site", "first"), namespace=("namespace", "first"),
                                  device=("device", "first"), first=("k", "min"),
                                  last=("k", "max"), hours=("hours", "sum"),
                                  windows=("k", "size"))
    runs = runs[runs.windows >= span]
    if runs.empty:
        return []
    rows = held.merge(per[[*keys, "time", "run"]], on=[*keys, "time"])
    pods = rows[rows.run.isin(runs.index)].groupby("run").pod.agg(lambda p: set(p))
    return [(r.site, r.namespace, r.device, int(r.first), int(r.last), float(r.hours),
             pods[run]) for run, r in runs.iterrows()]


def _by_tenant(runs: list) -> dict[tuple[str, str], list]:
    out: dict[tuple[str, str], list] = {}
    for r in runs:
        out.setdefault((r[0], r[1]), []).append(r)
    return out


def _episodes_of(site: str, ns: str, runs: list, grid: pd.DatetimeIndex, window: timedelta,
                 period: Period, topology: Topology, sustained: float, busy: float,
                 accelerators: float | None) -> list[Finding]:
    """Overlapping device runs of one tenant merged into episodes, one finding each."""
    runs = sorted(runs, key=lambda r: (r[3], r[4], r[2]))
    groups: list[list] = []
    for r in runs:
        if groups and r[3] <= max(x[4] for x in groups[-1]):
            groups[-1].append(r)
        else:
            groups.append([r])
    try:
        place = topology.site(site)
        hub, cluster = place.hub or "", place.cluster or ""
    except KeyError:
        hub = cluster = ""
    out = []
    for g in groups:
        first, last = min(r[3] for r in g), max(r[4] for r in g)
        start = grid[first].to_pydatetime()
        end = (grid[last] + window).to_pydatetime()
        hours = (end - start) / timedelta(hours=1)
        cards = sorted({r[2] for r in g})
        pods = sorted(set().union(*(r[6] for r in g)))
        card_hours = float(sum(r[5] for r in g))
        share = len(cards) / accelerators if accelerators else None
        material = hours >= WARNING_HOURS or (share is not None and share >= WARNING_SHARE)
        out.append(Finding(
            "underuse", RULE, "namespace", f"{site}/{ns}",
            Severity.WARNING if material else Severity.INFO, float(len(cards)), 0.0,
            "accelerators", start, end, completeness=1.0, hub=hub, cluster=cluster,
            site=site,
            definition=HELD_IDLE.format(allocation=ALLOCATION_DEFINITION.format(busy=busy),
                                        hours=sustained),
            message=(f"namespace {ns} at {site} held {len(cards)} idle "
                     f"card{'' if len(cards) == 1 else 's'} for {hours:.1f} h "
                     f"({card_hours:,.1f} card-hours; pods {', '.join(pods[:3])}"
                     f"{', ...' if len(pods) > 3 else ''})"),
            detail={"namespace": ns, "pods": pods, "devices": cards,
                    "held_idle_card_hours": card_hours, "hours": hours,
                    "site_share": share, "chronic": (last - first + 1) * 2 >= len(grid)}))
    return out
