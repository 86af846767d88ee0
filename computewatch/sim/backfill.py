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
  multiplies both. Each link-hour also carries the sketch of its per-minute percentiles
  (``rtt_p50/p95/p99_seconds:sketch``): the hour's minutes spread over the quantiles of the
  minutes' lognormal queueing factor (`SKETCH_MASS`), the degraded minutes scaled
  by the incident's factor, so a month's or a year's percentiles of these fields (the
  summary's p95 per link, the anomaly pipeline's median RTT to the hub) are read from
  every backfilled minute's distribution, as from rolled-up minute data.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
from computewatch.sim.tenants import CONTAINER, NAMESPACES, job_start

__all__ = ["ACCELERATOR_FIELDS", "CARD_STATES", "SKETCH_MASS", "rollup_frames"]

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
CARD_STATES = {
    "utilization_ratio": ("n", "sum", "min", "max"),
    "allocated": ("n", "sum"),
    "power_watts": ("n", "sum", "min", "max"),
    "energy_joules_total": ("n", "min", "max", "last", "last_time"),
    "health": ("n", "sum", "min"),
}
"""The accelerator fields the backfill writes and their states (what reports, summaries
and pipelines ask: means, sums, extremes; a counter's last reading): 18 columns, not 30;
the others stay NULL (`DuckDBStore.write_rollup`)."""
ACCELERATOR_FIELDS = tuple(CARD_STATES)

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


_LOGNORMAL_NODES = np.exp(0.25 * np.array([statistics.NormalDist().inv_cdf((k + 0.5) / 32)
                                             for k in range(32)]))
"""Equal-mass nodes of the minutes' queueing factor, lognormal(0, 0.25)."""

SKETCH_MASS = (0.0, 0.25, 0.5, 0.7, 0.8, 0.88, 0.93, 0.96, 0.98, 0.99, 1.0)
"""How the backfill's sketches spread an hour's minutes over the minutes' queueing factor
(lognormal): the minutes whose factor falls between two of these quantiles are written as
one value, the factor at their middle quantile. Finer towards the tail (the top minute of
60 on its own), so a month's p99 is not cut short; the sketch's own buckets are 2% wide, so
finer steps would change little but rows."""


@functools.lru_cache(maxsize=8)
def _node_table(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """`_sketch_nodes` of 0 to ``steps`` minutes, stacked (row k: k minutes)."""
    table = [_sketch_nodes(k) for k in range(steps + 1)]
    return np.stack([c for c, _ in table]), np.stack([z for _, z in table])


def _sketch_nodes(m: int) -> tuple[np.ndarray, np.ndarray]:
    """(minutes per node, queueing factor per node) of ``m`` minutes, per `SKETCH_MASS`."""
    edges = np.rint(m * np.array(SKETCH_MASS)).astype(np.int64)
    counts = np.diff(edges)
    mid = (edges[:-1] + edges[1:]) / (2.0 * max(m, 1))
    z = np.array([math.exp(0.25 * statistics.NormalDist().inv_cdf(p)) if c else 1.0
                  for p, c in zip(mid, counts, strict=True)])
    return counts, z


_PERCENTILES = {"rtt_p50_seconds": 0.69, "rtt_p95_seconds": 3.0, "rtt_p99_seconds": 4.6}
"""Within a minute RTT = base + q x Exp(1): its p50, p95 and p99 (`History._link_hour`)."""
_SKETCH_TYPE = pa.list_(pa.struct([("value", pa.float64()), ("n", pa.int64())]))

_Sketch = dict[str, tuple[np.ndarray, np.ndarray]]
"""field -> (values, counts), one row per link and one column per sketch entry."""

_BUSY = _level(_BUSY_LEVEL, _BUSY_SD, _BUSY_CLIP, folded=False)
_FREE = _level(_FREE_LEVEL, _FREE_SD, _FREE_CLIP, folded=True)


def _states(prefix: str, n, total, low, high, last, last_time) -> dict[str, object]:
    return {f"{prefix}:n": n, f"{prefix}:sum": total, f"{prefix}:min": low,
            f"{prefix}:max": high, f"{prefix}:last": last, f"{prefix}:last_time": last_time}


@dataclass
class _Context:
    """What a backfill computes once per history: the label dictionaries and the links'
    and sites' constants (the same expressions `History` uses per hour)."""

    labels: dict[str, tuple[pa.Array, np.ndarray]]
    link_base: np.ndarray
    link_amps: np.ndarray
    link_budget: np.ndarray
    pue_base: np.ndarray

    @classmethod
    def of(cls, h: History) -> _Context:
        f = h.fleet
        fiber = np.array([lk.fiber_min_rtt_s for lk in h.links])
        return cls({name: (pa.array(values, pa.string()), codes.astype(np.int32))
                    for name, (values, codes) in h._acc_labels.columns.items()},
                   fiber * h.route_factor + _EQUIPMENT_RTT_S,
                   np.array([f.sites[f.site_index[lk.a]].diurnal_amplitude for lk in h.links]),
                   np.array([h.policy.budget_rtt_s(lk.tier) for lk in h.links]),
                   np.array([p.pue_base for p in f.sites]))


def _card_segments(h: History, hour: int) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """Per span of the hour (`History.segments`), one row per card written in it: card
    ``d``, ``pod_key``, ``holder``, samples ``n``, ``busy`` and ``held`` samples, the index
    of its ``last`` sample, the utilization sum (the expectation plus the noise of a sum of
    that many samples) and the power sum; and the sites' mean accelerator power. Advances
    the history's energy counters (``e_end`` per row: the card's counter after the hour)
    and records the allocation truth's utilization sums."""
    f = h.fleet
    p_busy = f.device_idle_w + (f.device_tdp_w - f.device_idle_w) * _BUSY.power_mean
    p_free = f.device_idle_w + (f.device_tdp_w - f.device_idle_w) * _FREE.power_mean
    rng = np.random.default_rng([f.seed, 9, hour])
    watts = np.zeros(f.n_devices)  # watts x samples per card (a lost card draws nothing)
    parts = []
    for seg in h.segments(hour):
        valid, running, holder = seg.valid[0], seg.running[0], seg.holder[0]
        noise = rng.normal(0.0, 1.0, f.n_devices)
        d = np.arange(f.n_devices)  # a lost card still reports health 0 (the minute data)
        m = float(seg.minutes)
        n = np.where(valid, m, 0.0)
        busy = np.where(running & valid, m, 0.0)
        free = n - busy
        sd = np.sqrt(busy * _BUSY.sd ** 2 + free * _FREE.sd ** 2)
        power = np.where(running, p_busy, p_free) * n
        watts += power
        parts.append({"d": d, "pod_key": seg.pod_key[0], "holder": holder,
                      "n": n, "lost": m - n, "busy": busy,
                      "held": np.where(holder >= 0, n, 0.0),
                      "last": np.full(len(d), seg.first + seg.minutes - 1, dtype=np.int64),
                      "usum": np.clip(busy * _BUSY.mean + free * _FREE.mean + noise * sd,
                                      0.0, n),
                      "power": power})
    h._energy = h._energy + watts * h.step.total_seconds()
    for part in parts:
        part["e_end"] = h._energy[part["d"]]
    h._record_backfill(hour, *(np.concatenate([p[k] for p in parts])
                               for k in ("usum", "holder", "d")))
    site_w = np.bincount(f.device_site, weights=watts / h.steps_per_hour,
                         minlength=len(f.sites))
    return parts, site_w


_SUMMED = ("n", "lost", "busy", "held", "usum", "power")


def _merge_segments(h: History, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One hour's segment rows merged per (card, pod): a card's pod is the same all hour
    but where an incident starts or ends."""
    if len(parts) == 1:
        return parts[0]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    key = cat["d"] * (len(NAMESPACES) * len(h._nodes) + len(h.truth.incidents) + 2) \
        + cat["pod_key"] + len(h.truth.incidents) + 2
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    rows = {k: cat[k][first] for k in ("d", "pod_key", "holder", "e_end")}
    for k in _SUMMED:
        rows[k] = np.bincount(inv, weights=cat[k])
    last = np.zeros(len(first), dtype=np.int64)
    np.maximum.at(last, inv, cat["last"])
    rows["last"] = last
    return rows


def _card_columns(h: History, rows: dict[str, np.ndarray], last_time: pa.Array
                  ) -> dict[str, pa.Array]:
    """The state columns of card rows: sums as modelled; ``min``/``max`` the levels' ranges
    (indicative); the energy counter from the row's first to its last sample."""
    f = h.fleet
    d, n = rows["d"], rows["n"]
    busy, held, power = rows["busy"], rows["held"], rows["power"]
    any_busy, any_free = busy > 0, busy < n
    p_busy = f.device_idle_w[d] + (f.device_tdp_w[d] - f.device_idle_w[d]) * _BUSY.power_mean
    p_free = f.device_idle_w[d] + (f.device_tdp_w[d] - f.device_idle_w[d]) * _FREE.power_mean
    e_end = rows["e_end"]
    e_start = rows.get("e_start")
    if e_start is None:  # an hour: the counter at its first sample
        e_start = e_end - (power - power / np.maximum(n, 1)) * h.step.total_seconds()
    out: dict[str, pa.Array] = {}
    none = n == 0  # a lost card's rows: health alone
    nulls = pa.nulls(len(n), pa.timestamp("us", tz="UTC"))
    masked_time = pc.if_else(pa.array(none), nulls, last_time) if none.any() else last_time

    def put(field: str, total, low, high, last, count=n, mask=none) -> None:
        """Write the states `CARD_STATES` keeps for ``field`` (the rest are NULL)."""
        keep = CARD_STATES[field]
        out[f"{field}:n"] = pa.array(count.astype(np.int64))
        for state, value in (("sum", total), ("min", low), ("max", high), ("last", last)):
            if state in keep:
                out[f"{field}:{state}"] = pa.array(
                    np.broadcast_to(np.asarray(value, float), n.shape),
                    mask=mask if mask.any() else None)
        if "last_time" in keep:
            out[f"{field}:last_time"] = masked_time if mask is none else last_time

    put("utilization_ratio", rows["usum"], np.where(any_free, _FREE.low, _BUSY.low),
        np.where(any_busy, _BUSY.high, _FREE.high), np.where(any_busy, _BUSY.mean, _FREE.mean))
    put("allocated", held, np.where(held < n, 0.0, 1.0), np.where(held > 0, 1.0, 0.0),
        np.where(held > 0, 1.0, 0.0))
    put("power_watts", power, np.where(any_free, p_free, p_busy),
        np.where(any_busy, p_busy, p_free), power / np.maximum(n, 1))
    put("energy_joules_total", n * (e_start + e_end) / 2.0, e_start, e_end, e_end)
    lost = rows["lost"]
    put("health", n, np.where(lost > 0, 0.0, 1.0), np.where(n > 0, 1.0, 0.0),
        np.where(lost > 0, 0.0, 1.0), count=n + lost, mask=np.zeros(len(n), bool))
    return out


def _pod_starts(h: History, hour: int, pod_key: np.ndarray) -> np.ndarray:
    """The epoch hour each row's pod started (0 for an incident's pod or no pod)."""
    hours, phase = h._job_lifetimes()
    abs_hour = int(h.start.timestamp() // 3600) + hour
    key = np.maximum(pod_key, 0)
    return np.where(pod_key >= 0, job_start(abs_hour, hours[key], phase[key]), 0)


def _dict_column(values: list[str], codes: np.ndarray) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32), pa.int32()),
                                          pa.array(values, pa.string()))


def _pod_names(h: History, pod_key: np.ndarray, start: np.ndarray) -> pa.DictionaryArray:
    """The pod column of rows from their pod keys and start hours: the names the minute
    data gives (`History._allocation_labels`, `job_pod`)."""
    n_nodes = len(h._nodes)
    n_inc = len(h.truth.incidents)
    combined = (pod_key + n_inc + 2) * (1 << 32) + start
    uniq, codes = np.unique(combined, return_inverse=True)
    names = []
    for c in uniq.tolist():
        key, st = c // (1 << 32) - n_inc - 2, c % (1 << 32)
        if key == -1:
            names.append("")
        elif key < -1:
            names.append(h.truth.incidents[-2 - key].detail["pod"])
        else:
            node = str(h._nodes[key % n_nodes])
            names.append(f"{NAMESPACES[key // n_nodes]}-{st:x}-{node.rsplit('-', 1)[-1]}")
    return _dict_column(names, codes)


def _card_table(h: History, ctx: _Context, rows: dict[str, np.ndarray], t0_us: int,
                pod: pa.Array, last_us: np.ndarray) -> pa.Table:
    d = rows["d"]
    labels = {name: pa.DictionaryArray.from_arrays(pa.array(codes[d], pa.int32()), values)
              for name, (values, codes) in ctx.labels.items()}
    holder = rows["holder"]
    ts = pa.timestamp("us", tz="UTC")
    return pa.table({TIME: pa.array(np.full(len(d), t0_us), ts), **labels, "pod": pod,
                     "namespace": _dict_column(["", *NAMESPACES], holder + 1),
                     "container": _dict_column(["", CONTAINER], (holder >= 0).astype(int)),
                     **_card_columns(h, rows, pa.array(last_us, ts))})


class _CardDay:
    """A UTC day of card rows accumulated per (card, namespace) in dense arrays: one row
    per card and holder (a pod lives 6-72 hours and a card's namespace changes by the hour,
    so daily rows per pod would be several per card; daily rows carry the namespace and
    leave the pod empty, hourly ones name it). Measured on the default fleet: 6.2 rows per
    card and day per pod against 3.6 per namespace, which doubled the daily backfill's
    accelerator writes and its peak memory; the minute data's own daily rollups keep one
    row per card and pod."""

    def __init__(self, h: History) -> None:
        self.h = h
        n_d = h.fleet.n_devices
        size = (len(NAMESPACES) + 1) * n_d
        self.sums = {k: np.zeros(size) for k in _SUMMED}
        self.first_hour = np.full(size, -1, dtype=np.int64)
        self.last_step = np.zeros(size, dtype=np.int64)
        self.hour_end = []  # every card's energy counter after each hour
        self.day_start = h._energy.copy()

    def add(self, k: int, parts: list[dict[str, np.ndarray]]) -> None:
        n_d = self.h.fleet.n_devices
        for part in parts:
            key = (part["holder"] + 1) * n_d + part["d"]  # a card once per span
            for name in _SUMMED:
                self.sums[name][key] += part[name]
            unset = self.first_hour[key] < 0
            self.first_hour[key[unset]] = k
            self.last_step[key] = k * self.h.steps_per_hour + part["last"]
        self.hour_end.append(self.h._energy.copy())

    def rows(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(rows, index of each row's last sample from the day's start)."""
        n_d = self.h.fleet.n_devices
        key = np.flatnonzero(self.sums["n"] > 0)
        d, holder = key % n_d, key // n_d - 1
        ends = np.stack(self.hour_end)
        first, last = self.first_hour[key], self.last_step[key] // self.h.steps_per_hour
        before = np.where(first > 0, ends[np.maximum(first - 1, 0), d], self.day_start[d])
        rows = {"d": d, "holder": holder, **{k: v[key] for k, v in self.sums.items()},
                "e_end": ends[last, d]}
        rows["e_start"] = before + rows["power"] / np.maximum(rows["n"], 1) \
            * self.h.step.total_seconds()
        return rows, self.last_step[key]


_State = dict[str, dict[str, np.ndarray]]
"""field -> state -> one value per series (``n``, ``sum``, ``min``, ``max``, ``last``)."""


def _constant(value: np.ndarray, m: int) -> dict[str, np.ndarray]:
    """The states of ``m`` samples of one value per series."""
    return {"n": np.full(len(value), m, dtype=np.int64), "sum": value * m, "min": value,
            "max": value, "last": value}


def _merge_states(hours: list[_State]) -> _State:
    """Hourly states of the same series merged (sums add, extremes, the last hour's last)."""
    out: _State = {}
    for field in hours[0]:
        st = [h[field] for h in hours]
        out[field] = {"n": np.sum([s["n"] for s in st], axis=0),
                      "sum": np.sum([s["sum"] for s in st], axis=0),
                      "min": np.min([s["min"] for s in st], axis=0),
                      "max": np.max([s["max"] for s in st], axis=0),
                      "last": st[-1]["last"]}
    return out


def _state_frame(labels: dict[str, object], states: _State, t0: pd.Timestamp,
                 last: pd.Timestamp) -> pd.DataFrame:
    cols: dict[str, object] = {TIME: t0, **labels}
    for field, st in states.items():
        cols |= {f"{field}:{k}": v for k, v in st.items()}
        cols[f"{field}:last_time"] = last
    return pd.DataFrame(cols)


def _facility_hour(h: History, ctx: _Context, hour: int, acc_w: np.ndarray) -> _State:
    """The meters' states of one hour, per meter in (facility, it, cooling) x site order."""
    f = h.fleet
    it_w = acc_w * HOST_FACTOR
    doy = (h.start + hour * HOUR).timetuple().tm_yday
    seasonal = 0.06 * np.cos(2 * np.pi * (doy - 200) / 365.0)
    times = h._times(hour)
    local_h = (times / 3.6e9 + _CHINA_UTC_OFFSET_H) % 24.0
    daily = float(np.mean(0.03 * np.sin(2 * np.pi * (local_h - 8.0) / 24.0)))
    pue = ctx.pue_base + seasonal + daily
    for inc in h.truth.incidents:
        if inc.kind == "cooling_fault":
            pue[f.site_index[inc.subject]] += inc.detail["pue_increase"] * float(
                h._active_mask(inc, times).mean())
    pue = np.maximum(pue, 1.03)
    fac_w = it_w * pue
    watts = np.stack([fac_w, it_w, (fac_w - it_w) * 0.8]).ravel()  # (meter, site)
    m = h.steps_per_hour
    step_s = h.step.total_seconds()
    start_j = h._meter_energy.ravel().copy()
    h._meter_energy = h._meter_energy + watts.reshape(3, -1) * step_s * m
    end_j = h._meter_energy.ravel()
    first_j = start_j + watts * step_s
    return {"watts": _constant(watts, m),
            "joules_total": {"n": np.full(len(watts), m, dtype=np.int64),
                             "sum": m * (first_j + end_j) / 2.0, "min": first_j,
                             "max": end_j.copy(), "last": end_j.copy()}}


def _facility_labels(h: History) -> dict[str, object]:
    f = h.fleet
    scopes = ("facility", "it", "cooling")
    return {"hub": [p.site.hub or "" for p in f.sites] * 3,
            "cluster": [p.site.cluster or "" for p in f.sites] * 3,
            "site": f.site_ids * 3,
            "meter": [f"{s}-{scope}" for scope in scopes for s in f.site_ids],
            "scope": [scope for scope in scopes for _ in f.site_ids],
            "source": "simulator"}


def _link_sketch(h: History, base: np.ndarray, q0: np.ndarray, share: np.ndarray,
                 factor: np.ndarray) -> _Sketch:
    """Per link: the hour's minutes of each percentile field as (value, count) entries,
    the normal minutes then the degraded ones (their counts 0 where no incident ran)."""
    m = h.steps_per_hour
    counts_of, z_of = _node_table(m)
    hit = np.rint(share * m).astype(np.int64)
    counts = np.concatenate([counts_of[m - hit], counts_of[hit]], axis=1)
    out: _Sketch = {}
    for field, c in _PERCENTILES.items():
        normal = base[:, None] + c * q0[:, None] * z_of[m - hit]
        slow = (base[:, None] + c * q0[:, None] * z_of[hit]) * factor[:, None]
        out[field] = (np.concatenate([normal, slow], axis=1), counts)
    return out


def _sketch_column(values: np.ndarray, counts: np.ndarray) -> pa.Array:
    """A ``field:sketch`` column: per row its entries with a count."""
    keep = counts > 0
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    entries = pa.StructArray.from_arrays([pa.array(values[keep]), pa.array(counts[keep])],
                                         fields=list(_SKETCH_TYPE.value_type))
    return pa.ListArray.from_arrays(pa.array(offsets), entries, type=_SKETCH_TYPE)


def _link_table(frame: pd.DataFrame, sketch: _Sketch) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for field, (values, counts) in sketch.items():
        table = table.append_column(f"{field}:sketch", _sketch_column(values, counts))
    return table


def _link_hour(h: History, ctx: _Context, hour: int) -> tuple[_State, _Sketch]:
    """The links' states and sketches of one hour, from the queueing scale at mid-hour."""
    times = h._times(hour)
    mid = times[len(times) // 2: len(times) // 2 + 1]
    base = ctx.link_base
    load = h._load_shape(mid, ctx.link_amps)[0]
    q0 = (0.01 * base + 0.05e-3) * (0.4 + 0.6 * load)  # times each minute's lognormal
    q = q0 * math.exp(0.25 ** 2 / 2)
    budget = ctx.link_budget
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

    # The share within budget is not linear in q: averaged over the minutes' lognormal.
    p_within = np.mean([(1 - share) * within(base, q0 * z) + share * within(
        base * factor, q0 * z * factor) for z in _LOGNORMAL_NODES], axis=0)
    replies = m * _PROBES_PER_WINDOW - lost
    scale = (1 - share) + share * factor
    states = {name: _constant(per_minute, m) for name, per_minute in (
        *((field, (base + c * q) * scale) for field, c in _PERCENTILES.items()),
        ("samples", np.full(len(h.links), float(_PROBES_PER_WINDOW))),
        ("replies_within_budget", replies * p_within / m),
        ("loss_ratio", lost / m / _PROBES_PER_WINDOW),
        ("budget_seconds", budget))}
    return states, _link_sketch(h, base, q0, share, factor)


def _link_labels(h: History) -> dict[str, object]:
    hub_of = {p.site.id: p.site.hub or "" for p in h.fleet.sites}
    return {"src_site": [lk.a for lk in h.links], "dst_site": [lk.b for lk in h.links],
            "src_hub": [hub_of[lk.a] for lk in h.links],
            "dst_hub": [hub_of[lk.b] for lk in h.links],
            "tier": [lk.tier.value for lk in h.links], "probe": "udp"}


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
    if grain == DAY and (hours % 24 or history.start.hour or history.start.minute):
        raise ValueError("a daily backfill needs whole UTC days from a day start")
    # One batch per UTC day (the store merges a day's hours once per write, not per hour).
    into_day = (history.start - history.start.replace(hour=0, minute=0, second=0,
                                                      microsecond=0)) // HOUR
    edges = sorted({0, hours, *range(24 - into_day if into_day else 24, hours, 24)})
    step_us = int(history.step / timedelta(microseconds=1))
    ctx = _Context.of(history)
    meters, link_labels = _facility_labels(history), _link_labels(history)
    last_step = (history.steps_per_hour - 1) * pd.Timedelta(history.step)
    for first, last in pairwise(edges):
        acc, fac, links = [], [], []
        day = _CardDay(history) if grain == DAY else None
        for hour in range(first, last):
            parts, site_w = _card_segments(history, hour)
            if day is not None:
                day.add(hour - first, parts)
            else:
                rows = _merge_segments(history, parts)
                t0_us = int((history.start + hour * HOUR).timestamp() * 1_000_000)
                pod = _pod_names(history, rows["pod_key"],
                                 _pod_starts(history, hour, rows["pod_key"]))
                acc.append(_card_table(history, ctx, rows, t0_us, pod,
                                       t0_us + rows["last"] * step_us))
            fac.append(_facility_hour(history, ctx, hour, site_w))
            if history.links:
                links.append(_link_hour(history, ctx, hour))
        t0 = pd.Timestamp(history.start + first * HOUR)
        if day is None:
            yield "accelerator", pa.concat_tables(acc).unify_dictionaries().combine_chunks(), \
                grain
            yield "facility_power", pd.concat(
                [_state_frame(meters, st, t0 + k * HOUR, t0 + k * HOUR + last_step)
                 for k, st in enumerate(fac)], ignore_index=True), grain
            if links:
                yield "link_latency", pa.concat_tables(
                    [_link_table(_state_frame(link_labels, st, t0 + k * HOUR,
                                              t0 + k * HOUR + last_step), sk)
                     for k, (st, sk) in enumerate(links)]), grain
            continue
        rows, steps = day.rows()
        t0_us = int(t0.timestamp() * 1_000_000)
        yield "accelerator", _card_table(history, ctx, rows, t0_us,
                                         _dict_column([""], np.zeros(len(steps), int)),
                                         t0_us + steps * step_us), grain
        end_step = t0 + (last - first - 1) * HOUR + last_step
        yield "facility_power", _state_frame(meters, _merge_states(fac), t0, end_step), grain
        if links:
            sketch = {field: tuple(np.concatenate([sk[field][i] for _, sk in links], axis=1)
                                   for i in (0, 1)) for field in _PERCENTILES}
            yield "link_latency", _link_table(_state_frame(
                link_labels, _merge_states([st for st, _ in links]), t0, end_step),
                sketch), grain
