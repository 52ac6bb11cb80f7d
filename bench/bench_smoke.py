"""The CPU smoke training of issue 2 ("a small subset in under 60 s"), timed here rather than
asserted in a test: the same run as the test suite's `tiny_run` (CMCS, frozen MiniLM, captions,
128 train / 64 dev+test rows of Twitter2015, 2 epochs, batch 16, H=2), through the CLI, one
torch thread.

Each repeat runs twice: with an empty features cache (cold: loads MiniLM and extracts the
features, as the first test run on a fresh machine does) and again on that cache (warm).

    python bench/bench_smoke.py              # 3 repeats
    python bench/bench_smoke.py --repeats 1
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _common import summary, write_result  # noqa: E402

SMOKE_FLAGS = ["--dataset", "twitter2015", "--method", "cmcs", "--max-train-samples", "128",
               "--max-eval-samples", "64", "--dev-subset-size", "32", "--epochs", "2", "--batch-size", "16",
               "--H", "2", "--device", "cpu", "--num-threads", "1", "--quiet"]


def run_once(cache: Path, out: Path) -> float:
    env = {**os.environ, "CMCS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "cmcs_core", "train", *SMOKE_FLAGS, "--output-dir", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cold, warm = [], []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cache, runs = Path(tmp) / "cache", Path(tmp) / "runs"
            cold.append(run_once(cache, runs / "cold"))
            warm.append(run_once(cache, runs / "warm"))
        print(f"repeat {i + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s", flush=True)
    result = {"what": "python -m cmcs_core train " + " ".join(SMOKE_FLAGS) + " (process wall time)",
              "aim_s": 60, "cold_cache_s": summary(cold), "warm_cache_s": summary(warm)}
    write_result("smoke", result)
    print(f"smoke training: cold {result['cold_cache_s']['median']:.1f} s, "
          f"warm {result['warm_cache_s']['median']:.1f} s (median of {args.repeats}; aim < 60 s)")


if __name__ == "__main__":
    main()
