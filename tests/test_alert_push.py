"""Findings pushed as alerts to a real Alertmanager: stable labels, refreshed endsAt, and
findings that disappeared resolved; `computewatch analyze --alert` and `--every` end to end.

Each test pushes under its own ``source`` label, so tests sharing the Alertmanager never see
each other's alerts.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml
from servers import free_port, start_alertmanager

from computewatch.alerts.push import (
    PushError,
    alert_name,
    finding_alert,
    finding_labels,
    push_analysis,
    push_findings,
)
from computewatch.findings import (
    Analysis,
    Finding,
    Period,
    PipelineStatus,
    Severity,
    incident_id,
)
from computewatch.pipelines import run_pipelines
from computewatch.policy import load_policy
from computewatch.status import ExitStatus

NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    d = tmp_path_factory.mktemp("am")
    config = d / "alertmanager.yml"
    config.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
                      encoding="utf-8")
    with start_alertmanager(d, config) as am:
        yield am


def active(am, source: str) -> dict[str, dict]:
    """Our active alerts in Alertmanager, by subject."""
    resp = requests.get(f"{am.url}/api/v2/alerts", params={"filter": f'source="{source}"'},
                        timeout=5)
    resp.raise_for_status()
    return {a["labels"]["subject"]: a for a in resp.json()}


def finding(subject: str, *, pipeline: str = "underuse", rule: str = "site_below_minimum",
            severity: Severity = Severity.WARNING, end: datetime = NOW, observed: float = 0.31,
            site: str = "bj-ai") -> Finding:
    return Finding(pipeline, rule, "site", subject, severity, observed, 0.5, "ratio",
                   end - timedelta(hours=6), end, 0.98, hub="jjj", site=site,
                   definition="time-weighted mean utilization", message=f"{subject} is idle")


def push(am, findings, source, **kw):
    kw.setdefault("pipelines", ["underuse", "latency"])
    return push_findings(am.url, findings, source=source, period_end=NOW, **kw)


def test_alert_name_and_labels_are_stable_and_timeless():
    assert alert_name("underuse", "site_below_minimum") == "UnderuseSiteBelowMinimum"
    assert alert_name("latency", "p95_over_budget") == "LatencyP95OverBudget"
    early = finding("bj-ai", end=NOW - timedelta(days=2), observed=0.1)
    late = finding("bj-ai", end=NOW, observed=0.4)
    assert finding_labels(early) == finding_labels(late) == {
        "alertname": "UnderuseSiteBelowMinimum", "source": "computewatch-analyze",
        "pipeline": "underuse", "rule": "site_below_minimum", "subject_type": "site",
        "subject": "bj-ai", "severity": "warning", "kind": "underuse", "scope": "site",
        "hub": "jjj", "site": "bj-ai"}


def test_pushed_findings_appear_with_labels_annotations_and_endsat(alertmanager):
    result = push(alertmanager, [finding("bj-ai"), finding("sh-lingang", site="sh-lingang")],
                  "t-appear", now=NOW, hold=HOUR)
    assert (result.firing, result.resolved) == (2, 0)
    got = active(alertmanager, "t-appear")
    assert set(got) == {"bj-ai", "sh-lingang"}
    a = got["bj-ai"]
    assert a["labels"]["alertname"] == "UnderuseSiteBelowMinimum"
    assert a["status"]["state"] == "active"
    assert a["annotations"]["summary"] == "bj-ai is idle"
    assert (a["annotations"]["observed"], a["annotations"]["threshold"]) == ("0.31", "0.5")
    assert a["annotations"]["completeness"] == "0.98"
    ends = datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00"))
    assert abs(ends - (NOW + HOUR)) < timedelta(seconds=1)


def test_the_same_finding_keeps_its_fingerprint_and_its_endsat_moves(alertmanager):
    push(alertmanager, [finding("bj-ai", observed=0.31)], "t-refresh", now=NOW, hold=HOUR)
    first = active(alertmanager, "t-refresh")["bj-ai"]
    later = NOW + timedelta(minutes=15)
    push(alertmanager, [finding("bj-ai", observed=0.28)], "t-refresh", now=later, hold=HOUR)
    second = active(alertmanager, "t-refresh")["bj-ai"]
    assert second["fingerprint"] == first["fingerprint"]
    assert second["startsAt"] == first["startsAt"]
    assert second["annotations"]["observed"] == "0.28"
    ends = datetime.fromisoformat(second["endsAt"].replace("Z", "+00:00"))
    assert abs(ends - (later + HOUR)) < timedelta(seconds=1)


def test_a_finding_that_disappeared_is_resolved(alertmanager):
    three = [finding("a"), finding("b"), finding("c")]
    push(alertmanager, three, "t-resolve", hold=HOUR)
    assert set(active(alertmanager, "t-resolve")) == {"a", "b", "c"}
    result = push(alertmanager, three[:2], "t-resolve", hold=HOUR)
    assert (result.firing, result.resolved) == (2, 1)
    assert set(active(alertmanager, "t-resolve")) == {"a", "b"}
    result = push(alertmanager, three[:2], "t-resolve", hold=HOUR)  # nothing more to resolve
    assert result.resolved == 0


def test_only_pipelines_that_ran_resolve_their_alerts(alertmanager):
    under = finding("u")
    lat = finding("l", pipeline="latency", rule="p95_over_budget")
    push(alertmanager, [under, lat], "t-scope", hold=HOUR)
    # A run of the latency pipeline alone (or one where underuse failed) finds nothing:
    result = push(alertmanager, [], "t-scope", hold=HOUR, pipelines=["latency"])
    assert result.resolved == 1
    assert set(active(alertmanager, "t-scope")) == {"u"}


def test_an_analysis_resolves_only_the_alerts_of_pipelines_that_succeeded(alertmanager):
    under = finding("u")
    lat = finding("l", pipeline="latency", rule="p95_over_budget")
    period = Period(NOW - 6 * HOUR, NOW)
    first = Analysis.of(period, [under, lat], [PipelineStatus("underuse", 1),
                                               PipelineStatus("latency", 1)])
    result = push_analysis(alertmanager.url, first, source="t-analysis", now=NOW, hold=HOUR)
    assert (result.firing, result.resolved) == (2, 0)
    # The next run: latency failed and underuse no longer finds anything. Only underuse's
    # alert is resolved; the failed pipeline's stays as it was.
    failed = Analysis.of(period, [], [PipelineStatus("underuse", 0),
                                      PipelineStatus("latency", error="RuntimeError: x")])
    result = push_analysis(alertmanager.url, failed, source="t-analysis", now=NOW, hold=HOUR)
    assert (result.firing, result.resolved) == (0, 1)
    assert set(active(alertmanager, "t-analysis")) == {"l"}


def test_history_and_low_severity_are_not_paged_and_episodes_merge(alertmanager):
    findings = [
        finding("old", end=NOW - timedelta(days=3)),  # an episode long over
        finding("info", severity=Severity.INFO),
        finding("link", pipeline="latency", rule="loss_over_limit", end=NOW - 3 * HOUR,
                observed=0.02),
        finding("link", pipeline="latency", rule="loss_over_limit", end=NOW, observed=0.07),
    ]
    result = push(alertmanager, findings, "t-filter", hold=HOUR)
    assert (result.firing, result.skipped) == (1, 3)
    got = active(alertmanager, "t-filter")
    assert set(got) == {"link"} and got["link"]["annotations"]["observed"] == "0.07"
    result = push(alertmanager, findings, "t-filter", hold=HOUR, min_severity=Severity.INFO,
                  recent=timedelta(days=4))
    assert result.firing == 3 and set(active(alertmanager, "t-filter")) == {"old", "info",
                                                                            "link"}


def test_an_unreachable_or_wrong_alertmanager_is_a_clear_error(alertmanager):
    with pytest.raises(PushError, match=r"http://127.0.0.1:\d+: cannot reach Alertmanager "
                                        r"\(ConnectionError\)"):
        push_findings(f"http://127.0.0.1:{free_port()}", [finding("x")], pipelines=["underuse"])
    with pytest.raises(PushError, match=r"/nothing-here/api/v2/alerts: HTTP 404"):
        push_findings(f"{alertmanager.url}/nothing-here", [finding("x")],
                      pipelines=["underuse"])


# --- the command --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    url = f"duckdb:///{d}/demo.duckdb"
    proc = subprocess.run([sys.executable, "-m", "computewatch", "demo", "--sites", "12",
                           "--accelerators", "600", "--hours", "6", "--seed", "5", "--store",
                           url, "--no-analyze", "--format", "json"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return url


def analyze(store: str, *args: str, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "computewatch", "analyze", "--since", "6h", "--store", store,
            "--only", "underuse,anomaly", "--format", "json", *args]
    if kw.get("background"):
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.realtime  # analyze, then a push to a real Alertmanager (~4 s)
def test_analyze_alert_pushes_the_current_findings(alertmanager, store):
    proc = analyze(store, "--alert", alertmanager.url)
    assert proc.returncode == ExitStatus.OK, proc.stderr
    findings = json.loads(proc.stdout)["findings"]
    # Current: warning or worse, and ending within the default hold (1 h) of the period's end
    # (the last finding's end: the analysis ran up to the last sample). An episode that ended
    # earlier is history, not a page (test_history_and_low_severity_are_not_paged...).
    period_end = max(datetime.fromisoformat(f["end"].replace("Z", "+00:00")) for f in findings)
    want = {(f["pipeline"], f["rule"], f["subject"], Severity(f["severity"]).name.lower())
            for f in findings if f["severity"] >= Severity.WARNING
            and datetime.fromisoformat(f["end"].replace("Z", "+00:00")) >= period_end - HOUR}
    assert want, "the demo store should give underuse findings"
    got = requests.get(f"{alertmanager.url}/api/v2/alerts",
                       params={"filter": 'source="computewatch-analyze"'}, timeout=5).json()
    assert {(a["labels"]["pipeline"], a["labels"]["rule"], a["labels"]["subject"],
             a["labels"]["severity"]) for a in got} == want
    assert f"alerts: {len(want)} firing, 0 resolved" in proc.stderr


def test_analyze_alert_to_a_dead_alertmanager_exits_1(store):
    proc = analyze(store, "--alert", f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == ExitStatus.ERROR
    assert "cannot reach Alertmanager" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.realtime  # analyze --every against a real Alertmanager, in real time (~5 s)
def test_analyze_every_runs_on_schedule_and_refreshes_endsat(tmp_path, store):
    # An Alertmanager of its own: a firing alert's endsAt only ever moves later, so alerts
    # an earlier test pushed with a 1 h hold would hide the refresh.
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
                      encoding="utf-8")
    with start_alertmanager(tmp_path, config) as am:
        _every(am, store)


def _every(alertmanager, store) -> None:
    def ends() -> set[str]:
        got = requests.get(f"{alertmanager.url}/api/v2/alerts",
                           params={"filter": 'source="computewatch-analyze"'}, timeout=5)
        return {a["endsAt"] for a in got.json()}

    last = ends()
    proc = analyze(store, "--alert", alertmanager.url, "--every", "3s", background=True)
    try:
        deadline = time.monotonic() + 60
        seen: list[tuple[datetime, set[str]]] = []
        while time.monotonic() < deadline and len(seen) < 2:
            now = ends()
            if now != last:
                seen.append((datetime.now(UTC), now))
                last = now
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(seen) == 2, err
    (_, first), (second_at, second) = seen
    assert max(second) > max(first)  # the second run moved endsAt forward
    assert proc.returncode == 0, err
    assert err.count(" firing, ") >= 2
    # The hold is 3 x --every: an alert lives 9 s unless a later run refreshes it.
    end = datetime.fromisoformat(max(second).replace("Z", "+00:00"))
    assert timedelta(seconds=7) < end - second_at <= timedelta(seconds=9)


# --- a simulated day through the shipped Alertmanager configuration ---------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_each_alert_names_its_root_cause_group_and_incident():
    cooling = finding("wuhu-a", pipeline="pue", rule="pue_excursion", site="wuhu-a")
    alert = finding_alert(cooling, now=NOW, hold=HOUR, group="site:wuhu-a")
    assert alert["labels"]["group"] == "site:wuhu-a"
    assert alert["annotations"]["incident"] == incident_id(cooling)
    assert "group" not in finding_labels(cooling)  # only when given


@pytest.mark.realtime  # a simulated day's pipelines, then a real Alertmanager (~30 s)
def test_a_simulated_day_arrives_in_at_most_30_notifications(tmp_path, simulated_day,
                                                             simulated_store):
    # The shipped alertmanager.yml, its bridge URLs pointed at a closed port and its token
    # file at a temporary one: Alertmanager groups the alerts as it would in production.
    text = (ROOT / "alerts" / "alertmanager.yml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    (token,) = {h["http_config"]["authorization"]["credentials_file"]
                for r in doc["receivers"] for h in r["webhook_configs"]}
    (tmp_path / "token").write_text("t\n", encoding="utf-8")
    text = text.replace("http://alert-bridge:9095", f"http://127.0.0.1:{free_port()}")
    config = tmp_path / "alertmanager.yml"
    config.write_text(text.replace(token, str(tmp_path / "token")), encoding="utf-8")
    history = simulated_day.history
    analysis = run_pipelines(simulated_store, Period(history.start, history.end),
                             load_policy(), simulated_day.fleet.topology, write=False)
    with start_alertmanager(tmp_path, config) as am:
        result = push_analysis(am.url, analysis, hold=HOUR)
        deadline = time.monotonic() + 15
        while True:  # the dispatcher groups new alerts asynchronously: wait for all of them
            groups = requests.get(f"{am.url}/api/v2/alerts/groups", timeout=5).json()
            # Every pushed alert is in some group (a critical one without a hub only in the
            # NOC's; one inhibited by a hub-wide finding too).
            pushed = len({a["fingerprint"] for g in groups for a in g["alerts"]})
            if pushed >= result.firing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    print(f"{result.firing} alerts in {len(groups)} notification groups")
    assert result.firing == pushed > 0
    assert len(groups) <= 30
    assert all(list(g["labels"]) == ["group"] for g in groups)  # one per root cause
    # The card lost at 70% of the day is still lost at its end: current, its own group.
    lost = history.truth.incident("device_lost").subject
    (card,) = [g for g in groups if g["labels"]["group"] == f"accelerator:{lost}"
               and g["receiver"]["name"] != "noc-dingtalk"]
    assert [a["labels"]["rule"] for a in card["alerts"]] == ["accelerator_lost"]


def test_a_pushed_finding_carries_its_chinese_title_and_summary():
    """What a Chinese target of the bridge shows; the expected text is worked by hand from
    the finding: 31% against a 50% minimum over 00:00-06:00 UTC."""
    t = datetime(2026, 12, 5, tzinfo=UTC)
    f = Finding("underuse", "site_below_minimum", "site", "zjk-a", Severity.WARNING, 0.31, 0.5,
                "ratio", t, t + timedelta(hours=6), message="zjk-a is idle")
    notes = finding_alert(f, now=t + timedelta(hours=7), hold=timedelta(hours=1))["annotations"]
    assert notes["summary"] == "zjk-a is idle"
    assert notes["title_zh"] == "站点算力利用率低于下限"
    assert notes["summary_zh"] == ("zjk-a：站点算力利用率低于下限，观测值 31.0%，阈值 50.0%，"
                                   "2026-12-05 00:00 至 2026-12-05 06:00 UTC")


def test_a_pushed_finding_carries_its_rules_definition_in_chinese():
    """The definition a Chinese target shows (``description_zh``): the stored English read
    back and restated, the policy's source in Chinese; ``description`` stays as stored."""
    from computewatch.pue import DEFINITION
    from computewatch.rule_definitions import PUE_OVER_TARGET

    east = load_policy().pue.targets["east"]
    t = datetime(2026, 12, 5, tzinfo=UTC)
    stated = PUE_OVER_TARGET.format(pue=DEFINITION, window="1d", source=east.source)
    f = Finding("pue", "pue_over_target", "site", "zjk-a", Severity.WARNING, 1.31, 1.25,
                "factor", t, t + timedelta(days=1), definition=stated)
    notes = finding_alert(f, now=t + timedelta(days=1), hold=timedelta(hours=1),
                          sources=load_policy().sources_in("zh-CN"))["annotations"]
    assert notes["description"] == stated
    assert notes["description_zh"].startswith("基于电能计量的 PUE = ")
    assert notes["description_zh"].endswith("；每日窗口；目标值来源：" + east.source_zh.strip())
