"""App benchmark: inspector prediction latency on the CPU after warm-up (p50/p95), each page's
first render (AppTest run time), each page's time to settle cold and warm for every run kind
found (target: under 10 s cold, under 5 s warm on 2 cores) and the process's peak memory.

    python bench/bench_app.py [--runs-dir DIR] [--n 50]

Without --runs-dir (or $CMCS_RUNS_DIR) holding a finished run, it trains the tiny test runs
(tests/app_fixtures.py) into a temp folder first. Writes bench/results/app.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
ENTRY = REPO / "app" / "main.py"


def app_pages() -> list[str]:
    """The pages app/main.py lists (its PAGES: file names in the top-level pages/), read without
    running Streamlit."""
    import ast

    tree = ast.parse(ENTRY.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PAGES" for t in node.targets):
            return [row[0] for row in ast.literal_eval(node.value)]
    raise SystemExit(f"{ENTRY}: no PAGES list")


PAGES = app_pages()


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
            "mean_ms": float(np.mean(times))}


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
    from cmcs_core.tables import DATASETS

    kinds: dict = {}
    for r in sorted(runs, key=lambda r: (r.method != "cmcs", str(r.path))):
        bench = "benchmark" if r.dataset in DATASETS else r.dataset
        kinds.setdefault(f"{bench} · {r.visual_source} · {'checkpoint' if r.has_checkpoint else 'no checkpoint'}", r)
    return kinds


def page_settle(runs_dir: Path, runs: list) -> dict:
    """Per run kind and page: first settle with Streamlit's caches empty (cold: a fresh server),
    then again (warm: the next user). Modules imported once per process are not counted again."""
    import streamlit as st

    out = {}
    for kind, run in run_kinds(runs).items():
        out[kind] = {"run": str(run.path), "pages": {}}
        for name in PAGES:
            st.cache_data.clear()
            st.cache_resource.clear()
            cold, exc_cold = render_page(runs_dir, run, name)
            warm, exc_warm = render_page(runs_dir, run, name)
            out[kind]["pages"][Path(name).stem] = {"cold_s": round(cold, 2), "warm_s": round(warm, 2),
                                                   "exceptions": max(exc_cold, exc_warm)}
            print(f"settle {kind[:58]:58s} {Path(name).stem:22s} cold {cold:6.2f} s  warm {warm:6.2f} s"
                  + (f"  EXCEPTIONS {max(exc_cold, exc_warm)}" if max(exc_cold, exc_warm) else ""), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", type=Path, default=Path(os.environ["CMCS_RUNS_DIR"]) if os.environ.get("CMCS_RUNS_DIR") else None)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "app.json")
    args = ap.parse_args()
    import torch

    from cmcs_core.runs import scan_runs

    runs_dir, runs = find_runs(args.runs_dir)
    visual = [r for r in runs if r.cfg.model.use_visual and r.has_checkpoint]  # the inspector needs weights
    main_run = next((r for r in visual if r.method == "cmcs"), runs[0])
    default_threads = torch.get_num_threads()
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
    all_runs = [r for r in scan_runs(runs_dir)[0] if r.finished]
    settle = page_settle(runs_dir, all_runs)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS with runs loaded: {peak_mb:.0f} MB")
    result = {"machine": {"cpu_count": os.cpu_count(), "torch_default_threads": default_threads,
                          "platform": platform.platform(), "load_avg_at_end": os.getloadavg()},
              "runs_dir": str(runs_dir), "inspector_latency": lat, "page_first_render": renders,
              "page_settle": settle,
              "peak_rss_mb": round(peak_mb, 1)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
