"""The PDF is the HTML report printed by headless Chromium (``--print-to-pdf``).

Why Chromium and not a second layout in matplotlib or reportlab: the PDF is then the same
document as the HTML, table for table, with CJK text from the system fonts and the SVG plots
as vectors; there is one layout to keep right. The cost is a browser on the machine that
prints, found by `find_chromium` with a clear error when there is none.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from computewatch.reports._chromium import HEADLESS_FLAGS, find_chromium

__all__ = ["PDF_TIMEOUT_S", "PdfError", "html_to_pdf"]

PDF_TIMEOUT_S = 120.0


class PdfError(RuntimeError):
    """Chromium ran but produced no PDF; the message carries its output."""


def html_to_pdf(html: str, out: Path, *, timeout_s: float = PDF_TIMEOUT_S) -> Path:
    """Print ``html`` to ``out`` (A4 landscape, set by the report's CSS); returns ``out``."""
    browser = find_chromium()
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix="computewatch-pdf-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        argv = [str(browser), *HEADLESS_FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}",
                "--no-pdf-header-footer", f"--print-to-pdf={out}", page.as_uri()]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise PdfError(f"{browser} did not print the report within {timeout_s:g} s") from None
    if not out.is_file() or out.stat().st_size == 0 or out.read_bytes()[:5] != b"%PDF-":
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise PdfError(f"{browser} exited {done.returncode} without writing {out}: "
                       + " | ".join(tail))
    return out
