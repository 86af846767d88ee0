"""Turning results into what a person or a script reads: rich tables, JSON or CSV."""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import TextIO

import pandas as pd
from rich.console import Console
from rich.table import Table

from computewatch.summary import NationalSummary

__all__ = ["OutputFormat", "render_summary"]


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def _ms(seconds: float) -> str:
    return "—" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def _pct(x: float) -> str:
    return "—" if x is None or math.isnan(x) else f"{x * 100:.1f}%"


def _records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records", date_format="iso"))


def render_summary(summary: NationalSummary, fmt: OutputFormat, out: TextIO,
                   console: Console | None = None) -> None:
    if fmt is OutputFormat.JSON:
        doc = {"start": summary.start.isoformat(), "end": summary.end.isoformat(),
               "rows": _records(summary.rows), "worst_links": _records(summary.links.head(10))}
        out.write(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        return
    if fmt is OutputFormat.CSV:
        summary.rows.to_csv(out, index=False)
        return
    # Piped output (logs, CI) gets a wide table instead of rich's 80-column default.
    console = console or Console(file=out, width=None if out.isatty() else 150)
    title = (f"National summary {summary.start:%Y-%m-%d %H:%M} – {summary.end:%Y-%m-%d %H:%M} "
             f"UTC")
    table = Table(title=title, title_justify="left", show_lines=False)
    for name, justify in (("Hub / cluster", "left"), ("Sites", "right"), ("Accel.", "right"),
                          ("CUDA / CANN", "right"), ("Mean util.", "right"),
                          ("Idle acc.-h", "right"), ("PUE", "right"),
                          ("Worst link", "left"), ("Tier", "left"),
                          ("p95 / budget", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in summary.rows.itertuples():
        if r.level == "national":
            table.add_section()
            label = "[bold]National[/bold]"
        elif r.level == "hub":
            label = f"[bold]{r.hub}[/bold]"
        else:
            label = f"  {r.cluster}"
        over = r.worst_link_p95_s > r.worst_link_budget_s
        ratio = (f"{_ms(r.worst_link_p95_s)} / {_ms(r.worst_link_budget_s)}"
                 if r.worst_link else "—")
        pue = "—" if math.isnan(r.pue) else f"{r.pue:.3f}"
        table.add_row(label, str(r.sites), f"{r.accelerators:,}", f"{r.cuda:,} / {r.cann:,}",
                      _pct(r.mean_utilization), f"{r.idle_accelerator_hours:,.0f}", pue,
                      r.worst_link or "—", r.worst_link_tier or "—",
                      f"[red]{ratio}[/red]" if over else ratio)
    console.print(table)
    console.print(
        "[dim]Mean util.: mean of all utilization samples. Idle acc.-h: Σ (1 − utilization) × "
        "sampling interval. PUE: facility energy / IT energy from meter counters over the "
        "period. Worst link: the largest 95th-percentile window p95 RTT relative to its tier "
        "budget (red: over budget).[/dim]")
