"""The command line in zh-CN and in English, run as a user runs it (subprocesses).

zh-CN output of demo, summary, analyze and surplus holds no English message text: every Latin
word left is an id, a unit or a name from `ALLOWED_LATIN` (ids are tokens with a digit, `-`,
`_`, `/`, `.`, `:` or `|`: site, node and rule ids, paths, URLs). English output holds no
Chinese. Places are shown by their Chinese names (京津冀, not jjj).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from computewatch.status import ExitStatus
from computewatch.topology import load_topology

ALLOWED_LATIN = {
    "UTC", "PUE", "RTT", "IT", "CUDA", "CANN", "cuda", "cann", "ms", "s", "h", "json", "csv",
    "computewatch", "finding", "Ascend"}
"""Latin words zh-CN output may hold: units, abbreviations the glossary keeps (PUE, RTT, IT
as in IT 设备能耗), the software ecosystems, the product's name, the store's table name, a
vendor's model name. A single capital letter is a site's letter (张家口智算中心A)."""
HAN = re.compile(r"[\u4e00-\u9fff]")
_TOPOLOGY = load_topology()
IDS = {p.id for p in (*_TOPOLOGY.hubs, *_TOPOLOGY.clusters, *_TOPOLOGY.sites)}
"""Ids of places are ids, even those that read as words (``tianfu`` in the scorer's lines)."""


def run(*args: str, lang: str | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("COMPUTEWATCH_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    environ |= {"LANG": "C.UTF-8", **(env or {})}
    lead = ("--lang", lang) if lang else ()
    return subprocess.run([sys.executable, "-m", "computewatch", *lead, *args], env=environ,
                          capture_output=True, text=True, timeout=300)


def unwrap(text: str) -> str:
    """Table rows with their wrapped cells joined: a line whose first cell is blank continues
    the row above (rich folds long Chinese cells anywhere, even inside ``UTC``)."""
    rows: list[list[str]] = []
    out: list[str] = []
    for line in text.splitlines():
        cells = line.split("│")
        if len(cells) > 2 and not cells[1].strip() and rows:
            rows[-1] = [a.rstrip() + b.strip() for a, b in zip(rows[-1], cells, strict=False)]
        elif len(cells) > 2:
            rows.append(cells)
        else:
            out.append(line)
    return "\n".join(out + ["│".join(r) for r in rows])


def english_words(text: str) -> list[str]:
    """Plain Latin words (no digit or id punctuation) outside the allowed set."""
    text = unwrap(text)
    tokens = [t.rstrip(".:|/-_") for t in
              re.findall(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9_\-./:|]*", text)]
    return sorted({t for t in tokens if re.fullmatch(r"[A-Za-z]+", t)
                   and t not in ALLOWED_LATIN and t not in IDS and len(t) > 1})


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo run in zh-CN: its output, and its store for the other commands."""
    where = tmp_path_factory.mktemp("cli-i18n")
    store = f"duckdb:///{where}/demo.duckdb"
    proc = run("demo", "--sites", "12", "--accelerators", "600", "--hours", "3", "--seed", "5",
               "--store", store, "--truth", str(where / "truth.json"), lang="zh-CN")
    assert proc.returncode == 0, proc.stderr
    return store, proc


def test_the_word_check_can_fail():
    assert english_words("站点 zjk-a over budget: 1.2 ms (PUE) 张家口智算中心A") == [
        "budget", "over"]


@pytest.mark.slow  # a small demo end to end (~10 s)
def test_demo_in_zh_cn_has_no_english_message_text(demo):
    _store, proc = demo
    out = proc.stdout + proc.stderr
    assert "全国汇总" in out and "枢纽 / 集群" in out and "闲置算力（卡时）" in out
    assert "分析：" in out and "发现项与模拟器真值的比对评分" in out
    assert english_words(out) == [], out


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ("summary", "--since", "3h"),
    ("analyze", "--since", "3h"),
    ("surplus", "--near", "Shanghai", "--within", "20ms", "--since", "3h"),
])
def test_query_commands_in_zh_cn_have_no_english_message_text(demo, command):
    store, _proc = demo
    proc = run(*command, "--store", store, lang="zh-CN")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert HAN.search(out)
    assert english_words(out) == [], out


@pytest.mark.slow
def test_places_are_named_in_chinese_and_english_keeps_ids(demo):
    store, _proc = demo
    zh = run("summary", "--since", "3h", "--store", store, lang="zh-CN").stdout
    en = run("summary", "--since", "3h", "--store", store, lang="en").stdout
    assert "京津冀" in zh and "粤港澳大湾区" in zh and "全国" in zh
    assert not re.search(r"\bjjj\b|\bgba\b", zh)
    assert re.search(r"\bjjj\b", en) and "National summary" in en
    assert not HAN.search(en), en


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ("summary", "--since", "3h"), ("analyze", "--since", "3h"),
    ("surplus", "--near", "Shanghai", "--within", "20ms", "--since", "3h")])
def test_english_output_holds_no_chinese(demo, command):
    store, _proc = demo
    proc = run(*command, "--store", store, lang="en")
    assert proc.returncode == 0 and not HAN.search(proc.stdout + proc.stderr), proc.stdout


@pytest.mark.slow
def test_the_language_comes_from_the_locale_and_the_variable(demo):
    store, _proc = demo
    by_locale = run("summary", "--since", "3h", "--store", store, env={"LANG": "zh_CN.UTF-8"})
    assert "全国汇总" in by_locale.stdout
    by_variable = run("summary", "--since", "3h", "--store", store,
                      env={"LANG": "zh_CN.UTF-8", "COMPUTEWATCH_LANG": "en"})
    assert "National summary" in by_variable.stdout
    by_option = run("summary", "--since", "3h", "--store", store, lang="en",
                    env={"COMPUTEWATCH_LANG": "zh-CN"})
    assert "National summary" in by_option.stdout


def test_errors_are_in_the_language_chosen(tmp_path):
    missing = f"duckdb:///{tmp_path}/none.duckdb"
    zh = run("summary", "--format", "xml", "--store", missing, lang="zh-CN")
    assert zh.returncode == ExitStatus.BAD_INPUT
    assert "错误： --format 'xml' 无效：应为 table、json 或 csv 之一" in zh.stderr
    en = run("summary", "--format", "xml", "--store", missing, lang="en")
    assert "error: bad --format 'xml': one of table, json, csv" in en.stderr
    bad = run("summary", lang="fr")
    assert bad.returncode == ExitStatus.BAD_INPUT and "bad --lang 'fr'" in bad.stderr


def test_help_is_in_the_language_chosen():
    zh = run("summary", "--help", lang="zh-CN")
    assert zh.returncode == 0
    assert "打印存储中数据的全国汇总。" in zh.stdout and "从 --until 往前的时段长度" in zh.stdout
    assert "显示此帮助信息后退出。" in zh.stdout
    by_locale = run("--help", env={"LANG": "zh_CN.UTF-8"})
    assert "面向全国一体化算力网络的遥测与可观测性工具。" in by_locale.stdout
    en = run("summary", "--help")
    assert "Print the national summary of what a store holds." in en.stdout
    assert not HAN.search(en.stdout)


# --- help pages, click's own words, config errors -------------------------------------------

def _command_paths() -> list[tuple[str, ...]]:
    import typer.main

    from computewatch.cli import app

    def walk(command, prefix=()):
        yield prefix
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, (*prefix, name))

    return list(walk(typer.main.get_command(app)))


COMMAND_PATHS = _command_paths()
COMMAND_NAMES = {word for path in COMMAND_PATHS for part in path for word in part.split("-")}
HELP_VERBATIM = {
    # products, standards and their own terms (Grafana's Editor role, Docker's secret,
    # Prometheus' exporter-toolkit web config, the kinds a manifest holds)
    "Alertmanager", "Ascend", "ConfigMap", "Docker", "DuckDB", "Editor", "Geomap", "Grafana",
    "Kubernetes", "Pod", "PodResources", "Prometheus", "PrometheusRule", "Slack", "VMRule",
    "kubelet", "webhook", "exporter", "toolkit", "web", "secret", "uid", "python",
    "computewatch",
    # values a user types: formats, pipelines, severities, ecosystems, languages, places,
    # duration units, a boolean default
    "table", "json", "csv", "html", "pdf", "underuse", "latency", "pue", "anomaly", "surplus",
    "info", "warning", "critical", "cuda", "cann", "dcgm", "prometheus", "influx", "en", "zh",
    "Shanghai", "Hebei", "True",
    "d", "h", "m", "s", "w", "ms",
    # an argument's name, as its option names are kept (topology check's path)
    "path",
}
_CODE = re.compile(r"`[^`]*`|--?[A-Za-z][\w-]*|<[^>]*>|\[[a-z_]+\]|\$\{?[A-Z_]+\}?"
                   r"|(?<![A-Za-z0-9])[a-z][a-z0-9]*(?:-[a-z0-9]+)+(?![A-Za-z0-9])"
                   r"|(?<![A-Za-z0-9])[A-Z][A-Z0-9_]+(?![A-Za-z0-9])"
                   r"|\S*[/=_:.@{}][^\s，、；（）。]*")


def help_english(text: str) -> list[str]:
    """English words left in a help page: lines wrapped inside a token joined first, then
    code (options, metavars, placeholders, paths, URLs, env vars, acronyms) set aside."""
    lines = text.splitlines()
    joined = lines[0].strip() if lines else ""
    for raw in lines[1:]:  # a continuation is indented past an entry's two spaces
        line = raw.strip()
        inside = (len(raw) - len(raw.lstrip()) > 2 and re.search(r"[\w/:.\-]$", joined)
                  and re.match(r"[\w/:.]", line))
        joined += line if inside else "\n" + line
    words = re.findall(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9]*", _CODE.sub(" ", joined))
    return sorted({w for w in words if w not in HELP_VERBATIM | COMMAND_NAMES | IDS})


def test_the_help_word_check_can_fail():
    assert help_english("用法：computewatch summary [选项]\n选项：\n  --since <str>  Period "
                        "length, e.g. 24h.  [默认值：24h]") == ["Period", "length"]


@pytest.mark.slow  # one process per command (~20)
@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "computewatch")
def test_every_help_page_in_zh_cn_is_chinese(path):
    proc = run(*path, "--help", lang="zh-CN")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("用法：python -m computewatch") and "选项：" in out
    assert "显示此帮助信息后退出。" in out
    assert "Usage" not in out and "Options" not in out and "default:" not in out
    assert help_english(out) == [], out


def test_clicks_own_words_are_in_the_language_and_english_is_clicks():
    zh = run("summary", "--bogus", lang="zh-CN")
    assert zh.returncode == 2
    assert zh.stderr.splitlines() == [
        "用法：python -m computewatch summary [选项]",
        "运行 'python -m computewatch summary --help' 查看帮助。",
        "",
        "错误：没有选项：--bogus",
    ], zh.stderr
    zh_bad = run("analyze", "--limit", "x", lang="zh-CN")
    assert "错误：'--limit' 的值无效：应为整数，无法将该字符串解析为整数" in zh_bad.stderr
    en = run("summary", "--bogus", lang="en")
    assert en.returncode == 2
    assert en.stderr.splitlines() == [
        "Usage: python -m computewatch summary [OPTIONS]",
        "Try 'python -m computewatch summary --help' for help.",
        "",
        "Error: No such option: --bogus",
    ], en.stderr


def test_config_errors_are_framed_in_the_language_with_names_and_values_verbatim(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("utilization:\n  busy_lvl: 3\n", encoding="utf-8")
    store = f"duckdb:///{tmp_path}/none.duckdb"
    zh = run("summary", "--policy", str(policy), "--store", store, lang="zh-CN")
    assert zh.returncode == ExitStatus.BAD_INPUT
    assert (f"{policy}:2: utilization.busy_lvl: 未知的键 'busy_lvl'（是否指 'busy_level'？允许："
            "busy_level, minimums, sustained_hours）（实际为 3）") in zh.stderr, zh.stderr
    en = run("summary", "--policy", str(policy), "--store", store, lang="en")
    assert (f"{policy}:2: utilization.busy_lvl: unknown key 'busy_lvl' (did you mean "
            "'busy_level'? allowed: busy_level, minimums, sustained_hours) (got 3)"
            ) in en.stderr, en.stderr
    missing = run("topology", "check", str(tmp_path / "none.yaml"), lang="zh-CN")
    assert f"{tmp_path / 'none.yaml'}: 文件不存在" in missing.stderr, missing.stderr


def test_a_typer_on_click_itself_sends_clicks_gettext_to_the_catalogue(monkeypatch):
    """Typer before its own copy of click (pyproject allows >= 0.12): click's modules ask
    gettext, and get the catalogue's words."""
    import importlib

    import click.formatting
    import typer.core

    from computewatch.cli import _click_words
    from computewatch.i18n import using_language

    real = importlib.import_module

    def without_typers_click(name: str, *args):
        if name.startswith("typer._click"):
            raise ImportError(name)
        return real(name, *args)

    for module in (click.core, click.exceptions, click.formatting, click.parser, click.types,
                   click.decorators, typer.core):
        for attr in ("_", "ngettext"):
            if hasattr(module, attr):
                monkeypatch.setattr(module, attr, getattr(module, attr))  # restored after
    monkeypatch.setattr(_click_words.importlib, "import_module", without_typers_click)
    _click_words.route_click_words()
    with using_language("zh-CN"):
        assert click.formatting._("Usage:") == "用法："
        assert typer.core._("Options") == "选项"
    assert click.formatting._("Usage:") == "Usage:"


_VALIDATORS = ("collectors/config.py", "collectors/_settings.py", "collectors/*/_config.py",
               "collectors/snmp/_profiles.py", "collectors/modbus/_maps.py",
               "collectors/export/webconfig.py", "alerts/bridge/config.py",
               "computewatch/topology.py", "computewatch/policy.py",
               "computewatch/durations.py", "computewatch/addresses.py")
"""The modules whose ValueErrors are config models' validators (pydantic hands them to
the loader as the field's message)."""


def _path_error_messages() -> list[tuple[str, int, str]]:
    """Every message a config model raises (a PathError anywhere, a ValueError in the
    validators' modules), as the code words it, with each formatted value written as ``X``
    (read from the source, not from the catalogue)."""
    import ast

    root = Path(__file__).parent.parent
    validators = {p for pattern in _VALIDATORS for p in root.glob(pattern)}
    out = []
    for folder in ("computewatch", "collectors", "alerts", "pipelines"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                func = getattr(node, "func", None)
                name = getattr(func, "id", getattr(func, "attr", None))
                if isinstance(node, ast.Call) and name == "PathError" and len(node.args) >= 2:
                    arg = node.args[1]
                elif (isinstance(node, ast.Raise) and path in validators
                      and isinstance(node.exc, ast.Call) and node.exc.args
                      and getattr(node.exc.func, "id", None) == "ValueError"):
                    arg = node.exc.args[0]
                else:
                    continue
                if isinstance(arg, ast.Constant):
                    text = str(arg.value)
                elif isinstance(arg, ast.JoinedStr):
                    text = "".join(v.value if isinstance(v, ast.Constant) else "X"
                                   for v in arg.values)
                else:
                    continue
                out.append((path.relative_to(root).as_posix(), node.lineno, text))
    return out


def test_every_config_models_check_reads_in_chinese():
    from computewatch.config import message_in_language
    from computewatch.i18n import using_language

    messages = _path_error_messages()
    assert len(messages) >= 85  # the models' checks were found
    with using_language("zh-CN"):
        left = [(f, n, t) for f, n, t in messages if message_in_language(t) == t]
    assert not left, left


@pytest.mark.parametrize("english, chinese", [  # by hand; each must not fall to a general form
    ("must be >= grade B's 0.3", "须 >= 等级 B 的 0.3"),
    ("must be >= the regional budget (0.001)", "须 >= regional 预算（0.001）"),
    ("'Lanzhou' is a demand city; its Chinese name is its demand_cities entry's",
     "'Lanzhou' 是需求城市；其中文名取自 demand_cities 条目"),
    ("duplicate override for bj-1-sh-1", "bj-1-sh-1 的覆盖设置重复"),
    ("duplicate node id 'n1' (also in site 'bj-1')", "节点 id 'n1' 重复（也在站点 'bj-1' 中）"),
    ("give key_file or key_env, not both", "key_file 与 key_env 只能给出其一"),
    ("power_watts is a gauge", "power_watts 是 gauge"),
])
def test_config_checks_in_chinese_by_hand(english, chinese):
    from computewatch.config import message_in_language
    from computewatch.i18n import using_language

    with using_language("zh-CN"):
        assert message_in_language(english) == chinese
    assert message_in_language(english) == english


def test_a_first_runs_mistakes_read_in_chinese(tmp_path):
    """What a new user meets first: a store that is not there, a bad option value."""
    missing = tmp_path / "none.duckdb"
    zh = run("summary", "--store", str(missing), lang="zh-CN")
    assert zh.returncode != 0
    assert f"{missing}：没有这个存储（DuckDB 文件）；请先运行 `computewatch demo`" in zh.stderr, \
        zh.stderr
    en = run("summary", "--store", str(missing), lang="en")
    assert f"{missing}: no such store (a DuckDB file); run `computewatch demo`" in en.stderr
    bad = run("report", "--format", "docx", "--store", str(missing), lang="zh-CN")
    assert "--format 'docx' 无效：须为" in bad.stderr, bad.stderr
