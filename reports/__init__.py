"""Regulator reports: per site and hub, utilization against its minimum, PUE against its
target, latency-tier compliance, data completeness and findings, with the methodology.

Where this sits in the flow (DESIGN.md): after the pipelines, next to dashboards/. A report
reads the store through the core's definitions (utilization, PUE, tier compliance) and takes
the pipelines' findings as a core `computewatch.findings.Analysis` that the caller ran; it
imports no other layer, derives no metric of its own, and nothing upstream imports it.
Renderings: one self-contained HTML file, a CSV with the same numbers, and a PDF printed from
the HTML by headless Chromium, in zh-CN or English (`computewatch.i18n`): a document to file,
with the software version, the policy's version and SHA-256, the data window and its
completeness on the cover, every page numbered, and only TrueType fonts embedded. Scope:
national, one hub, one province, or a hub's sites in a province.

The HTML rendering and the methodology (Jinja2, the fonts) load on first use, so a CSV
report does not import them.
"""

from typing import TYPE_CHECKING, Any

from computewatch.reports._chromium import HEADLESS_FLAGS, ChromiumMissingError, find_chromium
from computewatch.reports._csv import render_csv
from computewatch.reports._model import (
    COLUMNS,
    NAMESPACE_COLUMNS,
    SHIPPED_POLICY,
    EmptyPeriodError,
    Report,
    build_report,
    check_scope,
)
from computewatch.reports._pdf import PdfError, html_to_pdf
from computewatch.reports._period import (
    PERIOD_FORMS,
    ReportPeriod,
    parse_period,
    readable_period,
)
from computewatch.reports._write import REPORT_FORMATS, default_report_path, write_report

__all__ = [
    "COLUMNS",
    "HEADLESS_FLAGS",
    "NAMESPACE_COLUMNS",
    "PERIOD_FORMS",
    "REPORT_FORMATS",
    "SHIPPED_POLICY",
    "ChromiumMissingError",
    "EmptyPeriodError",
    "Entry",
    "PdfError",
    "Report",
    "ReportPeriod",
    "build_report",
    "check_scope",
    "default_report_path",
    "find_chromium",
    "html_to_pdf",
    "methodology",
    "parse_period",
    "readable_period",
    "render_csv",
    "render_html",
    "write_report",
]

if TYPE_CHECKING:
    from computewatch.reports._html import render_html
    from computewatch.reports._methodology import Entry, methodology

_LAZY = {"render_html": "_html", "Entry": "_methodology", "methodology": "_methodology"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
