"""The compose stack as local processes on loopback: everything docker-compose.yml runs but Grafana.

The topology is read from docker-compose.yml itself (as `docker-compose config` resolves it):
every service's command, its mounted configs and secrets, the addresses services use to reach
each other. Each ``service:port`` becomes a free port on 127.0.0.1, each mounted path a file
or directory under tmp_path, and then the processes start in the order depends_on gives:
the compose command lines of VictoriaMetrics, Prometheus and Alertmanager run by the Debian
packages' binaries (tests/servers.py's `Server`), our services as `computewatch`
subprocesses, each waited for with its own compose health check.

What the test changes (`speed_up`) is only how fast things happen: scrape and rule evaluation
every second instead of 15 s / 1 min, agents collecting every second, Alertmanager's
group_wait and group_interval 1 s, and the `for` of the one alert it triggers (AgentDown) 2 s
instead of 5 min; never a route, receiver, rule expression or label. The secrets are the
test's own (as an operator's COMPUTEWATCH_SECRETS directory would be), with the chat URLs at
local sinks that verify what the real services verify (tests/alert_sinks.py). A day of
history is backfilled into VictoriaMetrics first (`computewatch demo`), standing in for the
stack having run, so the scheduled pipelines have something to find.

It checks the flow end to end: the agents' samples reach VictoriaMetrics through the durable
buffer (and only that way), Prometheus scrapes every target and its recording rules produce
series (forwarded to VictoriaMetrics), an agent killed raises AgentDown, which reaches a chat
sink through Alertmanager and the bridge, and one `computewatch analyze --alert` run puts its
findings into Alertmanager.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from alert_sinks import Sink
from servers import ALERTMANAGER, PROMETHEUS, VICTORIA_METRICS, Server, free_port

from computewatch.cli import _healthcheck as healthcheck  # computewatch-healthcheck

pytestmark = pytest.mark.realtime  # the whole compose topology as real processes (~40 s)

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
NOT_RUN = {"grafana"}  # no Grafana here
# The Debian packages' binaries run the compose command lines of these images (translated);
# the test adds only where to listen and, for Alertmanager, no cluster gossip port.
THIRD_PARTY = {
    "victoriametrics": (VICTORIA_METRICS, "/health", lambda port: []),
    "victoriametrics-rollups": (VICTORIA_METRICS, "/health", lambda port: []),
    "prometheus": (PROMETHEUS, "/-/ready",
                   lambda port: [f"--web.listen-address=127.0.0.1:{port}"]),
    "alertmanager": (ALERTMANAGER, "/-/ready",
                     lambda port: [f"--web.listen-address=127.0.0.1:{port}",
                                   "--cluster.listen-address="]),
}
KILLED_AGENT = "agent-qingyang-a"
TRIGGERED_ALERT = "AgentDown"
HISTORY = ["--sites", "4", "--accelerators", "128", "--hours", "24"]  # the backfilled day




def resolved_compose() -> dict:
    result = subprocess.run(["docker-compose", "--project-directory", str(ROOT), "-f",
                             str(COMPOSE), "config"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


# --- translating the compose topology to loopback ------------------------------------------


@dataclass
class Translation:
    """Container addresses and paths -> loopback ports and files under the test's directory."""

    addresses: dict[str, str] = field(default_factory=dict)  # "service:port" -> "127.0.0.1:N"
    ports: dict[str, dict[str, int]] = field(default_factory=dict)  # service -> port -> N

    @classmethod
    def of(cls, services: dict) -> Translation:
        out = cls()
        for name, service in services.items():
            for exposed in service.get("expose", []):
                port = str(exposed).split("/")[0]
                local = free_port()
                out.ports.setdefault(name, {})[port] = local
                out.addresses[f"{name}:{port}"] = f"127.0.0.1:{local}"
        return out

    def text(self, text: str, service: str | None = None,
             paths: dict[str, Path] | None = None) -> str:
        """``text`` with every service:port (and, for ``service``, its own listen addresses and
        localhost:port) on loopback and every mounted container path on its local copy."""
        for address, local in sorted(self.addresses.items(), key=lambda kv: -len(kv[0])):
            text = re.sub(rf"(?<![\w.-]){re.escape(address)}(?!\d)", local, text)
        for port, local in (self.ports.get(service, {}) if service else {}).items():
            text = re.sub(rf"(?<![\w.-])(0\.0\.0\.0|127\.0\.0\.1|localhost|):{port}(?!\d)",
                          f"127.0.0.1:{local}", text)
        for inside, outside in sorted((paths or {}).items(), key=lambda kv: -len(kv[0])):
            text = re.sub(rf"(?<![\w.-]){re.escape(inside)}(?=$|[/\s\"',:;}}\]])",
                          str(outside), text, flags=re.M)
        return text


def local_mounts(name: str, service: dict, work: Path, tr: Translation,
                 edit: Callable[[str, str], str], secrets_dir: Path) -> dict[str, Path]:
    """Copies of the service's bind mounts (translated, then ``edit``ed), a fresh directory
    per named volume, and its secrets from ``secrets_dir``."""
    paths: dict[str, Path] = {}
    base = work / name
    base.mkdir(parents=True, exist_ok=True)
    for volume in service.get("volumes", []):
        source, inside = volume.split(":")[:2]
        if source.startswith("/"):
            paths[inside] = base / "mnt" / inside.lstrip("/")
        else:
            paths[inside] = base / "vol" / source
            paths[inside].mkdir(parents=True, exist_ok=True)
    for secret in service.get("secrets", []):
        secret = secret if isinstance(secret, str) else secret["source"]
        paths[f"/run/secrets/{secret}"] = secrets_dir / secret
    for volume in service.get("volumes", []):
        source, inside = volume.split(":")[:2]
        if not source.startswith("/"):
            continue
        target = paths[inside]
        for src in ([Path(source)] if Path(source).is_file() else
                    sorted(p for p in Path(source).rglob("*") if p.is_file())):
            dest = target if Path(source).is_file() else target / src.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            rel = inside if Path(source).is_file() else f"{inside}/{src.relative_to(source)}"
            dest.write_text(edit(rel, tr.text(src.read_text(encoding="utf-8"), name, paths)),
                            encoding="utf-8")
    return paths


# --- the test's edits: only timing -------------------------------------------------------------


def speed_up(service: str, path: str, text: str) -> str:
    """The test's timing edits (the module docstring lists them); nothing else changes."""
    if service == "prometheus" and path.endswith("prometheus.yml"):
        doc = yaml.safe_load(text)
        doc["global"].update(scrape_interval="1s", evaluation_interval="1s",
                             scrape_timeout="1s")
        return yaml.safe_dump(doc, sort_keys=False)
    if service == "prometheus" and path.startswith("/etc/prometheus/rules"):
        doc = yaml.safe_load(text)
        for group in doc.get("groups", []):
            group["interval"] = "1s"
            for rule in group["rules"]:
                if rule.get("alert") == TRIGGERED_ALERT:
                    rule["for"] = "2s"
        return yaml.safe_dump(doc, sort_keys=False)
    if service == "alertmanager" and path.endswith("alertmanager.yml"):
        doc = yaml.safe_load(text)

        def fast(route: dict) -> None:
            for key in ("group_wait", "group_interval"):
                if key in route or route is doc["route"]:
                    route[key] = "1s"
            for child in route.get("routes", []):
                fast(child)

        fast(doc["route"])
        return yaml.safe_dump(doc, sort_keys=False)
    if service.startswith("agent") and path == "/etc/computewatch/node.yaml":
        doc = yaml.safe_load(text)
        doc["interval"] = "1s"
        return yaml.safe_dump(doc, sort_keys=False)
    return text


# --- the test's secrets: chat URLs at local sinks ---------------------------------------------


def write_secrets(compose: dict, secrets_dir: Path) -> dict[str, Sink]:
    """An operator's secrets directory for the test: every ``<kind>-url`` secret is a local
    `Sink` of that kind, its ``<kind>-secret`` the sink's signing key; the rest random."""
    secrets_dir.mkdir(parents=True)
    names = set(compose["secrets"])
    sinks: dict[str, Sink] = {}
    for name in sorted(names):
        if name.endswith("-url"):
            kind = name.removesuffix("-url")
            secret = os.urandom(8).hex() if f"{kind}-secret" in names else ""
            sinks[kind] = Sink(kind, secret=secret)
    for name in names:
        kind = name.rpartition("-")[0]
        if name.endswith("-url"):
            value = sinks[kind].url
        elif name.endswith("-secret") and kind in sinks:
            value = sinks[kind].secret
        else:
            value = f"test-{name}-{os.urandom(8).hex()}"
        (secrets_dir / name).write_text(value + "\n", encoding="utf-8")
    return sinks


# --- processes -----------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class Stack:
    """The compose topology running locally; `close` stops everything it started."""

    def __init__(self, work: Path) -> None:
        self.work = work / "services"  # one directory per service, also its cwd
        self.compose = resolved_compose()
        self.services = {n: s for n, s in self.compose["services"].items()
                         if n not in NOT_RUN and "profiles" not in s}
        self.tr = Translation.of(self.services)
        self.secrets = work / "secrets"
        self.sinks = write_secrets(self.compose, self.secrets)
        self.mounts: dict[str, dict[str, Path]] = {}
        self.servers: dict[str, Server] = {}
        self.procs: dict[str, Process] = {}

    def url(self, service: str) -> str:
        (port,) = self.tr.ports[service].values()
        return f"http://127.0.0.1:{port}"

    def paths(self, name: str) -> dict[str, Path]:
        if name not in self.mounts:
            self.mounts[name] = local_mounts(
                name, self.services[name], self.work, self.tr,
                lambda path, text: speed_up(name, path, text), self.secrets)
        return self.mounts[name]

    def start_third_party(self, name: str) -> Server:
        """The service's compose command, translated, run by the Debian package's binary."""
        binary, ready, listen = THIRD_PARTY[name]
        assert Path(binary).exists(), f"{binary} missing: `make test` installs it"
        (port,) = self.tr.ports[name].values()
        argv = [binary, *self.argv(name), *listen(port)]
        server = Server(name, argv, port, ready, self.work / name / "server.log")
        self.servers[name] = server
        return server.start()

    def argv(self, name: str) -> list[str]:
        return [self.tr.text(a, name, self.paths(name)) for a in self.services[name]["command"]]

    def start(self, name: str) -> Process:
        log = self.work / name / "process.log"
        argv = [sys.executable, "-m", "computewatch", *self.argv(name)]
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.work / name,
                                    env={**os.environ, "TZ": "UTC"})
        self.procs[name] = Process(name, proc, log)
        return self.procs[name]

    def health_targets(self, name: str) -> list[str]:
        """The URLs the service's compose health check probes, on loopback."""
        test = self.services[name]["healthcheck"]["test"]
        return [self.tr.text(a, name) for a in test[1:]
                if re.match(r"(https?|udp|file)://", a)]

    def wait_healthy(self, names: list[str], timeout_s: float = 60.0) -> None:
        """Until each service passes its own health check, as Docker would run it."""
        deadline = time.monotonic() + timeout_s
        pending = list(names)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                process = self.procs[name]
                if process.proc.poll() is not None:
                    pytest.fail(f"{name} exited with {process.proc.returncode}:\n"
                                f"{process.tail()}")
                targets = self.health_targets(name)
                assert targets, f"{name}: no URL in its health check"
                if all(healthcheck.check(t, 1.0) is None for t in targets):
                    pending.remove(name)
            time.sleep(0.2)
        if pending:
            tails = "\n".join(f"--- {n}:\n{self.procs[n].tail()}" for n in pending)
            pytest.fail(f"not healthy after {timeout_s:.0f} s: {pending}\n{tails}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}:\n{p.tail(1200)}" for p in self.procs.values())

    def close(self) -> None:
        for process in self.procs.values():
            process.stop()
        for server in self.servers.values():
            server.stop()
        for sink in self.sinks.values():
            sink.stop()


# --- HTTP helpers -------------------------------------------------------------------------------


def get_json(url: str, **params: str | list[str]) -> dict | list:
    query = urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(f"{url}?{query}" if query else url, timeout=5) as reply:
        return json.loads(reply.read())


def eventually(what: str, probe: Callable[[], object], timeout_s: float, stack: Stack):
    """``probe()``'s first truthy result within the time, else a failure naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout_s:.0f} s (last: {last!r})\n{stack.logs()}")


def vm_series(stack: Stack, match: str) -> list[dict]:
    return get_json(stack.url("victoriametrics") + "/api/v1/series", **{
        "match[]": match, "start": str(int(time.time()) - 600)})["data"]


def prom_query(stack: Stack, expr: str) -> list[dict]:
    return get_json(stack.url("prometheus") + "/api/v1/query", query=expr)["data"]["result"]


def simulated_node(service: dict) -> str:
    return next(a.split("=", 1)[1] for a in service["command"] if a.startswith("--simulate="))


# --- the test ---------------------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path):
    running = Stack(tmp_path)
    try:
        yield running
    finally:
        running.close()


def test_the_compose_topology_runs_end_to_end(stack):
    services = stack.services
    agents = sorted(n for n, s in services.items() if s["command"][0] == "agent")
    responders = sorted(n for n, s in services.items() if s["command"][0] == "responder")
    assert len(agents) >= 2 and KILLED_AGENT in agents and len(responders) == len(agents)
    nodes = {a: simulated_node(services[a]) for a in agents}

    # VictoriaMetrics (raw samples, and the instance the pipelines read rollups from), and a
    # day of history in it (the stack having run for a while).
    stack.start_third_party("victoriametrics")
    stack.start_third_party("victoriametrics-rollups")
    pipelines = stack.argv("pipelines")
    store = pipelines[pipelines.index("--store") + 1]
    demo = subprocess.run([sys.executable, "-m", "computewatch", "demo", "--store", store,
                           *HISTORY, "--no-analyze"], capture_output=True, text=True,
                          timeout=120, cwd=stack.work / "pipelines")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    # Then the rest, in depends_on order, each waited for with its own health check.
    stack.start("alert-bridge")
    stack.wait_healthy(["alert-bridge"])
    stack.start_third_party("alertmanager")
    for name in responders + agents:
        stack.start(name)
    stack.start_third_party("prometheus")
    stack.wait_healthy(responders + agents)

    # 1. The agents' samples reach VictoriaMetrics through their durable buffer, and only
    #    that way: Prometheus forwards no accelerator series (those would carry job/instance).
    def agents_in_vm():
        series = vm_series(stack, "accelerator_power_watts")
        return series if {s["node"] for s in series} >= set(nodes.values()) else None

    series = eventually("every agent's accelerator_power_watts in VictoriaMetrics",
                        agents_in_vm, 45, stack)
    assert not [s for s in series if "job" in s or "instance" in s]
    def every_buffer_sent():
        sent = prom_query(stack, 'agent_buffer_sent_samples_total{job="computewatch-agent"} > 0')
        return sent if {r["metric"]["node"] for r in sent} == set(nodes.values()) else None

    # Prometheus scrapes each agent on its own schedule, so wait for all of them, not the first.
    eventually("every agent's buffer reports samples sent", every_buffer_sent, 30, stack)

    # 2. Prometheus scrapes every target it is given, and they are all up.
    def all_up():
        active = get_json(stack.url("prometheus") + "/api/v1/targets")["data"]["activeTargets"]
        health = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in active}
        agents_seen = [j for j, _ in health if j == "computewatch-agent"]
        return health if len(agents_seen) == len(agents) and set(health.values()) == {"up"} \
            else None

    health = eventually("every Prometheus target up", all_up, 30, stack)
    assert {"computewatch-agent", "alert-bridge", "alertmanager", "victoriametrics"} <= \
        {job for job, _ in health}

    # 3. Recording rules produce series, and Prometheus forwards them to VictoriaMetrics.
    sites = {yaml.safe_load(stack.paths(a)["/etc/computewatch/node.yaml"].read_text())["site"]
             for a in agents}
    eventually("site:accelerator_utilization_ratio:avg for every site", lambda: {
        r["metric"]["site"] for r in prom_query(
            stack, "site:accelerator_utilization_ratio:avg")} >= sites, 30, stack)
    eventually("recording-rule series forwarded to VictoriaMetrics", lambda: {
        s["site"] for s in vm_series(stack, "site:accelerator_utilization_ratio:avg")} >= sites,
        30, stack)

    # 4. An agent killed: AgentDown through Alertmanager and the bridge to a chat sink.
    rules = get_json(stack.url("prometheus") + "/api/v1/rules", type="alert")["data"]["groups"]
    durations = {r["name"]: r["duration"] for g in rules for r in g["rules"]}
    assert durations[TRIGGERED_ALERT] == 2, "the test copy of the rule has its `for` cut"
    killed = nodes[KILLED_AGENT]
    stack.procs[KILLED_AGENT].proc.kill()

    def delivered():
        return [(kind, r) for kind, sink in stack.sinks.items() for r in sink.received
                if r.verified and TRIGGERED_ALERT in r.text and killed in r.text]

    messages = eventually(f"{TRIGGERED_ALERT} for {killed} verified at a chat sink", delivered,
                          60, stack)
    assert {kind for kind, _ in messages} >= {"slack"}  # kind=agent -> noc-slack

    # 5. One run of the pipelines service's command (without --every): findings in
    #    Alertmanager.
    command = stack.argv("pipelines")
    every = command.index("--every")
    once = command[:every] + command[every + 2:]
    heartbeat = Path(once[once.index("--heartbeat") + 1])
    heartbeat.unlink(missing_ok=True)
    targets = stack.health_targets("pipelines")
    assert targets and all(healthcheck.check(t) is not None for t in targets)  # no run yet
    run = subprocess.run([sys.executable, "-m", "computewatch", *once], capture_output=True,
                         text=True, timeout=120, cwd=stack.work / "pipelines")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert [healthcheck.check(t) for t in targets] == [None] * len(targets)  # a run completed
    pushed = get_json(stack.url("alertmanager") + "/api/v2/alerts",
                      filter='source="computewatch-analyze"')
    assert pushed, run.stderr[-2000:]
    assert {a["labels"]["pipeline"] for a in pushed} <= {"underuse", "latency", "pue",
                                                           "anomaly", "surplus"}
