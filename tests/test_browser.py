"""End to end in headless Chromium: start `streamlit run app/main.py`, open every page, upload a
PNG (and a non-image) in the inspector, and keep screenshots in artifacts/screenshots/."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from app_fixtures import REPO, make_png
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "artifacts" / "screenshots"
PAGES = {  # url path -> text that must appear once the page has rendered
    "": "Runs found",
    "Training_dynamics": "Scheduler parameters",
    "Feature_space": "Selected sample",
    "Masks": "Dataset view",
    "Case_studies": "Side by side",
    "Inspector": "Counterfactual edits",
    "Compare": "Table 1",
    "Robustness": "Flipped examples",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app_runs):
    port = free_port()
    env = {**os.environ, "CMCS_RUNS_DIR": str(app_runs), "HF_HUB_OFFLINE": "1"}
    SHOTS.mkdir(parents=True, exist_ok=True)
    log = open(SHOTS.parent / "streamlit_test.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start within 60 s; see artifacts/streamlit_test.log")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).is_file(), "Debian chromium missing: apt-get install chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def settle(page, text: str, timeout: float = 90_000) -> None:
    """Wait for the page's marker text, then for Streamlit to finish running the script."""
    page.get_by_text(text, exact=False).first.wait_for(timeout=timeout)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_timeout(800)


def test_every_page_renders(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    for path, marker in PAGES.items():
        page.goto(f"{server}/{path}?run=cap_cmcs")
        settle(page, marker)
        assert page.locator("[data-testid='stException']").count() == 0, f"{path or 'Home'} raised"
        if path not in ("", "Compare"):
            # Streamlit loads the plotly bundle lazily: on a slow machine the first chart can draw
            # well after the script has finished, so wait for it rather than count at once.
            charts = page.locator(".js-plotly-plot")
            try:
                charts.first.wait_for(state="attached", timeout=60_000)
            except PlaywrightTimeout:
                pytest.fail(f"{path}: no plotly chart drew within 60 s")
            assert charts.count() >= 1
        page.screenshot(path=str(SHOTS / f"{path or 'Home'}.png"), full_page=True)
    page.goto(f"{server}/?run=cap_cmcs")
    settle(page, "Runs found")
    body = page.inner_text("body")
    assert "Runs found (3)" in body and "visual source captions" in body
    assert page.locator("[data-testid='stDataFrame']").count() >= 1
    assert "unreadable run folder" in body  # the broken folder is reported, the app keeps going
    page.close()


def test_inspector_upload(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(f"{server}/Inspector?run=pix_cmcs")
    settle(page, "Counterfactual edits")
    upload = page.locator("[data-testid='stFileUploaderDropzoneInput']").first
    upload.set_input_files(str(make_png(tmp_path / "upload.png", (200, 30, 30), 300)))
    settle(page, "visual input: uploaded upload.png")
    metric = page.locator("[data-testid='stMetric']").first.inner_text()
    assert "Final label" in metric and any(lab in metric for lab in ("negative", "neutral", "positive"))
    assert "pixels (efficientnet-lite0)" in page.inner_text("body")
    page.screenshot(path=str(SHOTS / "Inspector_upload.png"), full_page=True)

    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    upload.set_input_files(str(bad))
    page.get_by_text("not a readable image").first.wait_for(timeout=30_000)
    page.screenshot(path=str(SHOTS / "Inspector_bad_upload.png"), full_page=True)
    page.close()
