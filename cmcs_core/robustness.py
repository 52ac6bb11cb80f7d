"""Robustness measures of a run's predictions, each with a 95% bootstrap interval:

- flip rate: the share of rows whose predicted label changes under an edit that is not about
  the target (the stress tests, cmcs_core/stress.py);
- target awareness: on tweets with two or more targets whose gold labels differ, the share with
  every target right and the share given one single label for all their targets. A model that
  reads the whole tweet but not the target gets the second high and the first low.

Numpy and pandas only: the app and the tables read these without torch.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pandas as pd

from cmcs_core.data.tsv import LABEL_NAMES, TARGET_TOKEN

N_BOOT = 2000


def bootstrap_interval(values, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of per-unit values (rows, tweets)."""
    values = np.asarray(values)
    boots = values[np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(lo), float(hi)


def flip_stats(labels: np.ndarray, before: np.ndarray, after: np.ndarray, n_boot: int = N_BOOT,
               seed: int = 0) -> dict:
    """Accuracy before/after, flip rate with its interval over rows, and the flips counted by
    (before -> after) label."""
    labels, before, after = (np.asarray(x, dtype=int) for x in (labels, before, after))
    flipped = before != after
    moves = Counter(f"{LABEL_NAMES[b]}→{LABEL_NAMES[a]}" for b, a in zip(before[flipped], after[flipped]))
    return {
        "rows": int(len(flipped)),
        "acc_before": float((before == labels).mean()),
        "acc_after": float((after == labels).mean()),
        "flipped": int(flipped.sum()),
        "flip_rate": float(flipped.mean()),
        "flip_ci": list(bootstrap_interval(flipped, n_boot, seed)),
        "flips": dict(sorted(moves.items(), key=lambda kv: -kv[1])),
    }


def mixed_label_tweets(rows: pd.DataFrame) -> list[np.ndarray]:
    """Row positions of each tweet with two or more targets of different gold labels.

    A tweet is its image id and its text with the target put back: the rows of one tweet differ
    only in where $T$ stands (in the benchmark's test splits every tweet has its own image, and
    the image id alone gives the same groups)."""
    texts = [str(t).replace(TARGET_TOKEN, str(g)) for t, g in zip(rows["tweet"], rows["target"])]
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for pos, key in enumerate(zip(rows["image_id"].astype(str), texts)):
        groups[key].append(pos)
    labels = rows["label"].to_numpy()
    return [np.array(g) for g in groups.values() if len(g) > 1 and len(set(labels[g])) > 1]


def target_awareness(rows: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """On tweets with targets of different gold labels (rows: image_id, tweet with $T$, target,
    label, pred): the share with every target right and the share given one single predicted
    label, each with its interval over tweets. Shares are None when there is no such tweet."""
    tweets = mixed_label_tweets(rows)
    out: dict = {"tweets": len(tweets), "rows": int(sum(len(t) for t in tweets))}
    labels, preds = rows["label"].to_numpy(), rows["pred"].to_numpy()
    per_tweet = {
        "all_targets_right": np.array([bool((preds[t] == labels[t]).all()) for t in tweets]),
        "single_label": np.array([len(set(preds[t])) == 1 for t in tweets]),
    }
    for name, hits in per_tweet.items():
        out[name] = float(hits.mean()) if len(hits) else None
        out[f"{name}_ci"] = list(bootstrap_interval(hits, n_boot, seed)) if len(hits) else None
    return out
