"""The national map's base layer: offline by default, a licensed tile service by choice.

Grafana's Geomap loads its default base map from a tile server on the internet (CARTO), which
an intranet NOC cannot reach, and the boundaries on a published map of China must be the
approved ones (审图号), which a generic world map does not promise. So the map ships with no
tiles and no boundary polygons: its base is a graticule (meridians and parallels every 5
degrees over China's longitudes and latitudes, GeoJSON served by Grafana itself from
``public/maps/``), and the sites, clusters and hubs are markers on it with their names as
labels. Where a licensed domestic tile service (天地图 with a key, or a provincial or
in-house tile server with an approved map) is reachable, `MapTiles` puts its XYZ URL under
the markers instead: ``computewatch dashboards build --map-tiles URL`` (or
``COMPUTEWATCH_MAP_TILES``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from grafana_foundation_sdk.builders import common as cb

__all__ = ["BASE_LAYER_FILE", "BASE_LAYER_URL", "TILES_ENV", "MapTiles", "MapTilesError",
           "base_layer", "basemap", "render_base_layer"]

BASE_LAYER_FILE = "provisioning/maps/computewatch-graticule.geojson"
"""Where the generated base layer goes, relative to the dashboards directory."""
BASE_LAYER_URL = "public/maps/computewatch-graticule.geojson"
"""Where Grafana serves it (docker-compose.yml mounts the file into Grafana's public/maps)."""
TILES_ENV = "COMPUTEWATCH_MAP_TILES"

LON = (70, 140)
LAT = (15, 55)
STEP = 5


class MapTilesError(ValueError):
    """A tile URL Grafana could not use."""


@dataclass(frozen=True)
class MapTiles:
    """An XYZ tile service: ``url`` with ``{z}``, ``{x}`` and ``{y}`` (or ``{-y}``)."""

    url: str
    attribution: str = ""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise MapTilesError(f"bad map tile URL {self.url!r}: an http(s) URL of an XYZ tile "
                                "service, e.g. https://tiles.example.cn/{z}/{x}/{y}.png")
        missing = [p for p in ("{z}", "{x}") if p not in self.url]
        if "{y}" not in self.url and "{-y}" not in self.url:
            missing.append("{y}")
        if missing:
            raise MapTilesError(f"bad map tile URL {self.url!r}: no {', '.join(missing)} "
                                "placeholder (Grafana fills {z}, {x} and {y} or {-y} per tile)")
        if re.search(r"[\s\"'<>]", self.url):
            raise MapTilesError(f"bad map tile URL {self.url!r}: spaces or quotes in it")


def base_layer() -> dict[str, object]:
    """The graticule: meridians and parallels every 5 degrees over China, as GeoJSON lines
    (no boundaries, no places: the markers carry those)."""
    lats = range(LAT[0], LAT[1] + 1, STEP)
    lons = range(LON[0], LON[1] + 1, STEP)
    features = [{"type": "Feature", "properties": {"kind": "meridian", "lon": lon},
                 "geometry": {"type": "LineString",
                              "coordinates": [[lon, lat] for lat in (LAT[0], LAT[1])]}}
                for lon in lons]
    features += [{"type": "Feature", "properties": {"kind": "parallel", "lat": lat},
                  "geometry": {"type": "LineString",
                               "coordinates": [[lon, lat] for lon in LON]}}
                 for lat in lats]
    return {"type": "FeatureCollection", "features": features}


def render_base_layer() -> str:
    return json.dumps(base_layer(), separators=(",", ":")) + "\n"


def basemap(tiles: MapTiles | None, name: str) -> cb.MapLayerOptions:
    """The Geomap's base layer: the graticule served by Grafana, or ``tiles``."""
    layer = cb.MapLayerOptions().name(name).tooltip(False)
    if tiles is not None:
        return layer.type("xyz").config({"url": tiles.url, "attribution": tiles.attribution})
    return layer.type("geojson").config({
        "src": BASE_LAYER_URL,
        "rules": [],
        "style": {"color": {"fixed": "rgba(128, 128, 128, 0.6)"}, "opacity": 0.4,
                  "lineWidth": 1},
    })
