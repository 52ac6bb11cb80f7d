"""Scheduling overhead: seconds per training epoch of CMCS vs joint training (w/o CMS).

Both methods run the library's own Trainer.fit loop on the same encoder object and the same cached
features, in one process, interleaved (per repeat and H: wo_cms, then cmcs for each K, the order
flipped every other repeat) so load drift cancels in the ratio. Only the epoch loop is timed: the
Trainer's own wall `seconds` (as in epochs.csv) and this process's CPU time over the same loop,
which with --threads 1 is robust to other users of a shared machine. Evaluation and checkpoints
are skipped by a subclass; the library is unchanged. 640 samples = 20 steps of 32, so H=20 fires
exactly once per one-epoch fit (with 512 = 16 steps it would never fire and the ratio would read 1).

The repeats of one process share its allocator, kernels and CPU placement, so their spread
understates how much a figure moves between runs. --processes N runs the whole measurement in N
fresh processes, one after another, and reports per cell the median and (min-max) of the N
process medians (each process's own repeats are kept in the JSON).

    python bench/bench_overhead.py            # frozen + top-2 fine-tuned, 3 repeats
    python bench/bench_overhead.py --quick    # defaults H=20, K=3 only, 2 repeats
    python bench/bench_overhead.py --quick --regimes frozen --repeats 3 --processes 5
    python bench/bench_overhead.py --variants target_aware,target_aware_mask_upper --regimes frozen,finetuned \
        --repeats 3 --name overhead_variants   # an opt-in variant's epoch vs the paper's CMCS (H=20, K=3)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import summary, write_result
from tqdm.auto import tqdm

from cmcs_core.config import build_config
from cmcs_core.train.trainer import Trainer
from cmcs_core.variants import VARIANTS

ROOT = Path(__file__).resolve().parents[1]


METRICS = ("wall_wo_cms", "wall_cmcs", "cpu_wo_cms", "cpu_cmcs", "ratio_wall", "ratio_cpu")


class EpochTimer(Trainer):
    """Trainer whose fit() runs the training epochs only: data loaded once, no eval, no files."""

    def _load_data(self) -> None:
        if not hasattr(self, "train_data"):
            super()._load_data()

    def _build_optim(self) -> None:  # fit() calls this right before its epoch loop
        super()._build_optim()
        self.cpu_start = time.process_time()

    def _end_epoch(self, epoch: int, seconds: float, train_loss: float) -> None:
        self.epoch_seconds.append(seconds)  # the Trainer's own wall-clock epoch time (epochs.csv)
        self.epoch_cpu.append(time.process_time() - self.cpu_start)
        self.upper_steps = sum("hypergrad_norm" in r for r in self.batch_rows)

    def _finish(self) -> dict:
        return {}

    def time_epoch(self, method: str, H: int, K: int, variant: str | None = None) -> tuple[float, float, int]:
        """One fresh model trained one epoch with this method (and named variant): (wall s, CPU s, upper steps)."""
        cfg = build_config(self.base_cfg, method, variant, {"H": H, "K": K, "epochs": 1})
        self.cfg = self.pipe.cfg = cfg
        self.epoch_seconds, self.epoch_cpu = [], []
        self.fit()
        return self.epoch_seconds[0], self.epoch_cpu[0], self.upper_steps


def make_timer(finetune_layers: int, n_train: int, args: argparse.Namespace,
               counterfactual_data: bool = False) -> EpochTimer:
    """counterfactual_data: also load the clause copies of train and D_dev the target-aware variants read
    (loading is not timed; a run without those flags never touches them)."""
    cfg = build_config(None, None, None, {
        "dataset": args.dataset, "max_train_samples": n_train, "max_eval_samples": args.max_eval_samples,
        "text_model": args.text_model, "finetune_layers": finetune_layers, "eval_test_each_epoch": False,
        "device": "cpu"})
    loading = cfg
    if counterfactual_data:
        loading = build_config(cfg, None, None, {"upper_objective": "counterfactual", "counterfactual_share": 0.5})
    timer = EpochTimer(loading, tempfile.mkdtemp(prefix="bench_overhead_"), progress=False)
    timer._load_data()
    timer.base_cfg = cfg
    return timer


def run_regime(name: str, finetune_layers: int, n_train: int, grid: list[tuple[int, int]],
               args: argparse.Namespace) -> dict:
    """Per repeat and H: one wo_cms epoch and the cmcs epochs for every K, order alternating."""
    timer = make_timer(finetune_layers, n_train, args)
    steps = -(-len(timer.train_data) // timer.cfg.train.batch_size)
    timer.time_epoch("wo_cms", 20, 3)  # warm-up: allocator, oneDNN kernels, double backward
    timer.time_epoch("cmcs", 20, 1)
    rows = {(H, K): {"H": H, "K": K, **{k: [] for k in METRICS}} for H, K in grid}
    groups = {H: [K for h, K in grid if h == H] for H, _ in grid}
    bar = tqdm(total=args.repeats * len(grid), desc=name)
    for rep in range(args.repeats):
        flip = rep % 2 == 1
        for H, Ks in (reversed(groups.items()) if flip else groups.items()):
            runs = [("wo_cms", 20, 3)] + [("cmcs", H, K) for K in Ks]
            got = {(m, k): timer.time_epoch(m, h, k) for m, h, k in (runs[::-1] if flip else runs)}
            w0, c0, _ = got[("wo_cms", 3)]
            for K in Ks:
                w1, c1, upper = got[("cmcs", K)]
                row = rows[(H, K)]
                for key, val in zip(METRICS, (w0, w1, c0, c1, w1 / w0, c1 / c0)):
                    row[key].append(val)
                row["upper_steps"] = upper
                bar.update()
                bar.set_postfix(H=H, K=K, cpu_ratio=f"{c1 / c0:.2f}")
    bar.close()
    for row in rows.values():
        for key in METRICS:
            row[key] = summary(row[key])
    return {"finetune_layers": finetune_layers, "train_samples": len(timer.train_data), "steps_per_epoch": steps,
            "batch_size": timer.cfg.train.batch_size, "hessian_params": timer.cfg.train.hessian_params,
            "results": list(rows.values())}


VARIANT_METRICS = ("cpu_cmcs", "cpu_variant", "ratio_cpu", "wall_cmcs", "wall_variant", "ratio_wall")


def run_variants(name: str, finetune_layers: int, n_train: int, variants: list[str],
                 args: argparse.Namespace) -> dict:
    """Per repeat: one paper-CMCS epoch and one epoch of each variant (H=20, K=3), order alternating;
    each variant's cost as a ratio to the paper's CMCS in the same repeat."""
    timer = make_timer(finetune_layers, n_train, args, counterfactual_data=True)
    for v in [None, *variants]:  # warm-up of every code path
        timer.time_epoch("cmcs", 20, 3, v)
    rows = {v: {"variant": v, **{k: [] for k in VARIANT_METRICS}} for v in variants}
    bar = tqdm(total=args.repeats * len(variants), desc=f"{name} variants")
    for rep in range(args.repeats):
        order = [None, *variants]
        got = {v: timer.time_epoch("cmcs", 20, 3, v) for v in (order[::-1] if rep % 2 else order)}
        w0, c0, _ = got[None]
        for v in variants:
            w1, c1, upper = got[v]
            for key, val in zip(VARIANT_METRICS, (c0, c1, c1 / c0, w0, w1, w1 / w0)):
                rows[v][key].append(val)
            rows[v]["upper_steps"] = upper
            bar.update()
            bar.set_postfix(variant=v, cpu_ratio=f"{c1 / c0:.2f}")
    bar.close()
    for row in rows.values():
        for key in VARIANT_METRICS:
            row[key] = summary(row[key])
    return {"finetune_layers": finetune_layers, "train_samples": len(timer.train_data), "H": 20, "K": 3,
            "batch_size": timer.cfg.train.batch_size, "results": list(rows.values())}


def print_variants(regime: str, res: dict, repeats: int) -> None:
    print(f"\n{regime}: finetune_layers={res['finetune_layers']}, {res['train_samples']} samples, H=20 K=3; "
          f"CPU-second medians, (min-max) over {repeats} repeats")
    print(f"{'variant':<26} {'cmcs cpu s':>10} {'variant cpu s':>13} {'ratio cpu':>9} {'(min-max)':>11}")
    for row in res["results"]:
        r = row["ratio_cpu"]
        print(f"{row['variant']:<26} {row['cpu_cmcs']['median']:>10.2f} {row['cpu_variant']['median']:>13.2f} "
              f"{r['median']:>9.2f} {r['min']:>5.2f}-{r['max']:.2f}")


def child_argv(argv: list[str]) -> list[str]:
    """This command line without --processes/--json-out (the children run one process each)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--processes", "--json-out"):
            skip = True
        elif not a.startswith(("--processes=", "--json-out=")):
            out.append(a)
    return out


def across_processes(args: argparse.Namespace) -> dict:
    """Run the measurement in args.processes fresh processes, one after another; per cell, the median
    and (min-max) over the processes of each process's median."""
    children = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.processes):
            path = Path(tmp) / f"process_{i}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), *child_argv(sys.argv[1:]), "--json-out", str(path)]
            print(f"process {i + 1}/{args.processes}", flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            children.append(json.loads(path.read_text()))
    regimes = {}
    for name, first in children[0]["regimes"].items():
        rows = []
        for j, row in enumerate(first["results"]):
            cells = [c["regimes"][name]["results"][j] for c in children]
            rows.append({"H": row["H"], "K": row["K"], "upper_steps": row["upper_steps"],
                         **{key: summary([c[key]["median"] for c in cells]) for key in METRICS}})
        regimes[name] = {**{k: v for k, v in first.items() if k != "results"}, "results": rows}
    return {"spread": f"across {args.processes} processes (median and min-max of the per-process medians)",
            "processes": args.processes, "repeats_per_process": args.repeats, "grid": children[0]["grid"],
            "regimes": regimes, "per_process": children}


def print_regime(regime: str, res: dict, spread: str) -> None:
    ft = res["finetune_layers"]
    print(f"\n{regime}: finetune_layers={ft}, {res['train_samples']} samples, {res['steps_per_epoch']} steps/epoch; "
          f"CPU-second medians, (min-max) {spread}")
    print(f"{'H':>3} {'K':>2} {'upper':>5} {'wo_cms cpu s':>12} {'cmcs cpu s':>10} {'ratio cpu':>9} "
          f"{'(min-max)':>11} {'ratio wall':>10}")
    for row in res["results"]:
        r, w = row["ratio_cpu"], row["ratio_wall"]
        print(f"{row['H']:>3} {row['K']:>2} {row['upper_steps']:>5} {row['cpu_wo_cms']['median']:>12.2f} "
              f"{row['cpu_cmcs']['median']:>10.2f} {r['median']:>9.2f} {r['min']:>5.2f}-{r['max']:.2f} "
              f"{w['median']:>10.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="twitter2015")
    p.add_argument("--text-model", default="minilm")
    p.add_argument("--max-train-samples", type=int, default=640, help="frozen regime (640 = 20 steps of 32)")
    p.add_argument("--ft-train-samples", type=int, default=640, help="fine-tuned regime")
    p.add_argument("--max-eval-samples", type=int, default=256)
    p.add_argument("--finetune-layers", type=int, default=2, help="layers trained in the 'finetuned' regime")
    p.add_argument("--regimes", default="frozen,finetuned", help="frozen,finetuned[,full] (full: all layers, "
                   "defaults H=20 K=3 only: slow on a CPU)")
    p.add_argument("--H", default="1,5,20")
    p.add_argument("--K", default="1,3,5")
    p.add_argument("--repeats", type=int, help="per process (default 3; --quick: 2)")
    p.add_argument("--threads", type=int, default=1, help="1: CPU time is then a load-robust cost measure")
    p.add_argument("--quick", action="store_true", help="H=20, K=3 only, 2 repeats unless --repeats")
    p.add_argument("--processes", type=int, default=1, help="N > 1: the spread across N fresh processes")
    p.add_argument("--json-out", type=Path, help="write here instead of bench/results/NAME.json (the children)")
    p.add_argument("--name", default="overhead")
    p.add_argument("--variants", help=f"comma-separated named variants ({', '.join(sorted(VARIANTS))}): time each "
                   "against the paper's CMCS instead of CMCS against joint training")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.H, args.K = "20", "3"
    args.repeats = args.repeats or (2 if args.quick else 3)
    if args.variants:
        variants = args.variants.split(",")
        out = {"loadavg_start": list(os.getloadavg()), "repeats": args.repeats, "regimes": {}}
        for regime in args.regimes.split(","):
            ft, n = {"frozen": (0, args.max_train_samples), "finetuned": (args.finetune_layers, args.ft_train_samples),
                     "full": (-1, args.ft_train_samples)}[regime]
            out["regimes"][regime] = run_variants(regime, ft, n, variants, args)
            out["loadavg_end"] = list(os.getloadavg())
            write_result(args.name, out, args.json_out)
            print_variants(regime, out["regimes"][regime], args.repeats)
        return
    if args.processes > 1:
        load_start = list(os.getloadavg())
        out = across_processes(args)
        write_result(args.name, {"loadavg_start": load_start, "loadavg_end": list(os.getloadavg()), **out})
        for regime, res in out["regimes"].items():
            print_regime(regime, res, out["spread"])
        return
    grid = [(int(h), int(k)) for h in args.H.split(",") for k in args.K.split(",")]
    load_start = list(os.getloadavg())
    out = {"loadavg_start": load_start, "grid": grid, "repeats": args.repeats, "regimes": {}}
    for regime in args.regimes.split(","):
        ft, n = {"frozen": (0, args.max_train_samples), "finetuned": (args.finetune_layers, args.ft_train_samples),
                 "full": (-1, args.ft_train_samples)}[regime]
        res = run_regime(regime, ft, n, [(20, 3)] if regime == "full" else grid, args)
        out["regimes"][regime] = res
        out["loadavg_end"] = list(os.getloadavg())
        write_result(args.name, out, args.json_out)  # after every regime, so a long run keeps what it measured
        print_regime(regime, res, f"over {args.repeats} repeats in this process")


if __name__ == "__main__":
    main()
