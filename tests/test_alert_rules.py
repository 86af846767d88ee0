"""Alert rules, their promtool tests and the Alertmanager config, checked with the real tools.

promtool checks and unit-tests the rules, amtool checks the config and its routes, and a real
Alertmanager decides inhibition. Around them: every alerting rule has a firing and a quiet
unit test, every metric a rule reads is catalogued, every alert has its annotations and its
runbook, and the thresholds are the policy's (the generated policy rules are not stale).
"""

from __future__ import annotations

import inspect
import json
import queue
import re
import subprocess
import threading
import time
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from servers import installed, start_alertmanager

from computewatch.alerts.policy_rules import main as policy_rules_main
from computewatch.alerts.policy_rules import render_policy_rules
from computewatch.catalog import CATALOG
from computewatch.durations import parse_duration
from computewatch.policy import load_policy
from computewatch.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "alerts" / "rules"
UNIT_TESTS = ROOT / "alerts" / "tests"
AM_CONFIG = ROOT / "alerts" / "alertmanager.yml"
RUNBOOKS = ROOT / "docs" / "runbooks"
POLICY_RULES = RULES / "policy.yml"

SEVERITIES = {"critical", "warning", "info"}
KINDS = {"underuse", "availability", "agent", "policy", "hardware", "latency", "pue", "buffer",
         "bridge"}
SCOPES = {"global", "hub", "cluster", "site", "node", "accelerator", "link"}
RUNBOOK_SECTIONS = ("## What it means", "## Likely causes", "## What to check",
                    "## How to silence")
PROMETHEUS_OWN = {"up"}
"""Series Prometheus makes itself rather than our exporters."""


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yml"))


def _rules() -> list[tuple[Path, dict]]:
    out = []
    for path in _rule_files():
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out.extend((path, rule) for rule in group["rules"])
    return out


def _alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for _, rule in _rules() if "alert" in rule}


def _recorded() -> set[str]:
    return {rule["record"] for _, rule in _rules() if "record" in rule}


# --- the tools ----------------------------------------------------------------------------------


def test_promtool_check_rules_is_clean():
    result = _run(installed("promtool"), "check", "rules", "--lint=all", "--lint-fatal",
                  *map(str, _rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.slow  # promtool runs every rule unit test (~8 s)
def test_promtool_unit_tests_pass():
    files = sorted(UNIT_TESTS.glob("*.yml"))
    assert files
    result = _run(installed("promtool"), "test", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_can_fail(tmp_path):
    """A wrong expectation is caught: the suite above is not vacuous."""
    text = (UNIT_TESTS / "pue_test.yml").read_text(encoding="utf-8")
    broken = text.replace("over its target of 1.25", "over its target of 1.35")
    assert broken != text
    (tmp_path / "pue_test.yml").write_text(broken.replace("../rules/", f"{RULES}/"),
                                           encoding="utf-8")
    result = _run(installed("promtool"), "test", "rules", str(tmp_path / "pue_test.yml"))
    assert result.returncode != 0
    assert "SitePueOverTarget" in result.stdout + result.stderr


def test_amtool_check_config_is_clean():
    result = _run(installed("amtool"), "check-config", str(AM_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --- every alert tested, catalogued, annotated, with a runbook --------------------------------


def _unit_test_cases() -> dict[str, dict[str, int]]:
    """alertname -> {"firing": n, "quiet": n} over every alert_rule_test in alerts/tests."""
    cases: dict[str, dict[str, int]] = {}
    for path in sorted(UNIT_TESTS.glob("*.yml")):
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                counts = cases.setdefault(case["alertname"], {"firing": 0, "quiet": 0})
                counts["firing" if case.get("exp_alerts") else "quiet"] += 1
    return cases


def test_every_alerting_rule_has_a_firing_and_a_quiet_unit_test():
    cases = _unit_test_cases()
    alerts = _alerts()
    assert len(alerts) >= 25
    for name in alerts:
        assert cases.get(name, {}).get("firing"), f"{name}: no promtool case where it fires"
        assert cases.get(name, {}).get("quiet"), f"{name}: no promtool case where it stays quiet"
    unknown = set(cases) - set(alerts)
    assert not unknown, f"unit tests for alerts no rule defines: {sorted(unknown)}"


_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (functions, labels, keywords left out)."""
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    return {m for m in _IDENTIFIER.findall(text) if m.lower() not in _KEYWORDS}


def test_metric_names_reads_selectors_and_nothing_else():
    expr = ('sum by (hub) (rate(foo_total{a="b", c=~"x|y"}[5m] offset 1h)) '
            '> bool on(site) group_left(tier) bar:baz:avg and 1e3 < label_replace(qux, "d", '
            '"$1", "e", "(.*)") or max without (reason) (quux) * 0.5')
    assert metric_names(expr) == {"foo_total", "bar:baz:avg", "qux", "quux"}


def test_every_metric_a_rule_reads_is_catalogued_or_recorded():
    known = {m.prometheus for m in CATALOG} | _recorded() | PROMETHEUS_OWN
    for path, rule in _rules():
        name = rule.get("alert") or rule["record"]
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, (f"{path.name}: {name} reads {sorted(unknown)}, which neither "
                             "computewatch/catalog.py nor a recording rule declares")


def test_every_alert_is_labelled_for_routing_and_annotated():
    for name, rule in _alerts().items():
        labels, notes = rule.get("labels", {}), rule.get("annotations", {})
        assert labels.get("severity") in SEVERITIES, f"{name}: severity {labels.get('severity')!r}"
        assert labels.get("kind") in KINDS, f"{name}: kind {labels.get('kind')!r}"
        assert labels.get("scope") in SCOPES, f"{name}: scope {labels.get('scope')!r}"
        for key in ("summary", "description", "runbook_url"):
            assert str(notes.get(key, "")).strip(), f"{name}: no {key} annotation"
        assert notes["runbook_url"] == f"docs/runbooks/{name}.md", f"{name}: runbook_url"


def test_every_alert_has_a_runbook_and_every_runbook_an_alert():
    alerts = _alerts()
    for name in alerts:
        path = ROOT / alerts[name]["annotations"]["runbook_url"]
        assert path.is_file(), f"{name}: runbook {path.relative_to(ROOT)} missing"
        text = path.read_text(encoding="utf-8")
        assert text.startswith(f"# {name}\n"), f"{path.name}: must open with '# {name}'"
        for heading in RUNBOOK_SECTIONS:
            assert heading in text, f"{path.name}: no '{heading}' section"
        assert f"alertname={name}" in text, f"{path.name}: the silence example names no alert"
    orphans = {p.stem for p in RUNBOOKS.glob("*.md")} - set(alerts) - {"README"}
    assert not orphans, f"runbooks for alerts no rule defines: {sorted(orphans)}"


RUNBOOK_SECTIONS_ZH = ("## 含义", "## 可能原因", "## 检查方法", "## 如何静默")
HAN = re.compile(r"[\u4e00-\u9fff]")


def test_every_alert_has_chinese_annotations_and_a_chinese_runbook():
    """The zh-CN set the bridge's Chinese targets show, and its runbook beside the English."""
    for name, rule in _alerts().items():
        notes = rule["annotations"]
        for key in ("title_zh", "summary_zh", "description_zh"):
            assert HAN.search(str(notes.get(key, ""))), f"{name}: no Chinese {key}"
        assert notes.get("runbook_url_zh") == f"docs/runbooks/zh-CN/{name}.md", name
        path = ROOT / notes["runbook_url_zh"]
        assert path.is_file(), f"{name}: {path.relative_to(ROOT)} missing"
        text = path.read_text(encoding="utf-8")
        assert text.startswith(f"# {name}：{notes['title_zh']}\n"), path.name
        for heading in RUNBOOK_SECTIONS_ZH:
            assert heading in text, f"{path.name}: no '{heading}' section"
        assert f"alertname={name}" in text and f"](../{name}.md)" in text, path.name
    orphans = {p.stem for p in (RUNBOOKS / "zh-CN").glob("*.md")} - set(_alerts()) - {"README"}
    assert not orphans, f"Chinese runbooks for alerts no rule defines: {sorted(orphans)}"


# --- thresholds are the policy's -----------------------------------------------------------------


def test_generated_policy_rules_are_not_stale():
    topology = load_topology()
    expected = render_policy_rules(load_policy(topology=topology), topology)
    assert POLICY_RULES.read_text(encoding="utf-8") == expected, (
        "alerts/rules/policy.yml is stale: run `python -m computewatch.alerts.policy_rules "
        "-o alerts/rules/policy.yml`")


def _series(text: str) -> list[tuple[str, float, dict[str, str]]]:
    rules = yaml.safe_load(text)["groups"][0]["rules"]
    out = []
    for r in rules:
        value = re.fullmatch(r"vector\(([^)]+)\)", r["expr"])
        assert value, r["expr"]
        out.append((r["record"], float(value.group(1)), r.get("labels", {})))
    return out


def _threshold(series, record: str, **labels: str) -> float:
    found = [v for name, v, lab in series
             if name == record and all(lab.get(k) == want for k, want in labels.items())]
    assert len(found) == 1, (record, labels, found)
    return found[0]


def test_policy_rules_resolve_overrides_regions_and_defaults(tmp_path):
    """An edited policy (a site override, a regional minimum, a one-way budget) reaches the
    generated series through the policy's own lookups."""
    shipped = load_policy()
    data = shipped.model_dump(mode="json")
    data["utilization"]["minimums"]["site"]["subjects"] = {
        "bj-ai": {"value": 0.42, "source": "test override"}}
    data["utilization"]["minimums"]["cluster"]["regions"]["west"] = {
        "value": 0.55, "source": "test west"}
    data["pue"]["sites"] = {"guian-a": {"value": 1.18, "source": "test site target"}}
    data["latency"]["rtt_semantics"]["value"] = "one_way"
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "policy.yml"
    assert policy_rules_main(["--policy", str(policy_file), "-o", str(out)]) == 0
    series = _series(out.read_text(encoding="utf-8"))
    minimum = "policy:accelerator_utilization_ratio:minimum"
    assert _threshold(series, minimum, level="site", site="bj-ai") == 0.42
    assert _threshold(series, minimum, level="site", site="bj-yizhuang") == 0.30
    assert _threshold(series, minimum, level="cluster", cluster="guian") == 0.55  # west
    assert _threshold(series, minimum, level="cluster", cluster="zhangjiakou") == 0.50  # east
    target = "policy:pue_energy_ratio:target"
    assert _threshold(series, target, site="guian-a") == 1.18
    assert _threshold(series, target, site="guian-b") == 1.20  # west
    assert _threshold(series, target, site="bj-ai") == 1.25  # east
    budget = "policy:link_latency_rtt_seconds:budget"
    assert _threshold(series, budget, tier="metro") == 0.002  # one-way 1 ms as an RTT
    assert "test override" in out.read_text(encoding="utf-8")  # the source travels along


def test_shipped_policy_rules_carry_the_shipped_values():
    topology = load_topology()
    policy = load_policy(topology=topology)
    series = _series(POLICY_RULES.read_text(encoding="utf-8"))
    assert (_threshold(series, "policy:accelerator_utilization_ratio:busy_level")
            == policy.utilization.busy_level.value)
    assert (_threshold(series, "policy:pue_completeness_ratio:minimum")
            == policy.pue.min_completeness.value)
    for site in topology.sites:
        region = topology.region_of(site.id)
        assert (_threshold(series, "policy:pue_energy_ratio:target", site=site.id)
                == policy.pue_target(region, site.id))
        assert (_threshold(series, "policy:accelerator_utilization_ratio:minimum",
                           level="site", site=site.id)
                == policy.utilization_minimum("site", region, site.id))


def test_policy_rules_name_a_bad_policy_file(tmp_path, capsys):
    bad = tmp_path / "policy.yaml"
    bad.write_text("utilization: {busy_level: {value: 2, source: x}}\n", encoding="utf-8")
    assert policy_rules_main(["--policy", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "policy.yaml" in err and "busy_level" in err


def _numbers(expr: str) -> list[str]:
    text = _RANGES.sub(" ", _STRINGS.sub(" ", _MATCHERS.sub(" ", expr)))
    return re.findall(r"(?<![\w:.])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w:])", text)


@pytest.mark.parametrize("name", ["SiteUnderused", "ClusterUnderused", "HubUnderused",
                                  "SitePueOverTarget", "SitePueIncomplete", "LinkOverBudget",
                                  "LinkRouteInflated"])
def test_policy_governed_alerts_hold_no_threshold_of_their_own(name):
    """Their thresholds are the generated policy series, so they cannot drift from policy.yaml."""
    expr = _alerts()[name]["expr"]
    assert "policy:" in expr
    assert _numbers(expr) == [], f"{name} compares with a literal: {_numbers(expr)}"


def test_underuse_alerts_wait_the_policys_sustained_hours():
    hours = load_policy().utilization.sustained_hours.value
    underuse = {n: r for n, r in _alerts().items() if r["labels"]["kind"] == "underuse"}
    assert len(underuse) == 3
    for name, rule in underuse.items():
        assert parse_duration(rule["for"]) == hours * 3600, (
            f"{name}: for {rule['for']} but utilization.sustained_hours is {hours}")
        assert f"for at least {hours:g} h" in rule["annotations"]["description"], name


def test_loss_alert_uses_the_latency_pipelines_loss_limit():
    from computewatch.pipelines.latency import run

    limit = inspect.signature(run).parameters["loss_limit"].default
    found = re.search(r"link_latency_loss_ratio\s*>\s*([0-9.]+)",
                      _alerts()["LinkPacketLoss"]["expr"])
    assert found and float(found.group(1)) == limit
    assert f"over the {limit:.0%} limit" in _alerts()["LinkPacketLoss"]["annotations"][
        "description"]



def _promql_series(name: str, labels: dict[str, str]) -> str:
    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return name + "{" + ",".join(f"{k}={quote(v)}" for k, v in sorted(labels.items())) + "}"


def test_rules_evaluate_what_a_real_agent_exposes(tmp_path):
    """The rules read the label shapes the agent really exposes: one simulated node (fake
    drivers, the real collectors and exposition) is replayed through the recording rules and
    the counts are checked against the snapshot itself."""
    import sys

    from prometheus_client.parser import text_string_to_metric_families

    snapshot = subprocess.run([sys.executable, "-m", "computewatch", "collect", "--once",
                               "--simulate", "--format", "prometheus"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert snapshot.returncode == 0, snapshot.stderr
    samples = [s for fam in text_string_to_metric_families(snapshot.stdout) for s in fam.samples]
    health = [s for s in samples if s.name == "accelerator_health"]
    util = [s for s in samples if s.name == "accelerator_utilization_ratio"]
    assert health and util and {s.labels["ecosystem"] for s in health} == {"cuda", "cann"}
    busy = load_policy().utilization.busy_level.value

    def place(labels: dict[str, str], *extra: str) -> dict[str, str]:
        keys = ("hub", "cluster", "site", *extra)
        return {k: labels[k] for k in keys if labels.get(k)}

    def grouped(items, key, value) -> dict[tuple, float]:
        out: dict[tuple, float] = {}
        for s in items:
            k = tuple(sorted(key(s.labels).items()))
            out[k] = out.get(k, 0.0) + value(s)
        return out

    checks = [
        ("node:accelerators:count", grouped(health, lambda lab: place(lab, "node"),
                                            lambda s: 1)),
        ("site_ecosystem:accelerators_online:count",
         grouped(health, lambda lab: place(lab, "ecosystem"), lambda s: s.value)),
        ("site_ecosystem:accelerators_idle:count",
         grouped(util, lambda lab: place(lab, "ecosystem"), lambda s: float(s.value <= busy))),
    ]
    sums = grouped(util, place, lambda s: s.value)
    counts = grouped(util, place, lambda s: 1)
    test = {
        "rule_files": [str(RULES / f) for f in ("policy.yml", "recording.yml",
                                                 "hardware.yml", "availability.yml")],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": _promql_series(s.name, s.labels),
                              "values": f"{s.value!r}x30"} for s in samples],
            "promql_expr_test": [
                *({"expr": record, "eval_time": "5m",
                   "exp_samples": [{"labels": _promql_series(record, dict(k)), "value": v}
                                   for k, v in expected.items()]}
                  for record, expected in checks),
                {"expr": "round(1e6 * site:accelerator_utilization_ratio:avg)", "eval_time": "5m",
                 "exp_samples": [{"labels": _promql_series("", dict(k)),
                                  "value": round(1e6 * sums[k] / counts[k])} for k in sums]},
            ],
            "alert_rule_test": [{"eval_time": "20m", "alertname": name, "exp_alerts": []}
                                for name in ("AcceleratorsMissing", "CollectorFailing",
                                             "PolicyThresholdMissing", "PolicyRulesMissing")],
        }],
    }
    path = tmp_path / "agent_test.yml"
    path.write_text(yaml.safe_dump(test, allow_unicode=True), encoding="utf-8")
    result = _run(installed("promtool"), "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr

# --- Alertmanager: routes, receivers, inhibition, delivery -----------------------------------


ROUTES = [
    ("severity=critical kind=availability hub=jjj site=bj-ai", "noc-dingtalk,noc-wecom"),
    ("severity=critical kind=hardware hub=gansu site=qingyang-a", "noc-dingtalk,noc-feishu"),
    ("severity=warning kind=underuse hub=yrd site=yrd-qingpu", "noc-wecom"),
    ("severity=warning kind=underuse hub=yrd site=sh-lingang", "noc-feishu"),
    ("severity=warning kind=pue hub=guizhou site=guian-a", "noc-feishu"),
    ("severity=warning kind=underuse scope=hub hub=gba", "noc-wecom"),
    ("severity=info kind=hardware hub=jjj site=bj-ai", "webhook"),
    ("severity=warning kind=buffer hub=jjj site=bj-ai", "noc-slack"),
    ("severity=critical kind=bridge scope=global", "noc-dingtalk,noc-slack"),
    ("severity=warning kind=policy scope=global", "noc-slack"),
    ("severity=warning source=computewatch-analyze hub=gba site=gz-tianhe", "noc-wecom"),
    ("severity=warning", "webhook"),
]


@pytest.mark.parametrize(("labels", "receivers"), ROUTES)
def test_amtool_routes_go_where_intended(labels, receivers):
    result = _run(installed("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}",
                  f"--verify.receivers={receivers}", *labels.split())
    assert result.returncode == 0, f"{labels}: {result.stdout.strip()} {result.stderr.strip()}"
    assert result.stdout.strip() == receivers


def test_amtool_route_test_can_fail():
    result = _run(installed("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}",
                  "--verify.receivers=noc-slack", "severity=info", "hub=jjj")
    assert result.returncode != 0


def test_every_receiver_posts_to_the_bridge_under_its_own_name():
    """The bridge's URL contract (alerts/README.md): /alertmanager/<receiver-name>, bearer."""
    config = yaml.safe_load(AM_CONFIG.read_text(encoding="utf-8"))
    names = {r["name"] for r in config["receivers"]}
    assert names == {"noc-dingtalk", "noc-wecom", "noc-feishu", "noc-slack", "webhook"}
    for receiver in config["receivers"]:
        (hook,) = receiver["webhook_configs"]
        assert hook["url"].endswith(f"/alertmanager/{receiver['name']}"), hook["url"]
        assert hook["send_resolved"] is True
        auth = hook["http_config"]["authorization"]
        assert auth["type"] == "Bearer" and auth["credentials_file"]


class _FakeBridge:
    """The bridge's wire boundary: records each webhook POST (path, Authorization, body)."""

    def __init__(self) -> None:
        self.received: queue.Queue = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.put((self.path, self.headers.get("Authorization"), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _FakeBridge:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _alert(**labels: str) -> dict:
    return {"labels": labels, "annotations": {"summary": labels["alertname"]},
            "startsAt": datetime.now(UTC).isoformat()}


PLACE_JJJ = {"hub": "jjj", "site": "bj-ai"}
# name -> (alert, names of the alerts that must inhibit it)
INHIBITION_CASES: dict[str, tuple[dict, set[str]]] = {
    "site_down": (_alert(alertname="SiteDown", severity="critical", kind="availability",
                         scope="site", **PLACE_JJJ), set()),
    "underuse_at_down_site": (_alert(alertname="SiteUnderused", severity="warning",
                                     kind="underuse", scope="site", **PLACE_JJJ),
                              {"site_down"}),
    "link_from_down_site": (_alert(alertname="LinkOverBudget", severity="warning",
                                   kind="latency", scope="link", src_site="bj-ai",
                                   dst_site="tj-binhai", src_hub="jjj", dst_hub="jjj",
                                   tier="regional", probe="udp", **PLACE_JJJ), {"site_down"}),
    "finding_at_down_site": (_alert(alertname="UnderuseSiteBelowMinimum",
                                    source="computewatch-analyze", severity="warning",
                                    pipeline="underuse", rule="site_below_minimum",
                                    subject_type="site", subject="bj-ai", **PLACE_JJJ),
                             {"site_down"}),
    "underuse_at_live_site": (_alert(alertname="SiteUnderused", severity="warning",
                                     kind="underuse", scope="site", hub="jjj",
                                     site="bj-yizhuang"), set()),
    "hub_underused": (_alert(alertname="HubUnderused", severity="warning", kind="underuse",
                             scope="hub", hub="yrd"), set()),
    "site_underused_in_hub": (_alert(alertname="SiteUnderused", severity="warning",
                                     kind="underuse", scope="site", hub="yrd",
                                     site="yrd-qingpu"), {"hub_underused"}),
    "cluster_underused_in_hub": (_alert(alertname="ClusterUnderused", severity="warning",
                                        kind="underuse", scope="cluster", hub="yrd",
                                        cluster="wuhu"), {"hub_underused"}),
    "link_in_underused_hub": (_alert(alertname="LinkOverBudget", severity="warning",
                                     kind="latency", scope="link", src_site="yrd-qingpu",
                                     dst_site="sh-pudong", src_hub="yrd", dst_hub="yrd",
                                     tier="regional", probe="udp", hub="yrd",
                                     site="yrd-qingpu"), set()),
    "hub_links": (_alert(alertname="HubLinksOverBudget", severity="critical", kind="latency",
                         scope="hub", hub="gba"), set()),
    "link_in_hub": (_alert(alertname="LinkOverBudget", severity="warning", kind="latency",
                           scope="link", src_site="gz-tianhe", dst_site="sz-nanshan",
                           src_hub="gba", dst_hub="gba", tier="regional", probe="udp",
                           hub="gba", site="gz-tianhe"), {"hub_links"}),
    "unreachable_in_hub": (_alert(alertname="LinkUnreachable", severity="critical",
                                  kind="latency", scope="link", src_site="gz-tianhe",
                                  dst_site="shaoguan-a", src_hub="gba", dst_hub="gba",
                                  tier="regional", probe="udp", hub="gba", site="gz-tianhe"),
                           set()),
    "unreachable": (_alert(alertname="LinkUnreachable", severity="critical", kind="latency",
                           scope="link", src_site="cd-gaoxin", dst_site="guian-a",
                           src_hub="chengyu", dst_hub="guizhou", tier="national",
                           probe="udp", hub="chengyu", site="cd-gaoxin"), set()),
    "loss_same_link": (_alert(alertname="LinkPacketLoss", severity="warning", kind="latency",
                              scope="link", src_site="cd-gaoxin", dst_site="guian-a",
                              src_hub="chengyu", dst_hub="guizhou", tier="national",
                              probe="udp", hub="chengyu", site="cd-gaoxin"), {"unreachable"}),
    "loss_other_link": (_alert(alertname="LinkPacketLoss", severity="warning", kind="latency",
                               scope="link", src_site="cd-gaoxin", dst_site="cq-a",
                               src_hub="chengyu", dst_hub="chengyu", tier="regional",
                               probe="udp", hub="chengyu", site="cd-gaoxin"), set()),
    "xid": (_alert(alertname="AcceleratorXidCritical", severity="critical", kind="hardware",
                   scope="accelerator", hub="gansu", site="qingyang-a", node="qy-n1",
                   device="nvidia0", xid="79"), set()),
    "hot_same_card": (_alert(alertname="AcceleratorOverheating", severity="warning",
                             kind="hardware", scope="accelerator", hub="gansu",
                             site="qingyang-a", node="qy-n1", device="nvidia0"), {"xid"}),
    "hot_other_card": (_alert(alertname="AcceleratorOverheating", severity="warning",
                              kind="hardware", scope="accelerator", hub="gansu",
                              site="qingyang-a", node="qy-n1", device="nvidia1"), set()),
    "buffer_drops": (_alert(alertname="BufferDroppingSamples", severity="critical",
                            kind="buffer", scope="node", hub="gansu", site="qingyang-a",
                            node="qy-n2", exporter="store", reason="full"), set()),
    "exporter_drops_same": (_alert(alertname="AgentSamplesDropped", severity="warning",
                                   kind="buffer", scope="node", hub="gansu",
                                   site="qingyang-a", node="qy-n2", exporter="store",
                                   reason="full"), {"buffer_drops"}),
    "exporter_drops_other": (_alert(alertname="AgentSamplesDropped", severity="warning",
                                    kind="buffer", scope="node", hub="gansu",
                                    site="qingyang-a", node="qy-n2", exporter="otlp",
                                    reason="timeout"), set()),
}


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.fixture
def alertmanager(tmp_path):
    """The shipped config on a real Alertmanager, its bridge URL and token file redirected to
    a fake bridge on loopback and a temporary token."""
    token = tmp_path / "bridge-token"
    token.write_text("s3cret-token\n", encoding="utf-8")
    with _FakeBridge() as bridge:
        text = AM_CONFIG.read_text(encoding="utf-8")
        config = yaml.safe_load(text)
        urls = {h["url"] for r in config["receivers"] for h in r["webhook_configs"]}
        bases = {u.rsplit("/alertmanager/", 1)[0] for u in urls}
        files = {h["http_config"]["authorization"]["credentials_file"]
                 for r in config["receivers"] for h in r["webhook_configs"]}
        assert len(bases) == 1 and len(files) == 1, (bases, files)
        text = text.replace(bases.pop(), bridge.url).replace(files.pop(), str(token))
        (tmp_path / "alertmanager.yml").write_text(text, encoding="utf-8")
        server = start_alertmanager(tmp_path, tmp_path / "alertmanager.yml")
        try:
            yield server, bridge
        finally:
            server.stop()


def test_alertmanager_inhibits_consequences_and_delivers_to_the_bridge(alertmanager):
    server, bridge = alertmanager
    body = json.dumps([alert for alert, _ in INHIBITION_CASES.values()]).encode()
    request = urllib.request.Request(f"{server.url}/api/v2/alerts", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200

    def key(labels: dict) -> frozenset:
        return frozenset(labels.items())

    names = {key(alert["labels"]): name for name, (alert, _) in INHIBITION_CASES.items()}
    expected = {name: sources for name, (_, sources) in INHIBITION_CASES.items()}
    deadline = time.monotonic() + 15
    while True:
        listed = _get_json(f"{server.url}/api/v2/alerts")
        fingerprints = {a["fingerprint"]: names.get(key(a["labels"])) for a in listed}
        got = {names.get(key(a["labels"])): {fingerprints[f] for f in
                                             a["status"]["inhibitedBy"]}
               for a in listed}
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got == expected
    states = {names[key(a["labels"])]: a["status"]["state"] for a in listed}
    for name, sources in expected.items():
        assert states[name] == ("suppressed" if sources else "active"), name

    # The critical SiteDown reaches the NOC receiver's bridge URL, with the bearer token.
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        try:
            path, auth, payload = bridge.received.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(path)
        names_in = {a["labels"]["alertname"] for a in payload["alerts"]}
        if path == "/alertmanager/noc-dingtalk" and "SiteDown" in names_in:
            assert auth == "Bearer s3cret-token"
            assert payload["version"] == "4"
            assert payload["receiver"] == "noc-dingtalk"
            assert payload["groupLabels"] == {"alertname": "SiteDown", "hub": "jjj",
                                              "site": "bj-ai"}
            break
    else:
        pytest.fail(f"no SiteDown notification at /alertmanager/noc-dingtalk; got {seen}")


def test_alerts_readme_documents_every_alert_and_recording_rule():
    text = (ROOT / "alerts" / "README.md").read_text(encoding="utf-8")
    missing = [n for n in [*_alerts(), *sorted(_recorded())] if f"`{n}`" not in text]
    assert not missing, f"alerts/README.md does not document {missing}"
