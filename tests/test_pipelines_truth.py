"""Every pipeline on a simulated day (1,500 accelerators, seed 3), scored against the
simulator's ground truth by every registered rule's matcher (computewatch.sim.scoring): no
rule misses what the truth states (recall 100%), and at least 90% of each rule's claims are
true (precision; tests/test_scoring.py holds the demo's three seeds to 95%)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from computewatch.findings import Period
from computewatch.pipelines import run_pipelines
from computewatch.policy import load_policy
from computewatch.sim.scoring import score
from computewatch.store import Aggregate, Query

END = datetime(2026, 10, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def day(simulated_day, simulated_store):
    """The session's simulated day (conftest.py: 24 h, 1,500 accelerators, seed 3)."""
    fleet, history, store = simulated_day.fleet, simulated_day.history, simulated_store
    assert history.end == END and history.hours == 24
    policy = load_policy()
    analysis = run_pipelines(store, Period(history.start, history.end), policy,
                             fleet.topology)
    return history, store, policy, fleet, analysis.frame(), analysis


def test_every_incident_is_found_and_warnings_are_true(day):
    history, *_, analysis = day
    card = score(analysis.findings, history.truth, analysis.period)
    for s in card.scores:
        assert s.false_negatives == 0, (s.rule, s.missed)
        assert not s.precision < 0.9, (s.rule, s.wrong)


def test_every_pipeline_contributed_and_findings_were_written(day):
    history, store, _, _, findings, _ = day
    assert set(findings.pipeline) == {"underuse", "latency", "pue", "anomaly", "surplus"}
    written = store.query(Query("finding", ("severity",), history.start, END.replace(year=2027),
                                group_by=("pipeline",), agg=Aggregate.COUNT))
    counts = dict(zip(written.pipeline, written.severity, strict=True))
    assert counts == findings.groupby("pipeline").size().to_dict()


def test_findings_state_threshold_window_and_completeness(day):
    *_, findings, _ = day
    assert findings.definition.str.len().min() > 20
    assert (findings.end > findings.start).all()
    assert findings.completeness.between(0, 1).all()
    under = findings[findings.rule == "site_below_minimum"]
    assert (under.observed < under.threshold).all()
