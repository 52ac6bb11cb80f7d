"""How a run is described in tables, badges and regime names: its dataset's name, the visual
input it was set up with and what its visual branch read, and whether its CLIP weights are random.
Read from the config alone (and small files beside it), without torch."""
from __future__ import annotations

import functools
import json
from pathlib import Path

from cmcs_core.config import CLIP_SIDECAR_SUFFIX, RunConfig


def visual_encoder_is_random(cfg: RunConfig) -> bool:
    """True when the run's CLIP checkpoint carries the random-weights sidecar (meaningless features)."""
    spec = cfg.encoder.visual_model
    if not spec.startswith("clip:") or spec.count(":") < 2:
        return False
    source = spec.split(":", 2)[2]
    if source.startswith("hub:"):
        return False
    sidecar = Path(source).expanduser().with_name(Path(source).name + CLIP_SIDECAR_SUFFIX)
    try:
        return bool(json.loads(sidecar.read_text()).get("random_weights", False))
    except (OSError, ValueError):
        return False


def visual_input_of(cfg: RunConfig) -> str:
    """The visual input a run was set up with, whether or not its method reads it: what the
    pipeline writes into metrics.json and what names a regime (a text-only run of a captions grid
    is in the captions regime)."""
    if cfg.encoder.visual_model != "caption":
        return f"pixels ({cfg.encoder.visual_model.split(':')[0]})"
    return "captions+faces" if cfg.data.use_faces else "captions"


def visual_source_of(cfg: RunConfig) -> str:
    """What the visual branch read: none for the methods without one."""
    return visual_input_of(cfg) if cfg.model.use_visual else "none (text only)"


@functools.lru_cache(maxsize=256)
def dataset_name(spec: str) -> str:
    """A dataset's name in tables and badges: its folder name (twitter2015), but a generated
    playground folder (meta.json by cmcs_core.playground, written to playground/data) reads
    "playground" rather than "data"."""
    folder = Path(spec).expanduser()
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict) and meta.get("generator") == "cmcs_core.playground":
        return "playground" if folder.name == "data" else f"playground ({folder.name})"
    return folder.name
