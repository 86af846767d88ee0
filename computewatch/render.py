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

from computewatch.finding_text import (
    ACUTE_NAMES,
    PIPELINE_NAMES,
    SEVERITY_NAMES,
    SUBJECT_TYPES,
    TIER_NAMES,
    finding_message,
    format_value,
    word,
)
from computewatch.i18n import _, current_language
from computewatch.place_names import place_name, subject_name
from computewatch.summary import NationalSummary
from computewatch.triage import RootCause

if TYPE_CHECKING:
    from computewatch.findings import Analysis
    from computewatch.sim.scoring import Scorecard
    from computewatch.topology import Topology

__all__ = ["OutputFormat", "format_value", "render_analysis", "render_findings", "render_frame",
           "render_root_causes", "render_scores", "render_summary"]


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def _width(out: TextIO, columns: int) -> int | None:
    """Piped output (logs, CI) gets a wide table instead of rich's 80-column default; Chinese
    text takes two columns a character, so a non-English table gets a third more."""
    if out.isatty():
        return None
    return columns if current_language() == "en" else columns * 4 // 3


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
    Console(file=out, width=_width(out, 160)).print(table)


def _link_name(places: Topology | None, link: str, lang: str) -> str:
    """A summary's worst link (``a ↔ b``) with its sites' names in ``lang``."""
    return " ↔ ".join(place_name(places, "site", site, lang) for site in link.split(" ↔ "))


def render_summary(summary: NationalSummary, fmt: OutputFormat, out: TextIO,
                   console: Console | None = None, *, extra: dict | None = None,
                   places: Topology | None = None) -> None:
    """The national summary; ``extra`` keys join the JSON document (the demo's scores).
    The table is in the current language, its places named from ``places`` (JSON and CSV
    keep ids and English field names: they are for scripts)."""
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
    console = console or Console(file=out, width=_width(out, 150))
    lang = current_language()
    title = _("National summary {start} – {end} UTC").format(
        start=f"{summary.start:%Y-%m-%d %H:%M}", end=f"{summary.end:%Y-%m-%d %H:%M}")
    table = Table(title=title, title_justify="left", show_lines=False)
    for name, justify in ((_("Hub / cluster"), "left"), (_("Sites"), "right"),
                          (_("Accel."), "right"), ("CUDA / CANN", "right"),
                          (_("Mean util."), "right"), (_("Idle acc.-h"), "right"),
                          (_("PUE"), "right"), (_("Worst link"), "left"), (_("Tier"), "left"),
                          (_("p95 / budget"), "right")):
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         overflow="ellipsis" if lang == "en" else "fold")
    for r in summary.rows.itertuples():
        if r.level == "national":
            table.add_section()
            label = "[bold]" + _("National") + "[/bold]"
        elif r.level == "hub":
            label = f"[bold]{escape(place_name(places, 'hub', r.hub, lang))}[/bold]"
        else:
            label = f"  {escape(place_name(places, 'cluster', r.cluster, lang))}"
        over = r.worst_link_p95_s > r.worst_link_budget_s
        ratio = (f"{_ms(r.worst_link_p95_s)} / {_ms(r.worst_link_budget_s)}"
                 if r.worst_link else "—")
        pue = "—" if math.isnan(r.pue) else f"{r.pue:.3f}"
        table.add_row(label, str(r.sites), f"{r.accelerators:,}", f"{r.cuda:,} / {r.cann:,}",
                      _pct(r.mean_utilization), f"{r.idle_accelerator_hours:,.0f}", pue,
                      _link_name(places, r.worst_link, lang) if r.worst_link else "—",
                      word(TIER_NAMES, r.worst_link_tier) if r.worst_link_tier else "—",
                      f"[red]{ratio}[/red]" if over else ratio)
    console.print(table)
    console.print("[dim]" + escape(_(
        "Mean util.: mean of all utilization samples. Idle acc.-h: Σ (1 − utilization) × "
        "sampling interval. PUE: facility energy / IT energy from meter counters over the "
        "part of the period every meter covers (pue_completeness in json and csv). Worst "
        "link: the largest 95th-percentile window p95 RTT relative to its tier budget (red: "
        "over budget).")) + "[/dim]")
    if (summary.links.get("p95_source") == "probe_histogram").any():
        console.print("[dim]" + escape(_(
            "This period reaches where the store keeps hourly rollups, which hold no "
            "percentile of window p95s: each link's p95 is the 95th percentile of its "
            "probes' RTTs from their histogram, within one bucket's width.")) + "[/dim]")


_COLOURS = {2: "red", 1: "yellow"}


def _severity(level: int) -> str:
    """The severity word, coloured as before (red critical, yellow warning)."""
    sev = word(SEVERITY_NAMES, int(level))
    colour = _COLOURS.get(int(level))
    return f"[{colour}]{escape(sev)}[/{colour}]" if colour else escape(sev)


def _group_name(group: str, places: Topology | None, lang: str) -> str:
    """A root-cause group (``cluster:qingyang``, ``chronic:underuse:site_below_minimum``)
    in ``lang``: its kind and place as words and names (the rule stays an id)."""
    kind, _sep, subject = group.partition(":")
    if lang == "en":
        return group
    if kind == "chronic":
        pipeline, _sep, rule = subject.partition(":")
        return ":".join((word(ACUTE_NAMES, False), word(PIPELINE_NAMES, pipeline), rule))
    if kind not in SUBJECT_TYPES:
        return group
    return f"{word(SUBJECT_TYPES, kind)}:{subject_name(places, kind, subject, lang)}"


def render_root_causes(causes: list[RootCause], out: TextIO, *, limit: int = 12,
                       title: str = "Root causes", places: Topology | None = None) -> None:
    """One line per root-cause group, most urgent first: what pages, then what plans."""
    lang = current_language()
    console = Console(file=out, width=_width(out, 160))
    shown = causes[:limit]
    more = _(" (top {n})").format(n=len(shown)) if len(shown) < len(causes) else ""
    table = Table(title=escape(title) + _(": {n} groups").format(n=len(causes)) + more,
                  title_justify="left")
    # Chinese has no spaces to wrap at: fold long cells rather than cut them with "…".
    overflow = "ellipsis" if lang == "en" else "fold"
    for col, justify in ((_("severity"), "left"), (_("kind"), "left"), (_("group"), "left"),
                         (_("findings"), "right"), (_("window"), "left"),
                         (_("most urgent finding"), "left")):
        table.add_column(col, justify=justify, overflow=overflow)  # type: ignore[arg-type]
    for c in shown:
        rules = ", ".join(f"{r} x{n}" if n > 1 else r for r, n in c.rules[:3])
        window = f"{c.start:%m-%d %H:%M} – {c.end:%m-%d %H:%M}"
        table.add_row(_severity(c.severity), word(ACUTE_NAMES, bool(c.acute)),
                      escape(_group_name(c.group, places, lang)), str(c.findings), window,
                      escape(f"{finding_message(c.headline, lang, places)} [{rules}]"))
    console.print(table)


def render_findings(df: pd.DataFrame, fmt: OutputFormat, out: TextIO, *,
                    limit: int | None = None, title: str = "Findings",
                    places: Topology | None = None) -> None:
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
    lang = current_language()
    console = Console(file=out, width=_width(out, 160))
    shown = df if limit is None else df.head(limit)
    more = _(" (top {n})").format(n=len(shown)) if len(shown) < len(df) else ""
    table = Table(title=_("{title}: {n}").format(title=escape(title), n=len(df)) + more,
                  title_justify="left")
    for col, justify in ((_("severity"), "left"), (_("pipeline"), "left"), (_("rule"), "left"),
                         (_("subject"), "left"), (_("observed"), "right"),
                         (_("threshold"), "right"), (_("window"), "left"),
                         (_("compl."), "right")):
        table.add_column(col, justify=justify,  # type: ignore[arg-type]
                         overflow="ellipsis" if lang == "en" else "fold")
    for r in shown.itertuples():
        window = f"{pd.Timestamp(r.start):%m-%d %H:%M} – {pd.Timestamp(r.end):%m-%d %H:%M}"
        table.add_row(_severity(r.severity), escape(word(PIPELINE_NAMES, r.pipeline)), r.rule,
                      escape(subject_name(places, r.subject_type, str(r.subject), lang)),
                      format_value(r.observed, r.unit),
                      format_value(r.threshold, r.unit), window, f"{r.completeness:.0%}")
    console.print(table)


def render_analysis(analysis: Analysis, fmt: OutputFormat, out: TextIO, *,
                    limit: int | None = None, title: str = "Findings",
                    frame: pd.DataFrame | None = None, places: Topology | None = None) -> None:
    """A run of the pipelines: for scripts (JSON), the period, every pipeline's status
    (``ok`` with its count of findings, or ``failed`` with the error) and the findings; as a
    table or CSV, the findings (a failed pipeline is the command's error and exit code).
    ``frame``: the findings as the caller lays them out (default `Analysis.frame`)."""
    frame = analysis.frame() if frame is None else frame
    if fmt is not OutputFormat.JSON:
        render_findings(frame, fmt, out, limit=limit, title=title, places=places)
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
    console = Console(file=out, width=_width(out, 160))
    table = Table(title=escape(_("Findings scored against the simulator's ground truth")),
                  title_justify="left")
    for col, justify in ((_("rule"), "left"), (_("to find"), "right"), (_("found"), "right"),
                         (_("missed"), "right"), (_("false"), "right"), (_("recall"), "right"),
                         (_("precision"), "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]

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
            console.print(_("  missed  {rule}: {line}").format(rule=s.rule, line=escape(line)),
                          highlight=False)
        for line in s.wrong[:3]:
            console.print(_("  false   {rule}: {line}").format(rule=s.rule, line=escape(line)),
                          highlight=False)
    if card.unscored:
        console.print("[red]" + escape(_("rules with findings and no matcher (not scored): "))
                      + ", ".join(f"{r} ({n})" for r, n in card.unscored.items()) + "[/red]")
    console.print("[dim]" + escape(_(
        "to find: what the truth file states for the rule; found/missed: those items; false: "
        "findings that name nothing the truth states (each matcher's rule in "
        "computewatch/sim/scoring).")) + "[/dim]")
