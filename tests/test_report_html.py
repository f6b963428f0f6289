"""report.html: the evaluation report as one self-contained file, checked in a real headless Chromium."""

from __future__ import annotations

import base64
import os
import re
import shutil
from io import BytesIO
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sepsis_fusion.model.errors import SepsisFusionError, StudyError  # noqa: E402
from sepsis_fusion.model.evaluate import evaluate  # noqa: E402
from sepsis_fusion.model.report_html import write_html_report  # noqa: E402

INSTALL = "install chromium and chromium-driver: apt-get install chromium chromium-driver"
IMAGE_LINE = re.compile(r"!\[[^\]]*\]\([^)]+\)")


# session scope, like the run fixtures: pytest sets up wider scopes first, so a missing browser skips before training
@pytest.fixture(scope="session")
def browser():
    """Headless Chromium through selenium; skipped without it, unless SEPSIS_FUSION_REQUIRE_BROWSER=1 (CI)."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        if os.environ.get("SEPSIS_FUSION_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SEPSIS_FUSION_REQUIRE_BROWSER=1 but chromium or chromedriver is not on PATH: {INSTALL}")
        pytest.skip(INSTALL)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"):
        options.add_argument(arg)
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver: Selenium Manager never tries to download one
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    yield driver
    driver.quit()


def _png(path: Path, color: str) -> Path:
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1], color=color)
    fig.savefig(path, dpi=50)
    plt.close(fig)
    return path


def test_images_are_embedded_as_data_uris_and_a_missing_one_is_named(tmp_path):
    png = _png(tmp_path / "roc.png", "red")
    markdown = "# Evaluation of x\n\n| a | b |\n|---|---:|\n| 1 < 2 | 3 |\n\n![roc](roc.png)\n"
    out = write_html_report(markdown, tmp_path)
    assert out == tmp_path / "report.html"
    page = out.read_text(encoding="utf-8")
    uri = re.search(r'<img src="data:image/png;base64,([^"]+)" alt="roc"', page)
    assert uri and base64.b64decode(uri.group(1)) == png.read_bytes()
    assert "<title>Evaluation of x</title>" in page and '<meta charset="utf-8">' in page
    assert "<table>" in page and "1 &lt; 2" in page and "roc.png" not in page
    # raw HTML is escaped, never passed through
    page = write_html_report('# t\n\n<script src="https://x/y.js"></script>\n', tmp_path, title="t").read_text()
    assert "<script" not in page
    with pytest.raises(StudyError, match=r"report image flow\.png is missing") as missing:
        write_html_report("# t\n\n![flow](flow.png)\n", tmp_path)
    assert isinstance(missing.value, SepsisFusionError) and str(tmp_path / "flow.png") in str(missing.value)
    with pytest.raises(StudyError, match="not a file in the run folder"):
        write_html_report("# t\n\n![x](https://example.org/x.png)\n", tmp_path)


@pytest.fixture(scope="module")
def evaluated_run(synthetic_training_set, trained_run, tmp_path_factory) -> Path:
    """A copy of the trained run, evaluated here so the tests that evaluate the shared run are not disturbed."""
    run = tmp_path_factory.mktemp("html") / "run"
    shutil.copytree(trained_run, run)
    evaluate(synthetic_training_set, run, resamples=50)
    return run


def test_report_html_is_self_contained_and_renders_in_chromium(browser, evaluated_run):
    report, page = evaluated_run / "report.md", evaluated_run / "report.html"
    html = page.read_text(encoding="utf-8")
    for external in ('src="http', "src='http", "<link", "<script", "url(", "@import"):
        assert external not in html, external
    assert str(evaluated_run) not in html and str(evaluated_run.parent) not in html
    images = IMAGE_LINE.findall(report.read_text())
    assert len(images) >= 6

    browser.get(page.as_uri())
    assert browser.title == f"Evaluation of {evaluated_run.name}"
    headings = [h.text for h in browser.find_elements("css selector", "h1, h2")]
    for heading in (
        "Performance on the held-out test set",
        "Calibration",
        "Subgroups",
        "What the model relied on",
        "Cohort flow",
    ):
        assert any(h.startswith(heading) for h in headings), (heading, headings)
    assert len(browser.find_elements("tag name", "table")) >= 3
    shown = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)]);"
    )
    assert len(shown) == len(images)
    for complete, width, src in shown:
        assert complete and width > 0 and src == "data:image/png;base64,", (complete, width, src)
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe

    # a full-page screenshot: the viewport as tall as the page (the window adds its frame), capped below
    # Chromium's largest capture
    height, inner = browser.execute_script("return [document.documentElement.scrollHeight, window.innerHeight];")
    browser.set_window_size(1280, min(height + 2000 - inner, 16000))
    pixels = mpimg.imread(BytesIO(browser.get_screenshot_as_png()), format="png")
    assert pixels.ndim == 3 and pixels.shape[1] >= 1000 and pixels.shape[0] >= min(height, 14000), pixels.shape
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05
    white = np.all(rgb > 0.98, axis=-1).mean()
    assert white < 0.97, white
