"""Does the scheduler add anything? (`cmcs analyse scheduler`)

Each method with CMS minus its twin without it (METHODS: the same switches but use_cms; the same opt-in
changes, so `cmcs +target_aware` meets `wo_cms +target_aware`), paired by regime, dataset and seed. Per
figure (test accuracy, each stress edit's flip rate, target awareness): the per-seed differences, their mean
and a 95% Student-t interval over seeds. The interval is what "adds anything" needs: two means whose
difference lies inside the seed-to-seed spread say nothing. It leaves out the sampling of the test rows,
which a pair shares; each run's row-bootstrap interval is in its stress.json and metrics.json.
"""
from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from cmcs_core.config import METHOD_TITLES, METHODS
from cmcs_core.data.counterfactual import ALL_EDITS
from cmcs_core.report.regime import Regime, Variant
from cmcs_core.runs.reader import Run

# figure -> (title, +1 if higher is better else -1)
FIGURES: dict[str, tuple[str, int]] = {
    "test_acc": ("test acc", +1),
    **{edit: (f"{edit} flips", -1) for edit in ALL_EDITS},
    "all_targets_right": ("all targets right", +1),
    "single_label": ("one label for all", -1),
}


def cms_twins() -> dict[str, str]:
    """Each method with CMS -> the method with the same switches without it (cmcs -> wo_cms)."""
    return {name: other for name, switches in METHODS.items() if switches.get("use_cms")
            for other, s in METHODS.items() if s == {**switches, "use_cms": False}}


def run_figures(run: Run, split: str = "test") -> dict[str, float]:
    """The figures of FIGURES one finished run has (fractions): accuracy, flip rates of the edits that
    applied on the split, target awareness."""
    out = {"test_acc": run.metrics["test"]["acc"]}
    for edit, res in run.stress_report()["splits"].get(split, {}).get("edits", {}).items():
        if res.get("applies") and res.get("flip_rate") is not None:
            out[edit] = res["flip_rate"]
    ta = run.target_awareness(split) or {}
    out.update({k: ta[k] for k in ("all_targets_right", "single_label") if ta.get(k) is not None})
    return out


# Two seeds give one spread estimate from one difference of differences: two equal differences (shares
# of the same few dozen tweets often are) make a zero-width interval and a confident verdict from nothing.
MIN_SEEDS = 3


def t_interval(diffs: pd.Series, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean difference over seeds (n - 1 degrees of freedom); NaN with fewer than
    MIN_SEEDS seeds."""
    n = len(diffs)
    if n < MIN_SEEDS:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n)
    return diffs.mean() - half, diffs.mean() + half


def scheduler_pairs(runs: list[Run]) -> pd.DataFrame:
    """One row per (regime, dataset, variant with CMS, seed, figure) that both twins have: the value with
    CMS, without it, and their difference (fractions)."""
    twins = cms_twins()
    table: dict[tuple, dict[str, float]] = {}
    for run in runs:
        if run.finished and "test" in (run.metrics or {}):
            table[(Regime.of(run.cfg).base, run.dataset, Variant.of(run.cfg), run.cfg.train.seed)] = run_figures(run)
    rows = []
    for (regime, dataset, variant, seed), with_cms in table.items():
        if variant.method not in twins:
            continue
        without = table.get((regime, dataset, Variant(twins[variant.method], variant.changes), seed))
        for figure in FIGURES:
            if without is not None and figure in with_cms and figure in without:
                rows.append({"regime": regime, "dataset": dataset, "variant": variant, "seed": seed, "figure": figure,
                             "with_cms": with_cms[figure], "without_cms": without[figure],
                             "diff": with_cms[figure] - without[figure]})
    frame = pd.DataFrame(rows)
    return frame.sort_values(["regime", "dataset", "variant", "seed"]).reset_index(drop=True) if rows else frame


def verdict(low: float, high: float, better: int) -> str:
    """What the interval says about CMS: better, worse, or no measurable difference."""
    if math.isnan(low):
        return f"fewer than {MIN_SEEDS} seeds: no interval"
    if low > 0 or high < 0:
        return "**CMS better**" if (low > 0) == (better > 0) else "**CMS worse**"
    return "no measurable difference"


def scheduler_markdown(frame: pd.DataFrame) -> str:
    """Per regime, dataset and pair: each figure with and without CMS (mean over seeds), the per-seed
    differences, their mean and 95% t-interval, and the verdict; percent."""
    if frame.empty:
        return ("No pair of runs that differ only in CMS (e.g. `--methods cmcs wo_cms` with the same seeds, "
                "variant and settings).\n")
    out = []
    for (regime, dataset, variant), part in frame.groupby(["regime", "dataset", "variant"], sort=True):
        twin = Variant(cms_twins()[variant.method], variant.changes)
        lines = [f"### {variant.title} minus {twin.title} — {dataset}, {regime}\n",
                 f"| figure | {METHOD_TITLES.get(variant.method, variant.method)} | "
                 f"{METHOD_TITLES.get(twin.method, twin.method)} | per seed | mean [95% CI] | seeds | says |",
                 "|---|---|---|---|---|---|---|"]
        for figure, (title, better) in FIGURES.items():
            rows = part[part.figure == figure]
            if rows.empty:
                continue
            diffs = 100 * rows["diff"]
            low, high = t_interval(diffs)
            ci = "" if math.isnan(low) else f" [{low:+.1f}, {high:+.1f}]"
            lines.append(f"| {title} | {100 * rows.with_cms.mean():.1f} | {100 * rows.without_cms.mean():.1f} | "
                         f"{' '.join(f'{d:+.1f}' for d in diffs)} | {diffs.mean():+.1f}{ci} | {len(rows)} | "
                         f"{verdict(low, high, better)} |")
        out.append("\n".join(lines) + "\n")
    return ("\n".join(out) + "\nPercent; differences in points, with CMS minus without, paired by seed (seeds in "
            "ascending order). The interval is a 95% Student-t interval over seeds: it holds the seed-to-seed "
            "spread and leaves out the test rows' sampling, which a pair shares. Flips and one label for all: "
            "lower is better. With some ten figures per pair, about one interval in twenty misses zero by chance "
            "alone: a lone verdict among them is weak evidence.\n")
