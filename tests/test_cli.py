"""The `computewatch` command as a user runs it: a real subprocess, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from computewatch.status import ExitStatus
from computewatch.store import Aggregate, DuckDBStore, Query

SHIPPED = Path(__file__).resolve().parents[1] / "computewatch" / "data" / "topology.yaml"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "computewatch", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def _in_a_fresh_interpreter(code: str) -> subprocess.CompletedProcess:
    """``code`` run by a new Python: what it imports is not already in this process."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)


def _broken_topology(tmp_path: Path, edit) -> Path:
    doc = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    edit(doc)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _line_of(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(needle)


@pytest.mark.parametrize(("edit", "field", "value"), [
    (lambda d: d["sites"][3].update(hub="atlantis"), "sites[3].hub", "atlantis"),
    (lambda d: d["sites"][5].update(lat=200), "sites[5].lat", "200"),
    (lambda d: d["sites"][7].update(id=d["sites"][2]["id"]), "sites[7].id", None),
])
def test_bad_topology_gives_one_line_naming_field_and_value(tmp_path, edit, field, value):
    path = _broken_topology(tmp_path, edit)
    proc = run("topology", "check", str(path))
    assert proc.returncode == ExitStatus.BAD_INPUT
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert field in lines[0] and str(path.name) in lines[0]
    if value is None:  # the duplicate: the message names the repeated id
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        value = doc["sites"][7]["id"]
    assert value in lines[0]


def test_bad_topology_error_names_the_line(tmp_path):
    path = _broken_topology(tmp_path, lambda d: d["sites"][3].update(hub="atlantis"))
    proc = run("topology", "check", str(path))
    assert f"topology.yaml:{_line_of(path, 'hub: atlantis')}:" in proc.stderr


def test_demo_with_a_bad_topology_stops_before_writing(tmp_path):
    path = _broken_topology(tmp_path, lambda d: d["sites"][0].update(lat=200))
    proc = run("demo", "--topology", str(path), "--store", f"duckdb:///{tmp_path}/d.duckdb")
    assert proc.returncode == ExitStatus.BAD_INPUT and "sites[0].lat" in proc.stderr
    assert not (tmp_path / "d.duckdb").exists()


def test_shipped_topology_checks_clean():
    proc = run("topology", "check")
    assert proc.returncode == 0, proc.stderr
    assert "8 hubs, 10 clusters" in proc.stdout
    # Every shipped site declares the simulator's incomer, UPS-output IT meter and cooling feeder.
    assert ("meters: 50 of 50 sites declare 150 (50 facility, 50 it, 50 cooling); "
            "PUE category 1: 50 sites") in proc.stdout
    assert "outside every hub: wh-guanggu, xa-gaoxin" in proc.stdout


def test_topology_check_warns_where_a_budget_is_below_fiber_physics(tmp_path):
    # The shipped topology: Shenzhen to Zhangjiakou is 2,033 km, 20.3 ms of fiber RTT at the
    # least, over the 20 ms national budget (10 us per km, computed from the coordinates).
    proc = run("topology", "check")
    warned = [line for line in proc.stderr.splitlines() if "exceeds the" in line]
    assert len(warned) == 5 and all("no route can meet it" in w for w in warned)
    assert any(w.startswith("warning: link sz-nanshan|zjk-a (national, 2,033 km): the fiber "
                            "minimum 20.3 ms RTT exceeds the 20 ms budget") for w in warned)
    # An override that makes a 1,730 km pair regional (5 ms) is warned about too.
    path = _broken_topology(tmp_path, lambda d: d.update(
        links=[{"a": "bj-ai", "b": "guian-a", "tier": "regional"}]))
    proc = run("topology", "check", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "warning: link bj-ai|guian-a (regional, 1,7" in proc.stderr
    assert "(tier set by an override)" in proc.stderr
    # A site put into a hub that does not cover its province is named.
    path = _broken_topology(tmp_path, lambda d: next(
        s for s in d["sites"] if s["id"] == "wh-guanggu").update(hub="yrd", region=None))
    proc = run("topology", "check", str(path))
    assert "warning: site 'wh-guanggu': province 'Hubei' is in no hub, not in hub 'yrd'" \
        in proc.stderr


@pytest.mark.slow  # the demo end to end (~6 s)
def test_demo_small_fleet_prints_the_national_summary(tmp_path):
    store = f"duckdb:///{tmp_path}/demo.duckdb"
    proc = run("demo", "--sites", "12", "--accelerators", "600", "--hours", "2", "--seed", "5",
               "--store", store, "--truth", str(tmp_path / "truth.json"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    national = next(r for r in doc["rows"] if r["level"] == "national")
    assert national["accelerators"] == 600 and national["sites"] == 12
    assert 0.05 < national["mean_utilization"] < 0.95
    assert 1.0 < national["pue"] < 2.0
    hubs = [r for r in doc["rows"] if r["level"] == "hub"]
    assert len(hubs) == 8 and sum(r["accelerators"] for r in hubs) == 600
    assert (tmp_path / "truth.json").exists()
    # Every rule's findings scored against the truth it saved (issue 13).
    scores = {r["rule"]: r for r in doc["scores"]["rules"]}
    assert {"site_below_minimum", "site_anomaly", "accelerator_lost", "pue_over_target",
            "idle_capacity_within_circle"} <= set(scores)
    assert scores["accelerator_lost"]["expected"] == 1
    assert set(scores["site_below_minimum"]) >= {"recall", "precision", "missed_items"}
    # The summary command reads the same store back and agrees, and it and surplus only
    # read: they share the file with another reader (read-write, DuckDB's lock refused them).
    with duckdb.connect(str(tmp_path / "demo.duckdb"), read_only=True):
        again = run("summary", "--store", store, "--since", "2h", "--format", "json")
        near = run("surplus", "--near", "Shanghai", "--within", "20ms", "--store", store,
                   "--since", "2h", "--format", "json")
    assert again.returncode == 0, again.stderr
    assert near.returncode == 0, near.stderr
    national2 = next(r for r in json.loads(again.stdout)["rows"] if r["level"] == "national")
    assert national2["mean_utilization"] == pytest.approx(national["mean_utilization"],
                                                          rel=1e-9)


@pytest.mark.slow  # the demo end to end, twice (~7 s)
def test_demo_table_output_and_rerun_does_not_double(tmp_path):
    store = f"duckdb:///{tmp_path}/demo.duckdb"
    args = ("demo", "--sites", "10", "--accelerators", "300", "--hours", "1", "--store", store,
            "--truth", str(tmp_path / "t.json"))
    first = run(*args)
    assert first.returncode == 0, first.stderr
    assert "National" in first.stdout and "PUE" in first.stdout
    assert "Findings scored against the simulator's ground truth" in first.stdout
    second = run(*args, "--replace")
    assert second.returncode == 0, second.stderr
    with DuckDBStore(tmp_path / "demo.duckdb") as s:
        lo, hi = s.time_bounds("accelerator")
        got = s.query(Query("accelerator", ("health",), lo, hi + timedelta(minutes=1),
                            agg=Aggregate.COUNT))
    assert got.health[0] == 300 * 60  # one hour of 300 cards, not two


def test_usage_errors_exit_2():
    assert run("demo", "--format", "xml").returncode == ExitStatus.BAD_INPUT
    assert run("demo", "--hours", "many").returncode == ExitStatus.BAD_INPUT
    proc = run("summary", "--store", "nosuch://x")
    assert proc.returncode == ExitStatus.BAD_INPUT and "unknown store URL" in proc.stderr


def test_a_command_loads_its_own_module_only_and_help_lists_them_all():
    """A run imports the module of the command it names (`application`), not every
    command's: in a fresh interpreter, ``report`` loads no other command's module; ``--help``
    and a mistyped name still see every command (click suggests the right one)."""
    code = ("import sys; from computewatch.cli import main\n"
            "sys.argv = ['computewatch', '--lang', 'en', 'report', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules\n"
            "             if m.startswith('computewatch.cli._') and m[17:] in\n"
            "             ('_analyze', '_bridge', '_dashboards', '_demo', '_kubernetes',\n"
            "              '_query', '_report', '_rollup', '_store')))\n")
    done = _in_a_fresh_interpreter(code)
    assert "--period" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "['_report']"
    listed = run("--help").stdout
    for name in ("demo", "summary", "analyze", "report", "rollup", "alert-bridge", "topology",
                 "dashboards", "kubernetes", "store"):
        assert f"  {name} " in listed, name
    typo = run("reprot", "--period", "2026-10")
    assert typo.returncode == ExitStatus.BAD_INPUT and "report" in typo.stderr


@pytest.mark.parametrize("command", [
    ("summary",), ("analyze",), ("report", "--period", "2026-10"),
    ("surplus", "--near", "Shanghai"), ("store", "expire"),
])
def test_read_only_commands_never_create_a_store(tmp_path, command):
    missing = tmp_path / "sub" / "nosuch.duckdb"
    for spec in (str(missing), f"duckdb:///{missing}"):
        proc = run(*command, "--store", spec, cwd=tmp_path)
        assert proc.returncode == ExitStatus.BAD_INPUT, proc.stderr
        assert f"{missing}: no such store" in proc.stderr and "Traceback" not in proc.stderr
        assert not missing.exists() and not missing.parent.exists()


def test_a_report_names_its_bad_format_and_topology_before_a_missing_store(tmp_path):
    """The report opens its store in a thread while it imports (`Opening`), but says what
    was wrong in the order it did: the format, then the topology, then the store; none of
    them leaves a file behind."""
    missing = tmp_path / "nosuch.duckdb"
    fmt = run("report", "--period", "2026-10", "--store", str(missing), "--format", "xls",
              cwd=tmp_path)
    assert fmt.returncode == ExitStatus.BAD_INPUT
    assert fmt.stderr == "error: bad --format 'xls': one of html, pdf, csv\n"
    topo = run("report", "--period", "2026-10", "--store", str(missing), "--topology",
               str(tmp_path / "nosuch.yaml"), cwd=tmp_path)
    assert topo.returncode == ExitStatus.BAD_INPUT
    assert topo.stderr == f"error: {tmp_path / 'nosuch.yaml'}: file not found\n"
    assert list(tmp_path.iterdir()) == []


def test_an_opening_abandoned_closes_its_store_and_one_kept_is_open(tmp_path):
    """`Opening.guard`: a command that fails before it asks for its store closes the store
    the thread opened (DuckDB refuses a read-write connection beside a read-only one in one
    process), and drops the opening's own error; `result` raises that error where asked."""
    from computewatch.cli._common import Opening, UserError
    from computewatch.store import StoreError, StoreURLError

    path = tmp_path / "s.duckdb"
    DuckDBStore(path).close()
    opening = Opening(str(path))
    with pytest.raises(UserError), opening.guard():
        raise UserError("bad input found first")
    DuckDBStore(path).close()  # read-write: the read-only store is closed
    kept = Opening(str(path)).result()
    with pytest.raises(StoreError, match="cannot open"):
        DuckDBStore(path)
    kept.close()
    failed = Opening(str(tmp_path / "nosuch.duckdb"))
    with pytest.raises(UserError), failed.guard():
        raise UserError("bad input found first")
    with pytest.raises(StoreURLError, match="no such store"):
        Opening(str(tmp_path / "nosuch.duckdb")).result()


def test_a_status_is_shown_on_a_terminal_only():
    """`spinner`: rich's status where rich shows one; elsewhere a stand-in that takes the
    updates and writes nothing (a scripted report imports no Live display)."""
    import io

    from rich.console import Console
    from rich.status import Status

    from computewatch.cli._common import spinner

    piped = io.StringIO()
    with spinner(Console(file=piped), "report") as shown:
        shown.update("report: pue")
    assert not isinstance(shown, Status) and piped.getvalue() == ""
    with spinner(Console(file=io.StringIO(), force_terminal=True), "report") as shown:
        assert isinstance(shown, Status)


def test_start_up_loads_openblas_with_one_thread_and_puts_the_environment_back():
    """`starting` sets OPENBLAS_NUM_THREADS=1 for the imports where nothing set it, and
    removes it after (child processes see the environment as it was); a value the user set
    is left as it is."""
    code = ("import os; from computewatch.cli._startup import starting\n"
            "with starting('json'):\n    inside = os.environ.get('OPENBLAS_NUM_THREADS')\n"
            "print(inside, os.environ.get('OPENBLAS_NUM_THREADS'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120, check=True, env=env)
    assert plain.stdout.split() == ["1", "None"]
    mine = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True, env={**env, "OPENBLAS_NUM_THREADS": "4"})
    assert mine.stdout.split() == ["4", "4"]


@pytest.mark.slow  # a small demo end to end (~3 s)
def test_a_plain_path_is_a_duckdb_store_named_absolute(tmp_path):
    """`--store var/x.duckdb` is a DuckDB file relative to the working directory; messages
    name it by its absolute path."""
    proc = run("demo", "--sites", "10", "--accelerators", "100", "--hours", "1", "--no-analyze",
               "--store", "var/plain.duckdb", "--truth", "t.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"written to {tmp_path / 'var' / 'plain.duckdb'} in" in proc.stderr
    summary = run("summary", "--store", "var/plain.duckdb", "--format", "json", cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    national = next(r for r in json.loads(summary.stdout)["rows"] if r["level"] == "national")
    assert national["accelerators"] == 100


def test_version_is_the_distributions():
    from importlib.metadata import version

    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"computewatch {version('computewatch')}"


@pytest.mark.slow  # the demo end to end (~5 s)
def test_demo_refuses_to_empty_a_store_it_did_not_make(tmp_path):
    path = tmp_path / "prod.duckdb"
    with DuckDBStore(path) as s:
        s.write("accelerator", pd.DataFrame({
            "time": pd.to_datetime(["2026-01-01T00:00Z"]), "device": ["keep-me"],
            "power_watts": [100.0]}))
    proc = run("demo", "--sites", "10", "--accelerators", "100", "--hours", "1",
               "--store", f"duckdb:///{path}", "--truth", str(tmp_path / "t.json"))
    assert proc.returncode == ExitStatus.BAD_INPUT and "--replace" in proc.stderr
    with DuckDBStore(path) as s:
        assert s.series("accelerator").device.tolist() == ["keep-me"]
    proc = run("demo", "--sites", "10", "--accelerators", "100", "--hours", "1", "--replace",
               "--store", f"duckdb:///{path}", "--truth", str(tmp_path / "t.json"))
    assert proc.returncode == 0, proc.stderr


def test_start_up_imports_run_without_the_collector_and_are_frozen():
    """`starting`: inside, the cyclic collector is off; after, it is on again and the objects
    made inside are frozen (a fresh interpreter, so this process' objects stay collectable).
    Around a module imported already it changes nothing: a second command in one process
    freezes none of that process' data."""
    code = ("import gc, sys; from computewatch.cli._startup import starting\n"
            "before = gc.get_freeze_count()\n"
            "with starting('json'):\n    inside = gc.isenabled()\n    import json\n"
            "after = gc.get_freeze_count()\n"
            "with starting('json'):\n    again = gc.isenabled()\n"
            "print(before == 0, inside, gc.isenabled(), after > before,\n"
            "      again, gc.get_freeze_count() == after)\n")
    done = _in_a_fresh_interpreter(code)
    assert done.stdout.split() == ["True", "False", "True", "True", "True", "True"]
