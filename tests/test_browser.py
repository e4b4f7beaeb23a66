"""The course in a real browser: headless Chromium (Debian's) driven by Selenium.

1. JupyterLab: open notebook 01, run all its cells, move the learning-rate slider and
   see the plot change, with no JavaScript error in the browser console.
2. A slide deck opened from disk (file://): reveal.js starts, slides advance, a figure
   and the maths render, all without a network.
3. Every deck, slide by slide (scripts/deck_metrics.py): nothing runs off a slide, right
   arrow visits every slide in order, text and code are large enough to read from the back
   of a room, and figures fill the slide. A deck made to overflow is caught.

Screenshots of both go to reports/screenshots/. The tests are skipped only where
Chromium or ChromeDriver is not installed (CI installs both: see .ci/run).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import importlib.util

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("deck_metrics", ROOT / "scripts" / "deck_metrics.py")
deck_metrics = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deck_metrics)
CHROMIUM, CHROMEDRIVER = deck_metrics.CHROMIUM, deck_metrics.CHROMEDRIVER
SCREENSHOTS = ROOT / "reports" / "screenshots"
NOTEBOOK = "01_linear_regression.ipynb"
DECK = ROOT / "slides" / "01_linear_regression.slides.html"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"),
]


@pytest.fixture
def browser(tmp_path, monkeypatch):
    """A headless Chromium with an empty profile that never reaches the network."""
    monkeypatch.setenv("SE_OFFLINE", "true")   # restored after the test (start_browser sets it too)
    driver = deck_metrics.start_browser(tmp_path / "chromium-profile", window=(1400, 1000))
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    driver.save_screenshot(str(path))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a free loopback port, serving a copy of notebook 01 (the original is never saved)."""
    root = tmp_path / "course"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, root / "notebooks" / NOTEBOOK)
    # No "news" pop-up and no update check: nothing in the page reaches for the network.
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}\n')
    port, token = free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, to drive the page
           f"--LabApp.user_settings_dir={tmp_path / 'settings'}", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                req = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
                urllib.request.urlopen(req, timeout=5).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield base, token, tmp_path / "lab.log"
    finally:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


# Waits for the notebook and its kernel, runs every cell, and waits until all have run.
RUN_ALL = """
const done = arguments[arguments.length - 1];
const sleep = ms => new Promise(r => setTimeout(r, ms));
(async () => {
  while (!window.jupyterapp) await sleep(200);
  const app = window.jupyterapp;
  await app.restored;
  let panel;
  while (!(panel = app.shell.currentWidget) || !panel.sessionContext) await sleep(200);
  await panel.context.ready;
  await panel.sessionContext.ready;
  const codeCells = () => Array.from(panel.content.model.cells).filter(c => c.type === 'code');
  await app.commands.execute('notebook:run-all-cells');
  while (panel.sessionContext.session.kernel.status !== 'idle' || codeCells().some(c => c.executionCount === null))
    await sleep(250);
  app.shell.collapseLeft();
  done({ok: true, cells: codeCells().length,
        errors: codeCells().flatMap(c => c.outputs.toJSON().filter(o => o.output_type === 'error').map(o => o.ename))});
})().catch(e => done({ok: false, error: String(e)}));
"""

KERNEL_IDLE = "return window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle';"


def wait_for(predicate, timeout: float, what: str, step: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.timeout(300)
def test_jupyterlab_runs_notebook_01_and_its_slider_redraws_the_plot(browser, lab):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, token, lab_log = lab
    browser.get(f"{base}/lab/tree/notebooks/{NOTEBOOK}?token={token}")
    result = browser.execute_async_script(RUN_ALL)
    assert result["ok"], result
    assert result["cells"] > 5 and not result["errors"], f"cells raised: {result['errors']}"

    # The interactive learning-rate demo: a slider labelled "lr" above a plot.
    sliders = browser.find_elements(By.CSS_SELECTOR, ".widget-slider")
    lr = next((s for s in sliders if s.find_element(By.CSS_SELECTOR, "label").text.strip() == "lr"), None)
    assert lr is not None, f"no 'lr' slider among {[s.text for s in sliders]}"
    demo = lr.find_element(By.XPATH, "ancestor::div[contains(@class, 'widget-interact')]")

    def plot() -> str:
        images = demo.find_elements(By.CSS_SELECTOR, ".jp-OutputArea img")
        return images[0].get_attribute("src") if images else ""

    before = wait_for(plot, 30, "the learning-rate plot")
    value_before = lr.find_element(By.CSS_SELECTOR, ".widget-readout").text
    handle = lr.find_element(By.CSS_SELECTOR, ".noUi-handle")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", handle)
    handle.click()
    for _ in range(5):
        handle.send_keys(Keys.ARROW_RIGHT)
    value_after = lr.find_element(By.CSS_SELECTOR, ".widget-readout").text
    assert value_after != value_before, "the slider did not move"
    # Each key press re-runs the demo; wait until the kernel has finished the last one.
    time.sleep(0.5)
    wait_for(lambda: browser.execute_script(KERNEL_IDLE) and plot(), 60, "the redrawn plot")
    after = plot()
    assert after.startswith("data:image/png") and after != before, "moving the slider did not change the plot"
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", demo)
    screenshot(browser, "jupyterlab_01_lr_slider.png")
    errors = console_errors(browser)
    server_errors = [line for line in lab_log.read_text(errors="replace").splitlines() if line.startswith("[E")]
    assert not errors, f"JavaScript errors in the console: {errors}; server errors: {server_errors}"


@pytest.mark.timeout(120)
def test_slide_deck_opens_from_disk_and_shows_a_figure(browser):
    if not (ROOT / "slides" / "reveal.js" / "dist" / "reveal.js").exists():
        pytest.skip("slides/reveal.js/ is not installed (`make setup` installs it with npm)")
    assert DECK.exists(), "run `make slides`"
    browser.get(DECK.as_uri())
    wait_for(lambda: browser.execute_script("return !!(window.Reveal && Reveal.isReady())"), 30, "reveal.js")
    total = browser.execute_script("return Reveal.getTotalSlides()")
    assert total > 5, f"only {total} slides"
    # MathJax (local copy) typesets the formulas of the title slide.
    wait_for(lambda: browser.execute_script("return document.querySelectorAll('mjx-container').length"), 30,
             "MathJax to render the formulas")

    shown = """
    const imgs = Array.from(Reveal.getCurrentSlide().querySelectorAll('img'));
    return imgs.some(i => i.complete && i.naturalWidth > 0);"""
    advanced = 0
    while not browser.execute_script(shown):
        before = browser.execute_script("return Reveal.getIndices()")
        browser.execute_script("Reveal.next()")
        advanced += 1
        assert browser.execute_script("return Reveal.getIndices()") != before, "Reveal.next() did not advance"
        assert advanced < total, "no slide shows a figure"
    time.sleep(0.5)  # let the slide transition finish before the screenshot
    screenshot(browser, "deck_01_first_figure.png")
    errors = console_errors(browser)
    assert not errors, f"JavaScript errors in the console: {errors}"


def _needs_reveal():
    if not (ROOT / "slides" / "reveal.js" / "dist" / "reveal.js").exists():
        pytest.skip("slides/reveal.js/ is not installed (`make setup` installs it with npm)")


# What a deck must give a presenter (the 1280 x 720 slide's pixels).
MIN_BODY_PX, MIN_CODE_PX = 28, 24
MAX_MOSTLY_CODE = 0.10          # share of all slides whose visible area is mostly code


@pytest.mark.timeout(600)
def test_every_deck_fits_its_slides_and_right_arrow_visits_them_all(browser):
    """One page load per deck; every slide measured (deck_metrics.MEASURE), then walked with right arrow."""
    _needs_reveal()
    decks = sorted((ROOT / "slides").glob("*.slides.html"))
    assert decks, "no decks: run `make slides`"
    found, slides = [], []
    for deck in decks:
        result = deck_metrics.measure_deck(browser, deck)
        found += [f"{deck.name}: {problem}" for problem in deck_metrics.problems(result)]
        for i, s in enumerate(result["slides"]):
            where = f"{deck.name}: slide {i + 1} ({s['title'].strip()[:50]!r})"
            if s["body_px"] < MIN_BODY_PX or s["code_px"] < MIN_CODE_PX:
                found.append(f"{where}: text {s['body_px']} px, code {s['code_px']} px")
            for f in s["figures"]:
                if f["width"] < 0.5:   # every figure at least half the slide wide
                    found.append(f"{where}: a figure drawn {f['width']:.0%} of the slide wide")
        slides += result["slides"]
        errors = console_errors(browser)
        assert not errors, f"{deck.name}: JavaScript errors in the console: {errors}"
    assert not found, "\n".join(found)
    mostly_code = sum(s["mostly_code"] for s in slides)
    assert mostly_code <= MAX_MOSTLY_CODE * len(slides), f"{mostly_code} of {len(slides)} slides are mostly code"


@pytest.mark.timeout(120)
def test_the_deck_check_catches_overflow_and_vertical_stacks(browser, tmp_path):
    """A deck with a slide too long, a code line too wide and a vertical stack fails, naming each slide."""
    _needs_reveal()
    for asset in ("reveal.js", "mathjax", "deck.css"):
        (tmp_path / asset).symlink_to(ROOT / "slides" / asset)
    html = (ROOT / "slides" / "01_linear_regression.slides.html").read_text(encoding="utf-8")
    long_code = "\n".join(f"x{i} = {i}" for i in range(40))
    wide = "<pre style='white-space: pre; overflow-x: auto'>" + "y = 1 + " * 60 + "</pre>"
    extra = (f'<section><div class="slide text"><h2>Too long</h2><pre class="code">{long_code}</pre></div></section>'
             f'<section><div class="slide text"><h2>Too wide</h2>{wide}</div></section>'
             '<section><section><div class="slide text"><h2>Stacked</h2></div></section>'
             '<section><div class="slide text"><h2>Below</h2></div></section></section>')
    deck = tmp_path / "broken.slides.html"
    deck.write_text(html.replace('<div class="reveal"><div class="slides">',
                                 '<div class="reveal"><div class="slides">' + extra, 1), encoding="utf-8")
    found = deck_metrics.problems(deck_metrics.measure_deck(browser, deck))
    assert any(p.startswith("slide 1 ('Too long') runs") and "bottom" in p for p in found), found
    assert any(p.startswith("slide 2 ('Too wide') runs") and "right" in p for p in found), found
    assert any("right arrow does not visit every slide" in p for p in found), found
    assert any("nested vertically" in p for p in found), found
    assert not any(p.startswith(("slide 5 ", "slide 6 ")) for p in found), found   # the deck's own slides fit
