"""From a RunConfig to encoders, cached split tensors and a model: shared by train, evaluate,
predict and the app, so all of them see a sample exactly the same way."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from cmcs_core.config import RunConfig
from cmcs_core.data.dataset import DatasetFiles, Split, attach_visual, dataset_files, load_split
from cmcs_core.encoders.features import (
    TextFeatures,
    VisualFeatures,
    extract_caption_visual,
    extract_pixel_visual,
    extract_text,
)
from cmcs_core.encoders.text import TextEncoder
from cmcs_core.model.cmcs import CMCSModel, TextTower
from cmcs_core.precision import PrecisionChoice, resolve_precision


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run torch on n intra-op threads, then restore the caller's count (torch's setting is
    process-global: the library must not leave its own behind)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class SplitTensors:
    """A split's cached features and labels, sliced into padded-to-the-longest batches."""

    split: Split
    text: TextFeatures
    visual: VisualFeatures | None
    labels: torch.Tensor
    image_labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        mask = self.text.attention_mask[idx]
        width = int(mask.sum(1).max())
        out = {
            "index": idx,
            "input_ids": self.text.input_ids[idx, :width],
            "attention_mask": mask[:, :width],
            "token_type_ids": self.text.token_type_ids[idx, :width],
            "label": self.labels[idx],
            "image_label": self.image_labels[idx],
        }
        if self.text.hidden is not None:
            out["text_hidden"] = self.text.hidden[idx, :width]
        if self.visual is not None:
            rows = self.visual.image_index[idx]
            vmask = self.visual.mask[rows]
            vwidth = int(vmask.sum(1).max())
            out["visual_tokens"] = self.visual.tokens[rows, :vwidth]
            out["visual_mask"] = vmask[:, :vwidth]
            out["fusion_sim"] = self.visual.fusion_sim[idx]
        return {k: v.to(device, non_blocking=True) for k, v in out.items()}

    def batches(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled when a generator is given, else in file order."""
        order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
        for i in range(0, len(order), batch_size):
            yield self.batch(order[i : i + batch_size], device)


class Pipeline:
    """Encoders and feature extraction for one run configuration, in one precision: features,
    training and every later reading of the run compute in the same arithmetic."""

    def __init__(self, cfg: RunConfig, device: torch.device | None = None,
                 precision: PrecisionChoice | None = None) -> None:
        """`precision`: what a trainer resolved; readers of a run (evaluate, predict, the app) resolve the
        config's own, which computes a bf16 run in bf16 even where that is emulated."""
        self.cfg = cfg
        self.device = device or resolve_device(cfg.train.device)
        self.precision = precision or resolve_precision(cfg.train.precision, self.device, training=False)
        enc = cfg.encoder
        attn = "eager" if cfg.train.hessian_params != "heads" else "sdpa"
        self.text_encoder = TextEncoder(enc.text_model, attn_implementation=attn).to(self.device)
        self.files: DatasetFiles | None = None
        self.image_encoder = None
        self.caption_encoder: TextEncoder | None = None
        if self.uses_pixels:
            from cmcs_core.encoders.visual import load_image_encoder

            self.image_encoder = load_image_encoder(enc.visual_model, device=str(self.device))
        elif cfg.model.use_visual or enc.visual_model == "caption":
            caption_spec = enc.caption_model or enc.text_model
            if caption_spec == enc.text_model and enc.finetune_layers == 0:
                self.caption_encoder = self.text_encoder  # frozen: one copy serves both
            else:
                self.caption_encoder = TextEncoder(caption_spec).to(self.device)
            self.caption_encoder.requires_grad_(False)

    @property
    def uses_pixels(self) -> bool:
        return self.cfg.encoder.visual_model != "caption"

    @property
    def visual_dim(self) -> int:
        if self.image_encoder is not None:
            return self.image_encoder.dim
        return self.caption_encoder.dim if self.caption_encoder is not None else 0

    @property
    def visual_source(self) -> str:
        if self.uses_pixels:
            return f"pixels ({self.cfg.encoder.visual_model.split(':')[0]})"
        return "captions+faces" if self.cfg.data.use_faces else "captions"

    def dataset(self) -> DatasetFiles:
        if self.files is None:
            d = self.cfg.data
            self.files = dataset_files(d.dataset, d.data_dir, d.image_dir if self.uses_pixels else None)
            if self.uses_pixels and self.files.image_dir is None:
                raise FileNotFoundError(
                    f"visual model {self.cfg.encoder.visual_model} needs real pixels: pass --image-dir"
                )
        return self.files

    def autocast(self):
        """The run's arithmetic for a forward pass (bf16 autocast or nothing)."""
        return self.precision.autocast(self.device)

    def build_model(self) -> CMCSModel:
        tower = TextTower(self.text_encoder, self.cfg.encoder.finetune_layers)
        model = CMCSModel(self.cfg.model, tower, self.visual_dim if self.cfg.model.use_visual else None)
        return model.to(self.device)

    def load_split(self, split: str, max_samples: int | None = None) -> Split:
        d = self.cfg.data
        return load_split(self.dataset(), split, d.use_faces, d.drop_missing_visual, max_samples)

    def rows_split(self, samples: list, name: str, drop_missing: bool | None = None) -> Split:
        """Rows held in memory (an upload) with this run's visual input by image id; errors say `name:line`."""
        d = self.cfg.data
        drop = d.drop_missing_visual if drop_missing is None else drop_missing
        return attach_visual(self.dataset(), samples, Path(name), Path(name).stem, d.use_faces, drop)

    def tensors(self, split: Split, cache: bool = True, progress: bool = True) -> SplitTensors:
        """Extract (or load cached) features for a split; `progress` shows extraction bars."""
        enc = self.cfg.encoder
        layer = -1 if enc.finetune_layers == -1 else self.text_encoder.num_layers - enc.finetune_layers
        used = self.precision.used
        text = extract_text(self.text_encoder, split, layer, enc.max_length, cache=cache, progress=progress,
                            caption_in_text=enc.caption_in_text, precision=used, mark_target=enc.mark_target)
        visual = None
        if self.cfg.model.use_visual:
            if self.image_encoder is not None:
                visual = extract_pixel_visual(self.image_encoder, split, cache=cache, progress=progress, precision=used)
            else:
                visual = extract_caption_visual(self.caption_encoder, split, enc.caption_max_length, cache=cache,
                                                progress=progress, precision=used)
        return SplitTensors(
            split,
            text,
            visual,
            torch.as_tensor(split.labels),
            torch.as_tensor(split.image_labels),
        )

    def decode_tokens(self, ids: torch.Tensor, visual: bool = False) -> list[str]:
        tok = (self.caption_encoder if visual else self.text_encoder).tokenizer
        return tok.convert_ids_to_tokens([int(i) for i in ids])

