"""The names of a run folder's files, in one place: every writer and reader takes them from here.

How each file is stored (Parquet, CSV, JSON) is cmcs_core/runs/formats.py; what a run folder holds
is docs/method.md, "What a run folder holds".
"""
from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "config.json"  # the run's RunConfig; a folder with one is a run folder
LOG_FILE = "train.log"
BATCHES = "batches"  # table stem: batches.parquet
BATCHES_FILE = f"{BATCHES}.parquet"
EPOCHS = "epochs"  # table stem, kept as CSV
EPOCHS_FILE = f"{EPOCHS}.csv"
METRICS_FILE = "metrics.json"  # written last, atomically: a run with one is finished
CHECKPOINT_FILE = "best.safetensors"  # the trained tensors of the kept epoch
STATE_FILE = "last_state.pt"  # where an unfinished run resumes from
STRESS_FILE = "stress.json"
STRESS_DIR = "stress"  # stress/<split tag>/<edit>_flipped.csv[.gz]
PLAYGROUND_SCORE_FILE = "playground_score.json"


def epochs_done(run_dir: str | Path) -> int:
    """How many epochs a run folder has logged (rows of epochs.csv; 0 before the first ends)."""
    path = Path(run_dir) / EPOCHS_FILE
    try:
        return max(len(path.read_text().splitlines()) - 1, 0)
    except OSError:
        return 0


def table_file(stem: str) -> str:
    """The file of table `stem`: epochs.csv stays CSV (a handful of rows, readable with `cat`); the others are
    Parquet (cmcs_core/runs/formats.py)."""
    return f"{stem}.csv" if stem == EPOCHS else f"{stem}.parquet"


def predictions_stem(split: str) -> str:
    """Table stem of a split's per-sample predictions (predictions_<split>.parquet)."""
    return f"predictions_{split}"


def masks_stem(split: str) -> str:
    """Stem of a split's per-sample masks (masks_<split>.parquet)."""
    return f"masks_{split}"


def features_file(split: str) -> str:
    return f"features_{split}.npz"


def run_paths(run_dir: str | Path) -> dict[str, Path]:
    """The files the trainer writes in a run folder, by role."""
    root = Path(run_dir)
    names = {
        "config": CONFIG_FILE,
        "log": LOG_FILE,
        "batches": BATCHES_FILE,
        "epochs": EPOCHS_FILE,
        "metrics": METRICS_FILE,
        "best": CHECKPOINT_FILE,
        "state": STATE_FILE,
    }
    return {k: root / v for k, v in names.items()}
