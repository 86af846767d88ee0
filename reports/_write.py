"""Writing a built report in one of its renderings: the default file name and the dispatch by
format, so every caller (the CLI, a scheduler) names and writes reports the same way."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TextIO

from computewatch.reports._csv import render_csv
from computewatch.reports._html import render_html
from computewatch.reports._model import Report
from computewatch.reports._pdf import html_to_pdf

__all__ = ["REPORT_FORMATS", "default_report_path", "write_report"]

REPORT_FORMATS = ("html", "pdf", "csv")


def default_report_path(report: Report, fmt: str) -> Path:
    """``report-<period>[-<hub>].<format>`` in the current directory, e.g.
    ``report-2026-10-jjj.pdf``."""
    slug = re.sub(r"[^0-9A-Za-z]+", "-", report.period.label).strip("-")
    return Path(f"report-{slug}{f'-{report.hub}' if report.hub else ''}.{fmt}")


def write_report(report: Report, fmt: str, target: Path | None = None, *,
                 stdout: TextIO | None = None) -> Path | None:
    """Write ``report`` as ``fmt`` to ``target`` (default: `default_report_path`), or to
    ``stdout`` when given (html and csv only); returns the file written, if any."""
    if fmt not in REPORT_FORMATS:
        raise ValueError(f"bad report format {fmt!r}: one of {', '.join(REPORT_FORMATS)}")
    if stdout is not None:
        if fmt == "pdf":
            raise ValueError("a PDF report cannot go to standard output; name a file")
        if fmt == "csv":
            render_csv(report, stdout)
        else:
            stdout.write(render_html(report))
        return None
    target = target or default_report_path(report, fmt)
    if fmt == "csv":
        with target.open("w", encoding="utf-8", newline="") as f:
            render_csv(report, f)
    elif fmt == "html":
        target.write_text(render_html(report), encoding="utf-8")
    else:
        html_to_pdf(render_html(report), target)
    return target
