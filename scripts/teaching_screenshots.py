"""The screenshots of docs/teaching.md, taken from the app as it is, so the guide stays current.

    python scripts/teaching_screenshots.py [--runs-dir runs] [--out docs/img]

Starts the app on 127.0.0.1 in the demo mode (what a class sees) on a runs folder that holds the first run's
playground runs and the target-cue preset's (`make app`, then the Tour's training button or the command it
prints), walks the ten-minute demo in headless Chromium (Debian's, as the browser tests) and writes
OUT/teach_<step>.png: the part of the page the guide talks about, reduced to a small palette (a few hundred
KB for all of them).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from cmcs_core.runs.files import CONFIG_FILE, METRICS_FILE

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
WIDTH, COLOURS = 1100, 64  # px of the page shown; palette size of the written PNGs
CMCS, TARGET_AWARE = "playground_cmcs_s0", "playground-target-cue_cmcs+target_aware_mask_upper_s0"


def start(runs: Path, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CMCS_RUNS_DIR": str(runs), "CMCS_DEMO": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the app did not start; see {log}")


def settle(page, text: str) -> None:
    page.get_by_text(text, exact=False).first.wait_for(timeout=180_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=180_000)
    page.wait_for_timeout(2500)  # charts draw after the script ends


def top_of(page, text: str) -> float:
    """Where a text first shows in the main column (not the sidebar); `=Text` matches the whole text only."""
    exact = text.startswith("=")
    found = page.locator("[data-testid='stMain']").get_by_text(text.lstrip("="), exact=exact).first
    return found.bounding_box()["y"]


def shot(page, out: Path, name: str, start: str, end: str | None = None, height: int = 700) -> Path:
    """The main column from the text `start` to the text `end`, at most `height` px, as a small-palette PNG."""
    main = page.locator("[data-testid='stMain'] [data-testid='stMainBlockContainer']").first.bounding_box()
    y0 = top_of(page, start) - 10
    y1 = min(top_of(page, end) - 10, y0 + height) if end else y0 + height
    if y1 <= y0:
        raise SystemExit(f"{name}: “{end}” is not below “{start}” on the page")
    path = out / f"teach_{name}.png"
    page.screenshot(path=str(path), clip={"x": main["x"], "y": y0, "width": min(main["width"], WIDTH), "height": y1 - y0})
    Image.open(path).convert("RGB").quantize(COLOURS).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return path


def your_rows_file(runs: Path, folder: Path) -> Path:
    """The run's first 60 test rows, each with a positive clause about something else appended."""
    import json

    data = Path(json.loads((runs / CMCS / CONFIG_FILE).read_text())["data"]["dataset"])
    lines = (data / "test.tsv").read_text().splitlines()
    rows = []
    for line in lines[1:61]:
        index, label, image, tweet, target = line.split("\t")
        rows.append("\t".join([index, label, image, f"{tweet} while the weather was lovely", target]))
    path = folder / "my_rows.tsv"
    path.write_text("\n".join([lines[0], *rows]) + "\n")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs-dir", type=Path, default=REPO / "runs")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = p.parse_args()
    missing = [n for n in (CMCS, TARGET_AWARE) if not (args.runs_dir / n / METRICS_FILE).is_file()]
    if missing:
        raise SystemExit(f"{args.runs_dir} lacks {', '.join(missing)}: run `make app` and train the target-cue runs")
    work = Path(tempfile.mkdtemp(prefix="cmcs_teaching_"))
    args.out.mkdir(parents=True, exist_ok=True)
    proc, url = start(args.runs_dir.resolve(), work / "server.log")
    try:
        with sync_playwright() as play:
            browser = play.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 5200})
            page.goto(f"{url}/Tour?run={CMCS}")
            settle(page, "5 · The paper's CMCS")
            shot(page, args.out, "1_plants", "1 · What the playground plants", "2 · The score", 1100)
            shot(page, args.out, "2_score", "2 · The score", "3 · Where the text mask")
            shot(page, args.out, "3_stress", "4 · Take the shortcut away", "flipped rows. Pick one", 1000)
            page.get_by_role("button", name="Open in the Inspector with the edit applied").click()
            settle(page, "Counterfactual edits")
            shot(page, args.out, "4_inspector", "Opened from the Tour", "=Masks", 900)
            page.goto(f"{url}/Tour?run={TARGET_AWARE}")
            settle(page, "5 · The paper's CMCS")
            shot(page, args.out, "5_target_aware", "4 · Take the shortcut away", "=Run", 1000)
            page.goto(f"{url}/Robustness?run={CMCS}")
            settle(page, "Your own rows")
            page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(
                str(your_rows_file(args.runs_dir, work)))
            settle(page, "rows of my_rows.tsv predicted")
            shot(page, args.out, "6_your_rows", "=Your own rows", height=900)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)


if __name__ == "__main__":
    main()
