"""The report's numbers as CSV: one row per site, then one per hub, columns as `COLUMNS` says.

Numbers are written unrounded (ratios 0..1, PUE as a factor, hours); a value that was not
stated is an empty field, never a zero.
"""

from __future__ import annotations

from typing import TextIO

from computewatch.reports._model import COLUMNS, Report

__all__ = ["render_csv"]


def render_csv(report: Report, out: TextIO) -> None:
    report.rows[list(COLUMNS)].to_csv(out, index=False, lineterminator="\n")
