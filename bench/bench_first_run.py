"""First-run cost: what `make app` (scripts/run_app.sh) trains on a machine with no runs.

Runs the very command the script runs, `python -m cmcs_core playground --first-run` (generate the
playground, CMCS and text-only runs on captions, a CMCS run on real pixels with EfficientNet-Lite0,
scoring, the captions runs stress-tested with the planted-truth edits; then the target-cue preset's
text-only, CMCS and target-aware runs, stress-tested), in a
fresh process with a fresh feature cache and fresh folders, and reports its wall time, its CPU
time (user + sys of the process and its children) and the machine's load while it ran. Target:
at most 2 min of CPU on a machine with native bf16 (AMX; `--precision auto` uses it); on a busy machine the wall time says
more about the neighbours.

    python bench/bench_first_run.py                 # bench/results/first_run.json
    python bench/bench_first_run.py --keep /tmp/fr  # keep the data, runs and cache there
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import write_result

ROOT = Path(__file__).resolve().parents[1]


class LoadSampler(threading.Thread):
    """The 1-minute load average every few seconds while the command runs."""

    def __init__(self, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self.stop.wait(self.every)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", help="folder for data, runs and cache (default: a temporary one, deleted)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="extra flags for the playground command")
    args = p.parse_args()
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="cmcs_first_run_")
    base = Path(args.keep or tmp.name)
    base.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "cmcs_core", "playground", "--first-run", "--data-out", str(base / "data"),
           "--runs-dir", str(base / "runs"), *args.extra]
    env = {**os.environ, "CMCS_CACHE_DIR": str(base / "cache"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    print("running:", " ".join(cmd), f"(fresh cache {base / 'cache'})", flush=True)
    load_before = os.getloadavg()
    sampler = LoadSampler()
    sampler.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.stop.set()
    (base / "first_run.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"the command failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    runs = [line for line in proc.stdout.splitlines() if " s CPU) -> " in line or line.startswith("stress ")]
    per_run = {}  # "playground_cmcs_s0" (the run folder), "stress playground_cmcs_s0"
    for line in runs:
        cpu = re.search(r"(\d+) s CPU\)", line)
        folder = re.search(r" -> (\S+)$", line)
        if cpu:
            per_run[Path(folder.group(1)).name if folder else line.split(":")[0]] = float(cpu.group(1))
    load = sampler.samples or [float("nan")]
    result = {
        "command": " ".join(cmd[1:]),
        "wall_s": round(wall, 1),
        "cpu_user_s": round(user, 1),
        "cpu_sys_s": round(system, 1),
        "cpu_s": round(user + system, 1),
        "cpu_per_run_s": per_run,
        "runs": runs,
        "load_1min_before": round(load_before[0], 2),
        "load_1min_during_mean": round(sum(load) / len(load), 2),
        "load_1min_during_max": round(max(load), 2),
        "targets": {"cpu_s": 120, "machine": "2-core, native bf16 (AMX)"},
        "note": "CPU = user + sys of the command and its children. On a loaded machine the wall time is "
                "inflated by the neighbours; compare the CPU time with the target.",
    }
    print(f"wall {wall:.1f} s · CPU {user + system:.1f} s (user {user:.1f}, sys {system:.1f}) · load before "
          f"{load_before[0]:.2f}, during mean {result['load_1min_during_mean']} max {result['load_1min_during_max']}")
    for line in runs:
        print("  " + line)
    write_result("first_run", result)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
