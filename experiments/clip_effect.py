"""What the hypergradient clip does. First the norms logged by the committed runs (results/), per
grid and epoch; then the same short CMCS run with hypergrad_clip 1.0 (the default), 0.01 (binds on
every upper step) and 1e12 (never binds), trained through the CLI, and how far alpha/beta and the
test accuracy move apart.

    python experiments/clip_effect.py                 # 640 Twitter2015 rows, H=2, 2 epochs, 3 runs
    python experiments/clip_effect.py --logged-only   # only the committed runs' norms

Not a timing: run it niced. Writes experiments/results/clip_effect.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from cmcs_core.provenance import write_result
from cmcs_core.runs.files import METRICS_FILE
from cmcs_core.runs.reader import load_run, scan_runs

ROOT = Path(__file__).resolve().parents[1]

CLIPS = {"default 1.0": 1.0, "always binds 0.01": 0.01, "off 1e12": 1e12}


def train(run_dir: Path, clip: float, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "cmcs_core", "train", "--dataset", "twitter2015", "--method", "cmcs",
           "--max-train-samples", str(args.train_samples), "--max-eval-samples", "256", "--H", str(args.H),
           "--epochs", str(args.epochs), "--seed", str(args.seed), "--device", "cpu", "--num-threads", "1",
           "--no-eval-test-each-epoch", "--hypergrad-clip", str(clip), "--quiet", "--output-dir", str(run_dir)]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return cmd[1:]


def logged_norms(root: Path) -> list[dict]:
    """Hypergradient norms of every committed CMCS run under root, per grid folder: all upper steps,
    those of epoch 1, and those of the last epoch."""
    frames = []
    for run in scan_runs(root)[0]:
        b = run.batches()
        if "hypergrad_norm" not in b or b.hypergrad_norm.isna().all():
            continue
        b = b[b.hypergrad_norm.notna()]
        grid = run.path.relative_to(root).parts[0]
        frames.append(pd.DataFrame({"grid": grid, "dataset": run.dataset, "norm": b.hypergrad_norm,
                                    "first": b.epoch == b.epoch.min(), "last": b.epoch == b.epoch.max(),
                                    "clip_value": run.cfg.train.hypergrad_clip}))
    if not frames:
        return []
    d = pd.concat(frames)
    rows = []
    for (grid, dataset), g in d.groupby(["grid", "dataset"]):
        rows.append({"grid": grid, "dataset": dataset, "upper_steps": len(g), "clip": float(g.clip_value.max()),
                     "min": g.norm.min(), "median": g.norm.median(), "max": g.norm.max(),
                     "median_epoch1": g.norm[g["first"]].median(), "median_last_epoch": g.norm[g["last"]].median(),
                     "fraction_at_or_below_clip": float((g.norm <= g.clip_value).mean())})
    print(f"\nhypergradient norms logged by the runs under {root}:")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return rows


def phi_moves(upper: pd.DataFrame) -> dict:
    """Median |change of alpha| + |change of beta| per upper step, over the first and the second half
    of the run's upper steps (alpha/beta are logged before each step, so diffs are the steps)."""
    moves = (upper.alpha.diff().abs() + upper.beta.diff().abs()).iloc[1:].to_numpy()
    half = len(moves) // 2
    return {"phi_move_median_first_half": float(np.median(moves[:half])),
            "phi_move_median_second_half": float(np.median(moves[half:]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-samples", type=int, default=640)
    p.add_argument("--H", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--results", type=Path, default=ROOT / "results", help="committed runs to read norms from")
    p.add_argument("--logged-only", action="store_true")
    args = p.parse_args()
    logged = logged_norms(args.results)
    if args.logged_only:
        return
    runs, commands = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, clip in CLIPS.items():
            commands[name] = " ".join(train(Path(tmp) / name.split()[-1], clip, args))
            folder = Path(tmp) / name.split()[-1]
            b = load_run(folder).batches()
            runs[name] = {"batches": b[b.hypergrad_norm.notna()].reset_index(drop=True),
                          "metrics": json.loads((folder / METRICS_FILE).read_text())}
    ref = runs["default 1.0"]["batches"]
    norms = ref.hypergrad_norm.to_numpy()
    out = {"setting": {k: str(v) for k, v in vars(args).items()}, "logged_norms": logged, "commands": commands, "upper_steps": len(ref),
           "norm": {"min": float(norms.min()), "median": float(np.median(norms)), "max": float(norms.max()),
                    "fraction_at_or_below_1": float((norms <= 1).mean())},
           "runs": {}}
    print(f"{len(ref)} upper steps; hypergradient norm (clip 1.0 run): min {norms.min():.3g}, median "
          f"{np.median(norms):.3g}, max {norms.max():.3g}; {np.mean(norms <= 1):.0%} of steps at or below 1.0")
    for name, r in runs.items():
        b = r["batches"]
        row = {"alpha_end": float(b.alpha.iloc[-1]), "beta_end": float(b.beta.iloc[-1]),
               "max_abs_alpha_diff_vs_default": float(np.abs(b.alpha - ref.alpha).max()),
               "max_abs_beta_diff_vs_default": float(np.abs(b.beta - ref.beta).max()),
               **phi_moves(b), "test_acc": r["metrics"]["test"]["acc"],
               "dev_acc": r["metrics"]["dev"]["acc"], "best_epoch": r["metrics"]["best_epoch"]}
        out["runs"][name] = row
        print(f"clip {name:>18}: alpha {row['alpha_end']:.4f} beta {row['beta_end']:.4f} | max |alpha - default| "
              f"{row['max_abs_alpha_diff_vs_default']:.2e}, |beta - default| {row['max_abs_beta_diff_vs_default']:.2e} "
              f"| phi move per step {row['phi_move_median_first_half']:.4f} -> {row['phi_move_median_second_half']:.4f} "
              f"| test acc {row['test_acc']:.4f}")
    write_result(ROOT / "experiments" / "results" / "clip_effect.json", out)


if __name__ == "__main__":
    main()
