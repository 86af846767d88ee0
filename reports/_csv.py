"""The report's numbers as CSV: one row per site, then one per hub, columns as `COLUMNS` says.

Numbers are written unrounded (ratios 0..1, PUE as a factor, hours, energy in kWh); a value
that was not stated is an empty field, never a zero. In English the header row is the column
ids scripts read; in another language it is each column's title in that language and the
level and verdict codes are words (the methodology's CSV section pairs titles and ids).
"""

from __future__ import annotations

from typing import TextIO

from computewatch.i18n import current_language, using_language
from computewatch.reports._model import COLUMNS, Report
from computewatch.reports._words import LEVEL_NAMES, VERDICTS, column_title, word

__all__ = ["render_csv"]

_WORDED = {"level": LEVEL_NAMES, "utilization_verdict": VERDICTS, "pue_verdict": VERDICTS}


def render_csv(report: Report, out: TextIO, *, language: str | None = None) -> None:
    frame = report.rows[list(COLUMNS)]
    language = language or current_language()
    if language != "en":
        with using_language(language):
            frame = frame.assign(**{col: [word(table, v) for v in frame[col]]
                                    for col, table in _WORDED.items()})
            frame.columns = [column_title(c) for c in frame.columns]
    frame.to_csv(out, index=False, lineterminator="\n")
