"""Metrics and per-sample outputs (predictions, masks, pooled features) of a model on a split.

`evaluate_split` is the one chain from a split (a name, a TSV path or a loaded Split) to a
model's predictions: the `evaluate` command and the stress tests go through it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from cmcs_core.data.dataset import Split
from cmcs_core.data.tsv import LABEL_NAMES
from cmcs_core.model.cmcs import CMCSModel
from cmcs_core.pipeline import Pipeline, SplitTensors
from cmcs_core.precision import autocast
from cmcs_core.robustness import target_awareness
from cmcs_core.runs.files import features_file, masks_stem, predictions_stem
from cmcs_core.runs.formats import write_features, write_masks, write_table


def compute_metrics(labels: np.ndarray, preds: np.ndarray) -> dict:
    """Accuracy, macro-F1 (what peers call F1), per-class P/R/F1 and the confusion matrix.

    Macro-F1 averages over the classes present in the gold labels: an edited file may hold no
    positive rows, and a zero F1 for a class with no support would only drag the mean down."""
    p, r, f, support = precision_recall_fscore_support(labels, preds, labels=[0, 1, 2], zero_division=0)
    present = [i for i in range(3) if support[i] > 0]
    return {
        "acc": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, labels=present, average="macro", zero_division=0)),
        "macro_f1_classes": [LABEL_NAMES[i] for i in present],
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, name in enumerate(LABEL_NAMES)
        },
        "confusion": confusion_matrix(labels, preds, labels=[0, 1, 2]).tolist(),
        "n": int(len(labels)),
    }


@torch.no_grad()
def predict_tensors(model: CMCSModel, data: SplitTensors, device: torch.device, batch_size: int = 128,
                    precision: str = "fp32") -> dict:
    """Every branch's probabilities, the fusion weight, per-token masks and pooled features, computed in
    the run's precision (its dev figures picked the kept epoch in that arithmetic)."""
    model.eval()
    keys = ["p_text", "p_image", "s", "p_final"]
    feats = ["text_raw_pooled", "text_bar_pooled", "visual_raw_pooled", "visual_bar_pooled"]
    acc: dict[str, list] = {k: [] for k in keys + feats + ["effect_t", "text_tok_mask", "vis_tok_mask"]}
    for batch in data.batches(batch_size, device):
        with autocast(device, precision):
            out = model(batch)
            fused = model.fuse(out, batch.get("fusion_sim"))
        for k in keys:
            if k in fused:
                acc[k].append(fused[k].float().cpu())
        for k in feats:
            if k in out:
                acc[k].append(out[k].float().cpu())
        y = batch["label"]
        ce = torch.nn.functional.cross_entropy
        gap = (ce(out["text_logits_raw"].float(), y, reduction="none")
               - ce(out["text_logits"].float(), y, reduction="none"))
        acc["effect_t"].append(gap.clamp(-10, 10).exp().cpu())
        acc["text_tok_mask"] += _token_means(out["text_mask"], batch["attention_mask"])
        if "visual_mask" in out:
            acc["vis_tok_mask"] += _token_means(out["visual_mask"], batch["visual_mask"])
    res = {k: torch.cat(v).numpy() for k, v in acc.items() if v and isinstance(v[0], torch.Tensor)}
    res["text_tok_mask"] = acc["text_tok_mask"]
    res["vis_tok_mask"] = acc["vis_tok_mask"]
    res["pred"] = res["p_final"].argmax(-1)
    return res


def evaluate_split(model: CMCSModel, pipe: Pipeline, split: str | Split, max_samples: int | None = None,
                   progress: bool = True, cache: bool = True) -> tuple[SplitTensors, dict]:
    """A split's features and the model's predictions on it (predict_tensors' dict). `split` is
    train/dev/test, a TSV path in the benchmark format, or a Split already loaded; cache=False
    writes no feature cache (rows a visitor uploaded)."""
    if not isinstance(split, Split):
        split = pipe.load_split(split, max_samples)
    data = pipe.tensors(split, cache=cache, progress=progress)
    return data, predict_tensors(model, data, pipe.device, precision=pipe.precision.used)


def _token_means(mask: torch.Tensor, real: torch.Tensor) -> list[list[float]]:
    """Mean of the m x d mask over d, per real token: what a heatmap over words shows."""
    means = mask.float().mean(-1).cpu().numpy()
    lengths = real.sum(1).cpu().numpy()
    return [np.round(means[i, : int(lengths[i])], 4).tolist() for i in range(len(means))]


def predictions_frame(data: SplitTensors, res: dict) -> pd.DataFrame:
    """One row per sample: where it came from, its label, the prediction and each branch's probabilities."""
    samples = data.split.samples
    rows = {
        "index": [s.index for s in samples],
        "line": [s.line for s in samples],
        "image_id": [s.image_id for s in samples],
        "tweet": [s.tweet for s in samples],
        "target": [s.target for s in samples],
        "label": data.labels.numpy(),
        "pred": res["pred"],
        "correct": (res["pred"] == data.labels.numpy()).astype(int),
        "s": res["s"],
        "effect_t": res["effect_t"],
    }
    for key in ("p_text", "p_image", "p_final"):
        if key in res:
            for i, name in enumerate(LABEL_NAMES):
                rows[f"{key}_{name}"] = np.round(res[key][:, i], 5)
    return pd.DataFrame(rows)


def write_outputs(out_dir: Path, tag: str, pipe: Pipeline, data: SplitTensors, res: dict) -> dict:
    """predictions_<tag>.parquet, masks_<tag>.parquet, features_<tag>.npz (cmcs_core.runs.formats);
    returns the metrics, target awareness on multi-target tweets included (cmcs_core.robustness)."""
    samples = data.split.samples
    predictions = predictions_frame(data, res)
    write_table(out_dir / f"{predictions_stem(tag)}.parquet", predictions)

    masks = []
    for i, s in enumerate(samples):
        ids = data.text.input_ids[i][: len(res["text_tok_mask"][i])]
        entry = {"tokens": pipe.decode_tokens(ids), "mask": res["text_tok_mask"][i]}
        if res["vis_tok_mask"]:
            entry["visual_mask"] = res["vis_tok_mask"][i]
            if data.visual is not None and data.visual.token_ids is not None:
                row = int(data.visual.image_index[i])
                vids = data.visual.token_ids[row][: len(res["vis_tok_mask"][i])]
                entry["visual_tokens"] = pipe.decode_tokens(vids, visual=True)
            if data.split.visual_text is not None:
                entry["caption"] = data.split.visual_text[i]
        masks.append(entry)
    grid = getattr(pipe.image_encoder, "grid", None)
    write_masks(out_dir / f"{masks_stem(tag)}.parquet", grid, masks)
    write_features(out_dir / features_file(tag), {k: res[k] for k in res if k.endswith("_pooled")})
    metrics = compute_metrics(data.labels.numpy(), res["pred"])
    return {**metrics, "target_awareness": target_awareness(predictions)}

