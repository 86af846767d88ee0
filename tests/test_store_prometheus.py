"""The Prometheus store against a real Prometheus on loopback.

Known data is backfilled with ``promtool tsdb create-blocks-from openmetrics`` and read back
through the store, compared with the embedded DuckDB store holding the same frame and with
values computed here in pandas; then a real `computewatch agent --simulate --listen` is
scraped and read back."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from computewatch.store import Aggregate, DuckDBStore, Query, StoreError, open_store
from computewatch.store._prometheus import PrometheusStore, parse_prometheus_url
from tests.servers import free_port, start_prometheus
from tests.store_compare import HOURS, START, T0, assert_same, random_accelerators

FIELDS = ("utilization_ratio", "power_watts")
END = T0 + timedelta(hours=HOURS - 1, seconds=7)
LABELS = ("site", "hub", "device")


def openmetrics(frame: pd.DataFrame) -> str:
    """The frame as OpenMetrics text, one family per field, each series in time order."""
    out = []
    for f in FIELDS:
        name = f"accelerator_{f}"
        out.append(f"# TYPE {name} gauge\n")
        for key, part in frame.sort_values("time").groupby(list(LABELS), dropna=False):
            labels = ",".join(f'{k}="{v}"' for k, v in zip(LABELS, key, strict=True)
                              if isinstance(v, str))
            millis = (part.time - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
            seconds = millis / 1000
            out.extend(f"{name}{{{labels}}} {v!r} {t:.3f}\n"
                       for t, v in zip(seconds, part[f], strict=True))
    out.append("# EOF\n")
    return "".join(out)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return random_accelerators(seed=5, n=6_000)


@pytest.fixture(scope="module")
def stores(tmp_path_factory, frame):
    d: Path = tmp_path_factory.mktemp("prom")
    (d / "backfill.om").write_text(openmetrics(frame))
    done = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics",
                           str(d / "backfill.om"), str(d / "prom-data")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (d / "prometheus.yml").write_text("global: {}\n")
    duck = DuckDBStore(":memory:")
    duck.write("accelerator", frame)
    with start_prometheus(d, d / "prometheus.yml",
                          args=["--storage.tsdb.retention.time=100y"]) as server:
        prom = open_store(f"prometheus://127.0.0.1:{server.port}")
        yield duck, prom
        prom.close()
    duck.close()


SHAPES = [
    pytest.param((), None, {}, id="all-one-bucket"),
    pytest.param(("site",), timedelta(hours=1), {}, id="site-1h"),
    pytest.param(("hub", "device"), timedelta(minutes=37), {"site": ["bj-1", "gy-1"]},
                 id="hub-device-37m-where-list"),
    pytest.param(("device",), timedelta(minutes=20), {"hub": ""}, id="absent-hub-20m"),
]


@pytest.mark.parametrize("agg", [Aggregate.MEAN, Aggregate.MIN, Aggregate.MAX, Aggregate.SUM,
                                 Aggregate.COUNT])
@pytest.mark.parametrize(("by", "window", "where"), SHAPES)
def test_aggregates_match_the_embedded_store(stores, agg, by, window, where):
    duck, prom = stores
    q = Query("accelerator", FIELDS, START, END, where=where, group_by=by, window=window,
              agg=agg)
    want = duck.query(q)
    assert len(want) > 0
    assert_same(prom.query(q), want, ["time", *by], list(FIELDS), rtol=1e-12)


def test_windowed_mean_matches_pandas(stores, frame):
    _, prom = stores
    w = timedelta(minutes=45)
    got = prom.query(Query("accelerator", ("power_watts",), START, END, group_by=("site",),
                           window=w, agg=Aggregate.MEAN))
    d = frame[(frame.time >= START) & (frame.time < END)]
    d = d.assign(bucket=START + ((d.time - START) // w) * w)
    want = d.groupby(["bucket", "site"]).power_watts.mean()
    assert got.set_index(["time", "site"]).power_watts.to_dict() == pytest.approx(
        want.to_dict(), rel=1e-12)


@pytest.mark.parametrize("phi", [0.1, 0.5, 0.95])
def test_last_and_quantile_of_one_series_are_exact(stores, phi):
    duck, prom = stores
    for agg in (Aggregate.LAST, Aggregate.QUANTILE):
        q = Query("accelerator", FIELDS, START, END, group_by=("device",),
                  window=timedelta(minutes=25), agg=agg, quantile=phi)
        assert_same(prom.query(q), duck.query(q), ["time", "device"], list(FIELDS),
                    rtol=1e-12)


def test_last_and_quantile_across_series_are_approximations_within_the_group(stores):
    duck, prom = stores
    base = dict(measurement="accelerator", fields=("utilization_ratio",), start=START,
                end=END, group_by=("site",), window=timedelta(hours=1))
    lo = duck.query(Query(**base, agg=Aggregate.MIN)).utilization_ratio
    hi = duck.query(Query(**base, agg=Aggregate.MAX)).utilization_ratio
    for agg in (Aggregate.LAST, Aggregate.QUANTILE):
        got = prom.query(Query(**base, agg=agg, quantile=0.9)).utilization_ratio
        want = duck.query(Query(**base, agg=agg, quantile=0.9)).utilization_ratio
        assert len(got) == len(want) == len(lo)
        assert ((got >= lo) & (got <= hi)).all()
        assert not np.allclose(got, want)


def test_series_and_time_bounds(stores, frame):
    duck, prom = stores
    want = duck.series("accelerator")
    assert_same(prom.series("accelerator"), want, list(want.columns), [])
    got = prom.series("accelerator", {"site": "sh-1"})
    assert sorted(got.device) == sorted(frame[frame.site == "sh-1"].device.unique())
    assert prom.time_bounds("accelerator") == duck.time_bounds("accelerator")
    assert prom.time_bounds("finding") is None


def test_prometheus_is_read_only(stores):
    _, prom = stores
    frame = pd.DataFrame({"time": [T0], "site": ["a"], "utilization_ratio": [0.5]})
    with pytest.raises(StoreError, match=r"read-only.*scrapes"):
        prom.write("accelerator", frame)
    with pytest.raises(StoreError, match="retention"):
        prom.drop_before(T0)


@pytest.mark.parametrize(("url", "base"), [
    ("prometheus://prom:9090", "http://prom:9090"),
    ("prometheus://prom:9090/prom/?tls=1", "https://prom:9090/prom"),
])
def test_url_forms(url, base):
    assert parse_prometheus_url(url)[0] == base


@pytest.mark.parametrize(("url", "message"), [
    ("prometheus://", "no host:port"),
    ("prometheus://p:9090?tenant=1", "unknown parameter 'tenant'"),
    ("prometheus://p:9090?timeout=-1s", "timeout"),
])
def test_bad_urls_are_named(url, message):
    with pytest.raises(StoreError, match=message):
        PrometheusStore(url)


@pytest.mark.realtime  # a real agent scraped by a real Prometheus (~8 s)
def test_reads_what_prometheus_scraped_from_a_running_agent(tmp_path):
    """A real agent (simulated drivers), scraped every second; its own DuckDB store is the
    reference for the values that do not change between cycles."""
    agent_port = free_port()
    db = tmp_path / "agent.duckdb"
    (tmp_path / "node.yaml").write_text(
        f"interval: 1s\nexports:\n  store:\n    enabled: true\n    url: duckdb:///{db}\n")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: agent\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{agent_port}']}}]\n")
    agent = subprocess.Popen([sys.executable, "-m", "computewatch", "agent", "--config",
                              str(tmp_path / "node.yaml"), "--simulate", "--listen",
                              f"127.0.0.1:{agent_port}", "--duration", "30s"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    begin = datetime.now(UTC) - timedelta(seconds=1)
    try:
        with start_prometheus(tmp_path, tmp_path / "prometheus.yml") as server, \
                PrometheusStore(f"prometheus://127.0.0.1:{server.port}") as prom:
            counts = None
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                q = Query("accelerator", ("memory_total_bytes",), begin,
                          datetime.now(UTC) + timedelta(seconds=1), group_by=("vendor",),
                          agg=Aggregate.COUNT)
                got = prom.query(q)
                counts = dict(zip(got.vendor, got.memory_total_bytes, strict=True))
                if len(counts) == 2 and min(counts.values()) >= 3 * 8:  # 3 scrapes of 8 cards
                    break
                time.sleep(0.5)
            assert counts and min(counts.values()) >= 24, counts
            end = datetime.now(UTC) + timedelta(seconds=1)
            by = ("vendor", "model", "device")
            q = Query("accelerator", ("memory_total_bytes",), begin, end, group_by=by,
                      agg=Aggregate.MEAN)
            scraped = prom.query(q)
            series = prom.series("accelerator", {"vendor": ["nvidia", "huawei"]})
    finally:
        agent.kill()
        agent.wait(timeout=10)
    with DuckDBStore(db) as own:
        stored = own.query(Query("accelerator", ("memory_total_bytes",), begin, end,
                                 group_by=by, agg=Aggregate.MEAN))
        own_series = own.series("accelerator", {"vendor": ["nvidia", "huawei"]})
    assert len(scraped) == 16
    assert_same(scraped.drop(columns="time"), stored.drop(columns="time"), list(by),
                ["memory_total_bytes"], rtol=0)
    assert sorted(series.device) == sorted(own_series.device)
