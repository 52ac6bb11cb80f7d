"""Does bf16 change the science? Runs that differ only in their precision, paired (`cmcs analyse precision`):
test accuracy in each, the difference, and how often the two give the same test prediction.

A pair is two finished runs whose configs agree on every field that changes results but
`train.precision` (runs/holds.py names the result-neutral fields: threads, device names).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from cmcs_core.report.regime import Regime, mean_std
from cmcs_core.runs.holds import RESULT_NEUTRAL
from cmcs_core.runs.reader import Run

PRECISION_FIELD = "train.precision"


def _pair_key(run: Run) -> str:
    flat = {f"{s}.{k}": v for s, fields in run.cfg.to_dict().items() for k, v in fields.items()}
    return json.dumps({k: v for k, v in flat.items() if k not in RESULT_NEUTRAL | {PRECISION_FIELD}}, sort_keys=True,
                      default=str)


def agreement(a: Run, b: Run, split: str = "test") -> float:
    """Share of rows (matched on index and target) where the two runs predict the same label."""
    pa, pb = a.predictions(split), b.predictions(split)
    both = pa[["index", "target", "pred"]].merge(pb[["index", "target", "pred"]], on=["index", "target"])
    return float((both.pred_x == both.pred_y).mean()) if len(both) else float("nan")


def precision_pairs(runs: list[Run]) -> pd.DataFrame:
    """One row per fp32/bf16 pair: regime (without its precision), dataset, method, seed, each run's dev and test
    accuracy, bf16 minus fp32, and their test-prediction agreement."""
    groups: dict[str, dict[str, Run]] = {}
    for run in runs:
        if run.finished:
            groups.setdefault(_pair_key(run), {})[run.precision] = run
    rows = []
    for pair in groups.values():
        if not {"fp32", "bf16"} <= set(pair):
            continue
        f32, b16 = pair["fp32"], pair["bf16"]
        regime = Regime.of(f32.cfg)
        accs = {p: (pair[p].metrics["dev"]["acc"], pair[p].metrics["test"]["acc"]) for p in ("fp32", "bf16")}
        rows.append({"regime": regime.title.replace(", fp32", ""), "dataset": f32.dataset, "method": f32.method,
                     "seed": f32.cfg.train.seed, "dev_fp32": accs["fp32"][0], "dev_bf16": accs["bf16"][0],
                     "test_fp32": accs["fp32"][1], "test_bf16": accs["bf16"][1],
                     "test_diff": accs["bf16"][1] - accs["fp32"][1], "agreement": agreement(f32, b16),
                     "best_epoch_fp32": f32.metrics.get("best_epoch"), "best_epoch_bf16": b16.metrics.get("best_epoch")})
    frame = pd.DataFrame(rows)
    return frame.sort_values(["regime", "dataset", "method", "seed"]).reset_index(drop=True) if rows else frame


def precision_markdown(frame: pd.DataFrame) -> str:
    """Per regime, dataset and method: mean test accuracy in each precision (± std over seeds), the paired
    difference per seed and its mean, the prediction agreement; percent."""
    if frame.empty:
        return "No pair of runs that differ only in their precision.\n"
    lines = ["| regime | dataset | method | seeds | test fp32 | test bf16 | bf16 − fp32 per seed | mean | agreement |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (regime, dataset, method), part in frame.groupby(["regime", "dataset", "method"], sort=True):
        diffs = 100 * part.test_diff
        lines.append(
            f"| {regime} | {dataset} | {method} | {len(part)} | {mean_std(100 * part.test_fp32.mean(), 100 * part.test_fp32.std())}"
            f" | {mean_std(100 * part.test_bf16.mean(), 100 * part.test_bf16.std())} | "
            f"{' '.join(f'{d:+.1f}' for d in diffs)} | {diffs.mean():+.2f} | "
            f"{100 * np.nanmean(part.agreement):.1f}% |")
    return "\n".join(lines) + ("\n\nTest accuracy (%), paired by seed; agreement: the share of test rows where the fp32 "
                               "and bf16 runs predict the same label.\n")
