"""Build every dashboard to Grafana JSON, with the files that go next to it, deterministically.

`computewatch dashboards build` writes, under the dashboards directory (or ``--out``):
``json/<uid>.json`` per dashboard, the Geomap gazetteer and the recording rules the panels
read. The output depends only on the topology, the policy and alerts/rules, and is
byte-stable (sorted keys, fixed panel ids), so the committed files can be compared with a
fresh build and a stale one is caught by a test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from computewatch.dashboards import energy, latency, national, regulator, site
from computewatch.dashboards.places import GAZETTEER_FILE, render_gazetteer
from computewatch.dashboards.rules import RULES_FILE, alerts_records, known_records, render_rules
from computewatch.policy import Policy
from computewatch.topology import Topology

__all__ = [
    "ALERTS_RULES_DIR",
    "DASHBOARDS_DIR",
    "DashboardError",
    "build_dashboards",
    "build_files",
    "stale_files",
    "write_files",
]

DASHBOARDS_DIR = Path(__file__).resolve().parent
ALERTS_RULES_DIR = DASHBOARDS_DIR.parent / "alerts" / "rules"

Builder = Callable[[Topology, Policy], db.Dashboard]
BUILDERS: tuple[Builder, ...] = (
    national.national_dashboard,
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


def _finalize(dashboard: db.Dashboard) -> _Finalized:
    """Plain JSON with panel ids 1..n in layout order (the SDK leaves ids to Grafana), and
    the panels of expanded rows after their row, as Grafana itself saves them (only a
    collapsed row holds its panels)."""
    model = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
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
    import re

    for panel in _panels(model):
        for target in panel.get("targets", []):
            for name in re.findall(r"\b([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b", target.get("expr", "")):
                if name not in known:
                    raise DashboardError(
                        f"dashboard {model['uid']}: panel {panel.get('title')!r} reads "
                        f"{name!r}, which no recording rule defines (dashboards/rules.py or "
                        f"alerts/rules/*.yml)")


def build_dashboards(topology: Topology, policy: Policy,
                     alerts_dir: Path | None = ALERTS_RULES_DIR) -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON model by uid, checked against the recording rules available."""
    known = known_records(policy, alerts_dir)
    out: dict[str, dict[str, Any]] = {}
    for build in BUILDERS:
        done = _finalize(build(topology, policy))
        _check_records(done.model, known)
        out[done.uid] = done.model
    return out


def dumps(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build_files(topology: Topology, policy: Policy,
                alerts_dir: Path | None = ALERTS_RULES_DIR) -> dict[str, str]:
    """Every generated file's text by its path relative to the dashboards directory."""
    files = {f"json/{uid}.json": dumps(model)
             for uid, model in build_dashboards(topology, policy, alerts_dir).items()}
    files[GAZETTEER_FILE] = render_gazetteer(topology)
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
    dashboards in ``root/json`` that the build no longer makes."""
    stale = [rel for rel, text in sorted(files.items())
             if not (root / rel).exists() or (root / rel).read_text(encoding="utf-8") != text]
    json_dir = root / "json"
    if json_dir.is_dir():
        stale += sorted(f"json/{p.name}" for p in json_dir.glob("*.json")
                        if f"json/{p.name}" not in files)
    return stale
