"""The one analyze runner and the `Analysis` it returns: an explicit registry, unknown names
refused before anything runs, a failing pipeline stated while the others run, findings most
severe first and written to a real DuckDB store."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from computewatch.findings import (
    Analysis,
    Finding,
    Period,
    PipelineStatus,
    Severity,
    finding_key,
    findings_frame,
    most_severe_first,
    write_findings,
)
from computewatch.pipelines import (
    PIPELINES,
    anomaly,
    latency,
    pue,
    run_pipelines,
    surplus,
    underuse,
)
from computewatch.policy import load_policy
from computewatch.store import Aggregate, DuckDBStore, Query
from computewatch.topology import load_topology

T0 = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD = Period(T0, T0 + timedelta(hours=2))
TOPO = load_topology()
POLICY = load_policy(topology=TOPO)


def finding(subject: str, severity: Severity, observed: float, threshold: float,
            pipeline: str = "fake") -> Finding:
    return Finding(pipeline, "rule", "site", subject, severity, observed, threshold, "ratio",
                   PERIOD.start, PERIOD.end)


@pytest.fixture
def store(tmp_path):
    s = DuckDBStore(tmp_path / "runner.duckdb")
    yield s
    s.close()


def written(store) -> dict[str, int]:
    got = store.query(Query("finding", ("severity",), T0 - timedelta(days=1),
                            T0 + timedelta(days=1), group_by=("pipeline",),
                            agg=Aggregate.COUNT))
    return dict(zip(got.pipeline, got.severity.astype(int), strict=True))


def test_the_registry_names_every_pipeline_once_and_cannot_be_changed():
    assert dict(PIPELINES) == {"underuse": underuse.run, "latency": latency.run,
                               "pue": pue.run, "anomaly": anomaly.run, "surplus": surplus.run}
    with pytest.raises(TypeError):
        PIPELINES["mine"] = underuse.run  # type: ignore[index]


def test_an_unknown_pipeline_is_refused_before_anything_runs(store):
    ran = []

    def fine(*_args):
        ran.append("fine")
        return [finding("a", Severity.WARNING, 0.1, 0.3, "fine")]

    with pytest.raises(ValueError, match=r"unknown pipeline 'nope' \(choose from fine\)"):
        run_pipelines(store, PERIOD, POLICY, TOPO, only=["fine", "nope"],
                      registry={"fine": fine})
    assert ran == [] and written(store) == {}


def test_a_failing_pipeline_is_stated_and_the_others_still_run_and_write(store):
    def boom(*_args):
        raise RuntimeError("store went away")

    def fine(*_args):
        return [finding("a", Severity.WARNING, 0.1, 0.3, "fine"),
                finding("b", Severity.CRITICAL, 0.05, 0.3, "fine")]

    seen = []
    analysis = run_pipelines(store, PERIOD, POLICY, TOPO, registry={"boom": boom, "fine": fine},
                             progress=seen.append)
    assert seen == ["boom", "fine"]
    assert analysis.period == PERIOD
    assert analysis.status == (PipelineStatus("boom", error="RuntimeError: store went away"),
                               PipelineStatus("fine", 2))
    assert [str(s) for s in analysis.status] == ["failed: RuntimeError: store went away",
                                                 "2 findings"]
    assert analysis.pipelines == ("boom", "fine")
    assert analysis.succeeded == ("fine",) and analysis.failed == ("boom",)
    assert [f.subject for f in analysis.findings] == ["b", "a"]  # critical first
    assert written(store) == {"fine": 2}
    nothing = run_pipelines(store, PERIOD, POLICY, TOPO, only=(), write=False)
    assert nothing.status == () and nothing.findings == ()


def test_most_severe_first_then_the_largest_gap_and_the_frame_keeps_that_order():
    found = [
        finding("small-gap", Severity.WARNING, 0.29, 0.30),  # gap 1/30
        finding("no-gap-known", Severity.WARNING, math.nan, 0.30),  # last of its severity
        finding("info", Severity.INFO, 5.0, 0.0),
        finding("big-gap", Severity.WARNING, 0.03, 0.30),  # gap 0.9
        finding("critical", Severity.CRITICAL, 0.29, 0.30),
        finding("zero-threshold", Severity.WARNING, 0.5, 0.0),  # gap 0.5 (absolute)
    ]
    order = ["critical", "big-gap", "zero-threshold", "small-gap", "no-gap-known", "info"]
    assert [f.subject for f in most_severe_first(found)] == order
    frame = findings_frame(found)
    assert frame.subject.tolist() == order and frame.severity.dtype.kind == "i"
    analysis = Analysis.of(PERIOD, found, [PipelineStatus("fake", len(found))])
    assert [f.subject for f in analysis.findings] == order
    assert analysis.frame().equals(frame)


def test_the_five_pipelines_run_on_an_empty_store(store):
    analysis = run_pipelines(store, PERIOD, POLICY, TOPO)
    assert analysis.succeeded == tuple(PIPELINES) and analysis.failed == ()


def stored(store) -> list[tuple]:
    """Every finding row in the store: (time, pipeline, subject, key, observed)."""
    rows = store.query(Query("finding", ("observed",), T0 - timedelta(days=1),
                             T0 + timedelta(days=1), window=timedelta(minutes=1),
                             group_by=("pipeline", "subject", "key"), agg=Aggregate.COUNT))
    return sorted((r.time, r.pipeline, r.subject, r.key, int(r.observed))
                  for r in rows.itertuples())


def test_a_rerun_over_the_same_window_replaces_its_findings(store):
    calls = {"n": 0}

    def fine(*_args):
        calls["n"] += 1
        found = [finding("a", Severity.WARNING, 0.1, 0.3, "fine")]
        return found + [finding("b", Severity.WARNING, 0.2, 0.3, "fine")] * (calls["n"] == 1)

    run_pipelines(store, PERIOD, POLICY, TOPO, registry={"fine": fine})
    assert written(store) == {"fine": 2}
    run_pipelines(store, PERIOD, POLICY, TOPO, registry={"fine": fine})
    # One row per finding: "a" once, not twice; "b", which the rerun no longer finds, gone.
    assert stored(store) == [(PERIOD.end, "fine", "a", "2026-10-01T00:00:00Z", 1)]


def test_a_failed_pipeline_keeps_what_it_wrote_before(store):
    state = {"fail": False}

    def flaky(*_args):
        if state["fail"]:
            raise RuntimeError("store went away")
        return [finding("a", Severity.WARNING, 0.1, 0.3, "flaky")]

    def fine(*_args):
        return [finding("b", Severity.WARNING, 0.1, 0.3, "fine")]

    registry = {"flaky": flaky, "fine": fine}
    run_pipelines(store, PERIOD, POLICY, TOPO, registry=registry)
    state["fail"] = True
    run_pipelines(store, PERIOD, POLICY, TOPO, registry=registry)
    assert written(store) == {"flaky": 1, "fine": 1}


def test_findings_outside_the_rerun_window_stay(store):
    def fine(_store, period, *_args):
        return [Finding("fine", "rule", "site", "a", Severity.WARNING, 0.1, 0.3, "ratio",
                        period.start, period.end)]

    run_pipelines(store, PERIOD, POLICY, TOPO, registry={"fine": fine})
    later = Period(PERIOD.end, PERIOD.end + timedelta(hours=2))
    run_pipelines(store, later, POLICY, TOPO, registry={"fine": fine})
    run_pipelines(store, later, POLICY, TOPO, registry={"fine": fine})
    assert [row[0] for row in stored(store)] == [PERIOD.end, later.end]


def test_every_finding_is_its_own_series_and_keys_are_stable():
    a = finding("a", Severity.WARNING, 0.1, 0.3)
    assert finding_key(a) == "2026-10-01T00:00:00Z"
    circle = Finding("surplus", "idle_capacity_within_circle", "city", "shanghai",
                     Severity.INFO, 4.0, 0.0, "accelerators", PERIOD.start, PERIOD.end,
                     detail={"variant": "5ms"})
    assert finding_key(circle) == "2026-10-01T00:00:00Z/5ms"


def test_the_surplus_circles_of_a_city_are_three_series(store):
    s = TOPO.site("sh-pudong")
    store.write("accelerator", pd.DataFrame([
        {"time": T0 + timedelta(minutes=m), "site": s.id, "hub": s.hub, "device": "d0",
         "ecosystem": "cuda", "model": "H100", "utilization_ratio": 0.05}
        for m in range(0, 120, 10)]))
    run_pipelines(store, PERIOD, POLICY, TOPO, only=["surplus"])
    run_pipelines(store, PERIOD, POLICY, TOPO, only=["surplus"])
    rows = [r for r in stored(store) if r[2] == "shanghai"]
    assert [r[3] for r in rows] == [f"2026-10-01T00:00:00Z/{c}ms" for c in ("1", "20", "5")]
    assert {r[4] for r in rows} == {1}  # each once, after two runs


def test_two_findings_that_would_share_a_series_are_kept_apart(store):
    twins = [finding("a", Severity.WARNING, 0.1, 0.3, "fine"),
             finding("a", Severity.WARNING, 0.2, 0.3, "fine")]
    assert write_findings(store, twins) == 2
    keys = [r[3] for r in stored(store)]
    assert len(set(keys)) == 2 and keys[0].startswith("2026-10-01T00:00:00Z")
    again = DuckDBStore(":memory:")
    write_findings(again, twins)
    assert sorted(r[3] for r in stored(again)) == sorted(keys)  # the same keys every time
