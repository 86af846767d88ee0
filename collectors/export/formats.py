"""One snapshot of samples as text: Prometheus exposition, line protocol, JSON or a table.

What `computewatch collect --once --format ...` prints; each format is the same code the
exporters use, so a snapshot shows exactly what a scrape or a write would carry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from enum import StrEnum
from io import StringIO

from rich.console import Console
from rich.table import Table

from computewatch.collectors.export.prometheus import exposition
from computewatch.lineprotocol import encode_samples
from computewatch.samples import Sample

__all__ = ["SampleFormat", "format_samples"]

log = logging.getLogger(__name__)


class SampleFormat(StrEnum):
    PROMETHEUS = "prometheus"
    INFLUX = "influx"
    JSON = "json"
    TABLE = "table"


_TABLE_FIELDS = (("utilization_ratio", "util", "{:.0%}"), ("memory_used_bytes", "mem used",
                 "{:,.0f} MiB"), ("power_watts", "power", "{:.1f} W"),
                 ("temperature_celsius", "temp", "{:.0f} °C"), ("health", "health", "{:.0f}"))


def _table(samples: Sequence[Sample]) -> str:
    """Accelerators as rows (the view an operator wants), then the agent's own metrics."""
    devices: dict[tuple[str, str, str], dict[str, object]] = {}
    for s in samples:
        if s.measurement == "accelerator" and not ({"xid", "error_type", "reason"}
                                                   & {k for k, _ in s.labels}):
            key = (s.label("node") or "", s.label("vendor") or "", s.label("device") or "")
            row = devices.setdefault(key, {"labels": dict(s.labels)})
            row[s.field] = s.value
    table = Table(title=f"{len(devices)} accelerators", title_justify="left")
    for col in ("node", "index", "vendor", "model", *(t for _, t, _ in _TABLE_FIELDS)):
        table.add_column(col, justify="left" if col in ("node", "vendor", "model") else "right")
    def order(item: tuple[tuple[str, str, str], dict[str, object]]) -> tuple:
        lab = item[1]["labels"]
        assert isinstance(lab, dict)
        idx = str(lab.get("index", ""))
        return (item[0][0], item[0][1], [int(p) if p.isdigit() else p for p in idx.split(":")])

    for _, row in sorted(devices.items(), key=order):
        lab = row["labels"]
        assert isinstance(lab, dict)
        cells = [lab.get("node", ""), lab.get("index", ""), lab.get("vendor", ""),
                 lab.get("model", "")]
        for field, _, fmt in _TABLE_FIELDS:
            v = row.get(field)
            if v is None:
                cells.append("—")
            elif field == "memory_used_bytes":
                cells.append(fmt.format(float(v) / 2**20))  # type: ignore[arg-type]
            else:
                cells.append(fmt.format(v))
        table.add_row(*cells)
    agent = Table(title="agent", title_justify="left")
    for col in ("metric", "labels", "value"):
        agent.add_column(col)
    for s in samples:
        if s.measurement in ("agent", "computewatch"):
            agent.add_row(s.name, ",".join(f"{k}={v}" for k, v in s.labels
                                           if k in ("collector", "error_type", "exporter",
                                                    "reason", "source")), f"{s.value:g}")
    out = StringIO()
    console = Console(file=out, width=140, force_terminal=False)
    console.print(table)
    console.print(agent)
    return out.getvalue()


def format_samples(samples: Sequence[Sample], fmt: SampleFormat,
                   compat: Sequence[str] = ()) -> str:
    if fmt is SampleFormat.PROMETHEUS:
        return exposition(samples, compat).decode("utf-8")
    if fmt is SampleFormat.INFLUX:
        enc = encode_samples(samples)
        if enc.refused:
            log.warning("%d samples cannot be written as line protocol and are left out: %s",
                        enc.refused, enc.problem)
        return enc.payload.decode("utf-8")
    if fmt is SampleFormat.JSON:
        return json.dumps([{"name": s.name, "value": s.value, "labels": dict(s.labels),
                            "time": s.time.isoformat()} for s in samples],
                          ensure_ascii=False, indent=1) + "\n"
    return _table(samples)
