"""App benchmark: inspector prediction latency on the CPU after warm-up (p50/p95), each page's
first render (AppTest run time), each page's time to settle cold and warm for every run kind
found (target: under 10 s cold, under 5 s warm on 2 cores) and the process's peak memory.

    python bench/bench_app.py [--runs-dir DIR] [--n 50]

Without --runs-dir (or $CMCS_RUNS_DIR) holding a finished run, it trains the playground runs
(`python -m cmcs_core playground`, as `make app` does) into a temp folder first. Writes
bench/results/app.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import peak_rss_mb, write_result

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
ENTRY = REPO / "app" / "main.py"


def page_rows() -> list[tuple[str, str, str, str]]:
    """app/main.py's PAGES (file in pages/, title, icon, url path), read without running Streamlit."""
    import ast

    for node in ast.parse(ENTRY.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PAGES" for t in node.targets):
            return [tuple(row) for row in ast.literal_eval(node.value)]
    raise SystemExit(f"{ENTRY}: no PAGES list")


PAGE_ROWS = page_rows()
PAGES = [row[0] for row in PAGE_ROWS]


def find_runs(runs_dir: Path | None):
    from cmcs_core.runs.reader import scan_runs

    if runs_dir is not None:
        runs = [r for r in scan_runs(runs_dir)[0] if r.finished]
        if runs:
            return runs_dir, runs
    base = Path(tempfile.mkdtemp(prefix="cmcs_bench_app_"))
    print(f"no finished run found: training the playground runs into {base} (what `make app` does first)")
    subprocess.run([sys.executable, "-m", "cmcs_core", "playground", "--runs-dir", str(base / "runs"),
                    "--data-out", str(base / "data"), "--quiet"], check=True)
    return base / "runs", [r for r in scan_runs(base / "runs")[0] if r.finished]


def latency(run, n: int, threads: int) -> dict:
    """Predictor.predict, the inspector's call, timed after 5 warm-up predictions."""
    import torch

    from cmcs_core.inference import Predictor

    torch.set_num_threads(threads)
    pred = Predictor(run.path, device="cpu")
    image = None
    if pred.needs_image:
        from cmcs_core.data.images import load_image

        folder = run.image_dir()
        image = load_image(sorted(folder.iterdir())[0])
    args = dict(tweet="The new album by Drake is amazing tonight", target="Drake",
                caption="a red picture with a white circle" if pred.needs_caption else None, image=image)
    for _ in range(5):
        pred.predict(**args)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        pred.predict(**args)
        times.append(1000 * (time.perf_counter() - t0))
    return {"run": run.name, "visual_source": run.visual_source, "n": n, "torch_threads": threads,
            "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "mean_ms": float(np.mean(times)), "calls_ms": [round(t, 2) for t in times]}


def render_page(runs_dir: Path, run, name: str) -> tuple[float, int]:
    """One page through the entry as a user opens it (the sidebar, then the page): seconds until
    the script has finished (settled), and how many exceptions it showed."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ENTRY), default_timeout=600)
    at.session_state["runs_dir"] = str(runs_dir)
    at.session_state["run_path"] = str(run.path)
    t0 = time.perf_counter()
    at.run()  # the default page (Home); st.navigation registers the others
    if name != PAGES[0]:
        at.switch_page(f"../pages/{name}")
        t0 = time.perf_counter()  # time the page itself, as a click in the sidebar would
        at.run()
    return time.perf_counter() - t0, len(at.exception)


def page_renders(runs_dir: Path, run) -> dict:
    out = {}
    for name in PAGES:
        seconds, exceptions = render_page(runs_dir, run, name)
        out[Path(name).stem] = {"seconds": round(seconds, 3), "exceptions": exceptions}
    return out


def run_kinds(runs: list) -> dict:
    """One run per kind the app treats differently: dataset (benchmark or other), visual source,
    with or without a checkpoint; CMCS preferred, else the first of its kind."""
    from cmcs_core.report.tables import DATASETS

    kinds: dict = {}
    for r in sorted(runs, key=lambda r: (r.method != "cmcs", str(r.path))):
        bench = "benchmark" if r.dataset in DATASETS else r.dataset
        kinds.setdefault(f"{bench} · {r.visual_source} · {'checkpoint' if r.has_checkpoint else 'no checkpoint'}", r)
    return kinds


def url_path(name: str) -> str:
    """The page's URL path as app/main.py registers it (4th field of PAGES; Home is the root)."""
    url = next(row[3] for row in PAGE_ROWS if row[0] == name)
    return "" if url == "home" else url


class Server:
    """`streamlit run app/main.py` in a fresh process: a cold server (no imports, no caches)."""

    def __init__(self, runs_dir: Path) -> None:
        import socket
        import urllib.request

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, "CMCS_RUNS_DIR": str(runs_dir)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true", "--server.port",
             str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read() == b"ok":
                    return
            except OSError:
                time.sleep(0.3)
        self.close()
        raise RuntimeError("streamlit did not start within 120 s")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - a stuck server is killed
            self.proc.kill()


SETTLED = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (!document.querySelector('[data-testid="stMain"] h1')) return false;
  const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]').length;
  return document.querySelectorAll('.js-plotly-plot').length >= charts;
}"""


def settle_seconds(browser, url: str) -> tuple[float, bool]:
    """Seconds from opening the URL until the script has finished and every chart has drawn, as
    a user sees the page settle; and whether it showed an exception."""
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(SETTLED, timeout=600_000, polling=100)
    seconds = time.perf_counter() - t0
    raised = page.locator("[data-testid='stException']").count() > 0
    page.close()
    return seconds, raised


def page_settle(runs_dir: Path, runs: list) -> dict:
    """Per run kind and page, in headless Chromium: first settle on a fresh server (cold: nothing
    imported, no caches; one server per page), then the same page opened again (warm)."""
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                     args=["--headless", "--no-sandbox", "--disable-gpu"])
        for kind, run in run_kinds(runs).items():
            rid = str(run.path.relative_to(runs_dir)) if run.path.is_relative_to(runs_dir) else str(run.path)
            out[kind] = {"run": rid, "pages": {}}
            for name in PAGES:
                url_of = lambda base: f"{base}/{url_path(name)}?run={quote(rid)}"  # noqa: E731
                server = Server(runs_dir)
                try:
                    cold, exc_cold = settle_seconds(browser, url_of(server.url))
                    warm, exc_warm = settle_seconds(browser, url_of(server.url))
                finally:
                    server.close()
                out[kind]["pages"][Path(name).stem] = {"cold_s": round(cold, 2), "warm_s": round(warm, 2),
                                                       "exception": exc_cold or exc_warm}
                print(f"settle {kind[:52]:52s} {Path(name).stem:22s} cold {cold:6.2f} s  warm {warm:6.2f} s"
                      + ("  EXCEPTION" if exc_cold or exc_warm else ""), flush=True)
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", type=Path, default=Path(os.environ["CMCS_RUNS_DIR"]) if os.environ.get("CMCS_RUNS_DIR") else None)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "app.json")
    ap.add_argument("--settle-only", action="store_true", help="only the per-page settle times (browser)")
    args = ap.parse_args()
    import torch

    default_threads = torch.get_num_threads()  # before anything (training the fixtures) can change it
    runs_dir, runs = find_runs(args.runs_dir)
    visual = [r for r in runs if r.cfg.model.use_visual and r.has_checkpoint]  # the inspector needs weights
    main_run = next((r for r in visual if r.method == "cmcs"), runs[0])
    lat, renders = [], {}
    if not args.settle_only:
        chosen = [main_run] + [r for r in visual if r.visual_source != main_run.visual_source][:1]
        # the app runs with 1 thread (CMCS_APP_THREADS); torch's default is measured beside it
        lat = [latency(r, args.n, t) for t in sorted({1, default_threads}) for r in chosen]
        torch.set_num_threads(1)
        for item in lat:
            print(f"inspector predict ({item['run']}, {item['visual_source']}, {item['torch_threads']} thread(s)): "
                  f"p50 {item['p50_ms']:.0f} ms, "
                  f"p95 {item['p95_ms']:.0f} ms over {item['n']} (target p50 < 300 ms)")
        renders = page_renders(runs_dir, main_run)
        for page, r in renders.items():
            print(f"first render {page:22s} {r['seconds']:6.2f} s  exceptions {r['exceptions']}")
    load_before = os.getloadavg()
    settle = page_settle(runs_dir, runs)  # target: under 10 s cold, under 5 s warm on 2 cores
    peak_mb = peak_rss_mb()
    print(f"peak RSS with runs loaded: {peak_mb:.0f} MB")
    result = {"torch_default_threads": default_threads, "load_avg_before_settle": load_before,
              "load_avg_at_end": os.getloadavg(), "runs_dir": str(runs_dir), "inspector_latency": lat,
              "page_first_render": renders, "page_settle": settle, "peak_rss_mb": round(peak_mb, 1)}
    write_result("app", result, args.output)


if __name__ == "__main__":
    main()
