"""Store ingest: accelerator samples per second into the embedded DuckDB store.

Baseline, measured in the same run on the same samples: writing them one by one as
influxdb-client ``Point`` objects serialized to line protocol, the naive path a user would
write (on a slice, since it is slow; rates are per sample either way).
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from bench._util import accelerator_hours, row, timed
from computewatch.store import DuckDBStore

LABELS = ("hub", "cluster", "site", "node", "device", "index", "vendor", "model", "ecosystem")


def point_baseline(frame: pa.Table, n: int) -> float:
    """Seconds to build and serialize ``n`` samples as influxdb-client Points."""
    from influxdb_client import Point, WritePrecision

    sub = frame.slice(0, n).to_pylist()
    fields = [c for c in frame.column_names if c not in LABELS and c != "time"]

    def run() -> int:
        out = 0
        for r in sub:
            p = Point("accelerator")
            for k in LABELS:
                p = p.tag(k, r[k])
            for f in fields:
                if r[f] is not None:
                    p = p.field(f, r[f])
            t: datetime = r["time"]
            out += len(p.time(t, WritePrecision.NS).to_line_protocol())
        return out

    seconds, _ = timed(run)
    return seconds


def main(accelerators: int = 20_000, hours: int = 4) -> None:
    frames = accelerator_hours(accelerators, hours)
    rows = sum(f.num_rows for f in frames)
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(Path(tmp) / "ingest.duckdb")

        def write_all() -> None:
            for f in frames:
                store.write("accelerator", f)

        seconds, _ = timed(write_all)
        store.close()
    ours = rows / seconds
    n_base = 100_000
    base = n_base / point_baseline(frames[0], n_base)
    print(f"store ingest ({rows:,} accelerator samples, 7 fields, 9 labels, "
          f"{accelerators:,} series)")
    row("DuckDB store write", f"{ours:,.0f} samples/s", "(aim >= 2,000,000)")
    row("baseline: influxdb-client Point -> line protocol", f"{base:,.0f} samples/s",
        f"({n_base:,} samples)")
    row("ratio store / Point baseline", f"{ours / base:.1f}x", "(aim >= 20x)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
