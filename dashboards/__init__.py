"""Grafana dashboards as code, rendered to committed JSON with provisioning files.

Each dashboard is one module (national, site, latency, energy, regulator) built with
grafana-foundation-sdk from logical queries (`dashboards.query`), thresholds from the policy
and places from the topology. `build_files` renders everything that is committed under
dashboards/ (JSON, the Geomap gazetteer, the recording rules the panels read);
`push_dashboards` uploads the dashboards to a Grafana.
"""

from computewatch.dashboards.build import (
    DASHBOARDS_DIR,
    DashboardError,
    build_dashboards,
    build_files,
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

__all__ = [
    "DASHBOARDS_DIR",
    "DashboardError",
    "GrafanaAuthError",
    "GrafanaUnreachable",
    "PushError",
    "PushResult",
    "build_dashboards",
    "build_files",
    "push_dashboards",
    "stale_files",
    "write_files",
]
