"""Convert committed run folders to the compact formats in place, keeping per-sample extras
only where the app needs them (results/README.md has the policy and the per-run budget).

    python scripts/compact_runs.py results/gpu_mpnet --features '*/default/twitter2015_*_cmcs_s1'
    python scripts/compact_runs.py results --dry-run          # what it would keep, nothing written

Per run (cmcs_core/runs/compact.py): batches and test predictions as Parquet (the tweet text by
reference to the data file, checked line by line before it is dropped); epochs.csv, config,
metrics and logs as they are; no checkpoint. masks_test only for seed 1 of methods with a learned
mask (the Masks page); features_test only for the run folders named by --features (the Feature
space page); predictions_dev nowhere (the dev figures stay in metrics.json and epochs.csv).

Folders written before the compact formats hold batches.csv, predictions_<split>.csv and
masks_<split>.json. This script is the one reader of those (the library reads the compact formats
only): it converts them first, every converted file read back and compared before the old one goes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from cmcs_core.runs.compact import committed_extras, compact_for_commit
from cmcs_core.runs.files import BATCHES, masks_stem, predictions_stem
from cmcs_core.runs.formats import as_float32, read_masks, read_table, write_masks, write_table
from cmcs_core.runs.packed import BY_REFERENCE, restore_text
from cmcs_core.runs.reader import find_run_dirs, load_run

PREDICTIONS = predictions_stem("")


def convert_old_formats(run_dir: str | Path, per_sample: bool = True, samples_of=None) -> None:
    """Convert a folder's old-format files (CSV tables, JSON masks) to Parquet in place.

    per_sample=False drops the old masks and predictions other than test instead of converting them.
    samples_of(split) -> samples, when given, lets the predictions go by reference: the text is dropped
    only after restore_text gives back exactly the stored columns."""
    root = Path(run_dir)
    for stem in (BATCHES, *(p.stem for p in sorted(root.glob(f"{predictions_stem('*')}.csv")))):
        old = root / f"{stem}.csv"
        if not old.is_file():
            continue
        if stem.startswith(PREDICTIONS) and stem != predictions_stem("test") and not per_sample:
            old.unlink()
            continue
        frame = read_table(old)
        keep = frame
        if stem.startswith(PREDICTIONS) and samples_of is not None:
            slim = frame.drop(columns=[c for c in BY_REFERENCE if c in frame])
            try:
                back = restore_text(slim, samples_of(stem.removeprefix(PREDICTIONS)))
                pd.testing.assert_frame_equal(back[list(frame.columns)], frame, check_dtype=False)
                keep = slim
            except (OSError, ValueError, KeyError, AssertionError):
                pass  # the data file is not at hand or differs: keep the text in the file
        new = write_table(root / f"{stem}.parquet", keep)
        _check_same(keep, read_table(new), new)
        old.unlink()
    for old in sorted(root.glob(f"{masks_stem('*')}.json")):
        if not per_sample:
            old.unlink()
            continue
        data = json.loads(old.read_text())
        new = write_masks(old.with_suffix(".parquet"), data.get("grid"), data["samples"])
        if read_masks(new) != {"grid": data.get("grid"), "samples": data["samples"]}:
            new.unlink()
            raise ValueError(f"{new}: masks do not read back equal; {old.name} kept")
        old.unlink()


def _check_same(expected: pd.DataFrame, got: pd.DataFrame, path: Path) -> None:
    """The compact file must hold the same values (floats to float32, the precision written)."""
    try:
        pd.testing.assert_frame_equal(as_float32(expected).reset_index(drop=True), got,
                                      check_dtype=False, rtol=0, atol=0)
    except AssertionError as err:
        path.unlink()
        raise ValueError(f"{path}: does not read back equal ({err})") from err


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


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
            masks, _ = committed_extras(run_dir, args.features)
            if args.dry_run:
                print(run_dir, "keeps masks/features:", committed_extras(run_dir, args.features))
                continue
            before = _size(run_dir)
            convert_old_formats(run_dir, per_sample=masks, samples_of=load_run(run_dir).split_samples)
            sizes = {"before": before, "after": compact_for_commit(run_dir, args.features)["after"]}
            total = {k: total[k] + sizes[k] for k in total}
            print(f"{run_dir}: {sizes['before'] / 1e3:.0f} kB -> {sizes['after'] / 1e3:.0f} kB")
    if not args.dry_run:
        print(f"total: {total['before'] / 1e6:.1f} MB -> {total['after'] / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
