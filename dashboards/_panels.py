"""Small helpers over grafana-foundation-sdk that every dashboard module shares.

They fix what must be the same everywhere: the datasource reference (the dashboard's
``$datasource`` variable, which defaults to the provisioned VictoriaMetrics datasource), how a
logical query becomes a Prometheus target, threshold steps, energy in kWh, and the
transformations the tables use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, table, timeseries
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from computewatch.dashboards.query import Expr
from computewatch.dashboards.sets import DASHBOARD_SETS
from computewatch.i18n import N_, _, current_language
from computewatch.place_names import PlaceKind, place_name
from computewatch.policy import Sourced
from computewatch.topology import Topology

__all__ = [
    "BY_THRESHOLDS",
    "DATASOURCE",
    "DATASOURCE_NAME",
    "DATASOURCE_UID",
    "DATASOURCE_VARIABLE",
    "GAZETTEER",
    "JOULES_PER_KWH",
    "KWH",
    "LABEL_COLUMNS",
    "dashboard_link",
    "datasource_variable",
    "hub_names",
    "joined",
    "kwh",
    "merge",
    "organize",
    "place_mappings",
    "place_table",
    "prom",
    "source",
    "steps",
    "value_field",
    "with_place_names",
]

_Mappable = TypeVar("_Mappable")

DATASOURCE_UID = "computewatch-victoriametrics"
"""Fixed in dashboards/provisioning/datasources/victoriametrics.yaml: the default of every
dashboard's datasource variable."""
DATASOURCE_NAME = "VictoriaMetrics"
DATASOURCE_VARIABLE = "datasource"

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")
"""Every panel and target reads the dashboard's ``$datasource``: any Prometheus-type
datasource (VictoriaMetrics, Prometheus, a second region's store) can be picked, and an
imported dashboard is not tied to one datasource uid."""

JOULES_PER_KWH = 3.6e6
KWH = "kwatth"
"""Grafana's kilowatt-hour unit: it scales to MWh and GWh itself (SI prefixes on Wh)."""

GAZETTEER = "public/gazetteer/computewatch-places.json"
"""The Geomap lookup file, served by Grafana from its public/gazetteer directory (the compose
file mounts dashboards/provisioning/gazetteer/computewatch-places.json there)."""


BY_THRESHOLDS = db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS)
"""Colour values by the panel's thresholds (tables, the map), not by series."""


def datasource_variable(label: str) -> db.DatasourceVariable:
    """The ``$datasource`` variable: Prometheus-type datasources, the provisioned one first."""
    return (db.DatasourceVariable(DATASOURCE_VARIABLE).label(label).type("prometheus")
            .current(dm.VariableOption(selected=True, text=DATASOURCE_NAME,
                                       value=DATASOURCE_UID)))


def dashboard_link(base_uid: str, params: str) -> str:
    """A link to another dashboard of the same language set, keeping the time range and the
    datasource chosen here."""
    uid = DASHBOARD_SETS[current_language()].uid(base_uid)
    return (f"/d/{uid}?{params}&${{{DATASOURCE_VARIABLE}:queryparam}}"
            "&${__url_time_range}")


def place_mappings(topology: Topology | None,
                   kinds: Sequence[PlaceKind] = ("hub", "cluster", "site")) -> list[dm.ValueMap]:
    """Value mappings showing each place id of ``kinds`` by its name in the current language
    (京津冀 for ``jjj`` in zh-CN); none in English, which shows ids. A mapping matches a cell's
    exact text, so numbers are untouched. Keep ``site`` out of panels whose data links carry
    the site id: a link reads the shown value."""
    language = current_language()
    if language == "en" or topology is None:
        return []
    ids = {"hub": [h.id for h in topology.hubs], "cluster": [c.id for c in topology.clusters],
           "site": [s.id for s in topology.sites]}
    names = {key: dm.ValueMappingResult(text=name) for kind in kinds for key in ids[kind]
             if (name := place_name(topology, kind, key, language)) != key}
    return [dm.ValueMap(names)] if names else []


def with_place_names(panel: _Mappable, topology: Topology | None,
                     kinds: Sequence[PlaceKind] = ("hub", "cluster", "site")) -> _Mappable:
    """``panel`` with `place_mappings` (unchanged in English)."""
    mappings = place_mappings(topology, kinds)
    return panel.mappings(mappings) if mappings else panel


def hub_names(panel: timeseries.Panel, topology: Topology | None) -> timeseries.Panel:
    """A panel whose series are named by hub id (legend ``{{hub}}``): each shown by the hub's
    name in the current language."""
    language = current_language()
    if language == "en" or topology is None:
        return panel
    for hub in topology.hubs:
        name = place_name(topology, "hub", hub.id, language)
        if name != hub.id:
            panel = panel.override_by_name(hub.id, [dm.DynamicConfigValue("displayName", name)])
    return panel


def joined(parts: Sequence[str]) -> str:
    """A list in running text: comma-separated, with the full-width comma in Chinese."""
    return ("，" if current_language().startswith("zh") else ", ").join(parts)


def source(entry: Sourced) -> str:
    """A policy threshold's source in the current language, as the policy states it
    (``source_zh`` in zh-CN where the policy gives one, else ``source``: a site's own policy
    shows its own words), on one line."""
    return " ".join(entry.source_in(current_language()).split())


def kwh(joules: Expr) -> Expr:
    """Energy in kWh from joules (the catalogue's base unit): what meters and bills show."""
    return joules / JOULES_PER_KWH


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
    for ref, _name, expr in columns:
        panel = panel.with_target(prom(expr, ref, instant=True, table=True))
    rename = {f"Value #{ref}": name for ref, name, _expr in columns}
    return (panel.with_transformation(merge())
            .with_transformation(organize(rename, order=("site", "hub", "cluster", *rename))))


LABEL_COLUMNS = {"site": N_("site"), "hub": N_("hub"), "cluster": N_("cluster"),
                 "namespace": N_("namespace"), "rule": N_("rule"), "tier": N_("tier")}
"""Label columns the tables show, headed in the dashboard's language (data links still read
them by their label name)."""


def organize(rename: Mapping[str, str], exclude: Sequence[str] = ("Time", "__name__"),
             order: Sequence[str] = ()) -> dm.DataTransformerConfig:
    """Rename, hide and order table columns; label columns get their heading in the
    current language."""
    labels = {k: _(v) for k, v in LABEL_COLUMNS.items() if _(v) != k and k not in rename}
    return dm.DataTransformerConfig(id_val="organize", options={
        "renameByName": {**labels, **rename},
        "excludeByName": {name: True for name in exclude},
        "indexByName": {name: i for i, name in enumerate(order)},
    })
