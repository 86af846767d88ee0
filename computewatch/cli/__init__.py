"""The `computewatch` command line: the only package that imports every layer, and nothing
imports it. One module per command group, each thin (parse, call the package, render):

- `_demo` (demo; its job in `_demo_run`), `_query` (summary, surplus), `_node` (collect,
  agent, responder), `_analyze`, `_report`, `_places` (topology check), `_dashboards`,
  `_bridge` (alert-bridge), `_healthcheck` (the image's ``computewatch-healthcheck``);
- `_common`: options and helpers every command shares; `_signals`: the one run-until-signalled
  helper of the long-running commands; `_startup`: a command's imports without the cyclic
  garbage collector; `_app`: the registry and the exit-code mapping.

Attributes load lazily, so the light health check does not import Typer and every command.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "healthcheck", "main"]


def __getattr__(name: str) -> Any:
    if name in ("app", "main"):
        from computewatch.cli._startup import starting

        with starting("computewatch.cli._app"):
            from computewatch.cli import _app

        return getattr(_app, name)
    if name == "healthcheck":
        from computewatch.cli._healthcheck import healthcheck

        return healthcheck
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
