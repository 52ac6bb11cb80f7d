"""Figures and tables of docs/robustness.md from stress-tested run folders.

    python experiments/plot_stress.py results/stress_frozen
    python experiments/plot_stress.py results/stress_top2 --name stress_top2

docs/img/<name>_<dataset>.png: flip rate per edit and method (bars: mean over seeds, whiskers:
per-seed 95% bootstrap intervals averaged, dots: seeds; axis 0-100%). docs/img/<name>_variants.png:
each variant (augmentation, target pooling, caption in the text input) against the same method
without it, seed by seed (flip rate under the appended clauses vs test accuracy).
docs/img/<name>_scheduler.png: each method with CMS minus its twin without it (`cmcs analyse scheduler`),
per figure, turned so that right is in CMS's favour: dots are seeds, the bar the mean's 95% t-interval.
docs/img/<name>_ideas.png: the same for each opt-in variant minus its base (`cmcs analyse ideas`).
docs/img/<name>_aims.png: each variant's seeds against the aims' fixed bars (`cmcs analyse aims`): clause flips,
every target right, one label for all, on 0-100% with the side that meets the aim shaded.
experiments/results/<name>_tables.md: `table --stress` of the same folders, the augmentation's cost
per epoch, `analyse scheduler`, `analyse ideas` and `analyse aims`.
"""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cmcs_core.data.counterfactual import EDITS  # noqa: E402
from cmcs_core.report.aims import BARRED, aim_pairs, aims_markdown, bar, judge  # noqa: E402
from cmcs_core.report.regime import percent  # noqa: E402
from cmcs_core.report.seed_pairs import (FIGURES, cms_subject, idea_pairs, idea_subject,  # noqa: E402
                                         ideas_markdown, pair_summary, scheduler_markdown, scheduler_pairs)
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


def pairs_figure(summary, path: Path, side: str) -> Path | None:
    """summary: seed_pairs.pair_summary (points). One panel per (pair, dataset); one row per figure, turned so
    that right is in favour of the pair's first run (`side` names it on the axis)."""
    if summary.empty:
        return None
    panels = sorted({(v, t, d) for v, t, d in zip(summary.variant, summary.twin, summary.dataset)})
    datasets = sorted(set(summary.dataset))
    pairs = sorted({(v, t) for v, t, _ in panels})
    fig, axes = plt.subplots(len(pairs), len(datasets), figsize=(6.2 * len(datasets), 3.2 * len(pairs)), squeeze=False)
    reach = 1.0
    for variant, twin, dataset in panels:
        ax = axes[pairs.index((variant, twin))][datasets.index(dataset)]
        part = summary[(summary.variant == variant) & (summary.twin == twin) & (summary.dataset == dataset)]
        for y, r in enumerate(part.itertuples()):
            diffs = r.favour
            if not np.isnan(r.favour_low):
                ax.plot([r.favour_low, r.favour_high], [y, y], color="tab:blue", lw=2.5, alpha=0.5)
                reach = max(reach, abs(r.favour_low), abs(r.favour_high))
            else:  # say so on the row: a missing bar must not read as a tight one
                ax.annotate(f"{len(diffs)} seed{'s' * (len(diffs) > 1)}: no interval", xy=(0.99, y),
                            xycoords=("axes fraction", "data"), ha="right", va="center", fontsize=7, color="grey")
            ax.plot(diffs, [y] * len(diffs), "k.", ms=6)
            ax.plot([r.favour_mean], [y], "|", color="tab:blue", ms=14, mew=2)
            reach = max(reach, *map(abs, diffs))
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(part)), list(part.title), fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"points in favour of {side} (← worse with it | better with it →)", fontsize=8)
        seeds = max(len(d) for d in part.diffs)
        pair = textwrap.fill(f"{variant.title} minus {twin.title}", 70)  # long opt-in names: no overlap
        ax.set_title(f"{pair}\n{dataset}, {seeds} seed{'s' * (seeds > 1)}, {part.regime.iloc[0].precision}",
                     fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.flat:  # one symmetric scale for every panel: neither side nor panel looks bigger than it is
        ax.set_xlim(-1.05 * reach, 1.05 * reach)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def aims_figure(pairs, path: Path) -> Path | None:
    """pairs: aims.aim_pairs (fractions). One row of panels per dataset, one panel per barred figure: each variant's
    seeds as dots and their mean as a tick on 0-100%, the bar as a line and the side that meets it shaded. The
    relative aims (accuracy and swap_target against text-only) are in `cmcs analyse aims`, not here."""
    if pairs.empty:
        return None
    part = pairs[pairs.figure.isin(BARRED)]
    datasets = sorted(set(part.dataset))
    variants = sorted(set(part.variant))
    # each variant's precision and seeds per dataset on its label: a figure mixing fp32 and bf16 runs says which
    labels = [f"{v.title}\n{'/'.join(sorted(set(part[part.variant == v].precision)))}, seeds "
              + " / ".join(str(part[(part.variant == v) & (part.dataset == d)].seed.nunique()) for d in datasets)
              for v in variants]
    fig, axes = plt.subplots(len(datasets), len(BARRED), figsize=(3.6 * len(BARRED), 0.5 * len(variants) * len(datasets)
                                                                + 1.4 * len(datasets)), squeeze=False, sharey=True)
    for row, dataset in enumerate(datasets):
        for col, figure in enumerate(BARRED):
            ax = axes[row][col]
            d = part[(part.dataset == dataset) & (part.figure == figure)]
            for y, variant in enumerate(variants):
                values = 100 * d[d.variant == variant].value
                if values.empty:
                    continue
                ax.plot(values, [y] * len(values), "k.", ms=5)
                ax.plot([values.mean()], [y], "|", color="tab:blue", ms=12, mew=2)
            limit = bar(figure, dataset)
            if limit is not None:
                ax.axvline(limit[0], color="tab:green", lw=1)
                ax.axvspan(*((0, limit[0]) if limit[1] < 0 else (limit[0], 100)), color="tab:green", alpha=0.12)
            ax.set_xlim(0, 100)
            ax.set_yticks(range(len(variants)), labels, fontsize=7)
            ax.set_title(f"{dataset}: {FIGURES[figure][0]}", fontsize=8)
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(axis="x", labelsize=7)
            if row == len(datasets) - 1:
                ax.set_xlabel("% (green: meets the aim)", fontsize=7)
    axes[0][0].invert_yaxis()  # shared: the method order top down
    regimes = ", ".join(sorted({str(r) for r in part.regime}))
    fig.suptitle(f"The aims, test split ({regimes}; seeds per dataset: {' / '.join(datasets)}): dots are seeds, "
                 "the tick their mean", fontsize=9)
    fig.tight_layout()
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
    pairs, ideas = scheduler_pairs(runs), idea_pairs(runs)
    print(pairs_figure(pair_summary(pairs, cms_subject), IMG / f"{args.name}_scheduler.png", "CMS"))
    print(pairs_figure(pair_summary(ideas, idea_subject), IMG / f"{args.name}_ideas.png", "the change"))
    against_text_only = aim_pairs(runs)
    print(aims_figure(against_text_only, IMG / f"{args.name}_aims.png"))
    OUT.mkdir(parents=True, exist_ok=True)
    tables = OUT / f"{args.name}_tables.md"
    scheduler = "" if pairs.empty else "\n## Does the scheduler add anything (`cmcs analyse scheduler`)\n\n" + \
        scheduler_markdown(pairs)
    changes = "" if ideas.empty else "\n## Each opt-in change against its base (`cmcs analyse ideas`)\n\n" + \
        ideas_markdown(ideas)
    judged = judge(against_text_only)
    aim_tables = "" if judged.empty else "\n## The aims, met or not (`cmcs analyse aims`)\n\n" + aims_markdown(judged)
    tables.write_text(stress_tables(found) + augment_cost(found) + scheduler + changes + aim_tables)
    print(tables)


if __name__ == "__main__":
    main()
