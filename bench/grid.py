"""Run a training grid (datasets x methods x seeds) as parallel `cmcs_core train` processes.

Jobs start seed-major (every method's first seed before any second seed), so a grid cut short
by --deadline still gives complete tables for fewer seeds. Used for docs/results.md on the CPU
and on a lent GPU (bench/gpu_run.sh).

    python bench/grid.py --out runs/grid_frozen --finetune-layers 0 --epochs 10 --workers 1
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

METHODS = ["cmcs", "text_only", "wo_visual", "wo_cms", "wo_mfs", "wo_mfs_cms"]


def jobs(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    return [(d, m, s) for s, d, m in itertools.product(args.seeds, args.datasets, args.methods)]


def command(args: argparse.Namespace, dataset: str, method: str, seed: int) -> tuple[list[str], Path]:
    ft = {0: "frozen", -1: "ftall"}.get(args.finetune_layers, f"ft{args.finetune_layers}")
    out = Path(args.out) / f"{dataset}_{args.text_model}_{ft}_{method}_s{seed}"
    cmd = [
        sys.executable, "-m", "cmcs_core", "train", "--quiet", "--dataset", dataset, "--method", method,
        "--seed", str(seed), "--epochs", str(args.epochs), "--finetune-layers", str(args.finetune_layers),
        "--text-model", args.text_model, "--device", args.device, "--output-dir", str(out),
        *args.extra,
    ]
    if args.device == "cpu" and args.workers > 1 and "--num-threads" not in args.extra:
        # Oversubscribed cores are up to 10x slower (docs/benchmarks.md): share them out.
        cmd += ["--num-threads", str(max(1, (os.cpu_count() or 1) // args.workers))]
    return cmd, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--datasets", nargs="+", default=["twitter2015", "twitter2017"])
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--finetune-layers", type=int, default=0)
    p.add_argument("--text-model", default="minilm")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--deadline", type=float, default=None, help="seconds after which no job starts")
    p.add_argument("extra", nargs="*", help="more train flags after --, e.g. -- --lr 3e-5")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    start = time.time()
    pending = [j for j in jobs(args) if not (command(args, *j)[1] / "metrics.json").is_file()]
    running: dict[subprocess.Popen, tuple] = {}
    done, skipped = 0, 0
    with open(Path(args.out) / "grid.log", "a") as log:
        log.write(json.dumps({"argv": sys.argv, "jobs": len(pending)}) + "\n")
        while pending or running:
            while pending and len(running) < args.workers:
                if args.deadline and time.time() - start > args.deadline:
                    skipped, pending = len(pending), []
                    break
                job = pending.pop(0)
                cmd, out = command(args, *job)
                out.mkdir(parents=True, exist_ok=True)
                handle = open(out / "stdout.txt", "w")
                running[subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy())] = (job, handle)
            for proc in [p for p in running if p.poll() is not None]:
                job, handle = running.pop(proc)
                handle.close()
                done += 1
                msg = {"job": job, "rc": proc.returncode, "t": round(time.time() - start, 1)}
                log.write(json.dumps(msg) + "\n")
                log.flush()
                print(f"[{done}] {job} rc={proc.returncode} at {msg['t']}s", flush=True)
            time.sleep(0.5)
    print(f"grid finished in {time.time() - start:.0f}s; {done} run, {skipped} not started (deadline)")


if __name__ == "__main__":
    main()
