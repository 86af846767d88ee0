"""Most urgent first and root-cause groups (`computewatch.findings`, `computewatch.triage`),
on findings written here by hand; and `computewatch analyze` printing them."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from link_frames import T0, minutes

from computewatch.findings import (
    FINDING_COLUMNS,
    Analysis,
    Finding,
    Period,
    PipelineStatus,
    Severity,
    incident_id,
    is_acute,
    most_urgent_first,
)
from computewatch.store import DuckDBStore
from computewatch.triage import JSON_COLUMNS, group_ids, root_causes, triage_frame

DAY = Period(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC))
H = timedelta(hours=1)


def f(subject: str, severity: Severity, *, rule: str = "rule", pipeline: str = "p",
      subject_type: str = "site", start: float = 0, end: float = 24, site: str = "",
      cluster: str = "", hub: str = "h", gap: float = 0.5, **detail) -> Finding:
    return Finding(pipeline, rule, subject_type, subject, severity, 1.0 - gap, 1.0, "ratio",
                   DAY.start + start * H, DAY.start + end * H, hub=hub, cluster=cluster,
                   site=site, detail=detail)


def test_acute_critical_then_acute_warning_then_chronic_and_information():
    found = [
        f("chronic-crit", Severity.CRITICAL, gap=0.9),  # the whole day: standing
        f("info", Severity.INFO, start=3, end=5),
        f("acute-warn-small", Severity.WARNING, start=2, end=8, gap=0.1),
        f("stated-chronic", Severity.WARNING, start=2, end=8, chronic=True),
        f("acute-crit", Severity.CRITICAL, start=10, end=12, gap=0.2),
        f("acute-warn-big", Severity.WARNING, start=1, end=20, gap=0.8),  # 19 h < 90%
        f("stated-acute", Severity.WARNING, gap=0.3, chronic=False),  # whole day, but new
    ]
    assert [x.subject for x in most_urgent_first(found, DAY)] == [
        "acute-crit", "acute-warn-big", "stated-acute", "acute-warn-small", "chronic-crit",
        "stated-chronic", "info"]
    analysis = Analysis.of(DAY, found, [PipelineStatus("p", len(found))])
    assert analysis.findings[0].subject == "acute-crit"
    assert analysis.frame().subject.tolist()[:2] == ["acute-crit", "acute-warn-big"]
    # Without a period only what a pipeline states makes a finding chronic.
    assert is_acute(found[0]) and not is_acute(found[3]) and not is_acute(found[0], DAY)


def test_one_cause_seen_by_several_pipelines_is_one_group():
    found = [
        # A cluster going idle from 8 h to 16 h: the cluster, two of its sites, an anomaly.
        f("c1", Severity.WARNING, subject_type="cluster", cluster="c1", start=8, end=16),
        f("s1", Severity.CRITICAL, site="s1", cluster="c1", start=9, end=16),
        f("s2", Severity.WARNING, site="s2", cluster="c1", start=8, end=15),
        f("s2", Severity.WARNING, pipeline="anomaly", site="s2", cluster="c1", start=9,
          end=12),
        # A cooling fault at another site: a PUE excursion and an anomaly on it.
        f("s9", Severity.WARNING, pipeline="pue", site="s9", start=4, end=12),
        f("s9", Severity.WARNING, pipeline="anomaly", site="s9", start=5, end=11),
        # A card that fell off the bus at s1: its own cause, not the cluster's.
        f("s1-gpu3", Severity.CRITICAL, subject_type="accelerator", site="s1", cluster="c1",
          start=10, end=24),
        # A degraded link between s9 and s7, hours after the cooling fault.
        f("s7|s9", Severity.CRITICAL, subject_type="link", site="s7", start=14, end=18),
        # The same site earlier and unrelated in time: another cause.
        f("s2", Severity.WARNING, site="s2", cluster="c1", start=0, end=3),
        # Standing conditions: one digest per rule.
        f("s4", Severity.WARNING, rule="site_below_minimum", site="s4"),
        f("s5", Severity.WARNING, rule="site_below_minimum", site="s5"),
    ]
    assert group_ids(found, DAY) == [
        "cluster:c1", "cluster:c1", "cluster:c1", "cluster:c1", "site:s9", "site:s9",
        "accelerator:s1-gpu3", "link:s7|s9", "site:s2", "chronic:p:site_below_minimum",
        "chronic:p:site_below_minimum"]
    causes = root_causes(found, DAY)
    assert [c.group for c in causes] == [
        "cluster:c1", "accelerator:s1-gpu3", "link:s7|s9", "site:s9", "site:s2",
        "chronic:p:site_below_minimum"]
    first = causes[0]
    assert (first.acute, first.severity, first.findings) == (True, Severity.CRITICAL, 4)
    assert (first.start, first.end) == (DAY.start + 8 * H, DAY.start + 16 * H)
    assert dict(first.rules) == {"p/rule": 3, "anomaly/rule": 1}
    assert causes[-1].acute is False and causes[-1].findings == 2


def test_incident_ids_are_stable_per_episode():
    a = f("s1", Severity.WARNING, start=2, end=5)
    assert incident_id(a) == incident_id(f("s1", Severity.CRITICAL, start=2, end=7))
    assert incident_id(a) != incident_id(f("s1", Severity.WARNING, start=3, end=5))
    assert incident_id(a).startswith("inc-") and len(incident_id(a)) == 14


def test_the_json_columns_keep_todays_fields_in_order_and_add_the_ids():
    assert JSON_COLUMNS[:16] == [
        "pipeline", "rule", "subject_type", "subject", "severity", "observed", "threshold",
        "unit", "start", "end", "completeness", "hub", "cluster", "site", "definition",
        "message"]
    assert JSON_COLUMNS[16:] == ["incident", "group", "acute", "detail"]
    assert [c for c in FINDING_COLUMNS if c != "detail"] == JSON_COLUMNS[:16]
    found = [f("s1", Severity.INFO, p95=float("nan")), f("s2", Severity.CRITICAL, start=1,
                                                         end=2)]
    frame = triage_frame(Analysis.of(DAY, found, [PipelineStatus("p", 2)]))
    assert list(frame.columns) == JSON_COLUMNS
    assert frame.subject.tolist() == ["s2", "s1"] and frame.acute.tolist() == [True, False]
    assert frame.detail.iloc[1] == {"p95": None}  # NaN as null
    assert frame.group.tolist() == ["site:s2", "chronic:p:rule"]


@pytest.fixture
def degraded_store(tmp_path):
    """Eight hours of one link: six clean, one with no probe within budget, one clean."""
    path = tmp_path / "links.duckdb"
    with DuckDBStore(path) as store:
        store.write("link_latency", minutes("a", "b", "regional", [60] * 72 + [0] * 12 +
                                            [60] * 12))
    return f"duckdb:///{path}"


def analyze(store: str, *args: str) -> subprocess.CompletedProcess:
    until = (T0 + timedelta(hours=8)).isoformat()
    return subprocess.run([sys.executable, "-m", "computewatch", "analyze", "--since", "8h",
                           "--until", until, "--store", store, "--only", "latency", *args],
                          capture_output=True, text=True, timeout=120)


def test_analyze_json_has_the_incident_and_its_attributes(degraded_store):
    proc = analyze(degraded_store, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["findings"]
    assert list(row) == JSON_COLUMNS
    assert (row["rule"], row["subject"], row["severity"], row["group"], row["acute"]) == (
        "link_degraded", "a|b", 2, "link:a|b", True)
    assert row["start"].startswith((T0 + 6 * H).isoformat()[:16])
    assert row["detail"]["p95_s"] == pytest.approx(0.0075)
    assert row["incident"].startswith("inc-")


def test_analyze_prints_the_root_causes_before_the_rows(degraded_store):
    proc = analyze(degraded_store)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.index("Root causes") < out.index("Findings") and "link:a|b" in out
