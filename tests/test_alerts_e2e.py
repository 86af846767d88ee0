"""End to end on loopback: Prometheus scrapes a simulated agent, the agent dies, a rule
fires, Alertmanager routes the alert to the bridge, the bridge delivers to sinks standing in
for DingTalk, WeCom, Feishu, Slack and a signed webhook, which verify the signatures; the
agent comes back and the resolved notification arrives.

Every process is real: `computewatch agent --simulate`, Prometheus and Alertmanager from the
Debian packages, `computewatch alert-bridge`. The notification latency is measured and
printed next to what the configuration predicts (run with ``-s`` to see it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import requests
from alert_sinks import Sink
from servers import free_port, start_alertmanager, start_prometheus

pytestmark = pytest.mark.realtime  # Prometheus, Alertmanager and the bridge end to end (~12 s)

TOKEN = "e2e-bridge-token"
SECRET = "SECe2e-signing-key"
SCRAPE_S, EVAL_S, FOR_S, GROUP_WAIT_S, GROUP_INTERVAL_S = 1, 1, 2, 1, 1
KINDS = ("dingtalk", "wecom", "feishu", "slack", "webhook")


def wait_http(url: str, timeout_s: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args[3]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not up after {timeout_s} s")


class Agent:
    """`computewatch agent --simulate` on a fixed port, killed and restarted at will."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.config = tmp_path / "node.yaml"
        self.config.write_text("interval: 5s\n", encoding="utf-8")
        self.log = tmp_path / "agent.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start and wait until /metrics answers; returns that moment (time.time())."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "computewatch", "agent", "--config", str(self.config),
                 "--simulate", "--listen", f"127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT)
        wait_http(f"http://127.0.0.1:{self.port}/metrics", proc=self.proc)
        return time.time()

    def kill(self) -> float:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        return time.time()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def prometheus_config(tmp_path: Path, agent_port: int, am_port: int) -> Path:
    rules = tmp_path / "rules.yml"
    rules.write_text(f"""\
groups:
  - name: e2e
    interval: {EVAL_S}s
    rules:
      - alert: AgentDown
        expr: up{{job="computewatch-agent"}} == 0
        for: {FOR_S}s
        labels: {{severity: critical, kind: agent, scope: node}}
        annotations:
          summary: "Agent {{{{ $labels.instance }}}} does not answer scrapes"
          description: "节点 agent 无法抓取 (site {{{{ $labels.site }}}})"
""", encoding="utf-8")
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""\
global:
  scrape_interval: {SCRAPE_S}s
  scrape_timeout: 900ms
  evaluation_interval: {EVAL_S}s
rule_files: [{rules}]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ["127.0.0.1:{am_port}"]}}]
scrape_configs:
  - job_name: computewatch-agent
    static_configs:
      - targets: ["127.0.0.1:{agent_port}"]
        labels: {{hub: jjj, site: bj-ai, node: bj-ai-n0001}}
""", encoding="utf-8")
    return config


def alertmanager_config(tmp_path: Path, bridge_port: int) -> Path:
    token_file = tmp_path / "bridge-token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    config = tmp_path / "alertmanager.yml"
    config.write_text(f"""\
route:
  receiver: noc
  group_by: [alertname, site]
  group_wait: {GROUP_WAIT_S}s
  group_interval: {GROUP_INTERVAL_S}s
  repeat_interval: 1h
receivers:
  - name: noc
    webhook_configs:
      - url: http://127.0.0.1:{bridge_port}/alertmanager/noc
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials_file: {token_file}}}
""", encoding="utf-8")
    return config


def bridge_config(tmp_path: Path, sinks: dict[str, Sink]) -> Path:
    targets = "\n".join(
        f'  {kind}: {{kind: {kind}, url: "{sink.url}", language: '
        f'{"en" if kind == "slack" else "zh"}'
        f'{", secret: {env: E2E_SECRET}" if sink.secret else ""}}}'
        for kind, sink in sinks.items())
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""\
auth: {{bearer_token: {{env: E2E_TOKEN}}}}
dead_letter: {tmp_path / "dead.jsonl"}
delivery: {{timeout: 2s, backoff: 200ms}}
targets:
{targets}
receivers:
  noc: [{", ".join(sinks)}]
""", encoding="utf-8")
    return config


def firing(r) -> bool:
    return _status(r) == "firing"


def resolved(r) -> bool:
    return _status(r) == "resolved"


def _status(r) -> str:
    if r.kind == "webhook":
        return r.json["status"]
    text = r.text
    return "resolved" if ("已恢复" in text or "RESOLVED" in text) else "firing"


@pytest.fixture
def sinks():
    made = {kind: Sink(kind, secret=SECRET if kind in ("dingtalk", "feishu", "webhook")
                       else "") for kind in KINDS}
    yield made
    for s in made.values():
        s.stop()


def test_agent_down_pages_every_chat_and_resolves(tmp_path, sinks):
    agent = Agent(tmp_path)
    bridge_port = free_port()
    env = {**os.environ, "E2E_TOKEN": TOKEN, "E2E_SECRET": SECRET}
    bridge_log = tmp_path / "bridge.log"
    with bridge_log.open("ab") as out:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "computewatch", "alert-bridge", "--config",
             str(bridge_config(tmp_path, sinks)), "--listen", f"127.0.0.1:{bridge_port}"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    am = prom = None
    try:
        wait_http(f"http://127.0.0.1:{bridge_port}/healthz", proc=bridge)
        agent.start()
        am = start_alertmanager(tmp_path / "am", alertmanager_config(tmp_path, bridge_port))
        prom = start_prometheus(tmp_path / "prom",
                                prometheus_config(tmp_path, agent.port, am.port))
        up = f"{prom.url}/api/v1/query?query=up"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the agent is being scraped: up == 1
            result = requests.get(up, timeout=5).json()["data"]["result"]
            if result and result[0]["value"][1] == "1":
                break
            time.sleep(0.2)
        else:
            pytest.fail("Prometheus never scraped the agent")

        condition_started = agent.kill()
        got_firing = {k: s.wait_for(1, 60, where=firing) for k, s in sinks.items()}
        condition_cleared = agent.start()
        got_resolved = {k: s.wait_for(1, 60, where=resolved) for k, s in sinks.items()}

        for kind, sink in sinks.items():
            bad = [r.problem for r in sink.received if not r.verified]
            assert bad == [], f"{kind}: requests the sink refused: {bad}"
            assert got_firing[kind], f"{kind}: no firing notification\n{bridge_log.read_text()}"
            assert got_resolved[kind], f"{kind}: no resolved notification"
        first = got_firing["webhook"][0].json["alertmanager"]
        assert first["status"] == "firing" and first["version"] == "4"
        assert first["commonLabels"]["alertname"] == "AgentDown"
        assert first["commonLabels"]["site"] == "bj-ai"
        assert first["externalURL"] == am.url
        assert "节点 agent 无法抓取 (site bj-ai)" in got_firing["dingtalk"][0].text
        assert f"{am.url}/#/alerts?receiver=noc" in got_firing["feishu"][0].text
        assert "[RESOLVED] AgentDown" in got_resolved["slack"][0].text
        last = got_resolved["webhook"][0].json["alertmanager"]
        assert last["status"] == "resolved" and last["alerts"][0]["endsAt"] > \
            last["alerts"][0]["startsAt"]

        def delivered_twice(kind: str, metrics: str) -> bool:
            line = (f'alert_bridge_messages_delivered_total{{kind="{kind}",'
                    f'target="{kind}"}}')
            return any(m.startswith(line) and float(m.split()[-1]) >= 2
                       for m in metrics.splitlines())

        # A sink has the message before the bridge has its answer and counts the delivery.
        deadline = time.monotonic() + 10
        while True:
            metrics = requests.get(f"http://127.0.0.1:{bridge_port}/metrics", timeout=5).text
            missing = [k for k in KINDS if not delivered_twice(k, metrics)]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert missing == [], metrics
        assert not (tmp_path / "dead.jsonl").exists()

        fire_s = min(r[0].at for r in got_firing.values()) - condition_started
        fire_last_s = max(r[0].at for r in got_firing.values()) - condition_started
        clear_s = min(r[0].at for r in got_resolved.values()) - condition_cleared
        lo, hi = FOR_S + GROUP_WAIT_S, SCRAPE_S + EVAL_S + FOR_S + GROUP_WAIT_S
        report = {
            "firing_s": round(fire_s, 2), "firing_last_sink_s": round(fire_last_s, 2),
            "firing_predicted_s": [lo, hi], "resolved_s": round(clear_s, 2),
            "resolved_predicted_s": [0, SCRAPE_S + EVAL_S + GROUP_INTERVAL_S]}
        print(f"\nalert latency: firing reached the first sink {fire_s:.2f} s after the agent "
              f"died (last sink {fire_last_s:.2f} s); predicted {lo}-{hi} s = for {FOR_S} s + "
              f"group_wait {GROUP_WAIT_S} s (+ up to scrape {SCRAPE_S} s + evaluation "
              f"{EVAL_S} s). Resolved {clear_s:.2f} s after the agent answered again; "
              f"predicted 0-{SCRAPE_S + EVAL_S + GROUP_INTERVAL_S} s = up to scrape + "
              f"evaluation + group_interval {GROUP_INTERVAL_S} s.\n{json.dumps(report)}")
    finally:
        agent.stop()
        for server in (prom, am):
            if server is not None:
                server.stop()
        bridge.terminate()
        try:
            bridge.wait(timeout=20)
        except subprocess.TimeoutExpired:
            bridge.kill()
    assert bridge.returncode == 0, bridge_log.read_text()
