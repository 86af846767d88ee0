"""The agent's /metrics over TLS with basic auth, scraped by a real Prometheus (issue 15, 8).

The web configuration file is the Prometheus exporter-toolkit's format, so ``promtool check
web-config`` must accept it too; Prometheus scrapes with ``tls_config`` and ``basic_auth``,
and a scrape with the wrong password gets 401.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import bcrypt
import pytest
from servers import installed, start_prometheus

from computewatch.collectors.export.prometheus import PrometheusExporter
from computewatch.collectors.export.webconfig import load_web_config
from computewatch.config import ConfigError
from computewatch.samples import Sample

PASSWORD = "scrape-pass-51"
SAMPLE = Sample.of("accelerator.power_watts", 321.5, {"node": "n1", "device": "d0",
                                                       "vendor": "nvidia"})


def certificate(work: Path, name: str, *, ca: tuple[Path, Path] | None = None,
                is_ca: bool = False) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, self-signed or signed by ``ca``."""
    openssl = installed("openssl")
    cert, key = work / f"{name}.crt", work / f"{name}.key"
    ext = ["-addext", "basicConstraints=critical,CA:TRUE"] if is_ca else \
        ["-addext", "subjectAltName=IP:127.0.0.1"]
    if ca is None:
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                        *ext], check=True, capture_output=True)
        return cert, key
    csr = work / f"{name}.csr"
    subprocess.run([openssl, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(csr), "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    subprocess.run([openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey",
                    str(ca[1]), "-CAcreateserial", "-out", str(cert), "-days", "2"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    work = tmp_path_factory.mktemp("pki")
    server = certificate(work, "agent")
    ca = certificate(work, "scrapers-ca", is_ca=True)
    scraper = certificate(work, "prometheus", ca=ca)
    return work, server, ca, scraper


def web_config(work: Path, server: tuple[Path, Path], extra: str = "") -> Path:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    hashed = hashed.replace("$2b$", "$2y$")  # as htpasswd writes it
    path = work / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {server[0].name}\n"
                    f"  key_file: {server[1].name}\n{extra}"
                    f"basic_auth_users:\n  prometheus: '{hashed}'\n", encoding="utf-8")
    return path


def test_promtool_accepts_the_web_config(pki):
    work, server, _, _ = pki
    path = web_config(work, server)
    done = subprocess.run([installed("promtool"), "check", "web-config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def fetch(url: str, context: ssl.SSLContext, user: str | None = None,
          password: str = "") -> tuple[int, str]:
    req = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_tls_and_basic_auth_over_https(pki):
    work, server, _, _ = pki
    exporter = PrometheusExporter("127.0.0.1:0", web_config=web_config(work, server))
    try:
        exporter.export([SAMPLE], "nvml")
        url = f"https://127.0.0.1:{exporter.port}/metrics"
        trust = ssl.create_default_context(cafile=str(server[0]))
        status, body = fetch(url, trust, "prometheus", PASSWORD)
        assert status == 200 and "accelerator_power_watts" in body and "321.5" in body
        assert fetch(url, trust, "prometheus", "wrong")[0] == 401
        assert fetch(url, trust, "nobody", PASSWORD)[0] == 401
        assert fetch(url, trust)[0] == 401
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP: no answer
            urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=5)
        assert fetch(url, trust, "prometheus", PASSWORD)[0] == 200  # still serving
    finally:
        exporter.close()


def test_probe_paths_answer_without_credentials_and_readyz_waits_for_a_collection(pki):
    """The Kubernetes probes (deploy/kubernetes): /healthz is 200 while the server answers,
    /readyz 503 until the first collector's samples arrive, both without credentials, while
    /metrics still refuses them."""
    work, server, _, _ = pki
    exporter = PrometheusExporter("127.0.0.1:0", web_config=web_config(work, server))
    try:
        base = f"https://127.0.0.1:{exporter.port}"
        trust = ssl.create_default_context(cafile=str(server[0]))
        assert fetch(base + "/healthz", trust) == (200, "ok\n")
        assert fetch(base + "/readyz", trust) == (503, "no collection yet\n")
        assert fetch(base + "/metrics", trust)[0] == 401
        exporter.export([SAMPLE], "nvml")
        assert fetch(base + "/readyz", trust) == (200, "ok\n")
        assert fetch(base + "/metrics", trust)[0] == 401
        assert fetch(base + "/metrics", trust, "prometheus", PASSWORD)[0] == 200
    finally:
        exporter.close()


def test_client_certificates_when_required(pki):
    work, server, ca, scraper = pki
    path = web_config(work, server, f"  client_ca_file: {ca[0].name}\n"
                      "  client_auth_type: RequireAndVerifyClientCert\n")
    exporter = PrometheusExporter("127.0.0.1:0", web_config=path)
    try:
        url = f"https://127.0.0.1:{exporter.port}/metrics"
        anonymous = ssl.create_default_context(cafile=str(server[0]))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            fetch(url, anonymous, "prometheus", PASSWORD)
        mutual = ssl.create_default_context(cafile=str(server[0]))
        mutual.load_cert_chain(scraper[0], scraper[1])
        assert fetch(url, mutual, "prometheus", PASSWORD)[0] == 200
    finally:
        exporter.close()


@pytest.mark.realtime  # a real Prometheus scraping for a few seconds
def test_a_real_prometheus_scrapes_with_tls_and_basic_auth_and_a_wrong_password_gets_401(
        pki, tmp_path):
    work, server, _, _ = pki
    exporter = PrometheusExporter("127.0.0.1:0", web_config=web_config(work, server))
    exporter.export([SAMPLE], "nvml")
    jobs = []
    for job, password in (("agent", PASSWORD), ("intruder", "not-the-password")):
        jobs.append(f"""  - job_name: {job}
    scrape_interval: 1s
    scheme: https
    tls_config: {{ca_file: {server[0]}}}
    basic_auth: {{username: prometheus, password: {password}}}
    static_configs: [{{targets: ["127.0.0.1:{exporter.port}"]}}]""")
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s}\nscrape_configs:\n" + "\n".join(jobs)
                      + "\n", encoding="utf-8")
    prom = start_prometheus(tmp_path, config)
    try:
        health: dict[str, dict] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{prom.url}/api/v1/targets", timeout=5) as resp:
                active = json.load(resp)["data"]["activeTargets"]
            health = {t["labels"]["job"]: t for t in active}
            if all(t["health"] != "unknown" for t in health.values()) and len(health) == 2:
                break
            time.sleep(0.3)
        assert health["agent"]["health"] == "up", health["agent"]["lastError"]
        assert health["intruder"]["health"] == "down"
        assert "401 Unauthorized" in health["intruder"]["lastError"]
        query = urllib.parse.quote('accelerator_power_watts{job="agent"}')
        with urllib.request.urlopen(f"{prom.url}/api/v1/query?query={query}", timeout=5) as r:
            [result] = json.load(r)["data"]["result"]
        assert float(result["value"][1]) == 321.5
    finally:
        prom.stop()
        exporter.close()


@pytest.mark.parametrize(("text", "message"), [
    ("basic_auth_users: {prometheus: plaintext}\n",
     "web.yml:1: basic_auth_users.prometheus: must be a bcrypt hash"),
    ("tls_server_config: {cert_file: a.crt, key_file: a.key, cipher_suites: [x]}\n",
     "web.yml:1: tls_server_config.cipher_suites: not supported by computewatch"),
    ("tls_server_config: {cert_file: a.crt, key_file: a.key, "
     "client_auth_type: RequireAnyClientCert}\n",
     "web.yml:1: tls_server_config.client_auth_type: not supported"),
    ("tls_server_config: {cert_file: a.crt, key_file: a.key, "
     "client_auth_type: RequireAndVerifyClientCert}\n",
     "web.yml:1: tls_server_config.client_ca_file: RequireAndVerifyClientCert needs the CA"),
    ("tls_server_config: {cert_file: a.crt}\n",
     "web.yml:1: tls_server_config.key_file: "),
    ("tls_servr_config: {}\n", "web.yml:1: tls_servr_config"),
])
def test_web_config_errors_name_file_line_and_field(tmp_path, text, message):
    path = tmp_path / "web.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert str(info.value).removeprefix(f"{tmp_path}/").startswith(message), str(info.value)


def test_missing_certificate_files_are_named_at_start(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config: {cert_file: none.crt, key_file: none.key}\n",
                    encoding="utf-8")
    with pytest.raises(OSError, match=r"cannot load tls_server_config cert_file .*none\.crt"):
        PrometheusExporter("127.0.0.1:0", web_config=path)
