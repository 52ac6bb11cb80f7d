"""The CPU smoke training ("a small subset in under 60 s"), timed here rather than
asserted in a test: the test suite's `tiny_run` config (tests/conftest.py: CMCS, frozen MiniLM,
captions, 128 train / 64 dev+test rows of Twitter2015, 2 epochs, batch 16, H=2), trained through
the CLI with one torch thread.

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

from _common import summary, write_result

from cmcs_core.config import smoke_config
from cmcs_core.data.dataset import resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]

FLAGS = ["--num-threads", "1", "--quiet"]


def run_once(config: Path, cache: Path, out: Path) -> float:
    env = {**os.environ, "CMCS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "cmcs_core", "train", "--config", str(config), *FLAGS, "--output-dir", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    data_dir = resolve_data_dir()
    if data_dir is None:
        raise SystemExit("benchmark data not found (set CMCS_DATA_DIR or provide ../shared/data)")
    cold, warm = [], []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            config, cache, runs = Path(tmp) / "smoke.json", Path(tmp) / "cache", Path(tmp) / "runs"
            smoke_config(data_dir).save(config)
            cold.append(run_once(config, cache, runs / "cold"))
            warm.append(run_once(config, cache, runs / "warm"))
        print(f"repeat {i + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s", flush=True)
    result = {"what": "python -m cmcs_core train --config <cmcs_core.config.smoke_config> "
                      + " ".join(FLAGS) + " (process wall time)",
              "aim_s": 60, "cold_cache_s": summary(cold), "warm_cache_s": summary(warm)}
    write_result("smoke", result)
    print(f"smoke training: cold {result['cold_cache_s']['median']:.1f} s, "
          f"warm {result['warm_cache_s']['median']:.1f} s (median of {args.repeats}; aim < 60 s)")


if __name__ == "__main__":
    main()
