"""Headless Chromium, the one browser the report is printed and checked with.

The flags keep a browser on a machine without network quiet and reproducible: no sandbox
(containers run as root), no GPU, no background traffic, updates, sync or first-run pages,
and always a fresh profile directory, passed in by the caller.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["CHROMIUM_NAMES", "HEADLESS_FLAGS", "ChromiumMissingError", "find_chromium"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")


class ChromiumMissingError(RuntimeError):
    """No Chromium to print with; the message says how to get one."""


def find_chromium() -> Path:
    """``$COMPUTEWATCH_CHROMIUM``, else the first of `CHROMIUM_NAMES` on PATH."""
    override = os.environ.get("COMPUTEWATCH_CHROMIUM")
    if override:
        if not Path(override).is_file():
            raise ChromiumMissingError(f"COMPUTEWATCH_CHROMIUM={override}: no such file")
        return Path(override)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ChromiumMissingError(
        f"PDF output prints the HTML report with headless Chromium, and none of "
        f"{', '.join(CHROMIUM_NAMES)} is on PATH: install it (Debian: apt-get install "
        f"chromium) or set COMPUTEWATCH_CHROMIUM, or use --format html")
