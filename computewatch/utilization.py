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

Aggregation is pushed into the store (SUM, MEAN and COUNT queries by group and window), so
memory grows with groups x windows, never with samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

import pandas as pd

from computewatch.findings import Period
from computewatch.store import Aggregate, Query, Store
from computewatch.topology import Topology

__all__ = ["DEFINITIONS", "IDLE_DEFINITION", "LEVELS", "WINDOW_COLUMNS", "Definition",
           "idle_hours", "sampling_interval", "utilization_totals", "utilization_windows",
           "window_totals"]

Definition = Literal["time_weighted", "busy_fraction"]
DEFINITIONS: dict[str, str] = {
    "time_weighted": "time-weighted mean utilization (mean of all utilization samples in "
                     "each window)",
    "busy_fraction": "busy fraction (share of accelerator-windows whose mean utilization "
                     "exceeds the busy level)",
}
"""Each utilization definition in words, as findings, the report and the summary state it."""

IDLE_DEFINITION = ("idle accelerator-hours = sum over utilization samples of "
                   "(1 - utilization) x the sampling interval, i.e. the capacity left unused; "
                   "time without samples counts for nothing, so a window an accelerator "
                   "reported in for part of its length counts only that part; the interval "
                   "is read from the data (the fullest accelerator's sample spacing over the "
                   "last hour of data in the period)")

LEVELS = ("site", "cluster", "hub", "province")
"""The levels `utilization_windows` rolls sites up to (from the topology)."""

WINDOW_COLUMNS = ["time", "subject", "value", "weight", "accelerators", "idle_hours"]
"""`utilization_windows` frames: window start, subject, the definition's value, its weight
(samples for time_weighted, accelerators for busy_fraction), accelerators with data, and the
window's idle accelerator-hours."""

_FIELD = "utilization_ratio"
_PROBE = timedelta(hours=1)


def _intervals(store: Store, lo: datetime, end: datetime, last: datetime,
               where: Mapping[str, str | Sequence[str]] | None) -> timedelta:
    """The fullest device's sample spacing over [lo, end); zero when it cannot be told."""
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

    The fullest accelerator's sample spacing over the last hour of data in the period (one
    COUNT query grouped by device, devices rows), so a card that fell off the bus does not
    stretch it; over the whole period when that hour cannot tell (fewer than two samples).
    Zero when the store holds no accelerator data in the period.
    """
    bounds = store.time_bounds("accelerator")
    if bounds is None:
        return timedelta(0)
    first, last = bounds
    lo = max(start, first)
    if last < lo or lo >= end:
        return timedelta(0)
    probe = max(lo, min(end, last) - _PROBE)
    got = _intervals(store, probe, end, last, where)
    if got == timedelta(0) and probe > lo:
        got = _intervals(store, lo, end, last, where)
    return got


def idle_hours(samples, utilization_sum, interval: timedelta):
    """Idle accelerator-hours of ``samples`` utilization samples summing to
    ``utilization_sum``: (samples - sum) x the interval in hours (numbers or Series)."""
    return (samples - utilization_sum) * (interval / timedelta(hours=1))


def utilization_totals(store: Store, start: datetime, end: datetime, *,
                       by: Sequence[str], where: Mapping[str, str | Sequence[str]] | None = None,
                       interval: timedelta | None = None) -> pd.DataFrame:
    """Per ``by`` group with samples in [start, end): ``samples``, ``utilization_sum``,
    ``utilization`` (time-weighted mean) and ``idle_accelerator_hours``.

    Two queries (SUM and COUNT by group). ``interval`` defaults to `sampling_interval` over
    the same range and filter.
    """
    cols = [*by, "samples", "utilization_sum", "utilization", "idle_accelerator_hours"]
    q = dict(start=start, end=end, where=dict(where or {}), group_by=tuple(by))
    total = store.query(Query("accelerator", (_FIELD,), agg=Aggregate.SUM, **q))
    count = store.query(Query("accelerator", (_FIELD,), agg=Aggregate.COUNT, **q))
    if total.empty or count.empty:
        return pd.DataFrame(columns=cols)
    out = total.drop(columns="time").rename(columns={_FIELD: "utilization_sum"}).merge(
        count.drop(columns="time").rename(columns={_FIELD: "samples"}), on=list(by))
    out = out[out.samples > 0].reset_index(drop=True)
    out["samples"] = out.samples.astype(float)
    out["utilization_sum"] = out.utilization_sum.astype(float)
    out["utilization"] = out.utilization_sum / out.samples
    step = interval if interval is not None else sampling_interval(store, start, end,
                                                                    where=where)
    out["idle_accelerator_hours"] = idle_hours(out.samples, out.utilization_sum, step)
    return out[cols]


def _site_windows(store: Store, period: Period, window: timedelta, definition: Definition,
                  busy_level: float, step: timedelta) -> pd.DataFrame:
    """Per site and window: value (per definition), weight, accelerators with data, idle."""
    q = dict(start=period.start, end=period.end, window=window)
    if definition == "time_weighted":
        mean = store.query(Query("accelerator", (_FIELD,), group_by=("site",),
                                 agg=Aggregate.MEAN, **q))
        count = store.query(Query("accelerator", (_FIELD,), group_by=("site",),
                                  agg=Aggregate.COUNT, **q))
        devices = store.query(Query("accelerator", (_FIELD,), group_by=("site", "device"),
                                    agg=Aggregate.COUNT, **q))
        n_dev = devices.groupby(["time", "site"]).size().rename("accelerators")
        out = mean.merge(count, on=["time", "site"], suffixes=("", "_n"))
        out = out.rename(columns={_FIELD: "value", f"{_FIELD}_n": "weight"})
        out["idle_hours"] = idle_hours(out.weight, out.value * out.weight, step)
        return out.merge(n_dev.reset_index(), on=["time", "site"], how="left")
    by = ("site", "device")
    per_dev = store.query(Query("accelerator", (_FIELD,), group_by=by, agg=Aggregate.MEAN,
                                **q))
    n = store.query(Query("accelerator", (_FIELD,), group_by=by, agg=Aggregate.COUNT, **q))
    per_dev = per_dev.merge(n, on=["time", *by], suffixes=("", "_n"))
    per_dev["busy"] = per_dev[_FIELD] > busy_level
    per_dev["idle_hours"] = idle_hours(per_dev[f"{_FIELD}_n"],
                                       per_dev[_FIELD] * per_dev[f"{_FIELD}_n"], step)
    g = per_dev.groupby(["time", "site"])
    return pd.DataFrame({"value": g.busy.mean(), "weight": g.size(), "accelerators": g.size(),
                         "idle_hours": g.idle_hours.sum()}).reset_index()


def utilization_windows(store: Store, period: Period, topology: Topology, *,
                        window: timedelta = timedelta(hours=1),
                        definition: Definition = "time_weighted", busy_level: float = 0.10,
                        interval: timedelta | None = None) -> dict[str, pd.DataFrame]:
    """Per level of `LEVELS`: a frame of `WINDOW_COLUMNS`, one row per subject and window
    with data. Windows start at the period's start; sites outside the topology are left
    out. ``interval`` defaults to `sampling_interval` over the period."""
    if definition not in DEFINITIONS:
        raise ValueError(f"unknown definition {definition!r} (use {', '.join(DEFINITIONS)})")
    step = interval if interval is not None else sampling_interval(store, period.start,
                                                                    period.end)
    sites = _site_windows(store, period, window, definition, busy_level, step)
    place = {s.id: (s.cluster or "", s.hub or "", s.province) for s in topology.sites}
    sites = sites[sites.site.isin(place)]
    sites = sites.assign(cluster=[place[s][0] for s in sites.site],
                         hub=[place[s][1] for s in sites.site],
                         province=[place[s][2] for s in sites.site])
    out = {"site": sites.rename(columns={"site": "subject"})[WINDOW_COLUMNS]}
    for level in LEVELS[1:]:
        d = sites[sites[level] != ""].assign(vw=lambda x: x.value * x.weight)
        g = d.groupby(["time", level])
        agg = pd.DataFrame({"vw": g.vw.sum(), "weight": g.weight.sum(),
                            "accelerators": g.accelerators.sum(),
                            "idle_hours": g.idle_hours.sum()}).reset_index()
        agg["value"] = agg.vw / agg.weight
        out[level] = agg.rename(columns={level: "subject"})[WINDOW_COLUMNS]
    return out


def window_totals(windows: pd.DataFrame) -> tuple[float, float]:
    """(value, idle accelerator-hours) of some `utilization_windows` rows of one subject.

    The value is the weight-weighted mean of the windows' values; windows without data (NaN)
    count for neither, so a partly covered span is not diluted by the time it lacks. Shared
    by the underuse episodes and the report's period totals, so both state one number.
    """
    weight = float(windows.weight.sum())
    observed = float((windows.value * windows.weight).sum() / weight) if weight else float("nan")
    return observed, float(windows.idle_hours.sum())
