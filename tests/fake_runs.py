"""Run objects made in memory (no folder on disk) for the table tests: a config and the
metrics.json a finished run would hold, read through the same Run as a real folder."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from cmcs_core.config import RunConfig, apply_method
from cmcs_core.runs.reader import Run


def fake_run(method: str, seed: int, acc: float, f1: float | None = None, dataset: str = "twitter2015",
             text_model: str = "minilm", finetune_layers: int = 0, name: str | None = None, **fields) -> Run:
    """A finished run: test accuracy `acc` (a fraction); `fields` are config fields by name
    (`head_lr=1e-4`, `pooling="target"`, `augment_clauses=1.0`) in whichever section holds them."""
    cfg = RunConfig()
    cfg.model = apply_method(cfg.model, method)
    cfg.encoder = dataclasses.replace(cfg.encoder, text_model=text_model, finetune_layers=finetune_layers)
    cfg.data = dataclasses.replace(cfg.data, dataset=dataset)
    cfg.train = dataclasses.replace(cfg.train, seed=seed, precision="fp32")  # what a trainer writes: auto resolved
    for key, value in fields.items():
        section = next(s for s in ("data", "encoder", "model", "train")
                       if key in {f.name for f in dataclasses.fields(getattr(cfg, s))})
        setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **{key: value}))
    metrics = {"test": {"acc": acc, "macro_f1": acc if f1 is None else f1}, "dev": {"acc": acc}, "best_epoch": 1}
    return Run(Path(name or f"runs/{dataset}_{text_model}_{finetune_layers}_{method}_{sorted(fields.items())}_s{seed}"),
               cfg, metrics)
