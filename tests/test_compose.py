"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

No engine runs here, so the stack is checked the ways that need none: `docker-compose config`
(the Debian package) and `check-jsonschema --builtin-schema vendor.compose-spec` both accept
the file and reject a broken copy; what the services mount, run and call exists in this
repository and in the image; the Dockerfile passes hadolint and copies what the package needs.
tests/test_stack_e2e.py runs the same topology as local processes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import dockerfile
import pytest
import yaml
from layering import layer_folders

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
OUR_IMAGE = f"computewatch:{PYPROJECT['project']['version']}"
HEALTHCHECK_BIN = "computewatch-healthcheck"
DEFAULT_REGISTRY = "docker.io"


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    assert found, "docker-compose is not installed; `make test` installs it (DEBIAN_PACKAGES)"
    return found


def compose_config(path: Path = COMPOSE, *args: str,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`docker-compose config` on ``path`` with the project directory at the repo root."""
    return subprocess.run([_docker_compose(), "--project-directory", str(ROOT), "-f", str(path),
                           "--profile", "influxdb", "config", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                           "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The compose file as docker-compose resolves it: anchors merged, paths absolute."""
    result = compose_config()
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = COMPOSE.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in docker-compose.yml"
    path = tmp_path / "docker-compose.yml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


VM_IMAGE_LINE = "    image: ${CW_REGISTRY:-docker.io}/victoriametrics/victoria-metrics:"
BREAKAGES = {
    "misspelt service key": (VM_IMAGE_LINE, "    restrat: always\n" + VM_IMAGE_LINE),
    "port is not a list": ('ports: ["${COMPUTEWATCH_BIND:-127.0.0.1}:8428:8428"]',
                           "ports: 8428"),
}


# --- the two validators ------------------------------------------------------------------


def test_docker_compose_config_accepts_the_file():
    result = compose_config(COMPOSE, "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_docker_compose_config_rejects_a_broken_copy(tmp_path, breakage):
    result = compose_config(_broken_copy(tmp_path, *BREAKAGES[breakage]), "-q")
    assert result.returncode != 0
    assert "invalid" in result.stderr.lower() or "error" in result.stderr.lower()


def test_docker_compose_config_rejects_depending_on_an_undefined_service(tmp_path):
    broken = _broken_copy(tmp_path, "      alert-bridge:\n        condition: service_healthy",
                          "      alert-brigde:\n        condition: service_healthy")
    result = compose_config(broken, "-q")
    assert result.returncode != 0
    assert "alert-brigde" in result.stderr


def test_compose_spec_schema_accepts_the_file():
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_compose_spec_schema_rejects_a_broken_copy(tmp_path, breakage):
    result = check_jsonschema(_broken_copy(tmp_path, *BREAKAGES[breakage]))
    assert result.returncode != 0
    assert "victoriametrics" in result.stdout


# --- what the services use exists ------------------------------------------------------------


def test_every_bind_mount_and_secret_file_exists_in_the_repo(resolved):
    sources = []
    for name, service in resolved["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("/"):
                sources.append((name, Path(source)))
            else:
                assert source in resolved["volumes"], f"{name}: {source} is not a named volume"
    sources += [(f"secret {k}", Path(v["file"])) for k, v in resolved["secrets"].items()]
    assert sources
    for who, path in sources:
        assert path.is_relative_to(ROOT), f"{who} mounts {path}, outside the repository"
        assert path.exists(), f"{who} mounts {path.relative_to(ROOT)}, which does not exist"


def test_every_image_is_pinned(resolved):
    for name, service in resolved["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), \
            f"{name}: image {image!r} is not pinned to a version"
        if "build" in service:
            assert image == OUR_IMAGE, f"{name}: builds {image!r}, pyproject says {OUR_IMAGE}"


def test_every_service_has_a_health_check_restart_policy_and_healthy_dependencies(resolved):
    services = resolved["services"]
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, \
            f"{name} has no health check"
        assert service.get("restart") == "unless-stopped", name
        for dep, how in service.get("depends_on", {}).items():
            assert how["condition"] == "service_healthy", f"{name} -> {dep}"
            assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has none"


def test_our_images_health_checks_call_what_the_image_installs(resolved):
    # `pip install .` in the image installs the package's console scripts, this one included.
    assert PYPROJECT["project"]["scripts"][HEALTHCHECK_BIN] == "computewatch.cli:healthcheck"
    ours = [s for s in resolved["services"].values() if s["image"] == OUR_IMAGE]
    assert len(ours) >= 8
    for service in ours:
        assert service["healthcheck"]["test"][:2] == ["CMD", HEALTHCHECK_BIN]


def test_our_services_commands_parse_against_the_cli(resolved):
    """Every `command:` of our image is a valid `computewatch` command line (parsed only)."""
    import click
    from typer.main import get_command

    from computewatch.cli import app

    group = get_command(app)
    for name, service in resolved["services"].items():
        if service["image"] != OUR_IMAGE:
            continue
        argv = service["command"]
        sub = group.get_command(click.Context(group), argv[0])
        assert sub is not None, f"{name}: no subcommand {argv[0]!r}"
        try:
            sub.make_context(argv[0], list(argv[1:]))
        except click.UsageError as exc:
            pytest.fail(f"{name}: `computewatch {' '.join(argv)}`: {exc.format_message()}")


def test_simulated_nodes_exist_and_their_configs_load(resolved):
    from computewatch.collectors.config import load_node_config
    from computewatch.sim.fleet import build_fleet
    from computewatch.topology import load_topology

    fleet_nodes = set(build_fleet(load_topology(), seed=0).device_node)
    agents = {n: s for n, s in resolved["services"].items() if s.get("command", [""])[0] == "agent"}
    assert len(agents) >= 4
    sites = set()
    for name, service in agents.items():
        node = next(a.split("=", 1)[1] for a in service["command"]
                    if a.startswith("--simulate="))
        assert node in fleet_nodes, f"{name}: --simulate={node} is not a node of the fleet"
        config = next(Path(v.split(":", 1)[0]) for v in service["volumes"]
                      if v.split(":")[1] == "/etc/computewatch/node.yaml")
        cfg = load_node_config(config)
        assert cfg.node == node, f"{config.name} says node {cfg.node}, {name} simulates {node}"
        assert cfg.exports.prometheus.listen.startswith("0.0.0.0:")
        sites.add(cfg.site)
        for peer, address in cfg.collectors.latency.peers.items():
            host, _, port = address.rpartition(":")
            assert host == f"responder-{peer}" and host in resolved["services"], (name, peer)
            assert f"{port}/udp" in resolved["services"][host]["expose"]
    assert len(sites) >= 3, "the simulated fleet should span several sites"


def test_stack_topology_is_the_shipped_one_cut_to_the_stacks_sites(resolved):
    shipped = yaml.safe_load((ROOT / "computewatch/data/topology.yaml").read_text("utf-8"))
    stack = yaml.safe_load((ROOT / "deploy/topology.yaml").read_text("utf-8"))
    for part in ("hubs", "clusters", "demand_cities", "provinces", "cities"):
        assert stack[part] == shipped[part], f"deploy/topology.yaml: {part} differ"
    by_id = {s["id"]: s for s in shipped["sites"]}
    for site in stack["sites"]:
        assert site == by_id[site["id"]], f"deploy/topology.yaml: site {site['id']} differs"
    agent_sites = {load_site(Path(v.split(":", 1)[0]))
                   for s in resolved["services"].values() if s.get("command", [""])[0] == "agent"
                   for v in s["volumes"] if v.split(":")[1] == "/etc/computewatch/node.yaml"}
    assert {s["id"] for s in stack["sites"]} == agent_sites


def load_site(node_yaml: Path) -> str:
    return yaml.safe_load(node_yaml.read_text(encoding="utf-8"))["site"]


def _prometheus_config() -> dict:
    return yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text("utf-8"))


def test_prometheus_config_is_valid_and_scrapes_every_agent_and_the_bridge(resolved):
    result = subprocess.run(["promtool", "check", "config", "--syntax-only",
                             str(ROOT / "deploy/prometheus/prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    services = resolved["services"]
    targets = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
               for job in _prometheus_config()["scrape_configs"]}
    agents = {f"{n}:9400" for n, s in services.items()
              if s.get("command", [""])[0] == "agent" and "profiles" not in s}
    assert set(targets["computewatch-agent"]) == agents
    assert targets["alert-bridge"] == ["alert-bridge:9095"]
    for job, addresses in targets.items():
        for address in addresses:
            host, port = address.split(":")
            if host != "localhost":
                assert port in services[host]["expose"], f"{job}: {address} is not exposed"
    mounts = {v.split(":")[1]: Path(v.split(":")[0]) for v in services["prometheus"]["volumes"]}
    loaded = {mounts[Path(f).parent.as_posix()] for f in _prometheus_config()["rule_files"]}
    assert loaded == {ROOT / "alerts" / "rules", ROOT / "dashboards" / "rules"}


def _walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))
    else:
        yield path, node


def secret_paths(service: dict) -> dict[str, str]:
    """Where each of a service's secrets appears inside it -> the secret's name."""
    out = {}
    for secret in service.get("secrets", []):
        name, target = (secret, None) if isinstance(secret, str) else \
            (secret["source"], secret.get("target"))
        target = target or name
        out[target if target.startswith("/") else f"/run/secrets/{target}"] = name
    return out


def hostnames(resolved: dict) -> dict[str, str]:
    """Every name a service answers to on the stack's network (its own, its aliases)."""
    out = {}
    for name, service in resolved["services"].items():
        out[name] = name
        for net in (service.get("networks") or {}).values():
            out.update({alias: name for alias in (net or {}).get("aliases", [])})
    return out


def test_alertmanager_reaches_the_bridge_with_a_mounted_credentials_file(resolved):
    """The shipped alertmanager.yml's receiver URLs name the bridge at a port it exposes,
    every receiver is one the bridge's config serves, and every credentials file it reads is
    a secret the alertmanager service mounts there."""
    config = yaml.safe_load((ROOT / "alerts/alertmanager.yml").read_text(encoding="utf-8"))
    bridge = yaml.safe_load((ROOT / "deploy/alert-bridge.yaml").read_text(encoding="utf-8"))
    mounted = secret_paths(resolved["services"]["alertmanager"])
    names = hostnames(resolved)
    urls = [(p, v) for p, v in _walk(config) if p and p[-1] == "url"]
    files = [v for p, v in _walk(config) if p and str(p[-1]).endswith("_file")]
    assert urls and files
    for path, url in urls:
        parts = urlsplit(url)
        assert names.get(parts.hostname) == "alert-bridge", f"{path}: {url}"
        assert str(parts.port) in resolved["services"]["alert-bridge"]["expose"], url
        assert str(parts.port) == bridge["listen"].rpartition(":")[2], url
        receiver = parts.path.removeprefix("/alertmanager/")
        assert receiver in bridge["receivers"], f"{url}: the bridge has no receiver {receiver}"
    for file in files:
        assert file in mounted, f"alertmanager.yml reads {file}; the service mounts {mounted}"
    assert set(mounted.values()) == {"bridge-token"}


def test_the_bridge_reads_only_secrets_its_service_mounts(resolved):
    service = resolved["services"]["alert-bridge"]
    mounted = secret_paths(service)
    config = (ROOT / "deploy/alert-bridge.yaml").read_text(encoding="utf-8")
    files = re.findall(r"\{file: ([^}]+)\}", config)
    assert files
    assert {f.strip() for f in files} == set(mounted), "secrets read vs mounted"
    state = next(v.split(":")[1] for v in service["volumes"] if v.startswith("bridge-state:"))
    dead_letter = yaml.safe_load(config)["dead_letter"]
    assert Path(dead_letter).is_relative_to(state), "dead letters go to the state volume"


# --- the Dockerfile -----------------------------------------------------------------------------


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hadolint"), "--no-color", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_dockerfile_passes_hadolint():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_broken_dockerfile(tmp_path):
    broken = tmp_path / "Dockerfile"
    text = DOCKERFILE.read_text(encoding="utf-8")
    broken.write_text(re.sub(r"^FROM \S+", "FROM python:latest", text, flags=re.M)
                      .replace("COPY pipelines", "ADD pipelines"), encoding="utf-8")
    result = hadolint(broken)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3020" in result.stdout


def test_dockerfile_copies_the_packages_and_installs_the_console_script():
    commands = dockerfile.parse_file(str(DOCKERFILE))
    by = lambda cmd: [c for c in commands if c.cmd == cmd]  # noqa: E731
    (base,) = by("FROM")
    assert base.value[0].startswith("${CW_REGISTRY}/library/"), "the base image's registry"
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?",
                        base.value[0].removeprefix("${CW_REGISTRY}/library/"))
    for copy in by("COPY"):
        assert not copy.flags or all(f.startswith("--chmod") for f in copy.flags)
        for source in copy.value[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    copied = {Path(s).parts[0] for c in by("COPY") for s in c.value[:-1]}
    packages = {"computewatch", *layer_folders(ROOT)}
    assert packages <= copied, f"the image misses {sorted(packages - copied)}"
    assert {"pyproject.toml", "setup.py", PYPROJECT["project"]["readme"]} <= copied
    installs = [c.value[0] for c in by("RUN") if "pip install" in c.value[0]]
    assert installs == ["pip install . && rm -rf /src"], "installs the package, no test extra"
    (entrypoint,) = by("ENTRYPOINT")
    assert entrypoint.json and list(entrypoint.value) == ["computewatch"]
    assert {"computewatch", HEALTHCHECK_BIN} <= set(PYPROJECT["project"]["scripts"])
    (user,) = by("USER")
    assert user.value[0].split(":")[0] not in ("0", "root")
    assert commands[-1].cmd in ("CMD", "ENTRYPOINT") and by("USER")[-1] is user


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "var", "deploy/secrets"} <= set(ignored)


def test_influxdb_entrypoint_hands_the_token_secret_to_computewatch(resolved, tmp_path):
    """The shell in front of `computewatch` in the influxdb profile: the secret's content in
    INFLUX_TOKEN, the command's arguments unchanged (run here with a stand-in computewatch)."""
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "computewatch"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "token=$INFLUX_TOKEN" "$@"\n', encoding="utf-8")
    fake.chmod(0o755)
    secret = tmp_path / "influxdb-token"
    secret.write_text("s3cr3t-token\n", encoding="utf-8")
    users = {n: s for n, s in resolved["services"].items() if "entrypoint" in s}
    assert {"agent-influx-bj-ai", "agent-influx-guian-a"} <= set(users)
    for name, service in users.items():
        assert "/run/secrets/influxdb-token" in secret_paths(service), name
        argv = [a.replace("$$", "$").replace("/run/secrets/influxdb-token", str(secret))
                for a in service["entrypoint"]] + service["command"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                             env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"})
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["token=s3cr3t-token", *service["command"]], name
        missing = subprocess.run([a.replace(str(secret), str(tmp_path / "nope")) for a in argv],
                                 capture_output=True, text=True, timeout=30,
                                 env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"})
        assert missing.returncode != 0 and "token=" not in missing.stdout, name


def test_image_healthcheck_reports_what_is_down(tmp_path):
    """The image's computewatch-healthcheck (a console script) fails on a closed HTTP
    port, a UDP port with no responder and a target it cannot probe; the e2e test sees it pass
    against the running services."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    script = Path(sys.executable).with_name(HEALTHCHECK_BIN)  # installed with the package
    stale = tmp_path / "stale.heartbeat"
    stale.write_text("2026-01-01T00:00:00+00:00\n")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    for target in (f"http://127.0.0.1:{closed}/metrics", f"udp://127.0.0.1:{closed}",
                   "ftp://127.0.0.1/", f"file://{tmp_path}/missing.heartbeat",
                   f"file://{stale}?max_age=35m"):
        run = subprocess.run([str(script), target], capture_output=True,
                             text=True, timeout=30, cwd=ROOT)
        assert run.returncode == 1, target
        assert run.stderr.startswith(f"unhealthy: {target}: "), run.stderr
    fresh = subprocess.run([str(script), f"file://{stale}?max_age=2h"],
                           capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert fresh.returncode == 0, fresh.stderr
    usage = subprocess.run([str(script)], capture_output=True, text=True,
                           timeout=30, cwd=ROOT)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_the_two_rule_directories_prometheus_loads_record_different_series():
    """alerts/rules and dashboards/rules both load into the stack's one Prometheus: a series
    recorded by both would get two values for each timestamp."""
    def recorded(folder: str) -> set[str]:
        return {r["record"] for f in sorted((ROOT / folder).glob("*.yml"))
                for g in yaml.safe_load(f.read_text(encoding="utf-8"))["groups"]
                for r in g["rules"] if "record" in r}

    alerts, dashboards = recorded("alerts/rules"), recorded("dashboards/rules")
    assert alerts and dashboards
    assert not alerts & dashboards


def test_every_store_url_the_services_use_is_one_computewatch_opens(resolved, tmp_path):
    """The pipelines' --store URLs name a backend and parse (opening connects to nothing),
    with every secret they read mounted in their service (here: a local stand-in file)."""
    from computewatch.store import open_store

    urls = {n: s["command"][s["command"].index("--store") + 1]
            for n, s in resolved["services"].items() if "--store" in s.get("command", [])}
    assert {"pipelines", "pipelines-influx"} <= set(urls)
    for name, url in urls.items():
        for inside, secret in secret_paths(resolved["services"][name]).items():
            (tmp_path / secret).write_text("test-token\n", encoding="utf-8")
            url = url.replace(inside, str(tmp_path / secret))
        assert "/run/secrets/" not in url, f"{name} reads a secret it does not mount: {url}"
        try:
            store = open_store(url)
        except Exception as exc:
            pytest.fail(f"{name}: --store {url}: {exc}")
        store.close()


def test_grafana_image_is_the_version_the_dashboards_are_built_for(resolved):
    extras = PYPROJECT["project"].get("optional-dependencies", {}).values()
    deps = [*PYPROJECT["project"]["dependencies"], *(d for extra in extras for d in extra)]
    (sdk,) = [d for d in deps if d.startswith("grafana-foundation-sdk")]
    built_for = sdk.rpartition("!")[2]
    assert resolved["services"]["grafana"]["image"] == \
        f"{DEFAULT_REGISTRY}/grafana/grafana:{built_for}"


# --- inside China's networks: one registry prefix, pip's index settings, nothing online -------

MIRROR = "harbor.example.cn/dockerhub"
PIP_SETTINGS = {"PIP_INDEX_URL": "https://mirrors.example.cn/pypi/simple/",
                "PIP_EXTRA_INDEX_URL": "https://pypi.example.cn/simple/",
                "PIP_TRUSTED_HOST": "mirrors.example.cn"}


def test_every_image_is_pulled_through_the_registry_variable(resolved):
    """With CW_REGISTRY set, every image the stack pulls comes from it and our image's base
    does too; unset, they come from Docker Hub under their full names."""
    result = compose_config(env={"CW_REGISTRY": MIRROR})
    assert result.returncode == 0, result.stderr
    mirrored = yaml.safe_load(result.stdout)["services"]
    assert set(mirrored) == set(resolved["services"])
    pulled = 0
    for name, service in mirrored.items():
        default = resolved["services"][name]
        if "build" in service:
            assert service["image"] == default["image"] == OUR_IMAGE, name
            assert service["build"]["args"]["CW_REGISTRY"] == MIRROR, name
            assert default["build"]["args"]["CW_REGISTRY"] == DEFAULT_REGISTRY, name
            continue
        pulled += 1
        assert service["image"].startswith(f"{MIRROR}/"), f"{name}: {service['image']}"
        assert default["image"] == \
            f"{DEFAULT_REGISTRY}/{service['image'].removeprefix(MIRROR + '/')}", name
        repository = service["image"].removeprefix(MIRROR + "/").rpartition(":")[0]
        assert "/" in repository, f"{name}: {repository} needs its namespace (library/...)"
    assert pulled >= 6


def test_pip_index_settings_reach_the_image_build():
    """PIP_INDEX_URL, PIP_EXTRA_INDEX_URL and PIP_TRUSTED_HOST from the environment reach the
    build as arguments the Dockerfile declares after FROM (so `pip install` sees them), and
    none of them is baked into the image's environment."""
    result = compose_config(env=PIP_SETTINGS)
    assert result.returncode == 0, result.stderr
    built = [s for s in yaml.safe_load(result.stdout)["services"].values() if "build" in s]
    assert built
    for service in built:
        for name, value in PIP_SETTINGS.items():
            assert service["build"]["args"][name] == value
    commands = dockerfile.parse_file(str(DOCKERFILE))
    start = next(i for i, c in enumerate(commands) if c.cmd == "FROM")
    install = next(i for i, c in enumerate(commands) if c.cmd == "RUN"
                   and "pip install" in c.value[0])
    declared = {c.value[0].split("=")[0] for c in commands[start:install] if c.cmd == "ARG"}
    assert set(PIP_SETTINGS) <= declared
    assert not [c for c in commands if c.cmd == "ENV" and any(k in " ".join(c.value)
                                                              for k in PIP_SETTINGS)]


URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"',;)]+", re.I)


def test_nothing_in_the_running_stack_reaches_the_internet(resolved):
    """Every URL in a service's command, entrypoint, environment and health check names a
    service of the stack or the container itself; Grafana's and InfluxDB's calls home are off,
    and Grafana's default map base layer is a file it serves itself."""
    names = hostnames(resolved)
    local = {"localhost", "127.0.0.1", "0.0.0.0"}
    found = 0
    for name, service in resolved["services"].items():
        parts = [service.get("command"), service.get("entrypoint"), service.get("environment"),
                 service.get("healthcheck", {}).get("test")]
        for _, value in _walk(parts):
            for url in URL.findall(str(value)):
                found += 1
                host = urlsplit(url).hostname
                if url.startswith("file://"):
                    continue
                assert host in names or host in local, f"{name} reaches {url}"
    assert found >= 10
    grafana = resolved["services"]["grafana"]["environment"]
    off = {"GF_ANALYTICS_REPORTING_ENABLED": "false", "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
           "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false", "GF_NEWS_NEWS_FEED_ENABLED": "false",
           "GF_SECURITY_DISABLE_GRAVATAR": "true", "GF_SNAPSHOTS_EXTERNAL_ENABLED": "false",
           "GF_PLUGINS_PUBLIC_KEY_RETRIEVAL_DISABLED": "true"}
    assert {k: grafana.get(k) for k in off} == off
    assert not any(k.startswith("GF_INSTALL_PLUGINS") or k == "GF_PLUGINS_PREINSTALL"
                   for k in grafana), "plugins would be downloaded at start"
    base = json.loads(grafana["GF_GEOMAP_DEFAULT_BASELAYER_CONFIG"])
    served = {v.split(":")[1].removeprefix("/usr/share/grafana/"): Path(v.split(":")[0])
              for v in resolved["services"]["grafana"]["volumes"]
              if ":/usr/share/grafana/public/" in v}
    assert base["type"] == "geojson" and served[base["config"]["src"]].is_file()
    assert resolved["services"]["influxdb"]["environment"]["INFLUXD_REPORTING_DISABLED"] == "true"


def test_vmalert_records_the_rollup_rules_from_the_raw_store_into_the_rollups_store(resolved):
    """The stack's vmalert reads the generated rollup rules (through its bind mount: the
    committed file), queries the raw VictoriaMetrics and writes into victoriametrics-rollups,
    the instance kept for years; the real vmalert (the Debian package, the image's release)
    accepts its flags and the rules (``-dryRun``), and refuses a misspelt flag."""
    from computewatch.rollup_rules import ROLLUP_RULES_FILE

    service = resolved["services"]["vmalert"]
    assert service["image"].endswith(f"/victoriametrics/vmalert:v{_debian_vm_version()}")
    flags = dict(arg.split("=", 1) for arg in service["command"])
    mounts = {v.split(":")[1]: Path(v.split(":")[0]) for v in service["volumes"]}
    rule = Path(flags["-rule"])
    assert mounts[str(rule.parent)] / rule.name == ROOT / ROLLUP_RULES_FILE
    assert urlsplit(flags["-datasource.url"]).hostname == "victoriametrics"
    assert urlsplit(flags["-remoteWrite.url"]).hostname == "victoriametrics-rollups"
    assert set(service["depends_on"]) == {"victoriametrics", "victoriametrics-rollups"}
    # the pipelines read the records where vmalert writes them
    from computewatch.lineprotocol import parse_rollups_url

    analyze = resolved["services"]["pipelines"]["command"]
    rollups = parse_rollups_url(analyze[analyze.index("--store") + 1])
    assert rollups is not None
    assert urlsplit(rollups).netloc == urlsplit(flags["-remoteWrite.url"]).netloc
    assert "victoriametrics-rollups" in resolved["services"]["pipelines"]["depends_on"]
    local = [f"-rule={ROOT / ROLLUP_RULES_FILE}",
             *(a for a in service["command"] if not a.startswith("-rule="))]
    vmalert = shutil.which("vmalert")
    assert vmalert, "vmalert is not installed; `make test` installs it (victoria-metrics)"
    ok = subprocess.run([vmalert, *local, "-dryRun"], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = subprocess.run([vmalert, *local, "-remoteWrite.urll=x", "-dryRun"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


def _debian_vm_version() -> str:
    """The installed victoria-metrics package's upstream version (``1.79.5``)."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("+")[0]
