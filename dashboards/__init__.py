"""Grafana dashboards as code, rendered to committed JSON with provisioning files.

Each dashboard is one module (national, site, latency, energy, regulator) built with
grafana-foundation-sdk from logical queries (`dashboards.query`), thresholds from the policy
and places from the topology, once per language set (`dashboards.sets`: English and zh-CN,
text from the message catalogues). `build_files` renders everything that is committed under
dashboards/ (JSON per language, the provisioning, the Geomap gazetteer and offline base
layer, the recording rules the panels read); `push_dashboards` uploads a set to a Grafana.
"""

from computewatch.dashboards.basemap import MapTiles, MapTilesError
from computewatch.dashboards.build import (
    DASHBOARDS_DIR,
    DashboardError,
    build_dashboards,
    build_files,
    build_sets,
    stale_files,
    write_files,
)
from computewatch.dashboards.push import (
    GrafanaAuthError,
    GrafanaUnreachable,
    PushError,
    PushResult,
    push_dashboards,
)
from computewatch.dashboards.sets import DASHBOARD_SETS, DashboardSet

__all__ = [
    "DASHBOARDS_DIR",
    "DASHBOARD_SETS",
    "DashboardError",
    "DashboardSet",
    "GrafanaAuthError",
    "GrafanaUnreachable",
    "MapTiles",
    "MapTilesError",
    "PushError",
    "PushResult",
    "build_dashboards",
    "build_files",
    "build_sets",
    "push_dashboards",
    "stale_files",
    "write_files",
]
