"""The alert bridge against local sinks that verify what the real chat services verify.

Each sink checks its service's signature with its own few lines (tests/alert_sinks.py), so a
wrong signing algorithm fails here, not in production. Bad input is sent over real HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from alert_sinks import Sink
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port

from computewatch import catalog
from computewatch.alerts.bridge import (
    load_bridge_config,
    open_bridge,
    parse_notification,
    read_dead_letters,
    render,
)
from computewatch.alerts.bridge.payload import PayloadError
from computewatch.alerts.bridge.ratelimit import SlidingWindowLimiter
from computewatch.alerts.bridge.targets import verify_signature
from computewatch.alerts.bridge.templates import cut_utf8, utf8_len
from computewatch.config import ConfigError
from computewatch.status import ExitStatus

TOKEN = "am-bearer-token-7f3a"
SECRET = "SEC0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def notification(n: int = 1, *, status: str = "firing", summary: str = "节点 agent 无法抓取",
                 receiver: str = "noc") -> dict:
    alerts = [{"status": status,
               "labels": {"alertname": "AgentDown", "severity": "critical", "site": "bj-ai",
                          "instance": f"bj-ai-n{i:04d}:9400"},
               "annotations": {"summary": f"{summary} #{i}"},
               "startsAt": "2026-05-09T08:00:00Z",
               "endsAt": "2026-05-09T08:05:00Z" if status == "resolved"
               else "0001-01-01T00:00:00Z",
               "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
               "fingerprint": f"{i:016x}"} for i in range(n)]
    return {"version": "4", "groupKey": '{}:{alertname="AgentDown"}', "truncatedAlerts": 0,
            "status": status, "receiver": receiver, "groupLabels": {"alertname": "AgentDown"},
            "commonLabels": {"alertname": "AgentDown"}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": alerts}


def wait_until(condition, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def sinks():
    made: list[Sink] = []

    def make(kind: str, **kw) -> Sink:
        sink = Sink(kind, **kw)
        made.append(sink)
        return sink

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def bridge_for(tmp_path, monkeypatch):
    """Write a bridge config for the given targets, start it, stop it afterwards."""
    monkeypatch.setenv("BRIDGE_TOKEN", TOKEN)
    monkeypatch.setenv("ROBOT_SECRET", SECRET)
    started = []

    def make(targets: dict[str, str], *, receivers: str | None = None,
             delivery: str = "{timeout: 2s, max_attempts: 3, backoff: 50ms, max_backoff: 200ms}",
             extra: str = "", auth: str = "{bearer_token: {env: BRIDGE_TOKEN}}"):
        lines = [f"auth: {auth}", f"dead_letter: {tmp_path / 'dead.jsonl'}",
                 f"delivery: {delivery}", "targets:"]
        lines += [f"  {name}: {spec}" for name, spec in targets.items()]
        lines += ["receivers:", receivers or f"  noc: [{', '.join(targets)}]", extra]
        path = tmp_path / "bridge.yaml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        bridge = open_bridge(path, "127.0.0.1:0").start()
        started.append(bridge)
        return bridge

    yield make
    for b in started:
        b.stop(grace_s=0)


def signed(kind: str, url: str, extra: str = "") -> str:
    """A target's YAML flow mapping, signed with ROBOT_SECRET."""
    more = f", {extra}" if extra else ""
    return f'{{kind: {kind}, url: "{url}", secret: {{env: ROBOT_SECRET}}{more}}}'


def post(bridge, doc: dict | bytes, *, receiver: str = "noc", headers=AUTH) -> requests.Response:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return requests.post(f"{bridge.url}/alertmanager/{receiver}", data=body,
                         headers={**headers, "Content-Type": "application/json"}, timeout=10)


def value(bridge, name: str, **labels: str) -> float:
    return bridge.metrics.registry.get_sample_value(name, labels) or 0.0


def settled(bridge, name: str, want: float, **labels: str) -> float:
    """The metric once it reaches ``want`` (a sink answers before the bridge counts)."""
    wait_until(lambda: value(bridge, name, **labels) >= want, timeout_s=10)
    return value(bridge, name, **labels)


# --- formats and signatures, one per kind ---------------------------------------------------

@pytest.mark.parametrize(("kind", "spec", "fmt"), [
    ("dingtalk", "secret: {env: ROBOT_SECRET}", "markdown"),
    ("dingtalk", "secret: {env: ROBOT_SECRET}, format: text", "text"),
    ("wecom", "language: en", "markdown"),
    ("wecom", "format: text", "text"),
    ("feishu", "secret: {env: ROBOT_SECRET}", "markdown"),
    ("feishu", "secret: {env: ROBOT_SECRET}, format: text, language: en", "text"),
    ("slack", "language: en", "markdown"),
    ("webhook", "secret: {env: ROBOT_SECRET}", "markdown"),
])
def test_each_kind_delivers_its_documented_format_signed(sinks, bridge_for, kind, spec, fmt):
    sink = sinks(kind, secret=SECRET if "secret" in spec else "")
    bridge = bridge_for({"t": f'{{kind: {kind}, url: "{sink.url}", {spec}}}'})
    sent = notification(2)
    assert post(bridge, sent).status_code == 200
    got = sink.wait_for(1, verified_only=False)
    assert len(got) == 1 and got[0].verified, got[0].problem if got else "nothing arrived"
    doc = got[0].json
    zh = "language: en" not in spec
    text = got[0].text
    assert ("【告警】AgentDown" if zh else "[FIRING:2] AgentDown") in text
    assert "bj-ai-n0001:9400" in text and "节点 agent 无法抓取 #1" in text
    assert ("开始: 2026-05-09 16:00:00 (UTC+08:00)" if zh
            else "2026-05-09 08:00:00 (UTC)") in text
    link = "http://alertmanager:9093/#/alerts?receiver=noc"
    if kind == "dingtalk":
        assert doc["msgtype"] == fmt
        if fmt == "markdown":
            assert doc["markdown"]["title"] == "【告警】AgentDown（2 条）"
            assert f"[在 Alertmanager 中查看全部]({link}" in text
            assert "  \n" in text  # DingTalk needs explicit markdown line breaks
    elif kind == "wecom":
        assert doc["msgtype"] == fmt and set(doc) == {"msgtype", fmt}
    elif kind == "feishu":
        assert doc["msg_type"] == ("interactive" if fmt == "markdown" else "text")
        if fmt == "markdown":
            assert doc["card"]["header"]["template"] == "red"
            assert doc["card"]["elements"][0]["text"]["tag"] == "lark_md"
    elif kind == "slack":
        assert f"<{link}" in text and "*[FIRING:2] AgentDown*" in text
    else:
        assert doc["alertmanager"] == sent and doc["receiver"] == "noc" and doc["target"] == "t"
    assert settled(bridge, "alert_bridge_messages_delivered_total", 1, target="t",
                   kind=kind) == 1


def test_resolved_notification_says_so(sinks, bridge_for):
    sink = sinks("feishu", secret=SECRET)
    bridge = bridge_for({"f": signed("feishu", sink.url)})
    assert post(bridge, notification(1, status="resolved")).status_code == 200
    got = sink.wait_for(1)
    assert got[0].json["card"]["header"]["template"] == "green"
    assert "【已恢复】AgentDown" in got[0].text and "结束: 2026-05-09 16:05:00" in got[0].text


@pytest.mark.parametrize("kind", ["dingtalk", "feishu", "webhook"])
def test_a_wrong_signing_key_is_refused_by_the_sink_and_dead_lettered(sinks, bridge_for,
                                                                      tmp_path, kind):
    sink = sinks(kind, secret="SEC-the-robot-really-has")
    bridge = bridge_for({"t": signed(kind, sink.url)})
    assert post(bridge, notification()).status_code == 200
    assert wait_until(lambda: read_dead_letters(tmp_path / "dead.jsonl"))
    assert sink.wait_for(1, verified_only=False)[0].problem  # the sink saw a bad signature
    [record] = read_dead_letters(tmp_path / "dead.jsonl")
    reason = "http_401" if kind == "webhook" else "rejected"
    assert record["reason"] == reason and record["attempts"] == 1  # no retry can fix it
    assert value(bridge, "alert_bridge_messages_dead_lettered_total", target="t", kind=kind,
                 reason=reason) == 1


def test_webhook_signature_helper_enforces_the_replay_window():
    body = b'{"status":"firing"}'
    ts = int(time.time())
    sig = "v1=" + hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Computewatch-Timestamp": str(ts), "X-Computewatch-Signature": sig}
    assert verify_signature(SECRET, headers, body) is None
    assert "replay window" in verify_signature(SECRET, headers, body, now=ts + 301)
    assert "does not match" in verify_signature(SECRET, headers, body + b" ")
    assert "does not match" in verify_signature("other", headers, body)
    assert "missing" in verify_signature(SECRET, {}, body)


# --- size limits ----------------------------------------------------------------------------

def test_wecom_text_is_cut_to_2048_bytes_with_the_link_kept(sinks, bridge_for):
    sink = sinks("wecom")
    bridge = bridge_for({"w": f'{{kind: wecom, url: "{sink.url}", format: text}}'})
    assert post(bridge, notification(40, summary="算力中心利用率持续低于阈值")).status_code == 200
    text = sink.wait_for(1)[0].text
    assert utf8_len(text) <= 2048
    assert "http://alertmanager:9093/#/alerts?receiver=noc" in text
    shown = text.count("[严重] AgentDown")
    assert 0 < shown < 40
    assert f"还有 {40 - shown} 条告警因长度限制未显示" in text
    assert value(bridge, "alert_bridge_messages_truncated_total", target="w", kind="wecom") == 1


def test_dingtalk_markdown_stays_under_20000_bytes(sinks, bridge_for):
    sink = sinks("dingtalk", secret=SECRET)
    bridge = bridge_for({"d": signed("dingtalk", sink.url)})
    assert post(bridge, notification(300)).status_code == 200
    text = sink.wait_for(1)[0].text
    assert 19_000 < utf8_len(text) <= 20_000
    assert "在 Alertmanager 中查看全部" in text


def test_feishu_body_stays_under_20_kib(sinks, bridge_for):
    sink = sinks("feishu", secret=SECRET)
    bridge = bridge_for({"f": signed("feishu", sink.url)})
    assert post(bridge, notification(300, summary='引号"与\n换行')).status_code == 200
    got = sink.wait_for(1)[0]
    assert len(got.body) <= 20 * 1024 and "查看全部" in got.text


def test_one_long_chinese_alert_is_cut_at_a_character_boundary():
    doc = notification(1, summary="数据中心" * 2000)
    n = parse_notification(json.dumps(doc).encode())
    for limit in range(700, 800):  # every byte offset modulo 3 lands inside some character
        msg = render(n, language="zh", style="text", max_bytes=limit)
        assert utf8_len(msg.text) <= limit
        assert msg.truncated and "…" in msg.text
        assert msg.text.endswith(f"在 Alertmanager 中查看全部: {msg.link}")
        assert "\ufffd" not in msg.text
        assert msg.text.count("数据中心") >= (limit - 500) // 12


def test_cut_utf8_never_splits_a_character():
    text = "a算b"
    assert [cut_utf8(text, n) for n in range(6)] == ["", "a", "a", "a", "a算", "a算b"]


def test_untruncated_message_is_left_whole():
    n = parse_notification(json.dumps(notification(3)).encode())
    msg = render(n, language="en", style="markdown", max_bytes=20_000)
    assert not msg.truncated and msg.shown == msg.total == 3
    assert msg.text.count("**[critical] AgentDown**") == 3


def test_mixed_groups_list_firing_first_and_say_what_alertmanager_left_out():
    doc = notification(2)
    doc["alerts"][0] = {**doc["alerts"][0], "status": "resolved",
                        "endsAt": "2026-05-09T08:05:00Z"}
    doc["truncatedAlerts"] = 5
    n = parse_notification(json.dumps(doc).encode())
    zh = render(n, language="zh", style="markdown").text
    assert zh.index("[严重] AgentDown") < zh.index("[已恢复] [严重] AgentDown")
    assert "Alertmanager 另有 5 条告警未发送" in zh
    en = render(n, language="en", style="slack").text
    assert "Alertmanager left out 5 more alerts" in en


def test_slack_text_is_escaped():
    doc = notification(1, summary="p95 > budget & <rising>")
    text = render(parse_notification(json.dumps(doc).encode()), language="en",
                  style="slack").text
    assert "p95 &gt; budget &amp; &lt;rising&gt; #0" in text


# --- rate limits, retries, timeouts, dead letters --------------------------------------------

def test_sliding_window_never_allows_more_than_n_per_window():
    now = [0.0]
    limiter = SlidingWindowLimiter([(20, 60.0)], clock=lambda: now[0])
    sent = []
    while now[0] < 300:
        if limiter.delay() == 0:
            limiter.acquire()
            sent.append(now[0])
        now[0] += 0.5
    # A token bucket refilled at 20/min would let 39 through in some minute; this never does.
    assert max(sum(1 for t in sent if s <= t < s + 60) for s in sent) == 20
    assert len(sent) == 100


@pytest.mark.realtime  # rate limits in real time
def test_rate_limit_queues_messages_and_loses_none(sinks, bridge_for):
    sink = sinks("dingtalk", secret=SECRET)
    bridge = bridge_for({"d": signed("dingtalk", sink.url, "rate_limit: {messages: 3, per: 1s}")})
    # all seven at once (posted one after another, their spacing depended on the machine)
    with ThreadPoolExecutor(max_workers=7) as pool:
        answers = list(pool.map(lambda _: post(bridge, notification()), range(7)))
    assert [a.status_code for a in answers] == [200] * 7
    got = sink.wait_for(7, timeout_s=20)
    assert len(got) == 7
    times = sorted(r.at for r in got)
    assert all(times[i + 3] - times[i] >= 0.95 for i in range(len(times) - 3)), times
    # 3 a second: the 4th cannot go in the first second nor the 7th in the second; the 5th
    # and 6th wait only if the first three went out further apart than the 4th's send took
    assert value(bridge, "alert_bridge_rate_limit_waits_total", target="d", kind="dingtalk") >= 2
    assert settled(bridge, "alert_bridge_messages_delivered_total", 7, target="d",
                   kind="dingtalk") == 7


def test_a_sink_answering_500_is_retried_until_it_accepts(sinks, bridge_for, tmp_path):
    sink = sinks("wecom").behave(fail_first=2)
    bridge = bridge_for({"w": f'{{kind: wecom, url: "{sink.url}"}}'})
    assert post(bridge, notification()).status_code == 200
    assert len(sink.wait_for(1)) == 1
    assert len(sink.received) == 3
    labels = {"target": "w", "kind": "wecom"}
    assert value(bridge, "alert_bridge_delivery_failures_total", **labels, reason="http_500") == 2
    assert value(bridge, "alert_bridge_delivery_retries_total", **labels, reason="http_500") == 2
    assert settled(bridge, "alert_bridge_messages_delivered_total", 1, **labels) == 1
    assert read_dead_letters(tmp_path / "dead.jsonl") == []


def test_the_services_too_fast_code_is_retried(sinks, bridge_for):
    sink = sinks("dingtalk", secret=SECRET).behave(too_fast_first=1)
    bridge = bridge_for({"d": signed("dingtalk", sink.url)})
    assert post(bridge, notification()).status_code == 200
    assert len(sink.wait_for(1)) == 1 and len(sink.received) == 2
    assert value(bridge, "alert_bridge_delivery_failures_total", target="d", kind="dingtalk",
                 reason="rate_limited") == 1


def test_a_hanging_sink_times_out_is_retried_and_dead_lettered(sinks, bridge_for, tmp_path,
                                                               caplog):
    sink = sinks("dingtalk", secret=SECRET).behave(hang_s=1.5)
    bridge = bridge_for({"d": signed("dingtalk", sink.url)},
                        delivery="{timeout: 300ms, max_attempts: 2, backoff: 50ms}")
    sent = notification()
    with caplog.at_level(logging.INFO):
        assert post(bridge, sent).status_code == 200
        assert wait_until(lambda: read_dead_letters(tmp_path / "dead.jsonl"))
    [record] = read_dead_letters(tmp_path / "dead.jsonl")
    assert (record["reason"], record["attempts"], record["target"], record["receiver"]) == \
        ("timeout", 2, "d", "noc")
    assert record["notification"] == sent and "AgentDown" in record["message"]["title"]
    labels = {"target": "d", "kind": "dingtalk"}
    assert value(bridge, "alert_bridge_delivery_failures_total", **labels, reason="timeout") == 2
    assert value(bridge, "alert_bridge_messages_dead_lettered_total", **labels,
                 reason="timeout") == 1
    # Neither the log nor the dead letter carries the robot's token or signing key.
    written = (tmp_path / "dead.jsonl").read_text(encoding="utf-8")
    for secret in (SECRET, sink.key, TOKEN):
        assert secret not in written and secret not in caplog.text


def test_an_unreachable_target_is_dead_lettered_without_leaking_its_url(bridge_for, tmp_path,
                                                                        caplog):
    token = "tok-SECRETPART-42"
    url = f"http://127.0.0.1:{free_port()}/robot/send?access_token={token}"
    bridge = bridge_for({"d": signed("dingtalk", url)},
                        delivery="{timeout: 1s, max_attempts: 2, backoff: 50ms}")
    with caplog.at_level(logging.INFO):
        assert post(bridge, notification()).status_code == 200
        assert wait_until(lambda: read_dead_letters(tmp_path / "dead.jsonl"))
    [record] = read_dead_letters(tmp_path / "dead.jsonl")
    assert (record["reason"], record["attempts"]) == ("connection_error", 2)
    assert record["error"] == "Connection refused"
    assert "connection_error (Connection refused)" in caplog.text
    written = (tmp_path / "dead.jsonl").read_text(encoding="utf-8")
    for secret in (token, SECRET, TOKEN):
        assert secret not in written and secret not in caplog.text


def test_shutdown_dead_letters_what_it_could_not_deliver(sinks, bridge_for, tmp_path):
    sink = sinks("wecom").behave(hang_s=1.0)
    bridge = bridge_for({"w": f'{{kind: wecom, url: "{sink.url}"}}'},
                        delivery="{timeout: 5s, max_attempts: 2, backoff: 50ms}")
    for _ in range(4):
        assert post(bridge, notification()).status_code == 200
    sink.wait_for(1, verified_only=False)
    bridge.stop(grace_s=0)
    labels = {"target": "w", "kind": "wecom"}
    delivered = value(bridge, "alert_bridge_messages_delivered_total", **labels)
    dead = read_dead_letters(tmp_path / "dead.jsonl")
    assert delivered + len(dead) == 4  # every accepted notification is accounted for
    assert len(dead) >= 3 and {r["reason"] for r in dead} == {"shutdown"}


@pytest.mark.realtime  # retries in real time
def test_a_full_queue_answers_503_so_alertmanager_retries(sinks, bridge_for):
    sink = sinks("wecom").behave(hang_s=1.0)
    bridge = bridge_for({"w": f'{{kind: wecom, url: "{sink.url}"}}'},
                        delivery="{timeout: 5s, queue_size: 1}")
    assert post(bridge, notification()).status_code == 200
    sink.wait_for(1, verified_only=False, timeout_s=5)  # the worker is now busy with it
    assert post(bridge, notification()).status_code == 200  # waits in the queue
    refused = post(bridge, notification())
    assert refused.status_code == 503 and "queue of target 'w' is full" in refused.text
    assert refused.headers["Retry-After"]
    assert len(sink.wait_for(2, timeout_s=10)) == 2
    assert value(bridge, "alert_bridge_requests_rejected_total", receiver="noc",
                 reason="queue_full") == 1


# --- bad input over HTTP --------------------------------------------------------------------

@pytest.fixture
def quiet_bridge(sinks, bridge_for):
    sink = sinks("wecom")
    bridge = bridge_for({"w": f'{{kind: wecom, url: "{sink.url}"}}'},
                        extra="max_body_bytes: 4096")
    yield bridge
    assert sink.received == []  # nothing refused was delivered


def rejected(bridge, reason: str, receiver: str = "noc") -> float:
    return value(bridge, "alert_bridge_requests_rejected_total", receiver=receiver,
                 reason=reason)


def test_malformed_json_is_400_with_where(quiet_bridge):
    resp = post(quiet_bridge, b'{"version": "4", "alerts": [}')
    assert resp.status_code == 400
    assert resp.text.startswith("malformed_json: malformed JSON at line 1 column 29")
    assert rejected(quiet_bridge, "malformed_json") == 1


@pytest.mark.parametrize(("change", "words"), [
    ({"version": "3"}, "version: Input should be '4' (got '3')"),
    ({"alerts": []}, "alerts: List should have at least 1 item"),
    ({"status": "burning"}, "status: Input should be 'firing' or 'resolved' (got 'burning')"),
    ({"alerts": [{"status": "firing"}]}, "alerts[0].labels: Field required"),
])
def test_a_payload_that_is_not_version_4_is_400_naming_the_field(quiet_bridge, change, words):
    resp = post(quiet_bridge, {**notification(), **change})
    assert resp.status_code == 400
    assert "invalid_payload: not an Alertmanager webhook payload (version 4)" in resp.text
    assert words in resp.text
    assert rejected(quiet_bridge, "invalid_payload") == 1


def test_wrong_or_missing_token_is_401(quiet_bridge):
    wrong = post(quiet_bridge, notification(), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "wrong credentials" in wrong.text
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    missing = post(quiet_bridge, notification(), headers={})
    assert missing.status_code == 401 and "no Authorization header" in missing.text
    # Credentials are checked before anything else: an unknown receiver is not revealed.
    assert post(quiet_bridge, notification(), receiver="x", headers={}).status_code == 401
    assert rejected(quiet_bridge, "unauthorized") == 2
    assert rejected(quiet_bridge, "unauthorized", receiver="_unknown") == 1


def test_oversized_payload_is_413(quiet_bridge):
    resp = post(quiet_bridge, notification(60))
    assert resp.status_code == 413
    assert "over the 4096-byte limit (max_body_bytes)" in resp.text
    assert rejected(quiet_bridge, "too_large") == 1
    assert post(quiet_bridge, notification(1), receiver="nowhere").status_code == 404


def test_unknown_receiver_is_404_listing_the_known(quiet_bridge):
    resp = post(quiet_bridge, notification(), receiver="nco")
    assert resp.status_code == 404 and "no receiver 'nco' (known: noc)" in resp.text
    assert rejected(quiet_bridge, "unknown_receiver", receiver="_unknown") == 1


def test_basic_auth_is_accepted_when_configured(sinks, bridge_for, monkeypatch):
    monkeypatch.setenv("AM_PASSWORD", "s3cret")
    sink = sinks("wecom")
    bridge = bridge_for({"w": f'{{kind: wecom, url: "{sink.url}"}}'},
                        auth="{basic: {username: alertmanager, password: {env: AM_PASSWORD}}}")
    good = base64.b64encode(b"alertmanager:s3cret").decode()
    bad = base64.b64encode(b"alertmanager:guess").decode()
    assert post(bridge, notification(), headers={"Authorization": f"Basic {bad}"}) \
        .status_code == 401
    assert post(bridge, notification(), headers=AUTH).status_code == 401  # no bearer here
    assert post(bridge, notification(), headers={"Authorization": f"Basic {good}"}) \
        .status_code == 200
    assert len(sink.wait_for(1)) == 1


def test_metrics_and_healthz_are_served_and_catalogued(quiet_bridge):
    post(quiet_bridge, b"not json")
    health = requests.get(f"{quiet_bridge.url}/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["targets"]["w"]["alive"] is True
    text = requests.get(f"{quiet_bridge.url}/metrics", timeout=5).text
    families = {f.name: f for f in text_string_to_metric_families(text)
                if not f.name.endswith("_created")}  # prometheus-client's creation times
    declared = {m.prometheus.removesuffix("_total") for m in catalog.CATALOG
                if m.measurement == "alert_bridge"}
    assert set(families) == declared
    [sample] = [s for s in families["alert_bridge_requests_rejected"].samples
                if s.name.endswith("_total")]
    assert sample.labels == {"receiver": "noc", "reason": "malformed_json"} and sample.value == 1


# --- configuration --------------------------------------------------------------------------

def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """\
auth: {bearer_token: {env: BRIDGE_TOKEN}}
targets:
  d: {kind: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=x",
      secret: {env: DT_SECRET}}
receivers:
  noc: [d]
"""


@pytest.mark.parametrize(("text", "message"), [
    (GOOD.replace("noc: [d]", "noc: [d, e]"),
     "bridge.yaml:6: receivers.noc[1]: unknown target 'e' (known: d)"),
    (GOOD.replace("auth: {bearer_token: {env: BRIDGE_TOKEN}}", "auth: {}"),
     "bridge.yaml:1: auth: the bridge requires bearer_token or basic (or both)"),
    (GOOD.replace("kind: dingtalk", "kind: telegram"),
     "bridge.yaml:3: targets.d.kind: must be 'dingtalk', 'wecom', 'feishu', 'slack' or "
     "'webhook' (got 'telegram')"),
    (GOOD.replace("dingtalk, url", "webhook, url").replace(",\n      secret: {env: DT_SECRET}",
                                                           ""),
     "bridge.yaml:3: targets.d.secret: a webhook target must have a signing secret"),
    (GOOD + "delivery: {timeout: soon}\n",
     "bridge.yaml:7: delivery.timeout: not a duration: 'soon'"),
])
def test_config_errors_name_file_line_field_and_value(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_bridge_config(write(tmp_path, text))
    assert str(info.value).removeprefix(f"{tmp_path}/").startswith(message)


def test_a_missing_secret_is_named_but_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("BRIDGE_TOKEN", TOKEN)
    monkeypatch.delenv("DT_SECRET", raising=False)
    with pytest.raises(ConfigError) as info:
        open_bridge(write(tmp_path, GOOD))
    assert str(info.value) == ("bridge.yaml: targets.d.secret.env: environment variable "
                               "'DT_SECRET' is not set or empty").replace(
        "bridge.yaml", str(tmp_path / "bridge.yaml"))
    monkeypatch.setenv("DT_SECRET", "SECvalue")
    with pytest.raises(ConfigError, match="cannot read secret file") as info:
        open_bridge(write(tmp_path, GOOD.replace("{env: BRIDGE_TOKEN}",
                                                 f"{{file: {tmp_path / 'nope'}}}")))
    assert TOKEN not in str(info.value)


def test_cli_check_and_bad_config_exit_codes(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "BRIDGE_TOKEN": TOKEN, "DT_SECRET": "SECvalue"}
    ok = subprocess.run([sys.executable, "-m", "computewatch", "alert-bridge", "--config",
                         str(write(tmp_path, GOOD)), "--check"], capture_output=True,
                        text=True, env=env, timeout=60)
    assert ok.returncode == ExitStatus.OK, ok.stderr
    assert "1 targets, 1 receivers: /alertmanager/noc -> d" in ok.stdout
    del env["DT_SECRET"]
    bad = subprocess.run([sys.executable, "-m", "computewatch", "alert-bridge", "--config",
                          str(tmp_path / "bridge.yaml"), "--check"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == ExitStatus.BAD_INPUT
    assert "targets.d.secret.env: environment variable 'DT_SECRET' is not set" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_payload_parser_rejects_non_objects():
    with pytest.raises(PayloadError, match="expected a JSON object, got list"):
        parse_notification(b"[]")
    with pytest.raises(PayloadError, match="not UTF-8"):
        parse_notification(b'{"a": "\xff"}')


# --- the shipped example and its contract with alerts/alertmanager.yml -----------------------

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_is_valid_and_serves_every_alertmanager_receiver():
    import yaml

    config = load_bridge_config(ROOT / "examples" / "alert-bridge.yaml")
    assert {t.kind for t in config.targets.values()} == {"dingtalk", "wecom", "feishu", "slack",
                                                         "webhook"}
    assert config.targets["tickets"].effective_rate_limits == ()
    assert config.targets["noc-dingtalk"].effective_rate_limits[0].messages == 20
    am = yaml.safe_load((ROOT / "alerts" / "alertmanager.yml").read_text(encoding="utf-8"))
    paths = {hook["url"].rsplit("/alertmanager/", 1)[1]
             for r in am["receivers"] for hook in r.get("webhook_configs", [])}
    assert paths and paths <= set(config.receivers), paths - set(config.receivers)
    assert config.listen.endswith(":9095") and all(
        hook["url"].startswith("http://alert-bridge:9095/")
        for r in am["receivers"] for hook in r.get("webhook_configs", []))


# --- the language of messages -----------------------------------------------------------------

def pue_notification() -> dict:
    """SitePueOverTarget at zjk-a as Alertmanager delivers it: the annotations expanded as
    alerts/tests/pue_test.yml expects them (English and zh-CN, written there by hand)."""
    doc = notification(1)
    doc["alerts"][0]["labels"] = {"alertname": "SitePueOverTarget", "severity": "warning",
                                  "kind": "pue", "scope": "site", "hub": "jjj",
                                  "cluster": "zhangjiakou", "site": "zjk-a", "window": "1h"}
    doc["alerts"][0]["annotations"] = {
        "summary": "Site zjk-a PUE 1.30 over target",
        "description": "The energy-based PUE of site zjk-a (hub jjj) has been over its target "
                       "of 1.25 in every 1 h window for 3 h (now 1.30).",
        "runbook_url": "docs/runbooks/SitePueOverTarget.md",
        "runbook_url_zh": "docs/runbooks/zh-CN/SitePueOverTarget.md",
        "title_zh": "站点电能利用效率（PUE）超过目标值",
        "summary_zh": "站点 zjk-a 电能利用效率（PUE）1.30，超过目标值",
        "description_zh": "站点 zjk-a（枢纽 jjj）基于能耗的电能利用效率（PUE）已连续 3 小时在每个 "
                          "1 小时窗口内高于目标值 1.25（当前 1.30）。"}
    doc["groupLabels"] = doc["commonLabels"] = {"alertname": "SitePueOverTarget"}
    return doc


ALLOWED_LATIN = {"Alertmanager", "PUE", "UTC", "docs", "runbooks", "zh", "CN", "md",
                 "SitePueOverTarget"}
"""Latin words a Chinese message may hold: the product names, the alert's name and label
names and values (ids), URLs and paths; anything else is untranslated English."""


def _latin_words(text: str) -> set[str]:
    """Latin words of two letters or more outside URLs (a site's letter, 张家口智算中心A, is
    part of its Chinese name)."""
    text = re.sub(r"https?://[^\s)>|]+", " ", text)
    return set(re.findall(r"[A-Za-z][A-Za-z0-9]+", text))


@pytest.mark.parametrize(("kind", "extra"), [
    ("dingtalk", "secret: {env: ROBOT_SECRET}"), ("wecom", "format: text"),
    ("feishu", "secret: {env: ROBOT_SECRET}"), ("slack", "language: zh-CN"),
    ("webhook", "secret: {env: ROBOT_SECRET}")])
def test_chinese_alert_bodies_use_the_zh_annotations_and_place_names(sinks, bridge_for, kind,
                                                                     extra):
    sink = sinks(kind, secret=SECRET if "secret" in extra else "")
    bridge = bridge_for({"t": f'{{kind: {kind}, url: "{sink.url}", {extra}}}'})
    assert post(bridge, pue_notification()).status_code == 200
    got = sink.wait_for(1, verified_only=False)
    assert len(got) == 1 and got[0].verified, got[0].problem if got else "nothing arrived"
    text = got[0].text
    assert "【告警】站点电能利用效率（PUE）超过目标值" in text
    assert "站点 张家口智算中心A 电能利用效率（PUE）1.30，超过目标值" in text
    assert ("站点 张家口智算中心A（枢纽 京津冀）基于能耗的电能利用效率（PUE）已连续 3 小时在每个 "
            "1 小时窗口内高于目标值 1.25（当前 1.30）。") in text
    assert "cluster=张家口集群" in text and "hub=京津冀" in text and "site=张家口智算中心A" in text
    assert "处置手册: docs/runbooks/zh-CN/SitePueOverTarget.md" in text
    assert "开始: 2026-05-09 16:00:00 (UTC+08:00)" in text
    labels = set(pue_notification()["alerts"][0]["labels"]) | {"pue", "site", "1h"}
    untranslated = _latin_words(text) - ALLOWED_LATIN - labels
    assert not untranslated, f"English left in a Chinese message: {sorted(untranslated)}"
    if kind == "dingtalk":
        assert got[0].json["markdown"]["title"] == "【告警】站点电能利用效率（PUE）超过目标值"


def test_english_alert_bodies_hold_no_chinese(sinks, bridge_for):
    sink = sinks("slack")
    bridge = bridge_for({"t": f'{{kind: slack, url: "{sink.url}", language: en}}'})
    assert post(bridge, pue_notification()).status_code == 200
    text = sink.wait_for(1)[0].text
    assert "*[FIRING] SitePueOverTarget*" in text
    assert "Site zjk-a PUE 1.30 over target" in text and "site=zjk-a" in text
    assert "Runbook: docs/runbooks/SitePueOverTarget.md" in text
    assert not re.search(r"[\u3000-\u9fff\uff00-\uffef]", text), text


def test_the_untranslated_word_check_can_fail():
    assert _latin_words("站点 zjk-a over target http://x/y?z") - ALLOWED_LATIN - {"zjk"} == {
        "over", "target"}
