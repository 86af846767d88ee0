"""How a place is named in a language: hubs, clusters, sites, cities and provinces by their
Chinese names (``name_zh`` in the topology) in zh-CN, as they always were in English.

English output keeps what it showed before (ids such as ``jjj`` and ``zjk-a``, English
province names): scripts and existing readers depend on it. zh-CN output shows 京津冀 and
粤港澳大湾区; a place the topology gives no Chinese name keeps its id, and
`untranslated_places` lists such places (``computewatch topology check`` warns; the shipped
topology has none, which a test checks).
"""

from __future__ import annotations

from typing import Literal

from computewatch.topology import Topology

__all__ = ["PLACE_KINDS", "PlaceKind", "place_name", "subject_name", "untranslated_places"]

PlaceKind = Literal["hub", "cluster", "site", "city", "province"]
PLACE_KINDS: tuple[PlaceKind, ...] = ("hub", "cluster", "site", "city", "province")


_INDEXES: dict[int, tuple[Topology, dict[tuple[str, str], str]]] = {}
"""Built once per topology object (a table names thousands of places); a few kept, each with
its topology, so an id is never reused while its entry lives."""


def _chinese_names(topology: Topology) -> dict[tuple[str, str], str]:
    """(kind, key) -> Chinese name; keys are ids (hub, cluster, site, demand city) or
    case-folded English names (city, province)."""
    held = _INDEXES.get(id(topology))
    if held is not None and held[0] is topology:
        return held[1]
    if len(_INDEXES) >= 8:
        _INDEXES.clear()
    names: dict[tuple[str, str], str] = {}
    names.update({("hub", h.id): h.name_zh for h in topology.hubs})
    names.update({("cluster", c.id): c.name_zh for c in topology.clusters})
    names.update({("site", s.id): s.name_zh for s in topology.sites if s.name_zh})
    for city in topology.demand_cities:
        names[("city", city.id)] = city.name_zh
        names[("city", city.name.casefold())] = city.name_zh
    names.update({("city", c.name.casefold()): c.name_zh for c in topology.cities})
    names.update({("province", p.name.casefold()): p.name_zh for p in topology.provinces})
    _INDEXES[id(topology)] = (topology, names)
    return names


def _lookup(topology: Topology, kind: PlaceKind, key: str) -> str | None:
    names = _chinese_names(topology)
    found = names.get((kind, key)) or names.get((kind, key.casefold()))
    if found is None and kind == "province" and "/" in key:  # a cluster across provinces
        parts = [names.get(("province", p.strip().casefold())) for p in key.split("/")]
        found = "、".join(parts) if all(parts) else None  # type: ignore[arg-type]
    return found


def place_name(topology: Topology | None, kind: PlaceKind, key: str, language: str) -> str:
    """``key`` (an id, or an English city or province name) as ``language`` shows it."""
    if language == "en" or topology is None or not key:
        return key
    return _lookup(topology, kind, key) or key


_PAIR_KINDS: dict[str, PlaceKind] = {"link": "site", "hub_pair": "hub"}
_SUBJECT_KINDS: dict[str, PlaceKind] = {"site": "site", "hub": "hub", "cluster": "cluster",
                                        "city": "city", "province": "province"}


def subject_name(topology: Topology | None, subject_type: str, subject: str,
                 language: str) -> str:
    """A finding's subject as ``language`` shows it: places by name, a link or hub pair
    (``a|b``) as both names; accelerators and nodes keep their ids."""
    if language == "en" or topology is None:
        return subject
    if subject_type in _PAIR_KINDS and "|" in subject:
        kind = _PAIR_KINDS[subject_type]
        return "|".join(place_name(topology, kind, part, language)
                        for part in subject.split("|"))
    kind = _SUBJECT_KINDS.get(subject_type)
    return subject if kind is None else place_name(topology, kind, subject, language)


def untranslated_places(topology: Topology) -> list[str]:
    """Every place the topology names without a Chinese name, one line each."""
    out = [f"site {s.id!r} has no name_zh" for s in topology.sites if not s.name_zh]
    provinces = {p for h in topology.hubs for p in h.provinces}
    provinces |= {p.strip() for c in topology.clusters for p in c.province.split("/")}
    provinces |= {c.province for c in topology.demand_cities}
    provinces |= {c.province for c in topology.cities}
    provinces |= {s.province for s in topology.sites}
    out += [f"province {p!r} has no Chinese name (add it under provinces:)"
            for p in sorted(provinces) if _lookup(topology, "province", p) is None]
    cities = sorted({s.city for s in topology.sites})
    out += [f"city {c!r} has no Chinese name (add it under cities:)"
            for c in cities if _lookup(topology, "city", c) is None]
    return out
