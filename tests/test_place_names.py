"""Every place of the shipped topology has its Chinese name, and zh-CN output shows it.

Expected names are read from the public naming of the hubs and clusters (the NDRC approvals,
the reference china-compute.md) and standard Chinese province names, not from the code.
"""

from __future__ import annotations

import pytest

from computewatch.config import ConfigError, load_yaml_model_from_text
from computewatch.place_names import place_name, subject_name, untranslated_places
from computewatch.topology import Topology, load_topology


def load_topology_text(text: str) -> Topology:
    return load_yaml_model_from_text(text, Topology, source_name="mini.yaml")


@pytest.fixture(scope="module")
def shipped():
    return load_topology()


def test_the_shipped_topology_names_every_place_in_chinese(shipped):
    assert untranslated_places(shipped) == []
    assert all(site.name_zh for site in shipped.sites)


@pytest.mark.parametrize(("kind", "key", "chinese"), [
    ("hub", "jjj", "京津冀"), ("hub", "gba", "粤港澳大湾区"), ("hub", "yrd", "长三角"),
    ("hub", "chengyu", "成渝"), ("hub", "neimenggu", "内蒙古"),
    ("cluster", "zhangjiakou", "张家口集群"), ("cluster", "helinger", "和林格尔集群"),
    ("cluster", "guian", "贵安集群"), ("province", "Inner Mongolia", "内蒙古"),
    ("province", "Guangdong", "广东"), ("province", "Shaanxi", "陕西"),
    ("province", "Shanghai/Jiangsu/Zhejiang", "上海、江苏、浙江"),
    ("city", "Shanghai", "上海"), ("city", "xian", "西安"), ("city", "Zhangjiakou", "张家口"),
    ("city", "Jiaxing", "嘉兴"), ("site", "zjk-a", "张家口智算中心A"),
])
def test_places_are_shown_by_their_chinese_names_in_zh_cn(shipped, kind, key, chinese):
    assert place_name(shipped, kind, key, "zh-CN") == chinese
    assert place_name(shipped, kind, key, "en") == key  # English keeps what it showed


def test_finding_subjects_name_places_and_keep_device_ids(shipped):
    assert subject_name(shipped, "link", "bj-ai|zjk-a", "zh-CN") == (
        "北京人工智能计算中心|张家口智算中心A")
    assert subject_name(shipped, "hub_pair", "gba|jjj", "zh-CN") == "粤港澳大湾区|京津冀"
    assert subject_name(shipped, "accelerator", "bj-ai-n0001-gpu0", "zh-CN") == (
        "bj-ai-n0001-gpu0")
    assert subject_name(shipped, "site", "zjk-a", "en") == "zjk-a"


MINI = """\
hubs:
  - {id: h1, name: One, name_zh: 一号枢纽, region: east, provinces: [Alpha], lat: 30, lon: 120}
clusters: []
demand_cities: []
provinces: [{name: Alpha, name_zh: 甲省}]
sites:
  - {id: s1, name: S1, NAME_ZH province: Alpha, city: Gamma, hub: h1, lat: 30, lon: 120,
     role: hub, it_capacity_kw: 10, accelerators: [{vendor: nvidia, model: A100, count: 1}]}
"""


def test_a_site_without_a_chinese_name_is_listed_and_shown_by_its_id():
    topo = load_topology_text(MINI.replace("NAME_ZH ", ""))
    assert untranslated_places(topo) == [
        "site 's1' has no name_zh", "city 'Gamma' has no Chinese name (add it under cities:)"]
    assert place_name(topo, "site", "s1", "zh-CN") == "s1"
    assert place_name(topo, "province", "Alpha", "zh-CN") == "甲省"


@pytest.mark.parametrize("bad", ["S One", "", " 一号 "])
def test_a_name_zh_that_is_not_chinese_is_refused_naming_the_field(bad):
    with pytest.raises(ConfigError, match=r"sites\[0\]\.name_zh|sites.0.name_zh"):
        load_topology_text(MINI.replace("NAME_ZH", f"name_zh: '{bad}',"))
