"""Named opt-in variants beyond the paper: sets of config flags with a name, so a run, a grid
and the tables can say `cmcs +target_aware` instead of listing five flags."""
from __future__ import annotations

import dataclasses
from typing import Any

from cmcs_core.config import RunConfig

# Named opt-in variants beyond the paper: config flags set on top of a method's preset (`train --variant
# NAME`; flags given explicitly still win). config.json records every flag, never the name. A method without
# CMS has no upper level, so it takes every flag but those of the upper level (UPPER_LEVEL_FIELDS): `--method
# wo_cms --variant target_aware` is the same variant without CMS, the pair that says what the upper level adds.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    # target-conditioned token gates read through mean+target pooling; a counterfactual branch in the
    # lower level scheduled by its causal effect; a counterfactual D_dev; a Neumann step scaled to the curvature
    "target_aware": {
        "model": {"mask_granularity": "token", "mask_condition": "target", "pooling": "mean+target"},
        "train": {"upper_objective": "counterfactual", "counterfactual_share": 0.5, "neumann_eta_rule": "curvature"},
    },
    # the same, with the text mask fitted by the upper level alone: it selects when D_dev is drawn without the
    # shortcut (the playground's target-cue preset), and overfits a small D_dev drawn like train
    "target_aware_mask_upper": {
        "model": {"mask_granularity": "token", "mask_condition": "target", "pooling": "mean+target"},
        "train": {"upper_objective": "counterfactual", "mask_level": "upper", "mask_lr": 1e-2,
                  "neumann_eta_rule": "curvature"},
    },
}
# How tables, menus and charts name each variant: plain words, the code name kept for flags and folder names.
VARIANT_TITLES = {
    "target_aware": "target-aware gates",
    "target_aware_mask_upper": "target-aware gates learned on the validation split",
}
UPPER_LEVEL_FIELDS = ("upper_objective", "mask_level", "mask_lr", "neumann_eta_rule")


def variant_flags(name: str, use_cms: bool) -> dict[str, dict[str, Any]]:
    """The flags a named variant sets, per config section, on a method with or without CMS."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {sorted(VARIANTS)}")
    parts = VARIANTS[name]
    return {"model": dict(parts.get("model", {})),
            "train": {k: v for k, v in parts.get("train", {}).items() if use_cms or k not in UPPER_LEVEL_FIELDS}}


def apply_variant(cfg: RunConfig, name: str) -> RunConfig:
    """Set a named variant's flags (VARIANTS) on a config whose method is already chosen."""
    flags = variant_flags(name, cfg.model.use_cms)
    cfg.model = dataclasses.replace(cfg.model, **flags["model"])
    cfg.train = dataclasses.replace(cfg.train, **flags["train"])
    return cfg
