"""Hubs, clusters, sites and the links between them; the latency tier of any site pair.

The national network (东数西算) is 8 hub nodes holding 10 data-center clusters; sites are
the places telemetry comes from. Everything that ranks, maps or budgets by place (latency
tiers, utilization by hub, PUE by region) asks this module, so the shipped
`data/topology.yaml` is validated strictly and every error names its file, line and field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from computewatch.config import (
    ConfigError,
    PathError,
    load_yaml_model,
    load_yaml_model_from_text,
    suggest_known,
)
from computewatch.durations import Duration

__all__ = [
    "EARTH_RADIUS_KM",
    "FIBER_RTT_S_PER_KM",
    "MAX_ACCELERATORS_PER_MODEL",
    "METER_CATEGORY",
    "METER_POINTS",
    "METRO_MAX_KM",
    "REGIONAL_MAX_KM",
    "AcceleratorInventory",
    "City",
    "Cluster",
    "ConfigError",
    "DemandCity",
    "Hub",
    "Link",
    "LinkOverride",
    "Meter",
    "Node",
    "Province",
    "Site",
    "Tier",
    "Topology",
    "fiber_min_rtt_s",
    "great_circle_km",
    "link_pair",
    "load_topology",
]

EARTH_RADIUS_KM = 6371.0088
"""IUGG mean Earth radius; the usual choice for haversine distances."""

FIBER_RTT_S_PER_KM = 10e-6
"""Light in fiber travels ~200,000 km/s: 5 µs per km one way, 10 µs per km round trip."""

METRO_MAX_KM = 50.0
"""Sites closer than this are one metro even in different cities: the great-circle fiber RTT
is then <= 0.5 ms, and a route at the 1.5x inflation the MIIT plan allows (0.75 ms) plus
0.25 ms of equipment still meets the 1 ms metro budget. The shipped policy states the same
distance (``latency.metro_max_km``); a policy may change it (`Topology.with_tier_distances`)."""

REGIONAL_MAX_KM = 300.0
"""Sites of different hubs (or outside every hub) closer than this are one region: a route at
the 1.5x inflation limit over 300 km takes 4.5 ms, which leaves 0.5 ms of equipment delay
within the 5 ms regional budget. Beyond it only sites of one hub are regional; the rest are
national. The shipped policy states the same distance (``latency.regional_max_km``)."""

_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_NODE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")  # node ids are often hostnames


def _check_id(value: str) -> str:
    if not _ID_PATTERN.match(value):
        raise ValueError(f"must be a lowercase id matching {_ID_PATTERN.pattern}")
    return value


def _check_node_id(value: str) -> str:
    if not _NODE_ID_PATTERN.match(value):
        raise ValueError(f"must be a lowercase host-style id matching {_NODE_ID_PATTERN.pattern}")
    return value


_HAN = re.compile(r"[\u4e00-\u9fff]")


def _check_chinese(value: str) -> str:
    if value != value.strip() or not _HAN.search(value):
        raise ValueError("must be the place's Chinese name (Chinese characters, no surrounding "
                         "spaces)")
    return value


Id = Annotated[str, AfterValidator(_check_id)]
ChineseName = Annotated[str, AfterValidator(_check_chinese)]
"""A place's name in Chinese (``name_zh``): what zh-CN output shows for it."""
NodeId = Annotated[str, AfterValidator(_check_node_id)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Region = Literal["east", "west"]
Role = Literal["hub", "regional", "edge"]
LinkMode = Literal["full_mesh", "hub_and_spoke"]


class Tier(StrEnum):
    """Latency circles of the national plan: 1 ms city, 5 ms region, 20 ms cross-hub."""

    METRO = "metro"
    REGIONAL = "regional"
    NATIONAL = "national"


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on a sphere of radius EARTH_RADIUS_KM."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def fiber_min_rtt_s(km: float) -> float:
    """Lowest possible round-trip time over `km` of fiber; real routes are longer."""
    return km * FIBER_RTT_S_PER_KM


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hub(_Model):
    """One of the 8 national hub nodes (枢纽节点)."""

    id: Id
    name: str
    name_zh: ChineseName
    region: Region
    provinces: list[str]
    lat: Latitude
    lon: Longitude


class Cluster(_Model):
    """A data-center cluster (集群) inside a hub; `zones` are its starting zones."""

    id: Id
    name: str
    name_zh: ChineseName
    hub: Id
    province: str
    lat: Latitude
    lon: Longitude
    zones: list[str] = []


class Province(_Model):
    """A province-level division named by hubs, clusters, cities and sites (English ``name``
    as they write it), with its Chinese name."""

    name: str
    name_zh: ChineseName


class City(_Model):
    """A city a site names that is not a demand city, with its Chinese name."""

    name: str
    name_zh: ChineseName
    province: str


class DemandCity(_Model):
    """A city whose users the latency circles are drawn around; `hub` serves it."""

    id: Id
    name: str
    name_zh: ChineseName
    province: str
    hub: Id
    lat: Latitude
    lon: Longitude


MAX_ACCELERATORS_PER_MODEL = 1_000_000
"""Most accelerators of one model at one site: several times the largest cluster built so far,
and small enough that no typo (``count: 1e29``) reaches the simulator or a report."""


class AcceleratorInventory(_Model):
    """How many accelerators of one model a site or node holds."""

    vendor: Literal["nvidia", "huawei"]
    model: str = Field(min_length=1)
    count: int = Field(ge=0, le=MAX_ACCELERATORS_PER_MODEL)

    @property
    def ecosystem(self) -> Literal["cuda", "cann"]:
        """Software stack the cards run: CUDA for NVIDIA, CANN for Huawei Ascend."""
        return "cuda" if self.vendor == "nvidia" else "cann"


def _by_model(inventory: list[AcceleratorInventory]) -> dict[tuple[str, str], int]:
    totals: dict[tuple[str, str], int] = {}
    for item in inventory:
        key = (item.vendor, item.model)
        totals[key] = totals.get(key, 0) + item.count
    return totals


class Node(_Model):
    """One server running the agent."""

    id: NodeId
    accelerators: list[AcceleratorInventory] = []


MeterScope = Literal["facility", "it", "cooling", "other"]
MeterPoint = Literal["incomer", "ups_output", "pdu_output", "it_input", "feeder"]

METER_POINTS: dict[str, tuple[str, ...]] = {
    "facility": ("incomer",),
    "it": ("ups_output", "pdu_output", "it_input"),
    "cooling": ("feeder",),
    "other": ("feeder",),
}
"""Where a meter of each scope may measure. Facility energy is metered where it crosses the
data centre's boundary (the utility or generator incomer); IT energy at the UPS output, the PDU
output or the IT equipment's input; cooling and other loads on their own feeders (sub-meters,
no part of a PUE)."""

METER_CATEGORY: dict[str, int] = {"ups_output": 1, "pdu_output": 2, "it_input": 3}
"""ISO/IEC 30134-2 PUE category from where IT energy is metered: 1 at the UPS output, 2 at the
PDU output, 3 at the IT equipment's input."""


class Meter(_Model):
    """One energy meter of a site: what it measures, where, and how often it reports.

    ``id`` is the ``meter`` label its samples carry (the collector's ``meter`` setting). A PUE
    expects every declared facility and IT meter: one that is silent lowers the completeness
    and is named, instead of the PUE quietly covering the meters that did report.
    """

    id: str = Field(min_length=1)
    scope: MeterScope
    point: MeterPoint
    interval: Duration = 60.0
    """Seconds between readings the meter is expected to deliver (``1m``, ``15m``)."""
    name: str = ""

    @model_validator(mode="after")
    def _point_fits_scope(self) -> Meter:
        allowed = METER_POINTS[self.scope]
        if self.point not in allowed:
            where = " or ".join(allowed) if len(allowed) < 3 else \
                f"{', '.join(allowed[:-1])} or {allowed[-1]}"
            raise PathError(("point",), f"scope {self.scope!r} meters measure at {where}, "
                            f"not {self.point!r}")
        return self

    @property
    def category(self) -> int | None:
        """The ISO/IEC 30134-2 category an IT meter gives (None for other scopes)."""
        return METER_CATEGORY.get(self.point)


class Site(_Model):
    """A compute center telemetry comes from; `cluster` is None outside the 10 clusters.

    ``hub`` is None for a site outside the eight hubs (a demand city in a province no hub
    covers, such as Wuhan in Hubei); such a site states its ``region`` itself, which a hub
    site takes from its hub."""

    id: Id
    name: str
    name_zh: ChineseName | None = None
    """The site's Chinese name (zh-CN output shows it; a site without one shows its id)."""
    province: str
    city: str
    hub: Id | None
    cluster: Id | None = None
    region: Region | None = None
    lat: Latitude
    lon: Longitude
    role: Role
    accelerators: list[AcceleratorInventory]
    it_capacity_kw: float = Field(gt=0)
    nodes: list[Node] = []
    meters: list[Meter] = []
    """The site's energy meters; empty: undeclared (a PUE then covers the meters that report,
    and states no ISO/IEC 30134-2 category)."""

    @property
    def accelerator_count(self) -> int:
        return sum(item.count for item in self.accelerators)

    @model_validator(mode="after")
    def _unique_meters(self) -> Site:
        seen: dict[str, int] = {}
        for m, meter in enumerate(self.meters):
            if meter.id in seen:
                raise PathError(("meters", m, "id"), f"duplicate meter id {meter.id!r} (first "
                                f"at meters[{seen[meter.id]}])", meter.id)
            seen[meter.id] = m
        return self

    @model_validator(mode="after")
    def _nodes_within_inventory(self) -> Site:
        """Nodes cannot hold cards the site does not have."""
        site_totals = _by_model(self.accelerators)
        node_totals: dict[tuple[str, str], int] = {}
        for n, node in enumerate(self.nodes):
            for a, item in enumerate(node.accelerators):
                key = (item.vendor, item.model)
                node_totals[key] = node_totals.get(key, 0) + item.count
                if node_totals[key] > site_totals.get(key, 0):
                    raise PathError(
                        ("nodes", n, "accelerators", a, "count"),
                        f"nodes hold more {item.vendor} {item.model} than the site lists "
                        f"({node_totals[key]} > {site_totals.get(key, 0)})",
                        item.count,
                    )
        return self


class LinkOverride(_Model):
    """An operator's tier for one unordered site pair, overriding the distance rule."""

    a: Id
    b: Id
    tier: Tier | None = None
    note: str = ""


@dataclass(frozen=True)
class Link:
    """A site pair with its great-circle distance, physical RTT floor and latency tier."""

    a: str
    b: str
    distance_km: float
    fiber_min_rtt_s: float
    tier: Tier
    overridden: bool

    @property
    def pair(self) -> str:
        """The unordered pair as one id, ``a|b`` with the ids sorted: a link is the same link
        whichever end probes it."""
        return link_pair(self.a, self.b)


def link_pair(a: str, b: str) -> str:
    """The unordered site pair ``a|b`` (ids sorted), the one id of a link in findings."""
    return f"{a}|{b}" if a <= b else f"{b}|{a}"


class Topology(_Model):
    """The whole network. Lookups raise KeyError naming the unknown id."""

    hubs: list[Hub]
    clusters: list[Cluster]
    demand_cities: list[DemandCity]
    sites: list[Site]
    provinces: list[Province] = []
    """Chinese names of the provinces the places name (`computewatch.place_names`)."""
    cities: list[City] = []
    """Chinese names of the cities sites name that are not demand cities."""
    link_overrides: list[LinkOverride] = Field(default=[], alias="links")
    """Written `links:` in YAML; the attribute is renamed so `links()` can be the method."""

    _hubs: dict[str, Hub] = PrivateAttr(default_factory=dict)
    _clusters: dict[str, Cluster] = PrivateAttr(default_factory=dict)
    _sites: dict[str, Site] = PrivateAttr(default_factory=dict)
    _overrides: dict[frozenset[str], LinkOverride] = PrivateAttr(default_factory=dict)
    _tier_km: tuple[float, float] = PrivateAttr(default=(METRO_MAX_KM, REGIONAL_MAX_KM))

    @model_validator(mode="after")
    def _cross_check(self) -> Topology:
        """Unique ids and references that resolve; errors carry the offending field's path."""
        self._hubs = _unique("hubs", self.hubs, "hub")
        self._clusters = _unique("clusters", self.clusters, "cluster")
        demand = _unique("demand_cities", self.demand_cities, "demand city")
        _unique_names("provinces", self.provinces, "province")
        _unique_names("cities", self.cities, "city")
        demand_names = {c.name.casefold() for c in demand.values()}
        for i, city in enumerate(self.cities):
            if city.name.casefold() in demand_names:
                raise PathError(("cities", i, "name"), f"{city.name!r} is a demand city; its "
                                "Chinese name is its demand_cities entry's", city.name)
        self._sites = _unique("sites", self.sites, "site")
        hub_ids = sorted(self._hubs)
        for i, cluster in enumerate(self.clusters):
            _known(("clusters", i, "hub"), "hub", cluster.hub, hub_ids)
        for i, city in enumerate(self.demand_cities):
            _known(("demand_cities", i, "hub"), "hub", city.hub, hub_ids)
        node_seen: dict[str, str] = {}
        for i, site in enumerate(self.sites):
            if site.hub is None:
                if site.cluster is not None:
                    raise PathError(("sites", i, "cluster"), f"cluster {site.cluster!r} "
                                    "belongs to a hub, but the site has none", site.cluster)
                if site.region is None:
                    raise PathError(("sites", i, "region"), "a site outside the hubs must "
                                    "state its region (east or west)", None)
            else:
                _known(("sites", i, "hub"), "hub", site.hub, hub_ids)
                hub_region = self._hubs[site.hub].region
                if site.region is not None and site.region != hub_region:
                    raise PathError(("sites", i, "region"), f"hub {site.hub!r} is in the "
                                    f"{hub_region}; leave region out or write {hub_region}",
                                    site.region)
            if site.cluster is not None:
                _known(("sites", i, "cluster"), "cluster", site.cluster, sorted(self._clusters))
                owner = self._clusters[site.cluster].hub
                if owner != site.hub:
                    raise PathError(
                        ("sites", i, "cluster"),
                        f"cluster {site.cluster!r} belongs to hub {owner!r}, "
                        f"not to the site's hub {site.hub!r}",
                        site.cluster,
                    )
            for n, node in enumerate(site.nodes):
                if node.id in node_seen:
                    raise PathError(
                        ("sites", i, "nodes", n, "id"),
                        f"duplicate node id {node.id!r} (also in site {node_seen[node.id]!r})",
                        node.id,
                    )
                node_seen[node.id] = site.id
        site_ids = sorted(self._sites)
        overrides: dict[frozenset[str], LinkOverride] = {}
        for i, link in enumerate(self.link_overrides):
            _known(("links", i, "a"), "site", link.a, site_ids)
            _known(("links", i, "b"), "site", link.b, site_ids)
            if link.a == link.b:
                raise PathError(("links", i, "b"), f"a link needs two sites, got {link.b!r} twice")
            pair = frozenset((link.a, link.b))
            if pair in overrides:
                raise PathError(("links", i), f"duplicate override for {link.a!r}-{link.b!r}")
            overrides[pair] = link
        self._overrides = overrides
        return self

    # --- lookups ---

    def site(self, site_id: str) -> Site:
        return _get(self._sites, site_id, "site")

    def hub(self, hub_id: str) -> Hub:
        return _get(self._hubs, hub_id, "hub")

    def cluster(self, cluster_id: str) -> Cluster:
        return _get(self._clusters, cluster_id, "cluster")

    def city(self, name_or_id: str) -> DemandCity:
        """Demand city by id, English or Chinese name, ignoring case ('Shanghai', 'xian')."""
        wanted = name_or_id.strip().casefold()
        for city in self.demand_cities:
            if wanted in (city.id.casefold(), city.name.casefold(), city.name_zh.casefold()):
                return city
        known = ", ".join(c.name for c in self.demand_cities)
        raise KeyError(f"unknown demand city {name_or_id!r} (known: {known})")

    def region_of(self, site_id: str) -> Region:
        """East or west: the site's hub's region, or its own for a site outside the hubs."""
        site = self.site(site_id)
        if site.hub is None:
            assert site.region is not None  # checked when the topology was loaded
            return site.region
        return self.hub(site.hub).region

    @property
    def tier_distances_km(self) -> tuple[float, float]:
        """(metro, regional) great-circle distances of the tier rule (see `link`)."""
        return self._tier_km

    def with_tier_distances(self, metro_km: float, regional_km: float) -> Topology:
        """This topology with the tier rule's distances set (a policy's
        ``latency.metro_max_km`` and ``regional_max_km``)."""
        if not 0 < metro_km <= regional_km:
            raise ValueError(f"tier distances must satisfy 0 < metro ({metro_km} km) <= "
                             f"regional ({regional_km} km)")
        copy = self.model_copy()
        copy._tier_km = (float(metro_km), float(regional_km))
        return copy

    def sites_of_hub(self, hub_id: str) -> list[Site]:
        self.hub(hub_id)
        return [s for s in self.sites if s.hub == hub_id]

    def sites_of_cluster(self, cluster_id: str) -> list[Site]:
        self.cluster(cluster_id)
        return [s for s in self.sites if s.cluster == cluster_id]

    @property
    def accelerator_count(self) -> int:
        return sum(site.accelerator_count for site in self.sites)

    def membership_warnings(self) -> list[str]:
        """Sites whose hub does not cover their province, or that sit in a hub's province but
        belong to none: a hub is a policy area, and a site outside it gets no hub's tiers."""
        covered = {p.casefold(): h.id for h in self.hubs for p in h.provinces}
        out = []
        for site in self.sites:
            owner = covered.get(site.province.casefold())
            if site.hub is not None and owner != site.hub:
                where = f"hub {owner!r}" if owner else "no hub"
                out.append(f"site {site.id!r}: province {site.province!r} is in {where}, not "
                           f"in hub {site.hub!r}")
            elif site.hub is None and owner is not None:
                out.append(f"site {site.id!r}: province {site.province!r} is in hub "
                           f"{owner!r}, but the site belongs to no hub")
        return out

    # --- geometry and tiers ---

    def distance_km(self, a: str, b: str) -> float:
        sa, sb = self.site(a), self.site(b)
        return great_circle_km(sa.lat, sa.lon, sb.lat, sb.lon)

    def distance_km_to_point(self, site_id: str, lat: float, lon: float) -> float:
        site = self.site(site_id)
        return great_circle_km(site.lat, site.lon, lat, lon)

    def link(self, a: str, b: str) -> Link:
        """The pair (a, b) in the order given; an override for the unordered pair wins.

        The tier rule, from geography and policy: metro within one city or within the metro
        distance; regional between two sites of one hub, or within the regional distance;
        national otherwise (between hubs, or from a site outside every hub)."""
        sa, sb = self.site(a), self.site(b)
        if a == b:
            raise ValueError(f"a link needs two different sites, got {a!r} twice")
        km = great_circle_km(sa.lat, sa.lon, sb.lat, sb.lon)
        override = self._overrides.get(frozenset((a, b)))
        if override is not None and override.tier is not None:
            tier, overridden = override.tier, True
        else:
            tier, overridden = _tier_by_rule(sa, sb, km, *self._tier_km), False
        return Link(a, b, km, fiber_min_rtt_s(km), tier, overridden)

    def links(self, mode: LinkMode = "full_mesh") -> list[Link]:
        """Links to probe and check.

        full_mesh: every unordered site pair. hub_and_spoke: each site to the role-'hub'
        sites of its own hub (a site outside the hubs: to the nearest role-'hub' site), plus
        the role-'hub' sites of different hubs among themselves. Pairs follow file order and
        appear once.
        """
        if mode == "full_mesh":
            return [
                self.link(a.id, b.id) for i, a in enumerate(self.sites) for b in self.sites[i + 1 :]
            ]
        if mode != "hub_and_spoke":
            raise ValueError(f"unknown link mode {mode!r} (known: full_mesh, hub_and_spoke)")
        order = {s.id: i for i, s in enumerate(self.sites)}
        cores = [s for s in self.sites if s.role == "hub"]
        pairs: set[tuple[str, str]] = set()
        for site in self.sites:
            if site.hub is None and cores:
                nearest = min(cores, key=lambda c: self.distance_km(site.id, c.id))
                pairs.add(_ordered(site.id, nearest.id, order))
            for core in cores:
                if core.id != site.id and site.hub is not None and core.hub == site.hub:
                    pairs.add(_ordered(site.id, core.id, order))
        for i, a in enumerate(cores):
            for b in cores[i + 1 :]:
                if a.hub != b.hub:
                    pairs.add(_ordered(a.id, b.id, order))
        return [self.link(a, b) for a, b in sorted(pairs, key=lambda p: (order[p[0]], order[p[1]]))]


def _tier_by_rule(a: Site, b: Site, km: float, metro_km: float, regional_km: float) -> Tier:
    if a.city.strip().casefold() == b.city.strip().casefold() or km <= metro_km:
        return Tier.METRO
    if (a.hub is not None and a.hub == b.hub) or km <= regional_km:
        return Tier.REGIONAL
    return Tier.NATIONAL


def _ordered(a: str, b: str, order: dict[str, int]) -> tuple[str, str]:
    return (a, b) if order[a] < order[b] else (b, a)


def _unique(field: str, items: list[Any], what: str) -> dict[str, Any]:
    index: dict[str, Any] = {}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.id in index:
            raise PathError(
                (field, i, "id"),
                f"duplicate {what} id {item.id!r} (first at {field}[{first[item.id]}])",
                item.id,
            )
        index[item.id] = item
        first[item.id] = i
    return index


def _unique_names(field: str, items: list[Any], what: str) -> dict[str, Any]:
    """Items keyed by their English name, case-insensitively; a repeated name is an error."""
    seen: dict[str, Any] = {}
    for i, item in enumerate(items):
        key = item.name.casefold()
        if key in seen:
            raise PathError((field, i, "name"), f"duplicate {what} {item.name!r}", item.name)
        seen[key] = item
    return seen


def _known(path: tuple[str | int, ...], what: str, value: str, known: list[str]) -> None:
    if value not in known:
        raise PathError(path, f"unknown {what} {value!r} ({suggest_known(value, known)})", value)


def _get(index: dict[str, Any], key: str, what: str) -> Any:
    try:
        return index[key]
    except KeyError:
        raise KeyError(f"unknown {what} {key!r} ({suggest_known(key, sorted(index))})") from None


def load_topology(path: Path | None = None) -> Topology:
    """Load and validate a topology file; None means the shipped reference topology."""
    if path is not None:
        return load_yaml_model(Path(path), Topology)
    resource = resources.files("computewatch") / "data" / "topology.yaml"
    return load_yaml_model_from_text(
        resource.read_text(encoding="utf-8"), Topology, source_name=str(resource)
    )
