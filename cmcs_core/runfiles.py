"""How a run folder stores its per-batch and per-sample outputs, and the one reader of them.

Compact formats (written by the trainer and `evaluate`; docs/method.md, "What a run folder holds"):

- `batches.parquet`, `predictions_<split>.parquet`: Parquet, zstd. Floats are stored as float32,
  which is what the model computed (nothing is lost); floats skip dictionary encoding, which
  only grows noisy numbers.
- `masks_<split>.parquet`: one row per sample (tokens, mask, visual_tokens, visual_mask,
  caption), masks as float32 lists; the visual grid in the file's metadata.
- `features_<split>.npz`: pooled features as float16 (np.savez_compressed), unchanged.
- `epochs.csv` stays CSV: a handful of rows, readable with `cat`, smaller than a Parquet footer.

Folders written before hold `batches.csv`, `predictions_<split>.csv` and `masks_<split>.json`;
every reader here takes either, so the library and the app read old and new folders alike.

Committed result folders may keep predictions *by reference*: without the `tweet` and
`image_id` columns, which `restore_text` reads back from the dataset's TSV by line (checked
against the stored index and target). `compact_run` converts a folder in place.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cmcs_core.io import atomic_save

TABLE_SUFFIXES = (".parquet", ".csv")  # new format first
BY_REFERENCE = ("image_id", "tweet")  # columns a compacted predictions file may leave to the dataset
MASK_COLUMNS = ("tokens", "mask", "visual_tokens", "visual_mask", "caption")
_GRID_KEY = b"cmcs_grid"


def table_path(run_dir: str | Path, stem: str) -> Path | None:
    """The file holding table `stem` (batches, epochs, predictions_test ...), new format first."""
    for suffix in TABLE_SUFFIXES:
        path = Path(run_dir) / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def _compact_frame(frame: pd.DataFrame) -> pd.DataFrame:
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
    table = pa.Table.from_pandas(_compact_frame(frame), preserve_index=False).replace_schema_metadata()
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
    for name in (f"masks_{split}.parquet", f"masks_{split}.json"):
        path = Path(run_dir) / name
        if path.is_file():
            return path
    return None


def write_masks(path: str | Path, grid, samples: list[dict]) -> Path:
    """Per-sample token masks as Parquet (a .json path writes the old format)."""
    path = Path(path)
    if path.suffix == ".json":
        from cmcs_core.io import atomic_write_json

        return atomic_write_json(path, {"grid": grid, "samples": samples})
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
    """{"grid": ..., "samples": [{"tokens": [...], "mask": [...], ...}]} from either format.

    A field a sample lacks (no visual branch, no caption) is absent from its dict, as in
    the JSON files; float32 mask values come back as the same Python floats JSON held."""
    path = Path(path)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    grid = json.loads(meta[_GRID_KEY]) if _GRID_KEY in meta else None
    samples = [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]
    return {"grid": grid, "samples": samples}


# -- features --------------------------------------------------------------------------------
def features_path(run_dir: str | Path, split: str) -> Path | None:
    path = Path(run_dir) / f"features_{split}.npz"
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


# -- predictions by reference ---------------------------------------------------------------
def restore_text(pred: pd.DataFrame, samples: list) -> pd.DataFrame:
    """Put back the tweet and image columns of a compacted predictions frame from the split's
    samples (cmcs_core.data.tsv.Sample), matched by line; raises ValueError if a line is
    missing or its index/target differ from the stored ones (the data file changed)."""
    by_line = {s.line: s for s in samples}
    rows = [by_line.get(int(line)) for line in pred["line"]]
    bad = [int(line) for line, s, i, t in zip(pred["line"], rows, pred["index"], pred["target"])
           if s is None or str(s.index) != str(i) or s.target != t]
    if bad:
        raise ValueError(f"{len(bad)} predictions do not match the data file (first line {bad[0]})")
    out = pred.copy()
    at = list(out.columns).index("line") + 1
    for offset, name in enumerate(BY_REFERENCE):
        if name not in out:
            out.insert(at + offset, name, [getattr(s, name) for s in rows])
    return out


def compact_run(run_dir: str | Path, per_sample: bool = True, features: bool = True,
                samples_of=None) -> dict[str, int]:
    """Convert a run folder to the compact formats in place; returns bytes before/after.

    per_sample=False drops masks_* and predictions_dev (metrics.json keeps the dev figures);
    features=False drops features_*. samples_of(split) -> samples, when given, lets the
    predictions go by reference: the text is dropped only after restore_text gives back
    exactly the stored columns. Every converted file is read back and compared first."""
    root = Path(run_dir)
    before = sum(p.stat().st_size for p in root.iterdir() if p.is_file())
    for stem in ("batches", *(p.stem for p in sorted(root.glob("predictions_*.csv")))):
        old = root / f"{stem}.csv"
        if not old.is_file():
            continue
        if stem.startswith("predictions_") and not stem.endswith("_test") and not per_sample:
            old.unlink()
            continue
        frame = read_table(old)
        keep = frame
        if stem.startswith("predictions_") and samples_of is not None:
            slim = frame.drop(columns=[c for c in BY_REFERENCE if c in frame])
            try:
                back = restore_text(slim, samples_of(stem.removeprefix("predictions_")))
                pd.testing.assert_frame_equal(back[list(frame.columns)], frame, check_dtype=False)
                keep = slim
            except (OSError, ValueError, KeyError, AssertionError):
                pass  # the data file is not at hand or differs: keep the text in the file
        new = write_table(root / f"{stem}.parquet", keep)
        _check_same(keep, read_table(new), new)
        old.unlink()
    for old in sorted(root.glob("masks_*.json")):
        if not per_sample:
            old.unlink()
            continue
        data = json.loads(old.read_text())
        new = write_masks(old.with_suffix(".parquet"), data.get("grid"), data["samples"])
        if read_masks(new) != {"grid": data.get("grid"), "samples": data["samples"]}:
            new.unlink()
            raise ValueError(f"{new}: masks do not read back equal; {old.name} kept")
        old.unlink()
    if not features:
        for old in root.glob("features_*.npz"):
            old.unlink()
    after = sum(p.stat().st_size for p in root.iterdir() if p.is_file())
    return {"before": before, "after": after}


def _check_same(expected: pd.DataFrame, got: pd.DataFrame, path: Path) -> None:
    """The compact file must hold the same values (floats to float32, the precision written)."""
    try:
        pd.testing.assert_frame_equal(_compact_frame(expected).reset_index(drop=True), got,
                                      check_dtype=False, rtol=0, atol=0)
    except AssertionError as err:
        path.unlink()
        raise ValueError(f"{path}: does not read back equal ({err})") from err
