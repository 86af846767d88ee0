"""The Geomap's gazetteer: every site, cluster and hub of the topology with its coordinates.

Why a gazetteer: the metrics carry place ids (``site``, ``cluster``, ``hub`` labels), not
coordinates, and coordinates do not belong on every sample. Grafana's Geomap "lookup"
location mode maps a field's value to a point through a gazetteer file served by Grafana
(``public/gazetteer/``); this module writes that file from `computewatch/data/topology.yaml`
in the worldmap-panel format Grafana reads (``[{key, latitude, longitude}]``), so the map
shows exactly the topology the collectors and pipelines use, with no extra series to record.
"""

from __future__ import annotations

import json

from computewatch.topology import Topology

__all__ = ["GAZETTEER_FILE", "PlacesError", "gazetteer", "render_gazetteer"]

GAZETTEER_FILE = "provisioning/gazetteer/computewatch-places.json"
"""Where the file goes, relative to the dashboards directory."""


class PlacesError(ValueError):
    """Two places share an id, so the map could not tell them apart."""


def gazetteer(topology: Topology) -> list[dict[str, object]]:
    """One entry per site, cluster and hub, keyed by id; ids must be unique across kinds."""
    entries: list[dict[str, object]] = []
    seen: dict[str, str] = {}
    places = ([("site", s.id, s.lat, s.lon) for s in topology.sites]
              + [("cluster", c.id, c.lat, c.lon) for c in topology.clusters]
              + [("hub", h.id, h.lat, h.lon) for h in topology.hubs])
    for kind, key, lat, lon in places:
        if key in seen:
            raise PlacesError(f"topology: {kind} id {key!r} is also a {seen[key]} id; the map "
                              "looks places up by id, so ids must be unique across hubs, "
                              "clusters and sites")
        seen[key] = kind
        entries.append({"key": key, "latitude": lat, "longitude": lon})
    return entries


def render_gazetteer(topology: Topology) -> str:
    return json.dumps(gazetteer(topology), indent=1) + "\n"
