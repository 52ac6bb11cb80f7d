"""Which encoders a config may name, checked without torch: a grid's driver refuses an unknown model
before any run starts, instead of each run failing on Hugging Face's "couldn't connect"."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGED_TEXT_MODELS = ("minilm", "mpnet")  # pip packages (encoders/text.py loads them)
PIXEL_ENCODERS = "efficientnet-lite0 or clip:MODEL:CHECKPOINT (or clip:MODEL:hub:ID)"


def _on_the_hub(spec: str) -> str | None:
    """None when the hub id is in the local Hugging Face cache or the hub knows it; else why not."""
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    try:
        if isinstance(try_to_load_from_cache(spec, "config.json"), str):
            return None
    except HFValidationError:
        return "not a valid hub id"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return "not in the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids the hub"
    try:
        HfApi(endpoint=os.environ.get("HF_ENDPOINT")).model_info(spec, timeout=10)
    except RepositoryNotFoundError:
        return "the hub has no such model"
    except Exception as err:  # noqa: BLE001 - no network, a proxy, a timeout: said in one line
        return f"not in the Hugging Face cache, and the hub did not answer ({type(err).__name__})"
    return None


def text_model_problem(spec: str, field: str = "text_model") -> str | None:
    """None for a packaged model, a local folder or a hub model that can be loaded; else one line."""
    if spec in PACKAGED_TEXT_MODELS or Path(spec).expanduser().is_dir():
        return None
    why = _on_the_hub(spec)
    if why is None:
        return None
    return (f"unknown text model {spec!r} ({field}): not packaged ({', '.join(PACKAGED_TEXT_MODELS)}), "
            f"not a local folder, {why}")


def visual_model_problem(spec: str, image_dir: str | None) -> str | None:
    """None for captions, or a pixel encoder whose checkpoint exists with an image folder to read."""
    if spec == "caption":
        return None
    if spec.startswith("clip:") and spec.count(":") >= 2:
        source = spec.split(":", 2)[2]
        if not source.startswith("hub:") and not Path(source).expanduser().is_file():
            return f"CLIP checkpoint not found: {source} (visual_model {spec})"
    elif spec != "efficientnet-lite0":
        return f"unknown visual model {spec!r}: caption, {PIXEL_ENCODERS}"
    if not image_dir:
        return f"visual_model {spec} reads real pixels: pass --image-dir"
    if not Path(image_dir).expanduser().is_dir():
        return f"image directory not found: {image_dir}"
    return None
