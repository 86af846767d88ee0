"""The latency and anomaly pipelines over hourly rollups find what they find over raw data.

One small simulated fleet, two days, written as minutes three times: ``raw`` keeps them,
``rolled`` rolls them up and drops every raw sample (`refresh_rollups`, `drop_before`), so
its whole history is hourly rollups; ``mixed`` drops only the first day's (a demo's store).
Both pipelines run over the second day (the first is their baseline) through the runner.
Expected values are the simulator's ground truth (the injected link degradation and lost
device, timed to the minute) and the hourly rollups' stated limits (see the pipelines'
docstrings): findings timed to the hour that holds them, the same subjects, the same links
listed, tier compliance exact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from computewatch.compliance import window_compliance
from computewatch.findings import Period
from computewatch.pipelines import run_pipelines
from computewatch.policy import load_policy
from computewatch.sim import build_fleet, simulate
from computewatch.sim.scoring import score
from computewatch.store import DuckDBStore, resolution
from computewatch.topology import load_topology

END = datetime(2026, 12, 6, tzinfo=UTC)
HOURS = 48
PERIOD = Period(END - timedelta(hours=24), END)
POLICY = load_policy()
HOUR = timedelta(hours=1)


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    fleet = build_fleet(load_topology(), sites=12, accelerators=200, seed=3)
    out = {}
    for name in ("raw", "rolled", "mixed"):
        history = simulate(fleet, hours=HOURS, end=END, policy=POLICY)
        store = DuckDBStore(tmp_path_factory.mktemp(name) / "p.duckdb")
        for measurement, frame in history.chunks():
            store.write(measurement, frame)
        if name != "raw":  # mixed: the baseline day rolled up, the period raw (as a demo)
            store.refresh_rollups()
            store.drop_before(END + timedelta(days=1) if name == "rolled" else PERIOD.start)
        analysis = run_pipelines(store, PERIOD, POLICY, fleet.topology,
                                 only=["latency", "anomaly"], write=False)
        out[name] = (store, analysis, history.truth)
    yield out
    for store, _, _ in out.values():
        store.close()


def _incident(truth, kind):
    got = [i for i in truth.incidents if i.kind == kind
           and i.start < PERIOD.end and i.end > PERIOD.start]
    assert len(got) == 1, f"the simulator no longer injects one {kind} in the period"
    return got[0]


def _by_rule(analysis, rule):
    return sorted((f for f in analysis.findings if f.rule == rule), key=lambda f: f.subject)


def test_the_rolled_store_holds_hourly_rollups_only(runs):
    store, analysis, _ = runs["rolled"]
    assert resolution(store, "link_latency", PERIOD.start - timedelta(hours=24)) == HOUR
    assert resolution(store, "accelerator", PERIOD.start) == HOUR
    assert all(s.ok for s in analysis.status), analysis.status


def test_a_degraded_link_is_found_and_timed_to_the_hour(runs):
    truth = runs["raw"][2]
    inc = _incident(truth, "link_degraded")
    (raw,), (rolled,) = (_by_rule(runs[n][1], "link_degraded") for n in ("raw", "rolled"))
    assert raw.subject == rolled.subject == inc.subject
    # Raw data: 5-minute windows, so within a window of the truth.
    assert abs(raw.start - inc.start) <= timedelta(minutes=5)
    assert abs(raw.end - inc.end) <= timedelta(minutes=5)
    # Hourly rollups: the hours that hold it (the truth's end is on the hour).
    assert rolled.start == _floor_hour(inc.start)
    assert rolled.end == _floor_hour(inc.end - timedelta(microseconds=1)) + HOUR
    assert rolled.detail["window_s"] == 3600.0
    assert rolled.severity == raw.severity
    # Its p95 merged from hourly means of the per-minute percentiles: the incident's level
    # (the degraded minutes are 3/5 of the first hour; the rest are whole hours).
    assert rolled.observed == pytest.approx(raw.observed, rel=0.02)


@pytest.mark.parametrize("rule", ["tier_budget_unmet", "route_inflation",
                                  "budget_below_physics"])
def test_planning_findings_list_the_same_links(runs, rule):
    """Chronic links, route inflation and physics are properties of the whole day: the
    same hub pairs and links from hourly windows as from 5-minute ones."""
    raw, rolled = (_by_rule(runs[n][1], rule) for n in ("raw", "rolled"))
    assert [f.subject for f in rolled] == [f.subject for f in raw]
    for a, b in zip(raw, rolled, strict=True):
        assert sorted(x["pair"] for x in b.detail["links"]) == \
            sorted(x["pair"] for x in a.detail["links"])
        if rule == "route_inflation":  # median of hourly minima vs of 5-minute minima
            assert b.observed == pytest.approx(a.observed, rel=1e-3)


def test_the_scores_against_the_truth_are_the_same_for_latency(runs):
    cards = {n: {s.rule: s for s in score(runs[n][1].findings, runs[n][2], PERIOD).scores}
             for n in ("raw", "rolled")}
    for rule in ("link_degraded", "tier_budget_unmet", "route_inflation",
                 "budget_below_physics"):
        raw, rolled = cards["raw"][rule], cards["rolled"][rule]
        assert (rolled.true_positives, rolled.false_positives, rolled.false_negatives) == \
            (raw.true_positives, raw.false_positives, raw.false_negatives), rule
    assert cards["rolled"]["link_degraded"].true_positives == 1


def test_tier_compliance_is_exact_over_hourly_rollups(runs):
    def compliance(store):
        got = window_compliance(store, PERIOD, POLICY, window=HOUR)
        got = got.set_index(["src_site", "dst_site"])
        return got[["probes", "probes_within_budget", "windows_with_data"]]

    raw, rolled = compliance(runs["raw"][0]), compliance(runs["rolled"][0])
    assert rolled.index.tolist() == raw.index.tolist()
    assert rolled.to_numpy() == pytest.approx(raw.to_numpy(), rel=1e-12)


def test_a_raw_period_after_rollups_keeps_its_windows(runs):
    """A demo's store: the day before the period kept as hourly rollups, the period raw.
    The period keeps its 5-minute windows (the incident timed as on raw data); the
    baseline reads only the raw data, so the link's other windows stand in for it."""
    store, analysis, truth = runs["mixed"]
    assert resolution(store, "link_latency", PERIOD.start - HOUR) == HOUR
    assert resolution(store, "link_latency", PERIOD.start) == timedelta(0)
    assert all(s.ok for s in analysis.status), analysis.status
    inc = _incident(truth, "link_degraded")
    (found,) = _by_rule(analysis, "link_degraded")
    assert found.subject == inc.subject and found.detail["window_s"] == 300.0
    assert found.detail["baseline"] == "rest"
    assert abs(found.start - inc.start) <= timedelta(minutes=5)
    lost = _incident(truth, "device_lost")
    assert [(f.subject, f.start) for f in _by_rule(analysis, "accelerator_lost")] == \
        [(lost.subject, lost.start)]  # the period's minutes


def test_a_lost_accelerator_is_found_and_timed_to_the_hour(runs):
    truth = runs["raw"][2]
    inc = _incident(truth, "device_lost")
    (raw,), (rolled,) = (_by_rule(runs[n][1], "accelerator_lost") for n in ("raw", "rolled"))
    assert raw.subject == rolled.subject == inc.subject
    assert raw.start == inc.start  # minute data: the minute it was lost
    assert rolled.start == _floor_hour(inc.start)  # hourly minima: the hour it was lost in
    assert rolled.end == raw.end == min(inc.end, PERIOD.end)
    assert rolled.detail["recovered"] == raw.detail["recovered"]


def test_site_anomalies_are_the_same_over_hourly_rollups(runs):
    """Hourly site features are hourly means, PUE from hourly meter readings, the median RTT
    to the hub from the hours' sketches (within 1%): the same runs of anomalous windows,
    explained by the same feature, with robust z within a few percent, and the same score
    against the truth."""
    raw, rolled = (_by_rule(runs[n][1], "site_anomaly") for n in ("raw", "rolled"))
    assert raw, "the simulated day holds no site anomaly to compare"
    assert [(f.subject, f.start, f.end, f.severity) for f in rolled] == \
        [(f.subject, f.start, f.end, f.severity) for f in raw]
    for a, b in zip(raw, rolled, strict=True):
        assert b.detail["features"][0]["feature"] == a.detail["features"][0]["feature"]
        assert b.observed == pytest.approx(a.observed, rel=0.05)
    cards = [{s.rule: s for s in score(runs[n][1].findings, runs[n][2], PERIOD).scores}
             ["site_anomaly"] for n in ("raw", "rolled")]
    assert [(c.true_positives, c.false_positives, c.false_negatives) for c in cards] == \
        [(cards[0].true_positives, cards[0].false_positives, cards[0].false_negatives)] * 2
