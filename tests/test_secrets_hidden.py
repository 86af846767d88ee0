"""No secret reaches the output (issue 15, defect 5): secrets are seeded into every config and
URL form the commands take (inline where a reference belongs, ``user:password@`` in store,
remote-write, OTLP and Grafana URLs, ``token=`` in InfluxDB URLs, tokens in the environment
and in files, OTLP headers), every command that takes them is run as a user runs it (a real
process, its stdout, stderr and log lines), and all of it is searched for every secret.

The redaction helper itself (`computewatch.redact`) is checked on its own first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import free_port

from computewatch.redact import MASK, redact, redact_url, register_secret

SHOWN_FOR_A_SECRET = "***"  # what the output shows instead (`computewatch.redact.MASK`)

SECRETS = {
    "bridge_inline": "SECinlineBridgeToken0001",
    "ding_inline": "SECinlineDingSecret0002",
    "access_token_inline": "SECinlineAccessTok0003",
    "bridge_env": "SECenvBridgeToken0004",
    "otlp_password": "SECotlpPass0005",
    "otlp_header": "SECotlpHeader0006",
    "remote_password": "SECremotePass0007",
    "influx_url_token": "SECinfluxTok0008",
    "influx_env_token": "SECinfluxEnv0009",
    "store_password": "SECstorePass0010",
    "prom_password": "SECpromPass0012",
    "grafana_password": "SECgrafPass0013",
    "grafana_token": "SECgrafTok0014",
    "grafana_token_file": "SECgrafTokFile0015",
    "demo_password": "SECdemoPass0016",
    "bridge_password_file": "SECbridgePassFile0017",
    "slack_path": "SECslackHookPath0018",
}


# --- the helper -------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "shown"), [
    ("victoriametrics://u:pw-1@vm:8428", f"victoriametrics://u:{MASK}@vm:8428"),
    ("http://admin:p%40ss@grafana:3000/", f"http://admin:{MASK}@grafana:3000/"),
    ("influxdb://db:8086?org=o&bucket=b&token=t0k", f"influxdb://db:8086?org=o&bucket=b&token={MASK}"),
    ("https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1&sign=xyz",
     f"https://oapi.dingtalk.com/robot/send?access_token={MASK}&timestamp=1&sign={MASK}"),
    ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k3y",
     f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={MASK}"),
    ("https://hooks.slack.com/services/T0/B0/XX", f"https://hooks.slack.com/services/{MASK}"),
    ("https://open.feishu.cn/open-apis/bot/v2/hook/uuid-1",
     f"https://open.feishu.cn/open-apis/bot/v2/hook/{MASK}"),
    ("http://u:pw@[::1", f"http://u:{MASK}@[::1"),
    ("victoriametrics://vm:8428?tenant=0", "victoriametrics://vm:8428?tenant=0"),
    ("influxdb://db:8086?org=o&bucket=b&token_env=NAME", "influxdb://db:8086?org=o&bucket=b"
                                                         "&token_env=NAME"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_finds_urls_and_registered_secrets():
    register_secret("s3cr3t-value-for-the-test")
    register_secret("ab")  # too short to hide without hiding words: ignored
    text = ("error: victoriametrics://u:pw@vm:8428: http://u:pw@vm:8428/api/v1/query: refused; "
            "header Bearer s3cr3t-value-for-the-test; about a tab")
    assert redact(text) == (f"error: victoriametrics://u:{MASK}@vm:8428: http://u:{MASK}@vm:8428"
                            f"/api/v1/query: refused; header Bearer {MASK}; about a tab")


# --- every command, as a user runs it ---------------------------------------------------------

def _run(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> str:
    """What the command printed (stdout, stderr: its log lines too), after a header naming
    the command by its first word and exit code (the arguments hold the seeded secrets)."""
    proc = subprocess.run([sys.executable, "-m", "computewatch", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout)
    return f"$ computewatch {args[0]} ... -> {proc.returncode}\n{proc.stdout}{proc.stderr}"


@pytest.fixture
def env() -> dict[str, str]:
    """The environment the commands run in: secrets in variables, as deployments pass them."""
    e = dict(os.environ)
    e.update({"CW_SECRET_BRIDGE": SECRETS["bridge_env"],
              "CW_SECRET_INFLUX": SECRETS["influx_env_token"],
              "CW_SECRET_SLACK": f"https://hooks.slack.com/services/{SECRETS['slack_path']}",
              "GRAFANA_TOKEN": SECRETS["grafana_token"]})
    e.pop("INFLUX_TOKEN", None)
    return e


@pytest.mark.slow  # about 30 real processes (~35 s on 2 cores)
def test_no_command_shows_a_secret(tmp_path, env):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens here
    outputs: list[str] = []

    # The bridge: secrets inline where a reference belongs, then resolved ones.
    inline = tmp_path / "bridge-inline.yaml"
    inline.write_text(
        f"auth:\n  bearer_token: {SECRETS['bridge_inline']}\n"
        "targets:\n  d:\n    kind: dingtalk\n"
        f"    url: https://oapi.dingtalk.com/robot/send?access_token="
        f"{SECRETS['access_token_inline']}\n"
        f"    secret: {SECRETS['ding_inline']}\n"
        "receivers:\n  r: [d]\n", encoding="utf-8")
    outputs.append(_run("alert-bridge", "--config", str(inline), "--check", env=env,
                        cwd=tmp_path))
    ding_only = tmp_path / "bridge-ding-inline.yaml"
    ding_only.write_text(inline.read_text().replace(
        f"bearer_token: {SECRETS['bridge_inline']}", "bearer_token: {env: CW_SECRET_BRIDGE}"),
        encoding="utf-8")
    outputs.append(_run("alert-bridge", "--config", str(ding_only), "--check", env=env,
                        cwd=tmp_path))
    password_file = tmp_path / "bridge-password"
    password_file.write_text(SECRETS["bridge_password_file"] + "\n", encoding="utf-8")
    resolved = tmp_path / "bridge.yaml"
    resolved.write_text(
        "auth:\n  bearer_token: {env: CW_SECRET_BRIDGE}\n"
        f"  basic: {{username: am, password: {{file: {password_file}}}}}\n"
        "targets:\n  s: {kind: slack, url: {env: CW_SECRET_SLACK}}\n"
        "receivers:\n  r: [s]\n", encoding="utf-8")
    outputs.append(_run("alert-bridge", "--config", str(resolved), "--check", env=env,
                        cwd=tmp_path))
    outputs.append(_run("alert-bridge", "--config", str(resolved), "--listen", "127.0.0.1:99999",
                        env=env, cwd=tmp_path))

    # The agent: passwords in the OTLP endpoint and the remote-write URL, a token header,
    # an InfluxDB token from the environment; every export fails, so each is logged.
    node = tmp_path / "node.yaml"
    node.write_text(
        "interval: 1s\nexports:\n  prometheus: {enabled: false}\n"
        f"  otlp:\n    enabled: true\n    endpoint: http://otlp:{SECRETS['otlp_password']}@{dead}"
        "/v1/metrics\n    timeout: 1s\n"
        f"    headers: {{Authorization: 'Bearer {SECRETS['otlp_header']}'}}\n"
        f"  remote:\n    enabled: true\n    url: victoriametrics://vm:{SECRETS['remote_password']}"
        f"@{dead}\n    buffer_dir: {tmp_path / 'buf'}\n    max_backoff: 1s\n    timeout: 1s\n",
        encoding="utf-8")
    outputs.append(_run("agent", "--simulate", "--config", str(node), "--duration", "3s",
                        env=env, cwd=tmp_path))
    outputs.append(_run("collect", "--simulate", "--config", str(node), "--format", "json",
                        env=env, cwd=tmp_path))
    influx_node = tmp_path / "node-influx.yaml"
    influx_node.write_text(
        "interval: 1s\nexports:\n  prometheus: {enabled: false}\n  remote:\n    enabled: true\n"
        f"    url: influxdb://{dead}?org=o&bucket=b&token_env=CW_SECRET_INFLUX\n"
        f"    buffer_dir: {tmp_path / 'buf2'}\n    max_backoff: 1s\n    timeout: 1s\n",
        encoding="utf-8")
    outputs.append(_run("agent", "--simulate", "--config", str(influx_node), "--duration", "2s",
                        env=env, cwd=tmp_path))
    token_in_url = tmp_path / "node-token.yaml"
    token_in_url.write_text(influx_node.read_text().replace(
        "token_env=CW_SECRET_INFLUX", f"token={SECRETS['influx_url_token']}"), encoding="utf-8")
    outputs.append(_run("agent", "--simulate", "--config", str(token_in_url), "--duration", "1s",
                        env=env, cwd=tmp_path))

    # Stores: a password in the URL, a token in the URL, a token from the environment.
    for store in (f"victoriametrics://u:{SECRETS['store_password']}@{dead}",
                  f"prometheus://u:{SECRETS['prom_password']}@{dead}",
                  f"influxdb://{dead}?org=o&bucket=b&token={SECRETS['influx_url_token']}",
                  f"influxdb://{dead}?org=o&bucket=b&token_env=CW_SECRET_INFLUX"):
        for command in (("summary",), ("analyze",), ("report", "--period", "2026-10")):
            outputs.append(_run(*command, "--store", store, env=env, cwd=tmp_path))
    outputs.append(_run("demo", "--sites", "2", "--accelerators", "16", "--hours", "1",
                        "--store", f"victoriametrics://u:{SECRETS['demo_password']}@{dead}",
                        env=env, cwd=tmp_path))

    # Grafana: a password in the URL; the token on the command line, in a file, in the env.
    token_file = tmp_path / "grafana-token"
    token_file.write_text(SECRETS["grafana_token_file"], encoding="utf-8")
    grafana = f"http://admin:{SECRETS['grafana_password']}@{dead}"
    outputs.append(_run("dashboards", "push", "--url", grafana, "--token",
                        SECRETS["grafana_token"], env=env, cwd=tmp_path))
    outputs.append(_run("dashboards", "push", "--url", grafana, "--token-file", str(token_file),
                        env=env, cwd=tmp_path))
    outputs.append(_run("dashboards", "push", "--url", grafana, env=env, cwd=tmp_path))

    everything = "\n".join(outputs)
    leaked = {name: value for name, value in SECRETS.items() if value in everything}
    assert not leaked, f"secrets in the output: {leaked}\n{everything}"
    # The commands did run and fail as expected, so there was output to search.
    assert "Traceback" not in everything, everything
    assert everything.count(SHOWN_FOR_A_SECRET) >= 10, everything
    assert "-> 1\n" in everything and "-> 2\n" in everything
