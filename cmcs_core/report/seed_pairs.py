"""Runs that differ in one thing, paired by seed, with intervals (`cmcs analyse scheduler`, `cmcs analyse ideas`).

- scheduler: each method with CMS minus its twin without it (METHODS: the same switches but use_cms; the same
  opt-in changes, so `cmcs +target_aware` meets `wo_cms +target_aware`);
- ideas: each variant with an opt-in change minus its base, the same method without its last change
  (`text_only +pool-mention` meets `text_only`, `cmcs +target_aware` meets `cmcs`): how the lab measures an idea
  against the grid it came from.

Pairs share regime, dataset and seed. Per figure (test accuracy, each stress edit's flip rate, target awareness):
the per-seed differences, their mean and a 95% Student-t interval over seeds. The interval is what "adds
anything" needs: two means whose difference lies inside the seed-to-seed spread say nothing. It leaves out the
sampling of the test rows, which a pair shares; each run's row-bootstrap interval is in its stress.json and
metrics.json.

Precision does not split a pair: bf16 and fp32 runs of one config are the same experiment to 0.2 points
(`cmcs analyse precision`, docs/results.md "Does bf16 change the science"), and a machine without native bf16
can only add fp32 runs to a bf16 grid. A same-precision twin is preferred; a pair that crosses precisions says so
in its heading.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pandas as pd
from scipy import stats

from cmcs_core.config import METHODS
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


def cms_twin(variant: Variant) -> Variant | None:
    """The same variant without CMS (None for a method without it)."""
    other = cms_twins().get(variant.method)
    return Variant(other, variant.changes) if other else None


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


def seed_pairs(runs: list[Run], twin_of: Callable[[Variant], Variant | None]) -> pd.DataFrame:
    """One row per (regime, dataset, variant, seed, figure) that the variant and its twin (twin_of) both have:
    the two values and their difference (fractions), and the precisions they ran in. The regime is the shared
    one, precision aside."""
    table: dict[tuple, dict[str, dict[str, float]]] = {}  # (regime, dataset, variant, seed) -> precision -> figures
    for run in runs:
        if run.finished and "test" in (run.metrics or {}):
            regime = dataclasses.replace(Regime.of(run.cfg).base, precision="")
            key = (regime, run.dataset, Variant.of(run.cfg), run.cfg.train.seed)
            table.setdefault(key, {})[run.cfg.train.precision] = run_figures(run)
    rows = []
    for (regime, dataset, variant, seed), mine in table.items():
        twin = twin_of(variant)
        theirs = table.get((regime, dataset, twin, seed)) if twin is not None else None
        if not theirs:
            continue
        # the same precision where both have it (bf16 first: the grids' own), else the variant's against the twin's
        precision, other = min(((p, q) for p in mine for q in theirs), key=lambda pq: (pq[0] != pq[1], pq[0]))
        for figure in FIGURES:
            if figure in mine[precision] and figure in theirs[other]:
                rows.append({"regime": regime, "dataset": dataset, "variant": variant, "twin": twin, "seed": seed,
                             "precision": precision, "twin_precision": other, "figure": figure,
                             "value": mine[precision][figure], "twin_value": theirs[other][figure],
                             "diff": mine[precision][figure] - theirs[other][figure]})
    frame = pd.DataFrame(rows)
    return frame.sort_values(["regime", "dataset", "variant", "seed"]).reset_index(drop=True) if rows else frame


def scheduler_pairs(runs: list[Run]) -> pd.DataFrame:
    """Each method with CMS against its twin without it."""
    return seed_pairs(runs, cms_twin)


def idea_pairs(runs: list[Run]) -> pd.DataFrame:
    """Each variant with an opt-in change against the same method without its last change."""
    return seed_pairs(runs, lambda variant: variant.base)


def verdict(low: float, high: float, better: int, subject: str = "CMS") -> str:
    """What the interval says about the subject: better, worse, or no measurable difference."""
    if math.isnan(low):
        return f"fewer than {MIN_SEEDS} seeds: no interval"
    if low > 0 or high < 0:
        return f"**{subject} better**" if (low > 0) == (better > 0) else f"**{subject} worse**"
    return "no measurable difference"


def _precision_phrase(part: pd.DataFrame) -> str:
    """"bf16", or what each side ran in when a pair crosses precisions."""
    kinds = sorted({(p, q) for p, q in zip(part.precision, part.twin_precision)})
    if all(p == q for p, q in kinds):
        return " or ".join(sorted({p for p, _ in kinds}))
    return "; ".join(f"{p} against its twin's {q}" if p != q else p for p, q in kinds)


def pair_summary(frame: pd.DataFrame, subject: Callable[[Variant], str]) -> pd.DataFrame:
    """One row per (regime, dataset, variant, twin, figure) of a seed_pairs frame, in points: both means over
    seeds, the per-seed differences (seeds ascending), their mean, 95% t-interval and the verdict about
    subject(variant); and the same turned so that positive is in the variant's favour (`favour*`: fewer flips,
    more accuracy), which the figures draw. The regime names the precisions the pairs ran in."""
    rows = []
    if frame.empty:
        return pd.DataFrame(rows)
    for (regime, dataset, variant, twin), part in frame.groupby(["regime", "dataset", "variant", "twin"], sort=True):
        regime = dataclasses.replace(regime, precision=_precision_phrase(part))
        for figure, (title, better) in FIGURES.items():
            rows_ = part[part.figure == figure].sort_values("seed")
            if rows_.empty:
                continue
            diffs = 100 * rows_["diff"].reset_index(drop=True)
            low, high = t_interval(diffs)
            rows.append({"regime": regime, "dataset": dataset, "variant": variant, "twin": twin, "figure": figure,
                         "title": title, "better": better, "seeds": list(rows_.seed), "diffs": list(diffs),
                         "value": 100 * rows_.value.mean(), "twin_value": 100 * rows_.twin_value.mean(),
                         "mean": diffs.mean(), "low": low, "high": high,
                         "says": verdict(low, high, better, subject(variant)),
                         "favour": [better * d for d in diffs], "favour_mean": better * diffs.mean(),
                         "favour_low": min(better * low, better * high), "favour_high": max(better * low, better * high)})
    return pd.DataFrame(rows)


def pairs_markdown(frame: pd.DataFrame, subject: Callable[[Variant], str], empty: str) -> str:
    """Per regime, dataset and pair: each figure for the variant and its twin (mean over seeds), the per-seed
    differences, their mean and 95% t-interval, and the verdict about subject(variant); percent."""
    if frame.empty:
        return empty
    out = []
    for (regime, dataset, variant, twin), part in pair_summary(frame, subject).groupby(
            ["regime", "dataset", "variant", "twin"], sort=False):
        lines = [f"### {variant.title} minus {twin.title} — {dataset}, {regime}\n",
                 f"| figure | {variant.title} | {twin.title} | per seed | mean [95% CI] | seeds | says |",
                 "|---|---|---|---|---|---|---|"]
        for r in part.itertuples():
            ci = "" if math.isnan(r.low) else f" [{r.low:+.1f}, {r.high:+.1f}]"
            lines.append(f"| {r.title} | {r.value:.1f} | {r.twin_value:.1f} | {' '.join(f'{d:+.1f}' for d in r.diffs)} "
                         f"| {r.mean:+.1f}{ci} | {len(r.diffs)} | {r.says} |")
        out.append("\n".join(lines) + "\n")
    return ("\n".join(out) + "\nPercent; differences in points, the first column minus the second, paired by seed "
            "(seeds in ascending order). The interval is a 95% Student-t interval over seeds: it holds the "
            "seed-to-seed spread and leaves out the test rows' sampling, which a pair shares. Flips and one label "
            "for all: lower is better. With some ten figures per pair, about one interval in twenty misses zero by "
            "chance alone: a lone verdict among them is weak evidence.\n")


def cms_subject(variant: Variant) -> str:
    return "CMS"


def idea_subject(variant: Variant) -> str:
    """The change a variant adds to its base: its last."""
    return variant.changes[-1].label


def scheduler_markdown(frame: pd.DataFrame) -> str:
    return pairs_markdown(frame, cms_subject,
                          "No pair of runs that differ only in CMS (e.g. `--methods cmcs wo_cms` with the same seeds, "
                          "variant and settings).\n")


def ideas_markdown(frame: pd.DataFrame) -> str:
    return pairs_markdown(frame, idea_subject,
                          "No variant with its base run (e.g. `--methods text_only` with and without `--pooling "
                          "mention`, the same seeds and settings).\n")
