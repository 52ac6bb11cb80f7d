"""Named opt-in variants beyond the paper: sets of config flags with a name, so a run, a grid and the
tables can say `cmcs +target_aware` instead of listing five flags. Data only: config.build_config sets
them (after a method's preset; flags given explicitly still win), report/regime.py names them."""
from __future__ import annotations

from typing import Any

# config.json records every flag, never the name. A method without CMS has no upper level, so it takes every
# flag but those of the upper level (config.UPPER_LEVEL_FIELDS): `--method wo_cms --variant target_aware` is
# the same variant without CMS, the pair that says what the upper level adds.
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    # target-conditioned gates read through mean+target pooling; a counterfactual branch in the lower level
    # scheduled by its causal effect; a counterfactual D_dev; a Neumann step scaled to the curvature
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
