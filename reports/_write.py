"""Writing a built report in one of its renderings: the default file name and the dispatch by
format, so every caller (the CLI, a scheduler) names and writes reports the same way."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TextIO

from computewatch.reports._csv import render_csv
from computewatch.reports._model import Report
from computewatch.reports._pdf import html_to_pdf

__all__ = ["REPORT_FORMATS", "default_report_path", "write_report"]

REPORT_FORMATS = ("html", "pdf", "csv")


def default_report_path(report: Report, fmt: str) -> Path:
    """``report-<period>[-<hub>][-<province>].<format>`` in the current directory, e.g.
    ``report-2026-10-jjj.pdf``, ``report-2026-10-hebei.pdf``."""
    slug = re.sub(r"[^0-9A-Za-z]+", "-", report.period.label).strip("-")
    scope = [report.hub or "", re.sub(r"[^0-9A-Za-z]+", "-", report.province or "").strip("-")]
    return Path("-".join(["report", slug, *(s.lower() for s in scope if s)]) + f".{fmt}")


def write_report(report: Report, fmt: str, target: Path | None = None, *,
                 stdout: TextIO | None = None, language: str | None = None) -> Path | None:
    """Write ``report`` as ``fmt`` to ``target`` (default: `default_report_path`), or to
    ``stdout`` when given (html and csv only), in ``language`` (default: the run's, as
    `computewatch.i18n` resolved it); returns the file written, if any. The PDF is printed
    from the HTML with its fonts embedded (`render_html`'s ``embed_fonts``)."""
    if fmt not in REPORT_FORMATS:
        raise ValueError(f"bad report format {fmt!r}: one of {', '.join(REPORT_FORMATS)}")
    if fmt != "csv":
        from computewatch.reports._html import render_html  # Jinja2: not for a CSV
    if stdout is not None:
        if fmt == "pdf":
            raise ValueError("a PDF report cannot go to standard output; name a file")
        if fmt == "csv":
            render_csv(report, stdout, language=language)
        else:
            stdout.write(render_html(report, language=language))
        return None
    target = target or default_report_path(report, fmt)
    if fmt == "csv":
        with target.open("w", encoding="utf-8", newline="") as f:
            render_csv(report, f, language=language)
    elif fmt == "html":
        target.write_text(render_html(report, language=language), encoding="utf-8")
    else:
        html_to_pdf(render_html(report, language=language, embed_fonts=True), target)
    return target
