"""Cold and warm settle time of every page for one run, plus the Inspector opened after Home (the
usual path: app/main.py warms the model imports in the background while Home is read).

    python bench/bench_cold_pages.py --runs-dir RUNS --run RUN_ID [--read-home 5]

A fresh `streamlit run app/main.py` per measurement (bench_app.Server), timed in headless
Chromium until the script has finished and every chart has drawn (bench_app.settle_seconds).
Writes bench/results/cold_pages.json with the machine, load and command.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import bench_app as app_bench
from _common import write_result


def cold_warm(browser, runs_dir: Path, url_path: str, run_id: str, read_home: float | None = None) -> dict:
    server = app_bench.Server(runs_dir)
    try:
        if read_home is not None:
            app_bench.settle_seconds(browser, f"{server.url}/?run={run_id}")
            time.sleep(read_home)
        cold, exc = app_bench.settle_seconds(browser, f"{server.url}/{url_path}?run={run_id}")
        warm, _ = app_bench.settle_seconds(browser, f"{server.url}/{url_path}?run={run_id}")
    finally:
        server.close()
    return {"cold_s": round(cold, 2), "warm_s": round(warm, 2), "exception": exc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs-dir", type=Path, required=True)
    ap.add_argument("--run", required=True, help="run folder relative to the runs folder")
    ap.add_argument("--read-home", type=float, default=5.0, help="seconds spent on Home before the Inspector")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                     args=["--headless", "--no-sandbox", "--disable-gpu"])
        for name in app_bench.PAGES:
            url = app_bench.url_path(name)
            out[Path(name).stem] = cold_warm(browser, args.runs_dir, url, args.run)
            print(f"{Path(name).stem:22s} cold {out[Path(name).stem]['cold_s']:5.1f} s  "
                  f"warm {out[Path(name).stem]['warm_s']:5.1f} s", flush=True)
        out["Inspector after Home"] = cold_warm(browser, args.runs_dir, "Inspector", args.run, args.read_home)
        print(f"{'Inspector after Home':22s} cold {out['Inspector after Home']['cold_s']:5.1f} s", flush=True)
        browser.close()
    write_result("cold_pages", {"runs_dir": str(args.runs_dir), "run": args.run, "pages": out})


if __name__ == "__main__":
    main()
