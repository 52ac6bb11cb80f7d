"""The stress tests read back: one row per (run, split, edit) from every stress.json, and the
Markdown of `table --stress` (flip rate per edit and method beside test accuracy and target
awareness, the reference method paired by seed, each variant against its base by seed).

Frames hold fractions, as the files do; the tables print percent.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cmcs_core.command import cli_command
from cmcs_core.data.counterfactual import ALL_EDITS
from cmcs_core.report.regime import Regime, Variant, percent, seeds_mean_std
from cmcs_core.runs.reader import Run

AWARENESS = ("all_targets_right", "single_label")  # cmcs_core.robustness.target_awareness
AWARENESS_TITLES = {"all_targets_right": "all targets right", "single_label": "one label for all"}
FRACTIONS = ("test_acc", "flip_rate", "flip_lo", "flip_hi", "acc_before", "acc_after",
             *(f"{k}{s}" for k in AWARENESS for s in ("", "_lo", "_hi")))


def _awareness_columns(run: Run, split: str) -> dict:
    """Target awareness of the run on the stress-tested split (train/dev/test only), NaN without it."""
    ta = run.target_awareness(split) if split in ("train", "dev", "test") else None
    out = {"awareness_tweets": (ta or {}).get("tweets", 0)}
    for key in AWARENESS:
        value, ci = (ta or {}).get(key), (ta or {}).get(f"{key}_ci")
        out[key] = np.nan if value is None else value
        out[f"{key}_lo"], out[f"{key}_hi"] = (np.nan, np.nan) if ci is None else ci
    return out


def collect_stress(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, split, edit) of every finished run's stress.json, with the run's dataset,
    method, seed, regime (without the opt-in changes), variant, test accuracy and target awareness."""
    rows = []
    for run in runs:
        if not run.finished or "test" not in run.metrics:
            continue
        regime, variant = Regime.of(run.cfg).base, Variant.of(run.cfg)
        for tag, entry in run.stress_report()["splits"].items():
            awareness = _awareness_columns(run, tag)
            for edit, res in entry.get("edits", {}).items():
                ci = res.get("flip_ci", [np.nan, np.nan])
                rows.append({
                    "run": run.name, "path": str(run.path), "dataset": run.dataset, "method": run.method,
                    "variant": variant, "seed": run.cfg.train.seed, "regime": regime,
                    "test_acc": run.metrics["test"]["acc"], "split": tag, "edit": edit,
                    "applies": bool(res.get("applies")), "reason": res.get("reason", ""), "rows": res.get("rows", 0),
                    "flip_rate": res.get("flip_rate", np.nan), "flip_lo": ci[0], "flip_hi": ci[1],
                    "acc_before": res.get("acc_before", np.nan), "acc_after": res.get("acc_after", np.nan),
                    "flips": res.get("flips", {}), "rows_file": res.get("rows_file", ""), **awareness,
                })
    return pd.DataFrame(rows)


def stress_tables(found: pd.DataFrame, reference: str = "cmcs") -> str:
    """Markdown: flip rate per edit and method (mean ± std over seeds) beside test accuracy (and
    target awareness where the runs have it); the reference method minus each other method paired
    by seed; each variant minus its base by seed."""
    if found.empty:
        return f"No stress results found (run `{cli_command('stress', '--run', 'RUN')}`).\n"
    found = percent(found, FRACTIONS)
    reference = Variant(reference)
    out = []
    ok = found[found.applies]
    awareness_shown = False
    for (reg, dataset, split), part in ok.groupby(["regime", "dataset", "split"]):
        edits = [e for e in ALL_EDITS if e in set(found.edit)]
        runs = part.drop_duplicates("run")
        aware = [k for k in AWARENESS if runs[k].notna().any()]
        awareness_shown |= bool(aware)
        heads = edits + [AWARENESS_TITLES[k] for k in aware]
        lines = [f"### Flip rate (%) under each edit — {dataset}, {split} split, {reg}\n\n",
                 "| method | test acc | " + " | ".join(heads) + " | seeds |\n",
                 "|---|---|" + "---|" * len(heads) + "---|\n"]
        for variant in sorted(set(part.variant)):
            v = part[part.variant == variant]
            n_seeds = v.seed.nunique()
            cells = ["–" if v[v.edit == e].empty else _over_seeds(v[v.edit == e].flip_rate, n_seeds) for e in edits]
            per_run = v.drop_duplicates("run")
            cells += ["–" if per_run[k].isna().all() else _over_seeds(per_run[k].dropna(), n_seeds) for k in aware]
            lines.append(f"| {variant.title} | {seeds_mean_std(per_run.test_acc)} | " + " | ".join(cells)
                         + f" | {n_seeds} |\n")
        lines.append(_paired(part, edits, reference))
        lines.append(_variant_vs_base(part, edits))
        out.append("".join(lines))
    na = found[~found.applies].drop_duplicates(["method", "edit", "reason"])
    notes = "".join(f"- {r.method}, {r.edit}: not run — {r.reason}\n" for r in na.itertuples())
    awareness_note = ("All targets right / one label for all: on the tweets of the split with targets of different "
                      "gold labels, the share with every target right and the share given one single label (%), "
                      f"mean ± std over seeds (`{cli_command('analyse', 'targets', 'RUNS')}`).\n" if awareness_shown else "")
    return ("\n".join(out) + "\nFlip rate: share of edited rows whose predicted label changes (%), mean ± std over "
            "seeds (no ± with one seed; a cell over fewer seeds than its row says how many); test acc: the run's "
            "test accuracy (%). Paired cells list seeds in ascending order.\n" + awareness_note
            + (f"\n{notes}" if notes else ""))


def _over_seeds(values: pd.Series, row_seeds: int) -> str:
    """mean ± std of one value per seed; a cell over fewer seeds than its row's count says so, since a
    seed packed without some edits would otherwise pass for the row's full count."""
    cell = seeds_mean_std(values)
    return cell if len(values) >= row_seeds else f"{cell} ({len(values)} seed{'' if len(values) == 1 else 's'})"


def _diffs(diff: pd.Series) -> str:
    if diff.empty:
        return "–"
    seeds = " ".join(f"{d:+.1f}" for d in diff)
    return seeds if len(diff) < 2 else f"{seeds} (mean {diff.mean():+.1f})"


def _paired_diff(table: pd.DataFrame, a, b) -> str:
    """a minus b in a (seed x variant) table, seed by seed: only seeds that have both."""
    both = table[[a, b]].dropna() if {a, b} <= set(table.columns) else pd.DataFrame()
    return _diffs((both[a] - both[b]) if not both.empty else pd.Series(dtype=float))


def _pivot(part: pd.DataFrame, edit: str) -> pd.DataFrame:
    return part[part.edit == edit].pivot_table(index="seed", columns="variant", values="flip_rate")


def paired_flip_differences(part: pd.DataFrame, edit: str, reference: Variant) -> dict[Variant, pd.Series]:
    """The reference's flip rate minus each other method's under one edit, seed by seed (only seeds that
    have both; a method's opt-in variants are compared with their base instead). Part: rows of one
    regime, dataset and split of collect_stress (fractions or percent, as given)."""
    table = _pivot(part, edit)
    out = {}
    if reference not in table:
        return out
    for variant in sorted(set(part.variant)):
        if variant == reference or variant.base or variant not in table:
            continue
        both = table[[reference, variant]].dropna()
        if not both.empty:
            out[variant] = both[reference] - both[variant]
    return out


def _paired(part: pd.DataFrame, edits: list[str], reference: Variant) -> str:
    if reference not in set(part.variant):
        return ""
    lines = [f"\n{reference.title} minus each method, flip rate points paired by seed (negative: "
             f"{reference} flips less):\n\n| minus | " + " | ".join(edits) + " |\n|---|" + "---|" * len(edits) + "\n"]
    per_edit = {edit: paired_flip_differences(part, edit, reference) for edit in edits}
    for variant in sorted(set(part.variant)):
        if variant == reference or variant.base:  # variants: compared with their base (_variant_vs_base)
            continue
        cells = [_diffs(per_edit[edit].get(variant, pd.Series(dtype=float))) for edit in edits]
        lines.append(f"| {variant.title} | " + " | ".join(cells) + " |\n")
    return "".join(lines)


def _variant_vs_base(part: pd.DataFrame, edits: list[str]) -> str:
    present = set(part.variant)
    pairs = [(v.base, v) for v in sorted(present) if v.base in present]
    if not pairs:
        return ""
    lines = ["\nEach variant minus the same method without its last change (augmentation, target pooling, caption "
             "in the text input), paired by seed (flip rate points per edit; test accuracy points):\n\n"
             "| variant | minus | test acc | " + " | ".join(edits) + " |\n|---|---|---|" + "---|" * len(edits) + "\n"]
    accs = part.drop_duplicates("run").pivot_table(index="seed", columns="variant", values="test_acc")
    for base, variant in pairs:
        cells = [_paired_diff(table, variant, base) for table in [accs] + [_pivot(part, e) for e in edits]]
        lines.append(f"| {variant.title} | {base.title} | " + " | ".join(cells) + " |\n")
    return "".join(lines)
