"""The `computewatch` command line: the only package that imports every layer, and nothing
imports it. One module per command group, each thin (parse, call the package, render):

- `_demo` (demo; its job in `_demo_run`), `_query` (summary, surplus), `_node` (collect,
  agent, responder), `_analyze`, `_report`, `_places` (topology check), `_dashboards`,
  `_bridge` (alert-bridge), `_healthcheck` (the image's ``computewatch-healthcheck``);
- `_common`: options and helpers every command shares; `_signals`: the one run-until-signalled
  helper of the long-running commands; `_app`: the registry and the exit-code mapping.

Attributes load lazily, so the light health check does not import Typer and every command.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["app", "healthcheck", "main", "starting"]


@contextmanager
def starting(module: str) -> Iterator[None]:
    """Imports without the cyclic garbage collector, then the objects they made moved out of
    its sight (`gc.freeze`): modules live as long as the process, yet a month's report
    (pandas, pyarrow, DuckDB, pydantic: some 100,000 objects) ran 258 collections, 0.1 to
    0.15 s of CPU, mostly over them, and each full collection after walked them again (69
    collections, 0.015 s, with this). Nothing is done where ``module`` (the imports' root) is
    imported already: a second command in one process (the tests) freezes none of its data."""
    if module in sys.modules:
        yield
        return
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


def __getattr__(name: str) -> Any:
    if name in ("app", "main"):
        with starting("computewatch.cli._app"):
            from computewatch.cli import _app

        return getattr(_app, name)
    if name == "healthcheck":
        from computewatch.cli._healthcheck import healthcheck

        return healthcheck
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
