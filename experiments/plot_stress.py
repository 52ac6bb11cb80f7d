"""Figures and tables of docs/robustness.md from stress-tested run folders.

    python experiments/plot_stress.py results/stress_frozen
    python experiments/plot_stress.py results/stress_top2 --name stress_top2

docs/img/<name>_<dataset>.png: flip rate per edit and method (bars: mean over seeds, whiskers:
per-seed 95% bootstrap intervals averaged, dots: seeds; axis 0-100%). docs/img/<name>_variants.png:
each variant (augmentation, target pooling, caption in the text input) against the same method
without it, seed by seed (flip rate under the appended clauses vs test accuracy).
docs/img/<name>_scheduler.png: each method with CMS minus its twin without it (`cmcs analyse scheduler`),
per figure, turned so that right is in CMS's favour: dots are seeds, the bar the mean's 95% t-interval.
experiments/results/<name>_tables.md: `table --stress` of the same folders, the augmentation's cost
per epoch, and `analyse scheduler`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cmcs_core.data.counterfactual import EDITS  # noqa: E402
from cmcs_core.report.regime import percent  # noqa: E402
from cmcs_core.report.scheduler_pairs import FIGURES, scheduler_markdown, scheduler_pairs, t_interval  # noqa: E402
from cmcs_core.report.stress_tables import FRACTIONS, collect_stress, stress_tables  # noqa: E402
from cmcs_core.runs.files import EPOCHS_FILE  # noqa: E402
from cmcs_core.runs.reader import scan_runs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
OUT = ROOT / "experiments" / "results"


def flip_bars(found, dataset: str, name: str = "stress") -> Path:
    """found: collect_stress in percent."""
    part = found[(found.dataset == dataset) & found.applies & (found.split == "test")]
    variants = sorted(set(part.variant))
    edits = [e for e in EDITS if e in set(part.edit)]
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(11, 4.2))
    for k, variant in enumerate(variants):
        v = part[part.variant == variant]
        x = np.arange(len(edits)) + (k - (len(variants) - 1) / 2) * width
        g = v.groupby("edit").agg(mean=("flip_rate", "mean"), lo=("flip_lo", "mean"), hi=("flip_hi", "mean"))
        g = g.reindex(edits)
        ax.bar(x, g["mean"], width, label=f"{variant.title} ({v.seed.nunique()} seeds)",
               yerr=[g["mean"] - g["lo"], g["hi"] - g["mean"]], capsize=2, error_kw={"lw": 0.8})
        for i, edit in enumerate(edits):
            seeds = v[v.edit == edit].flip_rate
            ax.plot([x[i]] * len(seeds), seeds, "k.", ms=3)
    ax.set_xticks(np.arange(len(edits)), edits)
    ax.set_ylim(0, 100)
    ax.set_ylabel("flip rate (%)")
    regime = ", ".join(str(r) for r in sorted(set(part.regime)))
    ax.set_title(f"{dataset} test: share of edited rows whose prediction changes ({regime})", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = IMG / f"{name}_{dataset}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def variant_pairs(found, name: str = "stress") -> Path | None:
    part = found[found.applies & (found.split == "test") & found.edit.str.startswith("clause_")]
    aug = sorted({v for v in part.variant if v.base})
    if not aug:
        return None
    datasets = sorted(part.dataset.unique())
    # one colour per variant in every panel; tab20 so that a dozen variants never share one
    colour = {v: plt.cm.tab20(i % 20) for i, v in enumerate(sorted(set(part.variant)))}
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 7.0), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        d = part[part.dataset == dataset]
        # one point per run: mean flip rate over the two clause edits, test accuracy
        runs = d.groupby(["variant", "seed"]).agg(flip=("flip_rate", "mean"), acc=("test_acc", "first")).reset_index()
        for variant in aug:
            plain = variant.base
            for seed in sorted(set(runs.seed)):
                a = runs[(runs.variant == variant) & (runs.seed == seed)]
                p = runs[(runs.variant == plain) & (runs.seed == seed)]
                if a.empty or p.empty:
                    continue
                ax.annotate("", xy=(a.acc.iloc[0], a.flip.iloc[0]), xytext=(p.acc.iloc[0], p.flip.iloc[0]),
                            arrowprops=dict(arrowstyle="->", color="grey", lw=0.8))
        for variant in sorted(set(runs.variant)):
            r = runs[runs.variant == variant]
            ax.scatter(r.acc, r.flip, label=variant.title, s=25, color=colour[variant])
        ax.set_ylim(0, 100)
        ax.set_xlabel("test accuracy (%)")
        ax.set_ylabel("flip rate, appended clauses (%)")
        ax.set_title(f"{dataset}: each arrow from a run to its variant (same seed)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    fig.tight_layout()
    path = IMG / f"{name}_variants.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scheduler_figure(pairs, name: str = "stress") -> Path | None:
    """pairs: scheduler_pairs (fractions). One panel per (variant with CMS, dataset); one row per figure."""
    if pairs.empty:
        return None
    panels = sorted({(v, d) for v, d in zip(pairs.variant, pairs.dataset)})
    datasets = sorted(set(pairs.dataset))
    variants = sorted(set(pairs.variant))
    fig, axes = plt.subplots(len(variants), len(datasets), figsize=(6.2 * len(datasets), 3.2 * len(variants)),
                             squeeze=False)
    reach = 1.0
    for (variant, dataset), ax in zip(panels, [axes[variants.index(v)][datasets.index(d)] for v, d in panels]):
        part = pairs[(pairs.variant == variant) & (pairs.dataset == dataset)]
        figures = [f for f in FIGURES if f in set(part.figure)]
        for y, figure in enumerate(figures):
            diffs = 100 * FIGURES[figure][1] * part[part.figure == figure]["diff"].reset_index(drop=True)
            low, high = t_interval(diffs)
            if not np.isnan(low):
                ax.plot([low, high], [y, y], color="tab:blue", lw=2.5, alpha=0.5)
            else:  # say so on the row: a missing bar must not read as a tight one
                ax.annotate(f"{len(diffs)} seed{'s' * (len(diffs) > 1)}: no interval", xy=(0.99, y),
                            xycoords=("axes fraction", "data"), ha="right", va="center", fontsize=7, color="grey")
            ax.plot(diffs, [y] * len(diffs), "k.", ms=6)
            ax.plot([diffs.mean()], [y], "|", color="tab:blue", ms=14, mew=2)
            reach = max(reach, *np.abs(diffs), *([abs(low), abs(high)] if not np.isnan(low) else []))
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(figures)), [FIGURES[f][0] for f in figures], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("points in CMS's favour (← without CMS better | CMS better →)", fontsize=8)
        seeds = part.seed.nunique()
        ax.set_title(f"{variant.title} minus its twin without CMS — {dataset} ({seeds} seed{'s' * (seeds > 1)})",
                     fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.flat:  # one symmetric scale for every panel: neither side nor panel looks bigger than it is
        ax.set_xlim(-1.05 * reach, 1.05 * reach)
    fig.tight_layout()
    path = IMG / f"{name}_scheduler.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def augment_cost(found) -> str:
    """Median seconds per training epoch, augmented vs plain run of the same dataset, method and
    seed (epochs.csv): what the extra rows cost. Shared CPU: read the ratio, not the seconds."""
    import pandas as pd

    runs = found.drop_duplicates("run")
    rows = []
    for r in runs[runs.variant.map(lambda v: "+aug" in v.key)].itertuples():
        plain = runs[(runs.variant == r.variant.base) & (runs.dataset == r.dataset) & (runs.seed == r.seed)]
        if plain.empty:
            continue
        sec = [float(pd.read_csv(Path(x) / EPOCHS_FILE).seconds.median()) for x in (r.path, plain.path.iloc[0])]
        rows.append(f"| {r.dataset} | {r.variant} | {r.seed} | {sec[1]:.1f} | {sec[0]:.1f} | {sec[0] / sec[1]:.2f} |\n")
    if not rows:
        return ""
    return ("\n### Cost of counterfactual augmentation (median seconds per training epoch)\n\n"
            "| dataset | method | seed | plain | augmented | ratio |\n|---|---|---|---|---|---|\n" + "".join(rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+")
    p.add_argument("--name", default="stress", help="prefix of the figure and table files")
    args = p.parse_args()
    runs = scan_runs(*args.folders)[0]
    found = collect_stress(runs)
    if found.empty:
        raise SystemExit("no stress.json under " + " ".join(args.folders))
    shown = percent(found, FRACTIONS)
    for dataset in sorted(shown.dataset.unique()):
        print(flip_bars(shown, dataset, args.name))
    print(variant_pairs(shown, args.name))
    pairs = scheduler_pairs(runs)
    print(scheduler_figure(pairs, args.name))
    OUT.mkdir(parents=True, exist_ok=True)
    tables = OUT / f"{args.name}_tables.md"
    scheduler = "" if pairs.empty else "\n## Does the scheduler add anything (`cmcs analyse scheduler`)\n\n" + \
        scheduler_markdown(pairs)
    tables.write_text(stress_tables(found) + augment_cost(found) + scheduler)
    print(tables)


if __name__ == "__main__":
    main()
