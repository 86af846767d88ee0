"""Small helpers over grafana-foundation-sdk that every dashboard module shares.

They fix what must be the same everywhere: the datasource reference (the provisioned
VictoriaMetrics datasource, by its fixed uid), how a logical query becomes a Prometheus
target, threshold steps, and the transformations the tables use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, table
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from computewatch.dashboards.query import Expr

__all__ = [
    "BY_THRESHOLDS",
    "DATASOURCE",
    "DATASOURCE_UID",
    "GAZETTEER",
    "merge",
    "organize",
    "place_table",
    "prom",
    "steps",
    "value_field",
]

DATASOURCE_UID = "computewatch-victoriametrics"
"""Fixed in dashboards/provisioning/datasources/victoriametrics.yaml; every panel names it."""

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)

GAZETTEER = "public/gazetteer/computewatch-places.json"
"""The Geomap lookup file, served by Grafana from its public/gazetteer directory (the compose
file mounts dashboards/provisioning/gazetteer/computewatch-places.json there)."""


BY_THRESHOLDS = db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS)
"""Colour values by the panel's thresholds (tables, the map), not by series."""


def prom(expr: Expr, ref: str = "A", *, legend: str | None = None, instant: bool = False,
         table: bool = False) -> prometheus.Dataquery:
    """A Prometheus target for ``expr``: a range query unless ``instant``; ``table`` format
    gives one row per series with its labels as columns (for tables and the map)."""
    q = prometheus.Dataquery().expr(expr.promql()).ref_id(ref).datasource(DATASOURCE)
    q = q.instant() if instant else q.range()
    if table:
        q = q.format(pm.PromQueryFormat.TABLE)
    if legend is not None:
        q = q.legend_format(legend)
    return q


def steps(base: str, *levels: tuple[float, str]) -> db.ThresholdsConfig:
    """Absolute threshold steps: ``base`` colour below the first level, then each level's."""
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(None, base), *(dm.Threshold(v, c) for v, c in levels)])


def value_field(ref: str, queries: int) -> str:
    """The name Grafana gives a table-format query's value column: ``Value`` when the panel
    has one query, ``Value #<refId>`` when it has several."""
    return "Value" if queries == 1 else f"Value #{ref}"


def merge() -> dm.DataTransformerConfig:
    """Join table-format queries into one table on their shared label columns."""
    return dm.DataTransformerConfig(id_val="merge", options={})


def place_table(panel: table.Panel, columns: Sequence[tuple[str, str, Expr]]) -> table.Panel:
    """One row per place: each ``(ref, column name, expr)`` an instant table query, merged on
    their shared labels, the columns renamed and ordered after site, hub and cluster."""
    for ref, _, expr in columns:
        panel = panel.with_target(prom(expr, ref, instant=True, table=True))
    rename = {f"Value #{ref}": name for ref, name, _ in columns}
    return (panel.with_transformation(merge())
            .with_transformation(organize(rename, order=("site", "hub", "cluster", *rename))))


def organize(rename: Mapping[str, str], exclude: Sequence[str] = ("Time", "__name__"),
             order: Sequence[str] = ()) -> dm.DataTransformerConfig:
    """Rename, hide and order table columns."""
    return dm.DataTransformerConfig(id_val="organize", options={
        "renameByName": dict(rename),
        "excludeByName": {name: True for name in exclude},
        "indexByName": {name: i for i, name in enumerate(order)},
    })
