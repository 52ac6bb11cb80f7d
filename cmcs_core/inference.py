"""Load a trained run and predict on new (tweet, target, image or caption) inputs.

The CLI's `predict` and the app's inspector both go through `Predictor`, which runs the very
feature extraction and model code used in training (no cache, one sample at a time).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from cmcs_core.checkpoint import load_trainable_state
from cmcs_core.config import RunConfig
from cmcs_core.data.dataset import Split, image_label_sets
from cmcs_core.data.tsv import LABEL_NAMES, TARGET_TOKEN, Sample
from cmcs_core.evaluate import predict_tensors
from cmcs_core.model.cmcs import CMCSModel
from cmcs_core.pipeline import Pipeline, SplitTensors, resolve_device
from cmcs_core.runs.files import run_paths

MAX_TWEET_CHARS = 1000


class Pieces(NamedTuple):
    """Word pieces of one input (Predictor.pieces): read by the model, in the whole input, the tweet's share of
    what is read, and where the target's mention in the tweet ends."""

    read: int
    total: int
    tweet_read: int
    mention_end: int

    @property
    def mention_cut(self) -> bool:
        """The target's mention lies (partly) after the cut: the model reads the name only in the target segment."""
        return self.total > self.read and self.mention_end > self.tweet_read


def mask_target(tweet: str, target: str) -> str:
    """Return the tweet with the target replaced by $T$ (accepts a tweet that already has $T$)."""
    tweet, target = tweet.strip(), target.strip()
    if not tweet:
        raise ValueError("the tweet is empty")
    if len(tweet) > MAX_TWEET_CHARS:
        raise ValueError(f"the tweet is longer than {MAX_TWEET_CHARS} characters")
    if not target:
        raise ValueError("the target is empty")
    if TARGET_TOKEN in tweet:
        return tweet
    pos = tweet.lower().find(target.lower())
    if pos < 0:
        raise ValueError(f"the target {target!r} does not occur in the tweet")
    return tweet[:pos] + TARGET_TOKEN + tweet[pos + len(target) :]



def target_words(tweet: str, target: str) -> set[int]:
    """Indices of the whitespace words of the tweet that hold (part of) the target (or $T$)."""
    low, tg = tweet.lower(), target.strip().lower()
    marked = TARGET_TOKEN in tweet
    start = low.find(TARGET_TOKEN.lower()) if marked else low.find(tg) if tg else -1
    if start < 0:
        return set()
    end = start + (len(TARGET_TOKEN) if marked else len(tg))
    out, pos = set(), 0
    for i, word in enumerate(tweet.split()):
        pos = tweet.index(word, pos)
        if pos < end and pos + len(word) > start:
            out.add(i)
        pos += len(word)
    return out


def edit_word(tweet: str, i: int | None, replacement: str = "") -> str:
    """The tweet with its i-th whitespace word replaced (deleted when the replacement is blank); i None: as it is,
    words joined by single spaces."""
    words = tweet.split()
    if i is not None:
        words = words[:i] + ([replacement] if replacement.strip() else []) + words[i + 1:]
    return " ".join(words)


def keeps_target(tweet: str, target: str) -> bool:
    """Whether an (edited) tweet still holds text and its target (or $T$)."""
    return bool(tweet.strip()) and (TARGET_TOKEN in tweet or target.strip().lower() in tweet.lower())


class Predictor:
    def __init__(self, run_dir: str | Path, device: str = "cpu") -> None:
        self.run_dir = Path(run_dir)
        paths = run_paths(self.run_dir)
        if not paths["config"].is_file() or not paths["best"].is_file():
            raise FileNotFoundError(f"{self.run_dir} is not a finished run (needs config.json and best.safetensors)")
        self.cfg = RunConfig.load(paths["config"])
        self.pipe = Pipeline(self.cfg, resolve_device(device))
        self.model: CMCSModel = self.pipe.build_model()
        load_trainable_state(self.model, paths["best"])
        self.model.eval()

    @property
    def needs_image(self) -> bool:
        return self.cfg.model.use_visual and self.pipe.uses_pixels

    @property
    def needs_caption(self) -> bool:
        """Captions runs read one; so does a run with the caption inside its text input."""
        return (self.cfg.model.use_visual and not self.pipe.uses_pixels) or self.cfg.encoder.caption_in_text

    def tensors(
        self, samples: list[Sample], captions: list[str] | None = None, images: list[Image.Image] | None = None
    ) -> SplitTensors:
        """Features of ad-hoc samples, extracted exactly as in training (no cache)."""
        if self.needs_caption and (captions is None or any(not c.strip() for c in captions)):
            raise ValueError("this run reads the image as its caption: give a caption")
        if self.needs_image and images is None:
            raise ValueError("this run reads real pixels: give an image")
        source = "pixels" if self.pipe.uses_pixels else "captions"
        labels = image_label_sets(samples)
        split = Split(
            name="input",
            path=Path("<input>"),
            samples=samples,
            visual_source=source,
            visual_text=captions if source == "captions" else None,
            image_paths=images if source == "pixels" else None,  # load_image takes PIL images too
            image_labels=np.stack([labels[s.image_id] for s in samples]),
        )
        return self.pipe.tensors(split, cache=False, progress=False)  # a bar per prediction would only be noise

    def unknown_share(self, tokens: list[str], visual: bool = False) -> float:
        """Share of [UNK] among the word pieces that are not special tokens: high for a tweet of
        emoji, whose output then says little about the input."""
        if not tokens:
            return 0.0
        tok = (self.pipe.caption_encoder if visual else self.pipe.text_encoder).tokenizer
        special = set(tok.all_special_tokens) | {TARGET_TOKEN}
        pieces = [t for t in tokens if t not in special or t == tok.unk_token]
        return sum(t == tok.unk_token for t in pieces) / len(pieces) if pieces else 0.0

    def input_error(self, tweet: str, target: str, caption: str | None = None, has_image: bool = False) -> str | None:
        """Why this input cannot be predicted (the checks predict() makes), or None: one wording for the CLI and
        the app."""
        try:
            mask_target(tweet, target)
        except ValueError as err:
            return str(err)
        if self.needs_caption and not (caption or "").strip():
            return "this run reads the image as its caption: give a caption"
        if self.needs_image and not has_image:
            return "this run reads real pixels: give an image"
        return None

    def pieces(self, tweet: str, target: str) -> Pieces:
        """What the text encoder reads of a long input: the tweet is cut at the run's max_length (the target
        segment is kept whole), and the part after the cut never reaches the model, the target's own
        clause included when the target is mentioned late."""
        tok = self.pipe.text_encoder.tokenizer
        masked, name = mask_target(tweet, target), target.strip()
        sample = Sample("0", 1, "input-image", masked, name, 1)
        marked = self.cfg.encoder.mark_target
        text = sample.marked_text if marked else sample.text
        total = len(tok(text, name, truncation=False)["input_ids"])
        count = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
        tweet_budget = self.cfg.encoder.max_length - count(name) - 3  # [CLS] tweet [SEP] target [SEP]
        head = Sample("0", 1, "input-image", masked.split(TARGET_TOKEN, 1)[0] + TARGET_TOKEN, name, 1)
        mention_end = count(head.marked_text if marked else head.text)
        return Pieces(min(total, self.cfg.encoder.max_length), total, tweet_budget, mention_end)

    @torch.no_grad()
    def predict(
        self, tweet: str, target: str, caption: str | None = None, image: Image.Image | None = None
    ) -> dict:
        """Each branch's probabilities, the fusion weight, the final label and the masks."""
        sample = Sample("0", 1, "input-image", mask_target(tweet, target), target.strip(), 1)
        data = self.tensors([sample], [caption or ""] if self.needs_caption else None,
                            [image] if image is not None else None)
        res = predict_tensors(self.model, data, self.pipe.device, precision=self.pipe.precision.used)
        ids = data.text.input_ids[0][: len(res["text_tok_mask"][0])]
        out = {
            "label": LABEL_NAMES[int(res["pred"][0])],
            "p_final": res["p_final"][0].tolist(),
            "p_text": res["p_text"][0].tolist(),
            "s": float(res["s"][0]),
            "tokens": self.pipe.decode_tokens(ids),
            "token_mask": res["text_tok_mask"][0],
        }
        if "p_image" in res:
            out["p_image"] = res["p_image"][0].tolist()
            out["visual_mask"] = res["vis_tok_mask"][0]
            if data.visual is not None and data.visual.token_ids is not None:
                vids = data.visual.token_ids[0][: len(out["visual_mask"])]
                out["visual_tokens"] = self.pipe.decode_tokens(vids, visual=True)
            out["grid"] = getattr(self.pipe.image_encoder, "grid", None)
            out["s_constant"] = self.model.fusion_is_constant(data.visual.fusion_sim)  # the same s for every input
        return out
