"""Vectorized history for the simulated fleet, produced one hour at a time as Arrow frames.

Each hour is generated from its own random stream (``default_rng([seed, stream, hour])``), so
the data of any hour does not depend on how the run is chunked; only the energy counters
carry state from one hour to the next, as real counters do. Nothing loops over samples in
Python: every quantity is a numpy expression over a (minutes x devices) array.

The models, kept simple and stated so the pipelines' results can be reasoned about:

- Utilization: each device is allocated to a job for an hour with probability
  ``p = target / 0.88 x diurnal x weekly``; an allocated device runs at about 88%, a free one
  at about 1%. Diurnal swing peaks at 15:00 China time, weekends are quieter in the east.
- Tenants (`computewatch.sim.tenants`): a card running a job is held by a pod of one of its
  site's namespaces; a card running none is still held, idle, with probability 0.2, else it
  is free. One tenant at one site holds 4 cards of a node idle for 60% of the period (the
  ``tenant_idle`` incident). The truth records, as each hour is written, every (site,
  namespace)'s samples, their utilization sum and the samples of cards held idle.
- Resolution: utilization is written in whole percent and temperature in whole degrees, as
  NVML and npu-smi report them (power in 0.1 W, the counter in 0.1 J); the truth's
  utilization sums are of the written values. Finer digits were noise no driver gives, and
  they cost the store bytes: at this resolution a sealed hour of the demo's fleet takes
  5.5 bytes per accelerator row as zstd Parquet against 6.9 (bench/bench_storage.py).
- Power: idle + (TDP - idle) x utilization^0.85, with noise; the energy counter integrates it.
- Facility: IT power = accelerator power x 1.6 (hosts, network, storage); facility power =
  IT x PUE, where PUE depends on the site's climate, the season and the time of day.
- Links: RTT = fiber minimum x route factor + 0.1 ms of equipment, plus queueing delay whose
  scale q follows the daily load: within a minute a probe's RTT is that floor + q x Exp(1), so
  the minute's p50, p95, p99 and the count of replies within the tier budget all follow from
  it; rare loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pyarrow as pa

from computewatch.policy import Policy, load_policy
from computewatch.samples import TIME
from computewatch.sim.fleet import Fleet
from computewatch.sim.incidents import (
    AllocationTruth,
    GroundTruth,
    Incident,
    LinkTruth,
    UtilizationTruth,
)
from computewatch.sim.tenants import (
    CONTAINER,
    HELD_IDLE_SHARE,
    NAMESPACES,
    job_lifetime,
    job_pod,
    job_start,
    site_tenants,
)
from computewatch.topology import METRO_MAX_KM, Link, fiber_min_rtt_s, great_circle_km

__all__ = ["HOST_FACTOR", "History", "Segment", "simulate"]

HOST_FACTOR = 1.6
"""Server power per watt of accelerator power: CPUs, memory, NICs and storage draw the rest."""

_BUSY_LEVEL = 0.88
_BUSY_SD = 0.06
_BUSY_CLIP = (0.3, 1.0)
_FREE_LEVEL = 0.01
_FREE_SD = 0.01
_FREE_CLIP = (0.0, 0.05)
_EQUIPMENT_RTT_S = 0.1e-3
_ROUTE_FACTORS = (1.1, 2.0)
_CHINA_UTC_OFFSET_H = 8
_PROBES_PER_WINDOW = 60
_DEGRADED_FROM = 0.9
_TENANT_IDLE_CARDS = 4
_TENANT_IDLE_SPAN = (0.25, 0.85)


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _normal_pdf(z: float) -> float:
    return math.exp(-z * z / 2.0) / math.sqrt(2.0 * math.pi)


def _clipped_normal_mean(mu: float, sd: float, lo: float, hi: float) -> float:
    """E[clip(X, lo, hi)] for X ~ N(mu, sd): a busy card's mean utilization."""
    a, b = (lo - mu) / sd, (hi - mu) / sd
    inside = mu * (_normal_cdf(b) - _normal_cdf(a)) + sd * (_normal_pdf(a) - _normal_pdf(b))
    return lo * _normal_cdf(a) + hi * (1.0 - _normal_cdf(b)) + inside


def _folded_normal_mean(mu: float, sd: float) -> float:
    """E|X| for X ~ N(mu, sd): a free card's mean utilization (its clip is 4 sd away)."""
    return sd * math.sqrt(2.0 / math.pi) * math.exp(-mu * mu / (2 * sd * sd)) \
        + mu * (1.0 - 2.0 * _normal_cdf(-mu / sd))


def _dict_column(values: np.ndarray, codes: np.ndarray) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()),
                                          pa.array(values, pa.string()))


@dataclass(frozen=True)
class _Labels:
    """Per-row dictionary codes for one hour of a measurement, built once and reused."""

    columns: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (dictionary, codes per entity)

    def table(self, repeat: int) -> dict[str, pa.DictionaryArray]:
        return {name: _dict_column(values, np.tile(codes, repeat))
                for name, (values, codes) in self.columns.items()}


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inverse = np.unique(values.astype(str), return_inverse=True)
    return uniq, inverse.astype(np.int32)


@dataclass(frozen=True)
class Segment:
    """A span of one hour over which every card's occupancy is constant (`History.segments`):
    from minute ``first`` for ``minutes``; arrays of shape (1, devices) but ``drawn``."""

    first: int
    minutes: int
    drawn: np.ndarray
    running: np.ndarray
    holder: np.ndarray
    pod_key: np.ndarray
    valid: np.ndarray


class History:
    """The simulated telemetry of ``fleet`` over [start, start + hours) at ``step``."""

    def __init__(self, fleet: Fleet, start: datetime, hours: int, *,
                 step: timedelta = timedelta(minutes=1), policy: Policy | None = None,
                 link_mode: str = "full_mesh") -> None:
        if start.tzinfo is None:
            raise ValueError("simulation start must be timezone-aware")
        if hours < 1:
            raise ValueError(f"--hours must be at least 1, got {hours}")
        if timedelta(hours=1) % step:
            raise ValueError(f"step {step} must divide one hour")
        self.fleet = fleet
        self.start = start.astimezone(UTC)
        self.hours = hours
        self.step = step
        self.end = self.start + timedelta(hours=hours)
        self.steps_per_hour = int(timedelta(hours=1) / step)
        self.policy = policy or load_policy()
        topo = fleet.topology
        self.links: list[Link] = topo.links(link_mode)
        rng = np.random.default_rng([fleet.seed, 2])
        # Route factors 1.1-2.0, most near 1.35 (Beta(2, 5) stretched): real routes are longer
        # than the great circle, and the MIIT plan's 1.5 limit is not always met.
        lo, hi = _ROUTE_FACTORS
        self.route_factor = lo + (hi - lo) * rng.beta(2.0, 5.0, len(self.links))
        self._tenants = site_tenants(fleet)
        self._devices_cache: dict[int, np.ndarray] = {}
        self._lifetimes: tuple[np.ndarray, np.ndarray] | None = None
        self._pod_names: dict[tuple[int, int], str] = {}
        self._nodes, self._node_codes = np.unique(fleet.device_node.astype(str),
                                                  return_inverse=True)
        self.truth = self._plan(rng)
        self._alloc_truth = self._allocation_truth()
        self._count_allocation()
        self.truth.allocation.extend(self._alloc_truth.values())
        self._acc_labels = self._accelerator_labels()
        self._energy = rng.uniform(1e6, 5e8, fleet.n_devices)  # J since the driver loaded
        n_sites = len(fleet.sites)
        self._meter_energy = rng.uniform(1e10, 1e12, (3, n_sites))  # J since installed

    # -- plan -----------------------------------------------------------------------------
    def _plan(self, rng: np.random.Generator) -> GroundTruth:
        fleet, span = self.fleet, self.end - self.start

        def at(frac: float) -> datetime:
            steps = round(span * frac / self.step)
            return self.start + steps * self.step

        clusters = sorted({p.site.cluster for p in fleet.sites if p.site.cluster})
        idle_cluster = clusters[int(rng.integers(len(clusters)))] if clusters else None
        idle_sites = {p.site.id for p in fleet.sites if p.site.cluster == idle_cluster}
        others = [p.site.id for p in fleet.sites
                  if p.site.id not in idle_sites and not p.underused]
        cooling_site = others[int(rng.integers(len(others)))] if others else fleet.site_ids[0]
        incidents = []
        if idle_cluster:
            # Long enough (35% of the period: 8.4 h of a day) to pass the policy's sustained
            # 6-hour rule at hourly resolution.
            incidents.append(Incident("cluster_idle", "cluster", idle_cluster, at(0.35), at(0.70),
                                      {"sites": sorted(idle_sites)}))
        incidents.append(Incident("cooling_fault", "site", cooling_site, at(0.20), at(0.50),
                                  {"pue_increase": 0.35}))
        links = []
        inflation_limit = float(self.policy.latency.route_inflation_limit.value)
        for lk, rf in zip(self.links, self.route_factor, strict=True):
            base = lk.fiber_min_rtt_s * rf + _EQUIPMENT_RTT_S
            q = 0.01 * base + 0.05e-3
            links.append(LinkTruth(lk.a, lk.b, lk.tier.value, float(lk.fiber_min_rtt_s), float(rf),
                                   float(self.policy.budget_rtt_s(lk.tier)), float(base + 3.0 * q),
                                   float(base), inflation_limit))
        # The degraded link is one clearly within its budget before (typical p95 at most 90%
        # of it), so "within budget, then over it" is what the truth states, not a link that
        # grazes its budget at every daily peak.
        within = [i for i, lt in enumerate(links)
                  if lt.typical_p95_s <= _DEGRADED_FROM * lt.budget_rtt_s and lt.tier != "metro"
                  and lt.src not in idle_sites and lt.dst not in idle_sites]
        if within:
            k = within[int(rng.integers(len(within)))]
            lt = links[k]
            factor = max(1.5 * lt.budget_rtt_s / lt.typical_p95_s, 1.5)
            incidents.append(Incident("link_degraded", "link", lt.pair, at(0.55),
                                      at(0.75), {"rtt_factor": round(float(factor), 3),
                                                 "loss_ratio": 0.05, "tier": lt.tier}))
        busy = np.flatnonzero(~np.isin(fleet.device_site,
                                       [fleet.site_index[s] for s in idle_sites | {cooling_site}]))
        lost = int(busy[int(rng.integers(len(busy)))]) if len(busy) else 0
        incidents.append(Incident("device_lost", "device", str(fleet.device_id[lost]), at(0.70),
                                  self.end, {"site": fleet.sites[fleet.device_site[lost]].site.id,
                                             "node": str(fleet.device_node[lost]),
                                             "reason": "fell off the bus (XID 79)"}))
        tenant_idle = self._tenant_idle(idle_sites | {cooling_site}, at)
        if tenant_idle is not None:
            incidents.append(tenant_idle)
        underused = sorted(p.site.id for p in fleet.sites if p.underused)
        doy = self.start.timetuple().tm_yday
        seasonal = 0.06 * np.cos(2 * np.pi * (doy - 200) / 365.0)
        site_pue = {p.site.id: round(float(p.pue_base + seasonal), 4) for p in fleet.sites}
        targets = {p.site.id: float(self.policy.pue_target(p.region, p.site.id))
                   for p in fleet.sites}
        return GroundTruth(fleet.seed, self.start, self.end, self.step, incidents, underused,
                           links, site_pue, targets, self._utilization_truth(incidents),
                           _clipped_normal_mean(_BUSY_LEVEL, _BUSY_SD, *_BUSY_CLIP),
                           _folded_normal_mean(_FREE_LEVEL, _FREE_SD),
                           float(self.policy.utilization.sustained_hours.value),
                           self._city_rtt(links))

    def _tenant_idle(self, avoid: set[str], at) -> Incident | None:
        """One namespace holding `_TENANT_IDLE_CARDS` cards of one node idle (its own random
        stream, so the other incidents draw as before): at a site busy by design, outside
        the idled cluster and the cooling fault, on one of its largest sites."""
        f = self.fleet
        rng = np.random.default_rng([f.seed, 8])
        cards = np.bincount(f.device_site, minlength=len(f.sites))
        ok = [i for i, p in enumerate(f.sites) if p.site.id not in avoid and not p.underused
              and cards[i] >= 2 * _TENANT_IDLE_CARDS]
        if not ok:
            return None
        biggest = sorted(ok, key=lambda i: (-cards[i], i))[:max(1, len(ok) // 2)]
        s = biggest[int(rng.integers(len(biggest)))]
        nodes = sorted(set(f.device_node[f.device_site == s]))
        node = nodes[int(rng.integers(len(nodes)))]
        devices = sorted(str(d) for d in f.device_id[f.device_node == node])
        devices = devices[:_TENANT_IDLE_CARDS]
        tenants = self._tenants[s]
        namespace = NAMESPACES[tenants[int(rng.integers(len(tenants)))]]
        site = f.sites[s].site.id
        return Incident("tenant_idle", "namespace", namespace, at(_TENANT_IDLE_SPAN[0]),
                        at(_TENANT_IDLE_SPAN[1]),
                        {"site": site, "node": str(node), "devices": devices,
                         "cards": len(devices), "pod": f"{namespace}-reserved-"
                                                       f"{str(node).rsplit('-', 1)[-1]}",
                         "container": CONTAINER})

    def _allocation_truth(self) -> dict[tuple[int, int], AllocationTruth]:
        """Empty hour-by-hour truth per (site index, namespace index; -1 free)."""
        out = {}
        for s, tenants in enumerate(self._tenants):
            site = self.fleet.sites[s].site.id
            for ns in (-1, *tenants):
                out[(s, ns)] = AllocationTruth(site, NAMESPACES[ns] if ns >= 0 else "",
                                               [0.0] * self.hours, [0.0] * self.hours,
                                               [0.0] * self.hours)
        return out

    def _accelerator_labels(self) -> _Labels:
        f = self.fleet
        site_of = f.device_site
        cols = {
            "hub": np.array([p.site.hub or "" for p in f.sites], dtype=object)[site_of],
            "cluster": np.array([p.site.cluster or "" for p in f.sites], dtype=object)[site_of],
            "site": np.array(f.site_ids, dtype=object)[site_of],
            "node": f.device_node,
            "device": f.device_id,
            "index": f.device_index.astype(str),
            "vendor": f.device_vendor,
            "model": f.device_model,
            "ecosystem": f.device_ecosystem,
        }
        return _Labels({k: _codes(np.asarray(v)) for k, v in cols.items()})

    def _allocation_probability(self, hour: int) -> np.ndarray:
        """Per site: the chance that a card is allocated to a job in ``hour`` (no incident):
        its target over the busy level, shaped by the day and week at the hour's middle."""
        f = self.fleet
        targets = np.array([p.target_utilization for p in f.sites])
        amps = np.array([p.diurnal_amplitude for p in f.sites])
        times = self._times(hour)
        mid = times[len(times) // 2: len(times) // 2 + 1]
        return np.clip(targets / _BUSY_LEVEL * self._load_shape(mid, amps)[0], 0.0, 1.0)

    def _utilization_truth(self, incidents: list[Incident]) -> list[UtilizationTruth]:
        """Every site's, cluster's, hub's and province's expected hourly load (the truth)."""
        f, topo = self.fleet, self.fleet.topology
        n_s = len(f.sites)
        cards = np.bincount(f.device_site, minlength=n_s).astype(float)
        p = np.array([self._allocation_probability(h) for h in range(self.hours)])
        awake = np.ones_like(p)  # share of each hour a site's cards are not idled
        present = np.broadcast_to(cards, p.shape).copy()  # cards reporting, per hour
        for inc in incidents:
            share = np.array([self._active_mask(inc, self._times(h)).mean()
                              for h in range(self.hours)])
            if inc.kind == "cluster_idle":
                for site in inc.detail["sites"]:
                    awake[:, f.site_index[site]] -= share
            elif inc.kind == "device_lost":
                present[:, f.site_index[inc.detail["site"]]] -= share
            elif inc.kind == "tenant_idle":
                s = f.site_index[inc.detail["site"]]
                awake[:, s] -= share * inc.detail["cards"] / cards[s]
        allocated = p * awake
        var_count = present * p * (1 - p) * awake ** 2  # variance of the allocated count
        groups: dict[tuple[str, str], list[int]] = {}
        for i, prof in enumerate(f.sites):
            site = prof.site
            groups.setdefault(("site", site.id), []).append(i)
            if site.cluster:
                groups.setdefault(("cluster", site.cluster), []).append(i)
            if site.hub:
                groups.setdefault(("hub", site.hub), []).append(i)
            groups.setdefault(("province", site.province), []).append(i)
        out = []
        for (level, subject), idx in groups.items():
            n = present[:, idx].sum(axis=1)
            safe = np.where(n > 0, n, 1.0)
            share = (present[:, idx] * allocated[:, idx]).sum(axis=1) / safe
            var = var_count[:, idx].sum(axis=1) / safe ** 2
            region = None
            try:
                if level == "site":
                    region = topo.hub(topo.site(subject).hub).region
                elif level == "cluster":
                    region = topo.hub(topo.cluster(subject).hub).region
                elif level == "hub":
                    region = topo.hub(subject).region
            except KeyError:
                region = None
            out.append(UtilizationTruth(
                level, subject, float(self.policy.utilization_minimum(level, region, subject)),
                self.policy.utilization_definition_entry(level).value,
                [round(float(x), 4) for x in n], [round(float(x), 6) for x in share],
                [float(f"{x:.6g}") for x in var]))
        return out

    def _city_rtt(self, links: list[LinkTruth]) -> dict[str, dict[str, list[float]]]:
        """Per demand city and site: [lowest, highest] RTT of the city's best route to it."""
        topo = self.fleet.topology
        by_pair = {frozenset((lt.src, lt.dst)): lt for lt in links}
        out: dict[str, dict[str, list[float]]] = {}
        for city in topo.demand_cities:
            names = {city.name.casefold(), city.name_zh.casefold(), city.id.casefold()}
            anchors = [s.id for s in topo.sites
                       if s.city.strip().casefold() in names
                       or great_circle_km(s.lat, s.lon, city.lat, city.lon) <= METRO_MAX_KM]
            rows = {}
            for site in topo.sites:
                routes = [by_pair[frozenset((a, site.id))] for a in anchors
                          if a != site.id and frozenset((a, site.id)) in by_pair]
                if routes:
                    lo = min(lt.fiber_min_rtt_s * lt.route_factor + _EQUIPMENT_RTT_S
                             for lt in routes)
                    hi = min(lt.typical_p95_s for lt in routes)
                else:
                    fiber = fiber_min_rtt_s(topo.distance_km_to_point(site.id, city.lat,
                                                                      city.lon))
                    lo, hi = fiber * _ROUTE_FACTORS[0], fiber * _ROUTE_FACTORS[1] \
                        + _EQUIPMENT_RTT_S
                rows[site.id] = [float(f"{lo:.6g}"), float(f"{hi:.6g}")]
            out[city.id] = rows
        return out

    # -- time helpers ---------------------------------------------------------------------
    def _times(self, hour: int) -> np.ndarray:
        """Sample times of an hour as int64 microseconds since the epoch."""
        t0 = int((self.start + timedelta(hours=hour)).timestamp() * 1_000_000)
        step_us = int(self.step / timedelta(microseconds=1))
        return t0 + np.arange(self.steps_per_hour, dtype=np.int64) * step_us

    def _active_mask(self, inc: Incident, times_us: np.ndarray) -> np.ndarray:
        lo = int(inc.start.timestamp() * 1_000_000)
        hi = int(inc.end.timestamp() * 1_000_000)
        return (times_us >= lo) & (times_us < hi)

    def _load_shape(self, times_us: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
        """Diurnal x weekly demand factor, shape (times, sites)."""
        local_h = (times_us / 3.6e9 + _CHINA_UTC_OFFSET_H) % 24.0
        day = ((times_us / 8.64e10 + _CHINA_UTC_OFFSET_H / 24.0 + 3) % 7).astype(int)  # 0=Mon
        diurnal = 1.0 + amplitude[None, :] * np.sin(2 * np.pi * (local_h[:, None] - 9.0) / 24.0)
        weekend = np.where(day[:, None] >= 5, 1.0 - 0.5 * amplitude[None, :], 1.0)
        return diurnal * weekend

    # -- frames ---------------------------------------------------------------------------
    def chunks(self, first_hour: int = 0) -> Iterator[tuple[str, pa.Table]]:
        """Yield (measurement, frame) for every hour from ``first_hour``, in time order (the
        hours before it written as rollups first, `computewatch.sim.backfill`, so the energy
        counters go on from there)."""
        for hour in range(first_hour, self.hours):
            acc, site_it_w = self._accelerator_hour(hour)
            yield "accelerator", acc
            yield "facility_power", self._facility_hour(hour, site_it_w)
            if self.links:
                yield "link_latency", self._link_hour(hour)

    def _accelerator_hour(self, hour: int) -> tuple[pa.Table, np.ndarray]:
        f = self.fleet
        rng = np.random.default_rng([f.seed, 3, hour])
        times = self._times(hour)
        n_t, n_d = len(times), f.n_devices
        allocated, alloc, holder, pod_key = self._occupancy(hour, rng)
        busy = np.clip(rng.normal(_BUSY_LEVEL, _BUSY_SD, (n_t, n_d)), *_BUSY_CLIP)
        free = np.clip(np.abs(rng.normal(_FREE_LEVEL, _FREE_SD, (n_t, n_d))), *_FREE_CLIP)
        util = np.where(alloc, busy, free)
        power = f.device_idle_w + (f.device_tdp_w - f.device_idle_w) * util ** 0.85
        power = np.clip(power * rng.normal(1.0, 0.02, (n_t, n_d)), 0.0, f.device_tdp_w * 1.02)
        power = np.round(power, 1)  # what a driver reports; the counter integrates the same
        energy = self._energy + np.cumsum(power * self.step.total_seconds(), axis=0)
        self._energy = energy[-1].copy()
        ambient = np.array([p.ambient_c for p in f.sites])[f.device_site]
        temp = ambient + 8.0 + 45.0 * util + rng.normal(0.0, 1.5, (n_t, n_d))
        shown = np.round(util, 2)  # what NVML and npu-smi report: whole percent
        mem_share = np.where(allocated, rng.uniform(0.5, 0.95, n_d), 0.0)
        mem_used = 512 * 2**20 + mem_share * f.device_memory_bytes
        mem_used = np.broadcast_to(np.minimum(mem_used, f.device_memory_bytes), (n_t, n_d))
        health = np.ones((n_t, n_d))
        valid = self._valid(hour)
        for inc in self.truth.incidents:
            if inc.kind == "device_lost":
                mask = self._active_mask(inc, times)
                d = int(np.flatnonzero(f.device_id == inc.subject)[0])
                health[mask, d] = 0.0
                power[mask, d] = 0.0  # for the site's IT sum: a lost card draws ~nothing
        site_it_w = np.zeros((n_t, len(f.sites)))
        for s in range(len(f.sites)):  # a few dozen sites: one vector sum each
            site_it_w[:, s] = power[:, f.device_site == s].sum(axis=1)
        invalid = None if valid.all() else ~valid.ravel()
        self._record_utilization(hour, shown, holder, valid)

        def col(a: np.ndarray) -> pa.Array:
            return pa.array(np.ascontiguousarray(a).ravel(), pa.float64(), mask=invalid)

        table = pa.table({
            TIME: pa.array(np.repeat(times, n_d), pa.timestamp("us", tz="UTC")),
            **self._acc_labels.table(n_t),
            **self._allocation_labels(hour, holder, pod_key),
            "utilization_ratio": col(shown),
            "allocated": col((holder >= 0).astype(float)),
            "memory_used_bytes": col(np.broadcast_to(np.round(mem_used, -6), (n_t, n_d))),
            "memory_total_bytes": col(np.broadcast_to(f.device_memory_bytes, (n_t, n_d))),
            "power_watts": col(power),
            "energy_joules_total": col(np.round(energy, 1)),
            "temperature_celsius": col(np.round(temp)),  # whole degrees
            "health": pa.array(health.ravel(), pa.float64()),
        })
        return table, site_it_w * HOST_FACTOR

    def _holders(self, hour: int, times: np.ndarray, drawn: np.ndarray,
                 running: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(namespace index or -1 per sample, pod key per sample) for one hour: a running
        card is held by its drawn namespace, a card drawn to run nothing by it with
        `HELD_IDLE_SHARE`, a card whose job an idled cluster stopped by none; the
        ``tenant_idle`` incident's cards by its namespace (their own stream: the load's draws
        are untouched). Pod keys: namespace x nodes + node, or -2 - k for incident k's pod.
        So a pod never holds a card idle in a window it also ran a job in."""
        f = self.fleet
        rng = np.random.default_rng([f.seed, 7, hour])
        held = rng.random(f.n_devices) < HELD_IDLE_SHARE
        pick = rng.integers(0, 2**31 - 1, f.n_devices)
        width = max(len(t) for t in self._tenants)
        table = np.array([list(t) + [t[0]] * (width - len(t)) for t in self._tenants])
        counts = np.array([len(t) for t in self._tenants])
        ns = table[f.device_site, pick % counts[f.device_site]]
        holder = np.where(running | (held & ~drawn)[None, :], ns[None, :], -1)
        node_codes = self._node_codes
        pod_key = np.where(holder >= 0, holder * len(self._nodes) + node_codes[None, :], -1)
        for k, inc in enumerate(self.truth.incidents):
            if inc.kind == "tenant_idle":
                mask = self._active_mask(inc, times)
                if mask.any():
                    devs = self._incident_devices(inc)
                    running[np.ix_(mask, devs)] = False
                    holder[np.ix_(mask, devs)] = NAMESPACES.index(inc.subject)
                    pod_key[np.ix_(mask, devs)] = -2 - k
        return holder, pod_key

    def _allocation_labels(self, hour: int, holder: np.ndarray,
                           pod_key: np.ndarray) -> dict[str, pa.DictionaryArray]:
        """The namespace, pod and container of every sample ("" while no pod holds it).
        Pod keys are small integers, so their codes come from a presence table in O(n), not
        from sorting every sample (`np.unique`); names are made once per job (`job_pod`)."""
        abs_hour = int(self.start.timestamp() // 3600) + hour
        n_nodes = len(self._nodes)
        n_inc = len(self.truth.incidents)
        flat = pod_key.ravel() + (n_inc + 2)  # -2 - k .. keys -> 0 ..
        present = np.zeros(len(NAMESPACES) * n_nodes + n_inc + 2, dtype=bool)
        present[flat] = True
        keys = np.flatnonzero(present) - (n_inc + 2)
        remap = np.cumsum(present, dtype=np.int32) - 1
        codes = remap[flat]
        jobs = keys[keys >= 0]
        hours, phase = self._job_lifetimes()
        starts = job_start(abs_hour, hours[jobs], phase[jobs])
        names = self._pod_names
        pods = [""] * int((keys < 0).sum())
        for k, key in enumerate(keys[keys < 0]):
            pods[k] = "" if key == -1 else self.truth.incidents[-2 - int(key)].detail["pod"]
        for key, start in zip(jobs.tolist(), starts.tolist(), strict=True):
            name = names.get((key, start))
            if name is None:
                name = names[(key, start)] = job_pod(NAMESPACES[key // n_nodes],
                                                     str(self._nodes[key % n_nodes]), abs_hour)
            pods.append(name)
        held = holder.ravel() >= 0
        return {
            "pod": _dict_column(np.array(pods, dtype=object), codes),
            "namespace": _dict_column(np.array(("", *NAMESPACES), dtype=object),
                                      (holder.ravel() + 1).astype(np.int32)),
            "container": _dict_column(np.array(["", CONTAINER], dtype=object),
                                      held.astype(np.int32)),
        }

    def _job_lifetimes(self) -> tuple[np.ndarray, np.ndarray]:
        """(hours, phase) of the pods of every pod key (namespace x nodes + node), drawn
        once: `job_lifetime` per pair is a hash, too slow to call per sample or hour."""
        if self._lifetimes is None:
            pairs = [job_lifetime(ns, str(node)) for ns in NAMESPACES for node in self._nodes]
            arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
            self._lifetimes = (arr[:, 0], arr[:, 1])
        return self._lifetimes

    def _occupancy(self, hour: int, rng: np.random.Generator, times: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(drawn to run a job per card, running per sample, holder per sample, pod key per
        sample) of one hour; ``rng`` is the hour's load stream, of which this takes the first
        draw (so the plan can replay it without generating the telemetry). ``times``: some
        of the hour's sample times (default all of them; `segments` passes one per span)."""
        f = self.fleet
        times = self._times(hour) if times is None else times
        allocated = rng.random(f.n_devices) < self._allocation_probability(hour)[f.device_site]
        alloc = np.broadcast_to(allocated, (len(times), f.n_devices)).copy()
        for inc in self.truth.incidents:
            if inc.kind == "cluster_idle":
                mask = self._active_mask(inc, times)
                if mask.any():
                    alloc[np.ix_(mask, self._incident_devices(inc))] = False
        holder, pod_key = self._holders(hour, times, allocated, alloc)
        return allocated, alloc, holder, pod_key

    def segments(self, hour: int) -> list[Segment]:
        """The hour cut where an incident starts or ends: within each span every card's
        occupancy (drawn, running, holder, pod, written or not) is constant, so one sample
        time per span gives the whole hour exactly, at 1/60 of the cost of every minute
        (the allocation truth and the rollup backfill, `computewatch.sim.backfill`)."""
        times = self._times(hour)
        cuts = {0, len(times)}
        for inc in self.truth.incidents:
            mask = self._active_mask(inc, times)
            cuts.update((np.flatnonzero(np.diff(mask.astype(np.int8))) + 1).tolist())
        edges = sorted(cuts)
        out = []
        for a, b in pairwise(edges):
            at = times[a:a + 1]
            drawn, running, holder, pod_key = self._occupancy(
                hour, np.random.default_rng([self.fleet.seed, 3, hour]), at)
            out.append(Segment(a, b - a, drawn, running, holder, pod_key,
                               self._valid(hour, at)))
        return out

    def _incident_devices(self, inc: Incident) -> np.ndarray:
        """The card positions an incident touches (kept: string searches over every card
        cost more than the rest of an hour's occupancy)."""
        key = id(inc)
        got = self._devices_cache.get(key)
        if got is None:
            f = self.fleet
            if inc.kind == "cluster_idle":
                got = f.devices_of(inc.detail["sites"])
            elif inc.kind == "tenant_idle":
                got = np.flatnonzero(np.isin(f.device_id, inc.detail["devices"]))
            else:  # device_lost
                got = np.flatnonzero(f.device_id == inc.subject)[:1]
            self._devices_cache[key] = got
        return got

    def _valid(self, hour: int, times: np.ndarray | None = None) -> np.ndarray:
        """Per sample of the hour: False where the card is lost (it writes nothing)."""
        f = self.fleet
        times = self._times(hour) if times is None else times
        valid = np.ones((len(times), f.n_devices), dtype=bool)
        for inc in self.truth.incidents:
            if inc.kind == "device_lost":
                valid[self._active_mask(inc, times), self._incident_devices(inc)] = False
        return valid

    def _keys(self, holder: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Per written sample: site x (namespaces + 1) + namespace + 1 (0 for free)."""
        return (self.fleet.device_site[None, :] * (len(NAMESPACES) + 1) + holder + 1)[valid]

    def _count_allocation(self) -> None:
        """The truth's samples and held-idle samples per (site, namespace) and hour, replayed
        from the hours' first draws (cheap: no telemetry is generated), so a truth is whole
        whether or not its telemetry was read."""
        f = self.fleet
        width = len(NAMESPACES) + 1
        size = len(f.sites) * width
        for hour in range(self.hours):
            samples = np.zeros(size)
            idle = np.zeros(size)
            for seg in self.segments(hour):
                key = self._keys(seg.holder, seg.valid)
                samples += seg.minutes * np.bincount(key, minlength=size)
                idle += seg.minutes * np.bincount(
                    key, weights=((seg.holder >= 0) & ~seg.running)[seg.valid].astype(float),
                    minlength=size)
            for k in np.flatnonzero(samples):
                entry = self._alloc_truth[(int(k) // width, int(k) % width - 1)]
                entry.samples[hour] = float(samples[k])
                entry.idle_samples[hour] = float(idle[k])

    def _record_utilization(self, hour: int, util: np.ndarray, holder: np.ndarray,
                            valid: np.ndarray) -> None:
        """Add one hour's written utilization sums to the truth, per (site, namespace)."""
        width = len(NAMESPACES) + 1
        key = self._keys(holder, valid)
        usum = np.bincount(key, weights=util[valid], minlength=len(self.fleet.sites) * width)
        for k in np.flatnonzero(np.bincount(key, minlength=len(usum))):
            entry = self._alloc_truth[(int(k) // width, int(k) % width - 1)]
            entry.utilization_sum[hour] = float(usum[k])

    def _record_backfill(self, hour: int, usum: np.ndarray, holder: np.ndarray,
                         device: np.ndarray) -> None:
        """Add one backfilled hour's utilization sums (per row of card and pod) to the
        truth, per (site, namespace), as `_record_utilization` does for minute data."""
        width = len(NAMESPACES) + 1
        key = self.fleet.device_site[device] * width + holder + 1
        sums = np.bincount(key, weights=usum, minlength=len(self.fleet.sites) * width)
        for k in np.flatnonzero(np.bincount(key, minlength=len(sums))):
            entry = self._alloc_truth[(int(k) // width, int(k) % width - 1)]
            entry.utilization_sum[hour] = float(sums[k])

    def _facility_hour(self, hour: int, it_w: np.ndarray) -> pa.Table:
        f = self.fleet
        rng = np.random.default_rng([f.seed, 4, hour])
        times = self._times(hour)
        n_t, n_s = it_w.shape
        doy = (self.start + timedelta(hours=hour)).timetuple().tm_yday
        seasonal = 0.06 * np.cos(2 * np.pi * (doy - 200) / 365.0)  # cooling peaks in July
        # (the ground truth's site_pue uses the same term at the period's start)
        local_h = (times / 3.6e9 + _CHINA_UTC_OFFSET_H) % 24.0
        daily = 0.03 * np.sin(2 * np.pi * (local_h - 8.0) / 24.0)  # warmest mid-afternoon
        base = np.array([p.pue_base for p in f.sites])
        pue = base[None, :] + seasonal + daily[:, None] + rng.normal(0, 0.01, (n_t, n_s))
        for inc in self.truth.incidents:
            if inc.kind == "cooling_fault":
                mask = self._active_mask(inc, times)
                pue[mask, f.site_index[inc.subject]] += inc.detail["pue_increase"]
        pue = np.maximum(pue, 1.03)
        facility_w = it_w * pue
        cooling_w = (facility_w - it_w) * 0.8  # the rest is delivery losses and lighting
        watts = np.stack([facility_w, it_w, cooling_w])  # (meter, time, site)
        energy = self._meter_energy[:, None, :] + np.cumsum(
            watts * self.step.total_seconds(), axis=1)
        self._meter_energy = energy[:, -1, :].copy()
        scopes = np.array(["facility", "it", "cooling"])
        site_ids = np.array(f.site_ids, dtype=object)
        hubs = np.array([p.site.hub or "" for p in f.sites], dtype=object)
        clusters = np.array([p.site.cluster or "" for p in f.sites], dtype=object)
        # Row order: time, meter scope, site.
        scope_idx = np.tile(np.repeat(np.arange(3), n_s), n_t)
        site_idx = np.tile(np.arange(n_s), 3 * n_t)
        meter = np.char.add(np.char.add(site_ids[site_idx].astype(str), "-"), scopes[scope_idx])
        return pa.table({
            TIME: pa.array(np.repeat(times, 3 * n_s), pa.timestamp("us", tz="UTC")),
            "hub": pa.array(hubs[site_idx], pa.string()),
            "cluster": pa.array(clusters[site_idx], pa.string()),
            "site": pa.array(site_ids[site_idx], pa.string()),
            "meter": pa.array(meter, pa.string()),
            "scope": pa.array(scopes[scope_idx], pa.string()),
            "source": pa.array(np.full(len(site_idx), "simulator"), pa.string()),
            "watts": np.round(watts.transpose(1, 0, 2).ravel(), 1),
            "joules_total": np.round(energy.transpose(1, 0, 2).ravel(), 1),
        })

    def _link_hour(self, hour: int) -> pa.Table:
        f = self.fleet
        rng = np.random.default_rng([f.seed, 5, hour])
        times = self._times(hour)
        n_t, n_l = len(times), len(self.links)
        fiber = np.array([lk.fiber_min_rtt_s for lk in self.links])
        base = fiber * self.route_factor + _EQUIPMENT_RTT_S
        amps = np.array([f.sites[f.site_index[lk.a]].diurnal_amplitude for lk in self.links])
        load = self._load_shape(times, amps)  # (t, links)
        q = (0.01 * base + 0.05e-3) * (0.4 + 0.6 * load) * rng.lognormal(0, 0.25, (n_t, n_l))
        base_t = np.broadcast_to(base, (n_t, n_l)).copy()
        lost = np.where(rng.random((n_t, n_l)) < 0.002,
                        rng.integers(1, 4, (n_t, n_l)), 0).astype(float)
        for inc in self.truth.incidents:
            if inc.kind == "link_degraded":
                mask = self._active_mask(inc, times)
                k = next(i for i, lk in enumerate(self.links) if lk.pair == inc.subject)
                base_t[mask, k] *= inc.detail["rtt_factor"]
                q[mask, k] *= inc.detail["rtt_factor"]
                lost[mask, k] = rng.binomial(_PROBES_PER_WINDOW, inc.detail["loss_ratio"],
                                             int(mask.sum()))
        # Within a minute RTT = base + q x Exp(1): p50, p95 and p99 are base + 0.69 q, 3.0 q
        # and 4.6 q, and a reply is within the budget B with probability 1 - exp(-(B - base)/q).
        p50 = base_t + 0.69 * q
        p95 = base_t + 3.0 * q
        p99 = base_t + 4.6 * q
        budget = np.array([self.policy.budget_rtt_s(lk.tier) for lk in self.links])
        replies = _PROBES_PER_WINDOW - lost
        with np.errstate(over="ignore"):
            p_within = np.where(budget > base_t, -np.expm1(-(budget - base_t) / q), 0.0)
        within = rng.binomial(replies.astype(np.int64), np.clip(p_within, 0.0, 1.0))
        cols = {
            "rtt_min_seconds": base_t + 0.05 * q * rng.random((n_t, n_l)),
            "rtt_p50_seconds": p50, "rtt_p95_seconds": p95, "rtt_p99_seconds": p99,
            "rtt_max_seconds": p99 + q * rng.exponential(1.0, (n_t, n_l)),
            "loss_ratio": lost / _PROBES_PER_WINDOW,
            "jitter_seconds": 0.6 * q,
            "samples": np.full((n_t, n_l), float(_PROBES_PER_WINDOW)),
            "replies_within_budget": within.astype(float),
            "fiber_min_seconds": np.broadcast_to(fiber, (n_t, n_l)),
            "budget_seconds": np.broadcast_to(budget, (n_t, n_l)),
        }
        hub_of = {p.site.id: p.site.hub or "" for p in f.sites}
        labels = {
            "src_site": [lk.a for lk in self.links], "dst_site": [lk.b for lk in self.links],
            "src_hub": [hub_of[lk.a] for lk in self.links],
            "dst_hub": [hub_of[lk.b] for lk in self.links],
            "tier": [lk.tier.value for lk in self.links], "probe": ["udp"] * n_l,
        }
        return pa.table({
            TIME: pa.array(np.repeat(times, n_l), pa.timestamp("us", tz="UTC")),
            **{k: _Labels({k: _codes(np.array(v, dtype=object))}).table(n_t)[k]
               for k, v in labels.items()},
            **{k: np.round(np.ascontiguousarray(v).ravel(), 7) for k, v in cols.items()},
        })


def simulate(fleet: Fleet, *, hours: int = 24, end: datetime | None = None,
             step: timedelta = timedelta(minutes=1), policy: Policy | None = None) -> History:
    """History ending at ``end`` (default: now, floored to the minute)."""
    if end is None:
        end = datetime.now(UTC).replace(second=0, microsecond=0)
    return History(fleet, end - timedelta(hours=hours), hours, step=step, policy=policy)
