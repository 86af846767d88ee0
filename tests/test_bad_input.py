"""Bad input is one line naming the file, field or option and the value, exit code 2; a
failure while running is exit code 1; user text is never read as markup (issue 15, defects
4, 6 and 7). Every case the issue lists, run through the command's entry point in this
process (`computewatch.cli.main`: the exit-code mapping and the error printer a user gets);
`test_a_real_process_prints_one_line` checks a few as a real subprocess too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from servers import free_port

from computewatch.cli import main
from computewatch.findings import Finding
from computewatch.status import ExitStatus

SHIPPED = Path(__file__).resolve().parents[1] / "computewatch" / "data"
TOPOLOGY = (SHIPPED / "topology.yaml").read_text(encoding="utf-8")
POLICY = (SHIPPED / "policy.yaml").read_text(encoding="utf-8")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run ``computewatch ARGS`` through its entry point in this process."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["computewatch", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A small demo store: 4 sites, 64 accelerators, 2 hours."""
    path = tmp_path_factory.mktemp("store") / "demo.duckdb"
    proc = subprocess.run([sys.executable, "-m", "computewatch", "demo", "--sites", "4",
                           "--accelerators", "64", "--hours", "2", "--no-analyze", "--store",
                           str(path), "--truth", str(path.with_suffix(".json"))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return str(path)


def one_line(r: Result, code: int, *needles: str) -> str:
    """The single error line of a refused command, which names every needle."""
    assert r.code == code, r.err
    assert "Traceback" not in r.err, r.err
    assert len(r.lines) == 1, r.err
    line = r.lines[0]
    for needle in needles:
        assert needle in line, line
    return line


# --- defect 6: markup, absurd times and periods, ports, YAML, URLs ---------------------------

@pytest.mark.parametrize(("args", "text"), [
    (("summary", "--format"), "[/x]"),
    (("report", "--out", "r.html", "--hub"), "[/x]"),
    (("surplus", "--near"), "[/x]"),
    (("surplus", "--near"), "[bold red]Shanghai[/bold red]"),
])
def test_user_text_is_never_read_as_markup(cli, store, args, text):
    one_line(cli(*args, text, "--store", store), ExitStatus.BAD_INPUT, text)


def test_an_id_pattern_in_an_error_is_shown_as_written(cli, tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.replace("- id: bj-ai", "- id: BJ_AI!", 1), encoding="utf-8")
    r = cli("topology", "check", str(path))
    one_line(r, ExitStatus.BAD_INPUT, "^[a-z0-9][a-z0-9_-]*$", "topology.yaml:")


@pytest.mark.parametrize(("args", "needles"), [
    (("summary", "--since", "99999999999999d"), ("--since", "99999999999999d")),
    (("summary", "--until", "0001-01-01"), ("--until", "0001-01-01")),
    (("summary", "--until", "99999-01-01"), ("--until", "99999-01-01")),
    (("summary", "--since", "36500d", "--until", "2026-01-01"), ("--since", "1970-01-01")),
    (("summary", "--since", "nan"), ("--since", "nan")),
    (("report", "--period", "0001-01", "--out", "r.html"), ("0001-01",)),
    (("report", "--period", "9999", "--out", "r.html"), ("9999",)),
    (("report", "--period", "0001-01-01/2026-01-01", "--out", "r.html"), ("0001-01-01",)),
    (("analyze", "--until", "0001-01-01"), ("--until",)),
    (("analyze", "--every", "1ms"), ("--every", "1ms")),
])
def test_absurd_times_and_periods_are_one_line(cli, store, args, needles):
    one_line(cli(*args, "--store", store), ExitStatus.BAD_INPUT, *needles)


@pytest.mark.parametrize(("args", "needles"), [
    (("agent", "--simulate", "--listen", "127.0.0.1:99999", "--duration", "1s"), ("99999",)),
    (("agent", "--simulate", "--listen", "junk", "--duration", "1s"), ("junk",)),
    (("agent", "--simulate", "--listen", "127.0.0.1:", "--duration", "1s"), ("127.0.0.1:",)),
    (("responder", "--listen", "127.0.0.1:99999"), ("99999",)),
    (("responder", "--listen", "junk"), ("junk",)),
    (("responder", "--listen", "[::1"), ("[::1",)),
])
def test_bad_listen_addresses_are_one_line(cli, args, needles):
    one_line(cli(*args), ExitStatus.BAD_INPUT, "--listen", *needles)


def test_a_bridge_port_out_of_range_is_named_at_load(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("CW_TEST_BRIDGE_TOKEN", "token-for-the-test")
    monkeypatch.setenv("CW_TEST_SLACK_URL", "https://hooks.slack.com/services/T/B/C")
    path = tmp_path / "bridge.yaml"
    path.write_text("listen: 127.0.0.1:99999\nauth:\n  bearer_token: {env: CW_TEST_BRIDGE_TOKEN}\n"
                    "targets:\n  s: {kind: slack, url: {env: CW_TEST_SLACK_URL}}\n"
                    "receivers:\n  r: [s]\n", encoding="utf-8")
    one_line(cli("alert-bridge", "--config", str(path), "--check"), ExitStatus.BAD_INPUT,
             "bridge.yaml:1: listen", "99999")
    path.write_text(path.read_text().replace("99999", "9095"), encoding="utf-8")
    one_line(cli("alert-bridge", "--config", str(path), "--listen", "127.0.0.1:99999"),
             ExitStatus.BAD_INPUT, "--listen", "99999")


@pytest.mark.parametrize(("text", "needles"), [
    ("interval: 15s\x00\n", ("node.yaml:1", "U+0000")),
    ("interval: " + "[" * 10_000 + "]" * 10_000 + "\n", ("node.yaml:1", "nest")),
    ("a: " + "[" * 100 + "]" * 100 + "\n", ("node.yaml:1", "nested deeper than 64")),
    ("interval: .nan\n", ("node.yaml:1: interval", "finite", "nan")),
    ("interval: .inf\n", ("node.yaml:1: interval", "finite", "inf")),
    ("timeout: -.inf\n", ("node.yaml:1: timeout", "finite")),
    ("interval: 0.000001\n", ("node.yaml:1: interval", "at least 100ms", "1e-06")),
    ("collectors:\n  ascend:\n    interval: 1ms\n", ("node.yaml:3: collectors.ascend.interval",
                                                  "at least 100ms")),
    ("collectors:\n  latency:\n    probe_interval: 0.0001\n",
     ("node.yaml:3: collectors.latency.probe_interval", "at least 10ms")),
    ("exports:\n  remote:\n    flush_interval: .inf\n", ("exports.remote.flush_interval",)),
    ("exports:\n  otlp:\n    timeout: .inf\n", ("node.yaml:3: exports.otlp.timeout", "inf")),
    ("exports:\n  prometheus:\n    listen: 127.0.0.1:99999\n",
     ("node.yaml:3: exports.prometheus.listen", "99999")),
    ("exports:\n  remote:\n    url: victoriametrics://127.0.0.1:notaport\n",
     ("node.yaml:3: exports.remote.url", "notaport")),
    ("exports:\n  otlp:\n    endpoint: http://[::1\n", ("node.yaml:3: exports.otlp.endpoint",)),
    ("collectors:\n  latency:\n    peers: {gz: '10.0.0.1:70000'}\n",
     ("collectors.latency.peers", "70000")),
    ("a: &a [*a]\n", ("node.yaml:1", "alias")),
    ("x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]\n" for i in range(1, 9)),
     ("node.yaml", "expands to more than")),
])
def test_bad_node_config_is_one_line_at_load(cli, tmp_path, text, needles):
    path = tmp_path / "node.yaml"
    path.write_text(text, encoding="utf-8")
    one_line(cli("collect", "--simulate", "--config", str(path)), ExitStatus.BAD_INPUT,
             *needles)


@pytest.mark.parametrize(("url", "code", "needles"), [
    ("prometheus://[::1", ExitStatus.BAD_INPUT, ("prometheus://[::1",)),
    ("victoriametrics://127.0.0.1:notaport", ExitStatus.BAD_INPUT, ("notaport",)),
    ("victoriametrics://127.0.0.1:99999", ExitStatus.BAD_INPUT, ("99999",)),
    ("victoriametrics://127.0.0.1:0", ExitStatus.BAD_INPUT, ("port 0",)),
    ("victoriametrics://?insert=vi:99999&select=vs:8481", ExitStatus.BAD_INPUT, ("99999",)),
    ("kafka://broker:9092", ExitStatus.BAD_INPUT, ("kafka",)),
    ("var/no-such.duckdb", ExitStatus.BAD_INPUT, ("no-such.duckdb",)),
    # An unreachable store is a failure while running, not bad input.
    (None, ExitStatus.ERROR, ("127.0.0.1",)),
])
def test_store_urls_bad_input_or_runtime_failure(cli, url, code, needles):
    url = url or f"victoriametrics://127.0.0.1:{free_port()}"
    one_line(cli("summary", "--store", url), code, *needles)


@pytest.mark.parametrize(("args", "needles"), [
    (("collect", "--simulate", "--seed", "-5"), ("--seed",)),
    (("demo", "--seed", "-1", "--store", "var/d.duckdb"), ("--seed",)),
    (("dashboards", "push", "--url", "http://127.0.0.1:1", "--token", "t0ken-for-the-test",
      "--timeout", "nan"), ("--timeout", "nan")),
    (("dashboards", "push", "--url", "http://127.0.0.1:1", "--token", "t0ken-for-the-test",
      "--timeout", "inf"), ("--timeout", "inf")),
    (("responder", "--drop", "nan"), ("--drop", "nan")),
])
def test_numeric_options_out_of_range_are_refused(cli, args, needles):
    r = cli(*args)
    assert r.code == ExitStatus.BAD_INPUT, r.err
    assert "Traceback" not in r.err
    assert all(n in r.err for n in needles), r.err


def test_dashboards_push_to_a_server_that_is_not_grafana_is_one_line(cli, tmp_path):
    import http.server
    import threading

    class NotGrafana(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>a web server, not Grafana</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotGrafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        one_line(cli("dashboards", "push", "--url", url, "--token", "t0ken-for-the-test"),
                 ExitStatus.ERROR, url, "does not answer like Grafana")
    finally:
        server.shutdown()
        server.server_close()


def test_the_health_check_names_a_bad_target_and_hides_its_password(capsys):
    from computewatch.cli._healthcheck import main as healthcheck

    code = healthcheck(["udp://127.0.0.1:99999", "http://[::1",
                        "http://user:hidden-pass@127.0.0.1:1/health"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "udp://127.0.0.1:99999: not a target" in err and "http://[::1: not a target" in err
    assert "hidden-pass" not in err and "http://user:***@127.0.0.1:1/health" in err


# --- defect 7: no bounds --------------------------------------------------------------------

def test_an_oversized_topology_is_refused_before_it_is_read(cli, tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY + "\n# padding\n" + ("# " + "x" * 1022 + "\n") * 5 * 1024,
                    encoding="utf-8")  # 5 MiB of comments: valid YAML, over the limit
    one_line(cli("topology", "check", str(path)), ExitStatus.BAD_INPUT, "topology.yaml",
             "larger than 4 MiB")


@pytest.mark.parametrize("count", ["1.0e+29", "100000000000000000000000000000", "2000000"])
def test_an_absurd_accelerator_count_is_refused_at_load(cli, tmp_path, count):
    doc = yaml.safe_load(TOPOLOGY)
    doc["sites"][0]["accelerators"][0]["count"] = "COUNT_HERE"
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    assert text.count("COUNT_HERE") == 1
    path = tmp_path / "topology.yaml"
    path.write_text(text.replace("COUNT_HERE", count), encoding="utf-8")
    one_line(cli("topology", "check", str(path)), ExitStatus.BAD_INPUT,
             "topology.yaml:", "sites[0].accelerators[0].count")


@pytest.mark.parametrize(("args", "needles"), [
    (("--accelerators", "100000000000000000000000000000"), ("--accelerators",)),
    (("--hours", "99999999"), ("--hours", "99999999")),
    (("--sites", "0"), ("--sites",)),
])
def test_the_demo_refuses_a_fleet_it_cannot_hold(cli, args, needles):
    r = cli("demo", "--store", "var/d.duckdb", *args)
    one_line(r, ExitStatus.BAD_INPUT, *needles)
    assert not Path("var/d.duckdb").exists()


# --- defect 4: a failing pipeline ----------------------------------------------------------

def test_an_infinite_sustained_hours_is_refused_at_load(cli, store, tmp_path):
    path = tmp_path / "policy.yaml"
    doc = yaml.safe_load(POLICY)
    doc["utilization"]["sustained_hours"]["value"] = "INF_HERE"
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    assert text.count("INF_HERE") == 1
    path.write_text(text.replace("INF_HERE", ".inf"), encoding="utf-8")
    for args in (("analyze",), ("report", "--out", "r.html")):
        one_line(cli(*args, "--store", store, "--policy", str(path)), ExitStatus.BAD_INPUT,
                 "policy.yaml:", "utilization.sustained_hours.value", "finite")


@pytest.fixture
def broken_latency(monkeypatch):
    """The latency pipeline raises; the others run as shipped."""
    from computewatch.pipelines import PIPELINES, run_pipelines

    def broken(*args: object) -> list[Finding]:
        raise OverflowError("cannot convert float infinity to integer")

    registry = {**PIPELINES, "latency": broken}
    monkeypatch.setitem(run_pipelines.__kwdefaults__, "registry", registry)


def test_a_failing_pipeline_makes_analyze_exit_1_and_is_in_the_json(cli, store, broken_latency):
    r = cli("analyze", "--store", store, "--since", "2h", "--format", "json")
    assert r.code == ExitStatus.ERROR, r.err
    assert "pipeline latency failed: OverflowError" in r.err
    doc = json.loads(r.out)
    status = {p["name"]: p for p in doc["pipelines"]}
    assert status["latency"]["status"] == "failed"
    assert "OverflowError" in status["latency"]["error"]
    assert status["underuse"]["status"] == "ok"
    assert status["underuse"]["findings"] == sum(f["pipeline"] == "underuse"
                                                 for f in doc["findings"])
    assert {p["name"] for p in doc["pipelines"]} == {"underuse", "latency", "pue", "anomaly",
                                                      "surplus"}


def test_a_failing_pipeline_makes_report_exit_1(cli, store, broken_latency):
    r = cli("report", "--store", store, "--period", "2h", "--format", "csv", "--out", "r.csv")
    assert r.code == ExitStatus.ERROR, r.err
    assert "pipeline latency failed" in r.err
    assert Path("r.csv").exists()  # the report itself is written, and says which failed


def test_a_clean_run_still_exits_0(cli, store):
    r = cli("analyze", "--store", store, "--since", "2h", "--format", "json")
    assert r.code == ExitStatus.OK, r.err
    assert all(p["status"] == "ok" for p in json.loads(r.out)["pipelines"])


# --- as a user sees it ----------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("summary", "--store", "prometheus://[::1"),
    ("summary", "--since", "99999999999999d", "--store", "STORE"),
    ("responder", "--listen", "127.0.0.1:99999"),
])
def test_a_real_process_prints_one_line(store, args):
    argv = [store if a == "STORE" else a for a in args]
    proc = subprocess.run([sys.executable, "-m", "computewatch", *argv], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == ExitStatus.BAD_INPUT
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
