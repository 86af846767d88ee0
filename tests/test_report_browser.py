"""The report in a real browser: headless Chromium (Debian chromium + chromium-driver) driven by
selenium loads the HTML and sees its key content; the PDF printed by the same browser renders
in poppler (pdftoppm, pdftotext)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from report_fixtures import PERIOD, write_fleet
from servers import installed

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
        analysis = run_pipelines(store, period.period, POLICY, TOPO, only=("underuse", "pue"),
                                 write=False)
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
    assert browser.title.startswith("算力中心监管报告 Compute Center Regulatory Report — "
                                    + PERIOD)
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
    assert "方法说明 Methodology" in method.text
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
                   "site_below_minimum", "方法说明", "数据完整性"):
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
