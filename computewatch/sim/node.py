"""One simulated server, read live: what its drivers would report at a given moment.

The fake NVML (`computewatch.sim.fake_nvml`) and the fake ``npu-smi``
(`computewatch.sim.fake_npusmi`) read their numbers from a `NodeSim`, so the collectors run
their real code path against a node of the simulated fleet. The load model is the history
generator's (site target, diurnal and weekly swing, hourly job allocation), evaluated for one
node and one instant instead of a whole fleet and an hour.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from computewatch.sim.fleet import DEVICES_PER_NODE, Fleet, SiteProfile
from computewatch.sim.hardware import AcceleratorSpec, spec_for
from computewatch.sim.tenants import CONTAINER, HELD_IDLE_SHARE, NAMESPACES, job_pod, site_tenants

__all__ = ["MIXED", "Allocation", "DeviceReading", "NodeSim", "mixed_node", "node_from_fleet",
           "simulated_node"]

_CHINA_UTC_OFFSET_H = 8


def _unit(*parts: object) -> float:
    """A deterministic uniform number in [0, 1) from the given parts."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class DeviceReading:
    """What a driver reports for one device at one instant; None where it cannot say."""

    index: int
    vendor: str  # nvidia | huawei
    model: str
    uuid: str
    pci_bus_id: str
    lost: bool = False
    healthy: bool = True
    utilization: float | None = None
    memory_utilization: float | None = None
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None
    power_w: float | None = None
    energy_j: float | None = None
    temperature_c: float | None = None
    memory_temperature_c: float | None = None
    sm_clock_hz: float | None = None
    memory_clock_hz: float | None = None
    # NVIDIA only: what NVML's memory v2, media-engine, GPM, NVLink and process calls report.
    memory_reserved_bytes: float | None = None
    encoder_utilization: float | None = None
    decoder_utilization: float | None = None
    graphics_active: float | None = None
    sm_active: float | None = None
    tensor_active: float | None = None
    dram_active: float | None = None
    pcie_tx_bytes_per_s: float | None = None
    pcie_rx_bytes_per_s: float | None = None
    nvlink_tx_bytes_per_s: float | None = None
    nvlink_rx_bytes_per_s: float | None = None
    nvlink_tx_bytes: float | None = None  # data bytes since boot, all links
    nvlink_rx_bytes: float | None = None
    processes: list[tuple[int, str, int]] = field(default_factory=list)  # pid, name, bytes


@dataclass(frozen=True, slots=True)
class Allocation:
    """One device a pod holds, as the kubelet's PodResources API would list it: the device
    plugin's resource name and device id (the GPU UUID; the Ascend plugin's ``Ascend910-N``
    style id), and the pod, namespace and container holding it."""

    vendor: str
    index: int
    resource: str
    device_id: str
    namespace: str
    pod: str
    container: str


@dataclass
class _Device:
    index: int
    vendor: str
    spec: AcceleratorSpec
    uuid: str
    pci_bus_id: str
    energy_at_boot_j: float


@dataclass
class NodeSim:
    """A server with its accelerators; `readings(t)` is what its drivers say at ``t``."""

    node: str
    profile: SiteProfile
    devices: list[_Device]
    seed: int = 0
    driver_version: str = "550.127.08"
    cann_version: str = "24.1.RC2"
    boot: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    lost: set[tuple[str, int]] = field(default_factory=set)  # (vendor, index)
    unhealthy: set[tuple[str, int]] = field(default_factory=set)
    npu_layout: str | None = None  # the fake npu-smi's layout: 910b | 310p | a3 (None: by model)
    tenants: tuple[str, ...] = ()  # namespaces of the node's site (computewatch.sim.tenants)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def site(self) -> str:
        return self.profile.site.id

    @property
    def labels(self) -> dict[str, str]:
        """The placement labels an agent on this node is configured with."""
        s = self.profile.site
        return {"node": self.node, "site": s.id, "cluster": s.cluster or "", "hub": s.hub or ""}

    def of_vendor(self, vendor: str) -> list[_Device]:
        return [d for d in self.devices if d.vendor == vendor]

    def lose(self, index: int, vendor: str = "nvidia") -> None:
        """The device falls off the bus: NVML answers 'GPU is lost', npu-smi health Alarm."""
        self.lost.add((vendor, index))

    def readings_of(self, vendor: str, t: datetime) -> list[DeviceReading]:
        """One vendor's readings at ``t``, computed once per moment and node state.

        Both fake drivers read through here: a collector's dozens of driver calls in one
        cycle see one consistent snapshot, as from a real driver, at the cost of one.
        """
        cache = self._cache
        if cache.get("t") != t or cache.get("lost") != self.lost \
                or cache.get("unhealthy") != self.unhealthy:
            self._cache = {"t": t, "lost": set(self.lost), "unhealthy": set(self.unhealthy),
                           "all": self.readings(t)}
        mine = self._cache.get(vendor)
        if mine is None:  # the list is the cache's: callers get the same snapshot objects
            mine = self._cache[vendor] = [r for r in self._cache["all"] if r.vendor == vendor]
        return mine

    def _running(self, dev: _Device, t: datetime) -> bool:
        """Whether a job runs on ``dev`` in ``t``'s hour (the history's hourly draw)."""
        p = self.profile
        ts = t.timestamp()
        local_h = (ts / 3600.0 + _CHINA_UTC_OFFSET_H) % 24.0
        weekday = int((ts / 86400.0 + _CHINA_UTC_OFFSET_H / 24.0 + 3) % 7)
        shape = 1.0 + p.diurnal_amplitude * math.sin(2 * math.pi * (local_h - 9.0) / 24.0)
        if weekday >= 5:
            shape *= 1.0 - 0.5 * p.diurnal_amplitude
        alloc_p = min(1.0, p.target_utilization / 0.88 * shape)
        return _unit(self.seed, self.node, dev.vendor, dev.index, int(ts // 3600)) < alloc_p

    def allocations(self, t: datetime | None = None) -> list[Allocation]:
        """The devices pods hold at ``t`` (the tenants model of `computewatch.sim.tenants`):
        a running card is held by a namespace of the site, an idle one with
        `HELD_IDLE_SHARE`, and one pod per namespace, node and job (`job_pod`: 6 to 72 h)
        holds its cards. Lost devices are left out (the kubelet's plugin reports them
        unhealthy)."""
        t = t or datetime.now(UTC)
        if not self.tenants:
            return []
        hour = int(t.timestamp() // 3600)
        out = []
        for d in self.devices:
            if (d.vendor, d.index) in self.lost:
                continue
            held = self._running(d, t) or _unit(self.seed, self.node, d.vendor, d.index, hour,
                                                "held") < HELD_IDLE_SHARE
            if not held:
                continue
            ns = self.tenants[int(_unit(self.seed, self.node, d.vendor, d.index, hour, "ns")
                                  * len(self.tenants))]
            if d.vendor == "nvidia":
                resource, dev_id = "nvidia.com/gpu", d.uuid
            else:
                chip = "Ascend310P" if "310P" in d.spec.model else "Ascend910"
                resource, dev_id = f"huawei.com/{chip}", f"{chip}-{d.index}"
            out.append(Allocation(d.vendor, d.index, resource, dev_id, ns,
                                  job_pod(ns, self.node, hour), CONTAINER))
        return out

    def _utilization(self, dev: _Device, t: datetime) -> float:
        ts = t.timestamp()
        allocated = self._running(dev, t)
        noise = _unit(self.seed, self.node, dev.vendor, dev.index, int(ts // 15)) - 0.5
        if allocated:
            return min(1.0, max(0.3, 0.88 + 0.12 * noise))
        return max(0.0, 0.01 + 0.02 * noise)

    def readings(self, t: datetime | None = None) -> list[DeviceReading]:
        t = t or datetime.now(UTC)
        up_s = max(0.0, (t - self.boot).total_seconds())
        out = []
        for d in self.devices:
            r = DeviceReading(d.index, d.vendor, d.spec.model, d.uuid, d.pci_bus_id)
            if (d.vendor, d.index) in self.lost:
                r.lost, r.healthy = True, False
                out.append(r)
                continue
            u = self._utilization(d, t)
            spec = d.spec
            power = spec.idle_w + (spec.tdp_w - spec.idle_w) * u ** 0.85
            busy = u > 0.2
            r.healthy = (d.vendor, d.index) not in self.unhealthy
            r.utilization = round(u, 2)
            r.memory_utilization = round(u * 0.6, 2)
            r.memory_total_bytes = spec.memory_bytes
            r.memory_used_bytes = float(int((512 * 2**20 + (0.8 * spec.memory_bytes
                                                              if busy else 0.0)) // 2**20)
                                        * 2**20)
            r.power_w = round(power, 1)
            # Energy since boot: the mean power of the node's load so far, plus a per-card offset.
            r.energy_j = round(d.energy_at_boot_j + up_s * (spec.idle_w + 0.5 * (
                spec.tdp_w - spec.idle_w) * self.profile.target_utilization), 3)
            r.temperature_c = round(self.profile.ambient_c + 8.0 + 45.0 * u)
            r.memory_temperature_c = round(self.profile.ambient_c + 10.0 + 40.0 * u)
            r.sm_clock_hz = spec.max_clock_hz if busy else round(spec.max_clock_hz * 0.25, -6)
            r.memory_clock_hz = spec.memory_clock_hz
            if d.vendor == "nvidia":
                self._nvidia_activity(r, d, r.utilization, up_s)
            out.append(r)
        return out


    def _nvidia_activity(self, r: DeviceReading, d: _Device, u: float, up_s: float) -> None:
        """What a loaded NVIDIA GPU adds: its driver's reservation, media engines, profiling
        ratios, PCIe and NVLink traffic, and the training process holding its memory."""
        total = d.spec.memory_bytes
        r.memory_reserved_bytes = float(round(total * 0.004 / 2**20) * 2**20)
        r.encoder_utilization = round(0.02 * u, 2)
        r.decoder_utilization = round(0.1 * u, 2)
        r.graphics_active = round(u, 3)
        r.sm_active = round(0.9 * u, 3)
        r.tensor_active = round(0.6 * u, 3) if u > 0.2 else 0.0
        r.dram_active = round(0.5 * u, 3)
        r.pcie_tx_bytes_per_s = float(round(2e9 * u))
        r.pcie_rx_bytes_per_s = float(round(4e9 * u))
        r.nvlink_tx_bytes_per_s = float(round(40e9 * u))
        r.nvlink_rx_bytes_per_s = float(round(38e9 * u))
        mean = self.profile.target_utilization
        r.nvlink_tx_bytes = float(round(up_s * 40e9 * mean / 1024) * 1024)
        r.nvlink_rx_bytes = float(round(up_s * 38e9 * mean / 1024) * 1024)
        if u > 0.2:
            pid = 4000 + int(_unit(self.seed, self.node, d.index, "pid") * 60000)
            r.processes = [(pid, "python3", int(0.8 * total) // 2**20 * 2**20)]


def _uuid(seed: int, node: str, index: int) -> str:
    h = hashlib.blake2b(f"{seed}/{node}/{index}".encode(), digest_size=16).hexdigest()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _device(seed: int, node: str, index: int, vendor: str, model: str) -> _Device:
    bus = 0x18 + 0x10 * index
    pci = f"00000000:{bus:02X}:00.0" if vendor == "nvidia" else f"0000:{bus:02X}:00.0"
    return _Device(index, vendor, spec_for(model),
                   _uuid(seed, node, index) if vendor == "nvidia" else "", pci,
                   round(_unit(seed, node, index, "boot") * 5e8, 3))


def node_from_fleet(fleet: Fleet, node: str) -> NodeSim:
    """The fleet's node ``node`` (e.g. ``bj-ai-n0003``), with its eight accelerators."""
    positions = [i for i, n in enumerate(fleet.device_node) if n == node]
    if not positions:
        examples = ", ".join(sorted(set(fleet.device_node[:3])))
        raise KeyError(f"no node {node!r} in the simulated fleet (e.g. {examples})")
    profile = fleet.sites[fleet.device_site[positions[0]]]
    devices = [_device(fleet.seed, node, int(fleet.device_index[i]), str(fleet.device_vendor[i]),
                       str(fleet.device_model[i])) for i in positions]
    return NodeSim(node, profile, devices, seed=fleet.seed,
                   tenants=_tenants_of(fleet, fleet.device_site[positions[0]]))


def _tenants_of(fleet: Fleet, site_index: int) -> tuple[str, ...]:
    return tuple(NAMESPACES[i] for i in site_tenants(fleet)[int(site_index)])


def mixed_node(fleet: Fleet, *, gpus: int = DEVICES_PER_NODE, npus: int = DEVICES_PER_NODE,
               gpu_model: str = "H100", npu_model: str = "Ascend 910B") -> NodeSim:
    """A test node holding both kinds side by side (GPUs first, then NPUs)."""
    profile = max(fleet.sites, key=lambda p: p.site.accelerator_count)
    node = f"{profile.site.id}-mixed0"
    devices = [_device(fleet.seed, node, i, "nvidia", gpu_model) for i in range(gpus)]
    devices += [_device(fleet.seed, node, i, "huawei", npu_model) for i in range(npus)]
    return NodeSim(node, profile, devices, seed=fleet.seed,
                   tenants=_tenants_of(fleet, fleet.sites.index(profile)))


MIXED = "mixed"
"""`--simulate` without a node name: a node with 8 GPUs and 8 NPUs side by side."""


def simulated_node(name: str = MIXED, *, seed: int = 0) -> NodeSim:
    """The node a ``--simulate[=NODE]`` flag names, from the fleet of the shipped topology."""
    from computewatch.sim.fleet import build_fleet
    from computewatch.topology import load_topology

    fleet = build_fleet(load_topology(), seed=seed)
    return mixed_node(fleet) if name == MIXED else node_from_fleet(fleet, name)
