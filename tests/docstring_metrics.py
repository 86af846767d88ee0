"""Reads the Telegraf-style Metrics table of a collector's module docstring (STYLE rule 2),
so each collector's test can check the table against the catalogue."""

from __future__ import annotations

import re


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
