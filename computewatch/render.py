"""Turning results into what a person or a script reads: rich tables, JSON or CSV."""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import TYPE_CHECKING, TextIO

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from computewatch.summary import NationalSummary
from computewatch.triage import RootCause

if TYPE_CHECKING:
    from computewatch.findings import Analysis
    from computewatch.sim.scoring import Scorecard

__all__ = ["OutputFormat", "format_value", "render_analysis", "render_findings", "render_frame",
           "render_root_causes", "render_scores", "render_summary"]


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


def render_frame(df: pd.DataFrame, fmt: OutputFormat, out: TextIO, *, title: str) -> None:
    """Any result table: one rich table (floats to three decimals), JSON records or CSV."""
    if fmt is OutputFormat.JSON:
        out.write(json.dumps(_records(df), indent=1, ensure_ascii=False) + "\n")
        return
    if fmt is OutputFormat.CSV:
        df.to_csv(out, index=False)
        return
    table = Table(title=escape(title), title_justify="left")
    for col in df.columns:
        table.add_column(escape(str(col)))
    for row in df.itertuples(index=False):
        table.add_row(*[f"{v:,.3f}" if isinstance(v, float) else escape(str(v)) for v in row])
    Console(file=out, width=None if out.isatty() else 160).print(table)


def render_summary(summary: NationalSummary, fmt: OutputFormat, out: TextIO,
                   console: Console | None = None, *, extra: dict | None = None) -> None:
    """The national summary; ``extra`` keys join the JSON document (the demo's scores)."""
    if fmt is OutputFormat.JSON:
        doc = {"start": summary.start.isoformat(), "end": summary.end.isoformat(),
               "rows": _records(summary.rows), "worst_links": _records(summary.links.head(10)),
               **(extra or {})}
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
        "part of the period every meter covers (pue_completeness in json and csv). Worst "
        "link: the largest 95th-percentile window p95 RTT relative to its tier budget (red: "
        "over budget).[/dim]")


_SEVERITY = {0: "info", 1: "warning", 2: "critical"}


def render_root_causes(causes: list[RootCause], out: TextIO, *, limit: int = 12,
                       title: str = "Root causes") -> None:
    """One line per root-cause group, most urgent first: what pages, then what plans."""
    console = Console(file=out, width=None if out.isatty() else 160)
    shown = causes[:limit]
    more = f" (top {len(shown)})" if len(shown) < len(causes) else ""
    table = Table(title=f"{escape(title)}: {len(causes)} groups{more}", title_justify="left")
    for col in ("severity", "kind", "group", "findings", "window", "most urgent finding"):
        table.add_column(col, justify="right" if col == "findings" else "left")
    for c in shown:
        sev = _SEVERITY.get(int(c.severity), str(c.severity))
        colour = {"critical": "red", "warning": "yellow"}.get(sev)
        rules = ", ".join(f"{r} x{n}" if n > 1 else r for r, n in c.rules[:3])
        window = f"{c.start:%m-%d %H:%M} – {c.end:%m-%d %H:%M}"
        table.add_row(f"[{colour}]{sev}[/{colour}]" if colour else sev,
                      "acute" if c.acute else "chronic", escape(c.group),
                      str(c.findings), window,
                      escape(f"{c.headline.message or c.headline.rule} [{rules}]"))
    console.print(table)


def format_value(v: float, unit: str) -> str:
    """A finding's observed value or threshold in its unit, as tables and reports show it."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if unit == "ratio":
        return f"{v:.1%}"
    if unit == "s":
        return f"{v * 1000:.2f} ms"
    return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"


def render_findings(df: pd.DataFrame, fmt: OutputFormat, out: TextIO, *,
                    limit: int | None = None, title: str = "Findings") -> None:
    """Findings in the frame's order: a table for people, JSON or CSV for scripts.

    JSON keeps every column (``detail`` too, where the frame has JSON-ready details:
    `computewatch.triage.triage_frame`); CSV writes ``detail`` as a JSON string."""
    if fmt is OutputFormat.JSON:
        if "incident" not in df.columns:  # a plain findings frame: detail is not JSON-ready
            df = df.drop(columns=["detail"], errors="ignore")
        out.write(json.dumps(_records(df), indent=1, ensure_ascii=False, default=str) + "\n")
        return
    if fmt is OutputFormat.CSV:
        if "detail" in df.columns:
            df = df.assign(detail=[json.dumps(d, ensure_ascii=False, default=str)
                                   for d in df.detail])
        df.to_csv(out, index=False)
        return
    console = Console(file=out, width=None if out.isatty() else 160)
    shown = df if limit is None else df.head(limit)
    more = f" (top {len(shown)})" if len(shown) < len(df) else ""
    table = Table(title=f"{escape(title)}: {len(df)}{more}", title_justify="left")
    for col in ("severity", "pipeline", "rule", "subject", "observed", "threshold", "window",
                "compl."):
        table.add_column(col, justify="right" if col in ("observed", "threshold", "compl.")
                         else "left")
    for r in shown.itertuples():
        sev = _SEVERITY.get(int(r.severity), str(r.severity))
        colour = {"critical": "red", "warning": "yellow"}.get(sev)
        window = f"{pd.Timestamp(r.start):%m-%d %H:%M} – {pd.Timestamp(r.end):%m-%d %H:%M}"
        table.add_row(f"[{colour}]{sev}[/{colour}]" if colour else sev, r.pipeline, r.rule,
                      escape(str(r.subject)), format_value(r.observed, r.unit),
                      format_value(r.threshold, r.unit), window, f"{r.completeness:.0%}")
    console.print(table)


def render_analysis(analysis: Analysis, fmt: OutputFormat, out: TextIO, *,
                    limit: int | None = None, title: str = "Findings",
                    frame: pd.DataFrame | None = None) -> None:
    """A run of the pipelines: for scripts (JSON), the period, every pipeline's status
    (``ok`` with its count of findings, or ``failed`` with the error) and the findings; as a
    table or CSV, the findings (a failed pipeline is the command's error and exit code).
    ``frame``: the findings as the caller lays them out (default `Analysis.frame`)."""
    frame = analysis.frame() if frame is None else frame
    if fmt is not OutputFormat.JSON:
        render_findings(frame, fmt, out, limit=limit, title=title)
        return
    df = frame if "incident" in frame.columns else frame.drop(columns=["detail"],
                                                               errors="ignore")
    doc = {"start": analysis.period.start.isoformat(), "end": analysis.period.end.isoformat(),
           "pipelines": [{"name": st.name, "status": "ok" if st.ok else "failed",
                          "findings": st.findings, "error": st.error}
                         for st in analysis.status],
           "findings": _records(df)}
    out.write(json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n")


def render_scores(card: Scorecard, out: TextIO) -> None:
    """Recall and precision of every rule against the simulator's ground truth, with the
    first misses and false findings; rules without a matcher said, never hidden."""
    console = Console(file=out, width=None if out.isatty() else 160)
    table = Table(title="Findings scored against the simulator's ground truth",
                  title_justify="left")
    for col in ("rule", "to find", "found", "missed", "false", "recall", "precision"):
        table.add_column(col, justify="left" if col == "rule" else "right")

    def pct(x: float) -> str:
        return "—" if math.isnan(x) else f"{x:.0%}"

    for s in card.scores:
        bad = s.false_negatives or s.false_positives
        table.add_row(f"[red]{s.rule}[/red]" if bad else s.rule, str(s.expected),
                      str(s.true_positives), str(s.false_negatives), str(s.false_positives),
                      pct(s.recall), pct(s.precision))
    console.print(table)
    for s in card.scores:
        for line in s.missed[:3]:
            console.print(f"  missed  {s.rule}: {escape(line)}", highlight=False)
        for line in s.wrong[:3]:
            console.print(f"  false   {s.rule}: {escape(line)}", highlight=False)
    if card.unscored:
        console.print("[red]rules with findings and no matcher (not scored): "
                      + ", ".join(f"{r} ({n})" for r, n in card.unscored.items()) + "[/red]")
    console.print("[dim]to find: what the truth file states for the rule; found/missed: those "
                  "items; false: findings that name nothing the truth states (each matcher's "
                  "rule in computewatch/sim/scoring).[/dim]")
