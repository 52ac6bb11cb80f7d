"""Run objects made in memory (no folder on disk) for the table tests: a config and the
metrics.json a finished run would hold, read through the same Run as a real folder."""
from __future__ import annotations

from pathlib import Path

from cmcs_core.config import build_config
from cmcs_core.runs.reader import Run


def fake_run(method: str, seed: int, acc: float, f1: float | None = None, dataset: str = "twitter2015",
             text_model: str = "minilm", finetune_layers: int = 0, name: str | None = None, **fields) -> Run:
    """A finished run: test accuracy `acc` (a fraction); `fields` are config fields by name
    (`head_lr=1e-4`, `pooling="target"`, `augment_clauses=1.0`) in whichever section holds them."""
    # what a trainer writes: auto precision resolved
    given = dict(text_model=text_model, finetune_layers=finetune_layers, dataset=dataset, seed=seed, precision="fp32")
    cfg = build_config(None, method, None, {**given, **fields}, validate=False)
    metrics = {"test": {"acc": acc, "macro_f1": acc if f1 is None else f1}, "dev": {"acc": acc}, "best_epoch": 1}
    return Run(Path(name or f"runs/{dataset}_{text_model}_{finetune_layers}_{method}_{sorted(fields.items())}_s{seed}"),
               cfg, metrics)
