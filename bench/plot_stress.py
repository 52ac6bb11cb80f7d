"""Figures and tables of docs/robustness.md from stress-tested run folders.

    python bench/plot_stress.py results/stress_frozen

docs/img/stress_<dataset>.png: flip rate per edit and method (bars: mean over seeds, whiskers:
per-seed 95% bootstrap intervals averaged, dots: seeds; axis 0-100%). docs/img/stress_augment.png:
counterfactual augmentation against the plain method, seed by seed (flip rate under the appended
clauses vs test accuracy). bench/results/stress_tables.md: `table --stress` of the same folders
and the augmentation's cost per epoch.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cmcs_core.data.counterfactual import EDITS  # noqa: E402
from cmcs_core.stress import collect_stress, stress_tables, variant_order, variant_title  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
OUT = ROOT / "bench" / "results"


def flip_bars(found, dataset: str) -> Path:
    part = found[(found.dataset == dataset) & found.applies & (found.split == "test")]
    variants = variant_order(part.variant)
    edits = [e for e in EDITS if e in set(part.edit)]
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(11, 4.2))
    for k, variant in enumerate(variants):
        v = part[part.variant == variant]
        x = np.arange(len(edits)) + (k - (len(variants) - 1) / 2) * width
        g = v.groupby("edit").agg(mean=("flip_rate", "mean"), lo=("flip_lo", "mean"), hi=("flip_hi", "mean"))
        g = g.reindex(edits)
        ax.bar(x, g["mean"], width, label=f"{variant_title(variant)} ({v.seed.nunique()} seeds)",
               yerr=[g["mean"] - g["lo"], g["hi"] - g["mean"]], capsize=2, error_kw={"lw": 0.8})
        for i, edit in enumerate(edits):
            seeds = v[v.edit == edit].flip_rate
            ax.plot([x[i]] * len(seeds), seeds, "k.", ms=3)
    ax.set_xticks(np.arange(len(edits)), edits)
    ax.set_ylim(0, 100)
    ax.set_ylabel("flip rate (%)")
    regime = ", ".join(sorted(part.regime.unique()))
    ax.set_title(f"{dataset} test: share of edited rows whose prediction changes ({regime})", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = IMG / f"stress_{dataset}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def augment_pairs(found) -> Path | None:
    part = found[found.applies & (found.split == "test") & found.edit.str.startswith("clause_")]
    aug = sorted({v for v in part.variant if "+aug" in v})
    if not aug:
        return None
    datasets = sorted(part.dataset.unique())
    colour = {v: f"C{i}" for i, v in enumerate(variant_order(part.variant))}  # one colour per method in every panel
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        d = part[part.dataset == dataset]
        # one point per run: mean flip rate over the two clause edits, test accuracy
        runs = d.groupby(["variant", "seed"]).agg(flip=("flip_rate", "mean"), acc=("test_acc", "first")).reset_index()
        for variant in aug:
            plain = variant.split(" ")[0]
            for seed in sorted(set(runs.seed)):
                a = runs[(runs.variant == variant) & (runs.seed == seed)]
                p = runs[(runs.variant == plain) & (runs.seed == seed)]
                if a.empty or p.empty:
                    continue
                ax.annotate("", xy=(a.acc.iloc[0], a.flip.iloc[0]), xytext=(p.acc.iloc[0], p.flip.iloc[0]),
                            arrowprops=dict(arrowstyle="->", color="grey", lw=0.8))
        for variant in variant_order(runs.variant):
            r = runs[runs.variant == variant]
            ax.scatter(r.acc, r.flip, label=variant_title(variant), s=25, color=colour[variant])
        ax.set_ylim(0, 100)
        ax.set_xlabel("test accuracy (%)")
        ax.set_ylabel("flip rate, appended clauses (%)")
        ax.set_title(f"{dataset}: plain → counterfactual augmentation, per seed", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = IMG / "stress_augment.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def augment_cost(found) -> str:
    """Median seconds per training epoch, augmented vs plain run of the same dataset, method and
    seed (epochs.csv): what the extra rows cost. Shared CPU: read the ratio, not the seconds."""
    import pandas as pd

    runs = found.drop_duplicates("run")
    rows = []
    for r in runs[runs.variant.str.contains("+aug", regex=False)].itertuples():
        plain = runs[(runs.variant == r.method) & (runs.dataset == r.dataset) & (runs.seed == r.seed)]
        if plain.empty:
            continue
        sec = [float(pd.read_csv(Path(x) / "epochs.csv").seconds.median()) for x in (r.run, plain.run.iloc[0])]
        rows.append(f"| {r.dataset} | {r.variant} | {r.seed} | {sec[1]:.1f} | {sec[0]:.1f} | {sec[0] / sec[1]:.2f} |\n")
    if not rows:
        return ""
    return ("\n### Cost of counterfactual augmentation (median seconds per training epoch)\n\n"
            "| dataset | method | seed | plain | augmented | ratio |\n|---|---|---|---|---|---|\n" + "".join(rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+")
    args = p.parse_args()
    found = collect_stress(args.folders)
    if found.empty:
        raise SystemExit("no stress.json under " + " ".join(args.folders))
    for dataset in sorted(found.dataset.unique()):
        print(flip_bars(found, dataset))
    print(augment_pairs(found))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "stress_tables.md").write_text(stress_tables(found) + augment_cost(found))
    print(OUT / "stress_tables.md")


if __name__ == "__main__":
    main()
