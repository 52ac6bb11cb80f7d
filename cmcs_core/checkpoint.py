"""What a run's checkpoint (best.safetensors) holds: the trained tensors only, since the frozen
encoder weights come from the installed package. Written by the trainer, read by inference."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from cmcs_core.model.cmcs import CMCSModel


def trainable_state(model: CMCSModel) -> dict[str, torch.Tensor]:
    """What a checkpoint needs: every trained tensor (frozen encoder weights come from the package)."""
    trained = {n for n, p in model.named_parameters() if p.requires_grad} | {"alpha", "beta"}
    state = model.state_dict()
    keep = {k for k in state if k in trained or not k.startswith("text_tower.")}
    return {k: state[k].detach().contiguous().cpu() for k in sorted(keep)}


def load_trainable_state(model: CMCSModel, path: Path) -> None:
    state = load_file(str(path))
    missing = set(trainable_state(model)) - set(state)
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {sorted(missing)[:5]} (config and checkpoint disagree)")
    model.load_state_dict(state, strict=False)
