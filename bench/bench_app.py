"""App benchmark: inspector prediction latency on the CPU after warm-up (p50/p95, every call kept),
each page's first render (AppTest run time) and the process's peak memory with a run loaded.

    python bench/bench_app.py [--runs-dir DIR] [--n 50]

Without --runs-dir (or $CMCS_RUNS_DIR) holding a finished run, it trains the tiny test runs
(tests/app_fixtures.py) into a temp folder first. Latency is measured at 1 thread (the app's
CMCS_APP_THREADS default) and at torch's default thread count, read before anything else runs.
Writes bench/results/app.json (with the machine, load, date and command).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
from _common import peak_rss_mb, write_result  # noqa: E402


def app_pages() -> list[Path]:
    """The entry page, then the pages in sidebar order: the one place that knows where they live."""
    home = REPO / "app" / "Home.py"
    return [home, *sorted((home.parent / "pages").glob("*.py"))]


def find_runs(runs_dir: Path | None):
    from cmcs_core.runs import scan_runs

    if runs_dir is not None:
        runs = [r for r in scan_runs(runs_dir)[0] if r.finished]
        if runs:
            return runs_dir, runs
    from app_fixtures import make_dataset, train_runs

    base = Path(tempfile.mkdtemp(prefix="cmcs_bench_app_"))
    print(f"no finished run found: training the tiny test runs into {base}")
    train_runs(make_dataset(base / "data"), base / "runs")
    return base / "runs", [r for r in scan_runs(base / "runs")[0] if r.finished]


def latency(run, n: int, threads: int) -> dict:
    """Predictor.predict, the inspector's call, timed after 5 warm-up predictions."""
    import torch

    from cmcs_core.inference import Predictor

    torch.set_num_threads(threads)
    pred = Predictor(run.path, device="cpu")
    image = None
    if pred.needs_image:
        from cmcs_core.encoders.features import load_image

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


def page_renders(runs_dir: Path, run) -> dict:
    from streamlit.testing.v1 import AppTest

    out = {}
    for path in app_pages():
        at = AppTest.from_file(str(path), default_timeout=600)
        at.session_state["runs_dir"] = str(runs_dir)
        at.session_state["run_path"] = str(run.path)
        t0 = time.perf_counter()
        at.run()
        out[path.stem] = {"seconds": round(time.perf_counter() - t0, 3), "exceptions": len(at.exception)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", type=Path, default=Path(os.environ["CMCS_RUNS_DIR"]) if os.environ.get("CMCS_RUNS_DIR") else None)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "app.json")
    args = ap.parse_args()
    import torch

    default_threads = torch.get_num_threads()  # before anything (training the fixtures) can change it
    runs_dir, runs = find_runs(args.runs_dir)
    visual = [r for r in runs if r.cfg.model.use_visual]
    main_run = next((r for r in visual if r.method == "cmcs"), runs[0])
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
    peak_mb = peak_rss_mb()
    print(f"peak RSS with runs loaded: {peak_mb:.0f} MB")
    result = {"torch_default_threads": default_threads, "runs_dir": str(runs_dir), "inspector_latency": lat,
              "page_first_render": renders, "peak_rss_mb": round(peak_mb, 1)}
    write_result("app", result, args.output)


if __name__ == "__main__":
    main()
