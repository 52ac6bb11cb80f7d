"""Within each run: accuracy of the text branch alone, the image branch alone and the fusion
(Eq. 15), the fusion weight s, and the share of samples whose label the fusion changes from
the text branch's — does the visual branch help at inference?

    python bench/analyse_fusion.py results/gpu_ftall
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's cmcs_core

from cmcs_core.data.tsv import LABEL_NAMES  # noqa: E402
from cmcs_core.runs import find_run_dirs, load_run  # noqa: E402


def branch_accuracy(run: Path) -> dict:
    pred = load_run(run).predictions("test")
    out = {"run": run.name, "s_mean": pred.s.astype(float).mean()}
    labels = {}
    for branch in ("p_text", "p_image", "p_final"):
        cols = [f"{branch}_{n}" for n in LABEL_NAMES]
        if cols[0] in pred:
            labels[branch] = pred[cols].to_numpy().argmax(1)
            out[f"acc_{branch}"] = 100 * (labels[branch] == pred.label).mean()
    if "p_image" in labels:  # how often the caption branch's say changes the text branch's label
        out["changed_pct"] = 100 * (labels["p_final"] != labels["p_text"]).mean()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root")
    args = p.parse_args()
    rows = [branch_accuracy(r) for r in find_run_dirs(args.root, max_depth=1) if "test" in load_run(r).splits()]
    df = pd.DataFrame(rows)
    df["group"] = df.run.str.replace(r"_s\d+$", "", regex=True)
    print(df.groupby("group").mean(numeric_only=True).round(2).to_string())


if __name__ == "__main__":
    main()
