"""Reads the Telegraf-style Metrics table of a collector (STYLE rule 2), from its module
docstring or, for a collector with a folder of its own, from the folder's README.md, so each
collector's test can check the table against the catalogue."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType


def documented_fields(doc: str, measurement: str) -> list[str]:
    """Field names listed under ``- <measurement>`` / ``- fields:`` in a Metrics table."""
    lines = doc.splitlines()
    start = lines.index(f"- {measurement}")
    fields, in_fields = [], False
    for line in lines[start + 1:]:
        if line.startswith("- ") or (line and not line.startswith(" ")):
            break  # the next measurement, or the end of the table
        if line.strip() == "- fields:":
            in_fields = True
            continue
        m = re.match(r"^    - (\w+) \(", line)
        if in_fields and m:
            fields.append(m.group(1))
    return fields


def readme_metrics(package: ModuleType) -> str:
    """The ``## Metrics`` section of a collector package's README.md (up to the next ``## ``)."""
    text = (Path(package.__file__).parent / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Metrics\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]
