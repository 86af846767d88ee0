"""The rollup recording rules: generated from the catalogue, current, valid, and right when a
real vmalert evaluates them against a real VictoriaMetrics."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from servers import free_port, installed, start_victoriametrics

from computewatch.rollup_rules import ROLLUP_RULES_FILE, render_rollup_rules, rollup_rules
from computewatch.store import open_store

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / ROLLUP_RULES_FILE
T0 = datetime(2026, 11, 2, tzinfo=UTC)
HOURS = 26
MIN = timedelta(minutes=1)


def test_the_committed_rules_file_is_current():
    assert RULES.read_text(encoding="utf-8") == render_rollup_rules(), (
        f"{ROLLUP_RULES_FILE} is stale: regenerate it with `python -c 'from "
        f"computewatch.rollup_rules import *; ROLLUP_RULES_FILE.write_text("
        f"render_rollup_rules())'`")


def test_every_gauge_counter_and_histogram_gets_its_mergeable_rollups():
    names = {r.record for r in rollup_rules("1h")}
    for op in ("sum", "count", "min", "max", "last"):
        assert f"series:accelerator_utilization_ratio:{op}_1h" in names
    assert "series:facility_power_joules_total:increase_1h" in names
    assert "series:facility_power_joules_total:sum_1h" not in names  # a counter's sum means nothing
    assert "series:link_latency_rtt_seconds_bucket:increase_1h" in names
    assert {r.record.replace("_1h", "_1d") for r in rollup_rules("1h")} == \
        {r.record for r in rollup_rules("1d")}


def test_promtool_accepts_the_rules():
    done = subprocess.run([installed("promtool"), "check", "rules", str(RULES)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {2 * len(rollup_rules('1h'))} rules found" in done.stdout


def _data() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(7)
    times = pd.date_range(T0, T0 + timedelta(hours=HOURS), freq="1min", inclusive="left")
    acc = pd.concat([pd.DataFrame({"time": times, "site": "s1", "device": f"d{d}",
                                   "utilization_ratio": rng.uniform(0, 1, len(times)).round(4)})
                     for d in range(2)], ignore_index=True)
    joules = 1e9 + np.arange(len(times)) * 6e4
    reset = times >= T0 + timedelta(hours=3, minutes=20)
    joules[reset] -= joules[reset][0] - 1.2e5  # restarts near zero
    meter = pd.DataFrame({"time": times, "site": "s1", "meter": "m", "scope": "facility",
                          "joules_total": joules})
    return acc, meter


def _export(url: str, name: str) -> dict[tuple[str, datetime], float]:
    """Every recorded point of ``name``: (series label, time) -> value."""
    r = requests.get(f"{url}/api/v1/export", params={"match[]": name}, timeout=30)
    r.raise_for_status()
    out = {}
    for line in r.text.splitlines():
        row = pd.read_json(pd.io.common.StringIO(line), typ="series")
        key = row["metric"].get("device") or row["metric"].get("meter")
        for v, ts in zip(row["values"], row["timestamps"], strict=True):
            out[(key, datetime.fromtimestamp(ts / 1000, UTC))] = float(v)
    return out


def _window(frame: pd.DataFrame, t: datetime, span: timedelta) -> pd.DataFrame:
    return frame[(frame.time > t - span) & (frame.time <= t)]


@pytest.mark.slow  # a real VictoriaMetrics and a vmalert replay of a day (about 3 s)
def test_vmalert_records_the_rollups_into_victoriametrics(tmp_path):
    acc, meter = _data()
    with start_victoriametrics(tmp_path / "vm") as server:
        store = open_store(f"victoriametrics://127.0.0.1:{server.port}")
        store.write("accelerator", acc)
        store.write("facility_power", meter)
        store.close()
        requests.get(f"{server.url}/internal/force_flush", timeout=10).raise_for_status()
        argv = [installed("vmalert"), f"-rule={RULES}", f"-datasource.url={server.url}",
                f"-remoteWrite.url={server.url}",
                f"-replay.timeFrom={T0:%Y-%m-%dT%H:%M:%SZ}",
                f"-replay.timeTo={T0 + timedelta(hours=HOURS):%Y-%m-%dT%H:%M:%SZ}",
                "-replay.disableProgressBar", "-replay.rulesDelay=0s", "-loggerLevel=WARN",
                f"-httpListenAddr=127.0.0.1:{free_port()}"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        requests.get(f"{server.url}/internal/force_flush", timeout=10).raise_for_status()
        sums = _export(server.url, "series:accelerator_utilization_ratio:sum_1h")
        counts = _export(server.url, "series:accelerator_utilization_ratio:count_1h")
        maxima = _export(server.url, "series:accelerator_utilization_ratio:max_1h")
        daily = _export(server.url, "series:accelerator_utilization_ratio:sum_1d")
        increases = _export(server.url, "series:facility_power_joules_total:increase_1h")
    # Every hour of the day is recorded for both cards, each value computed here over the
    # range the rule covers, (t - 1h, t].
    last = T0 + timedelta(hours=HOURS) - MIN
    full = [(d, t) for (d, t) in sums if t - timedelta(hours=1) >= T0 and t <= last]
    assert len(full) >= 2 * 24
    for device, t in full:
        got = _window(acc[acc.device == device], t, timedelta(hours=1)).utilization_ratio
        assert sums[(device, t)] == pytest.approx(got.sum(), rel=1e-9)
        assert counts[(device, t)] == len(got) == 60
        assert maxima[(device, t)] == pytest.approx(got.max())
    day_end = [(d, t) for (d, t) in daily if t - timedelta(days=1) >= T0 and t <= last]
    assert day_end, f"no whole day recorded: {sorted(daily)}"
    for device, t in day_end:
        got = _window(acc[acc.device == device], t, timedelta(days=1)).utilization_ratio
        assert daily[(device, t)] == pytest.approx(got.sum(), rel=1e-9)
    # The counter's hourly increase undoes the reset: 60 kJ a minute, the restart's 120 kJ.
    reset_hour = T0 + timedelta(hours=4)
    assert increases[("m", reset_hour - timedelta(hours=1))] == pytest.approx(60 * 6e4)
    assert increases[("m", reset_hour)] == pytest.approx(59 * 6e4 + 1.2e5, rel=1e-6)
