"""The report in a real browser: headless Chromium (Debian chromium + chromium-driver) driven by
selenium loads the HTML and sees its key content, in English and zh-CN with no untranslated
word; the PDF printed by the same browser renders in poppler (pdftoppm, pdftotext), numbers
its pages, embeds no Type 3 font (pdffonts), and the demo day's fits 12 pages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from report_fixtures import PERIOD, write_fleet
from report_text import chinese_outside, english_words
from servers import installed
from test_report_filed import ENGLISH_SOURCES, _ids

from computewatch.pipelines import run_pipelines
from computewatch.policy import load_policy
from computewatch.reports import (
    HEADLESS_FLAGS,
    ChromiumMissingError,
    build_report,
    find_chromium,
    html_to_pdf,
    parse_period,
    render_html,
    write_report,
)
from computewatch.store import DuckDBStore
from computewatch.topology import load_topology

pytestmark = pytest.mark.slow  # Chromium renders and prints the report

TOPO = load_topology()
POLICY = load_policy(topology=TOPO)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    store = DuckDBStore(tmp_path_factory.mktemp("browser") / "fleet.duckdb")
    try:
        write_fleet(store, TOPO)
        period = parse_period(PERIOD)
        analysis = run_pipelines(store, period.period, POLICY, TOPO,
                                 only=("underuse", "pue", "latency"), write=False)
        return build_report(store, TOPO, POLICY, period, analysis)
    finally:
        store.close()


@pytest.fixture(scope="module")
def page(report, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("page") / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")  # no network here
    options = webdriver.ChromeOptions()
    options.binary_location = installed("chromium")
    for flag in (*HEADLESS_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(
        executable_path=installed("chromedriver"), log_output=str(tmp_path / "chromedriver.log")))
    try:
        yield driver
    finally:
        driver.quit()


def test_the_report_shows_its_key_content_in_chromium(browser, page, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    assert browser.title.startswith("Compute Center Regulatory Report — " + PERIOD)
    title = browser.find_element(By.ID, "title")
    assert title.is_displayed() and title.size["height"] > 0

    def shown(element):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        assert element.is_displayed(), element.get_attribute("id")
        return element

    bj = shown(browser.find_element(By.ID, "site-bj-ai"))
    cells = {c.get_attribute("data-col"): c.text
             for c in bj.find_elements(By.CSS_SELECTOR, "td[data-col]")}
    assert cells["utilization"] == "22.8%" and cells["utilization_verdict"].startswith("fail")
    assert cells["pue"] == "1.300" and cells["pue_verdict"].startswith("fail")
    assert shown(browser.find_element(By.ID, "hub-jjj")).text.startswith("jjj")
    method = shown(browser.find_element(By.ID, "methodology"))
    assert "Methodology" in method.text
    assert POLICY.utilization.minimums.site.default.source[:60] in method.text
    for plot in ("utilization", "pue", "latency"):
        svg = shown(browser.find_element(By.CSS_SELECTOR, f"#plot-{plot} svg"))
        assert svg.size["width"] > 200 and svg.size["height"] > 100, (plot, svg.size)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 100, 16000))
    browser.execute_script("window.scrollTo(0, 0);")
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    with Image.open(shot) as im:
        assert im.size[1] > 2000  # the whole page, not one screen
        colours = im.convert("RGB").resize((64, 256)).getcolors(64 * 256)
        assert colours is not None and len(colours) > 20  # drawn content, not a blank page


def test_the_pdf_prints_and_renders(page, tmp_path):
    for tool in ("chromium", "pdfinfo", "pdftoppm", "pdftotext"):  # chromium, poppler-utils
        installed(tool)
    pdf = html_to_pdf(page.read_text(encoding="utf-8"), tmp_path / "report.pdf")
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    assert "A4" in info.stdout
    pages = int(next(ln.split()[-1] for ln in info.stdout.splitlines()
                     if ln.startswith("Pages:")))
    assert pages >= 3
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    for needle in ("Compute Center Regulatory Report", "bj-ai", "Methodology",
                   "site_below_minimum", "Data completeness"):
        assert needle in text, needle
    subprocess.run(["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True)
    (png,) = tmp_path.glob("page*.png")
    with Image.open(png) as im:
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100  # ink on paper


def test_pdf_without_chromium_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("COMPUTEWATCH_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no browser on it
    with pytest.raises(ChromiumMissingError, match="apt-get install chromium"):
        find_chromium()
    with pytest.raises(ChromiumMissingError, match="--format html"):
        html_to_pdf("<html></html>", tmp_path / "x.pdf")
    monkeypatch.setenv("COMPUTEWATCH_CHROMIUM", str(tmp_path / "nowhere"))
    with pytest.raises(ChromiumMissingError, match=r"COMPUTEWATCH_CHROMIUM=.*nowhere"):
        find_chromium()


# --- zh-CN and English: every word translated, every page numbered, fonts embedded ------------

_SEEN_TEXT = """return document.body.innerText + '\\n' + Array.from(
    document.querySelectorAll('svg text')).map(t => t.textContent).join('\\n');"""


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_text_chromium_shows_is_all_in_the_language(browser, report, language, tmp_path):
    page = tmp_path / f"report-{language}.html"
    page.write_text(render_html(report, language=language), encoding="utf-8")
    browser.get(page.as_uri())
    text = browser.execute_script(_SEEN_TEXT)
    assert len(text) > 5000 and "bj-ai" in browser.page_source  # the whole report, ids kept
    if language == "zh-CN":
        assert browser.title.startswith("算力中心监管报告 — " + PERIOD)
        assert english_words(text, TOPO, _ids(report)) == []
        assert "方法说明" in text and "京津冀" in text and "北京" in text
        # each rule's definition in Chinese, as the pipeline applied it (written by hand)
        assert "按 60 分钟窗口计算的 6 h 滚动平均值低于站点最低值" in text
        assert "基于电能计量的 PUE" in text and "窗口；目标值来源：" in text
        assert "每个 5 分钟窗口内，将该链路全部探测" in text
    else:
        assert chinese_outside(text, ENGLISH_SOURCES) == []
    svg_text = browser.execute_script(
        "return Array.from(document.querySelectorAll('#plot-utilization svg text'))"
        ".map(t => t.textContent).join(' ')")
    assert ("算力利用率" if language == "zh-CN" else "utilization") in svg_text  # text, not paths


def _pdf_facts(pdf: Path) -> tuple[int, str, str]:
    """Pages (pdfinfo), text (pdftotext, pages split by form feeds) and fonts (pdffonts)."""
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True,
                          check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True,
                           check=True).stdout
    return pages, text, fonts


def _font_types(fonts: str) -> set[str]:
    """The type column of pdffonts' table (after its two header lines)."""
    header, _rule, *rows = fonts.splitlines()
    start = header.index("type")
    return {row[start:start + 17].strip() for row in rows if row.strip()}


@pytest.mark.parametrize(("language", "footer"), [
    ("zh-CN", r"第\s*{n}\s*页\s*/\s*共\s*{total}\s*页"),
    ("en", r"Page\s+{n}\s+of\s+{total}"),
])
def test_the_printed_report_is_a_filed_document(report, language, footer, tmp_path):
    for tool in ("chromium", "pdfinfo", "pdffonts", "pdftotext"):
        installed(tool)
    pdf = write_report(report, "pdf", tmp_path / "report.pdf", language=language)
    pages, text, fonts = _pdf_facts(pdf)
    types = _font_types(fonts)
    assert types and "Type 3" not in types, fonts
    assert types <= {"CID TrueType", "TrueType"}, fonts  # embedded TrueType outlines only
    assert all(row.split()[-5] == "yes" for row in fonts.splitlines()[2:]), fonts  # embedded
    sheets = text.split("\f")
    for n in range(1, pages + 1):  # every page carries its number and the total
        assert re.search(footer.format(n=n, total=pages), sheets[n - 1]), (n, sheets[n - 1][-300:])
    first = sheets[0]
    assert report.policy_sha256[:12] in first and "2026.12" in first  # the cover
    if language == "zh-CN":
        assert "算力中心监管报告" in first and "数据完整度" in first
        assert english_words(text, TOPO, _ids(report), wrapped=True) == []
    else:
        assert "Compute Center Regulatory Report" in first and "Completeness" in first
        assert chinese_outside(text, ENGLISH_SOURCES) == []


@pytest.fixture(scope="module")
def demo_day(tmp_path_factory):
    """The report of `computewatch demo`'s day (the default fleet, 24 h), built once."""
    tmp = tmp_path_factory.mktemp("demo-day")
    done = subprocess.run([sys.executable, "-m", "computewatch", "demo", "--no-analyze",
                           "--store", str(tmp / "demo.duckdb"), "--truth",
                           str(tmp / "truth.json"), "--format", "json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    store = DuckDBStore(tmp / "demo.duckdb")
    try:
        bounds = store.time_bounds("accelerator")
        period = parse_period("24h", last_sample_end=bounds[1] + timedelta(minutes=1))
        analysis = run_pipelines(store, period.period, POLICY, TOPO, write=False)
        return build_report(store, TOPO, POLICY, period, analysis)
    finally:
        store.close()


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_demo_day_prints_on_at_most_12_pages_with_summary_and_plots_first(
        demo_day, language, tmp_path):
    pdf = write_report(demo_day, "pdf", tmp_path / "demo.pdf", language=language)
    pages, text, fonts = _pdf_facts(pdf)
    assert pages <= 12, pages
    assert "Type 3" not in _font_types(fonts)
    first = text.split("\f")[0]
    titles = (("摘要", "算力利用率分布", "时延圈达标率", "各站点电能利用效率（PUE）")
              if language == "zh-CN" else
              ("Summary", "Utilization distribution", "Latency-tier compliance", "PUE by site"))
    for title in titles:  # page 1 holds the summary and every plot
        assert title in first, title
    for n, sheet in enumerate(text.split("\f")[:pages], start=1):  # no mostly-blank page
        lines = [ln for ln in sheet.splitlines() if ln.strip()]
        assert n == pages or len(lines) >= 20, (n, len(lines))


RULE_FRAGMENTS = {  # each rule's definition in the zh-CN report, as written by hand
    "site_below_minimum": "滚动平均值低于站点最低值",
    "hub_below_minimum": "滚动平均值低于枢纽最低值",
    "allocated_idle": "命名空间的 Pod 占用的卡连续闲置", "pue_over_target": "窗口；目标值来源：",
    "pue_excursion": "逐小时 PUE 比该站点本时段中位数高出", "accelerator_lost": "加速卡健康状态",
    "site_anomaly": "计算稳健 z 分数", "idle_capacity_within_circle": "城市到站点的 RTT",
    "link_degraded": "多窗口告警", "tier_budget_unmet": "按设计即超出预算",
    "route_inflation": "路由迂回系数 = 本时段各", "budget_below_physics": "任何路由都无法满足",
}


def test_the_demo_days_zh_cn_report_states_every_rule_in_chinese(demo_day, browser, tmp_path):
    """Every pipeline's findings (the demo day has them all): the methodology restates each
    rule's definition in Chinese, in the browser's text and in the printed PDF's."""
    rules = set(demo_day.findings.rule)
    assert set(RULE_FRAGMENTS) <= rules, set(RULE_FRAGMENTS) - rules
    page = tmp_path / "demo-zh.html"
    page.write_text(render_html(demo_day, language="zh-CN"), encoding="utf-8")
    browser.get(page.as_uri())
    seen = browser.execute_script(_SEEN_TEXT)
    pdf = write_report(demo_day, "pdf", tmp_path / "demo-zh.pdf", language="zh-CN")
    _pages, printed, _fonts = _pdf_facts(pdf)
    ids = _ids(demo_day)
    assert english_words(seen, TOPO, ids) == []
    assert english_words(printed, TOPO, ids, wrapped=True) == []
    flat = re.sub(r"\s+", "", printed)  # pdftotext breaks lines inside a cell
    for rule, fragment in RULE_FRAGMENTS.items():
        assert fragment in seen, rule
        assert re.sub(r"\s+", "", fragment) in flat, rule
