"""Topology: the shipped reference network, distances, latency tiers and precise errors."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pytest

from computewatch.config import ConfigError, load_yaml_model_from_text
from computewatch.topology import (
    METRO_MAX_KM,
    REGIONAL_MAX_KM,
    AcceleratorInventory,
    Tier,
    Topology,
    fiber_min_rtt_s,
    great_circle_km,
    load_topology,
)

SHIPPED_TEXT = (resources.files("computewatch") / "data" / "topology.yaml").read_text("utf-8")

# Cluster coordinates from the reference china-compute.md, typed in independently.
REFERENCE_CLUSTERS = {
    "zhangjiakou": ("jjj", 40.77, 114.89),
    "yrd-demo": ("yrd", 31.00, 120.90),
    "wuhu": ("yrd", 31.33, 118.38),
    "shaoguan": ("gba", 24.84, 113.62),
    "tianfu": ("chengyu", 30.67, 104.06),
    "chongqing": ("chengyu", 29.59, 106.54),
    "helinger": ("neimenggu", 40.38, 111.83),
    "guian": ("guizhou", 26.57, 106.71),
    "qingyang": ("gansu", 35.71, 107.64),
    "zhongwei": ("ningxia", 37.50, 105.20),
}

MINI = """\
hubs:
  - {id: east1, name: East One, name_zh: 东一, region: east, provinces: [A], lat: 30.0, lon: 120.0}
  - {id: west1, name: West One, name_zh: 西一, region: west, provinces: [B], lat: 30.0, lon: 105.0}
clusters:
  - {id: ce, name: CE, name_zh: 东集群, hub: east1, province: A, lat: 30.0, lon: 120.0}
  - {id: cw, name: CW, name_zh: 西集群, hub: west1, province: B, lat: 30.0, lon: 105.0}
demand_cities:
  - {id: alpha, name: Alpha City, name_zh: 甲市, province: A, hub: east1, lat: 31.0, lon: 121.0}
sites:
  - id: e-core
    name: East core
    province: A
    city: Alpha
    hub: east1
    cluster: ce
    lat: 30.0
    lon: 120.0
    role: hub
    it_capacity_kw: 100
    accelerators: [{vendor: nvidia, model: A100, count: 64}]
  - id: e-edge
    name: East edge
    province: A
    city: Beta
    hub: east1
    cluster: null
    lat: 31.0
    lon: 121.0
    role: edge
    it_capacity_kw: 20
    accelerators: [{vendor: huawei, model: Ascend 310P, count: 16}]
  - id: w-core
    name: West core
    province: B
    city: Gamma
    hub: west1
    cluster: cw
    lat: 30.0
    lon: 105.0
    role: hub
    it_capacity_kw: 100
    accelerators: [{vendor: huawei, model: Ascend 910B, count: 64}]
  - id: w-reg
    name: West regional
    province: B
    city: Gamma
    hub: west1
    cluster: cw
    lat: 30.1
    lon: 105.1
    role: regional
    it_capacity_kw: 50
    accelerators: [{vendor: huawei, model: Ascend 910B, count: 32}]
links: []
"""


def line_of(text: str, needle: str, occurrence: int = 0) -> int:
    """1-based line number of the n-th line containing `needle`, found without the loader."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence]


def mini(text: str = MINI) -> Topology:
    return load_yaml_model_from_text(text, Topology, source_name="topology.yaml")


def mini_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        mini(text)
    assert "\n" not in str(info.value)
    return info.value


def cosine_law_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Spherical law of cosines: an independent check on the haversine implementation."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return 6371.0088 * math.acos(max(-1.0, min(1.0, c)))


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load_topology()


# --- the shipped reference topology ---


def test_shipped_topology_counts(topo: Topology) -> None:
    assert len(topo.hubs) == 8
    assert len(topo.clusters) == 10
    assert len(topo.demand_cities) == 15
    assert len(topo.sites) >= 48
    assert topo.accelerator_count >= 24_000
    assert topo.accelerator_count == sum(a.count for s in topo.sites for a in s.accelerators)


def test_hub_regions(topo: Topology) -> None:
    east = {h.id for h in topo.hubs if h.region == "east"}
    west = {h.id for h in topo.hubs if h.region == "west"}
    assert east == {"jjj", "yrd", "gba"}
    assert west == {"chengyu", "neimenggu", "guizhou", "gansu", "ningxia"}


def test_clusters_match_reference(topo: Topology) -> None:
    assert {c.id for c in topo.clusters} == set(REFERENCE_CLUSTERS)
    for cluster_id, (hub, lat, lon) in REFERENCE_CLUSTERS.items():
        cluster = topo.cluster(cluster_id)
        assert (cluster.hub, cluster.lat, cluster.lon) == (hub, lat, lon)


def test_every_cluster_has_sites_near_it_and_one_hub_site(topo: Topology) -> None:
    for cluster in topo.clusters:
        sites = topo.sites_of_cluster(cluster.id)
        assert 3 <= len(sites) <= 4, cluster.id
        assert [s.role for s in sites].count("hub") == 1, cluster.id
        for site in sites:
            assert site.hub == cluster.hub
            assert topo.distance_km_to_point(site.id, cluster.lat, cluster.lon) <= 30.0, site.id


def test_sites_outside_clusters_sit_in_demand_cities(topo: Topology) -> None:
    city_names = {c.name for c in topo.demand_cities}
    outside = [s for s in topo.sites if s.cluster is None]
    assert {s.city for s in outside} >= {"Beijing", "Shanghai", "Guangzhou", "Shenzhen", "Wuhan"}
    for site in outside:
        assert site.city in city_names, site.id
        city = topo.city(site.city)
        # The city's serving hub, unless the site's province is in no hub (then none).
        assert site.hub == (city.hub if site.hub is not None else None), site.id
        assert topo.distance_km_to_point(site.id, city.lat, city.lon) < 70.0, site.id


def test_accelerator_mix_by_region(topo: Topology) -> None:
    def nvidia_share(region: str) -> float:
        counts = {"nvidia": 0, "huawei": 0}
        for site in topo.sites:
            if topo.region_of(site.id) == region:
                for item in site.accelerators:
                    counts[item.vendor] += item.count
        return counts["nvidia"] / (counts["nvidia"] + counts["huawei"])

    assert nvidia_share("east") > 0.5 > nvidia_share("west") > 0.0
    edge_models = {a.model for s in topo.sites if s.role == "edge" for a in s.accelerators}
    assert edge_models <= {"Ascend 310P", "L20", "H20"}
    big = [s.id for s in topo.sites if s.accelerator_count >= 2000]
    assert 2 <= len(big) <= 5
    assert max(s.accelerator_count for s in topo.sites) <= 4000


def test_it_capacity_is_sized_from_the_cards(topo: Topology) -> None:
    for site in topo.sites:
        kw_per_card = site.it_capacity_kw / site.accelerator_count
        ceiling = 1.0 * 1.3 * 1.05
        floor = 0.2 * 1.3 * 0.95 if site.role == "edge" else 0.8 * 1.3 * 0.95
        assert floor <= kw_per_card <= ceiling, (site.id, kw_per_card)


def test_lookups(topo: Topology) -> None:
    assert topo.city("Shanghai").id == "shanghai"
    assert topo.city("XI'AN").id == "xian"
    assert topo.city("上海").id == "shanghai"
    assert topo.hub("gba").name_zh == "粤港澳大湾区"
    assert topo.site("bj-ai").city == "Beijing"
    assert topo.region_of("guian-a") == "west"
    assert {s.id for s in topo.sites_of_hub("ningxia")} == {
        "zhongwei-a",
        "zhongwei-b",
        "zhongwei-c",
        "yc-yinchuan",
    }
    with pytest.raises(KeyError, match=r"unknown site 'zjk-z'.*did you mean"):
        topo.site("zjk-z")
    with pytest.raises(KeyError, match="unknown demand city 'Atlantis'"):
        topo.city("Atlantis")
    with pytest.raises(KeyError, match="unknown hub 'xyz'"):
        topo.sites_of_hub("xyz")


def test_load_topology_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(SHIPPED_TEXT, encoding="utf-8")
    assert load_topology(path) == load_topology()


def test_ecosystem() -> None:
    assert AcceleratorInventory(vendor="nvidia", model="H20", count=1).ecosystem == "cuda"
    assert AcceleratorInventory(vendor="huawei", model="Ascend 910B", count=1).ecosystem == "cann"


# --- distance and physics ---


def test_beijing_shanghai_distance_and_fiber_rtt(topo: Topology) -> None:
    bj, sh = topo.city("Beijing"), topo.city("Shanghai")
    km = great_circle_km(bj.lat, bj.lon, sh.lat, sh.lon)
    assert km == pytest.approx(1067, rel=0.01)  # published great-circle figure
    assert km == pytest.approx(cosine_law_km(bj.lat, bj.lon, sh.lat, sh.lon), rel=1e-9)
    assert fiber_min_rtt_s(km) == pytest.approx(0.0107, rel=0.03)


def test_known_distances() -> None:
    # One degree of latitude along a meridian: 2*pi*R/360.
    assert great_circle_km(0, 0, 1, 0) == pytest.approx(111.195, abs=0.001)
    # Quarter of the equator.
    assert great_circle_km(0, 0, 0, 90) == pytest.approx(math.pi * 6371.0088 / 2, rel=1e-12)
    # Antipodes do not blow up the asin.
    assert great_circle_km(0, 0, 0, 180) == pytest.approx(math.pi * 6371.0088, rel=1e-12)
    # Beijing-Guangzhou, about 1,890 km great-circle.
    assert great_circle_km(39.92, 116.46, 23.16, 113.23) == pytest.approx(1890, rel=0.01)


def test_fiber_rtt_is_10_us_per_km() -> None:
    assert fiber_min_rtt_s(100) == pytest.approx(0.001)
    assert fiber_min_rtt_s(0) == 0


def test_distance_methods_agree(topo: Topology) -> None:
    a, b = topo.site("bj-ai"), topo.site("guian-a")
    expected = cosine_law_km(a.lat, a.lon, b.lat, b.lon)
    assert topo.distance_km("bj-ai", "guian-a") == pytest.approx(expected, rel=1e-9)
    assert topo.distance_km_to_point("bj-ai", b.lat, b.lon) == pytest.approx(expected, rel=1e-9)
    assert topo.distance_km_to_point("bj-ai", a.lat, a.lon) == 0


# --- tiers ---


def test_two_sites_in_one_city_are_metro(topo: Topology) -> None:
    link = topo.link("sh-pudong", "sh-minhang")
    assert link.tier is Tier.METRO
    assert not link.overridden


def test_same_city_is_metro_even_beyond_the_metro_distance(topo: Topology) -> None:
    assert topo.distance_km("sh-lingang", "sh-pudong") > METRO_MAX_KM
    assert topo.link("sh-lingang", "sh-pudong").tier is Tier.METRO


def test_beijing_to_zhangjiakou_is_regional(topo: Topology) -> None:
    link = topo.link("bj-ai", "zjk-a")
    assert link.tier is Tier.REGIONAL
    assert 140 < link.distance_km < 160  # Beijing Haidian to Zhangjiakou, ~150 km


def test_beijing_to_guian_is_national(topo: Topology) -> None:
    link = topo.link("bj-ai", "guian-a")
    assert link.tier is Tier.NATIONAL
    assert link.distance_km == pytest.approx(1730, rel=0.02)
    assert link.fiber_min_rtt_s == pytest.approx(link.distance_km * 10e-6)


def test_cross_hub_pair_within_regional_distance_is_regional(topo: Topology) -> None:
    assert topo.site("lz-lanzhou").hub != topo.site("zhongwei-a").hub
    assert topo.distance_km("lz-lanzhou", "zhongwei-a") < REGIONAL_MAX_KM
    assert topo.link("lz-lanzhou", "zhongwei-a").tier is Tier.REGIONAL


def test_same_hub_pair_beyond_regional_distance_is_regional(topo: Topology) -> None:
    assert topo.site("qingyang-a").hub == topo.site("lz-lanzhou").hub == "gansu"
    assert topo.distance_km("qingyang-a", "lz-lanzhou") > REGIONAL_MAX_KM
    assert topo.link("qingyang-a", "lz-lanzhou").tier is Tier.REGIONAL


# Provinces of the eight hubs, typed in from the reference china-compute.md (the hub
# table); Hubei (Wuhan) and Shaanxi (Xi'an) are in none of them.
HUB_PROVINCES = {
    "jjj": {"Beijing", "Tianjin", "Hebei"}, "yrd": {"Shanghai", "Jiangsu", "Zhejiang", "Anhui"},
    "gba": {"Guangdong", "Hong Kong", "Macao"}, "chengyu": {"Sichuan", "Chongqing"},
    "neimenggu": {"Inner Mongolia"}, "guizhou": {"Guizhou"}, "gansu": {"Gansu"},
    "ningxia": {"Ningxia"}}


def test_a_site_belongs_to_the_hub_that_covers_its_province_or_to_none(topo: Topology) -> None:
    for site in topo.sites:
        owner = next((h for h, provinces in HUB_PROVINCES.items()
                      if site.province in provinces), None)
        assert site.hub == owner, site.id
    assert topo.site("wh-guanggu").hub is None and topo.site("xa-gaoxin").hub is None
    assert topo.region_of("wh-guanggu") == "east" and topo.region_of("xa-gaoxin") == "west"
    assert topo.membership_warnings() == []


def test_wuhan_is_national_to_the_yrd_and_regional_only_by_distance(topo: Topology) -> None:
    # The Wuhan edge site is 639 km from Qingpu: under the old hub membership it was a 5 ms
    # "regional" link that no fiber can meet (6.4 ms minimum); outside every hub it is national.
    far = topo.link("wh-guanggu", "yrd-qingpu")
    assert far.distance_km == pytest.approx(639, abs=5)
    assert far.tier is Tier.NATIONAL
    # Xi'an is outside the hubs too, but 201 km from Qingyang: regional by distance.
    near = topo.link("xa-gaoxin", "qingyang-a")
    assert near.distance_km < REGIONAL_MAX_KM and near.tier is Tier.REGIONAL


def test_no_shipped_link_within_a_hub_or_region_is_beyond_fiber_physics(topo: Topology) -> None:
    # A regional budget of 5 ms is a 500 km great circle at 10 us/km: every regional link of
    # the shipped topology is well inside it (the hubs' own pairs reach 360 km).
    regional = [lk for lk in topo.links() if lk.tier is Tier.REGIONAL]
    assert max(lk.distance_km for lk in regional) < 400
    assert all(lk.tier is Tier.METRO for lk in topo.links() if lk.distance_km <= METRO_MAX_KM)


def test_a_policy_distance_changes_the_tier_rule(topo: Topology) -> None:
    assert topo.tier_distances_km == (METRO_MAX_KM, REGIONAL_MAX_KM) == (50.0, 300.0)
    wider = topo.with_tier_distances(50, 500)
    assert wider.link("wh-guanggu", "wuhu-c").tier is Tier.REGIONAL  # 378 km
    assert topo.link("wh-guanggu", "wuhu-c").tier is Tier.NATIONAL
    assert wider.link("wh-guanggu", "yrd-qingpu").tier is Tier.NATIONAL  # 639 km, no hub
    with pytest.raises(ValueError, match="tier distances"):
        topo.with_tier_distances(60, 40)


def test_a_site_outside_the_hubs_must_state_its_region_and_have_no_cluster() -> None:
    no_region = MINI.replace("    city: Beta\n    hub: east1\n", "    city: Beta\n    hub: null\n")
    err = mini_error(no_region)
    assert "sites[1].region" in str(err) and "must state its region" in str(err)
    ok = mini(no_region.replace("    cluster: null\n    lat: 31.0",
                                "    cluster: null\n    region: east\n    lat: 31.0"))
    assert ok.site("e-edge").hub is None and ok.region_of("e-edge") == "east"
    # ... and it spokes to the nearest role-hub site (e-core, 145 km), tier by distance.
    assert {(lk.a, lk.b) for lk in ok.links("hub_and_spoke") if "e-edge" in (lk.a, lk.b)} \
        == {("e-core", "e-edge")}
    assert ok.link("e-core", "e-edge").tier is Tier.REGIONAL  # 145 km <= 300 km
    clustered = MINI.replace("    hub: west1\n    cluster: cw\n    lat: 30.1",
                             "    hub: null\n    cluster: cw\n    lat: 30.1")
    assert "sites[3].cluster" in str(mini_error(clustered))


def test_override_wins_for_the_unordered_pair() -> None:
    text = SHIPPED_TEXT.replace(
        "links: []",
        "links:\n  - {a: bj-ai, b: guian-a, tier: regional, note: test}\n"
        "  - {a: sh-pudong, b: sh-minhang, note: note only}",
    )
    topo = load_yaml_model_from_text(text, Topology, source_name="t.yaml")
    for a, b in (("bj-ai", "guian-a"), ("guian-a", "bj-ai")):
        link = topo.link(a, b)
        assert (link.a, link.b) == (a, b)
        assert link.tier is Tier.REGIONAL
        assert link.overridden
    # A note-only override keeps the rule's tier.
    assert not topo.link("sh-pudong", "sh-minhang").overridden
    assert topo.link("sh-pudong", "sh-minhang").tier is Tier.METRO
    assert topo.link_overrides[0].note == "test"


def test_link_to_itself_is_refused(topo: Topology) -> None:
    with pytest.raises(ValueError, match="two different sites"):
        topo.link("bj-ai", "bj-ai")


def test_full_mesh_and_hub_and_spoke() -> None:
    topo = mini()
    mesh = topo.links()
    assert len(mesh) == 6
    assert len({frozenset((link.a, link.b)) for link in mesh}) == 6
    spokes = {(link.a, link.b): link.tier for link in topo.links("hub_and_spoke")}
    assert spokes == {
        ("e-core", "e-edge"): Tier.REGIONAL,  # same hub, 145 km
        ("e-core", "w-core"): Tier.NATIONAL,  # other hub, ~1,440 km
        ("w-core", "w-reg"): Tier.METRO,  # same city
    }
    with pytest.raises(ValueError, match="unknown link mode"):
        topo.links("ring")  # type: ignore[arg-type]


def test_shipped_hub_and_spoke_links_touch_a_hub_site(topo: Topology) -> None:
    cores = {s.id for s in topo.sites if s.role == "hub"}
    links = topo.links("hub_and_spoke")
    assert all(link.a in cores or link.b in cores for link in links)
    for site in topo.sites:
        own = {c for c in cores if topo.site(c).hub == site.hub} - {site.id}
        linked = {link.b if link.a == site.id else link.a for link in links} & own
        assert own <= {link.a for link in links} | {link.b for link in links}
        assert own == linked or site.id in cores, site.id
    cross = [link for link in links if topo.site(link.a).hub != topo.site(link.b).hub
             and link.a in cores and link.b in cores]
    assert len(cross) == math.comb(len(cores), 2) - 2  # yrd and chengyu have two clusters
    # The two sites outside every hub each spoke to their nearest role-hub site (Wuhu 395 km,
    # Qingyang 201 km).
    assert {(link.a, link.b) for link in links if "wh-guanggu" in (link.a, link.b)
            or "xa-gaoxin" in (link.a, link.b)} == {("wuhu-a", "wh-guanggu"),
                                                     ("qingyang-a", "xa-gaoxin")}


# --- precise errors ---


def test_unknown_hub_error() -> None:
    text = MINI.replace(
        "    hub: west1\n    cluster: cw\n    lat: 30.1",
        "    hub: xyz\n    cluster: cw\n    lat: 30.1",
    )
    err = mini_error(text)
    line = line_of(text, "hub: xyz")
    assert err.line == line
    assert err.path == ("sites", 3, "hub")
    assert err.value == "xyz"
    assert (
        str(err) == f"topology.yaml:{line}: sites[3].hub: unknown hub 'xyz' (known: east1, west1)"
    )


def test_latitude_out_of_range_error() -> None:
    text = MINI.replace("    lat: 31.0\n", "    lat: 200\n")
    err = mini_error(text)
    line = line_of(text, "lat: 200")
    assert line == 27
    assert str(err) == f"topology.yaml:{line}: sites[1].lat: must be <= 90 (got 200)"


def test_longitude_out_of_range_error() -> None:
    text = MINI.replace("lon: 105.1", "lon: -181")
    err = mini_error(text)
    assert str(err) == (
        f"topology.yaml:{line_of(text, 'lon: -181')}: sites[3].lon: must be >= -180 (got -181)"
    )


def test_duplicate_site_id_error() -> None:
    text = MINI.replace("id: w-reg", "id: e-core")
    err = mini_error(text)
    line = line_of(text, "id: e-core", occurrence=1)
    assert str(err) == (
        f"topology.yaml:{line}: sites[3].id: duplicate site id 'e-core' (first at sites[0])"
    )


def test_duplicate_hub_id_error() -> None:
    text = MINI.replace("id: west1", "id: east1")
    err = mini_error(text)
    assert err.line == 3
    assert str(err).startswith("topology.yaml:3: hubs[1].id: duplicate hub id 'east1'")


def test_unknown_key_error() -> None:
    text = MINI.replace("    role: edge\n", "    role: edge\n    colour: red\n")
    err = mini_error(text)
    line = line_of(text, "colour: red")
    assert str(err).startswith(
        f"topology.yaml:{line}: sites[1].colour: unknown key 'colour' (allowed: accelerators, "
    )
    assert str(err).endswith("(got 'red')")


def test_yaml_syntax_error() -> None:
    text = MINI.replace("    role: regional\n", "    role: [regional\n")
    err = mini_error(text)
    assert err.line == line_of(text, "role: [regional") + 1  # PyYAML stops at the next key
    assert "YAML syntax error" in str(err)
    assert f"from line {line_of(text, 'role: [regional')}" in str(err)


def test_missing_file_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    assert str(info.value) == f"{path}: file not found"


def test_bad_id_error() -> None:
    text = MINI.replace("id: e-edge", "id: E Edge")
    err = mini_error(text)
    assert err.path == ("sites", 1, "id")
    assert err.line == line_of(text, "id: E Edge")
    assert "got 'E Edge'" in str(err)


def test_cluster_of_another_hub_error() -> None:
    text = MINI.replace("    hub: east1\n    cluster: ce\n", "    hub: east1\n    cluster: cw\n")
    err = mini_error(text)
    assert str(err) == (
        f"topology.yaml:{line_of(text, 'cluster: cw')}: sites[0].cluster: cluster 'cw' "
        "belongs to hub 'west1', not to the site's hub 'east1'"
    )


def test_unknown_cluster_and_city_hub_errors() -> None:
    err = mini_error(MINI.replace("cluster: ce", "cluster: cx"))
    assert err.path == ("sites", 0, "cluster")
    assert "unknown cluster 'cx' (known: ce, cw)" in str(err)
    text = MINI.replace("province: A, hub: east1, lat: 31.0", "province: A, hub: e9, lat: 31.0")
    err = mini_error(text)
    line = line_of(text, "hub: e9")
    assert line == 8
    assert str(err) == (
        f"topology.yaml:{line}: demand_cities[0].hub: unknown hub 'e9' (known: east1, west1)"
    )


def test_link_override_errors() -> None:
    text = MINI.replace("links: []", "links:\n  - {a: e-core, b: nowhere, tier: metro}")
    err = mini_error(text)
    assert str(err) == (
        f"topology.yaml:{line_of(text, 'nowhere')}: links[0].b: unknown site 'nowhere' "
        "(known: e-core, e-edge, w-core, w-reg)"
    )
    text = MINI.replace("links: []", "links:\n  - {a: e-core, b: w-core, tier: galactic}")
    assert "links[0].tier: must be 'metro', 'regional' or 'national' (got 'galactic')" in str(
        mini_error(text)
    )


def test_node_inventory_cannot_exceed_the_site() -> None:
    text = MINI.replace(
        "    accelerators: [{vendor: nvidia, model: A100, count: 64}]\n",
        "    accelerators: [{vendor: nvidia, model: A100, count: 64}]\n"
        "    nodes:\n"
        "      - id: gpu01.e-core\n"
        "        accelerators: [{vendor: nvidia, model: A100, count: 65}]\n",
    )
    err = mini_error(text)
    assert err.path == ("sites", 0, "nodes", 0, "accelerators", 0, "count")
    assert err.line == line_of(text, "count: 65")
    assert "(65 > 64)" in str(err)


def test_negative_count_and_capacity_errors() -> None:
    err = mini_error(MINI.replace("count: 16", "count: -1"))
    assert err.path == ("sites", 1, "accelerators", 0, "count")
    assert str(err).endswith("must be >= 0 (got -1)")
    err = mini_error(MINI.replace("it_capacity_kw: 20", "it_capacity_kw: 0"))
    line = line_of(MINI, "it_capacity_kw: 20")
    assert str(err) == f"topology.yaml:{line}: sites[1].it_capacity_kw: must be > 0 (got 0)"


# --- meters ---

METERS = (
    "    accelerators: [{vendor: nvidia, model: A100, count: 64}]\n"
    "    meters:\n"
    "      - {id: main, scope: facility, point: incomer, interval: 15m}\n"
    "      - {id: ups-1, scope: it, point: ups_output}\n"
    "      - {id: pdu-1, scope: it, point: pdu_output, interval: 30s}\n"
)


def with_meters(meters: str = METERS) -> str:
    return MINI.replace("    accelerators: [{vendor: nvidia, model: A100, count: 64}]\n", meters)


def test_a_site_declares_its_meters_with_scope_point_and_interval() -> None:
    site = mini(with_meters()).site("e-core")
    assert [(m.id, m.scope, m.point, m.interval) for m in site.meters] == [
        ("main", "facility", "incomer", 900.0), ("ups-1", "it", "ups_output", 60.0),
        ("pdu-1", "it", "pdu_output", 30.0)]
    assert [m.category for m in site.meters] == [None, 1, 2]
    assert mini().site("e-core").meters == []  # undeclared


def test_a_meter_point_must_fit_its_scope() -> None:
    text = with_meters(METERS.replace("scope: it, point: ups_output", "scope: it, point: incomer"))
    err = mini_error(text)
    assert err.path == ("sites", 0, "meters", 1, "point")
    assert err.line == line_of(text, "point: incomer", 1)
    assert str(err) == (f"topology.yaml:{err.line}: sites[0].meters[1].point: scope 'it' "
                        "meters measure at ups_output, pdu_output or it_input, not 'incomer'")
    err = mini_error(with_meters(METERS.replace("point: incomer", "point: transformer")))
    assert err.path == ("sites", 0, "meters", 0, "point")
    assert "transformer" in str(err)


def test_duplicate_meter_ids_in_a_site_are_refused() -> None:
    text = with_meters(METERS.replace("id: pdu-1", "id: ups-1"))
    err = mini_error(text)
    assert err.path == ("sites", 0, "meters", 2, "id")
    assert "duplicate meter id 'ups-1' (first at meters[1])" in str(err)


def test_every_shipped_site_declares_what_the_simulator_writes(topo: Topology) -> None:
    from computewatch.sim import simulated_meters

    for site in topo.sites:
        assert site.meters == simulated_meters(site.id), site.id
        assert [m.category for m in site.meters if m.scope == "it"] == [1]  # UPS output
