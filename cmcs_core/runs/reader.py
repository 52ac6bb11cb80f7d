"""The one reader of a run folder: `Run` gives its config, metrics, per-batch and per-sample
tables, stress results and one row for the runs table; every table, page and analysis is built
from it. Fractions as the files hold them (accuracies 0..1); percent is for display only.

Every reader raises RunReadError (a ValueError) naming the folder and file, so a caller such as
the app can show one clear message and keep going when a folder is half-written or corrupt.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cmcs_core.command import cli_command
from cmcs_core.config import METHOD_TITLES, RunConfig
from cmcs_core.data.dataset import dataset_files, load_json_map
from cmcs_core.data.tsv import read_tsv
from cmcs_core.robustness import target_awareness
from cmcs_core.runs.describe import dataset_name, visual_encoder_is_random, visual_source_of
from cmcs_core.runs.files import (
    BATCHES,
    BATCHES_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    EPOCHS,
    EPOCHS_FILE,
    METRICS_FILE,
    PLAYGROUND_SCORE_FILE,
    STRESS_FILE,
    masks_stem,
    predictions_stem,
    table_file,
)
from cmcs_core.runs.formats import (
    edited_images_dir,
    features_path,
    masks_path,
    read_features,
    read_masks,
    read_stress_report,
    read_table,
    table_path,
)
from cmcs_core.runs.holds import is_set_aside
from cmcs_core.runs.packed import BY_REFERENCE, FLIPPED_BY_REFERENCE, restore_flipped, restore_text

RUNS_DIR_ENV = "CMCS_RUNS_DIR"
SPLITS = ("test", "dev")
STAMP_FILES = (CONFIG_FILE, METRICS_FILE, BATCHES_FILE, EPOCHS_FILE, CHECKPOINT_FILE, STRESS_FILE)


class RunReadError(ValueError):
    """A run folder, or one of its files, cannot be read."""


def default_runs_dir() -> Path:
    """$CMCS_RUNS_DIR, else runs/ in the working directory (where the CLI writes them)."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs").expanduser()


def run_stamp(run_dir: str | Path) -> float:
    """Newest mtime of the files that matter: a cache key that changes when a run is rewritten."""
    root = Path(run_dir)
    return max((p.stat().st_mtime for p in (root / n for n in STAMP_FILES) if p.is_file()), default=0.0)


def find_run_dirs(root: str | Path, max_depth: int = 4) -> list[Path]:
    """Folders with a config.json under root (itself included, down to results/<grid>/<variant>/<run>), by name."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):  # runs/results -> results/
        depth = len(Path(dirpath).relative_to(root).parts)
        if CONFIG_FILE in filenames:
            found.append(Path(dirpath))
            dirnames.clear()  # a run folder holds no other runs (eval_* folders have no config)
        elif depth >= max_depth:
            dirnames.clear()
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not is_set_aside(d)]  # hidden, or moved aside
    return sorted(found)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise RunReadError(f"{path.parent}: missing {path.name}") from err
    except (OSError, ValueError) as err:
        raise RunReadError(f"{path}: cannot read ({err})") from err


def _read_table(root: Path, stem: str) -> pd.DataFrame:
    """Table `stem` (its format: cmcs_core/runs/files.py, table_file)."""
    path = table_path(root, stem)
    if path is None:
        raise RunReadError(f"{root}: missing {table_file(stem)}")
    try:
        return read_table(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:  # ArrowInvalid is a ValueError
        raise RunReadError(f"{path}: cannot read ({err})") from err


@dataclass
class Run:
    """One run folder: its config, metrics and readers for the per-batch/per-sample files.

    `root` is the folder it was found under; a run's name everywhere (menus, links, tables) is
    its path relative to that folder, since folder names repeat across grids."""

    path: Path
    cfg: RunConfig
    metrics: dict | None
    problems: list[str] = field(default_factory=list)
    root: Path | None = None

    @property
    def name(self) -> str:
        if self.root is not None:
            for path, base in ((self.path, self.root), (self.path.absolute(), self.root.absolute()),
                               (self.path.resolve(), self.root.resolve())):
                try:  # unresolved first: runs/results may be a link to the committed results/
                    return str(path.relative_to(base))
                except ValueError:
                    continue
        return self.path.name

    @property
    def method(self) -> str:
        return self.cfg.model.method

    @property
    def method_title(self) -> str:
        return METHOD_TITLES.get(self.method, self.method)

    @property
    def dataset(self) -> str:
        return dataset_name(self.cfg.data.dataset)

    @property
    def visual_source(self) -> str:
        return visual_source_of(self.cfg)

    @property
    def precision(self) -> str:
        """fp32 or bf16: what the run computed in (config.json holds what auto resolved to)."""
        return self.cfg.train.precision

    @property
    def precision_reason(self) -> str:
        """Why that precision: the trainer's probe and the device's bf16 flags (metrics.json), when recorded."""
        recorded = (self.metrics or {}).get("precision")
        return recorded.get("reason", "") if isinstance(recorded, dict) else "recorded before the precision setting"

    @property
    def random_visual(self) -> bool:
        return visual_encoder_is_random(self.cfg)

    @property
    def finished(self) -> bool:
        """Training ended and outputs were written (metrics.json)."""
        return self.metrics is not None

    @property
    def has_checkpoint(self) -> bool:
        """The inspector needs the weights; committed result folders travel without them."""
        return (self.path / CHECKPOINT_FILE).is_file()

    def batches(self) -> pd.DataFrame:
        return _read_table(self.path, BATCHES)

    def epochs(self) -> pd.DataFrame:
        return _read_table(self.path, EPOCHS)

    def predictions(self, split: str = "test") -> pd.DataFrame:
        """Per-sample predictions; a compacted file's tweet/image columns come back from the
        dataset (empty strings, and a note in .attrs, when the data file is not at hand)."""
        pred = _read_table(self.path, predictions_stem(split))
        if all(c in pred for c in BY_REFERENCE) or "line" not in pred:
            return pred
        try:
            return restore_text(pred, self.split_samples(split))
        except RunReadError as err:
            out = pred.assign(**{c: "" for c in BY_REFERENCE if c not in pred})
            out.attrs["text_note"] = str(err)
            return out
        except ValueError as err:
            raise RunReadError(f"{self.path}/{predictions_stem(split)}: {err}") from err

    def masks(self, split: str = "test") -> dict:
        path = masks_path(self.path, split)
        if path is None:
            raise RunReadError(f"{self.path}: missing {masks_stem(split)}.parquet")
        try:
            data = read_masks(path)
        except (OSError, ValueError) as err:
            raise RunReadError(f"{path}: cannot read ({err})") from err
        if not isinstance(data, dict) or "samples" not in data:
            raise RunReadError(f"{path}: no 'samples' list")
        return data

    def features(self, split: str = "test") -> dict[str, np.ndarray]:
        path = features_path(self.path, split)
        if path is None:
            raise RunReadError(f"{self.path}: missing features_{split}.npz")
        try:
            return read_features(path)
        except (OSError, ValueError) as err:
            raise RunReadError(f"{path}: cannot read ({err})") from err

    def playground_score(self) -> dict | None:
        """Masks and accuracy scored against the planted truth (`cmcs playground` runs), else None."""
        path = self.path / PLAYGROUND_SCORE_FILE
        return _read_json(path) if path.is_file() else None

    def stress_report(self) -> dict:
        """stress.json ({"splits": {}} when the run was never stress-tested)."""
        return read_stress_report(self.path)

    def flipped(self, rows_file: str) -> pd.DataFrame:
        """The flipped rows of one edit (rows_file as stress.json names it). A packed file without
        its text gets it back from the data; without the data the text columns come back empty and
        `frame.attrs["text_missing"]` says why."""
        path = self.path / rows_file
        try:
            rows = pd.read_csv(path, keep_default_na=False, dtype={"index": str})
        except FileNotFoundError as err:
            raise RunReadError(f"{self.path}: missing {rows_file} "
                               f"(rerun `{cli_command('stress', '--run', self.path)}`)") from err
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise RunReadError(f"{path}: cannot read ({err})") from err
        if all(c in rows for c in FLIPPED_BY_REFERENCE):
            return rows
        try:
            return restore_flipped(rows, self.cfg, self.stress_report(), rows_file)
        except (OSError, ValueError, KeyError) as err:
            for name in FLIPPED_BY_REFERENCE:
                rows[name] = ""
            rows.attrs["text_missing"] = f"the tweets are kept by reference and could not be read back: {err}"
            return rows

    def target_awareness(self, split: str = "test") -> dict | None:
        """Multi-target tweets (cmcs_core.robustness.target_awareness): the figures metrics.json
        holds, else computed from the predictions; None without predictions or their text."""
        saved = ((self.metrics or {}).get(split) or {}).get("target_awareness")
        if saved is not None:
            return saved
        try:
            pred = self.predictions(split)
        except RunReadError:
            return None
        return None if pred.attrs.get("text_note") else target_awareness(pred)

    def splits(self) -> list[str]:
        return [s for s in SPLITS if table_path(self.path, predictions_stem(s)) is not None]

    def image_dir(self) -> Path | None:
        """Where this run's images can be shown from: its image_dir, else the dataset's images/."""
        for cand in (self.cfg.data.image_dir, Path(self.cfg.data.dataset) / "images"):
            if cand and Path(cand).expanduser().is_dir():
                return Path(cand).expanduser()
        return None

    def captions(self) -> dict[str, str]:
        """The dataset's caption of each image id ({} without a captions file): what a captions run read."""
        try:
            files = dataset_files(self.cfg.data.dataset, self.cfg.data.data_dir)
            return load_json_map(files.captions) if files.captions is not None else {}
        except (OSError, ValueError):
            return {}

    def edited_image(self, rows_file: str, edit: str, image_id: str) -> Path | None:
        """The picture a stress edit drew for a row (swap_image_cue on a pixel run), kept beside the edit's
        rows in this folder; None where the edit drew none."""
        path = edited_images_dir((self.path / rows_file).parent, edit) / Path(image_id).name
        return path if path.is_file() else None

    def split_samples(self, split: str) -> list:
        """One split's samples from the run's dataset; needs the dataset on disk."""
        try:
            files = dataset_files(self.cfg.data.dataset, self.cfg.data.data_dir)
            return read_tsv(files.split_path(split))
        except (OSError, ValueError) as err:
            raise RunReadError(f"{split} data of {self.name} not readable: {err}") from err

    def record(self) -> dict:
        """One row of the runs table: what the run is and how it did (fractions, as in metrics.json)."""
        m = self.metrics or {}
        test, dev = m.get("test") or {}, m.get("dev") or {}
        return {
            "run": self.name, "dataset": self.dataset, "method": self.method,
            "text_model": self.cfg.encoder.text_model, "visual_model": self.cfg.encoder.visual_model,
            "visual_source": self.visual_source + (" (RANDOM CLIP!)" if self.random_visual else ""),
            "finetune_layers": self.cfg.encoder.finetune_layers, "precision": self.precision,
            "seed": self.cfg.train.seed,
            "epochs": self.cfg.train.epochs, "best_epoch": m.get("best_epoch"),
            "dev_acc": dev.get("acc"), "test_acc": test.get("acc"), "test_f1": test.get("macro_f1"),
            "status": "finished" if self.finished else "unfinished", "path": str(self.path),
        }


def load_run(path: str | Path, root: str | Path | None = None) -> Run:
    """Read config.json (required) and metrics.json (None while a run is unfinished); `root` is
    the folder the run's name is taken relative to."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise RunReadError(f"{folder}: not a folder")
    raw = _read_json(folder / CONFIG_FILE)
    try:
        cfg = RunConfig.from_dict(raw)
    except (TypeError, ValueError, AttributeError) as err:
        raise RunReadError(f"{folder}/{CONFIG_FILE}: not a run config ({err})") from err
    metrics, problems = None, []
    if (folder / METRICS_FILE).is_file():
        try:
            metrics = _read_json(folder / METRICS_FILE)
        except RunReadError as err:
            problems.append(str(err))
    return Run(folder, cfg, metrics, problems, Path(root).expanduser() if root is not None else None)


def scan_runs(*roots: str | Path) -> tuple[list[Run], list[str]]:
    """Every readable run under the roots (a root may be a run folder itself), named relative to
    its root, plus one message per folder that could not be read."""
    runs, errors = [], []
    for root in roots:
        base = Path(root).expanduser()
        for folder in find_run_dirs(base):
            try:
                runs.append(load_run(folder, base.parent if folder == base else base))
                errors += runs[-1].problems
            except RunReadError as err:
                errors.append(str(err))
    return runs, errors


def runs_table(runs: list[Run]) -> pd.DataFrame:
    return pd.DataFrame([r.record() for r in runs])
