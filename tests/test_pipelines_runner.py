"""The one analyze runner and the `Analysis` it returns: an explicit registry, unknown names
refused before anything runs, a failing pipeline stated while the others run, findings most
severe first and written to a real DuckDB store."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from computewatch.findings import (
    Analysis,
    Finding,
    Period,
    PipelineStatus,
    Severity,
    findings_frame,
    most_severe_first,
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
