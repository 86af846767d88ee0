"""Remote-write throughput into a real VictoriaMetrics: our write path against influxdb-client.

Ours: `encode_frame` per chunk of a frame -> the durable on-disk queue (default settings:
fsync after every append) -> the sender thread -> `LineProtocolWriter` (one gzip POST per
batch), timed until the store has acknowledged every sample. Also shown: the same without the
queue (encode and POST in one thread), to price the durability.
Baseline: influxdb-client's default ``write_api()`` (its batching mode, 1,000 points per
request) fed ready-made ``Point`` objects of the same rows, timed from the first ``write`` to
``close()`` returning (everything flushed).
Both write the simulated accelerator frame of `bench_lineprotocol` (6 fields per row, 20,000
series) into one VictoriaMetrics started by the bench, in the same run; the counts that
VictoriaMetrics then holds are checked against what was sent.
Run: ``.venv/bin/python -m bench remote_write`` (or ``.venv/bin/python -m
bench.bench_remote_write [rows] [baseline_rows]``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pyarrow as pa

from bench._util import row
from bench.bench_lineprotocol import FIELDS, LABELS, SERIES, make_frame
from computewatch.collectors.export.remote import DEFAULT_BATCH_SAMPLES, RemoteExporter
from computewatch.lineprotocol import LineProtocolWriter, encode_frame

ROWS = 500_000
BASELINE_ROWS = 50_000
CHUNK_ROWS = DEFAULT_BATCH_SAMPLES // len(FIELDS)  # one queue record = one write request


def _count(url: str, measurement: str, table: pa.Table) -> int:
    """Raw samples VictoriaMetrics holds for ``measurement``'s fields over the frame's span."""
    urllib.request.urlopen(url + "/internal/force_flush", timeout=30).read()
    times = table.column("time").to_numpy()
    end = int(times.max().astype("datetime64[s]").astype(int)) + 1
    span = end - int(times.min().astype("datetime64[s]").astype(int)) + 60
    q = urllib.parse.urlencode({"query": f'sum(count_over_time({{__name__=~"{measurement}_.+"}}'
                                         f'[{span}s]))', "time": str(end)})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=120) as r:
        result = json.loads(r.read())["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def _chunks(table: pa.Table) -> list[pa.Table]:
    return [table.slice(i, CHUNK_ROWS) for i in range(0, table.num_rows, CHUNK_ROWS)]


def ours(url: str, table: pa.Table, buffer_dir: Path) -> tuple[float, float, int]:
    exp = RemoteExporter(f"victoriametrics://{url.split('://')[1]}", buffer_dir,
                         flush_interval_s=0.01)
    samples = 0
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for chunk in _chunks(table):
            res = encode_frame("accelerator", chunk)
            n = len(FIELDS) * res.lines  # every field of every line (NaN skipped below)
            n -= res.skipped
            exp.export_lines(res.payload, n)
            samples += n
        if not exp.flush(600):
            raise RuntimeError(f"the queue did not drain: {exp.queue!r}")
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        sent = exp.self_samples({})
    finally:
        exp.close()
    delivered = next(s.value for s in sent if s.name == "agent.buffer_sent_samples_total")
    assert delivered == samples, (delivered, samples)
    return elapsed, cpu, samples


def direct(url: str, table: pa.Table) -> tuple[float, float, int]:
    writer = LineProtocolWriter(url)
    samples = 0
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for chunk in _chunks(table):
            res = encode_frame("direct", chunk)
            writer.write(res.payload)
            samples += len(FIELDS) * res.lines - res.skipped
        return time.perf_counter() - t0, time.process_time() - c0, samples
    finally:
        writer.close()


def baseline(url: str, table: pa.Table) -> tuple[float, float, int]:
    import math

    from influxdb_client import InfluxDBClient, Point

    points, samples = [], 0
    for r in table.to_pylist():
        p = Point("baseline")
        for k in LABELS:
            p.tag(k, r[k])
        for f in FIELDS:
            if r[f] is not None and math.isfinite(r[f]):
                p.field(f, float(r[f]))
                samples += 1
        points.append(p.time(r["time"]))
    with InfluxDBClient(url=url, token="", org="bench") as client:
        api = client.write_api()  # the default: batching, 1,000 points per request
        t0, c0 = time.perf_counter(), time.process_time()
        api.write(bucket="bench", record=points)
        api.close()  # returns when every batch has been written
        return time.perf_counter() - t0, time.process_time() - c0, samples


def warm_up(url: str, table: pa.Table) -> None:
    """Create every series first, a day before the timed data: VictoriaMetrics registers a new
    series far more slowly than it adds a sample, and a deployment's series exist already."""
    import pyarrow.compute as pc

    first = table.slice(0, SERIES)
    day_before = pc.subtract(first.column("time"), pa.scalar(86_400_000_000, pa.duration("us")))
    first = first.set_column(first.schema.get_field_index("time"), "time", day_before)
    with LineProtocolWriter(url) as writer:
        for measurement in ("accelerator", "direct", "baseline"):
            for chunk in _chunks(first):
                writer.write(encode_frame(measurement, chunk).payload)


def main(rows: int = ROWS, baseline_rows: int = BASELINE_ROWS) -> None:
    from tests.servers import start_victoriametrics

    table = make_frame(rows)
    base_table = table.slice(0, baseline_rows)
    print(f"remote write into VictoriaMetrics: {rows:,} accelerator rows x {len(FIELDS)} "
          f"fields (ours), {baseline_rows:,} rows (baseline)")
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp, \
            start_victoriametrics(Path(tmp) / "vm") as vm:
        warm_up(vm.url, table)
        t_ours, c_ours, n_ours = ours(vm.url, table, Path(tmp) / "buffer")
        t_direct, c_direct, n_direct = direct(vm.url, table)
        t_base, c_base, n_base = baseline(vm.url, base_table)
        checks = [(name, n, _count(vm.url, meas, t)) for name, meas, n, t in
                  (("ours", "accelerator", n_ours, table),
                   ("direct", "direct", n_direct, table),
                   ("baseline", "baseline", n_base, base_table))]
    r_ours, r_base = n_ours / t_ours, n_base / t_base
    for name, t, c, n in (("ours: encode_frame -> disk queue -> writer", t_ours, c_ours, n_ours),
                          ("ours without the queue", t_direct, c_direct, n_direct),
                          ("baseline: write_api() fed Points", t_base, c_base, n_base)):
        row(name, f"{n / t:,.0f} samples/s",
            f"{n:,} samples in {t:.2f} s; client CPU {c / n * 1e6:.2f} us/sample")
    for name, sent, stored in checks:
        if sent != stored:
            print(f"  WARNING {name}: sent {sent:,} samples, VictoriaMetrics holds {stored:,}")
    print(f"  stored in VictoriaMetrics: {', '.join(f'{n} {s:,}' for n, _, s in checks)}")
    print(f"  ratio ours / baseline: {r_ours / r_base:.1f}x samples/s (aim >= 10x and >= "
          f"500,000 samples/s), {c_base / n_base / (c_ours / n_ours):.1f}x less client CPU "
          f"per sample")
    print(f"  (the server shares the machine's cores with the client: {os.cpu_count()} here)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
