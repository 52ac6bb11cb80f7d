"""Table 1 and Table 2 of the paper as Markdown, mean ± std over seeds, from run folders; and
CMCS against every other method paired by seed, which seed noise hides less than two means do."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cmcs_core.config import METHOD_TITLES, TrainConfig
from cmcs_core.runs import dataset_name

DATASETS = ("twitter2015", "twitter2017")
# method_notes.md: published test numbers (Acc / F1) and what each method reads.
PUBLISHED = {
    "CMCS": ((79.7, 75.5), (74.3, 73.5), "BERT + CLIP, real images"),
    "CapTrBERT": ((78.0, 73.2), (72.3, 70.2), "BERT, image replaced by its caption"),
    "TomBERT": ((77.2, 71.8), (70.5, 68.0), "BERT + ResNet-152"),
    "BERT (text only)": ((77.1, 71.1), (70.2, 68.2), "text"),
    "majority class (neutral)": ((58.5, 24.6), (46.4, 21.1), "none"),
}
TABLE2_METHODS = ("cmcs", "wo_visual", "wo_cms", "wo_mfs", "wo_mfs_cms")


def collect_runs(paths: list[str | Path]) -> pd.DataFrame:
    """One row per finished run (a folder with metrics.json) found under the given paths."""
    rows = []
    for root in paths:
        root = Path(root)
        found = [root / "metrics.json"] if (root / "metrics.json").is_file() else sorted(root.rglob("metrics.json"))
        for path in found:
            m = json.loads(path.read_text())
            if "test" not in m:
                continue
            cfg_path = path.parent / "config.json"
            cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
            train = cfg.get("train", {})
            rows.append({
                "run": str(path.parent), "dataset": dataset_name(str(m["dataset"])), "method": m["method"],
                "seed": m["seed"], "text_model": m["text_model"], "visual_source": m["visual_source"],
                "finetune_layers": m["finetune_layers"], "test_acc": 100 * m["test"]["acc"],
                "test_f1": 100 * m["test"]["macro_f1"], "dev_acc": 100 * m["dev"]["acc"],
                "best_epoch": m["best_epoch"],
                "lr": train.get("lr", TrainConfig.lr), "head_lr": train.get("head_lr", TrainConfig.head_lr),
                "select_on": train.get("select_on", TrainConfig.select_on),
                "augment": cfg.get("data", {}).get("augment_clauses", 0.0),
                "augment_polarity": cfg.get("data", {}).get("augment_polarity", "opposite"),
                "caption_in_text": bool(cfg.get("encoder", {}).get("caption_in_text", False)),
                "pooling": cfg.get("model", {}).get("pooling", "mean"),
            })
    return pd.DataFrame(rows)


def regime_order(regimes) -> list[str]:
    """Regimes strongest first, so the headline leads every table and menu: the base-size encoder
    before MiniLM, end-to-end fine-tuning before the top layers before frozen, the default
    knobs before a variant of them (another learning rate, selection rule or training data)."""
    def key(reg: str) -> tuple:
        tuning = 0 if "all layers" in reg else 1 if "top" in reg else 2
        variant = any(v in reg for v in (", head lr", ", lr ", ", epoch chosen", ", counterfactual", ", caption in", " pooling"))
        return ("minilm" in reg.split(",")[0], tuning, variant, reg)

    return sorted(set(regimes), key=key)


def regime(row, with_variants: bool = True) -> str:
    ft = int(row["finetune_layers"])
    tuned = "frozen" if ft == 0 else ("fine-tuned (all layers)" if ft == -1 else f"fine-tuned (top {ft} layers)")
    # Learning rates away from the defaults make another regime: never average them together.
    lrs = "".join(f", {name.replace('_', ' ')} {row[name]:g}" for name in ("lr", "head_lr")
                  if name in row and row[name] != getattr(TrainConfig, name))
    # So does another rule for picking the epoch (--select-on).
    if row.get("select_on", TrainConfig.select_on) != TrainConfig.select_on:
        lrs += f", epoch chosen on {row['select_on'].replace('_', ' ')}"
    # The opt-in changes (augmentation, target pooling, the caption in the text input) make a regime of
    # their own here; the stress tables put them beside the plain methods instead (stress.variant_of).
    extra = "".join(f", {phrase}" for _, phrase in opt_in_changes(row)) if with_variants else ""
    return f"{row['text_model']}, {tuned}, visual = {row['visual_source']}{lrs}{extra}"


def opt_in_changes(row) -> list[tuple[str, str]]:
    """(tag, phrase) per opt-in change a run was trained with, in a fixed order: another pooling,
    the caption in the text input, counterfactual augmentation. One reading of a runs row for the
    regime names here and the stress variants (`text_only +pool-target +aug-random`)."""
    changes = []
    pooling = row.get("pooling", "mean")
    if isinstance(pooling, str) and pooling != "mean":
        changes.append((f"+pool-{pooling}", f"{pooling} pooling"))
    if row.get("caption_in_text", False) == True:  # noqa: E712 - numpy bools and NaN (older rows) too
        changes.append(("+caption-in-text", "caption in the text input"))
    aug = row.get("augment", 0)
    if aug and not pd.isna(aug):
        polarity = row.get("augment_polarity", "opposite")
        how = "" if polarity == "opposite" else f" ({polarity} sentiment)"
        changes.append(("+aug" if polarity == "opposite" else f"+aug-{polarity}",
                        f"counterfactual augmentation {aug:g}{how}"))
    return changes


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per (regime, dataset, method)."""
    runs = runs.assign(regime=runs.apply(regime, axis=1))
    g = runs.groupby(["regime", "dataset", "method"])
    return g.agg(
        acc_mean=("test_acc", "mean"), acc_std=("test_acc", "std"),
        f1_mean=("test_f1", "mean"), f1_std=("test_f1", "std"), seeds=("seed", "nunique"),
    ).reset_index()


def headline(runs: pd.DataFrame) -> tuple[str, pd.DataFrame] | None:
    """The strongest benchmark regime found (regime_order's first) as a small table: text-only
    and CMCS test accuracy per dataset (mean ± std, seeds), beside the published CMCS and
    CapTrBERT. What a reader should see first; None without benchmark runs."""
    bench = runs[runs.dataset.isin(DATASETS)] if not runs.empty else runs
    if bench.empty:
        return None
    summary = summarise(bench)
    reg = regime_order(summary.regime)[0]
    rows = []
    for method in ("text_only", "cmcs"):
        row = {"method": METHOD_TITLES[method]}
        for d in DATASETS:
            hit = _lookup(summary, reg, d, method)
            std = 0.0 if hit is None or np.isnan(hit.acc_std) else hit.acc_std
            row[d] = "–" if hit is None else f"{hit.acc_mean:.1f} ± {std:.1f} ({int(hit.seeds)} seed{'' if hit.seeds == 1 else 's'})"
        rows.append(row)
    for name in ("CMCS", "CapTrBERT"):
        rows.append({"method": f"{name} (published)", **{d: f"{PUBLISHED[name][i][0]:.1f}" for i, d in enumerate(DATASETS)}})
    return reg, pd.DataFrame(rows)


def _cell(row: pd.Series | None) -> str:
    if row is None:
        return "– | –"  # two columns: Acc | F1
    std = lambda s: 0.0 if np.isnan(s) else s  # noqa: E731 - one seed has no std
    return f"{row.acc_mean:.1f} ± {std(row.acc_std):.1f} | {row.f1_mean:.1f} ± {std(row.f1_std):.1f}"


def _lookup(summary: pd.DataFrame, reg: str, dataset: str, method: str):
    hit = summary[(summary.regime == reg) & (summary.dataset == dataset) & (summary.method == method)]
    return None if hit.empty else hit.iloc[0]


def _seeds(summary: pd.DataFrame, reg: str, method: str) -> str:
    """Seeds per dataset, always both: "3/3", "3/–" (Twitter2015/Twitter2017), as the published rows."""
    n = summary[(summary.regime == reg) & (summary.method == method)].set_index("dataset").seeds
    return "/".join(str(int(n[d])) if d in n.index else "–" for d in DATASETS)


def markdown_tables(runs: pd.DataFrame) -> str:
    """The published numbers once, then Table 1 (ours) and Table 2 (ablations) per regime."""
    if runs.empty:
        return "No finished runs found.\n"
    summary = summarise(runs)
    seeds_head = "seeds (" + "/".join(d.replace("twitter", "") for d in DATASETS) + ")"
    head = (f"| method | Twitter2015 Acc | F1 | Twitter2017 Acc | F1 | {seeds_head} | inputs |\n"
            "|---|---|---|---|---|---|---|\n")
    published = ["### Published (paper, Table 1)\n\n", head]
    for name, (a, b, inputs) in PUBLISHED.items():
        published.append(f"| {name} | {a[0]} | {a[1]} | {b[0]} | {b[1]} | 5/5 | {inputs} |\n")
    out = ["".join(published)]
    for reg in regime_order(summary.regime):
        lines = [f"### Table 1 — {reg}\n\n", head]
        for method in ("text_only", "cmcs"):
            cells = [_cell(_lookup(summary, reg, d, method)) for d in DATASETS]
            lines.append(f"| **{METHOD_TITLES[method]}** | {cells[0]} | {cells[1]} | {_seeds(summary, reg, method)} | {reg} |\n")
        lines.append(f"\n### Table 2 — ablations, {reg}\n\n")
        lines.append(f"| method | Twitter2015 Acc | F1 | Twitter2017 Acc | F1 | {seeds_head} |\n|---|---|---|---|---|---|\n")
        for method in TABLE2_METHODS:
            cells = [_cell(_lookup(summary, reg, d, method)) for d in DATASETS]
            lines.append(f"| {METHOD_TITLES[method]} | {cells[0]} | {cells[1]} | {_seeds(summary, reg, method)} |\n")
        out.append("".join(lines))
    return "\n".join(out) + "\nCells are test Acc | macro-F1 (%), mean ± std over seeds; epoch chosen on dev accuracy.\n"


def paired_differences(runs: pd.DataFrame, reference: str = "cmcs") -> str:
    """Per regime and dataset: test accuracy of `reference` minus each other method, seed by seed.

    Runs with the same seed share initialisation and batch order up to the method's switches,
    so the per-seed difference and how often the reference is ahead say more than two means."""
    if runs.empty:
        return "No finished runs found.\n"
    runs = runs.assign(regime=runs.apply(regime, axis=1))
    out = []
    for reg in regime_order(runs.regime):
        acc = runs[runs.regime == reg].pivot_table(index=["dataset", "seed"], columns="method", values="test_acc")
        if reference not in acc:
            continue
        lines = [f"### {METHOD_TITLES[reference]} minus each method, paired by seed — {reg}\n\n",
                 "| minus | dataset | per seed (accuracy points) | mean | ahead |\n|---|---|---|---|---|\n"]
        for method in [m for m in METHOD_TITLES if m != reference and m in acc]:
            for dataset in sorted(set(acc.index.get_level_values(0))):
                both = acc.loc[dataset, [reference, method]].dropna()
                if both.empty:
                    continue
                diff = both[reference] - both[method]
                seeds = " ".join(f"{d:+.1f}" for d in diff)
                lines.append(f"| {METHOD_TITLES[method]} | {dataset} | {seeds} | {diff.mean():+.2f} | "
                             f"{int((diff > 0).sum())}/{len(diff)} |\n")
        if len(lines) > 2:
            out.append("".join(lines))
    variants = variant_differences(runs)
    out += [variants] if variants else []
    if not out:
        return f"No seed has both {METHOD_TITLES[reference]} and another method.\n"
    return "\n".join(out) + "\nSeeds in ascending order; ahead counts seeds where the difference is above zero.\n"


VARIANT_SUFFIXES = (", target pooling", ", caption in the text input")


def variant_differences(runs: pd.DataFrame) -> str:
    """Each opt-in variant regime (target pooling, the caption in the text input) minus the same
    method in the regime without it, paired by dataset and seed: what the change itself bought."""
    runs = runs.assign(regime=runs.apply(regime, axis=1)) if "regime" not in runs else runs
    acc = runs.pivot_table(index=["dataset", "method", "seed"], columns="regime", values="test_acc")
    lines = []
    for reg in regime_order(acc.columns):
        for suffix in VARIANT_SUFFIXES:
            base = reg.replace(suffix, "", 1)
            if suffix not in reg or base not in acc:
                continue
            for (dataset, method), part in acc[[reg, base]].dropna().groupby(level=[0, 1]):
                diff = part[reg] - part[base]
                seeds = " ".join(f"{d:+.1f}" for d in diff)
                lines.append(f"| {suffix.lstrip(', ')} | {base} | {METHOD_TITLES.get(method, method)} | {dataset} | "
                             f"{seeds} | {diff.mean():+.2f} | {int((diff > 0).sum())}/{len(diff)} |\n")
    if not lines:
        return ""
    return ("### Each opt-in variant minus the same method without it, paired by seed\n\n"
            "| variant | regime without it | method | dataset | per seed (accuracy points) | mean | ahead |\n"
            "|---|---|---|---|---|---|---|\n" + "".join(lines))
