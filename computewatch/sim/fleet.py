"""The simulated national fleet: sites from the topology, devices and their load profiles.

Everything random is drawn from ``numpy.random.default_rng`` seeded with ``seed``, so one
seed always gives the same fleet. Devices live in flat numpy arrays (one entry per
accelerator) because the history generator works on whole columns, never on one device at a
time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from computewatch.sim.hardware import spec_for
from computewatch.topology import AcceleratorInventory, Meter, Site, Topology

__all__ = ["DEVICES_PER_NODE", "Fleet", "SiteProfile", "build_fleet", "simulated_meters"]

DEVICES_PER_NODE = 8
"""HGX-class GPU servers and Atlas 800 NPU servers both carry 8 accelerators."""

# Share of sites configured as chronically underused, by region: the 2021 上架率 survey put
# the northwest at 34% and the southwest at 41% against 65-68% in the east.
_UNDERUSED_SHARE = {"east": 0.15, "west": 0.35}


def simulated_meters(site_id: str) -> list[Meter]:
    """The meters the simulator writes for a site, as its topology declares them.

    One incomer (``<site>-facility``), one IT meter at the UPS output (``<site>-it``, so the
    site's PUE is ISO/IEC 30134-2 category 1) and one cooling sub-meter (``<site>-cooling``),
    each an energy counter read every minute (`computewatch.sim.history`).
    """
    return [Meter(id=f"{site_id}-facility", scope="facility", point="incomer", interval=60.0),
            Meter(id=f"{site_id}-it", scope="it", point="ups_output", interval=60.0),
            Meter(id=f"{site_id}-cooling", scope="cooling", point="feeder", interval=60.0)]


@dataclass(frozen=True, slots=True)
class SiteProfile:
    """How a simulated site behaves: its load level, daily swing and cooling efficiency."""

    site: Site
    region: str
    target_utilization: float
    underused: bool
    diurnal_amplitude: float
    pue_base: float
    ambient_c: float


@dataclass(frozen=True)
class Fleet:
    """Sites and devices of the simulated network; device arrays share one index."""

    topology: Topology
    seed: int
    sites: tuple[SiteProfile, ...]
    device_site: np.ndarray  # int index into sites
    device_node: np.ndarray  # str
    device_id: np.ndarray  # str, unique
    device_index: np.ndarray  # int, position in its node
    device_vendor: np.ndarray
    device_model: np.ndarray
    device_ecosystem: np.ndarray
    device_tdp_w: np.ndarray
    device_idle_w: np.ndarray
    device_memory_bytes: np.ndarray
    device_clock_hz: np.ndarray
    site_index: dict[str, int] = field(default_factory=dict)

    @property
    def n_devices(self) -> int:
        return len(self.device_id)

    @property
    def site_ids(self) -> list[str]:
        return [p.site.id for p in self.sites]

    def devices_of(self, site_ids: list[str]) -> np.ndarray:
        """Device positions (indexes into the arrays) at the given sites."""
        idx = [self.site_index[s] for s in site_ids]
        return np.flatnonzero(np.isin(self.device_site, idx))


def _pick_sites(topology: Topology, n: int | None, rng: np.random.Generator) -> list[Site]:
    """Take n sites so every cluster and hub keeps some; clone near clusters beyond the list."""
    sites = list(topology.sites)
    if n is None or n == len(sites):
        return sites
    if n < 1:
        raise ValueError(f"--sites must be at least 1, got {n}")
    if n < len(sites):
        # Round-robin over clusters (and hubs for sites outside clusters) so coverage stays.
        groups: dict[str, list[Site]] = {}
        for s in sites:
            groups.setdefault(s.cluster or f"hub:{s.hub}", []).append(s)
        picked: list[Site] = []
        ordered = sorted(groups.values(), key=lambda g: g[0].cluster is None)  # clusters first
        while len(picked) < n:
            for g in ordered:
                if g and len(picked) < n:
                    picked.append(g.pop(0))
        return picked
    extra = []
    for k in range(n - len(sites)):
        base = sites[k % len(sites)]
        dlat, dlon = rng.uniform(-0.2, 0.2, 2)
        extra.append(base.model_copy(update={
            "id": f"{base.id}-x{k // len(sites) + 1}",
            "name": f"{base.name} (simulated extension {k // len(sites) + 1})",
            "lat": float(np.clip(base.lat + dlat, -90, 90)),
            "lon": float(np.clip(base.lon + dlon, -180, 180)),
            "role": "regional" if base.role == "hub" else base.role,
            "nodes": [],
        }))
    return sites + extra


def _declaring_simulated_meters(sites: list[Site]) -> list[Site]:
    """Each site with the meters the simulator writes for it, so the fleet's topology
    declares exactly what the history holds (a clone's meters carry its own id)."""
    out = []
    for s in sites:
        meters = simulated_meters(s.id)
        out.append(s if s.meters == meters else s.model_copy(update={"meters": meters}))
    return out


def _scaled_inventory(sites: list[Site], total: int | None) -> list[list[AcceleratorInventory]]:
    """Scale every site's inventory so the fleet holds ``total`` cards (largest remainder)."""
    inventories = [list(s.accelerators) for s in sites]
    have = sum(i.count for inv in inventories for i in inv)
    if total is None or have == 0:
        return inventories
    if total < 1:
        raise ValueError(f"--accelerators must be at least 1, got {total}")
    flat = [(si, ii, item) for si, inv in enumerate(inventories) for ii, item in enumerate(inv)]
    exact = [item.count * total / have for _, _, item in flat]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(flat)), key=lambda k: exact[k] - counts[k], reverse=True)
    for k in order[: total - sum(counts)]:
        counts[k] += 1
    for (si, ii, item), c in zip(flat, counts, strict=True):
        inventories[si][ii] = item.model_copy(update={"count": c})
    return inventories


def _profile(site: Site, region: str, rng: np.random.Generator) -> SiteProfile:
    underused = bool(rng.random() < _UNDERUSED_SHARE.get(region, 0.2))
    # Underused sites sit at the 20-30% reported at local AI centers.
    target = rng.uniform(0.18, 0.27) if underused else rng.uniform(0.55, 0.85)
    # Eastern and edge sites serve interactive demand (strong day/night swing); western
    # sites run batch training and back-office work (flatter).
    amplitude = 0.30 if site.role == "edge" else (0.20 if region == "east" else 0.08)
    # Cooler, drier western hubs run lower PUE; dense city edge sites the highest.
    if site.role == "edge":
        pue = rng.uniform(1.38, 1.55)
    elif region == "west":
        pue = rng.uniform(1.12, 1.22)
    else:
        pue = rng.uniform(1.20, 1.34)
    ambient = 12.0 + 0.45 * (40.0 - site.lat)  # warmer in the south
    return SiteProfile(site, region, float(target), underused, amplitude, float(pue), ambient)


def build_fleet(topology: Topology, *, sites: int | None = None,
                accelerators: int | None = None, seed: int = 0) -> Fleet:
    """Lay out the simulated fleet; the same arguments always give the same fleet."""
    rng = np.random.default_rng([seed, 1])
    chosen = _declaring_simulated_meters(_pick_sites(topology, sites, rng))
    if chosen != list(topology.sites):
        # The fleet's own topology, so links and lookups cover exactly its sites.
        ids = {s.id for s in chosen}
        topology = Topology(
            hubs=topology.hubs, clusters=topology.clusters,
            demand_cities=topology.demand_cities, sites=chosen,
            links=[o for o in topology.link_overrides if o.a in ids and o.b in ids]
        ).with_tier_distances(*topology.tier_distances_km)
    inventories = _scaled_inventory(chosen, accelerators)
    profiles = []
    for site in chosen:
        region = topology.region_of(site.id)
        profiles.append(_profile(site, region, rng))
    cols: dict[str, list] = {k: [] for k in (
        "site", "node", "id", "index", "vendor", "model", "eco", "tdp", "idle", "mem", "clk")}
    for si, (site, inv) in enumerate(zip(chosen, inventories, strict=True)):
        n_in_site = 0
        for item in inv:
            spec = spec_for(item.model)
            kind = "gpu" if item.vendor == "nvidia" else "npu"
            for k in range(item.count):
                pos = n_in_site + k
                node = f"{site.id}-n{pos // DEVICES_PER_NODE:04d}"
                cols["site"].append(si)
                cols["node"].append(node)
                cols["id"].append(f"{node}-{kind}{pos % DEVICES_PER_NODE}")
                cols["index"].append(pos % DEVICES_PER_NODE)
                cols["vendor"].append(item.vendor)
                cols["model"].append(item.model)
                cols["eco"].append(item.ecosystem)
                cols["tdp"].append(spec.tdp_w)
                cols["idle"].append(spec.idle_w)
                cols["mem"].append(spec.memory_bytes)
                cols["clk"].append(spec.max_clock_hz)
            n_in_site += item.count
    return Fleet(
        topology=topology, seed=seed, sites=tuple(profiles),
        device_site=np.asarray(cols["site"], dtype=np.int32),
        device_node=np.asarray(cols["node"], dtype=object),
        device_id=np.asarray(cols["id"], dtype=object),
        device_index=np.asarray(cols["index"], dtype=np.int16),
        device_vendor=np.asarray(cols["vendor"], dtype=object),
        device_model=np.asarray(cols["model"], dtype=object),
        device_ecosystem=np.asarray(cols["eco"], dtype=object),
        device_tdp_w=np.asarray(cols["tdp"], dtype=np.float64),
        device_idle_w=np.asarray(cols["idle"], dtype=np.float64),
        device_memory_bytes=np.asarray(cols["mem"], dtype=np.float64),
        device_clock_hz=np.asarray(cols["clk"], dtype=np.float64),
        site_index={p.site.id: i for i, p in enumerate(profiles)},
    )
