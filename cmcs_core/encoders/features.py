"""Feature extraction with an on-disk cache, so a second run skips the frozen encoders.

Text: token ids for every sample and, unless the whole encoder trains, the hidden states
at the layer where training starts. Visual: one token sequence per unique image (caption
tokens through a text encoder, or a pixel encoder's grid/patches) and the fusion weight
s = cos(image embedding, prompt embedding) of Eq. 15 per sample.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch

from cmcs_core.data.dataset import Split
from cmcs_core.data.images import load_image
from cmcs_core.encoders.text import TextEncoder
from cmcs_core.io import atomic_save, cache_root
from cmcs_core.precision import autocast
from cmcs_core.progress import progress_bar

FUSION_PROMPT = "it's a picture of with a target of {target}"


@dataclass
class TextFeatures:
    input_ids: torch.Tensor  # (N, m)
    attention_mask: torch.Tensor  # (N, m)
    token_type_ids: torch.Tensor  # (N, m)
    hidden: torch.Tensor | None  # (N, m, d) fp16 at layer `layer`; None when all layers train
    layer: int


@dataclass
class VisualFeatures:
    tokens: torch.Tensor  # (U, mv, dv) fp16, one row per unique image
    mask: torch.Tensor  # (U, mv)
    image_index: torch.Tensor  # (N,) sample -> row of tokens
    fusion_sim: torch.Tensor  # (N,) cos(image, prompt) clipped to [0, 1]; NaN when unavailable
    token_ids: torch.Tensor | None  # (U, mv) caption token ids, for heatmaps over words
    image_ids: list[str]


def _digest(*parts: object, precision: str = "fp32") -> str:
    """The cache key of some features; bf16 features are other numbers, so their key names the precision
    (fp32 keys stay what they were before precision existed: those caches stay valid)."""
    if precision != "fp32":
        parts = (*parts, precision)
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached(kind: str, key: str, build):
    path = cache_root() / "features" / f"{kind}-{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=False)
        except Exception:  # a corrupt cache entry is rebuilt, not fatal
            path.unlink(missing_ok=True)
    value = build()
    atomic_save(path, lambda p: torch.save(value, p))
    return value


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def text_pairs(encoder: TextEncoder, split: Split, caption_in_text: bool = False) -> list[str]:
    """The second segment of the text input: the target, or `target [SEP] caption` when the
    caption is read inside the text encoder (CapTrBERT's input; an opt-in extension here)."""
    targets = [s.target for s in split.samples]
    if not caption_in_text:
        return targets
    if split.visual_text is None:
        raise ValueError(
            f"{split.name}: caption_in_text reads the image's caption, but this split's visual input is "
            f"{split.visual_source}; train it on captions (no --image-dir)"
        )
    sep = encoder.tokenizer.sep_token
    return [f"{t} {sep} {c}".strip() if c.strip() else t for t, c in zip(targets, split.visual_text)]


def extract_text(
    encoder: TextEncoder, split: Split, layer: int, max_length: int, batch_size: int = 64, cache: bool = True,
    progress: bool = True, caption_in_text: bool = False, precision: str = "fp32", mark_target: bool = False,
) -> TextFeatures:
    """Token ids + hidden states after `layer` layers for `[CLS] tweet [SEP] target [SEP]`
    (`... target [SEP] caption [SEP]` with caption_in_text), computed in `precision`."""
    texts = [s.marked_text if mark_target else s.text for s in split.samples]
    targets = text_pairs(encoder, split, caption_in_text)
    enc = encoder.tokenize(texts, targets, max_length=max_length, truncation="longest_first" if caption_in_text else None)

    def build() -> TextFeatures:
        hidden = None
        if layer >= 0:
            dev = _device_of(encoder)
            lengths = enc["attention_mask"].sum(1)
            order = torch.argsort(lengths, descending=True)  # bucket by length: no compute on padding
            hidden = torch.zeros(*enc["input_ids"].shape, encoder.dim, dtype=torch.float16)
            bar = progress_bar(range(0, len(texts), batch_size), progress, desc=f"text {split.name}", leave=False)
            for i in bar:
                rows = order[i : i + batch_size]
                width = int(lengths[rows].max())
                part = {k: v[rows, :width].to(dev) for k, v in enc.items()}
                with torch.no_grad(), autocast(dev, precision):
                    hidden[rows, :width] = encoder.hidden_at(part, layer).half().cpu()
        return TextFeatures(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], hidden, layer)

    if not cache or layer < 0:
        return build()
    key = _digest(encoder.name, layer, max_length, texts, targets, *(["longest_first"] if caption_in_text else []),
                  precision=precision)
    return _cached("text", key, build)


def _unique_images(split: Split) -> tuple[list[str], torch.Tensor]:
    ids = list(dict.fromkeys(s.image_id for s in split.samples))
    pos = {k: i for i, k in enumerate(ids)}
    return ids, torch.tensor([pos[s.image_id] for s in split.samples], dtype=torch.long)


def _cosine_clip(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).clamp(0.0, 1.0)


def extract_caption_visual(
    encoder: TextEncoder, split: Split, max_length: int, batch_size: int = 64, cache: bool = True,
    progress: bool = True, precision: str = "fp32",
) -> VisualFeatures:
    """The caption stands in for the image (CapTrBERT): its tokens are E^v."""
    if split.visual_text is None:
        raise ValueError(f"split {split.name} has no captions (it uses {split.visual_source})")
    ids, index = _unique_images(split)
    caption_of = {s.image_id: c for s, c in zip(split.samples, split.visual_text)}
    captions = [caption_of[i] for i in ids]
    prompts = [FUSION_PROMPT.format(target=s.target) for s in split.samples]

    def build() -> VisualFeatures:
        enc = encoder.tokenize(captions, max_length=max_length)
        dev = _device_of(encoder)
        chunks = []
        bar = progress_bar(range(0, len(captions), batch_size), progress, desc=f"captions {split.name}", leave=False)
        with torch.no_grad(), autocast(dev, precision):
            for i in bar:
                part = {k: v[i : i + batch_size].to(dev) for k, v in enc.items()}
                chunks.append(encoder.hidden_at(part, encoder.num_layers).half().cpu())
            cap_emb = encoder.sentence_embedding(captions)
            prompt_emb = _embed_unique(encoder.sentence_embedding, prompts)
        sim = _cosine_clip(cap_emb[index], prompt_emb)
        return VisualFeatures(torch.cat(chunks), enc["attention_mask"], index, sim, enc["input_ids"], ids)

    if not cache:
        return build()
    return _cached("caption", _digest(encoder.name, max_length, captions, prompts, ids, precision=precision), build)


def _embed_unique(embed, texts: list[str]) -> torch.Tensor:
    """embed() each distinct text once: the fusion prompts repeat (one per target, many rows each)."""
    unique = list(dict.fromkeys(texts))
    at = {t: i for i, t in enumerate(unique)}
    return embed(unique)[torch.tensor([at[t] for t in texts], dtype=torch.long)]


def extract_pixel_visual(
    image_encoder, split: Split, batch_size: int = 4, cache: bool = True, progress: bool = True,
    precision: str = "fp32",
) -> VisualFeatures:
    """Real pixels through a frozen image encoder (EfficientNet grid or CLIP patches).

    Small batches: with batches of 32 EfficientNet-Lite0 spent more CPU time in the kernel
    (page faults on its large activations) than in the convolutions, ~3x the cost per image.
    """
    if split.image_paths is None:
        raise ValueError(f"split {split.name} has no image folder (it uses {split.visual_source})")
    ids, index = _unique_images(split)
    path_of = {s.image_id: p for s, p in zip(split.samples, split.image_paths)}
    paths = [path_of[i] for i in ids]
    prompts = [FUSION_PROMPT.format(target=s.target) for s in split.samples]

    def build() -> VisualFeatures:
        tokens, pooled = [], []
        dev = _device_of(image_encoder)
        with autocast(dev, precision):
            for i in progress_bar(range(0, len(paths), batch_size), progress, desc=f"images {split.name}",
                                  leave=False):
                images = [load_image(p) for p in paths[i : i + batch_size]]
                tok, pool = image_encoder.encode(image_encoder.preprocess(images))
                tokens.append(tok.half().cpu())
                pooled.append(pool.float().cpu())
            prompt_emb = _embed_unique(image_encoder.encode_text, prompts).cpu() if image_encoder.has_text_tower else None
        tokens_t = torch.cat(tokens)
        if prompt_emb is not None:
            sim = _cosine_clip(torch.cat(pooled)[index], prompt_emb)
        else:
            sim = torch.full((len(split.samples),), float("nan"))
        mask = torch.ones(tokens_t.shape[:2], dtype=torch.long)
        return VisualFeatures(tokens_t, mask, index, sim, None, ids)

    if not cache:
        return build()
    stamps = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]  # cache=True needs files
    return _cached("pixels", _digest(image_encoder.name, stamps, prompts, precision=precision), build)
