"""End to end in headless Chromium: start `streamlit run app/main.py`, open every page, upload a
PNG (and a non-image) in the inspector, and keep screenshots in artifacts/screenshots/."""
from __future__ import annotations

import hashlib
import json
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
from playwright.sync_api import expect, sync_playwright

from cmcs_core.config import METHOD_TITLES
from cmcs_core.data.counterfactual import EDIT_NAMES

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "artifacts" / "screenshots"
PAGES = {  # url path -> text that must appear once the page has rendered
    "": "Runs found",
    "Tour": "a shortcut, planted and caught",
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


def start_server(runs: Path, cache: Path, log_name: str, command: list[str] | None = None, **env: str):
    """`streamlit run app/main.py` (or `command`) with CMCS_RUNS_DIR=runs; returns (process, url, log)
    once /_stcore/health answers on 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "CMCS_RUNS_DIR": str(runs), "HF_HUB_OFFLINE": "1", "CMCS_CACHE_DIR": str(cache), **env}
    SHOTS.mkdir(parents=True, exist_ok=True)
    log = open(SHOTS.parent / log_name, "w")
    args = ["--server.headless", "true", "--server.port", str(port), "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none"]
    proc = subprocess.Popen((command or [sys.executable, "-m", "streamlit", "run", "app/main.py"]) + args,
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url, log
        except OSError:
            time.sleep(0.5)
    proc.kill()
    log.close()
    pytest.fail(f"streamlit did not start within 90 s; see artifacts/{log_name}")


def stop_server(proc, log) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def server(browser_runs, tmp_path_factory):
    """`streamlit run app/main.py` on the test runs; on teardown, the runs folder must be unchanged."""
    before = tree_hash(browser_runs)
    proc, url, log = start_server(browser_runs, tmp_path_factory.mktemp("browser_cache"), "streamlit_test.log")
    yield {"url": url, "runs": browser_runs, "hash": before}
    stop_server(proc, log)


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


def open_page(browser, url: str, text: str):
    """A new page at url, settled on text."""
    page = new_page(browser)
    page.goto(url)
    settle(page, text)
    return page


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


def select(page, box, starts: str, tries: int = 3) -> None:
    """Open a selectbox and click the option holding `starts`. A rerun that lands between the click and
    the option (a page sets its address, a chart reports its size) redraws the box and closes its list,
    so an unopened list is opened again, as a person would."""
    option = page.get_by_role("option").filter(has_text=starts).first
    for attempt in range(tries):
        box.click()
        try:
            option.wait_for(timeout=10_000)
            option.click()
            return
        except PlaywrightTimeout:
            if attempt == tries - 1:
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SHOTS / f"select_{starts[:20].replace(' ', '_')}.png"), full_page=True)
                raise
            page.keyboard.press("Escape")
            page.wait_for_timeout(1000)


def pick(page, label: str, run: str) -> None:
    select(page, run_box(page, label), f"{run} ·")


def wait_for_query(page, value: str, key: str = "run") -> None:
    """Wait until the address's `?key=` is value: the app has taken what was picked or typed."""
    page.wait_for_function("([k, v]) => new URLSearchParams(location.search).get(k) === v", arg=[key, value],
                           timeout=30_000)


def test_every_page_renders(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(browser)
    for path, marker in PAGES.items():
        page.goto(f"{server['url']}/{path}?run=cap_cmcs")
        settle(page, marker)
        no_exception(page, path or "Home")
        if path not in ("", "Compare", "Tour"):  # the Tour draws on playground runs (its own test)
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
    walk_three_pages(page, "pix_cmcs", METHOD_TITLES["cmcs"])
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
        if path != "Tour":  # the Tour tells the playground's story, not one run's
            badge = "Run grid_b/twin · method Text-only baseline"  # drawn below the marker: wait for it, on a busy machine
            page.wait_for_function("t => document.body.innerText.includes(t)", arg=badge, timeout=60_000)
            assert badge in page.inner_text("body"), path
    # the twins side by side: CMCS selected, the text-only twin to compare with
    page.goto(f"{url}/Case_studies?run=grid_a/twin")
    settle(page, "Side by side")
    pick(page, "Compare with", "grid_b/twin")
    settle(page, "Text-only baseline (grid_b/twin)")  # the run to compare with joins the side by side
    no_exception(page, "Case studies with twins")
    assert f"{METHOD_TITLES['cmcs']} (grid_a/twin)" in page.inner_text("body")
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


def other_address() -> str:
    """This machine's address on its network (not loopback): where a server listening on every
    interface would also answer. No packet is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))
        return s.getsockname()[0]


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def elsewhere_server(browser_runs, tmp_path_factory):
    """A server whose default runs folder is another one (holding a single run), so a hand-off that
    fell back to the default folder would open that run instead."""
    import shutil

    default = tmp_path_factory.mktemp("default_runs") / "runs"
    shutil.copytree(browser_runs / "pix_cmcs", default / "elsewhere_run")
    proc, url, log = start_server(default, tmp_path_factory.mktemp("elsewhere_cache"), "streamlit_elsewhere.log")
    yield {"url": url, "runs": browser_runs}
    stop_server(proc, log)


def runs_field(page):
    return sidebar(page).get_by_role("textbox", name="Runs folder")


def main_box(page, label: str):
    return page.locator("[data-testid='stMain']").get_by_role("combobox", name=label, exact=True)


def test_robustness_to_inspector_keeps_a_typed_runs_folder(elsewhere_server, browser):
    """Type a non-default runs folder, pick a flipped row of a run that is not the first, press Open: the
    Inspector opens that run (not the default folder's), with the edited row as its input."""
    import pandas as pd

    runs = elsewhere_server["runs"]
    report = json.loads((runs / "cap_text_only" / "stress.json").read_text())["splits"]["test"]["edits"]
    edit = next(e for e, r in report.items() if r.get("applies") and r.get("flipped") and e != "no_visual")
    row = pd.read_csv(runs / "cap_text_only" / report[edit]["rows_file"], keep_default_na=False,
                      dtype={"index": str}).iloc[0]
    page = new_page(browser)
    page.goto(elsewhere_server["url"] + "/Robustness")
    box = runs_field(page)
    box.wait_for(timeout=60_000)
    box.fill(str(runs))
    box.press("Enter")
    # The default folder's page shows "Flipped examples" too: wait until the app has taken the typed folder
    # (it writes it into the address), or the Run box may still list the default folder's runs.
    wait_for_query(page, str(runs), key="runs")
    settle(page, "Flipped examples")
    select(page, main_box(page, "Run"), "cap_text_only ·")
    settle(page, "Flipped examples")
    select(page, main_box(page, "Edit").last, EDIT_NAMES[edit])  # the flipped examples' (the paired view has one too)
    settle(page, "edited rows flipped")
    page.get_by_role("button", name="Open in the Inspector with the edit applied").click()
    settle(page, "Counterfactual edits")
    no_exception(page, "Inspector after the hand-off")
    assert runs_field(page).input_value() == str(runs)  # the typed folder stays
    assert "cap_text_only" in chosen_run(page)
    body = page.inner_text("body")
    assert f"“{EDIT_NAMES[edit]}” applied to row #{row['index']} of cap_text_only" in body and "Run cap_text_only · method Text-only baseline" in body
    tweet = page.locator("[data-testid='stMain'] textarea").first.input_value()
    assert tweet == row.edited_tweet.replace("$T$", row.edited_target)
    metric = page.locator("[data-testid='stMetric']").first.inner_text()
    assert row.pred_after in metric  # the prediction the stress test recorded for the edited row
    assert f"runs={runs}".replace("/", "%2F") in page.url or f"runs={runs}" in page.url
    page.screenshot(path=str(SHOTS / "Robustness_to_Inspector.png"), full_page=True)
    page.close()


def test_a_reload_keeps_the_runs_folder_and_both_runs(elsewhere_server, browser):
    runs = elsewhere_server["runs"]
    page = open_page(browser, f"{elsewhere_server['url']}/Compare?runs={runs}", "Table 1")
    pick(page, "Run", "cap_text_only")
    settle(page, "Table 1")
    pick(page, "Compare with", "pix_cmcs")
    settle(page, "Table 1")
    page.wait_for_function("() => new URLSearchParams(location.search).get('compare') === 'pix_cmcs'", timeout=30_000)
    page.reload()
    settle(page, "Table 1")
    assert "cap_text_only" in chosen_run(page)
    assert "pix_cmcs" in run_box(page, "Compare with").input_value()
    expect(runs_field(page)).to_have_value(str(runs), timeout=30_000)  # drawn once the reload's run is done
    page.close()


@pytest.fixture(scope="module")
def demo_server(playground_runs, tmp_path_factory):
    """The read-only demo (CMCS_DEMO=1, what `make app HOST=0.0.0.0` starts) on what `make app` trains."""
    import shutil

    runs = tmp_path_factory.mktemp("demo") / "runs"
    shutil.copytree(playground_runs, runs)
    outside = tmp_path_factory.mktemp("outside") / "runs"
    shutil.copytree(playground_runs / "playground_cmcs_s0", outside / "secret_run")
    proc, url, log = start_server(runs, tmp_path_factory.mktemp("demo_cache"), "streamlit_demo.log", CMCS_DEMO="1")
    yield {"url": url, "runs": runs, "outside": outside, "hash": tree_hash(outside)}
    stop_server(proc, log)


def test_demo_tour_names_every_planted_cue(demo_server, browser):
    from cmcs_core.playground.story import planted_cues

    page = new_page(browser)
    page.goto(demo_server["url"] + "/Tour")
    settle(page, "4 · Take the shortcut away")
    no_exception(page, "Tour")
    data_dir = json.loads((demo_server["runs"] / "playground_cmcs_s0" / "config.json").read_text())["data"]["dataset"]
    cues = planted_cues(data_dir)["cues"]
    page.wait_for_timeout(1500)
    body = page.inner_text("body")
    for word in (w for words in cues["text_spurious_words"].values() for w in words):
        assert word in body, word
    for cue in cues["image_objects"].values():
        assert cue["object"] in body, cue
    assert page.locator("[data-testid='stImage']").count() >= 3  # one example image per planted cue class
    page.screenshot(path=str(SHOTS / "Tour.png"), full_page=True)
    page.get_by_role("button", name="Open in the Inspector with the edit applied").click()
    settle(page, "Counterfactual edits")
    assert "Opened from the Tour" in page.inner_text("body")
    page.close()


def test_demo_mode_refuses_paths_outside_the_runs_folder(demo_server, browser):
    outside = demo_server["outside"]
    page = open_page(browser, f"{demo_server['url']}/?runs={outside}&run={outside / 'secret_run'}", "Runs found")
    no_exception(page, "Home in demo mode")
    side = sidebar(page).inner_text()
    assert "fixed in demo mode" in side and "ignored" in side and "no such run" in side
    assert runs_field(page).count() == 0  # no field to type a path into
    assert "secret_run" not in chosen_run(page)
    run_box(page).click()
    assert not any("secret_run" in o for o in page.get_by_role("option").all_inner_texts())
    page.keyboard.press("Escape")
    page.goto(f"{demo_server['url']}/Inspector?run=../{outside.parent.name}/runs/secret_run")
    settle(page, "Counterfactual edits")
    assert "no such run" in sidebar(page).inner_text()
    assert tree_hash(outside) == demo_server["hash"]
    page.close()


def test_the_server_listens_on_localhost_only_by_default(playground_runs, tmp_path):
    """`make app` (scripts/run_app.sh) without HOST: 127.0.0.1 answers, the machine's network address does not."""
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(playground_runs, runs)
    assert "HOST" not in os.environ and "CMCS_DEMO" not in os.environ  # the defaults, as `make app` gets them
    proc, url, log = start_server(runs, tmp_path / "cache", "streamlit_localhost.log", ["bash", "scripts/run_app.sh"],
                                  PYTHON=sys.executable)
    try:
        port = int(url.rsplit(":", 1)[1])
        assert answers("127.0.0.1", port)
        address = other_address()
        assert not address.startswith("127."), address
        assert not answers(address, port)
    finally:
        stop_server(proc, log)
