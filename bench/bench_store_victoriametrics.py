"""The VictoriaMetrics store on a real VictoriaMetrics started by the bench.

1. Write: `VictoriaMetricsStore.write` of simulated accelerator hours (validation, encoding,
   8 MB gzip bodies, flush), in samples/s. Baseline in the same run: the same bodies posted
   with influxdb-client's own gzip (``gzip.compress`` at its default level 9), which is what
   `LineProtocolWriter` replaces with level 1.
2. Query: 1-hour mean utilization per site over the data (MetricsQL
   ``sum(sum_over_time)/sum(count_over_time)``), against the baseline the store is built not
   to do: export every raw sample (``/api/v1/export``) and aggregate in pandas. The two
   answers are checked to agree.

Run: ``.venv/bin/python -m bench store_vm`` (or ``python -m bench.bench_store_victoriametrics
[accelerators] [hours]``).
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from bench._util import accelerator_hours, row
from computewatch.lineprotocol import LineProtocolWriter, encode_frame
from computewatch.store import Aggregate, Query
from computewatch.store._batches import BODY_BYTES
from computewatch.store._victoriametrics import VictoriaMetricsStore

ACCELERATORS = 2_000
HOURS = 6


def _samples(tables) -> int:
    fields = [c for c in tables[0].column_names if tables[0].schema.field(c).type == "double"]
    return sum(t.num_rows * len(fields) - sum(t.column(f).null_count for f in fields)
               for t in tables)


def _client_gzip_writer(url: str) -> LineProtocolWriter:
    """A writer whose client compresses as influxdb-client does out of the box (level 9)."""
    writer = LineProtocolWriter(url)
    conf = writer._client.api_client.configuration
    conf.update_request_body = lambda path, body: gzip.compress(body) \
        if path == "/api/v2/write" else body
    return writer


def main(accelerators: int = ACCELERATORS, hours: int = HOURS) -> None:
    from tests.servers import start_victoriametrics

    tables = accelerator_hours(accelerators, hours)
    samples = _samples(tables)
    print(f"VictoriaMetrics store: {accelerators:,} accelerators x {hours} h, "
          f"{sum(t.num_rows for t in tables):,} rows, {samples:,} samples")
    with tempfile.TemporaryDirectory(prefix="bench-vm-") as tmp:
        with start_victoriametrics(Path(tmp) / "base") as vm:
            writer = _client_gzip_writer(vm.url)
            bodies = []
            for t in tables:  # the store's own body size, encoded outside the timing
                probe = t.slice(0, 1000)
                per_row = len(encode_frame("accelerator", probe, "ms").payload) / probe.num_rows
                step = max(100, int(BODY_BYTES / per_row))
                bodies += [encode_frame("accelerator", t.slice(i, step), "ms").payload
                           for i in range(0, t.num_rows, step)]
            t0 = time.perf_counter()
            for b in bodies:
                writer.write(b, "ms")
            base_s = time.perf_counter() - t0
            writer.close()
        with start_victoriametrics(Path(tmp) / "ours") as vm:
            store = VictoriaMetricsStore(f"victoriametrics://127.0.0.1:{vm.port}")
            t0 = time.perf_counter()
            for t in tables:
                store.write("accelerator", t)
            ours_s = time.perf_counter() - t0
            bounds = store.time_bounds("accelerator")
            start = bounds[0]
            end = start + timedelta(hours=hours)
            q = Query("accelerator", ("utilization_ratio",), start, end, group_by=("site",),
                      window=timedelta(hours=1), agg=Aggregate.MEAN)
            t0 = time.perf_counter()
            got = store.query(q)
            query_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            r = requests.get(f"{vm.url}/api/v1/export",
                             params={"match[]": "accelerator_utilization_ratio"}, timeout=600)
            rows = []
            for line in io.StringIO(r.text):
                s = json.loads(line)
                ts = pd.to_datetime(np.array(s["timestamps"]), unit="ms", utc=True)
                rows.append(pd.DataFrame({"time": ts, "site": s["metric"].get("site", ""),
                                          "v": s["values"]}))
            raw = pd.concat(rows, ignore_index=True)
            raw = raw[(raw.time >= start) & (raw.time < end)]
            raw["bucket"] = start + ((raw.time - start) // timedelta(hours=1)) * timedelta(
                hours=1)
            want = raw.groupby(["bucket", "site"]).v.mean()
            export_s = time.perf_counter() - t0
            store.close()
    agree = np.allclose(got.set_index(["time", "site"]).utilization_ratio.sort_index(),
                        want.sort_index(), rtol=1e-9)
    row("write: VictoriaMetricsStore.write (gzip 1)", f"{samples / ours_s:,.0f} samples/s",
        f"{ours_s:.2f} s, validation and encoding included")
    row("baseline: same bodies, client gzip (level 9)", f"{samples / base_s:,.0f} samples/s",
        f"{base_s:.2f} s, bodies encoded beforehand")
    print(f"  ratio write ours / baseline: {base_s / ours_s:.2f}x")
    row("query: 1 h mean per site (MetricsQL)", f"{query_s * 1000:,.0f} ms",
        f"{len(got):,} windows x sites")
    row("baseline: export raw samples, pandas", f"{export_s * 1000:,.0f} ms",
        f"{len(raw):,} samples; answers agree: {agree}")
    print(f"  ratio query ours / baseline: {export_s / query_s:.1f}x faster")
    print("  (server and client share the machine's cores)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
