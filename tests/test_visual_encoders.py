"""Image encoders: real EfficientNet weights classify real photos; CLIP plumbing has the right shapes."""
from __future__ import annotations

import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from the tests

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from cmcs_core.encoders.visual import (
    ImageEncoder,
    load_image_encoder,
    save_random_clip_checkpoint,
)

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967
SMALL_CLIP = "ViT-S-32"  # smallest stock open_clip ViT config: keeps the random-weight test fast


@pytest.fixture(scope="module")
def effnet() -> ImageEncoder:
    return load_image_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def clip_ckpt(tmp_path_factory: pytest.TempPathFactory):
    return save_random_clip_checkpoint(SMALL_CLIP, tmp_path_factory.mktemp("clip") / "random.bin")


@pytest.fixture(scope="module")
def clip(clip_ckpt) -> ImageEncoder:
    return load_image_encoder(f"clip:{SMALL_CLIP}:{clip_ckpt}")


def odd_mode_images() -> list[Image.Image]:
    rgb = data.chelsea()
    rgba = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), "RGBA")
    gray = Image.fromarray(data.camera(), "L")
    palette = Image.fromarray(data.coffee()).convert("P")
    return [rgba, gray, palette, Image.new("LA", (40, 30))]


def test_efficientnet_classifies_real_photos(effnet: ImageEncoder) -> None:
    x = effnet.preprocess([Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())])
    top1 = effnet.classify(x).argmax(dim=-1).tolist()
    assert top1[0] in CATS, f"chelsea predicted as ImageNet class {top1[0]}"
    assert top1[1] == ESPRESSO, f"coffee predicted as ImageNet class {top1[1]}"


def test_efficientnet_token_shapes(effnet: ImageEncoder) -> None:
    x = effnet.preprocess([Image.fromarray(data.chelsea()), Image.fromarray(data.astronaut())])
    assert x.shape == (2, 3, 224, 224)
    tokens, pooled = effnet.encode(x)
    assert tokens.shape == (2, 49, 1280) and pooled.shape == (2, 1280)
    assert tokens.dtype == pooled.dtype == torch.float32
    assert effnet.grid == (7, 7) and effnet.dim == 1280 and effnet.name == "efficientnet-lite0"
    assert torch.allclose(pooled, tokens.mean(dim=1))
    assert not effnet.has_text_tower and not effnet.is_random
    with pytest.raises(NotImplementedError):
        effnet.encode_text(["a cat"])


def test_efficientnet_stays_frozen_in_eval(effnet: ImageEncoder) -> None:
    effnet.train()
    assert not effnet.training and not effnet.model.training


def test_odd_image_modes_are_accepted(effnet: ImageEncoder, clip: ImageEncoder) -> None:
    images = odd_mode_images()
    for enc in (effnet, clip):
        x = enc.preprocess(images)
        assert x.shape[:2] == (len(images), 3)
        tokens, _ = enc.encode(x)
        assert torch.isfinite(tokens).all()


def test_clip_random_checkpoint_shapes(clip: ImageEncoder, clip_ckpt) -> None:
    x = clip.preprocess([Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())])
    tokens, pooled = clip.encode(x)
    h, w = clip.grid
    assert tokens.shape == (2, h * w, clip.dim) and (h, w) == (7, 7)  # 224 / patch 32
    assert pooled.shape == (2, clip.embed_dim)
    assert torch.allclose(pooled.norm(dim=-1), torch.ones(2), atol=1e-4)
    text = clip.encode_text(["a photo of a cat", "a cup of coffee", "happy"])
    assert text.shape == (3, clip.embed_dim) == (3, pooled.shape[-1])
    assert torch.allclose(text.norm(dim=-1), torch.ones(3), atol=1e-4)
    assert clip.has_text_tower and clip.is_random
    assert clip.name.startswith(f"clip-{SMALL_CLIP}:")
    assert load_image_encoder(f"clip:{SMALL_CLIP}:{clip_ckpt}").name == clip.name  # stable cache key


def test_missing_clip_checkpoint_names_the_path(tmp_path) -> None:
    missing = tmp_path / "nope" / "open_clip_pytorch_model.bin"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_image_encoder(f"clip:ViT-B-32:{missing}")


def test_unknown_spec_is_rejected() -> None:
    with pytest.raises(ValueError):
        load_image_encoder("resnet50")


def test_efficientnet_rejects_wrong_input_size(effnet: ImageEncoder) -> None:
    with pytest.raises(ValueError, match="224"):
        effnet.encode(torch.zeros(1, 3, 256, 256))
