"""The regulator report on hand-computable data: its numbers against sums done here by hand,
the CSV against the HTML, the methodology against the policy, the period parser, the CLI."""

from __future__ import annotations

import ast
import csv
import io
import re
import subprocess
import sys
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np
import pytest
from markupsafe import escape
from report_fixtures import (
    BJ_AI_HOURLY,
    HOURS,
    PERIOD,
    SITES,
    START,
    link_p95,
    write_accelerators,
    write_fleet,
)

from computewatch.findings import Finding, Severity
from computewatch.i18n import using_language
from computewatch.pipelines import PIPELINES, run_pipelines
from computewatch.policy import load_policy
from computewatch.reports import (
    COLUMNS,
    EmptyPeriodError,
    build_report,
    methodology,
    parse_period,
    render_csv,
    render_html,
)
from computewatch.status import ExitStatus
from computewatch.store import DuckDBStore, resolution
from computewatch.topology import load_topology

TOPO = load_topology()
POLICY = load_policy(topology=TOPO)
ONLY_FAST = ("underuse", "pue", "latency")  # the pipelines whose findings these tests read


@pytest.fixture(scope="module")
def fleet_path(tmp_path_factory):
    """The fleet's DuckDB file, closed: the CLI tests open it from another process."""
    path = tmp_path_factory.mktemp("report") / "fleet.duckdb"
    with opened(path) as store:
        write_fleet(store, TOPO)
    return path


@contextmanager
def opened(path):
    store = DuckDBStore(path)
    try:
        yield store
    finally:
        store.close()


def analyzed(store, period, pipelines=None, registry=PIPELINES, policy=POLICY):
    """The pipelines' run the CLI hands the report: the same period, nothing written."""
    return run_pipelines(store, period.period, policy, TOPO, only=pipelines, write=False,
                         registry=registry)


@pytest.fixture(scope="module")
def report(fleet_path):
    with opened(fleet_path) as store:
        period = parse_period(PERIOD)
        return build_report(store, TOPO, POLICY, period, analyzed(store, period, ONLY_FAST))


def build(path, period, *, pipelines=None, registry=PIPELINES, **kwargs):
    with opened(path) as store:
        return build_report(store, TOPO, POLICY, period,
                            analyzed(store, period, pipelines, registry), **kwargs)


def row(report, level: str, subject: str) -> dict:
    (r,) = report.rows[(report.rows.level == level) & (report.rows.id == subject)].to_dict(
        "records")
    return r


# --- the numbers -----------------------------------------------------------------------------

def test_site_utilization_idle_hours_and_verdicts_match_hand_sums(report):
    bj = row(report, "site", "bj-ai")
    assert bj["utilization"] == pytest.approx(np.mean(BJ_AI_HOURLY))  # 0.2275
    assert bj["idle_accelerator_hours"] == pytest.approx(4 * sum(1 - u for u in BJ_AI_HOURLY))
    assert bj["utilization_minimum"] == 0.30 and bj["utilization_verdict"] == "fail"
    assert bj["utilization_completeness"] == 1.0 and bj["accelerators"] == 4
    zjk = row(report, "site", "zjk-a")
    assert zjk["utilization"] == pytest.approx(0.6) and zjk["utilization_verdict"] == "pass"
    assert zjk["idle_accelerator_hours"] == pytest.approx(2 * HOURS * 0.4)


def test_a_partly_covered_site_is_not_scored_and_its_gap_is_not_counted_as_idle(report):
    zb = row(report, "site", "zjk-b")
    assert zb["utilization_completeness"] == pytest.approx(24 / 72)
    assert zb["utilization"] == pytest.approx(0.5)  # the covered day, not diluted
    assert zb["utilization_verdict"] == "incomplete"
    assert zb["idle_accelerator_hours"] == pytest.approx(2 * 24 * 0.5)
    silent = row(report, "site", "tj-binhai")
    assert silent["utilization_verdict"] == "no_data" and silent["pue_verdict"] == "no_data"
    assert silent["utilization_completeness"] == 0.0


@pytest.fixture(scope="module")
def time_weighted(fleet_path):
    """The report with every row on the time-weighted mean (the policy has hubs on the busy
    fraction): its hub row pools the sites' samples."""
    return build(fleet_path, parse_period(PERIOD), pipelines=ONLY_FAST,
                 definition="time_weighted")


def test_hub_row_pools_its_sites_and_a_silent_site_makes_it_incomplete(time_weighted):
    report = time_weighted
    hub = row(report, "hub", "jjj")
    samples = {s: cards * 6 * hours for s, (cards, _, hours, _) in SITES.items()}
    means = {"bj-ai": np.mean(BJ_AI_HOURLY), "zjk-a": 0.6, "zjk-b": 0.5}
    expected = sum(samples[s] * means[s] for s in SITES) / sum(samples.values())
    assert hub["utilization"] == pytest.approx(expected)
    assert hub["idle_accelerator_hours"] == pytest.approx(
        4 * sum(1 - u for u in BJ_AI_HOURLY) + 2 * 72 * 0.4 + 2 * 24 * 0.5)
    # 7 sites in jjj: bj-ai and zjk-a complete, zjk-b a third, four silent.
    assert hub["utilization_completeness"] == pytest.approx((1 + 1 + 1 / 3) / 7)
    assert hub["utilization_verdict"] == "incomplete"
    assert hub["utilization_minimum"] == 0.50
    assert hub["accelerators_installed"] == sum(s.accelerator_count
                                                for s in TOPO.sites_of_hub("jjj"))


def test_pue_against_targets_and_completeness(report):
    bj, zjk, zb = (row(report, "site", s) for s in ("bj-ai", "zjk-a", "zjk-b"))
    assert bj["pue"] == pytest.approx(1.3) and bj["pue_target"] == 1.25
    assert bj["pue_verdict"] == "fail" and bj["pue_completeness"] >= 0.99
    assert zjk["pue"] == pytest.approx(1.2) and zjk["pue_verdict"] == "pass"
    # Meters for one of three days: a third of the slots, no PUE stated.
    assert zb["pue_completeness"] == pytest.approx(1 / 3, abs=0.01)
    assert np.isnan(zb["pue"]) and zb["pue_verdict"] == "incomplete"
    hub = row(report, "hub", "jjj")  # every hub meter covers only the first day
    assert hub["pue_verdict"] == "incomplete" and hub["pue_completeness"] == pytest.approx(
        1 / 3, abs=0.01)


def test_latency_share_of_probes_and_windows_within_the_tier_budget(report):
    windows = 3 * 288
    with_data = 2 * 288
    within = sum(1 for w in range(with_data) if link_p95(w) <= 0.005)  # 3 of every 4
    for subject in ("bj-ai", "zjk-a"):
        r = row(report, "site", subject)
        assert (r["link_windows"], r["link_windows_with_data"],
                r["link_windows_within_budget"]) == (windows, with_data, within)
        assert r["latency_compliance"] == pytest.approx(0.75)
        # 60 probes a minute; every 4th window has none within budget (report_fixtures).
        assert (r["link_probes"], r["link_probes_within_budget"]) == (
            with_data * 300, within * 300)
        assert r["latency_completeness"] == pytest.approx(2 / 3)
    assert row(report, "site", "zjk-b")["link_windows"] == 0
    assert row(report, "hub", "jjj")["link_windows_within_budget"] == within


def test_findings_come_from_the_pipelines_and_are_counted_per_site(report):
    (under,) = report.findings[(report.findings.rule == "site_below_minimum")
                               & (report.findings.subject == "bj-ai")].itertuples()
    # Below 0.30 while 0.05 + 0.005 h < 0.30: hours 0..49, mean 0.05 + 0.005 x 24.5.
    assert under.observed == pytest.approx(0.1725)
    assert under.start == START and under.end == START + timedelta(hours=50)
    bj = row(report, "site", "bj-ai")
    mine = report.findings[report.findings.site == "bj-ai"].severity.astype(int)
    assert (bj["findings_critical"], bj["findings_warning"], bj["findings_info"]) == (
        (mine == 2).sum(), (mine == 1).sum(), (mine == 0).sum())
    assert bj["findings_warning"] >= 1
    assert report.pipelines["underuse"].endswith("findings")
    assert set(report.pipelines) == set(ONLY_FAST)


def test_a_failing_pipeline_is_stated_and_the_report_still_builds(fleet_path):
    def needs_a_missing_module(*_args):
        import computewatch_no_such_module  # noqa: F401  (an optional dependency not installed)

    registry = {**PIPELINES, "broken": needs_a_missing_module}
    got = build(fleet_path, parse_period(PERIOD), pipelines=("underuse", "broken"),
                registry=registry)
    assert got.pipelines["broken"].startswith("failed: ModuleNotFoundError")
    assert got.pipelines["underuse"].endswith("findings")


def test_an_analysis_of_another_period_is_refused(fleet_path):
    with opened(fleet_path) as store, pytest.raises(ValueError, match="not the report's"):
        build_report(store, TOPO, POLICY, parse_period(PERIOD),
                     analyzed(store, parse_period("2026-10-01"), ()))


def test_busy_fraction_definition(fleet_path):
    got = build(fleet_path, parse_period(PERIOD), definition="busy_fraction", pipelines=())
    # bj-ai's cards are above the 0.10 busy level from hour 11 (0.05 + 0.005 h > 0.10) on.
    busy = sum(u > 0.10 for u in BJ_AI_HOURLY) / len(BJ_AI_HOURLY)
    assert row(got, "site", "bj-ai")["utilization"] == pytest.approx(busy)
    assert row(got, "site", "zjk-a")["utilization"] == pytest.approx(1.0)
    assert set(got.rows.utilization_definition) == {"busy_fraction"}


def test_a_link_finding_counts_at_both_ends_and_planning_is_listed(fleet_path, report):
    def one_link(store, period, policy, topology):
        return [Finding("latency", "link_degraded", "link", "bj-ai|zjk-a", Severity.CRITICAL,
                        0.008, 0.005, "s", period.start, period.start + timedelta(hours=1),
                        hub="jjj", site="bj-ai")]

    got = build(fleet_path, parse_period(PERIOD), registry={"latency": one_link})
    for site in ("bj-ai", "zjk-a"):  # the link's two ends, not only the first
        assert row(got, "site", site)["findings_critical"] == 1
    assert row(got, "site", "zjk-b")["findings_critical"] == 0
    # The fixture's link is over budget in every 4th window: intermittent, a planning row.
    html = render_html(report)
    assert 'id="planning-list"' in html
    planning = report.findings[report.findings.rule == "tier_budget_unmet"]
    (detail,) = planning.detail
    assert [e["pair"] for e in detail["intermittent"]] == ["bj-ai|zjk-a"]
    assert detail["links"] == [] and "jjj|jjj" in html


def test_one_hub_scope(fleet_path):
    got = build(fleet_path, parse_period(PERIOD), hub="jjj", pipelines=("underuse",))
    assert set(got.sites.hub) == {"jjj"} and list(got.hubs.id) == ["jjj"]
    assert set(got.findings.hub) == {"jjj"}
    with pytest.raises(ValueError, match=r"--hub 'atlantis': unknown hub \(known: .*jjj"):
        build(fleet_path, parse_period(PERIOD), hub="atlantis")


def test_a_month_with_one_day_of_data_is_one_31st_complete(tmp_path):
    store = DuckDBStore(tmp_path / "month.duckdb")
    try:
        day = START + timedelta(days=4)  # 2026-10-05 in China time
        for site in TOPO.sites_of_hub("jjj"):  # every site of the scope, for one day
            write_accelerators(store, TOPO, site.id, 2, [0.4] * 24, 24, start=day)
        month = parse_period("2026-10")
        got = build_report(store, TOPO, POLICY, month, analyzed(store, month, ()), hub="jjj")
    finally:
        store.close()
    zjk = row(got, "site", "zjk-a")
    assert zjk["utilization_completeness"] == pytest.approx(1 / 31)
    assert zjk["utilization"] == pytest.approx(0.4)
    assert zjk["utilization_verdict"] == "incomplete"
    assert zjk["idle_accelerator_hours"] == pytest.approx(2 * 24 * 0.6)
    assert got.coverage["period_completeness"] == pytest.approx(1 / 31)
    html = render_html(got)
    assert "for 168 of the 5,208 site-windows of the period (7 sites x 744 " in html
    assert "the equivalent of 1.0 of 31 days" in html


def test_an_empty_period_names_what_the_store_holds(fleet_path):
    with pytest.raises(EmptyPeriodError, match=r"no accelerator, meter or link data in "
                       r"2026-08 .* it holds accelerator data from 2026-09-30 16:00"):
        build(fleet_path, parse_period("2026-08"))


# --- CSV and HTML carry the same numbers -----------------------------------------------------

class _Cells(HTMLParser):
    """Text of every data-col cell, by the id of its row (``site-bj-ai``, ``hub-jjj``)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self._row: str | None = None
        self._col: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("id", "").startswith(("site-", "hub-")):
            self._row = a["id"]
            self.rows[self._row] = {}
        elif tag == "td" and self._row and "data-col" in a:
            self._col = a["data-col"]
            self.rows[self._row][self._col] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._col = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._row and self._col:
            self.rows[self._row][self._col] += data


def _shown(text: str) -> float:
    """A displayed number back to a value: 22.8% -> 0.228, 1,234 -> 1234, — -> NaN."""
    text = re.match(r"\s*([\d,.]+%?|—)", text).group(1)
    if text == "—":
        return float("nan")
    if text.endswith("%"):
        return float(text[:-1].replace(",", "")) / 100
    return float(text.replace(",", ""))


def _close(shown: float, exact: str, tolerance: float) -> bool:
    value = float(exact) if exact else float("nan")
    if np.isnan(shown) or np.isnan(value):
        return np.isnan(shown) and np.isnan(value)
    return abs(shown - value) <= tolerance * 1.001  # half the last digit shown, plus float slack


SHOWN_VERDICT = {"pass": "pass", "fail": "fail", "incomplete": "incomplete",
                 "no_data": "no data", "no_it_meter": "no IT meter",
                 "no_facility_meter": "no facility meter"}


def test_csv_has_the_same_numbers_as_the_html(report):
    out = io.StringIO()
    render_csv(report, out)
    records = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(records[0]) == list(COLUMNS)
    assert len(records) == len(TOPO.sites) + len(TOPO.hubs)
    parser = _Cells()
    parser.feed(render_html(report))
    assert len(parser.rows) == len(records)
    checked = 0
    for rec in records:
        cells = parser.rows[f"{rec['level']}-{rec['id']}"]
        for col, tol in (("utilization", 0.0005), ("utilization_minimum", 0.005),
                         ("utilization_completeness", 0.0005), ("idle_accelerator_hours", 0.5),
                         ("pue", 0.0005), ("pue_target", 0.005), ("pue_completeness", 0.0005),
                         ("latency_compliance", 0.0005), ("latency_completeness", 0.0005)):
            assert _close(_shown(cells[col]), rec[col], tol), (rec["id"], col, cells[col],
                                                               rec[col])
            checked += 1
        for col in ("utilization_verdict", "pue_verdict"):
            assert cells[col].startswith(SHOWN_VERDICT[rec[col]]), (rec["id"], col)
        reporting, installed = cells["accelerators"].split("/")
        assert _shown(reporting) == float(rec["accelerators"])
        assert _shown(installed) == float(rec["accelerators_installed"])
        assert cells["findings"].replace(" ", "") == (
            f"{rec['findings_critical']}/{rec['findings_warning']}/{rec['findings_info']}")
    assert checked == 9 * len(records)
    assert records[0]["period_start"] == START.isoformat()


def test_html_is_self_contained_with_three_inline_plots(report):
    html = render_html(report)
    assert "<script" not in html and "<link " not in html and "<img" not in html
    assert "@import" not in html
    assert all(u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", html))
    # Nothing to fetch: every reference is in-page (#...) or inline (data:).
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert refs and all(r.startswith(("#", "data:")) for r in refs), refs
    assert len(re.findall(r'<figure id="plot-', html)) == 3
    assert html.count("<svg") == 3


# --- methodology -----------------------------------------------------------------------------

def test_methodology_states_every_threshold_with_the_policy_source(report):
    entries = methodology(report)
    by_name = {e.name: e for e in entries}
    u, p, lat = POLICY.utilization, POLICY.pue, POLICY.latency
    expected = {
        "site minimum": u.minimums.site.default, "hub minimum": u.minimums.hub.default,
        "hub minimum, west": u.minimums.hub.regions["west"],
        "busy level": u.busy_level, "sustained_hours": u.sustained_hours,
        "PUE target (default)": p.default_target, "PUE target, east": p.targets["east"],
        "PUE target, west": p.targets["west"], "completeness floor": p.min_completeness,
        "metro budget": lat.tiers.metro, "regional budget": lat.tiers.regional,
        "national budget": lat.tiers.national, "RTT semantics": lat.rtt_semantics,
        "route inflation limit": lat.route_inflation_limit,
    }
    for name, sourced in expected.items():
        assert by_name[name].source == sourced.source, name
    assert by_name["site minimum"].threshold == "30%"
    assert by_name["PUE target, east"].threshold == "1.25"
    assert by_name["regional budget"].threshold == "5 ms"
    assert "ISO/IEC 30134-2" in by_name["PUE"].definition
    assert "idle accelerator-hours" in by_name["idle accelerator-hours"].definition
    assert "underuse: site_below_minimum" in by_name
    html = render_html(report)
    for sourced in expected.values():
        assert str(escape(sourced.source)) in html  # as Jinja escapes it


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_each_rules_definition_is_in_the_language_the_report_is_rendered_in(fleet_path, report):
    # The pipelines store their definitions in English whatever language ran them, so an
    # analysis is not frozen in the language of whoever ran it; the report restates them.
    with opened(fleet_path) as store, using_language("zh-CN"):
        period = parse_period(PERIOD)
        ran_in_zh = analyzed(store, period, ONLY_FAST)
    stored = set(report.findings.definition)
    assert {f.definition for f in ran_in_zh.findings} == stored
    assert any(d.startswith("time-weighted mean utilization") for d in stored)
    rules = set(report.findings.rule)
    assert {"site_below_minimum", "pue_over_target", "tier_budget_unmet"} <= rules
    zh = _text(render_html(report, language="zh-CN"))
    en = _text(render_html(report, language="en"))
    site_min = POLICY.utilization.minimums.site.default
    targets = [*POLICY.pue.targets.values(), POLICY.pue.default_target]
    # underuse, pue and latency rules as a Chinese reader reads them (written by hand)
    assert "按 60 分钟窗口计算的 6 h 滚动平均值低于站点最低值" in zh
    assert "最低值来源：" + str(escape(site_min.source_zh.strip())) in zh
    assert "基于电能计量的 PUE" in zh and any(
        "窗口；目标值来源：" + str(escape(t.source_zh.strip())) in zh for t in targets)
    assert "每个 5 分钟窗口内，将该链路全部探测" in zh
    for english in ("below the site minimum", "energy-based PUE", "target source",
                    "Per 5 min window", "English report"):
        assert english not in zh, english
    assert "below the site minimum on the rolling mean of 6 h in 60-minute windows" in en
    assert "; month window; target source: " in en or "; 1d window; target source: " in en
    assert "每个" not in en and "目标值来源" not in en


def test_a_policy_override_reaches_the_rows_and_the_methodology(fleet_path, tmp_path):
    shipped = (resources.files("computewatch") / "data" / "policy.yaml").read_text(
        encoding="utf-8")
    custom = shipped.replace(
        "      subjects: {}\n    cluster:",
        "      subjects:\n        bj-ai:\n          value: 0.20\n          source: test "
        "override for bj-ai\n    cluster:", 1)
    assert custom != shipped
    path = tmp_path / "policy.yaml"
    path.write_text(custom, encoding="utf-8")
    policy = load_policy(path, topology=TOPO)
    with opened(fleet_path) as store:
        period = parse_period(PERIOD)
        got = build_report(store, TOPO, policy, period,
                           analyzed(store, period, (), policy=policy))
    bj = row(got, "site", "bj-ai")
    assert bj["utilization_minimum"] == 0.20 and bj["utilization_verdict"] == "pass"
    assert any(e.name == "site minimum, bj-ai" and e.source == "test override for bj-ai"
               for e in methodology(got))


# --- the period ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026-10", datetime(2026, 9, 30, 16, tzinfo=UTC), datetime(2026, 10, 31, 16, tzinfo=UTC)),
    ("2026-12", datetime(2026, 11, 30, 16, tzinfo=UTC), datetime(2026, 12, 31, 16, tzinfo=UTC)),
    ("2026-10-05", datetime(2026, 10, 4, 16, tzinfo=UTC), datetime(2026, 10, 5, 16, tzinfo=UTC)),
    ("2026", datetime(2025, 12, 31, 16, tzinfo=UTC), datetime(2026, 12, 31, 16, tzinfo=UTC)),
    ("2026-Q3", datetime(2026, 6, 30, 16, tzinfo=UTC), datetime(2026, 9, 30, 16, tzinfo=UTC)),
    ("2026-q1", datetime(2025, 12, 31, 16, tzinfo=UTC), datetime(2026, 3, 31, 16, tzinfo=UTC)),
    ("2026-Q4", datetime(2026, 9, 30, 16, tzinfo=UTC), datetime(2026, 12, 31, 16, tzinfo=UTC)),
    ("2026-10-01/2026-10-07", datetime(2026, 9, 30, 16, tzinfo=UTC),
     datetime(2026, 10, 7, 16, tzinfo=UTC)),
    ("2026-10-01T00:00Z/2026-10-02T12:00Z", datetime(2026, 10, 1, tzinfo=UTC),
     datetime(2026, 10, 2, 12, tzinfo=UTC)),
    ("2026-10-01T08:00/2026-10-01T20:00", datetime(2026, 10, 1, tzinfo=UTC),
     datetime(2026, 10, 1, 12, tzinfo=UTC)),
])
def test_periods_are_counted_in_china_time(text, start, end):
    got = parse_period(text)
    assert (got.start, got.end) == (start, end)


def test_a_duration_ends_at_the_last_sample():
    end = datetime(2026, 10, 3, 12, 1, tzinfo=UTC)
    got = parse_period("24h", last_sample_end=end)
    assert (got.start, got.end) == (end - timedelta(hours=24), end)
    with pytest.raises(ValueError, match="needs a store with data"):
        parse_period("24h")


@pytest.mark.parametrize(("text", "why"), [
    ("2026-13", "month 13 is not 01-12"), ("2026-Q5", "quarter 5 is not 1-4"),
    ("2026-02-30", "day is out of range"),
    ("2026-10-05/2026-10-01", "the end is not after the start"), ("last tuesday", "not a"),
    ("", "empty"), ("2026-10-01/soon", "'soon' is not an ISO 8601"),
])
def test_bad_periods_say_what_is_wrong_and_what_is_accepted(text, why):
    with pytest.raises(ValueError, match=re.escape(why)) as info:
        parse_period(text)
    assert "YYYY-MM" in str(info.value) and repr(text) in str(info.value)


# --- the command -----------------------------------------------------------------------------

def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "computewatch", "report", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.slow  # report runs end to end through the CLI (~7 s)
def test_cli_writes_csv_and_html(fleet_path, tmp_path):
    url = f"duckdb:///{fleet_path}"
    proc = cli("--period", PERIOD, "--store", url, "--format", "csv", "--out", "-",
               "--hub", "jjj")
    assert proc.returncode == ExitStatus.OK, proc.stderr
    records = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["id"] for r in records] == [s.id for s in TOPO.sites_of_hub("jjj")] + ["jjj"]
    bj = next(r for r in records if r["id"] == "bj-ai")
    assert float(bj["utilization"]) == pytest.approx(np.mean(BJ_AI_HOURLY))
    assert "7 sites, 1 below their utilization minimum" in proc.stderr
    proc = cli("--period", "2026-10-01/2026-10-03", "--store", url, cwd=tmp_path)
    assert proc.returncode == ExitStatus.OK, proc.stderr
    page = tmp_path / "report-2026-10-01-2026-10-03.html"
    assert "<h2>Methodology</h2>" in page.read_text(encoding="utf-8")  # English by default


_IMPORTED_BY_THE_RUN = """
import runpy, sys
sys.argv = ["computewatch", *sys.argv[1:]]
try:
    runpy.run_module("computewatch", run_name="__main__")
finally:
    print(" ".join(sorted(sys.modules)), file=sys.stderr)
"""


def test_a_csv_report_imports_no_plotting_templates_or_simulator(fleet_path):
    """Start-up is most of a month's report (issue 19): a CSV report imports neither
    matplotlib nor Jinja2 (the HTML and PDF renderings'), nor the simulator."""
    proc = subprocess.run([sys.executable, "-c", _IMPORTED_BY_THE_RUN, "report", "--period",
                           PERIOD, "--store", f"duckdb:///{fleet_path}", "--format", "csv",
                           "--out", "-", "--hub", "jjj"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == ExitStatus.OK, proc.stderr
    assert "bj-ai" in proc.stdout
    modules = set(proc.stderr.strip().splitlines()[-1].split())
    assert {"computewatch.reports._csv", "computewatch.pipelines.underuse", "pandas",
            "duckdb"} <= modules  # what it needs, so the list is the run's
    unwanted = {"matplotlib", "jinja2", "computewatch.reports._html",
                "computewatch.reports._plots", "computewatch.sim"}
    assert not unwanted & modules


def test_two_reports_of_one_file_run_at_once(fleet_path):
    """A report only reads: it opens the file read-only, so two at once, beside a third
    reader holding it open throughout, both succeed with the same rows (read-write, the
    second was refused DuckDB's lock)."""
    args = [sys.executable, "-m", "computewatch", "report", "--period", PERIOD, "--store",
            f"duckdb:///{fleet_path}", "--format", "csv", "--out", "-", "--hub", "jjj"]
    with duckdb.connect(str(fleet_path), read_only=True):  # another reader
        procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == ExitStatus.OK, err
    first, second = (list(csv.DictReader(io.StringIO(out))) for out, _ in outs)
    assert [r["id"] for r in first] == [s.id for s in TOPO.sites_of_hub("jjj")] + ["jjj"]
    bj = next(r for r in first if r["id"] == "bj-ai")
    assert float(bj["utilization"]) == pytest.approx(np.mean(BJ_AI_HOURLY))
    assert second == first


@pytest.mark.parametrize(("args", "message"), [
    (("--period", "2026-13"), "bad period '2026-13': month 13"),
    (("--period", "2026-08"), "no accelerator, meter or link data in 2026-08"),
    (("--period", PERIOD, "--hub", "atlantis"), "unknown hub"),
    (("--period", PERIOD, "--format", "docx"), "bad --format 'docx'"),
    (("--period", PERIOD, "--definition", "vibes"), "--definition 'vibes': unknown"),
    (("--period", PERIOD, "--format", "pdf", "--out", "-"), "cannot go to stdout"),
])
def test_cli_bad_input_is_one_line_and_exit_2(fleet_path, args, message):
    proc = cli("--store", f"duckdb:///{fleet_path}", *args)
    assert proc.returncode == ExitStatus.BAD_INPUT, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_on_an_empty_store_says_how_to_fill_it(tmp_path):
    DuckDBStore(tmp_path / "empty.duckdb").close()  # exists, holds nothing
    proc = cli("--store", f"duckdb:///{tmp_path / 'empty.duckdb'}")
    assert proc.returncode == ExitStatus.BAD_INPUT
    assert "holds no accelerator samples" in proc.stderr


def test_nothing_upstream_imports_the_reports():
    """Reports come after the pipelines in the flow: collectors, pipelines and the shared
    package never import them (only the CLI does)."""
    root = Path(__file__).resolve().parents[1]
    for package in ("computewatch", "collectors", "pipelines"):
        for path in (root / package).rglob("*.py"):
            if "cli" in path.parts or path.name == "__main__.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                     for a in n.names}
            names |= {n.module for n in ast.walk(tree)
                      if isinstance(n, ast.ImportFrom) and n.module}
            assert not any(m.startswith("computewatch.reports") for m in names), path


# --- the report and analyze agree -------------------------------------------------------------

def test_each_level_uses_the_policy_definition_and_says_so(report):
    hub = row(report, "hub", "jjj")
    # Busy fraction (the policy's for hubs): card-windows above 0.10. bj-ai's 4 cards from
    # hour 11 on (61 of 72 hours), zjk-a's 2 all 72 hours, zjk-b's 2 for its 24 hours.
    assert hub["utilization"] == pytest.approx((4 * 61 + 2 * 72 + 2 * 24) / (4 * 72 + 2 * 72
                                                                            + 2 * 24))
    assert hub["utilization_definition"] == "busy_fraction"
    assert row(report, "site", "bj-ai")["utilization_definition"] == "time_weighted"
    names = [e.name for e in methodology(report)]
    assert "utilization of a site (time_weighted)" in names
    assert "utilization of a hub (busy_fraction)" in names


def test_the_report_and_analyze_agree_on_every_site_and_hub(fleet_path):
    with opened(fleet_path) as store:
        period = parse_period(PERIOD)
        analysis = analyzed(store, period, ONLY_FAST)
        got = build_report(store, TOPO, POLICY, period, analysis)
    failing = {(f.subject_type, f.subject) for f in analysis.findings
               if f.pipeline == "underuse" and f.severity >= 1}
    assert ("site", "bj-ai") in failing
    for r in got.rows.itertuples():
        assert (r.utilization_verdict == "fail") == ((r.level, r.id) in failing), r.id
    bj = row(got, "site", "bj-ai")
    assert bj["utilization_shortfall_hours"] == 50  # hours 0..49 below 0.30


def test_a_shortfall_inside_a_passing_period_fails_as_analyze_says(tmp_path):
    # 24 h at 0.6 but 7 h at 0.1 in the middle: the day's mean (0.454) passes 0.30, yet the
    # site was below its minimum for 7 sustained hours, which analyze reports: so does the
    # report (and states the value, and the hours).
    hourly = [0.6] * 8 + [0.1] * 7 + [0.6] * 9
    with opened(tmp_path / "dip.duckdb") as store:
        write_accelerators(store, TOPO, "bj-ai", 4, hourly, 24)
        period = parse_period("2026-10-01")
        got = build_report(store, TOPO, POLICY, period, analyzed(store, period, ("underuse",)))
        by_value = build_report(store, TOPO, POLICY, period,
                                analyzed(store, period, ("underuse",)),
                                definition="time_weighted")
    bj = row(got, "site", "bj-ai")
    assert bj["utilization"] == pytest.approx(sum(hourly) / 24)
    assert bj["utilization_verdict"] == "fail" and bj["utilization_shortfall_hours"] == 7
    # Overriding the definition compares the period value instead, and says so.
    assert row(by_value, "site", "bj-ai")["utilization_verdict"] == "pass"


def test_a_link_finding_counts_for_both_of_its_sites(fleet_path):
    from computewatch.findings import Finding, Severity

    def links(_store, period, *_args):
        return [Finding("latency", "link_incident", "link", "bj-ai|zjk-a", Severity.CRITICAL,
                        0.006, 0.005, "s", period.start, period.end, hub="jjj",
                        site="bj-ai")]

    got = build(fleet_path, parse_period(PERIOD), pipelines=("links",),
                registry={"links": links})
    assert row(got, "site", "bj-ai")["findings_critical"] == 1
    assert row(got, "site", "zjk-a")["findings_critical"] == 1  # the other end
    assert row(got, "site", "zjk-b")["findings_critical"] == 0
    assert row(got, "hub", "jjj")["findings_critical"] == 1  # one finding, counted once


# --- history kept as rollups -------------------------------------------------------------------

def test_the_report_over_rollups_is_the_raw_report(fleet_path, report, tmp_path):
    """The same three days rolled up and their raw samples dropped (as retention does): the
    report reads the rollups unaware, and every number a regulator reads is the raw one
    (verdicts, utilization, idle hours, PUE, probes within budget); the latency windows
    widen to the rollups' hour, so only the window counts differ (and say so)."""
    path = tmp_path / "rolled.duckdb"
    with opened(path) as store:
        write_fleet(store, TOPO)
        assert store.refresh_rollups() > 0
        store.drop_before(START + timedelta(days=30))
        assert resolution(store, "accelerator", START) == timedelta(hours=1)  # rollups only
    period = parse_period(PERIOD)
    rolled = build(path, period, pipelines=ONLY_FAST)
    keys = ["level", "id"]
    want = report.rows.sort_values(keys).reset_index(drop=True)
    got = rolled.rows.sort_values(keys).reset_index(drop=True)
    for col in ("utilization_verdict", "pue_verdict", "accelerators"):
        assert got[col].tolist() == want[col].tolist(), col
    for col in ("utilization", "utilization_completeness", "idle_accelerator_hours",
                "allocated_idle_hours", "free_idle_hours", "link_probes",
                "link_probes_within_budget", "latency_compliance"):
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float),
                                   rtol=1e-9, err_msg=col)
    # Hourly readings against 5-minute ones: the period's energy is the same, bounded by
    # the readings nearest its ends (one reading step apart at most).
    np.testing.assert_allclose(got.pue.to_numpy(float), want.pue.to_numpy(float), rtol=1e-3)
    assert rolled.latency_window == timedelta(minutes=5)
    assert rolled.coverage["period_note"] == ""  # hourly rollups answer China days as asked
