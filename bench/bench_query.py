"""A windowed query on the demo data: 1-hour mean utilization per site over 24 h.

Baseline in the same run: the same answer computed in pandas from the raw samples read out
of the same store, the way one would without push-down aggregation.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import duckdb

from bench._util import row, timed
from computewatch.store import DuckDBStore, Query


def main(path: Path) -> None:
    store = DuckDBStore(path)
    lo, _ = store.time_bounds("accelerator")
    # Hour-aligned windows so the pandas baseline's floor("h") makes the same buckets.
    start = lo.replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=25)
    q = Query("accelerator", ("utilization_ratio",), start, end, group_by=("site",),
              window=timedelta(hours=1))
    seconds, df = timed(lambda: store.query(q), repeat=5)
    store.close()

    def pandas_way():
        con = duckdb.connect(str(path), read_only=True)
        raw = con.execute("SELECT t.time, s.site, t.utilization_ratio FROM samples_accelerator t "
                          "JOIN series_accelerator s USING (series_id)").df()
        con.close()
        raw["hour"] = raw.time.dt.floor("h")
        return raw.groupby(["hour", "site"]).utilization_ratio.mean()

    base, want = timed(pandas_way)
    assert len(want) == len(df), (len(want), len(df))
    print(f"windowed query (1-hour mean utilization per site over the demo's 24 h, "
          f"{len(df):,} rows out)")
    row("store query (SQL push-down)", f"{seconds * 1000:,.0f} ms", "(aim <= 2,000 ms)")
    row("baseline: raw samples into pandas groupby", f"{base * 1000:,.0f} ms")
    row("ratio baseline / store", f"{base / seconds:.1f}x")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
