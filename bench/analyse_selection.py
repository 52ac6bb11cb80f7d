"""How much does picking the epoch on dev cost on test? From each run's epochs.csv (test
metrics are logged every epoch by default; they never choose anything).

    python bench/analyse_selection.py results/gpu_mpnet

Per regime, dataset and method, mean test accuracy of the epoch each rule picks: best dev
accuracy (what the trainer does; first maximum), best dev macro-F1, lowest dev loss (only
runs that log it), the last epoch, and the best test epoch (an oracle, for scale only); how
often the dev pick is below the oracle; then CMCS minus text-only by seed under each rule.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's cmcs_core

from cmcs_core.runs import load_run  # noqa: E402
from cmcs_core.tables import collect_runs, regime  # noqa: E402

RULES = {"dev acc": ("dev_acc", "max"), "dev F1": ("dev_f1", "max"), "dev loss": ("dev_loss", "min"),
         "last": ("epoch", "max"), "oracle (test)": ("test_acc", "max")}


def picks(epochs: pd.DataFrame) -> dict[str, float]:
    """Test accuracy (%) of the epoch each rule picks (first extremum, like the trainer)."""
    out = {}
    for name, (col, how) in RULES.items():
        if col not in epochs or epochs[col].isna().all():
            continue
        row = epochs[col].idxmax() if how == "max" else epochs[col].idxmin()
        out[name] = 100 * float(epochs.test_acc[row])
    out["dev pick below oracle"] = float(out["dev acc"] < out["oracle (test)"])
    out["epochs"] = len(epochs)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("roots", nargs="+")
    args = p.parse_args()
    runs = collect_runs(args.roots)
    rows = []
    for _, r in runs.iterrows():
        epochs = load_run(r.run).epochs()
        if "test_acc" not in epochs:
            continue  # trained with --no-eval-test-each-epoch
        rows.append({"regime": regime(r), "dataset": r.dataset, "method": r.method, "seed": r.seed, **picks(epochs)})
    df = pd.DataFrame(rows)
    rules = [c for c in RULES if c in df]
    pd.set_option("display.width", 200)
    for reg, part in df.groupby("regime"):
        print(f"## {reg}\n")
        summary = part.groupby(["dataset", "method"])[[*rules, "dev pick below oracle"]].mean().round(2)
        summary["seeds"] = part.groupby(["dataset", "method"]).seed.nunique()
        print(summary.to_string(), "\n")
        wide = part.pivot_table(index=["dataset", "seed"], columns="method", values=rules)
        if ("dev acc", "cmcs") in wide and ("dev acc", "text_only") in wide:
            diff = pd.DataFrame({rule: wide[(rule, "cmcs")] - wide[(rule, "text_only")] for rule in rules})
            print("CMCS minus text-only, by seed:\n", diff.dropna(how="all").round(2).to_string(), "\n")
    print("share of runs whose dev-accuracy pick is below the best test epoch:",
          f"{df['dev pick below oracle'].mean():.2f} of {len(df)}; mean gap to the oracle "
          f"{(df['oracle (test)'] - df['dev acc']).mean():.2f} points")


if __name__ == "__main__":
    main()
