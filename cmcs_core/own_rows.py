"""Bring your own rows: a run evaluated on rows a user brings (a TSV in the benchmark's format, held in
memory), and, where they pair with one of the run's splits (same index, image and target), the flips
against the run's own predictions on those rows.

The app's Robustness page calls these. Nothing here writes to disk (no feature cache, no output
folder), so an upload in the demo mode leaves no trace on the server; `cmcs evaluate --split FILE`
is the command-line way, with outputs written.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from cmcs_core.data.tsv import LABEL_NAMES, TARGET_TOKEN, Sample, TSVFormatError, parse_tsv
from cmcs_core.evaluate import compute_metrics, evaluate_split, predictions_frame
from cmcs_core.robustness import N_BOOT, flip_stats, target_awareness

# A row of yours pairs with a row of a split when all three agree: the same tweet-target pair, maybe edited.
PAIR_KEYS = ("index", "image_id", "target")


def read_rows(data: bytes, name: str) -> list[Sample]:
    """The rows of an uploaded TSV; a bad file fails as the CLI's do, with `name:line` and the reason."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TSVFormatError(f"{name}: not UTF-8 text (byte {err.start} cannot be read)") from err
    return parse_tsv(io.StringIO(text, newline=""), name)


def evaluate_rows(predictor, samples: list[Sample], name: str, drop_missing: bool = False) -> dict:
    """Accuracy, per-class figures and the multi-target score of a run (a Predictor) on the rows, with
    one prediction per row. Rows whose image has no caption or file fail (MissingVisualError naming
    `name:line`) unless drop_missing."""
    split = predictor.pipe.rows_split(samples, name, drop_missing)
    if not split.samples:
        raise ValueError(f"{name}: no row has an image the run can read")
    data, res = evaluate_split(predictor.model, predictor.pipe, split, progress=False, cache=False)
    frame = predictions_frame(data, res)
    if split.visual_text is not None:
        frame["caption"] = split.visual_text
    return {"name": name, "rows": len(samples), "dropped": split.dropped,
            "metrics": compute_metrics(frame.label.to_numpy(), frame.pred.to_numpy()),
            "target_awareness": target_awareness(frame), "predictions": frame}


def _keys(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(**{k: frame[k].astype(str) for k in PAIR_KEYS})


def pair_with_split(rows: pd.DataFrame, original: pd.DataFrame) -> pd.DataFrame:
    """Your rows beside the split's rows with the same index, image and target: the tweets (yours edited or
    not), the gold label of yours, the run's prediction on the original (`pred_before`) and on yours
    (`pred_after`). Empty when no row pairs."""
    theirs = _keys(original).drop_duplicates(list(PAIR_KEYS))[[*PAIR_KEYS, "tweet", "pred"]]
    paired = _keys(rows).merge(theirs, on=list(PAIR_KEYS), suffixes=("", "_original"))
    return paired.rename(columns={"tweet_original": "original_tweet", "pred_original": "pred_before",
                                  "pred": "pred_after"})


def best_pairing(rows: pd.DataFrame, splits: dict[str, pd.DataFrame]) -> tuple[str | None, pd.DataFrame]:
    """The split whose rows pair with most of yours, and the pairs (pair_with_split); (None, empty) if none."""
    best: tuple[str | None, pd.DataFrame] = (None, pd.DataFrame())
    for split, original in splits.items():
        paired = pair_with_split(rows, original)
        if len(paired) > len(best[1]):
            best = (split, paired)
    return best


def flips(paired: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """flip_stats of the pairs (the stress tests' figures: the share whose prediction changed, with its 95%
    bootstrap interval) and the flipped rows, with label names and the target put back in both tweets."""
    stats = flip_stats(paired.label, paired.pred_before, paired.pred_after, n_boot, seed)
    moved = paired[paired.pred_before.to_numpy() != paired.pred_after.to_numpy()]
    shown = moved.assign(**{c: moved[c].map(lambda i: LABEL_NAMES[int(i)]) for c in ("label", "pred_before", "pred_after")},
                         original_text=[t.replace(TARGET_TOKEN, g) for t, g in zip(moved.original_tweet, moved.target)],
                         text=[t.replace(TARGET_TOKEN, g) for t, g in zip(moved.tweet, moved.target)])
    return {**stats, "rows_flipped": shown.reset_index(drop=True), "changed_text": int(np.sum(
        paired.tweet.to_numpy() != paired.original_tweet.to_numpy()))}
