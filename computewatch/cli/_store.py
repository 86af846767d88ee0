"""`computewatch store expire`: retention for the embedded store, run by hand or from cron.

The servers keep their own retention (VictoriaMetrics ``-retentionPeriod``, Prometheus
``--storage.tsdb.retention.time``, an InfluxDB bucket's retention), so for them the command
says which setting to change instead of deleting anything.
"""

from __future__ import annotations

from typing import Annotated

import typer

from computewatch.cli._common import (
    DEFAULT_STORE,
    StoreOpt,
    UserError,
    open_existing,
    parse_duration,
)
from computewatch.i18n import _

__all__ = ["store_expire"]

_SERVER_RETENTION = {
    "VictoriaMetricsStore": "its -retentionPeriod flag (the compose stack sets 35d)",
    "PrometheusStore": "its --storage.tsdb.retention.time flag",
    "InfluxDBStore": "the bucket's retention period (influx bucket update --retention)",
}


def store_expire(
    store: StoreOpt = DEFAULT_STORE,
    raw: Annotated[str, typer.Option(
        "--raw-retention", help="Keep raw samples this long (35d, 8w, ...).")] = "35d",
    rollups: Annotated[str | None, typer.Option(
        "--rollup-retention", help="Keep hourly and daily rollups this long (default: for "
                                   "good).")] = None,
    compact: Annotated[bool, typer.Option(
        "--compact", help="Also rewrite the file so it shrinks (without it the freed blocks "
                          "are reused by later writes and the file stops growing).")] = False,
) -> None:
    """Delete raw samples older than the retention and free their space; rollups stay."""
    from computewatch.store import DuckDBStore

    keep_raw = parse_duration(raw, "--raw-retention", minimum=3600)
    keep_rollups = None if rollups is None else parse_duration(rollups, "--rollup-retention",
                                                               minimum=86400)
    st = open_existing(store)
    try:
        if not isinstance(st, DuckDBStore):
            where = _SERVER_RETENTION.get(type(st).__name__, "the server's own setting")
            raise UserError(_("{url}: the server keeps its own retention: set {where}").format(
                url=st.url, where=where))
        got = st.expire(keep_raw, keep_rollups, compact=compact)
    finally:
        st.close()
    typer.echo(f"{got.raw_rows:,} raw rows before {got.raw_cutoff:%Y-%m-%d %H:%M}Z deleted, "
               f"{got.rollup_rows:,} rollup rows"
               + (f" before {got.rollup_cutoff:%Y-%m-%d}" if got.rollup_cutoff else "")
               + f"; {got.used_bytes_before / 1e6:,.1f} -> {got.used_bytes_after / 1e6:,.1f} MB "
                 f"in use, file {got.file_bytes / 1e6:,.1f} MB")
