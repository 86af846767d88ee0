"""Line-protocol encoding throughput: `encode_frame` against influxdb-client's Point.

Prints lines/s for a 1,000,000-row accelerator frame (5 dictionary-encoded label columns,
20,000 distinct label sets, 6 float fields), for `encode_samples` on a slice of it, and for
influxdb-client's ``Point(...).tag(...).field(...).time(...).to_line_protocol()`` on 100,000
rows of the same data (the baseline), then the ratio.
Run: ``.venv/bin/python bench/bench_lineprotocol.py [rows]``.
"""

from __future__ import annotations

import math
import sys
import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from computewatch.lineprotocol import encode_frame, encode_samples
from computewatch.samples import Sample

SERIES = 20_000
LABELS = ("hub", "cluster", "site", "node", "device")
FIELDS = ("utilization_ratio", "power_watts", "temperature_celsius", "memory_used_bytes",
          "energy_joules_total", "sm_clock_hertz")


def make_frame(rows: int, seed: int = 0) -> pa.Table:
    """A frame like a simulated scrape history: rows cycle through SERIES label sets."""
    rng = np.random.default_rng(seed)
    series = np.arange(rows) % SERIES
    step = np.arange(rows) // SERIES
    start = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp() * 1e6)
    times = pa.array(start + step * 15_000_000, pa.timestamp("us", tz="UTC"))
    names = {
        "hub": [f"hub-{i % 8}" for i in range(SERIES)],
        "cluster": [f"集群-{i % 40}" for i in range(SERIES)],
        "site": [f"site {i // 100}" for i in range(SERIES)],
        "node": [f"node-{i // 8}" for i in range(SERIES)],
        "device": [str(i % 8) for i in range(SERIES)],
    }
    cols: dict[str, pa.Array] = {"time": times}
    for key in LABELS:
        dictionary = pa.array(sorted(set(names[key])))
        lookup = {v: i for i, v in enumerate(dictionary.to_pylist())}
        codes = np.array([lookup[v] for v in names[key]], dtype=np.int32)[series]
        cols[key] = pa.DictionaryArray.from_arrays(pa.array(codes), dictionary)
    util = rng.uniform(0, 1, rows)
    util[rng.uniform(size=rows) < 0.001] = np.nan  # a few values line protocol cannot carry
    cols["utilization_ratio"] = pa.array(util)
    cols["power_watts"] = pa.array(np.round(rng.uniform(80, 700, rows), 1))
    cols["temperature_celsius"] = pa.array(np.round(rng.uniform(30, 85, rows)))
    cols["memory_used_bytes"] = pa.array(rng.integers(0, 80 * 2**30, rows).astype(np.float64))
    cols["energy_joules_total"] = pa.array(1e9 + step * 4500.0 + rng.uniform(0, 1e3, rows))
    cols["sm_clock_hertz"] = pa.array(rng.choice([1.41e9, 1.98e9, 2.1e8], rows))
    return pa.table(cols)


def frame_rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def bench_point(rows: list[dict]) -> float:
    from influxdb_client import Point

    t0 = time.perf_counter()
    out = []
    for r in rows:
        p = Point("accelerator")
        for k in LABELS:
            p.tag(k, r[k])
        for f in FIELDS:
            p.field(f, r[f])
        out.append(p.time(r["time"]).to_line_protocol())
    "\n".join(out).encode()
    return time.perf_counter() - t0


def bench_samples(rows: list[dict]) -> tuple[float, int]:
    samples = [
        Sample("accelerator", f, r[f], tuple(sorted((k, r[k]) for k in LABELS)), r["time"])
        for r in rows for f in FIELDS
    ]
    t0 = time.perf_counter()
    res = encode_samples(samples)
    return time.perf_counter() - t0, res.lines


def main(rows: int = 1_000_000) -> None:
    table = make_frame(rows)
    encode_frame("accelerator", table.slice(0, 1000))  # warm up
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        res = encode_frame("accelerator", table)
        best = min(best, time.perf_counter() - t0)
    frame_rate = res.lines / best
    print(f"encode_frame    {rows:>9,} rows  {res.lines:>9,} lines  {len(res.payload) / 2**20:7.1f}"
          f" MiB  {best:6.3f} s  {frame_rate:12,.0f} lines/s  (skipped {res.skipped} NaN)")

    sub = frame_rows(table.slice(0, 100_000))
    t_samples, n_samples = bench_samples(sub)
    print(f"encode_samples  {len(sub):>9,} rows  {n_samples:>9,} lines"
          f"              {t_samples:6.3f} s  {n_samples / t_samples:12,.0f} lines/s")
    t_point = bench_point(sub)
    point_rate = len(sub) / t_point
    print(f"Point (baseline){len(sub):>9,} rows  {len(sub):>9,} lines"
          f"              {t_point:6.3f} s  {point_rate:12,.0f} lines/s")
    print(f"ratio encode_frame / Point: {frame_rate / point_rate:.1f}x, "
          f"encode_samples / Point: {n_samples / t_samples / point_rate:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
