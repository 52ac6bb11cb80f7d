"""Rows kept by reference: committed run folders may leave text columns out of their files and
take them back from the dataset's TSV, checked line by line (docs/method.md, results/README.md).

- predictions_<split>: the `tweet` and `image_id` columns (BY_REFERENCE), back by line;
- the stress tests' flipped rows: the original and edited text (FLIPPED_BY_REFERENCE), back by
  redoing the edit on the data file, which is deterministic in the report's seed and phrase bank.

Both raise ValueError when the data file no longer matches what was stored.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cmcs_core.config import RunConfig
from cmcs_core.data.counterfactual import edit_rows, phrase_bank
from cmcs_core.data.dataset import dataset_files, load_split, split_tag

BY_REFERENCE = ("image_id", "tweet")  # columns a compacted predictions file may leave to the dataset
FLIPPED_BY_REFERENCE = ("tweet", "image_id", "edited_tweet", "edited_target", "edited_image_id", "edited_caption")
FLIPPED_COLUMNS = ("index", "line", "label", "pred_before", "pred_after", "tweet", "target", "image_id",
                   "edited_tweet", "edited_target", "edited_image_id", "edited_caption")


def _check_lines(rows: pd.DataFrame, found: list, what: str) -> None:
    """Every stored line must come back with the stored index and target."""
    bad = [int(line) for line, hit, index, target in zip(rows["line"], found, rows["index"], rows["target"])
           if hit is None or str(hit.index) != str(index) or hit.target != target]
    if bad:
        raise ValueError(f"{len(bad)} {what} do not match the data file (first line {bad[0]})")


def restore_text(pred: pd.DataFrame, samples: list) -> pd.DataFrame:
    """Put back the tweet and image columns of a compacted predictions frame from the split's
    samples (cmcs_core.data.tsv.Sample), matched by line."""
    by_line = {s.line: s for s in samples}
    rows = [by_line.get(int(line)) for line in pred["line"]]
    _check_lines(pred, rows, "predictions")
    out = pred.copy()
    at = list(out.columns).index("line") + 1
    for offset, name in enumerate(BY_REFERENCE):
        if name not in out:
            out.insert(at + offset, name, [getattr(s, name) for s in rows])
    return out


def restore_flipped(rows: pd.DataFrame, cfg: RunConfig, report: dict, rows_file: str) -> pd.DataFrame:
    """Put back the text columns of a packed flipped-rows frame (rows_file as stress.json names it:
    stress/<split tag>/<edit>_flipped.csv[.gz]) by redoing the edit on the run's data file.
    Raises ValueError (or OSError) if the data is not at hand or no longer matches."""
    tag, edit = Path(rows_file).parent.name, Path(rows_file).name.split("_flipped")[0]
    entry = report["splits"][tag]
    files = dataset_files(cfg.data.dataset, cfg.data.data_dir)
    name = tag if tag in ("train", "dev", "test") else entry["file"]
    split = load_split(files, name, cfg.data.use_faces, cfg.data.drop_missing_visual)
    if split_tag(name, split.path) != tag:
        raise ValueError(f"{split.path} changed since the stress test ({tag})")
    bank = report.get("phrases", "")
    phrases = phrase_bank("stress", bank if bank and Path(bank).is_file() else None)
    edited = edit_rows(split.samples, edit, int(report.get("seed", 0)), phrases)
    pixels = str(entry.get("visual_source", "")).startswith("pixels")
    captions = {s.image_id: c for s, c in zip(split.samples, split.visual_text or [])}
    by_line = {split.samples[pos].line: (split.samples[pos], new) for pos, new in zip(edited.positions, edited.rows)}
    found = [by_line.get(int(line)) for line in rows["line"]]
    _check_lines(rows, [hit and hit[0] for hit in found], "flipped rows")
    out = rows.copy()
    for name, values in (
        ("tweet", [orig.tweet for orig, _ in found]), ("image_id", [orig.image_id for orig, _ in found]),
        ("edited_tweet", [new.tweet for _, new in found]), ("edited_target", [new.target for _, new in found]),
        ("edited_image_id", [new.image_id for _, new in found]),
        ("edited_caption", ["" if pixels else captions.get(new.image_id, "") for _, new in found]),
    ):
        out[name] = values
    return out[list(FLIPPED_COLUMNS) + [c for c in out.columns if c not in FLIPPED_COLUMNS]]
