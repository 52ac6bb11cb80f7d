"""Convert committed run folders to the compact formats in place, keeping per-sample extras
only where the app needs them (results/README.md has the policy and the per-run budget).

    python scripts/compact_runs.py results/gpu_mpnet --features '*/default/twitter2015_*_cmcs_s1'
    python scripts/compact_runs.py results --dry-run          # what it would keep, nothing written

Per run (cmcs_core/runs/compact.py): batches and test predictions as Parquet (the tweet text by
reference to the data file, checked line by line before it is dropped); epochs.csv, config,
metrics and logs as they are; no checkpoint. masks_test only for seed 1 of methods with a learned
mask (the Masks page); features_test only for the run folders named by --features (the Feature
space page); predictions_dev nowhere (the dev figures stay in metrics.json and epochs.csv).
"""
from __future__ import annotations

import argparse

from cmcs_core.runs.compact import committed_extras, compact_for_commit
from cmcs_core.runs.reader import find_run_dirs


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
                print(run_dir, "keeps masks/features:", committed_extras(run_dir, args.features))
                continue
            sizes = compact_for_commit(run_dir, args.features)
            total = {k: total[k] + sizes[k] for k in total}
            print(f"{run_dir}: {sizes['before'] / 1e3:.0f} kB -> {sizes['after'] / 1e3:.0f} kB")
    if not args.dry_run:
        print(f"total: {total['before'] / 1e6:.1f} MB -> {total['after'] / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
