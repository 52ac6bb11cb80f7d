"""End to end in headless Chromium: start `streamlit run app/main.py`, open every page, upload a
PNG (and a non-image) in the inspector, and keep screenshots in artifacts/screenshots/."""
from __future__ import annotations

import hashlib
import os
import shutil
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


def tree_hash(root: Path) -> str:
    """Every file's relative path, size and bytes under root: any write shows up."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def browser_runs(app_runs, tmp_path_factory) -> Path:
    """The three test runs, the broken folder and two runs that share a name in different
    folders (grid_a/twin is CMCS on captions, grid_b/twin the text-only baseline)."""
    root = tmp_path_factory.mktemp("browser") / "runs"
    shutil.copytree(app_runs, root, symlinks=True)
    shutil.copytree(app_runs / "cap_cmcs", root / "grid_a" / "twin")
    shutil.copytree(app_runs / "cap_text_only", root / "grid_b" / "twin")
    return root


@pytest.fixture(scope="module")
def server(browser_runs, tmp_path_factory):
    """`streamlit run app/main.py` on the test runs; on teardown, the runs folder must be unchanged."""
    before = tree_hash(browser_runs)
    port = free_port()
    cache = tmp_path_factory.mktemp("browser_cache")
    env = {**os.environ, "CMCS_RUNS_DIR": str(browser_runs), "HF_HUB_OFFLINE": "1", "CMCS_CACHE_DIR": str(cache)}
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
    yield {"url": url, "runs": browser_runs, "hash": before}
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
    """Wait for the page's marker text, then for Streamlit to finish running the script. On a
    time-out the page is kept as artifacts/screenshots/timeout_*.png for the CI log's reader."""
    try:
        page.get_by_text(text, exact=False).first.wait_for(timeout=timeout)
    except PlaywrightTimeout:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"timeout_{text[:20].replace(' ', '_')}.png"), full_page=True)
        raise
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_timeout(800)


def new_page(browser):
    return browser.new_page(viewport={"width": 1400, "height": 2400})


def no_exception(page, where: str) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, f"{where} raised"
    assert "Traceback" not in page.inner_text("body"), where


def sidebar(page):
    return page.locator("[data-testid='stSidebar']")


def run_box(page, label: str = "Run"):
    return sidebar(page).get_by_role("combobox", name=label, exact=True)


def chosen_run(page) -> str:
    """The option the sidebar's Run selectbox shows."""
    return run_box(page).input_value()


def pick(page, label: str, run: str) -> None:
    run_box(page, label).click()
    page.get_by_role("option").filter(has_text=f"{run} ·").first.click()


def wait_for_query(page, run: str) -> None:
    page.wait_for_function("r => new URLSearchParams(location.search).get('run') === r", arg=run, timeout=30_000)


def test_every_page_renders(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(browser)
    for path, marker in PAGES.items():
        page.goto(f"{server['url']}/{path}?run=cap_cmcs")
        settle(page, marker)
        no_exception(page, path or "Home")
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
    page.goto(f"{server['url']}/?run=cap_cmcs")
    settle(page, "Runs found")
    body = page.inner_text("body")
    assert "Runs found (5)" in body and "visual source captions" in body
    assert page.locator("[data-testid='stDataFrame']").count() >= 1
    assert "unreadable run folder" in body  # the broken folder is reported, the app keeps going
    page.close()


NAV = [("Training dynamics", "Scheduler parameters"), ("Masks", "Dataset view"), ("Compare", "Table 1")]


def walk_three_pages(page, run: str, method: str) -> None:
    """Open three pages in a row through the sidebar's links; the run must stay on each."""
    for title, marker in NAV:
        sidebar(page).locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
        settle(page, marker)
        no_exception(page, title)
        wait_for_query(page, run)
        body = page.inner_text("body")
        assert f"Run {run} · method {method}" in body, f"{title}: the selected run was lost"
        assert run in chosen_run(page), title
        assert sidebar(page).get_by_role("textbox", name="Runs folder").input_value().endswith("runs"), title


def test_run_from_the_url_stays_across_pages(server, browser):
    page = new_page(browser)
    page.goto(f"{server['url']}/?run=pix_cmcs")  # not the default (the first, cap_cmcs)
    settle(page, "Runs found")
    assert "pix_cmcs" in chosen_run(page)
    walk_three_pages(page, "pix_cmcs", "CMCS (ours)")
    page.close()


def test_run_picked_in_the_sidebar_stays_across_pages(server, browser):
    page = new_page(browser)
    page.goto(f"{server['url']}/")
    settle(page, "Runs found")
    pick(page, "Run", "cap_text_only")
    settle(page, "Runs found")
    wait_for_query(page, "cap_text_only")
    walk_three_pages(page, "cap_text_only", "Text-only baseline")
    page.close()


def test_runs_with_the_same_name_on_every_page(server, browser):
    """grid_a/twin and grid_b/twin: both listed once, each shown as itself, side by side."""
    page = new_page(browser)
    url = server["url"]
    page.goto(f"{url}/?run=grid_b/twin")
    settle(page, "Runs found")
    run_box(page).click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    assert sum(o.startswith("grid_a/twin ·") for o in options) == 1
    assert sum(o.startswith("grid_b/twin ·") for o in options) == 1
    for path, marker in PAGES.items():
        page.goto(f"{url}/{path}?run=grid_b/twin")
        settle(page, marker)
        no_exception(page, path or "Home")
        assert "Run grid_b/twin · method Text-only baseline" in page.inner_text("body"), path
    # the twins side by side: CMCS selected, the text-only twin to compare with
    page.goto(f"{url}/Case_studies?run=grid_a/twin")
    settle(page, "Side by side")
    pick(page, "Compare with", "grid_b/twin")
    settle(page, "Text-only baseline (grid_b/twin)")  # the run to compare with joins the side by side
    no_exception(page, "Case studies with twins")
    assert "CMCS (ours) (grid_a/twin)" in page.inner_text("body")
    assert "grid_a/twin" in chosen_run(page)
    page.get_by_role("link", name="Compare").first.click()
    settle(page, "Table 1")
    page.get_by_role("tab", name="Confusion matrices & per-class F1").click()
    page.wait_for_timeout(1500)
    no_exception(page, "Compare with twins")
    titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()  # SVG text
    assert any(t.startswith("grid_a/twin") for t in titles) and any(t.startswith("grid_b/twin") for t in titles)
    page.screenshot(path=str(SHOTS / "Compare_twins.png"), full_page=True)
    page.close()


def main_errors(page) -> list[str]:
    return page.locator("[data-testid='stMain'] [data-testid='stAlertContentError']").all_inner_texts()


def test_inspector_upload(server, browser, tmp_path):
    page = new_page(browser)
    page.goto(f"{server['url']}/Inspector?run=pix_cmcs")
    settle(page, "Counterfactual edits")
    assert "20MB" in page.locator("[data-testid='stFileUploaderDropzone']").first.inner_text()  # config.toml
    upload = page.locator("[data-testid='stFileUploaderDropzoneInput']").first
    upload.set_input_files(str(make_png(tmp_path / "upload.png", (200, 30, 30), 300)))
    settle(page, "visual input: uploaded upload.png")
    metric = page.locator("[data-testid='stMetric']").first.inner_text()
    assert "Final label" in metric and any(lab in metric for lab in ("negative", "neutral", "positive"))
    body = page.inner_text("body")
    assert "pixels (efficientnet-lite0)" in body
    assert "What the mask does" in body and "largest |Δp|" in body  # measured on the uploaded picture
    assert "absolute scale 0…1" in page.content()  # mask colours on the absolute scale by default
    page.screenshot(path=str(SHOTS / "Inspector_upload.png"), full_page=True)

    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    upload.set_input_files(str(bad))
    settle(page, "was not used")
    errors = main_errors(page)
    assert len(errors) == 1 and "notes.png" in errors[0] and "not an image" in errors[0], errors
    assert "BytesIO" not in page.inner_text("body")
    page.screenshot(path=str(SHOTS / "Inspector_bad_upload.png"), full_page=True)

    big = tmp_path / "huge.png"
    big.write_bytes(b"\0" * (21 * 2**20))  # over the 20 MB limit: Streamlit refuses it before the app sees it
    upload.set_input_files(str(big))
    page.get_by_text("20.0MB or smaller", exact=False).first.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)
    assert len(main_errors(page)) <= 1  # the previous upload's message at most, never a second one
    page.close()


def test_no_page_wrote_under_the_runs_folder(server):
    """Runs last in this module: every page above has been opened on these runs."""
    assert tree_hash(server["runs"]) == server["hash"]
