"""The demo default end to end: fleet, 24 h backfill at 1-minute resolution, summary
(`--no-analyze`: the pipelines have their own benchmark, bench_pipelines).

Runs `computewatch demo` as a user would (a subprocess), and reports its wall time and
peak RSS against the issue's budget (60 s, 3 GB on the 2-core machine). The baseline in the
same run is the simulator alone (generating the frames without storing them), so the ratio
shows what the store and the summary add on top of producing the data.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench._util import peak_rss_mb, row
from computewatch.sim import build_fleet, simulate
from computewatch.topology import load_topology

STORE = Path("var/bench/demo.duckdb")


def main(hours: int = 24) -> Path:
    STORE.parent.mkdir(parents=True, exist_ok=True)
    for p in (STORE, STORE.with_suffix(".duckdb.wal")):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "computewatch", "demo", "--hours", str(hours), "--no-analyze",
         "--store", f"duckdb:///{STORE}", "--truth", str(STORE.with_suffix(".truth.json"))],
        capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    rss = peak_rss_mb(children=True)
    if "0 values rejected" not in proc.stderr.replace("\n", " "):
        print("  warning: the demo rejected values:", proc.stderr[-400:])
    t0 = time.perf_counter()
    fleet = build_fleet(load_topology())
    rows = sum(t.num_rows for m, t in simulate(fleet, hours=hours).chunks() if m == "accelerator")
    gen = time.perf_counter() - t0
    print(f"demo default ({fleet.n_devices:,} accelerators, {hours} h at 1 min, "
          f"{rows:,} accelerator samples)")
    row("computewatch demo wall", f"{wall:.1f} s", "(aim <= 60 s)")
    row("computewatch demo peak RSS", f"{rss:,.0f} MB", "(aim <= 3,000 MB)")
    row("baseline: simulator alone, no store", f"{gen:.1f} s")
    row("ratio demo / simulator alone", f"{wall / gen:.2f}x")
    row("store file size", f"{STORE.stat().st_size / 1e6:,.0f} MB")
    return STORE


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 24)
