"""Label values, any Unicode, to a real store and back by every path: line protocol into
VictoriaMetrics (samples and frames), the Prometheus exposition into VictoriaMetrics, frames
into DuckDB. A value comes back exactly, or it is refused and counted before it is sent:
never altered, never counted as sent and lost (issue 15, defect 2).

What line protocol can carry is stated here from the specification, not taken from the
encoder: no ASCII control character (newline forbidden by the specification, the rest by
InfluxDB's reference decoder), valid Unicode, at most 4 KiB.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from fuzzing import label_text, round_trip
from hypothesis import given
from hypothesis import strategies as st
from servers import start_victoriametrics

from computewatch.collectors.export.prometheus import exposition
from computewatch.collectors.export.remote import RemoteExporter
from computewatch.lineprotocol import encode_frame, encode_samples
from computewatch.samples import Sample, sample_value, samples_to_frames
from computewatch.store import open_store
from computewatch.validation import InvalidSampleError, check_sample

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
_runs = itertools.count()


def _carriable(value: str) -> bool:
    """What the specification lets line protocol carry in a tag value (empty: no tag)."""
    if re.search(r"[\x00-\x1f\x7f]", value):
        return False
    try:
        return len(value.encode("utf-8")) <= 4096
    except UnicodeEncodeError:
        return False


def _unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _samples(values: list[str], run: str) -> list[Sample]:
    """One series per value: ``node=n<i>`` names it, ``site`` carries the value."""
    return [Sample.of("accelerator.power_watts", 100.0 + i,
                      {"device": run, "node": f"n{i}", "site": v, "vendor": "nvidia"}, T0)
            for i, v in enumerate(values)]


def _write(url: str, path: str, body: bytes) -> None:
    req = urllib.request.Request(url + path, data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204


def _series(url: str, run: str) -> list[dict]:
    """Every stored series of a run, samples stamped "now" (the exposition's) included."""
    urllib.request.urlopen(url + "/internal/force_flush", timeout=10).read()
    q = urllib.parse.urlencode({"match[]": f'{{device="{run}"}}', "start": "0",
                                "end": str(int(time.time()) + 86400)})
    with urllib.request.urlopen(f"{url}/api/v1/export?{q}", timeout=30) as r:
        return [json.loads(line) for line in r.read().splitlines() if line.strip()]


def _read_back(url: str, run: str, want_series: int) -> dict[str, str | None]:
    """node -> site label as stored (None: no site label), once ``want_series`` are there."""
    deadline = time.monotonic() + 10
    while True:
        got = _series(url, run)
        if len(got) >= want_series or time.monotonic() > deadline:
            return {s["metric"]["node"]: s["metric"].get("site") for s in got}
        time.sleep(0.05)


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    with start_victoriametrics(tmp_path_factory.mktemp("vm")) as server:
        yield server


# --- the defect, reproduced -------------------------------------------------------------------

# Each of these was stored wrong or not at all: a backslash before a space or comma made the
# whole line invalid (VictoriaMetrics answered 204 and stored nothing), a trailing backslash
# became a space, "\\" became "\".
BACKSLASHES = ["a\\ b", "a\\,b", "a\\=b", "ends\\", "two\\\\in a row", "C:\\data", "\\"]


def test_backslashes_reach_victoriametrics_exactly(vm):
    run = f"bs{next(_runs)}"
    enc = encode_samples(_samples(BACKSLASHES, run))
    _write(vm.url, "/write", enc.payload)
    got = _read_back(vm.url, run, len(BACKSLASHES))
    assert got == {f"n{i}": v for i, v in enumerate(BACKSLASHES)}
    assert enc.refused == 0


def test_control_characters_are_refused_and_counted_never_rewritten(vm):
    values = ["line\nbreak", "tab\there", "cr\rhere", "ok"]
    run = f"cc{next(_runs)}"
    enc = encode_samples(_samples(values, run))
    assert (enc.lines, enc.refused) == (1, 3)
    _write(vm.url, "/write", enc.payload)
    assert _read_back(vm.url, run, 1) == {"n3": "ok"}


def test_the_agent_counts_as_sent_only_what_the_store_stores(vm, tmp_path):
    """The probe's case: the agent said 216 samples sent, VictoriaMetrics had stored 0."""
    values = [*BACKSLASHES, "line\nbreak", "tab\there", "plain"]
    run = f"agent{next(_runs)}"
    batch = [Sample(s.measurement, s.field, s.value, s.labels, s.time + timedelta(seconds=k))
             for k in range(24) for s in _samples(values, run)]
    exp = RemoteExporter(f"victoriametrics://127.0.0.1:{vm.port}", tmp_path / "buf",
                         flush_interval_s=0.05)
    try:
        res = exp.export(batch)
        assert exp.flush(20)
        own = exp.self_samples({"node": "n"})
        sent = sample_value(own, "agent.buffer_sent_samples_total")
        invalid = sample_value(own, "agent.buffer_dropped_samples_total", {"reason": "invalid"})
    finally:
        exp.close()
    stored = _series(vm.url, run)
    assert sum(len(s["values"]) for s in stored) == sent == res.exported == 24 * 8
    assert invalid == 24 * 2
    assert {s["metric"].get("site") for s in stored} == {*BACKSLASHES, "plain"}


# --- any Unicode, by every path -------------------------------------------------------------

values_lists = st.lists(label_text, min_size=1, max_size=8)


@round_trip
@given(values=values_lists)
def test_line_protocol_round_trip_through_victoriametrics(vm, values):
    run = f"lp{next(_runs)}"
    samples = _samples(values, run)
    enc = encode_samples(samples)
    carried = [_carriable(v) for v in values]
    assert enc.refused == carried.count(False)
    assert enc.lines == carried.count(True)
    if all(_unicode(v) for v in values):  # Arrow frames hold only valid Unicode
        assert encode_frame("accelerator", samples_to_frames(samples)["accelerator"]) == enc
    if enc.payload:
        _write(vm.url, "/write", enc.payload)
    got = _read_back(vm.url, run, enc.lines)
    want = {f"n{i}": v or None for i, v in enumerate(values) if carried[i]}
    assert got == want


@round_trip
@given(values=values_lists)
def test_exposition_round_trip_through_victoriametrics(vm, values):
    run = f"prom{next(_runs)}"
    samples = []
    for s in _samples(values, run):
        try:
            samples.append(check_sample(s))
        except InvalidSampleError:  # the agent refuses what is not valid Unicode
            assert not _unicode(s.label("site") or "")
    assert len(samples) == sum(_unicode(v) for v in values)
    if not samples:
        return
    _write(vm.url, "/api/v1/import/prometheus", exposition(samples))
    got = _read_back(vm.url, run, len(samples))
    assert got == {s.label("node"): s.label("site") or None for s in samples}


@round_trip
@given(values=values_lists)
def test_duckdb_round_trip(tmp_path_factory, values):
    kept = [v for v in values if _unicode(v)]
    if not kept:
        return
    run = f"db{next(_runs)}"
    path = tmp_path_factory.mktemp("duck") / "labels.duckdb"
    with open_store(str(path)) as st_:
        frames = samples_to_frames(_samples(kept, run))
        st_.write("accelerator", frames["accelerator"])
        got = st_.series("accelerator", where={"device": run})
    stored = {row.node: (row.site or None) for row in got.itertuples()}
    assert stored == {f"n{i}": v or None for i, v in enumerate(kept)}
