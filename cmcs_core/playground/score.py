"""Score a playground run against the truth: do its masks weigh planted cues below real ones?

The run folder stores per-token mask means over wordpieces (masks_<split>, cmcs_core.runs.formats); truth.json
stores whitespace-word positions. We re-tokenise each text with the run's own tokenizer and
map every wordpiece of the first segment ([CLS] tweet-with-target [SEP] target [SEP]) to the
whitespace word holding its first character, so "so-so" or "#news" (several wordpieces,
one word) land on the right truth position. The re-tokenisation must reproduce the stored
tokens exactly; any mismatch raises rather than scoring the wrong words.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cmcs_core.config import RunConfig
from cmcs_core.playground import scene as scn
from cmcs_core.runs.files import CONFIG_FILE
from cmcs_core.runs.reader import load_run

TEXT_GROUPS = ("spurious", "sentiment", "target", "other_spurious", "other_sentiment", "other")
VISUAL_GROUPS = ("cue", "other")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of text.split() words: position i of truth.json is span i."""
    return [m.span() for m in re.finditer(r"\S+", text)]


def piece_words(offsets: list[tuple[int, int]], sequence_ids: list[int | None],
                spans: list[tuple[int, int]]) -> list[int | None]:
    """Whitespace-word index of each wordpiece of segment 0; None for specials and segment 1."""
    out: list[int | None] = []
    for (start, end), seq in zip(offsets, sequence_ids):
        if seq != 0 or end <= start:
            out.append(None)
            continue
        out.append(next((i for i, (a, b) in enumerate(spans) if a <= start < b), None))
    return out


def text_roles(truth_row: dict[str, Any], n_words: int) -> list[str]:
    """Role of every whitespace word of a row's text, from its truth.json entry."""
    roles = ["other"] * n_words
    t0, t1 = truth_row["target_span"]
    for p in range(t0, t1):
        roles[p] = "target"
    for key, role in (("other_spurious_positions", "other_spurious"), ("other_sentiment_positions", "other_sentiment"),
                      ("spurious_positions", "spurious"), ("sentiment_positions", "sentiment")):
        for p in truth_row[key]:
            roles[p] = role
    return roles


def group_means(values: list[float], owners: list[int | None], roles: list[str], groups: tuple[str, ...]
                ) -> dict[str, float]:
    """Mean over the words of each role of the word's mean over its wordpieces (NaN if none)."""
    per_word: dict[int, list[float]] = {}
    for v, w in zip(values, owners):
        if w is not None:
            per_word.setdefault(w, []).append(v)
    out = {}
    for g in groups:
        ws = [float(np.mean(vs)) for w, vs in per_word.items() if roles[w] == g]
        out[g] = float(np.mean(ws)) if ws else float("nan")
    return out


def cue_span(caption: str, image_truth: dict[str, Any], kind: str) -> tuple[int, int]:
    """Characters of the caption that name the planted cue ("magenta diamond", "teal")."""
    cls = image_truth["spurious_class"]
    name = scn.CUE_OBJECTS[cls][0] if kind == "object" else scn.CUE_BACKGROUNDS[cls][0]
    anchor = f"small {name}" if kind == "object" else name
    at = caption.rfind(anchor) if kind == "object" else caption.find(anchor)
    if at < 0:
        raise ValueError(f"cue {name!r} not found in caption {caption!r}")
    start = at + len(anchor) - len(name)
    return start, start + len(name)


class _Aligner:
    """The run's tokenizer(s), loaded alone (no model weights) and checked against stored tokens."""

    def __init__(self, cfg: RunConfig) -> None:
        from transformers import AutoTokenizer

        from cmcs_core.encoders.text import resolve_text_model

        enc = cfg.encoder
        self.text = AutoTokenizer.from_pretrained(resolve_text_model(enc.text_model))
        cap = enc.caption_model or enc.text_model
        self.caption = self.text if cap == enc.text_model else AutoTokenizer.from_pretrained(resolve_text_model(cap))
        self.max_length, self.caption_max_length = enc.max_length, enc.caption_max_length

    def text_words(self, text: str, target: str, stored: list[str]) -> list[int | None]:
        enc = self.text(text, target, max_length=self.max_length, truncation="only_first",
                        return_offsets_mapping=True)
        self._check(enc, stored, text)
        return piece_words(enc["offset_mapping"], enc.sequence_ids(), word_spans(text))

    def caption_in_cue(self, caption: str, span: tuple[int, int], stored: list[str]) -> list[int | None]:
        enc = self.caption(caption, max_length=self.caption_max_length, truncation=True, return_offsets_mapping=True)
        self._check(enc, stored, caption, tok=self.caption)
        return [None if seq is None or e <= s else int(span[0] <= s < span[1])
                for (s, e), seq in zip(enc["offset_mapping"], enc.sequence_ids())]

    def _check(self, enc, stored: list[str], text: str, tok=None) -> None:
        tokens = (tok or self.text).convert_ids_to_tokens(enc["input_ids"])
        if tokens != stored:
            raise ValueError(f"re-tokenising {text!r} gives {tokens[:8]}... but the run stored {stored[:8]}...")


def score_run(run_dir: str | Path, data_dir: str | Path | None = None, split: str = "test",
              values: list[dict[str, list[float]]] | None = None) -> dict[str, Any]:
    """Mask weight by word role (text) and cue vs rest (captions), and accuracy by alignment.

    Returns {"text": {group: mean}, "visual": {...} | None, "ratio_spurious_to_sentiment",
    "ratio_cue_to_other", "p_spurious_below_sentiment", "p_cue_below_other", "accuracy", "n"};
    group means are means over samples of per-sample means (samples without a group, e.g. no
    planted word, are skipped). The p_* are paired: the share of samples whose planted cue gets
    a lower mean mask than its genuine words (ties count half; 0.5 = no preference). Ratios of
    means near 1 hide a consistent but tiny gap, which the paired share shows.
    """
    run = Path(run_dir)
    cfg = RunConfig.load(run / CONFIG_FILE)
    data = Path(data_dir or cfg.data.dataset)
    truth_all = json.loads((data / "truth.json").read_text(encoding="utf-8"))
    truth, kind = truth_all["splits"][split], truth_all["image_cue_kind"]
    loaded = load_run(run)
    preds = loaded.predictions(split)
    stored = loaded.masks(split)
    masks, grid = stored["samples"], stored.get("grid")
    meta = data / "meta.json"
    image_size = json.loads(meta.read_text())["config"]["image_size"] if meta.is_file() else 224
    if values is not None:
        masks = [{**m, **v} for m, v in zip(masks, values, strict=True)]
    if len(masks) != len(preds):
        raise ValueError(f"{run}: {len(masks)} mask entries but {len(preds)} predictions")
    align = _Aligner(cfg)
    text_rows, vis_rows = [], []
    for (_, p), m in zip(preds.iterrows(), masks):
        t = truth[p["index"]]
        text = p["tweet"].replace("$T$", p["target"])
        owners = align.text_words(text, p["target"], m["tokens"])
        text_rows.append(group_means(m["mask"], owners, text_roles(t, len(text.split())), TEXT_GROUPS))
        if "visual_tokens" in m and "caption" in m:
            inside = align.caption_in_cue(m["caption"], cue_span(m["caption"], t["image"], kind), m["visual_tokens"])
            vis_rows.append(group_means(m["visual_mask"], inside, ["other", "cue"], VISUAL_GROUPS))
        elif grid and cfg.encoder.visual_model == "efficientnet-lite0" and "visual_mask" in m:
            inside = efficientnet_cue_cells(t["image"]["bbox"], image_size, tuple(grid))
            vis_rows.append(group_means(m["visual_mask"], inside, ["other", "cue"], VISUAL_GROUPS))
    text_frame, vis_frame = pd.DataFrame(text_rows), pd.DataFrame(vis_rows)
    text_means = text_frame.mean().to_dict()
    vis_means = vis_frame.mean().to_dict() if vis_rows else None
    return {
        "run": str(run), "split": split, "n": len(preds),
        "method": cfg.model.method,
        "text": text_means,
        "visual": vis_means,
        "ratio_spurious_to_sentiment": text_means["spurious"] / text_means["sentiment"],
        "ratio_cue_to_other": vis_means["cue"] / vis_means["other"] if vis_means else None,
        "p_spurious_below_sentiment": share_below(text_frame, "spurious", "sentiment"),
        "p_cue_below_other": share_below(vis_frame, "cue", "other") if vis_rows else None,
        "accuracy": subset_accuracy(preds, truth),
    }


def efficientnet_cue_cells(bbox: list[int], image_size: int, grid: tuple[int, int]) -> list[int]:
    """1 for each row-major grid cell that the planted cue's bbox overlaps, as EfficientNet-Lite0
    sees a square image: resized to 256, centre-cropped to 224, 7x7 cells of 32 pixels."""
    scale, offset, crop = 256 / image_size, (256 - 224) / 2, 224
    x0, y0, x1, y1 = (v * scale - offset for v in bbox)
    h, w = grid
    ch, cw = crop / h, crop / w
    return [int(x0 < (c + 1) * cw and x1 > c * cw and y0 < (r + 1) * ch and y1 > r * ch)
            for r in range(h) for c in range(w)]


def effect_values(run_dir: str | Path, split: str = "test") -> list[dict[str, list[float]]]:
    """|what the mask does| (explain.mask_effects, towards the predicted label) per token of every
    sample of a split, shaped for score_run(values=...): which words the intervention matters on."""
    import torch

    from cmcs_core.explain import mask_effects
    from cmcs_core.inference import Predictor

    pred = Predictor(run_dir)
    data = pred.pipe.tensors(pred.pipe.load_split(split), progress=False)
    labels = load_run(run_dir).predictions(split)["pred"].astype(int).tolist()
    out = []
    for i, label in enumerate(labels):
        eff = mask_effects(pred.model, data.batch(torch.tensor([i]), pred.pipe.device), label)
        out.append({"mask": [abs(v) for v in eff["text"]],
                    **({"visual_mask": [abs(v) for v in eff["visual"]]} if "visual" in eff else {})})
    return out


def share_below(frame: pd.DataFrame, low: str, high: str) -> float | None:
    """Share of samples having both groups where `low` < `high` (ties count half)."""
    both = frame[[low, high]].dropna()
    if both.empty:
        return None
    return float(((both[low] < both[high]) + 0.5 * (both[low] == both[high])).mean())


def subset_accuracy(preds: pd.DataFrame, truth: dict[str, Any]) -> dict[str, Any]:
    """Accuracy overall and where the planted cues agree / disagree with the label."""
    correct = preds["correct"].astype(bool).to_numpy()
    rows = [truth[i] for i in preds["index"]]
    out: dict[str, Any] = {"all": float(correct.mean())}
    for key in ("text_aligned", "image_aligned", "spurious_aligned"):
        for value, name in ((True, "aligned"), (False, "conflicting")):
            pick = np.array([r[key] is value for r in rows])
            tag = f"{key.removesuffix('_aligned')}_{name}"
            out[tag] = float(correct[pick].mean()) if pick.any() else None
            out[f"{tag}_n"] = int(pick.sum())
    return out
