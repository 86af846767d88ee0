"""Build every dashboard to Grafana JSON, with the files that go next to it, deterministically.

`computewatch dashboards build` writes, under the dashboards directory (or ``--out``), one
set of dashboards per language: ``json/<language>/<uid>.json`` (``json/en/``: the English
set under the uids it always had; ``json/zh-CN/``: the Chinese set, uids ending ``-zh-cn``,
provisioned into a folder of its own), the Geomap gazetteer and blank base layer, and the
recording rules the panels read. The output depends only on the topology, the policy,
alerts/rules, the message catalogues and the map-tile setting, and is byte-stable (sorted
keys, fixed panel ids), so the committed files can be compared with a fresh build and a
stale one is caught by a test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from computewatch.dashboards import energy, latency, national, regulator, site
from computewatch.dashboards._panels import datasource_variable
from computewatch.dashboards.basemap import BASE_LAYER_FILE, MapTiles, render_base_layer
from computewatch.dashboards.places import GAZETTEER_FILE, render_gazetteer
from computewatch.dashboards.rules import RULES_FILE, alerts_records, known_records, render_rules
from computewatch.dashboards.sets import (
    DASHBOARD_SETS,
    PROVISIONING_FILE,
    DashboardSet,
    render_provisioning,
)
from computewatch.i18n import _, using_language
from computewatch.policy import Policy
from computewatch.topology import Topology

__all__ = [
    "ALERTS_RULES_DIR",
    "DASHBOARDS_DIR",
    "DashboardError",
    "build_dashboards",
    "build_files",
    "build_sets",
    "stale_files",
    "write_files",
]

DASHBOARDS_DIR = Path(__file__).resolve().parent
ALERTS_RULES_DIR = DASHBOARDS_DIR.parent / "alerts" / "rules"

Builder = Callable[[Topology, Policy], db.Dashboard]


def builders(tiles: MapTiles | None = None) -> tuple[Builder, ...]:
    """Every dashboard's builder, in the order they are listed; ``tiles`` for the map."""
    return (
        partial(national.national_dashboard, tiles=tiles),
        site.site_dashboard,
        latency.latency_dashboard,
        energy.energy_dashboard,
        regulator.regulator_dashboard,
    )


class DashboardError(ValueError):
    """A dashboard reads something nothing provides (an unknown recording rule)."""


@dataclass(frozen=True)
class _Finalized:
    uid: str
    model: dict[str, Any]


def _panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in model.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def _finalize(dashboard: db.Dashboard, dashboards: DashboardSet) -> _Finalized:
    """Plain JSON with panel ids 1..n in layout order (the SDK leaves ids to Grafana), and
    the panels of expanded rows after their row, as Grafana itself saves them (only a
    collapsed row holds its panels); the set's uid, and the datasource variable first."""
    dashboard = dashboard.uid(dashboards.uid(str(dashboard.build().uid)))
    model = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    variable = json.loads(json.dumps(datasource_variable(_("Data source")).build(),
                                     cls=JSONEncoder))
    templating = model.setdefault("templating", {})
    templating["list"] = [variable, *templating.get("list", [])]
    flat: list[dict[str, Any]] = []
    for panel in model.get("panels", []):
        flat.append(panel)
        if panel.get("type") == "row" and not panel.get("collapsed"):
            flat.extend(panel.get("panels", []))
            panel["panels"] = []
    _flow(flat)
    model["panels"] = flat
    for i, panel in enumerate(_panels(model), start=1):
        panel["id"] = i
    return _Finalized(model["uid"], model)


def _flow(panels: list[dict[str, Any]]) -> None:
    """Place panels left to right in their order, wrapping at Grafana's 24 columns; a row
    starts a new line. (The SDK's own placement lets a wide panel overflow the line.)"""
    x = y = line_h = 0
    for panel in panels:
        pos = panel["gridPos"]
        if panel.get("type") == "row" or x + pos["w"] > 24:
            x, y, line_h = 0, y + line_h, 0
        pos["x"], pos["y"] = x, y
        if panel.get("type") == "row":
            y += pos["h"]
            continue
        x += pos["w"]
        line_h = max(line_h, pos["h"])


def _check_records(model: dict[str, Any], known: set[str]) -> None:
    """Every ``level:metric:operation`` name a query reads must be a known recording rule."""
    for panel in _panels(model):
        for target in panel.get("targets", []):
            for name in re.findall(r"\b([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b", target.get("expr", "")):
                if name not in known:
                    raise DashboardError(
                        f"dashboard {model['uid']}: panel {panel.get('title')!r} reads "
                        f"{name!r}, which no recording rule defines (dashboards/rules.py or "
                        f"alerts/rules/*.yml)")


def build_dashboards(topology: Topology, policy: Policy,
                     alerts_dir: Path | None = ALERTS_RULES_DIR, *,
                     language: str = "en",
                     tiles: MapTiles | None = None) -> dict[str, dict[str, Any]]:
    """One language's dashboards: each JSON model by uid, checked against the recording
    rules available."""
    return build_sets(topology, policy, alerts_dir, languages=(language,),
                      tiles=tiles)[language]


def build_sets(topology: Topology, policy: Policy,
               alerts_dir: Path | None = ALERTS_RULES_DIR, *,
               languages: tuple[str, ...] | None = None,
               tiles: MapTiles | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Every language's dashboards (default: every set), by language, then uid."""
    known = known_records(policy, alerts_dir)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for language in languages or tuple(DASHBOARD_SETS):
        dashboards = DASHBOARD_SETS[language]
        models: dict[str, dict[str, Any]] = {}
        with using_language(language):
            for build in builders(tiles):
                done = _finalize(build(topology, policy), dashboards)
                _check_records(done.model, known)
                models[done.uid] = done.model
        out[language] = models
    return out


def dumps(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_files(topology: Topology, policy: Policy,
                alerts_dir: Path | None = ALERTS_RULES_DIR, *,
                tiles: MapTiles | None = None) -> dict[str, str]:
    """Every generated file's text by its path relative to the dashboards directory."""
    files = {f"json/{DASHBOARD_SETS[language].directory}/{uid}.json": dumps(model)
             for language, models in build_sets(topology, policy, alerts_dir,
                                                tiles=tiles).items()
             for uid, model in models.items()}
    files[GAZETTEER_FILE] = render_gazetteer(topology)
    files[BASE_LAYER_FILE] = render_base_layer()
    files[PROVISIONING_FILE] = render_provisioning()
    skip = alerts_records(alerts_dir) if alerts_dir is not None else set()
    files[RULES_FILE] = render_rules(policy, skip)
    return files


def write_files(files: dict[str, str], root: Path) -> list[Path]:
    """Write ``files`` under ``root``; returns the paths written."""
    written = []
    for rel, text in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(files: dict[str, str], root: Path) -> list[str]:
    """Generated files under ``root`` that differ from ``files`` or are missing, plus
    dashboards under ``root/json`` (any folder) that the build no longer makes."""
    stale = [rel for rel, text in sorted(files.items())
             if not (root / rel).exists() or (root / rel).read_text(encoding="utf-8") != text]
    json_dir = root / "json"
    if json_dir.is_dir():
        made = {p.relative_to(root).as_posix() for p in json_dir.rglob("*.json")}
        stale += sorted(rel for rel in made if rel not in files)
    return stale
