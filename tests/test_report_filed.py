"""The report as a document a regulator files, in zh-CN and English, on the hand-computable
fleet of report_fixtures: the cover (software version, the policy's version and SHA-256, the
data window and completeness), the scope by province, energy in kWh, the zh-CN CSV, and no
untranslated word in either language's HTML text (the browser and PDF checks are in
test_report_browser.py)."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from html.parser import HTMLParser
from importlib import resources
from importlib.metadata import version

import numpy as np
import pytest
from report_fixtures import HOURS, PERIOD, write_fleet
from report_text import chinese_outside, english_words

from computewatch.pipelines import run_pipelines
from computewatch.policy import load_policy
from computewatch.reports import (
    COLUMNS,
    build_report,
    check_scope,
    default_report_path,
    parse_period,
    render_csv,
    render_html,
)
from computewatch.store import DuckDBStore
from computewatch.topology import load_topology

TOPO = load_topology()
POLICY = load_policy(topology=TOPO)
SHIPPED = (resources.files("computewatch") / "data" / "policy.yaml").read_bytes()
ENGLISH_SOURCES = "\n".join(line for line in SHIPPED.decode("utf-8").splitlines()
                            if "source_zh" not in line)
"""What the shipped policy quotes in its English sources (Chinese document names among it)."""


@pytest.fixture(scope="module")
def fleet_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("filed") / "fleet.duckdb"
    store = DuckDBStore(path)
    try:
        write_fleet(store, TOPO)
    finally:
        store.close()
    return path


def _build(path, **kwargs):
    store = DuckDBStore(path)
    try:
        period = parse_period(PERIOD)
        analysis = run_pipelines(store, period.period, POLICY, TOPO,
                                 only=("underuse", "pue", "latency"), write=False)
        return build_report(store, TOPO, POLICY, period, analysis, **kwargs)
    finally:
        store.close()


@pytest.fixture(scope="module")
def report(fleet_path):
    return _build(fleet_path)


class _Text(HTMLParser):
    """The text a reader sees: everything but the style sheet, plus the plots' labels."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "script", "title")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script", "title")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(parser.parts)


def _row(report, level, subject):
    (r,) = report.rows[(report.rows.level == level) & (report.rows.id == subject)].to_dict(
        "records")
    return r


# --- the cover ------------------------------------------------------------------------------ -

@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_cover_states_version_policy_hash_window_and_completeness(report, language):
    html = render_html(report, language=language)
    cover = visible_text(html[html.index('<header id="cover">'):html.index("</header>")])
    assert version("computewatch") in cover
    assert hashlib.sha256(SHIPPED).hexdigest() in cover  # the whole hash, computed here
    assert "2026.12" in cover  # the shipped policy's version
    # The data window: the first and last hourly window with data, China time (08:00 = 00:00Z).
    assert "2026-10-01 00:00 – 2026-10-03 23:00" in cover
    # Completeness: bj-ai and zjk-a 72 h each, zjk-b 24 h, of every site x 72 windows.
    held, expected = 72 + 72 + 24, len(TOPO.sites) * 72
    assert f"{held} / {expected:,}" in cover and f"{held / expected:.1%}" in cover
    if language == "zh-CN":
        assert "算力中心监管报告" in html and "数据完整度" in cover and "策略" in cover
    else:
        assert "Compute Center Regulatory Report" in html and "Completeness" in cover


@pytest.mark.parametrize(("language", "counter"), [
    ("en", '"Page " counter(page) " of " counter(pages)'),
    ("zh-CN", '"第 " counter(page) " 页 / 共 " counter(pages) " 页"'),
])
def test_every_printed_page_is_numbered_in_the_language(report, language, counter):
    html = render_html(report, language=language)
    assert f"@bottom-right {{ content: {counter};" in html


def test_the_policy_hash_is_of_the_file_the_report_ran_with(fleet_path, tmp_path):
    edited = tmp_path / "policy.yaml"
    edited.write_bytes(SHIPPED.replace(b'version: "2026.12"', b'version: "local-1"'))
    policy = load_policy(edited, topology=TOPO)
    store = DuckDBStore(fleet_path)
    try:
        period = parse_period(PERIOD)
        got = build_report(store, TOPO, policy, period,
                           run_pipelines(store, period.period, policy, TOPO, only=("pue",),
                                         write=False),
                           policy_name=str(edited),
                           policy_digest=hashlib.sha256(edited.read_bytes()).hexdigest())
    finally:
        store.close()
    html = render_html(got, language="en")
    assert hashlib.sha256(edited.read_bytes()).hexdigest() in html
    assert hashlib.sha256(SHIPPED).hexdigest() not in html and "local-1" in html


# --- scope by province ---------------------------------------------------------------------- -

def test_province_scope_has_the_province_sites_only(fleet_path):
    hebei = sorted(s.id for s in TOPO.sites if s.province == "Hebei")
    got = _build(fleet_path, province="河北")  # the Chinese name, as a regulator writes it
    assert got.province == "Hebei" and sorted(got.sites.id) == hebei
    assert got.hubs.empty  # a hub row would pool sites outside the province
    assert _row(got, "site", "zjk-a")["utilization"] == pytest.approx(0.6)
    # Links and findings of the scope: the bj-ai -- zjk-a link touches zjk-a, in Hebei.
    assert set(got.links.src_site) | set(got.links.dst_site) == {"bj-ai", "zjk-a"}
    assert got.coverage["sites"] == len(hebei)
    html = render_html(got, language="zh-CN")
    assert "省份：河北" in html and 'id="hub-table"' not in html
    assert default_report_path(got, "pdf").name == "report-2026-10-01-2026-10-03-hebei.pdf"


def test_a_bad_province_is_refused_naming_the_option():
    with pytest.raises(ValueError, match="--province 'Atlantis'"):
        check_scope(TOPO, None, None, province="Atlantis")
    assert check_scope(TOPO, None, None, province="hebei") == "Hebei"
    with pytest.raises(ValueError, match="no site of the topology is in both"):
        check_scope(TOPO, "gba", None, province="Hebei")


# --- energy -----------------------------------------------------------------------------------

def test_energy_is_stated_in_kwh_from_the_meters(report):
    """bj-ai's IT meter draws 800 + 40 * ((k // 12) % 5) W in 5-minute step k (k = 0 at 15
    minutes before the period, report_fixtures.write_meters): the period holds steps 3 to
    3 + 72 * 12 - 1; facility energy is 1.3 times IT energy."""
    watts = np.array([800.0 + 40 * ((k // 12) % 5) for k in range(3, 3 + HOURS * 12)])
    it_kwh = float((watts * 300).sum()) / 3.6e6  # J -> kWh
    bj = _row(report, "site", "bj-ai")
    assert bj["it_energy_kwh"] == pytest.approx(it_kwh, rel=0.01)
    assert bj["facility_energy_kwh"] == pytest.approx(1.3 * it_kwh, rel=0.01)
    html = render_html(report, language="en")
    cell = re.search(r'id="site-bj-ai".*?data-col="energy">([^<]*)<', html, re.S).group(1)
    assert cell == f"{1.3 * it_kwh:,.1f} kWh / {it_kwh:,.1f} kWh"  # under 1 MWh: kWh
    assert "joule" not in html.lower()


# --- the CSV ------------------------------------------------------------------------------------

def test_the_zh_cn_csv_has_chinese_headers_and_words_and_the_same_numbers(report):
    en, zh = io.StringIO(), io.StringIO()
    render_csv(report, en, language="en")
    render_csv(report, zh, language="zh-CN")
    en_rows = list(csv.reader(io.StringIO(en.getvalue())))
    zh_rows = list(csv.reader(io.StringIO(zh.getvalue())))
    assert en_rows[0] == list(COLUMNS)  # scripts keep reading the ids
    header = zh_rows[0]
    assert len(header) == len(COLUMNS) and len(set(header)) == len(header)
    assert all(re.search(r"[\u4e00-\u9fff]", h) or h in ("PUE",) for h in header), header
    assert header[list(COLUMNS).index("utilization")] == "算力利用率"
    bj_en = next(r for r in en_rows if r[1] == "bj-ai")
    bj_zh = next(r for r in zh_rows if r[1] == "bj-ai")
    verdict = list(COLUMNS).index("utilization_verdict")
    assert (bj_en[verdict], bj_zh[verdict]) == ("fail", "未达标")
    assert bj_zh[0] == "站点"
    utilization = list(COLUMNS).index("utilization")
    assert bj_zh[utilization] == bj_en[utilization]  # numbers are numbers in every language


# --- no untranslated word -----------------------------------------------------------------------

def _ids(report) -> set[str]:
    """Ids a report may show as they are: namespaces, finding subjects, CSV columns."""
    meters = {m.split()[0] for cell in report.rows.pue_silent_meters for m in cell.split(";")
              if m.strip()}
    return (set(report.namespaces.namespace) | set(report.findings.subject.astype(str))
            | set(COLUMNS) | meters | {"s1-aux"})


def test_the_zh_cn_html_has_no_english_word(report):
    text = visible_text(render_html(report, language="zh-CN"))
    assert re.search(r"[\u4e00-\u9fff]", text)
    assert english_words(text, TOPO, _ids(report)) == []
    assert "京津冀" in text and "张家口" in text  # places by name


def test_the_english_html_has_no_chinese_but_what_the_policy_quotes(report):
    text = visible_text(render_html(report, language="en"))
    assert chinese_outside(text, ENGLISH_SOURCES) == []
    assert "Methodology" in text and "jjj" in text


def test_the_untranslated_word_check_can_fail(report):
    """The checks above are not vacuous: English prose and a stray Chinese word are caught."""
    assert english_words("算力利用率 below the minimum", TOPO, set()) == ["below", "the",
                                                                          "minimum"]
    assert english_words("zjk-a 张家口 PUE 1.25 kWh site_below_minimum", TOPO, set()) == []
    assert chinese_outside("pass 达标", ENGLISH_SOURCES) == ["达标"]
