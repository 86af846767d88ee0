"""Utilization and idle accelerator-hours: each defined once, here, with the text that states it.

The summary, the underuse and surplus pipelines and the report all compute these numbers with
the functions below, and the dashboards' recording rule records the same idle capacity, so a
site's utilization and idle accelerator-hours for a period are one number wherever they show.

- **Time-weighted mean utilization** (``time_weighted``): the mean of the utilization samples,
  each weighted by the interval it stands for; with one sampling interval (as the agents
  sample) that is the plain mean of the samples. Over several windows it is the
  sample-weighted mean of the window means, so a partly covered span is not diluted by the
  time it lacks.
- **Busy fraction** (``busy_fraction``): the share of accelerator-windows whose mean
  utilization exceeds the policy's busy level.
- **Idle accelerator-hours**: the capacity the period left unused, the sum over utilization
  samples of (1 - utilization) x the sampling interval. An accelerator counts only for the
  time it reported: a window it reported in for half its length counts half an hour per
  hour, never a whole one. The interval is read from the data (`sampling_interval`).

Allocation (Kubernetes: an accelerator is *allocated* while a pod holds it, and its
``namespace`` label names the tenant; it is *free* otherwise) splits the idle capacity:

- **Allocated and free idle accelerator-hours** (`allocation_totals`, `idle_split`,
  `idle_split_windows`): the one
  definition above over the samples of allocated accelerators, and over the rest. The two add
  up to the idle accelerator-hours exactly. The free part is what others could use; the
  allocated part is capacity tenants hold and leave unused.
- **Held-idle card-hours** (`held_idle_windows`): per namespace, the hours its pods held
  accelerators whose window mean utilization is at most the busy level: who holds idle cards,
  and for how long (a held card that runs nothing counts whole, not by its unused share).

Aggregation is pushed into the store (SUM, MEAN and COUNT queries by group and window), so
memory grows with groups x windows, never with samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from computewatch.findings import Period
from computewatch.i18n import N_
from computewatch.policy import UtilizationDefinition
from computewatch.store import (
    Aggregate,
    Query,
    Store,
    most,
    prefetch,
    query_many,
    resolution,
    side_by_side,
)
from computewatch.topology import Topology

__all__ = ["ALLOCATION_DEFINITION", "COMPLETENESS_DEFINITION", "DEFINITIONS", "FREE",
           "HELD_IDLE_COLUMNS", "IDLE_DEFINITION", "LEVELS", "SPLIT_COLUMNS", "WINDOW_COLUMNS",
           "Definition", "allocation_totals", "held_idle_windows", "idle_hours", "idle_split",
           "idle_split_windows", "read_ahead",
           "sampling_interval", "utilization_totals", "utilization_windows",
           "utilization_windows_by_definition", "window_totals"]

Definition = UtilizationDefinition
"""The two definitions a utilization minimum can apply to (the policy chooses per level)."""
DEFINITIONS: dict[str, str] = {
    "time_weighted": N_("time-weighted mean utilization (mean of all utilization samples in "
                        "each window)"),
    "busy_fraction": N_("busy fraction (share of accelerator-windows whose mean utilization "
                        "exceeds the busy level)"),
}
"""Each utilization definition in words, as findings, the report and the summary state it."""

IDLE_DEFINITION = N_("idle accelerator-hours = sum over utilization samples of "
                   "(1 - utilization) x the sampling interval, i.e. the capacity left unused; "
                   "time without samples counts for nothing, so a window an accelerator "
                   "reported in for part of its length counts only that part, however the "
                   "windows line up with the data; the interval is read from the data (one "
                   "hour over the most samples an accelerator sent in one whole hour of the "
                   "last three hours of data in the period)")

ALLOCATION_DEFINITION = N_(
    "an accelerator is allocated while a pod holds it (its namespace label, from the "
    "kubelet's PodResources API, is set) and free otherwise; idle accelerator-hours split "
    "exactly into allocated (the samples of allocated accelerators) and free (the rest); "
    "held-idle card-hours of a namespace = the hours its pods held accelerators whose mean "
    "utilization over the window was at most the busy level {busy:g}")
"""The allocation split in words (``{busy}``: the policy's busy level)."""

FREE = ""
"""The ``namespace`` of a free accelerator (no pod holds it)."""

SPLIT_COLUMNS = ["idle_accelerator_hours", "allocated_idle_hours", "free_idle_hours"]
"""`idle_split` columns after the group's: idle accelerator-hours, their allocated part and
their free part (allocated + free = idle)."""

HELD_IDLE_COLUMNS = ["time", "site", "namespace", "pod", "device", "samples", "utilization",
                     "hours"]
"""`held_idle_windows` frames: window start, where, who, which card, its samples in the
window, their mean and the hours they stand for."""

LEVELS = ("site", "cluster", "hub", "province")
"""The levels `utilization_windows` rolls sites up to (from the topology)."""

WINDOW_COLUMNS = ["time", "subject", "value", "weight", "accelerators", "idle_hours",
                  "completeness"]
"""`utilization_windows` frames: window start, subject, the definition's value, its weight
(samples for time_weighted, accelerators for busy_fraction), accelerators with data, the
window's idle accelerator-hours, and its completeness (`COMPLETENESS_DEFINITION`)."""

COMPLETENESS_DEFINITION = N_(
    "completeness of a site's window = utilization samples received / (the site's "
    "accelerators x the samples one accelerator sends in a window), where the site's "
    "accelerators are the most that reported in any window of the period; a cluster's, hub's "
    "or province's = the mean over its member sites in the topology, a silent site counting 0")
"""How complete a window's data is, in words (findings and the report quote it)."""

_FIELD = "utilization_ratio"
_HOUR = timedelta(hours=1)
_PROBE = timedelta(hours=3)


def _whole_hours(store: Store, lo: datetime, end: datetime,
                 where: Mapping[str, str | Sequence[str]] | None,
                 unit: timedelta = _HOUR) -> timedelta:
    """One hour (``unit``: a day where the store keeps daily rollups only) over the most
    samples any device sent in a whole clock hour from ``lo``'s hour to ``end``; zero when
    no such hour lies whole inside."""
    lo = pd.Timestamp(lo).floor(unit).to_pydatetime()  # hours on the clock, as data has
    if end - lo < unit:
        return timedelta(0)
    whole = lo + (end - lo) // unit * unit  # the end of the last whole hour
    top = most(store, Query("accelerator", (_FIELD,), lo, whole, where=dict(where or {}),
                            group_by=("device",), window=unit, agg=Aggregate.COUNT))
    return unit / top if top > 0 else timedelta(0)


def _spacing(store: Store, lo: datetime, end: datetime, last: datetime,
             where: Mapping[str, str | Sequence[str]] | None) -> timedelta:
    """The fullest device's sample spacing over [lo, end) (data shorter than an hour)."""
    counts = store.query(Query("accelerator", (_FIELD,), lo, end, where=dict(where or {}),
                               group_by=("device",), agg=Aggregate.COUNT))
    most = float(counts[_FIELD].max()) if len(counts) else 0.0
    # Samples stand for [t, t + interval): where the data runs past ``end`` the span holds
    # ``most`` intervals; where it stops inside, the span up to the last sample ``most - 1``.
    span, n = (end - lo, most) if last >= end else (last - lo, most - 1)
    return span / n if n > 0 and span > timedelta(0) else timedelta(0)


def sampling_interval(store: Store, start: datetime, end: datetime, *,
                      where: Mapping[str, str | Sequence[str]] | None = None) -> timedelta:
    """How long one utilization sample stands for, read from the data of [start, end).

    One hour over the most samples any accelerator sent in one whole clock hour of the last
    three hours of data in the period (one COUNT query by device and hour): a gap, a card
    that fell off the bus or a period that ends between samples cannot stretch it, since some
    card reported through some whole hour. Shorter data falls back to the fullest card's spacing
    over what there is. Zero when the store holds no accelerator data in the period.
    """
    bounds = store.time_bounds("accelerator")
    if bounds is None:
        return timedelta(0)
    first, last = bounds
    lo = max(start, first)
    if last < lo or lo >= end:
        return timedelta(0)
    # Beyond the raw data the store answers whole rollup buckets (hours, or days) only.
    unit = max(_HOUR, resolution(store, "accelerator", max(lo, min(end, last) - _PROBE)))
    top = min(end, pd.Timestamp(last + unit).floor(unit).to_pydatetime()
              if unit > _HOUR else last + _HOUR)
    got = _whole_hours(store, max(lo, top - max(_PROBE, unit)), top, where, unit)
    if got == timedelta(0):
        got = _spacing(store, lo, end, last, where)
    return got


def idle_hours(samples, utilization_sum, interval: timedelta):
    """Idle accelerator-hours of ``samples`` utilization samples summing to
    ``utilization_sum``: (samples - sum) x the interval in hours (numbers or Series)."""
    return (samples - utilization_sum) * (interval / timedelta(hours=1))


def _totals_queries(start: datetime, end: datetime, by: Sequence[str],
                    where: Mapping[str, str | Sequence[str]] | None) -> list[Query]:
    """`utilization_totals`' SUM and COUNT by ``by`` over [start, end)."""
    q = dict(start=start, end=end, where=dict(where or {}), group_by=tuple(by))
    return [Query("accelerator", (_FIELD,), agg=Aggregate.SUM, **q),
            Query("accelerator", (_FIELD,), agg=Aggregate.COUNT, **q)]


def _allocation_by(by: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*by, "namespace")))


def utilization_totals(store: Store, start: datetime, end: datetime, *,
                       by: Sequence[str], where: Mapping[str, str | Sequence[str]] | None = None,
                       interval: timedelta | None = None) -> pd.DataFrame:
    """Per ``by`` group with samples in [start, end): ``samples``, ``utilization_sum``,
    ``utilization`` (time-weighted mean) and ``idle_accelerator_hours``.

    Two queries (SUM and COUNT by group). ``interval`` defaults to `sampling_interval` over
    the same range and filter.
    """
    cols = [*by, "samples", "utilization_sum", "utilization", "idle_accelerator_hours"]
    total, count = query_many(store, _totals_queries(start, end, by, where))
    if total.empty or count.empty:
        return pd.DataFrame(columns=cols)
    out = side_by_side(total.drop(columns="time").rename(columns={_FIELD: "utilization_sum"}),
                       count.drop(columns="time").rename(columns={_FIELD: "samples"}), by)
    out = out[out.samples > 0].reset_index(drop=True)
    out["samples"] = out.samples.astype(float)
    out["utilization_sum"] = out.utilization_sum.astype(float)
    out["utilization"] = out.utilization_sum / out.samples
    step = interval if interval is not None else sampling_interval(store, start, end,
                                                                    where=where)
    out["idle_accelerator_hours"] = idle_hours(out.samples, out.utilization_sum, step)
    return out[cols]


def allocation_totals(store: Store, start: datetime, end: datetime, *,
                      by: Sequence[str] = ("site",),
                      where: Mapping[str, str | Sequence[str]] | None = None,
                      interval: timedelta | None = None) -> pd.DataFrame:
    """`utilization_totals` per ``by`` group and ``namespace`` (`FREE` for free accelerators):
    the allocated and free samples of each group, each with its idle accelerator-hours."""
    return utilization_totals(store, start, end, by=_allocation_by(by), where=where,
                              interval=interval)


def idle_split(store: Store, start: datetime, end: datetime, *, by: Sequence[str],
               where: Mapping[str, str | Sequence[str]] | None = None,
               interval: timedelta | None = None,
               totals: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per ``by`` group with samples: `SPLIT_COLUMNS` (idle accelerator-hours, the part of
    allocated accelerators, the part of free ones); the same two store queries as
    `utilization_totals`, grouped by namespace too, unless the caller has their answer
    (``totals``: `allocation_totals` of the same period and ``by``)."""
    cols = [*by, *SPLIT_COLUMNS]
    per = totals if totals is not None else allocation_totals(
        store, start, end, by=by, where=where, interval=interval)
    if per.empty:
        return pd.DataFrame(columns=cols)
    free = per.namespace == FREE
    per = per.assign(allocated_idle_hours=per.idle_accelerator_hours.where(~free, 0.0),
                     free_idle_hours=per.idle_accelerator_hours.where(free, 0.0))
    out = per.groupby(list(by), as_index=False)[SPLIT_COLUMNS].sum()
    return out[cols].reset_index(drop=True)


def idle_split_windows(store: Store, period: Period, *, window: timedelta = _HOUR,
                       interval: timedelta | None = None) -> pd.DataFrame:
    """Per site and window (from the period's start) with samples: ``time``, ``site`` and
    `SPLIT_COLUMNS`; two store queries (SUM and COUNT by site, namespace and window), so the
    split of any run of windows is a sum over its rows."""
    cols = ["time", "site", *SPLIT_COLUMNS]
    q = dict(start=period.start, end=period.end, window=window, group_by=("site", "namespace"))
    total, count = query_many(store, [Query("accelerator", (_FIELD,), agg=Aggregate.SUM, **q),
                                      Query("accelerator", (_FIELD,), agg=Aggregate.COUNT, **q)])
    if total.empty or count.empty:
        return pd.DataFrame(columns=cols)
    per = side_by_side(total.rename(columns={_FIELD: "usum"}),
                       count.rename(columns={_FIELD: "samples"}), ["time", "site", "namespace"])
    per = per[per.samples > 0].astype({"samples": float, "usum": float})
    step = interval if interval is not None else sampling_interval(store, period.start,
                                                                    period.end)
    idle = idle_hours(per.samples, per.usum, step)
    free = per.namespace == FREE
    per = per.assign(idle_accelerator_hours=idle, allocated_idle_hours=idle.where(~free, 0.0),
                     free_idle_hours=idle.where(free, 0.0))
    out = per.groupby(["time", "site"], as_index=False)[SPLIT_COLUMNS].sum()
    return out[cols].reset_index(drop=True)


def _held_idle_queries(period: Period, window: timedelta,
                       where: Mapping[str, str | Sequence[str]] | None) -> list[Query]:
    """`held_idle_windows`' MEAN and COUNT by site, namespace, pod, device and window."""
    q = dict(start=period.start, end=period.end, where=dict(where or {}), window=window,
             group_by=("site", "namespace", "pod", "device"))
    return [Query("accelerator", (_FIELD,), agg=Aggregate.MEAN, **q),
            Query("accelerator", (_FIELD,), agg=Aggregate.COUNT, **q)]


def held_idle_windows(store: Store, period: Period, *, busy_level: float,
                      window: timedelta = timedelta(hours=1),
                      where: Mapping[str, str | Sequence[str]] | None = None,
                      interval: timedelta | None = None) -> pd.DataFrame:
    """`HELD_IDLE_COLUMNS` rows: every window (from the period's start) in which a pod held
    an accelerator whose mean utilization was at most ``busy_level``. One MEAN and one COUNT
    query by site, namespace, pod and device per window; memory grows with devices x
    windows. ``hours`` = samples x ``interval`` (default: `sampling_interval` of the period).
    """
    mean, count = query_many(store, _held_idle_queries(period, window, where))
    if mean.empty:
        return pd.DataFrame(columns=HELD_IDLE_COLUMNS)
    keys = ["time", "site", "namespace", "pod", "device"]
    both = side_by_side(mean.rename(columns={_FIELD: "utilization"}),
                        count.rename(columns={_FIELD: "samples"}), keys)
    out = both[(both.namespace != FREE) & (both.utilization <= busy_level)]
    if out.empty:
        return pd.DataFrame(columns=HELD_IDLE_COLUMNS)
    out = out.copy()
    step = interval if interval is not None else sampling_interval(
        store, period.start, period.end, where=where)
    out["samples"] = out.samples.astype(float)
    out["hours"] = out.samples * (step / _HOUR)
    return out.sort_values(keys)[HELD_IDLE_COLUMNS].reset_index(drop=True)


def _site_queries(period: Period, window: timedelta) -> list[Query]:
    """`_site_aggregates`' SUM and COUNT by site and MEAN by site and device, per window."""
    q = dict(start=period.start, end=period.end, window=window)
    return [Query("accelerator", (_FIELD,), group_by=("site",), agg=Aggregate.SUM, **q),
            Query("accelerator", (_FIELD,), group_by=("site",), agg=Aggregate.COUNT, **q),
            Query("accelerator", (_FIELD,), group_by=("site", "device"), agg=Aggregate.MEAN,
                  **q)]


def read_ahead(store: Store, period: Period, *, window: timedelta,
               by: Sequence[str] = ("site",)) -> None:
    """Let ``store`` answer together the queries that `utilization_windows_by_definition`
    (at ``window``), `allocation_totals` (by ``by``) and `held_idle_windows` (at ``window``)
    will ask over ``period``, for a caller that runs all three (the report): over one window
    of rollups DuckDB groups the period's rows once for all their label sets
    (`computewatch.store.prefetch`), not once per function."""
    prefetch(store, [*_site_queries(period, window),
                     *_totals_queries(period.start, period.end, _allocation_by(by), None),
                     *_held_idle_queries(period, window, None)])


def _site_aggregates(store: Store, period: Period, window: timedelta, busy_level: float,
                     step: timedelta) -> pd.DataFrame:
    """Per site and window, for either definition: utilization samples and their sum, the
    share of accelerators busy, accelerators with data and idle accelerator-hours (SUM and
    COUNT by site and window; MEAN by site, device and window for the busy share)."""
    total, count, per_dev = query_many(store, _site_queries(period, window))
    out = side_by_side(total.rename(columns={_FIELD: "usum"}),
                       count.rename(columns={_FIELD: "samples"}), ["time", "site"])
    out = out[out.samples > 0].astype({"samples": float, "usum": float})
    per_dev = per_dev.dropna(subset=[_FIELD])
    g = (per_dev[_FIELD] > busy_level).groupby([per_dev.time, per_dev.site])
    cards = pd.DataFrame({"busy": g.mean(), "accelerators": g.size()}).reset_index()
    out = out.merge(cards, on=["time", "site"], how="left")
    out["idle_hours"] = idle_hours(out.samples, out.usum, step)
    return out.reset_index(drop=True)


def _site_completeness(sites: pd.DataFrame, window: timedelta, step: timedelta) -> pd.Series:
    """Samples received / samples the site's accelerators send in a window (at most 1)."""
    if step <= timedelta(0) or sites.empty:
        return pd.Series(1.0, index=sites.index)
    fleet = sites.groupby("site").accelerators.transform("max").astype(float)
    return (sites.samples / (fleet * (window / step))).clip(upper=1.0)


def _levels(sites: pd.DataFrame, definition: Definition,
            place: dict[str, tuple[str, str, str]]) -> dict[str, pd.DataFrame]:
    """The site aggregates as `WINDOW_COLUMNS` frames of every level under ``definition``."""
    if definition == "time_weighted":
        sites = sites.assign(value=sites.usum / sites.samples, weight=sites.samples)
    else:
        sites = sites.assign(value=sites.busy, weight=sites.accelerators.astype(float))
    out = {"site": sites.rename(columns={"site": "subject"})[WINDOW_COLUMNS]}
    for k, level in enumerate(LEVELS[1:]):
        members = pd.Series([p[k] for p in place.values()]).value_counts()
        d = sites[sites[level] != ""].assign(vw=lambda x: x.value * x.weight)
        agg = d.groupby(["time", level])[  # one grouping for the five sums
            ["vw", "weight", "accelerators", "idle_hours", "completeness"]].sum().reset_index()
        agg["value"] = agg.vw / agg.weight
        agg["completeness"] = agg.completeness / agg[level].map(members).astype(float)
        out[level] = agg.rename(columns={level: "subject"})[WINDOW_COLUMNS]
    return out


def utilization_windows_by_definition(
        store: Store, period: Period, topology: Topology, *,
        definitions: Sequence[Definition] = tuple(DEFINITIONS),
        window: timedelta = timedelta(hours=1), busy_level: float = 0.10,
        interval: timedelta | None = None) -> dict[str, dict[str, pd.DataFrame]]:
    """`utilization_windows` for several definitions at the cost of one: definition -> level
    -> frame, from the same two store queries."""
    for d in definitions:
        if d not in DEFINITIONS:
            raise ValueError(f"unknown definition {d!r} (use {', '.join(DEFINITIONS)})")
    step = interval if interval is not None else sampling_interval(store, period.start,
                                                                    period.end)
    sites = _site_aggregates(store, period, window, busy_level, step)
    place = {s.id: (s.cluster or "", s.hub or "", s.province) for s in topology.sites}
    sites = sites[sites.site.isin(place)]
    sites = sites.assign(cluster=[place[s][0] for s in sites.site],
                         hub=[place[s][1] for s in sites.site],
                         province=[place[s][2] for s in sites.site],
                         completeness=_site_completeness(sites, window, step))
    return {d: _levels(sites, d, place) for d in dict.fromkeys(definitions)}


def utilization_windows(store: Store, period: Period, topology: Topology, *,
                        window: timedelta = timedelta(hours=1),
                        definition: Definition = "time_weighted", busy_level: float = 0.10,
                        interval: timedelta | None = None) -> dict[str, pd.DataFrame]:
    """Per level of `LEVELS`: a frame of `WINDOW_COLUMNS`, one row per subject and window
    with data. Windows start at the period's start; sites outside the topology are left
    out. ``interval`` defaults to `sampling_interval` over the period.

    A level's value is the weight-weighted mean of its sites' values; its completeness the
    mean of its member sites' (all of them in the topology, silent ones at 0), so a hub
    whose other sites are silent is not complete because one site reports fully.
    """
    return utilization_windows_by_definition(
        store, period, topology, definitions=(definition,), window=window,
        busy_level=busy_level, interval=interval)[definition]


def window_totals(windows: pd.DataFrame | Windows) -> tuple[float, float]:
    """(value, idle accelerator-hours) of some `utilization_windows` rows of one subject.

    The value is the weight-weighted mean of the windows' values; windows without data (NaN)
    count for neither, so a partly covered span is not diluted by the time it lacks. Shared
    by the underuse episodes and the report's period totals, so both state one number.
    (Completeness depends on the span's length, windows without rows included: see
    `utilization_windows`' ``completeness`` and its callers.)

    ``windows`` is a frame or its columns as arrays (`Windows`: the report's per-subject
    rows, picked without a frame each); NaN is skipped as pandas' ``sum`` skips it, and the
    sums are numpy's over the same values in the same order, so either gives the same bits.
    """
    value, weight = np.asarray(windows.value), np.asarray(windows.weight)
    total = float(np.nansum(weight))
    observed = float(np.nansum(value * weight) / total) if total else float("nan")
    return observed, float(np.nansum(np.asarray(windows.idle_hours)))


class Windows(Protocol):
    """The columns of `utilization_windows` rows that `window_totals` reads, as a frame or
    as arrays have them."""

    value: Any
    weight: Any
    idle_hours: Any
