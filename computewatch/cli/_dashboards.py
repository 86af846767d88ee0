"""`computewatch dashboards build|push`: the Grafana dashboards as code."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from computewatch.cli._common import PolicyOpt, TopologyOpt, UserError, load_places, print_error
from computewatch.i18n import _
from computewatch.status import ExitStatus

__all__ = ["dashboards_build", "dashboards_push"]


def dashboards_build(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Directory to write into (default: the dashboards/ directory itself): "
                      "json/<language>/*.json, the Geomap gazetteer and base layer, the "
                      "provisioning and the recording rules.")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; exit 1 if the files under --out are stale.")] = False,
    map_tiles: Annotated[str | None, typer.Option(
        "--map-tiles", envvar="COMPUTEWATCH_MAP_TILES", show_envvar=True,
        help="XYZ URL of a licensed tile service for the national map, with {z}, {x} and "
             "{y}, e.g. 天地图 or an intranet tile server. Default: no tiles (a graticule "
             "served by Grafana itself; nothing is fetched from the internet).")] = None,
    map_attribution: Annotated[str, typer.Option(
        "--map-attribution", help="Attribution shown with --map-tiles (the map's 审图号 "
                                  "and provider).")] = "",
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Regenerate the Grafana dashboards' JSON (grafana-foundation-sdk), in English and
    Chinese, and their companions."""
    from computewatch.dashboards import (
        DASHBOARDS_DIR,
        MapTiles,
        MapTilesError,
        build_files,
        stale_files,
        write_files,
    )

    try:
        tiles = MapTiles(map_tiles, map_attribution) if map_tiles else None
    except MapTilesError as exc:
        raise UserError(f"--map-tiles: {exc}") from None
    topo, pol = load_places(topology, policy)
    files = build_files(topo, pol, tiles=tiles)
    root = out or DASHBOARDS_DIR
    if check:
        stale = stale_files(files, root)
        for rel in stale:
            typer.echo(f"stale: {root / rel}")
        if stale:
            typer.echo("run `computewatch dashboards build` and commit the result", err=True)
            raise typer.Exit(ExitStatus.ERROR)
        typer.echo(f"{len(files)} files under {root} are up to date")
        return
    for path in write_files(files, root):
        typer.echo(f"wrote {path}")


def dashboards_push(
    url: Annotated[str, typer.Option("--url", envvar="GRAFANA_URL",
                                     help="Grafana base URL, e.g. http://127.0.0.1:3000")],
    token: Annotated[str | None, typer.Option(
        "--token", envvar="GRAFANA_TOKEN", show_envvar=True,
        help="Service-account token (Editor). Prefer --token-file or the environment: a "
             "command line is visible to other users.")] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="File holding the token (e.g. a Docker secret).")] = None,
    folder: Annotated[str | None, typer.Option(
        help="Grafana folder to put the dashboards in (default: the language set's folder: "
             "computewatch, or computewatch 简体中文 for zh-CN).")] = None,
    language: Annotated[str, typer.Option(
        "--language", help="Which set to push: en or zh-CN.")] = "en",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each Grafana call.")]
    = 10.0,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Upload the dashboards into a Grafana folder; idempotent by dashboard uid."""
    from computewatch.dashboards import (
        DASHBOARD_SETS,
        GrafanaAuthError,
        PushError,
        build_dashboards,
        push_dashboards,
    )

    if language not in DASHBOARD_SETS:
        raise UserError(_("bad --language {value}: one of {choices}").format(
            value=repr(language), choices=", ".join(DASHBOARD_SETS)))
    folder = folder or DASHBOARD_SETS[language].folder
    if not (math.isfinite(timeout) and 0 < timeout <= 3600):
        raise UserError(_("bad --timeout {value}: seconds, more than 0 and at most 3600").format(
            value=timeout))
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"--token-file {token_file}: {exc.strerror or exc}") from None
        if not token:
            raise UserError(_("--token-file {path}: the file is empty").format(path=token_file))
    from computewatch.redact import redact_url, register_secret

    register_secret(token)  # never in an error or a log line
    topo, pol = load_places(topology, policy)
    try:
        fuid, results = push_dashboards(build_dashboards(topo, pol, language=language), url,
                                        token or "",
                                        folder=folder, timeout_s=timeout)
    except GrafanaAuthError as exc:
        raise UserError(str(exc)) from None
    except PushError as exc:
        print_error(exc)
        raise typer.Exit(ExitStatus.ERROR) from None
    shown = redact_url(url.rstrip("/"))
    for r in results:
        typer.echo(f"{r.action:9} {r.uid}  {r.title}  {shown}{r.url}")
    typer.echo(f"{len(results)} dashboards in folder {folder!r} (uid {fuid})")
