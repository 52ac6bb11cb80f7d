"""Table 1 and Table 2 of the paper as Markdown, mean ± std over seeds, from run folders; and
CMCS against every other method paired by seed, which seed noise hides less than two means do."""
from __future__ import annotations

import pandas as pd

from cmcs_core.config import METHOD_ORDER, METHOD_TITLES
from cmcs_core.report.regime import Regime, Variant, mean_std, method_order, percent
from cmcs_core.runs.reader import Run

DATASETS = ("twitter2015", "twitter2017")
# method_notes.md: published test numbers (Acc / F1) and what each method reads.
PUBLISHED = {
    "CMCS": ((79.7, 75.5), (74.3, 73.5), "BERT + CLIP, real images"),
    "CapTrBERT": ((78.0, 73.2), (72.3, 70.2), "BERT, image replaced by its caption"),
    "TomBERT": ((77.2, 71.8), (70.5, 68.0), "BERT + ResNet-152"),
    "BERT (text only)": ((77.1, 71.1), (70.2, 68.2), "text"),
    "majority class (neutral)": ((58.5, 24.6), (46.4, 21.1), "none"),
}
TABLE1_METHODS = ("text_only", "cmcs")
TABLE2_METHODS = tuple(m for m in METHOD_ORDER if m != "text_only")
ACCURACIES = ("test_acc", "test_f1", "dev_acc")


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per finished run (Run.record: accuracies as fractions) with its Regime and Variant."""
    rows = [{**r.record(), "regime": Regime.of(r.cfg), "variant": Variant.of(r.cfg)}
            for r in runs if r.finished and "test" in r.metrics]
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds (in %) per (regime, dataset, method)."""
    g = percent(runs, ACCURACIES).groupby(["regime", "dataset", "method"])
    return g.agg(
        acc_mean=("test_acc", "mean"), acc_std=("test_acc", "std"),
        f1_mean=("test_f1", "mean"), f1_std=("test_f1", "std"), seeds=("seed", "nunique"),
    ).reset_index()


def _lookup(summary: pd.DataFrame, reg: Regime, dataset: str, method: str):
    hit = summary[(summary.regime == reg) & (summary.dataset == dataset) & (summary.method == method)]
    return None if hit.empty else hit.iloc[0]


def headline_regimes(runs: pd.DataFrame) -> list[Regime]:
    """The benchmark regimes with text-only or CMCS runs, strongest first: what Home offers."""
    bench = runs[runs.dataset.isin(DATASETS) & runs.method.isin(TABLE1_METHODS)] if not runs.empty else runs
    return sorted(set(bench.regime)) if not bench.empty else []


def headline(runs: pd.DataFrame, regime: Regime | None = None) -> tuple[Regime, pd.DataFrame] | None:
    """A benchmark regime (default: the strongest found, the first in Regime order) as a small table:
    text-only and CMCS test accuracy per dataset (mean ± std, seeds), beside the published CMCS and
    CapTrBERT. What a reader should see first; None without benchmark runs."""
    bench = runs[runs.dataset.isin(DATASETS)] if not runs.empty else runs
    if bench.empty:
        return None
    summary = summarise(bench)
    reg = regime if regime is not None else min(summary.regime)
    rows = []
    for method in TABLE1_METHODS:
        row = {"method": METHOD_TITLES[method]}
        for d in DATASETS:
            hit = _lookup(summary, reg, d, method)
            seeds = "" if hit is None else f" ({int(hit.seeds)} seed{'' if hit.seeds == 1 else 's'})"
            row[d] = "–" if hit is None else mean_std(hit.acc_mean, hit.acc_std) + seeds
        rows.append(row)
    for name in ("CMCS", "CapTrBERT"):
        rows.append({"method": f"{name} (published)", **{d: f"{PUBLISHED[name][i][0]:.1f}" for i, d in enumerate(DATASETS)}})
    return reg, pd.DataFrame(rows)


def _cell(row: pd.Series | None) -> str:
    if row is None:
        return "– | –"  # two columns: Acc | F1
    return f"{mean_std(row.acc_mean, row.acc_std)} | {mean_std(row.f1_mean, row.f1_std)}"


def _seeds(summary: pd.DataFrame, reg: Regime, method: str) -> str:
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
    for reg in sorted(set(summary.regime)):
        lines = [f"### Table 1 — {reg}\n\n", head]
        for method in TABLE1_METHODS:
            cells = [_cell(_lookup(summary, reg, d, method)) for d in DATASETS]
            lines.append(f"| **{METHOD_TITLES[method]}** | {cells[0]} | {cells[1]} | {_seeds(summary, reg, method)} | {reg} |\n")
        if summary[(summary.regime == reg) & summary.method.isin(TABLE2_METHODS)].empty:
            # A table of dashes would look like content: one line says what is missing.
            lines.append("\nNo CMCS or ablation run in this regime: no Table 2.\n")
        else:
            lines.append(f"\n### Table 2 — ablations, {reg}\n\n")
            lines.append(f"| method | Twitter2015 Acc | F1 | Twitter2017 Acc | F1 | {seeds_head} |\n|---|---|---|---|---|---|\n")
            for method in TABLE2_METHODS:
                cells = [_cell(_lookup(summary, reg, d, method)) for d in DATASETS]
                lines.append(f"| {METHOD_TITLES[method]} | {cells[0]} | {cells[1]} | {_seeds(summary, reg, method)} |\n")
        out.append("".join(lines))
    return "\n".join(out) + "\nCells are test Acc | macro-F1 (%), mean ± std over seeds; epoch chosen on dev accuracy.\n"


def _per_seed(diff: pd.Series) -> str:
    return " ".join(f"{d:+.1f}" for d in diff)


def paired_differences(runs: pd.DataFrame, reference: str = "cmcs") -> str:
    """Per regime and dataset: test accuracy of `reference` minus each other method, seed by seed.

    Runs with the same seed share initialisation and batch order up to the method's switches,
    so the per-seed difference and how often the reference is ahead say more than two means."""
    if runs.empty:
        return "No finished runs found.\n"
    runs = percent(runs, ACCURACIES)
    out = []
    for reg in sorted(set(runs.regime)):
        acc = runs[runs.regime == reg].pivot_table(index=["dataset", "seed"], columns="method", values="test_acc")
        if reference not in acc:
            continue
        lines = [f"### {METHOD_TITLES[reference]} minus each method, paired by seed — {reg}\n\n",
                 "| minus | dataset | per seed (accuracy points) | mean | ahead |\n|---|---|---|---|---|\n"]
        for method in [m for m in method_order(acc.columns) if m != reference]:
            for dataset in sorted(set(acc.index.get_level_values(0))):
                both = acc.loc[dataset, [reference, method]].dropna()
                if both.empty:
                    continue
                diff = both[reference] - both[method]
                lines.append(f"| {METHOD_TITLES.get(method, method)} | {dataset} | {_per_seed(diff)} | {diff.mean():+.2f} | "
                             f"{int((diff > 0).sum())}/{len(diff)} |\n")
        if len(lines) > 2:
            out.append("".join(lines))
    variants = variant_differences(runs)
    out += [variants] if variants else []
    if not out:
        return f"No seed has both {METHOD_TITLES[reference]} and another method.\n"
    return "\n".join(out) + "\nSeeds in ascending order; ahead counts seeds where the difference is above zero.\n"


def variant_differences(runs: pd.DataFrame) -> str:
    """Each regime with an opt-in change (OptIn.paired: target pooling, the caption in the text
    input) minus the same method in the regime without it, paired by dataset and seed: what the
    change itself bought. `runs` in percent (paired_differences)."""
    acc = runs.pivot_table(index=["dataset", "method", "seed"], columns="regime", values="test_acc")
    lines = []
    for reg in sorted(acc.columns):
        for change in [c for c in reg.changes if c.paired]:
            base = reg.without(change)
            if base not in acc:
                continue
            for (dataset, method), part in acc[[reg, base]].dropna().groupby(level=[0, 1]):
                diff = part[reg] - part[base]
                lines.append(f"| {change.phrase} | {base} | {METHOD_TITLES.get(method, method)} | {dataset} | "
                             f"{_per_seed(diff)} | {diff.mean():+.2f} | {int((diff > 0).sum())}/{len(diff)} |\n")
    if not lines:
        return ""
    return ("### Each opt-in variant minus the same method without it, paired by seed\n\n"
            "| variant | regime without it | method | dataset | per seed (accuracy points) | mean | ahead |\n"
            "|---|---|---|---|---|---|---|\n" + "".join(lines))


def results_table(found: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std test Acc / macro-F1 (%) per regime, dataset and method, for any dataset.

    markdown_tables lays out the two benchmarks beside the published numbers; this is the same
    summary for runs on other datasets (the playground), in the one method order."""
    columns = ["regime", "dataset", "method", "Acc", "F1", "seeds"]
    if found.empty:
        return pd.DataFrame(columns=columns)
    s = summarise(found)
    s["Acc"] = [mean_std(m, sd) for m, sd in zip(s.acc_mean, s.acc_std)]
    s["F1"] = [mean_std(m, sd) for m, sd in zip(s.f1_mean, s.f1_std)]
    order = {m: i for i, m in enumerate(method_order(s.method))}
    s = s.assign(_o=s.method.map(order)).sort_values(["regime", "dataset", "_o"])
    return s.assign(regime=s.regime.map(str), method=s.method.map(lambda m: METHOD_TITLES.get(m, m)))[columns] \
        .reset_index(drop=True)
