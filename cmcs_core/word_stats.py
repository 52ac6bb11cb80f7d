"""Word-level views of the masks and of the training data, to spot spurious correlations.

A word the text mask suppresses on average, beside how strongly that word goes with one
label in the training split, is the paper's story in one table: MFS should turn down words
that predict the label without being about the target.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np
import pandas as pd

from cmcs_core.data.tsv import LABEL_NAMES, TARGET_TOKEN, Sample

SPECIAL = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"}
WORD_RE = re.compile(r"\w+|[^\w\s]")


def merge_wordpieces(tokens: list[str], values: list[float], tweet_only: bool = True) -> list[tuple[str, float]]:
    """Join `##` pieces into words (mean value); stop at the first [SEP] (the target segment)."""
    words: list[tuple[str, list[float]]] = []
    for tok, val in zip(tokens, values):
        if tok in ("[SEP]", "</s>") and tweet_only:
            break
        if tok in SPECIAL:
            continue
        if tok.startswith("##") and words:
            words[-1] = (words[-1][0] + tok[2:], words[-1][1] + [val])
        else:
            words.append((tok.lstrip("Ġ▁").lower(), [val]))
    return [(w, float(np.mean(v))) for w, v in words if w]


def mask_word_table(masks: dict, min_count: int = 3) -> pd.DataFrame:
    """Per word of the tweets: how often it occurs, its mean text-mask value (low = suppressed) and its mean
    share of its tweet's gates (gate / the sum of the tweet's word gates: how much of the gated, mean-pooled
    tweet comes from it). Gates that choose hard (target-aware) put most words near 0, where the shares
    still tell them apart."""
    values: dict[str, list[float]] = defaultdict(list)
    shares: dict[str, list[float]] = defaultdict(list)
    for sample in masks.get("samples", []):
        words = merge_wordpieces(sample.get("tokens", []), sample.get("mask", []))
        total = sum(v for _, v in words)
        for word, val in words:
            values[word].append(val)
            shares[word].append(val / total if total > 0 else 0.0)
    rows = [{"word": w, "count": len(v), "mean_mask": float(np.mean(v)), "mean_share": float(np.mean(shares[w]))}
            for w, v in values.items() if len(v) >= min_count]
    frame = pd.DataFrame(rows, columns=["word", "count", "mean_mask", "mean_share"])
    if frame.empty:
        return frame
    overall = float(np.mean([x for v in values.values() for x in v]))
    frame["vs_average"] = frame["mean_mask"] - overall
    return frame.sort_values("mean_mask").reset_index(drop=True)


def words_of(text: str) -> list[str]:
    return WORD_RE.findall(text.replace(TARGET_TOKEN, " ").lower())


def label_association(samples: list[Sample], min_count: int = 3) -> pd.DataFrame:
    """Per word of the training tweets (target removed): label counts, its top label, P(label|word)
    and lift = P(label|word) / P(label); lift far above 1 marks a word that 'predicts' a label."""
    prior = np.bincount([s.label for s in samples], minlength=3).astype(float)
    prior /= max(prior.sum(), 1.0)
    counts: dict[str, Counter] = defaultdict(Counter)
    for s in samples:
        for w in set(words_of(s.tweet)):
            counts[w][s.label] += 1
    rows = []
    for word, c in counts.items():
        n = sum(c.values())
        if n < min_count:
            continue
        p = np.array([c[i] for i in range(3)], dtype=float) / n
        top = int(p.argmax())
        rows.append({"word": word, "train_count": n, **{f"n_{LABEL_NAMES[i]}": c[i] for i in range(3)},
                     "top_label": LABEL_NAMES[top], "p_top_label": float(p[top]),
                     "lift": float(p[top] / max(prior[top], 1e-9))})
    return pd.DataFrame(rows).sort_values("lift", ascending=False).reset_index(drop=True) if rows else pd.DataFrame()


def suppressed_vs_association(masks: dict, samples: list[Sample] | None, min_count: int = 3) -> pd.DataFrame:
    """The mask table joined with the training-data association (NaN where a word is unseen)."""
    table = mask_word_table(masks, min_count)
    if samples is None or table.empty:
        return table
    assoc = label_association(samples, 1)
    if assoc.empty:
        return table
    return table.merge(assoc, on="word", how="left")


def standing(table: pd.DataFrame, column: str, words: list[str]) -> list[dict]:
    """Where each of `words` stands among all words of the table by `column`: its value, the share of words
    with a strictly higher value, and how many share its value (ties: gates are stored to 4 decimals)."""
    values = table[column].to_numpy()
    out = []
    for word, value in zip(table.word, values):
        if word in words:
            out.append({"word": word, "value": float(value), "below": float((values > value).mean()),
                        "tied": int((values == value).sum()) - 1})
    return sorted(out, key=lambda r: r["value"])
