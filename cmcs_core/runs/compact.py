"""Committed run folders: without checkpoints, with per-sample extras only where the app needs them,
and a stress test's flipped rows with their text kept by reference where the data gives it back
(results/README.md has the policy and the budget). scripts/compact_runs.py (which also converts
folders of the old formats), scripts/pack_stress.py and scripts/pack_runs.py are the commands.
"""
from __future__ import annotations

import fnmatch
import gzip
import io
import json
import shutil
from pathlib import Path

import pandas as pd

from cmcs_core.io import atomic_save, atomic_write_json
from cmcs_core.runs.files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    EPOCHS_FILE,
    METRICS_FILE,
    STATE_FILE,
    STRESS_DIR,
    STRESS_FILE,
    features_file,
    masks_stem,
    predictions_stem,
)
from cmcs_core.runs.formats import read_stress_report
from cmcs_core.runs.packed import FLIPPED_BY_REFERENCE, restore_flipped
from cmcs_core.runs.reader import load_run

NEVER = (CHECKPOINT_FILE, STATE_FILE, features_file("dev"), f"{masks_stem('dev')}.parquet")
MASK_SEED = 1  # the seed whose masks a committed learned-mask run keeps (the Masks page)
STRESS_KEEP = (CONFIG_FILE, METRICS_FILE, EPOCHS_FILE)


def compact_run(run_dir: str | Path, per_sample: bool = True, features: bool = True) -> dict[str, int]:
    """Drop, in place, the extras a committed run folder does not keep; returns bytes before/after.

    per_sample=False drops masks_* and the predictions other than test (metrics.json keeps the dev
    figures); features=False drops features_*. Old-format folders are converted first by
    scripts/compact_runs.py."""
    root = Path(run_dir)
    before = _size(root)
    drop = []
    if not per_sample:
        drop += [*root.glob(f"{masks_stem('*')}.parquet"),
                 *(p for p in root.glob(f"{predictions_stem('*')}.parquet") if p.stem != predictions_stem("test"))]
    if not features:
        drop += root.glob(features_file("*"))
    for path in drop:
        path.unlink()
    return {"before": before, "after": _size(root)}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def committed_extras(run_dir: Path, feature_patterns: list[str]) -> tuple[bool, bool]:
    """(masks, features) a committed run keeps: masks for seed 1 of the methods with a learned
    mask, features only for the run folders the patterns name (the Feature space page)."""
    run = load_run(run_dir)
    masks = run.cfg.train.seed == MASK_SEED and run.cfg.model.mask_mode == "learned"
    features = any(fnmatch.fnmatch(run_dir.name, p) or fnmatch.fnmatch(run_dir.as_posix(), p) for p in feature_patterns)
    return masks, features


def compact_for_commit(run_dir: Path, feature_patterns: list[str]) -> dict[str, int]:
    """A run folder as results/ keeps it (in place); returns bytes before/after."""
    masks, features = committed_extras(run_dir, feature_patterns)
    for name in (*NEVER, f"{predictions_stem('dev')}.parquet"):
        (run_dir / name).unlink(missing_ok=True)
    return compact_run(run_dir, per_sample=masks, features=features)


def compact_copy(run: Path, copy: Path, features: list[str]) -> Path:
    """A copy of one run folder in the committed form (the original is left as it is): compact formats, no
    checkpoint, masks for seed 1, features only for the runs matching `features`, and a stress-tested run's
    stress.json and flipped rows as pack_stress_run keeps them."""
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(*NEVER, "projections", STRESS_DIR, STRESS_FILE))
    compact_for_commit(copy, features)
    if (run / STRESS_FILE).is_file():
        pack_stress_run(run, copy)  # stress.json and the flipped rows, gzipped; not the edited TSVs
    return copy


# -- stress-tested runs ---------------------------------------------------------------------------
def pack_stress_run(run: Path, out: Path) -> int:
    """Copy a stress-tested run as results/ keeps it: config, metrics, epochs, stress.json and the
    flipped rows gzipped (text by reference where the data gives it back); no checkpoint, no edited
    TSVs (`stress` writes them again). Returns the bytes written."""
    report = json.loads((run / STRESS_FILE).read_text())
    out.mkdir(parents=True, exist_ok=True)
    for name in STRESS_KEEP:
        if (run / name).is_file():
            shutil.copy2(run / name, out / name)
    _keep_target_awareness(run, out)
    for entry in report["splits"].values():
        for res in entry["edits"].values():
            if not res.get("rows_file"):
                continue
            data = _slim_flipped_csv(run, res["rows_file"])
            res["rows_file"] = res["rows_file"].removesuffix(".gz") + ".gz"
            res.pop("file", None)  # the edited TSV is not kept: `stress` writes it again
            atomic_save(out / res["rows_file"], lambda p: Path(p).write_bytes(gzip.compress(data, mtime=0)))
    atomic_write_json(out / STRESS_FILE, report)
    return sum(f.stat().st_size for f in out.rglob("*") if f.is_file())


def _keep_target_awareness(run: Path, out: Path) -> None:
    """The packed folder keeps no predictions: a run trained before training wrote its target awareness
    gets it into the copy's metrics.json from its own predictions (the function evaluate uses)."""
    source = load_run(run)
    metrics = json.loads((out / METRICS_FILE).read_text())
    changed = False
    for split in ("dev", "test"):
        if split in metrics and "target_awareness" not in metrics[split]:
            figures = source.target_awareness(split)
            if figures is not None:
                metrics[split]["target_awareness"] = figures
                changed = True
    if changed:
        atomic_write_json(out / METRICS_FILE, metrics)


def repack_stress_run(run: Path) -> int:
    """Drop the text of an already packed folder's flipped rows where the data gives it back."""
    for entry in read_stress_report(run)["splits"].values():
        for res in entry["edits"].values():
            if res.get("rows_file"):
                data = _slim_flipped_csv(run, res["rows_file"])
                atomic_save(run / res["rows_file"], lambda p: Path(p).write_bytes(gzip.compress(data, mtime=0)))
    return sum(f.stat().st_size for f in run.rglob("*") if f.is_file())


def _slim_flipped_csv(run_dir: Path, rows_file: str) -> bytes:
    """The flipped rows as CSV bytes, without the text columns when they come back identical from
    the data."""
    run = load_run(run_dir)
    rows = run.flipped(rows_file)
    full = rows.to_csv(index=False).encode()
    if rows.attrs.get("text_missing"):
        return full
    slim = rows.drop(columns=list(FLIPPED_BY_REFERENCE))
    try:
        back = restore_flipped(pd.read_csv(io.BytesIO(slim.to_csv(index=False).encode()), keep_default_na=False,
                                           dtype={"index": str}), run.cfg, run.stress_report(), rows_file)
        if back.to_csv(index=False).encode() == full:
            return slim.to_csv(index=False).encode()
    except (OSError, ValueError, KeyError):
        pass
    return full
