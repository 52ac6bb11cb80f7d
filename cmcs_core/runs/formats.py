"""How a run folder stores its per-batch and per-sample outputs: the writers and the low-level
readers of each file (cmcs_core.runs.reader.Run is the one reader of a whole folder).

Compact formats (written by the trainer and `evaluate`; docs/method.md, "What a run folder holds"):

- `batches.parquet`, `predictions_<split>.parquet`: Parquet, zstd. Floats are stored as float32,
  which is what the model computed (nothing is lost); floats skip dictionary encoding, which
  only grows noisy numbers.
- `masks_<split>.parquet`: one row per sample (tokens, mask, visual_tokens, visual_mask,
  caption), masks as float32 lists; the visual grid in the file's metadata.
- `features_<split>.npz`: pooled features as float16 (np.savez_compressed), unchanged.
- `epochs.csv` stays CSV: a handful of rows, readable with `cat`, smaller than a Parquet footer.
- `stress.json` and `stress/<split tag>/<edit>_flipped.csv[.gz]`: the stress tests (cmcs_core/stress.py).

Folders written before these formats (`batches.csv`, `predictions_<split>.csv`, `masks_<split>.json`) are
converted by scripts/compact_runs.py, their one reader; the library reads the compact formats only.
Committed folders may keep text columns by reference to the data (cmcs_core/runs/packed.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cmcs_core.io import atomic_save
from cmcs_core.runs.files import STRESS_FILE, features_file, masks_stem, table_file



def edited_images_dir(split_dir: Path, edit: str) -> Path:
    """Where a stress edit that draws new pictures (swap_image_cue on a pixel run) keeps them, beside its rows."""
    return Path(split_dir) / f"{edit}_images"
MASK_COLUMNS = ("tokens", "mask", "visual_tokens", "visual_mask", "caption")
_GRID_KEY = b"cmcs_grid"


def table_path(run_dir: str | Path, stem: str) -> Path | None:
    """The file holding table `stem` (batches, epochs, predictions_test ...), None when the folder has none."""
    path = Path(run_dir) / table_file(stem)
    return path if path.is_file() else None


def as_float32(frame: pd.DataFrame) -> pd.DataFrame:
    """float64 -> float32 (the model's own precision); everything else as it is."""
    return frame.astype({c: np.float32 for c in frame.columns if frame[c].dtype == np.float64})


def write_table(path: str | Path, frame: pd.DataFrame) -> Path:
    """Atomic write; the suffix picks the format (.parquet compact, .csv for tiny tables)."""
    path = Path(path)
    if path.suffix == ".csv":
        return atomic_save(path, lambda p: frame.to_csv(p, index=False))
    import pyarrow as pa
    import pyarrow.parquet as pq

    # No pandas metadata or column statistics (a tenth of a small file); integers (steps,
    # lines) delta-coded, floats plain, text dictionary-coded, then zstd over all of it.
    table = pa.Table.from_pandas(as_float32(frame), preserve_index=False).replace_schema_metadata()
    ints = [f.name for f in table.schema if pa.types.is_integer(f.type)]
    texts = [f.name for f in table.schema if not pa.types.is_floating(f.type) and f.name not in ints]
    return atomic_save(path, lambda p: pq.write_table(
        table, p, compression="zstd", compression_level=9, use_dictionary=texts or False, write_statistics=False,
        column_encoding={c: "DELTA_BINARY_PACKED" for c in ints} or None))


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """One table file, Parquet or CSV. An `index` column is always text (sample ids are
    strings in the TSV; CSV would read them as numbers)."""
    path = Path(path)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path, columns=columns)
    else:
        frame = pd.read_csv(path, usecols=columns, dtype={"index": str})
    if "index" in frame:
        frame["index"] = frame["index"].astype(str)
    return frame


# -- masks ---------------------------------------------------------------------------------
def masks_path(run_dir: str | Path, split: str) -> Path | None:
    path = Path(run_dir) / f"{masks_stem(split)}.parquet"
    return path if path.is_file() else None


def write_masks(path: str | Path, grid, samples: list[dict]) -> Path:
    """Per-sample token masks as Parquet."""
    path = Path(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {"tokens": pa.list_(pa.string()), "mask": pa.list_(pa.float32()),
             "visual_tokens": pa.list_(pa.string()), "visual_mask": pa.list_(pa.float32()), "caption": pa.string()}
    extra = sorted({k for s in samples for k in s} - set(kinds))
    if extra:
        raise ValueError(f"mask entries have unknown fields {extra}")
    present = [k for k in MASK_COLUMNS if any(k in s for s in samples)]
    table = pa.table({k: pa.array([s.get(k) for s in samples], type=kinds[k]) for k in present})
    table = table.replace_schema_metadata({_GRID_KEY: json.dumps(grid).encode()})
    return atomic_save(path, lambda p: pq.write_table(table, p, compression="zstd", compression_level=9))


def read_masks(path: str | Path) -> dict:
    """{"grid": ..., "samples": [{"tokens": [...], "mask": [...], ...}]}.

    A field a sample lacks (no visual branch, no caption) is absent from its dict; mask values come
    back as Python floats at float32 precision, the model's."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    grid = json.loads(meta[_GRID_KEY]) if _GRID_KEY in meta else None
    samples = [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]
    return {"grid": grid, "samples": samples}


# -- features --------------------------------------------------------------------------------
def features_path(run_dir: str | Path, split: str) -> Path | None:
    path = Path(run_dir) / features_file(split)
    return path if path.is_file() else None


def write_features(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    arrays = {k: np.asarray(v).astype(np.float16) for k, v in arrays.items()}
    return atomic_save(path, lambda p: np.savez_compressed(p, **arrays))


def feature_names(path: str | Path) -> list[str]:
    with np.load(path) as npz:
        return list(npz.files)


def read_features(path: str | Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Pooled features as float32 (stored as float16)."""
    with np.load(path) as npz:
        return {k: npz[k].astype(np.float32) for k in (names or npz.files) if k in npz.files}


# -- stress tests ---------------------------------------------------------------------------
def read_stress_report(run_dir: str | Path) -> dict:
    """A run's stress.json, or an empty report ({"splits": {}}) when it has none or it is corrupt
    (a corrupt file is replaced by the next stress test, never trusted)."""
    try:
        report = json.loads((Path(run_dir) / STRESS_FILE).read_text())
        if isinstance(report, dict) and isinstance(report.get("splits"), dict):
            return report
    except (OSError, ValueError):
        pass
    return {"splits": {}}
