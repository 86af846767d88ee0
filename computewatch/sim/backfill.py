"""History at rollup resolution: a year of the simulated fleet in minutes, not hours.

Why: regulators read years (ISO/IEC 30134-2's PUE is a 12-month figure), and a year of a
national fleet at one sample a minute is billions of rows a demo cannot write. Rollup rows
(`computewatch.store._rollups`: ``field:state`` columns, ``n``/``sum``/``min``/``max``/
``last``/``last_time``) hold what the report reads, so the backfill writes those directly
(`DuckDBStore.write_rollup`), one row per series and hour (or UTC day), from the *same
per-hour model* that drives the minute data (`computewatch.sim.history`):

- Occupancy is exact: `History.segments` gives every card's allocation, holder (namespace,
  pod) and written minutes per span of the hour, incidents included, from the hour's own
  random streams; so busy minutes, allocated minutes, samples per series and the allocation
  truth are the numbers the minute data has.
- Utilization sums are the model's expectation (busy level or free level per minute, their
  clipped-normal means) plus the normal noise of a sum of that many minutes: a site-hour is
  within a few 1e-3 of the minute data's mean, a device-hour within ~0.02 (stated in
  tests/test_backfill.py). ``min``/``max`` are the level's mean -/+ 2.5 sd (clipped):
  indicative, not drawn.
- Power is the expected draw of each level (E[u^0.85] by quadrature of the same clipped
  normals); the energy counters advance by it and carry on into the raw hours after.
- Meters: IT = accelerator power x `HOST_FACTOR`, facility = IT x the hour's PUE (site base,
  season, time of day at mid-hour, cooling fault share), cooling 80% of the difference; the
  counters advance by the hour's energy, so PUE over any span is the model's.
- Links: per hour, the queueing scale at mid-hour (times E[lognormal]) gives p50/p95/p99
  and the expected replies within the tier budget; the degraded link's share of the hour
  multiplies both. Latency sketches are not written (`write_rollup` takes states only):
  percentiles of backfilled hours are not available, compliance (replies within budget) is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from computewatch.samples import TIME
from computewatch.sim.history import (
    _BUSY_CLIP,
    _BUSY_LEVEL,
    _BUSY_SD,
    _CHINA_UTC_OFFSET_H,
    _EQUIPMENT_RTT_S,
    _FREE_CLIP,
    _FREE_LEVEL,
    _FREE_SD,
    _PROBES_PER_WINDOW,
    HOST_FACTOR,
    History,
)
from computewatch.sim.tenants import CONTAINER

__all__ = ["ACCELERATOR_FIELDS", "rollup_frames"]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ACCELERATOR_FIELDS = ("utilization_ratio", "allocated", "power_watts", "energy_joules_total",
                      "health")
"""The accelerator fields the backfill writes states of (what reports and pipelines read)."""

_STATES = ("n", "sum", "min", "max", "last", "last_time")


@dataclass(frozen=True)
class _Level:
    """A utilization level's per-minute moments: mean, sd, E[u^0.85] (power), range."""

    mean: float
    sd: float
    power_mean: float
    low: float
    high: float


def _level(mu: float, sd: float, clip: tuple[float, float], folded: bool) -> _Level:
    """Moments of clip(N(mu, sd)) (of |N| when folded) by quadrature on a fine grid."""
    z = np.linspace(-8.0, 8.0, 20001)
    w = np.exp(-z * z / 2.0)
    w /= w.sum()
    x = mu + sd * z
    x = np.clip(np.abs(x) if folded else x, *clip)
    mean = float((w * x).sum())
    s = math.sqrt(max(float((w * x * x).sum()) - mean * mean, 0.0))
    return _Level(mean, s, float((w * x ** 0.85).sum()), max(clip[0], mean - 2.5 * s),
                  min(clip[1], mean + 2.5 * s))


_BUSY = _level(_BUSY_LEVEL, _BUSY_SD, _BUSY_CLIP, folded=False)
_FREE = _level(_FREE_LEVEL, _FREE_SD, _FREE_CLIP, folded=True)


def _states(prefix: str, n, total, low, high, last, last_time) -> dict[str, object]:
    return {f"{prefix}:n": n, f"{prefix}:sum": total, f"{prefix}:min": low,
            f"{prefix}:max": high, f"{prefix}:last": last, f"{prefix}:last_time": last_time}


def _accelerator_hour(h: History, hour: int) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per (card, pod) of the hour with the card's labels' codes and its states, and
    the sites' mean accelerator power (W) over the hour."""
    f = h.fleet
    n_d = f.n_devices
    t0 = pd.Timestamp(h.start + hour * HOUR)
    parts = []
    it_w = np.zeros(n_d)  # watts x samples per card (a lost card draws nothing)
    p_busy = f.device_idle_w + (f.device_tdp_w - f.device_idle_w) * _BUSY.power_mean
    p_free = f.device_idle_w + (f.device_tdp_w - f.device_idle_w) * _FREE.power_mean
    for seg in h.segments(hour):
        valid = seg.valid[0]
        running = seg.running[0]
        it_w += seg.minutes * np.where(valid, np.where(running, p_busy, p_free), 0.0)
        d = np.flatnonzero(valid)
        parts.append(pd.DataFrame({
            "d": d, "pod_key": seg.pod_key[0][d], "holder": seg.holder[0][d],
            "n": seg.minutes, "busy": np.where(running[d], seg.minutes, 0),
            "held": np.where(seg.holder[0][d] >= 0, seg.minutes, 0),
            "last_minute": seg.first + seg.minutes - 1}))
    rows = pd.concat(parts, ignore_index=True)
    if len(parts) > 1:
        rows = rows.groupby(["d", "pod_key"], sort=True).agg(
            holder=("holder", "first"), n=("n", "sum"), busy=("busy", "sum"),
            held=("held", "sum"), last_minute=("last_minute", "max")).reset_index()
    rng = np.random.default_rng([f.seed, 9, hour])
    n, busy = rows.n.to_numpy(float), rows.busy.to_numpy(float)
    free = n - busy
    noise = rng.normal(0.0, 1.0, len(rows)) * np.sqrt(busy * _BUSY.sd ** 2
                                                      + free * _FREE.sd ** 2)
    usum = np.clip(busy * _BUSY.mean + free * _FREE.mean + noise, 0.0, n)
    any_busy, any_free = busy > 0, free > 0
    d = rows.d.to_numpy()
    step_s = h.step.total_seconds()
    last_time = t0 + pd.to_timedelta(rows.last_minute.to_numpy() * step_s, unit="s")
    ulast = np.where(any_busy, _BUSY.mean, _FREE.mean)
    pw_sum = busy * p_busy[d] + free * p_free[d]
    # The counter at the row's last minute: the card's running energy after the hour, less
    # what the minutes after that drew (an approximation only for a card lost mid-hour).
    h._energy = h._energy + it_w * step_s
    energy_end = h._energy[d]
    energy_start = energy_end - (pw_sum - pw_sum / np.maximum(n, 1)) * step_s
    held = rows.held.to_numpy(float)
    out = pd.DataFrame({"d": d, "pod_key": rows.pod_key.to_numpy(),
                        "holder": rows.holder.to_numpy(), TIME: t0})
    cols = {
        **_states("utilization_ratio", n.astype(np.int64), usum,
                  np.where(any_free, _FREE.low, _BUSY.low),
                  np.where(any_busy, _BUSY.high, _FREE.high), ulast, last_time),
        **_states("allocated", n.astype(np.int64), held, np.where(held < n, 0.0, 1.0),
                  np.where(held > 0, 1.0, 0.0), np.where(held > 0, 1.0, 0.0), last_time),
        **_states("power_watts", n.astype(np.int64), pw_sum,
                  np.where(any_free, p_free[d], p_busy[d]),
                  np.where(any_busy, p_busy[d], p_free[d]), pw_sum / np.maximum(n, 1),
                  last_time),
        **_states("energy_joules_total", n.astype(np.int64),
                  n * (energy_start + energy_end) / 2.0, energy_start, energy_end, energy_end,
                  last_time),
        **_states("health", n.astype(np.int64), n, 1.0, 1.0, 1.0, last_time),
    }
    out = pd.concat([out, pd.DataFrame(cols)], axis=1)
    h._record_backfill(hour, usum, rows.holder.to_numpy(), d)
    site_w = np.bincount(f.device_site, weights=it_w / h.steps_per_hour,
                         minlength=len(f.sites))
    return out, site_w


def _merge_day(hours: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """Hourly state rows of one UTC day merged per series (the store's own merge rules)."""
    frame = pd.concat(hours, ignore_index=True)
    fields = sorted({c.split(":", 1)[0] for c in frame.columns if ":" in c})
    agg: dict[str, tuple[str, str]] = {}
    for fl in fields:
        agg |= {f"{fl}:n": (f"{fl}:n", "sum"), f"{fl}:sum": (f"{fl}:sum", "sum"),
                f"{fl}:min": (f"{fl}:min", "min"), f"{fl}:max": (f"{fl}:max", "max"),
                f"{fl}:last": (f"{fl}:last", "last"),
                f"{fl}:last_time": (f"{fl}:last_time", "max")}
    extra = {c: (c, "first") for c in frame.columns
             if c not in keys and ":" not in c and c != TIME}
    out = frame.groupby(keys, sort=True).agg(**agg, **extra).reset_index()
    out[TIME] = frame[TIME].iloc[0].floor("D")
    return out


def _accelerator_table(h: History, rows: pd.DataFrame, hour: int) -> pa.Table:
    """Label columns (dictionary-encoded, the codes the minute data uses) and states."""
    d = rows.d.to_numpy()
    labels = {name: pa.DictionaryArray.from_arrays(pa.array(codes[d], pa.int32()),
                                                   pa.array(values, pa.string()))
              for name, (values, codes) in h._acc_labels.columns.items()}
    labels |= h._allocation_labels(hour, rows.holder.to_numpy(), rows.pod_key.to_numpy())
    states = rows[[c for c in rows.columns if ":" in c]]
    table = pa.Table.from_pandas(states, preserve_index=False)
    times = pa.array(rows[TIME].dt.tz_convert("UTC") if rows[TIME].dt.tz is not None
                     else rows[TIME], pa.timestamp("us", tz="UTC"))
    return pa.table({TIME: times, **labels, **{c: table.column(c) for c in states.columns}})


def _facility_hour(h: History, hour: int, acc_w: np.ndarray) -> pd.DataFrame:
    f = h.fleet
    t0 = pd.Timestamp(h.start + hour * HOUR)
    n_s = len(f.sites)
    it_w = acc_w * HOST_FACTOR
    doy = (h.start + hour * HOUR).timetuple().tm_yday
    seasonal = 0.06 * np.cos(2 * np.pi * (doy - 200) / 365.0)
    times = h._times(hour)
    local_h = (times / 3.6e9 + _CHINA_UTC_OFFSET_H) % 24.0
    daily = float(np.mean(0.03 * np.sin(2 * np.pi * (local_h - 8.0) / 24.0)))
    pue = np.array([p.pue_base for p in f.sites]) + seasonal + daily
    for inc in h.truth.incidents:
        if inc.kind == "cooling_fault":
            pue[f.site_index[inc.subject]] += inc.detail["pue_increase"] * float(
                h._active_mask(inc, times).mean())
    pue = np.maximum(pue, 1.03)
    fac_w = it_w * pue
    watts = np.stack([fac_w, it_w, (fac_w - it_w) * 0.8])  # (meter, site)
    start_j = h._meter_energy.copy()
    step_s = h.step.total_seconds()
    h._meter_energy = h._meter_energy + watts * step_s * h.steps_per_hour
    end_j = h._meter_energy
    first_j = start_j + watts * step_s
    scopes = ("facility", "it", "cooling")
    last = t0 + (h.steps_per_hour - 1) * pd.Timedelta(h.step)
    n = np.full(3 * n_s, h.steps_per_hour, dtype=np.int64)
    w = watts.ravel()
    frame = pd.DataFrame({
        TIME: t0,
        "hub": [p.site.hub or "" for p in f.sites] * 3,
        "cluster": [p.site.cluster or "" for p in f.sites] * 3,
        "site": f.site_ids * 3,
        "meter": [f"{s}-{scope}" for scope in scopes for s in f.site_ids],
        "scope": [scope for scope in scopes for _ in f.site_ids],
        "source": "simulator",
        **_states("watts", n, w * n, w, w, w, last),
        **_states("joules_total", n, n * (first_j.ravel() + end_j.ravel()) / 2.0,
                  first_j.ravel(), end_j.ravel(), end_j.ravel(), last),
    })
    return frame


def _link_hour(h: History, hour: int) -> pd.DataFrame | None:
    if not h.links:
        return None
    f = h.fleet
    t0 = pd.Timestamp(h.start + hour * HOUR)
    times = h._times(hour)
    mid = times[len(times) // 2: len(times) // 2 + 1]
    fiber = np.array([lk.fiber_min_rtt_s for lk in h.links])
    base = fiber * h.route_factor + _EQUIPMENT_RTT_S
    amps = np.array([f.sites[f.site_index[lk.a]].diurnal_amplitude for lk in h.links])
    load = h._load_shape(mid, amps)[0]
    q = (0.01 * base + 0.05e-3) * (0.4 + 0.6 * load) * math.exp(0.25 ** 2 / 2)
    budget = np.array([h.policy.budget_rtt_s(lk.tier) for lk in h.links])
    m = h.steps_per_hour
    lost = np.full(len(h.links), 0.002 * 2.0 * m)  # P(loss) x mean probes lost, per minute
    share = np.zeros(len(h.links))
    factor = np.ones(len(h.links))
    for inc in h.truth.incidents:
        if inc.kind == "link_degraded":
            k = next(i for i, lk in enumerate(h.links) if lk.pair == inc.subject)
            share[k] = float(h._active_mask(inc, times).mean())
            factor[k] = inc.detail["rtt_factor"]
            lost[k] = (1 - share[k]) * lost[k] + share[k] * m * _PROBES_PER_WINDOW \
                * inc.detail["loss_ratio"]

    def within(b: np.ndarray, qq: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return np.where(budget > b, -np.expm1(-(budget - b) / qq), 0.0)

    p_within = (1 - share) * within(base, q) + share * within(base * factor, q * factor)
    replies = m * _PROBES_PER_WINDOW - lost
    scale = (1 - share) + share * factor
    n = np.full(len(h.links), m, dtype=np.int64)
    last = t0 + (m - 1) * pd.Timedelta(h.step)
    hub_of = {p.site.id: p.site.hub or "" for p in f.sites}
    cols: dict[str, object] = {
        TIME: t0, "src_site": [lk.a for lk in h.links], "dst_site": [lk.b for lk in h.links],
        "src_hub": [hub_of[lk.a] for lk in h.links], "dst_hub": [hub_of[lk.b] for lk in h.links],
        "tier": [lk.tier.value for lk in h.links], "probe": "udp"}
    for name, per_minute in (("rtt_p50_seconds", (base + 0.69 * q) * scale),
                             ("rtt_p95_seconds", (base + 3.0 * q) * scale),
                             ("rtt_p99_seconds", (base + 4.6 * q) * scale),
                             ("samples", np.full(len(h.links), float(_PROBES_PER_WINDOW))),
                             ("replies_within_budget", replies * p_within / m),
                             ("loss_ratio", lost / m / _PROBES_PER_WINDOW),
                             ("budget_seconds", budget)):
        cols |= _states(name, n, per_minute * m, per_minute, per_minute, per_minute, last)
    return pd.DataFrame(cols)


def rollup_frames(history: History, hours: int, grain: timedelta = HOUR
                  ) -> Iterator[tuple[str, pa.Table | pd.DataFrame, timedelta]]:
    """Yield (measurement, rollup frame, grain) for the first ``hours`` of ``history``, in
    time order, for `DuckDBStore.write_rollup`: hourly rows, or (``grain`` a day, where
    ``hours`` and the history's start are whole UTC days) one row per series and day.
    Advances the history's energy counters, so its `History.chunks` from ``hours`` on go on
    from where the rollups end; records the allocation truth's utilization sums."""
    if grain not in (HOUR, DAY):
        raise ValueError(f"rollup grain {grain} is neither an hour nor a day")
    if hours < 0 or hours > history.hours:
        raise ValueError(f"cannot backfill {hours} hours of a {history.hours}-hour history")
    per = 1 if grain == HOUR else 24
    if grain == DAY and (hours % 24 or history.start.hour or history.start.minute):
        raise ValueError("a daily backfill needs whole UTC days from a day start")
    for first in range(0, hours, per):
        acc, fac, links = [], [], []
        for hour in range(first, first + per):
            rows, site_w = _accelerator_hour(history, hour)
            acc.append(rows)
            fac.append(_facility_hour(history, hour, site_w))
            lk = _link_hour(history, hour)
            if lk is not None:
                links.append(lk)
        if per == 1:
            yield "accelerator", _accelerator_table(history, acc[0], first), grain
            yield "facility_power", fac[0], grain
            if links:
                yield "link_latency", links[0], grain
            continue
        # A day: a card's rows merge per pod (pod names are per hour and job: key by name).
        for k, rows in enumerate(acc):
            table = _accelerator_table(history, rows, first + k)
            for name in ("pod", "namespace"):
                rows[name] = table.column(name).combine_chunks().dictionary_decode() \
                    .to_numpy(zero_copy_only=False)
        day = _merge_day(acc, ["d", "pod", "namespace"])
        labels = {name: pa.DictionaryArray.from_arrays(
            pa.array(codes[day.d.to_numpy()], pa.int32()), pa.array(values, pa.string()))
            for name, (values, codes) in history._acc_labels.columns.items()}
        held = day.namespace.to_numpy() != ""
        states = day[[c for c in day.columns if ":" in c]]
        yield "accelerator", pa.table({
            TIME: pa.array(day[TIME], pa.timestamp("us", tz="UTC")), **labels,
            "pod": pa.array(day.pod.to_numpy(), pa.string()),
            "namespace": pa.array(day.namespace.to_numpy(), pa.string()),
            "container": pa.array(np.where(held, CONTAINER, ""), pa.string()),
            **{c: pa.Table.from_pandas(states[[c]], preserve_index=False).column(0)
               for c in states.columns}}), grain
        yield "facility_power", _merge_day(fac, ["meter"]), grain
        if links:
            yield "link_latency", _merge_day(links, ["src_site", "dst_site"]), grain

