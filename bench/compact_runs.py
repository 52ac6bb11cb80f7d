"""Convert committed run folders to the compact formats in place, keeping per-sample extras
only where the app needs them (results/README.md has the policy and the per-run budget).

    python bench/compact_runs.py results/gpu_mpnet --features '*/default/twitter2015_*_cmcs_s1'
    python bench/compact_runs.py results --dry-run          # what it would keep, nothing written

Per run: batches and test predictions as Parquet (the tweet text by reference to the data
file, checked line by line before it is dropped); epochs.csv, config, metrics and logs as they
are; no checkpoint. masks_test only for seed 1 of methods with a learned mask (the Masks page);
features_test only for the run folders named by --features (the Feature space page);
predictions_dev nowhere (the dev figures stay in metrics.json and epochs.csv).
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's cmcs_core

from cmcs_core.runfiles import compact_run  # noqa: E402
from cmcs_core.runs import find_run_dirs, load_run  # noqa: E402

NEVER = ("best.safetensors", "last_state.pt", "features_dev.npz", "masks_dev.json", "masks_dev.parquet")
MASK_SEED = 1


def keeps(run_dir: Path, feature_patterns: list[str]) -> tuple[bool, bool]:
    """(masks, features) this committed run keeps."""
    run = load_run(run_dir)
    masks = run.cfg.train.seed == MASK_SEED and run.cfg.model.mask_mode == "learned"
    features = any(fnmatch.fnmatch(run.name, p) or fnmatch.fnmatch(run_dir.as_posix(), p) for p in feature_patterns)
    return masks, features


def compact(run_dir: Path, feature_patterns: list[str]) -> dict[str, int]:
    run = load_run(run_dir)
    masks, features = keeps(run_dir, feature_patterns)
    for name in NEVER:
        (run_dir / name).unlink(missing_ok=True)
    for name in ("predictions_dev.csv", "predictions_dev.parquet"):
        (run_dir / name).unlink(missing_ok=True)
    if not masks:
        for path in [*run_dir.glob("masks_*.json"), *run_dir.glob("masks_*.parquet")]:
            path.unlink()
    return compact_run(run_dir, per_sample=masks, features=features, samples_of=run.split_samples)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("roots", nargs="+")
    p.add_argument("--features", nargs="*", default=[], metavar="GLOB",
                   help="run folder names or paths (globs) that keep features_test.npz")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args()
    total = {"before": 0, "after": 0}
    for root in args.roots:
        for run_dir in find_run_dirs(root):
            if args.dry_run:
                print(run_dir, "keeps masks/features:", keeps(run_dir, args.features))
                continue
            sizes = compact(run_dir, args.features)
            total = {k: total[k] + sizes[k] for k in total}
            print(f"{run_dir}: {sizes['before'] / 1e3:.0f} kB -> {sizes['after'] / 1e3:.0f} kB")
    if not args.dry_run:
        print(f"total: {total['before'] / 1e6:.1f} MB -> {total['after'] / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
