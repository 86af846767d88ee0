"""`computewatch rollup`: roll up what was written to an embedded store since the last run,
or the raw hours an InfluxDB 2 store closed since the last run
(`computewatch.store._influxrollups`), once or on a schedule (``--every``), so that rollups
are current without any query paying for them. VictoriaMetrics and Prometheus roll up
through recording rules instead."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from computewatch.cli._common import (
    DEFAULT_STORE,
    StoreOpt,
    UserError,
    open_existing,
    parse_duration,
)

__all__ = ["rollup"]


def rollup(
    store: StoreOpt = DEFAULT_STORE,
    every: Annotated[str | None, typer.Option(
        help="Run again on this schedule until signalled (e.g. 5m); default: once.")] = None,
    heartbeat: Annotated[Path | None, typer.Option(
        help="After each run that succeeds, write the time to this file (for a health "
        "check: computewatch-healthcheck file://PATH?max_age=...).")] = None,
) -> None:
    """Roll up the raw data written since the last run into hourly and daily rollups."""
    from computewatch.cli._signals import run_until_signalled
    from computewatch.rollup_rules import ROLLUP_RULES_FILE
    from computewatch.schedule import run_every, write_heartbeat

    interval = parse_duration(every, "--every", minimum=1.0) if every else None
    st = open_existing(store)
    refresh = getattr(st, "refresh_rollups", None)
    if refresh is None:
        raise UserError(f"{st.url}: this store rolls up through recording rules: load "
                        f"{ROLLUP_RULES_FILE} into vmalert (-rule=, -remoteWrite.url= the "
                        f"store) or Prometheus (rule_files)")

    def once() -> None:
        hours = refresh()
        typer.echo(f"rolled up {hours} hours of {st.url}")
        if heartbeat is not None:
            write_heartbeat(heartbeat)

    try:
        if interval is None:
            once()
        else:
            run_until_signalled(lambda stop: run_every(interval.total_seconds(), once, stop,
                                                       name="rollup"))
    finally:
        st.close()
