"""Captum attributions for one input of a trained run: why the model said what it said.

Text: Integrated Gradients over the token states the model reads (the cached hidden states
E^t when the encoder is frozen or partly tuned; the embedding layer when all layers train),
summed over the feature axis to one score per token. Visual: occlusion of each visual token
(one cell of the image's feature grid, or one caption token) by zeros. Both explain the final
probability of the predicted label, so they are on the same scale as the app's bars.

What the mask does (`mask_effects`): a mask value says how much of a token's features MFS
lets through, not whether that matters to the prediction. So, per token (text) and per caption
token or image cell (visual), we compare the model as trained (every token through its
learned mask) with the same model where only that one token passes raw (gate 1, all others
still masked): effect = p(label | masked) - p(label | that token raw). Zero: the mask's
intervention on that token changes nothing; large |effect|: the words the intervention
actually turned down (or up). Occlusion-style and exact, one forward pass per token.
"""
from __future__ import annotations

from typing import Callable

import torch

from cmcs_core.data.tsv import LABEL_NAMES, Sample
from cmcs_core.inference import Predictor, mask_target


def input_batch(pred: Predictor, tweet: str, target: str, caption: str | None = None,
                image=None) -> dict[str, torch.Tensor]:
    """The one-sample batch Predictor.predict feeds the model (same checks, same features)."""
    sample = Sample("0", 1, "input-image", mask_target(tweet, target), target.strip(), 1)
    data = pred.tensors([sample], [caption or ""] if pred.needs_caption else None,
                        [image] if image is not None and pred.needs_image else None)
    return data.batch(torch.arange(1), pred.pipe.device)


def _p_final(pred: Predictor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = pred.model(batch)
    return pred.model.fuse(out, batch.get("fusion_sim"))["p_final"]


def _expanded(batch: dict[str, torch.Tensor], n: int, **override: torch.Tensor) -> dict[str, torch.Tensor]:
    """Repeat a one-sample batch n times (captum evaluates many perturbations at once)."""
    out = {k: v.expand(n, *v.shape[1:]) for k, v in batch.items()}
    out.update(override)
    return out


def _forward(pred: Predictor, batch: dict[str, torch.Tensor], key: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def f(x: torch.Tensor) -> torch.Tensor:
        return _p_final(pred, _expanded(batch, x.shape[0], **{key: x}))

    return f


def text_attributions(pred: Predictor, batch: dict[str, torch.Tensor], target_label: int,
                      n_steps: int = 32) -> dict:
    """Integrated Gradients per text token, towards p_final[target_label]; baseline = zeros."""
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    model = pred.model
    with torch.enable_grad():
        if "text_hidden" in batch:
            hidden = batch["text_hidden"].float()
            ig = IntegratedGradients(_forward(pred, batch, "text_hidden"))
            attr, delta = ig.attribute(hidden, baselines=torch.zeros_like(hidden), target=target_label,
                                       n_steps=n_steps, return_convergence_delta=True)
        else:  # the whole encoder trains from token ids: attribute at the embedding layer
            pad = pred.pipe.text_encoder.tokenizer.pad_token_id or 0
            lig = LayerIntegratedGradients(_forward(pred, batch, "input_ids"),
                                           model.text_tower.encoder.model.embeddings)
            ids = batch["input_ids"]
            attr, delta = lig.attribute(ids, baselines=torch.full_like(ids, pad), target=target_label,
                                        n_steps=n_steps, return_convergence_delta=True)
    scores = attr.sum(-1)[0].detach().float().cpu().numpy()
    ids = batch["input_ids"][0].cpu()
    return {"tokens": pred.pipe.decode_tokens(ids), "scores": scores.tolist(),
            "target": LABEL_NAMES[target_label], "delta": float(delta.abs().max())}


@torch.no_grad()
def visual_occlusion(pred: Predictor, batch: dict[str, torch.Tensor], target_label: int) -> dict | None:
    """Drop in p_final[target_label] when each visual token is zeroed (captum Occlusion).

    For pixel runs the tokens are the encoder's feature grid (row-major, shape `grid`); for
    caption runs they are the caption's tokens. None when the run has no visual branch.
    """
    if "visual_tokens" not in batch:
        return None
    from captum.attr import Occlusion

    tokens = batch["visual_tokens"].float()
    occ = Occlusion(_forward(pred, batch, "visual_tokens"))
    attr = occ.attribute(tokens, sliding_window_shapes=(1, tokens.shape[-1]), baselines=0.0,
                         target=target_label, perturbations_per_eval=16)
    scores = attr[0, :, 0].float().cpu().numpy()  # identical across d: the window spans it
    out: dict = {"scores": scores.tolist(), "target": LABEL_NAMES[target_label],
                 "grid": getattr(pred.pipe.image_encoder, "grid", None)}
    return out


@torch.no_grad()
def mask_effects(model, batch: dict[str, torch.Tensor], target_label: int) -> dict:
    """Per token of a one-sample batch: p_final[label] with the mask minus with that token raw.

    Returns {"p_masked": float, "text": [m floats], "visual": [mv floats] (visual runs only)}.
    Probability units, like the attributions; exactly 0 where the mask's gate on that token
    does not reach the prediction (e.g. a token the pooling ignores).
    """
    was_training = model.training
    model.eval()
    out: dict = {"target": LABEL_NAMES[target_label]}
    for branch, tokens_key in (("text", "attention_mask"), ("visual", "visual_mask")):
        if tokens_key not in batch:
            continue
        m = batch[tokens_key].shape[1]
        # copy 0 keeps every gate, copy i + 1 lets token i through: one batched pass, so the
        # difference holds no float noise from different batch shapes
        eye = torch.eye(m, dtype=torch.bool, device=batch[tokens_key].device)
        release = torch.cat([torch.zeros_like(eye[:1]), eye])
        copies = _expanded(batch, m + 1)
        p = model.fuse(model(copies, release={branch: release}), copies.get("fusion_sim"))["p_final"][:, target_label]
        out["p_masked"] = float(p[0])
        out[branch] = (p[0] - p[1:]).float().cpu().tolist()
    model.train(was_training)
    return out


def explain(pred: Predictor, tweet: str, target: str, caption: str | None = None, image=None,
            n_steps: int = 32) -> dict:
    """Prediction plus text IG, visual occlusion and what the mask does, for one input."""
    result = pred.predict(tweet, target, caption=caption, image=image)
    batch = input_batch(pred, tweet, target, caption, image)
    label = LABEL_NAMES.index(result["label"])
    result["mask_effect"] = mask_effects(pred.model, batch, label)
    result["text_attr"] = text_attributions(pred, batch, label, n_steps)
    occ = visual_occlusion(pred, batch, label)
    if occ is not None:
        if result.get("visual_tokens"):
            occ["tokens"] = result["visual_tokens"]
        result["visual_attr"] = occ
    return result
