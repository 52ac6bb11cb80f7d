"""Within each run: accuracy of the text branch alone, the image branch alone and the fusion
(Eq. 15), and the fusion weight s — does the visual branch help at inference?

    python bench/analyse_fusion.py results/gpu_ftall
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from cmcs_core.data.tsv import LABEL_NAMES


def branch_accuracy(run: Path) -> dict:
    pred = pd.read_csv(run / "predictions_test.csv")
    out = {"run": run.name, "s_mean": pred.s.mean()}
    for branch in ("p_text", "p_image", "p_final"):
        cols = [f"{branch}_{n}" for n in LABEL_NAMES]
        if cols[0] in pred:
            out[f"acc_{branch}"] = 100 * (pred[cols].to_numpy().argmax(1) == pred.label).mean()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root")
    args = p.parse_args()
    rows = [branch_accuracy(r) for r in sorted(Path(args.root).iterdir()) if (r / "predictions_test.csv").is_file()]
    df = pd.DataFrame(rows)
    df["group"] = df.run.str.replace(r"_s\d+$", "", regex=True)
    print(df.groupby("group").mean(numeric_only=True).round(2).to_string())


if __name__ == "__main__":
    main()
