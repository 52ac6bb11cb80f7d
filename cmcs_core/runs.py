"""Find run folders and read their files into pandas objects, for the app and notebooks.

Every reader raises RunReadError (a ValueError) with the folder and file named, so a caller
such as the app can show one clear message and keep going when a folder is half-written or
corrupt.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cmcs_core.config import METHOD_TITLES, RunConfig
from cmcs_core.data.tsv import LABEL_NAMES
from cmcs_core.runfiles import (BY_REFERENCE, features_path, masks_path, read_features, read_masks, read_table,
                                restore_text, table_path)

RUNS_DIR_ENV = "CMCS_RUNS_DIR"
SPLITS = ("test", "dev")


class RunReadError(ValueError):
    """A run folder, or one of its files, cannot be read."""


def default_runs_dir() -> Path:
    """$CMCS_RUNS_DIR, else runs/ in the working directory (where the CLI writes them)."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs").expanduser()


def run_stamp(run_dir: str | Path) -> float:
    """Newest mtime of the files that matter: a cache key that changes when a run is rewritten."""
    root = Path(run_dir)
    names = ("config.json", "metrics.json", "batches.parquet", "batches.csv", "epochs.csv", "best.safetensors")
    return max((p.stat().st_mtime for p in (root / n for n in names) if p.is_file()), default=0.0)


def find_run_dirs(root: str | Path, max_depth: int = 4) -> list[Path]:
    """Folders holding a config.json under root (root itself included, down to
    runs/results/<grid>/<variant>/<run>), sorted by name."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):  # runs/results -> results/
        depth = len(Path(dirpath).relative_to(root).parts)
        if "config.json" in filenames:
            found.append(Path(dirpath))
            dirnames.clear()  # a run folder holds no other runs (eval_* folders have no config)
        elif depth >= max_depth:
            dirnames.clear()
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return sorted(found)


def visual_encoder_is_random(cfg: RunConfig) -> bool:
    """True when the run's CLIP checkpoint carries the random-weights sidecar (meaningless features)."""
    spec = cfg.encoder.visual_model
    if not spec.startswith("clip:") or spec.count(":") < 2:
        return False
    source = spec.split(":", 2)[2]
    if source.startswith("hub:"):
        return False
    from cmcs_core.encoders.visual import SIDECAR_SUFFIX

    sidecar = Path(source).expanduser().with_name(Path(source).name + SIDECAR_SUFFIX)
    try:
        return bool(json.loads(sidecar.read_text()).get("random_weights", False))
    except (OSError, ValueError):
        return False


def visual_source_of(cfg: RunConfig) -> str:
    """What the visual branch read: the same words the pipeline writes into metrics.json."""
    if not cfg.model.use_visual:
        return "none (text only)"
    if cfg.encoder.visual_model != "caption":
        return f"pixels ({cfg.encoder.visual_model.split(':')[0]})"
    return "captions+faces" if cfg.data.use_faces else "captions"


@functools.lru_cache(maxsize=256)
def dataset_name(spec: str) -> str:
    """A dataset's name in tables and badges: its folder name (twitter2015), but a generated
    playground folder (meta.json by cmcs_core.playground, written to playground/data) reads
    "playground" rather than "data"."""
    folder = Path(spec).expanduser()
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict) and meta.get("generator") == "cmcs_core.playground":
        return "playground" if folder.name == "data" else f"playground ({folder.name})"
    return folder.name


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise RunReadError(f"{path.parent}: missing {path.name}") from err
    except (OSError, ValueError) as err:
        raise RunReadError(f"{path}: cannot read ({err})") from err


def _read_table(root: Path, stem: str) -> pd.DataFrame:
    """Table `stem` in either format (runfiles: Parquet now, CSV in older folders)."""
    path = table_path(root, stem)
    if path is None:
        raise RunReadError(f"{root}: missing {stem}.parquet (or {stem}.csv)")
    try:
        return read_table(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:  # ArrowInvalid is a ValueError
        raise RunReadError(f"{path}: cannot read ({err})") from err


@dataclass
class Run:
    """One run folder: its config, metrics and readers for the per-batch/per-sample files."""

    path: Path
    cfg: RunConfig
    metrics: dict | None
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
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
    def random_visual(self) -> bool:
        return visual_encoder_is_random(self.cfg)

    @property
    def finished(self) -> bool:
        """Training ended and outputs were written (metrics.json)."""
        return self.metrics is not None

    @property
    def has_checkpoint(self) -> bool:
        """The inspector needs the weights; committed result folders travel without them."""
        return (self.path / "best.safetensors").is_file()

    def label(self) -> str:
        """Short unambiguous name for menus: folder, method and visual source."""
        return f"{self.name} · {self.method} · {self.dataset} · visual: {self.visual_source}"

    def batches(self) -> pd.DataFrame:
        return _read_table(self.path, "batches")

    def epochs(self) -> pd.DataFrame:
        return _read_table(self.path, "epochs")

    def predictions(self, split: str = "test") -> pd.DataFrame:
        """Per-sample predictions; a compacted file's tweet/image columns come back from the
        dataset (empty strings, and a note in .attrs, when the data file is not at hand)."""
        pred = _read_table(self.path, f"predictions_{split}")
        if all(c in pred for c in BY_REFERENCE) or "line" not in pred:
            return pred
        try:
            return restore_text(pred, self.split_samples(split))
        except RunReadError as err:
            out = pred.assign(**{c: "" for c in BY_REFERENCE if c not in pred})
            out.attrs["text_note"] = str(err)
            return out
        except ValueError as err:
            raise RunReadError(f"{self.path}/predictions_{split}: {err}") from err

    def masks(self, split: str = "test") -> dict:
        path = masks_path(self.path, split)
        if path is None:
            raise RunReadError(f"{self.path}: missing masks_{split}.parquet (or .json)")
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

    def splits(self) -> list[str]:
        return [s for s in SPLITS if table_path(self.path, f"predictions_{s}") is not None]

    def image_dir(self) -> Path | None:
        """Where this run's images can be shown from: its image_dir, else the dataset's images/."""
        for cand in (self.cfg.data.image_dir, Path(self.cfg.data.dataset) / "images"):
            if cand and Path(cand).expanduser().is_dir():
                return Path(cand).expanduser()
        return None

    def split_samples(self, split: str) -> list:
        """One split's samples from the run's dataset; needs the dataset on disk."""
        from cmcs_core.data.dataset import dataset_files
        from cmcs_core.data.tsv import read_tsv

        try:
            files = dataset_files(self.cfg.data.dataset, self.cfg.data.data_dir)
            return read_tsv(files.split_path(split))
        except (OSError, ValueError) as err:
            raise RunReadError(f"{split} data of {self.name} not readable: {err}") from err

    def train_samples(self) -> list:
        """The training split's samples (for word/label statistics); needs the dataset on disk."""
        return self.split_samples("train")

    def summary(self) -> dict:
        """One row of the runs table."""
        m = self.metrics or {}
        test, dev = m.get("test", {}), m.get("dev", {})
        return {
            "run": self.name, "dataset": self.dataset, "method": self.method,
            "text_model": self.cfg.encoder.text_model, "visual_model": self.cfg.encoder.visual_model,
            "visual_source": self.visual_source + (" (RANDOM CLIP!)" if self.random_visual else ""),
            "finetune_layers": self.cfg.encoder.finetune_layers, "seed": self.cfg.train.seed,
            "epochs": self.cfg.train.epochs, "best_epoch": m.get("best_epoch"),
            "dev_acc": dev.get("acc"), "test_acc": test.get("acc"), "test_f1": test.get("macro_f1"),
            "status": "finished" if self.finished else "unfinished", "path": str(self.path),
        }


def load_run(path: str | Path) -> Run:
    """Read config.json (required) and metrics.json (None while a run is unfinished)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise RunReadError(f"{root}: not a folder")
    raw = _read_json(root / "config.json")
    try:
        cfg = RunConfig.from_dict(raw)
    except (TypeError, ValueError, AttributeError) as err:
        raise RunReadError(f"{root}/config.json: not a run config ({err})") from err
    metrics = None
    problems = []
    if (root / "metrics.json").is_file():
        try:
            metrics = _read_json(root / "metrics.json")
        except RunReadError as err:
            problems.append(str(err))
    return Run(root, cfg, metrics, problems)


def scan_runs(root: str | Path) -> tuple[list[Run], list[str]]:
    """Every readable run under root, plus one message per folder that could not be read."""
    runs, errors = [], []
    for folder in find_run_dirs(root):
        try:
            run = load_run(folder)
        except RunReadError as err:
            errors.append(str(err))
            continue
        runs.append(run)
        errors += run.problems
    return runs, errors


def runs_table(runs: list[Run]) -> pd.DataFrame:
    return pd.DataFrame([r.summary() for r in runs])


def probabilities(pred: pd.DataFrame, branch: str = "final") -> np.ndarray:
    """(N, 3) probabilities of one branch from a predictions frame (NaN when it has none)."""
    cols = [f"p_{branch}_{n}" for n in LABEL_NAMES]
    if not all(c in pred for c in cols):
        return np.full((len(pred), 3), np.nan)
    return pred[cols].to_numpy(dtype=float)


def align_predictions(runs: list[Run], split: str = "test") -> pd.DataFrame:
    """One row per sample, one pred column per run: the same samples side by side (Fig. 6).

    Columns are keyed by the run's path (`pred:<path>`, `correct:<path>`): run names repeat
    across grids. Samples are matched on (index, target); a run that lacks a sample has NaN there.
    """
    base = None
    for run in runs:
        pred = run.predictions(split)
        keep = pred[["index", "target", "pred", "correct"]].rename(
            columns={"pred": f"pred:{run.path}", "correct": f"correct:{run.path}"})
        if base is None:
            base = pred[["index", "line", "image_id", "tweet", "target", "label"]].merge(keep, on=["index", "target"])
        else:
            base = base.merge(keep, on=["index", "target"], how="left")
    return base if base is not None else pd.DataFrame()


def results_table(found: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std test Acc / macro-F1 (%) per regime, dataset and method, for any dataset.

    tables.markdown_tables lays out the two benchmarks beside the published numbers; this is
    the same summary for runs on other datasets (the playground), in Table 2's method order.
    """
    from cmcs_core.config import METHODS
    from cmcs_core.tables import summarise

    if found.empty:
        return pd.DataFrame(columns=["regime", "dataset", "method", "Acc", "F1", "seeds"])
    s = summarise(found)
    fmt = lambda m, sd: f"{m:.1f} ± {0.0 if np.isnan(sd) else sd:.1f}"  # noqa: E731 - one seed: no std
    s["Acc"] = [fmt(m, sd) for m, sd in zip(s.acc_mean, s.acc_std)]
    s["F1"] = [fmt(m, sd) for m, sd in zip(s.f1_mean, s.f1_std)]
    order = {m: i for i, m in enumerate(["text_only", *METHODS])}
    s = s.assign(_o=s.method.map(lambda m: order.get(m, 99))).sort_values(["regime", "dataset", "_o"])
    s["method"] = s.method.map(lambda m: METHOD_TITLES.get(m, m))
    return s[["regime", "dataset", "method", "Acc", "F1", "seeds"]].reset_index(drop=True)
