"""The target-awareness aims, met or not, per variant (`cmcs analyse aims`).

The aims (docs/robustness.md "The aims, met or not") judge a model by what it does to the target, each
against a fixed bar or against the plain text-only run of the same seeds:

- both clause edits flip at most 10% of predictions, with test accuracy at least text-only's;
- `swap_target` flips at most as often as under text-only;
- every target right in at least 50% (Twitter2015) / 65% (Twitter2017) of the tweets whose targets carry
  different labels;
- one label for all targets in at most 30% of them.

A variant is read only on the seeds that also have a plain text-only run (the pairing of report/seed_pairs.py:
the same regime and dataset, precision aside), so "at least text-only's" compares the same seeds. An aim is met
when the mean over those seeds meets it; the spread beside it says how far to trust that, and for the two aims
against text-only the paired difference gets its 95% t-interval (none below three seeds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from cmcs_core.data.counterfactual import EDIT_NAMES
from cmcs_core.report.regime import Variant, mean_std
from cmcs_core.report.seed_pairs import seed_pairs, t_interval
from cmcs_core.runs.reader import Run

TEXT_ONLY = Variant("text_only")
CLAUSE_EDITS = ("clause_positive", "clause_negative")
MAX_CLAUSE_FLIPS = 10.0  # %, each clause edit
MAX_SINGLE_LABEL = 30.0  # %, of the multi-target tweets
MIN_ALL_RIGHT = {"twitter2015": 50.0, "twitter2017": 65.0}  # %, of the multi-target tweets; none for other data


BARRED = (*CLAUSE_EDITS, "all_targets_right", "single_label")  # the figures with a fixed bar


def bar(figure: str, dataset: str) -> tuple[float, int] | None:
    """The fixed bar of a figure (percent) and its side: -1 at most, +1 at least; None where it has none."""
    if figure in CLAUSE_EDITS:
        return MAX_CLAUSE_FLIPS, -1
    if figure == "single_label":
        return MAX_SINGLE_LABEL, -1
    if figure == "all_targets_right" and dataset in MIN_ALL_RIGHT:
        return MIN_ALL_RIGHT[dataset], +1
    return None


def meets(value: float, figure: str, dataset: str) -> bool:
    """Whether a value in percent is on the right side of its figure's bar (the bar itself included)."""
    limit, side = bar(figure, dataset)
    return bool(value <= limit if side < 0 else value >= limit)


@dataclass(frozen=True)
class Aim:
    key: str
    title: str


AIMS = (Aim("clauses", f"clause flips ≤ {MAX_CLAUSE_FLIPS:g}% each, accuracy ≥ text-only's"),
        Aim("swap_target", f"flips with {EDIT_NAMES['swap_target']} ≤ text-only's"),
        Aim("all_targets_right", "every target right ≥ bar"),
        Aim("single_label", f"one label for all ≤ {MAX_SINGLE_LABEL:g}%"))


def _spread(values: pd.Series) -> str:
    return mean_std(values.mean(), values.std(ddof=1) if len(values) > 1 else math.nan)


def _against_text_only(rows: pd.DataFrame) -> str:
    """The paired difference to text-only in points: mean and its t-interval (or the seeds' count)."""
    diffs = 100 * rows["diff"].reset_index(drop=True)
    low, high = t_interval(diffs)
    ci = f" [{low:+.1f}, {high:+.1f}]" if not math.isnan(low) else ""
    return f"{diffs.mean():+.1f}{ci}"


def _judge(part: pd.DataFrame, dataset: str, variant: Variant) -> list[dict]:
    """One row per aim for one variant's paired rows (fractions): the figure as text, met (True/False, None when
    not measured) and the seeds it rests on."""
    by = {figure: rows.sort_values("seed") for figure, rows in part.groupby("figure")}
    pct = {f: 100 * r.value for f, r in by.items()}
    out = []

    def add(aim: str, text: str, met: bool | None, seeds: int) -> None:
        out.append({"aim": aim, "text": text, "met": met, "seeds": seeds})

    if all(e in by for e in CLAUSE_EDITS):
        acc = by["test_acc"]
        flips = " / ".join(_spread(pct[e]) for e in CLAUSE_EDITS)
        text = f"{flips}%; acc {100 * acc.value.mean():.1f}" + ("" if variant == TEXT_ONLY else
                                                                f" vs {100 * acc.twin_value.mean():.1f} ({_against_text_only(acc)})")
        met = all(meets(pct[e].mean(), e, dataset) for e in CLAUSE_EDITS) and bool(acc.value.mean() >= acc.twin_value.mean())
        add("clauses", text, met, min(len(by[e]) for e in CLAUSE_EDITS))
    else:
        add("clauses", "not stress-tested", None, 0)
    if variant == TEXT_ONLY:  # the reference: against itself it meets the relative aims trivially
        add("swap_target", f"{_spread(pct['swap_target'])}% (the reference)" if "swap_target" in by else "not stress-tested",
            None, len(by.get("swap_target", ())))
    elif "swap_target" in by:
        rows = by["swap_target"]
        text = f"{_spread(pct['swap_target'])} vs {100 * rows.twin_value.mean():.1f}% ({_against_text_only(rows)})"
        add("swap_target", text, bool(rows.value.mean() <= rows.twin_value.mean()), len(rows))
    else:
        add("swap_target", "not stress-tested", None, 0)
    all_right = bar("all_targets_right", dataset)
    if "all_targets_right" in by and all_right is not None:
        value = pct["all_targets_right"]
        add("all_targets_right", f"{_spread(value)}% (bar {all_right[0]:g}%)",
            meets(value.mean(), "all_targets_right", dataset), len(value))
    else:
        add("all_targets_right", "no bar for this dataset" if all_right is None else "not measured", None, 0)
    if "single_label" in by:
        value = pct["single_label"]
        add("single_label", f"{_spread(value)}%", meets(value.mean(), "single_label", dataset), len(value))
    else:
        add("single_label", "not measured", None, 0)
    return out


def aim_pairs(runs: list[Run]) -> pd.DataFrame:
    """Every variant's figures seed by seed beside plain text-only's of the same seed (a seed_pairs frame,
    fractions; text-only paired with itself): what the aims judge and the aims figure draws."""
    return seed_pairs(runs, lambda variant: TEXT_ONLY)


def aims(runs: list[Run]) -> pd.DataFrame:
    """One row per (regime, dataset, variant, aim): the figure as text, whether the mean over seeds meets it (None:
    not measured) and on how many seeds. Every variant that has plain text-only runs of the same seeds is judged,
    text-only itself included."""
    return judge(aim_pairs(runs))


def judge(frame: pd.DataFrame) -> pd.DataFrame:
    """aims() of an aim_pairs frame already read (the plot script draws and judges one reading)."""
    rows = []
    if frame.empty:
        return pd.DataFrame(rows)
    for (regime, dataset, variant), part in frame.groupby(["regime", "dataset", "variant"], sort=True):
        for row in _judge(part, dataset, variant):
            rows.append({"regime": regime, "dataset": dataset, "variant": variant,
                         "precision": " / ".join(sorted(set(part.precision))), **row})
    return pd.DataFrame(rows)


def _mark(met: bool | None) -> str:
    return "–" if met is None else ("**met**" if met else "no")


def aims_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One regime and dataset of an aims frame as a table: a row per variant (method order), a column per aim
    holding the figure and the verdict, then how many aims are met of those judged and the seeds."""
    rows = []
    for variant, part in sorted(frame.groupby("variant"), key=lambda kv: kv[0]):
        by = part.set_index("aim")
        judged = [m for m in by.met if m is not None]
        rows.append({"variant": variant.title, "precision": by.precision.iloc[0],
                     **{a.title: f"{by.loc[a.key, 'text']}: {_mark(by.loc[a.key, 'met'])}" for a in AIMS},
                     "aims met": f"{sum(map(bool, judged))}/{len(judged)}", "seeds": int(max(by.seeds))})
    return pd.DataFrame(rows)


def aims_markdown(frame: pd.DataFrame) -> str:
    """Per regime and dataset, one line per variant: each aim's figure and whether it is met; percent."""
    if frame.empty:
        return ("No run to judge: the aims compare each variant with plain text-only runs of the same seeds, regime "
                "and dataset (`cmcs grid --methods text_only ...` beside it).\n")
    out = []
    for (regime, dataset), part in frame.groupby(["regime", "dataset"], sort=True):
        table = aims_table(part)
        lines = [f"### The aims — {dataset}, {regime}\n", "| " + " | ".join(table.columns) + " |",
                 "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
        out.append("\n".join(lines) + "\n")
    bars = ", ".join(f"{d} {b:g}%" for d, b in MIN_ALL_RIGHT.items())
    return ("\n".join(out) + "\nPercent, mean ± std over the seeds that also have a plain text-only run; an aim is met "
            "when the mean meets it. In brackets, the paired difference to text-only in points and its 95% t-interval "
            f"over seeds (none below three). Every-target-right bars: {bars}. Flips and one label for all: on the "
            "test split, tweets whose targets carry different gold labels.\n")
