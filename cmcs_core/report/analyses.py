"""Analyses of finished runs, behind `cmcs analyse NAME RUN_OR_GRID...`. Each returns a frame
(fractions, as the files hold them) and has a Markdown view in percent for the docs:

- fusion: what each branch contributes inside a run (text, image, fused accuracy; the fusion
  weight s; how often fusion changes the text branch's label);
- selection: the test accuracy of the epoch each selection rule would keep (epochs.csv);
- targets: target awareness on tweets with targets of different gold labels (robustness.py);
- machinery, curvature: what reaches the masks and the scheduler (report/machinery.py);
- playground: playground runs scored against the planted truth, by variant over seeds;
- precision: runs that differ only in fp32/bf16, paired (report/precision_pairs.py);
- scheduler, ideas: each method with CMS minus its twin without it, each opt-in variant minus its base; paired by
  seed, with t-intervals (report/seed_pairs.py);
- aims: the target-awareness aims, met or not, per variant against text-only of the same seeds (report/aims.py).
"""
from __future__ import annotations

import pandas as pd

from cmcs_core.command import cli_command
from cmcs_core.config import METHOD_TITLES
from cmcs_core.data.tsv import LABEL_NAMES
from cmcs_core.report.aims import aims, aims_markdown
from cmcs_core.report.precision_pairs import precision_markdown, precision_pairs
from cmcs_core.report.machinery import curvature, machinery, machinery_markdown, phi_ratio_last
from cmcs_core.report.regime import Regime, Variant, method_order, seeds_mean_std
from cmcs_core.report.seed_pairs import idea_pairs, ideas_markdown, scheduler_markdown, scheduler_pairs
from cmcs_core.runs.reader import Run, RunReadError

GROUP = ["regime", "dataset", "method"]


def _describe(run: Run) -> dict:
    return {"regime": Regime.of(run.cfg), "dataset": run.dataset, "method": run.method, "seed": run.cfg.train.seed,
            "run": run.name}


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by regime (strongest first), dataset and the one method order."""
    order = {m: i for i, m in enumerate(method_order(frame.method))}
    return frame.assign(_o=frame.method.map(order)).sort_values(["regime", "dataset", "_o", "seed"]).drop(columns="_o")


def markdown_table(frame: pd.DataFrame) -> str:
    cells = frame.astype(str)
    return ("| " + " | ".join(cells.columns) + " |\n|" + "---|" * len(cells.columns) + "\n"
            + "".join("| " + " | ".join(row) + " |\n" for row in cells.itertuples(index=False)))


def _groups(part: pd.DataFrame):
    """(grouped by dataset and method in the frame's order, the columns naming each group)."""
    g = part.groupby(["dataset", "method"], sort=False)
    keys = list(g.size().index)
    return g, {"dataset": [d for d, _ in keys], "method": [METHOD_TITLES.get(m, m) for _, m in keys]}


def _by_regime(frame: pd.DataFrame, title: str, body) -> str:
    """One Markdown section per regime: `### title — regime` and body(part)."""
    return "\n".join(f"### {title} — {reg}\n\n{body(part)}" for reg, part in frame.groupby("regime", sort=True))


def _pct(value: float | None, ci=None) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{100 * value:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci is not None else "")


# -- fusion ------------------------------------------------------------------------------------------
def fusion(runs: list[Run]) -> pd.DataFrame:
    """Per run with test predictions: accuracy of the text branch, the image branch and the fused
    prediction (Eq. 15), the mean fusion weight s, and the share of labels fusion changes."""
    rows = []
    for run in runs:
        if "test" not in run.splits():
            continue
        pred = run.predictions("test")
        labels = {b: pred[[f"{b}_{n}" for n in LABEL_NAMES]].to_numpy().argmax(1)
                  for b in ("p_text", "p_image", "p_final") if f"{b}_{LABEL_NAMES[0]}" in pred}
        row = {**_describe(run), "s": float(pred.s.astype(float).mean())}
        row.update({f"acc_{b}": float((y == pred.label).mean()) for b, y in labels.items()})
        if "p_image" in labels:  # how often the image branch's say changes the text branch's label
            row["changed_by_fusion"] = float((labels["p_final"] != labels["p_text"]).mean())
        rows.append(row)
    return _ordered(pd.DataFrame(rows)) if rows else pd.DataFrame()


def fusion_markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "No run with test predictions found.\n"
    columns = {"s": "s", "acc_p_text": "text branch", "acc_p_image": "image branch", "acc_p_final": "fused (Eq. 15)",
               "changed_by_fusion": "label changed by fusion (%)"}

    def body(part: pd.DataFrame) -> str:
        g, names = _groups(part)
        means = g[[c for c in columns if c in part]].mean()
        out = pd.DataFrame({**names, "seeds": g.seed.nunique().values})
        for col, head in columns.items():
            if col in means:
                out[head] = [f"{v:.2f}" if col == "s" else _pct(v) for v in means[col]]
        return markdown_table(out)

    return _by_regime(frame, "What the branches contribute (test, mean of the seeds; accuracy %)", body) + \
        "\nEach branch's test accuracy inside the same runs; s: the mean fusion weight of the image branch.\n"


# -- selection -------------------------------------------------------------------------------------
# (column, which way is best) per rule; ties keep the first epoch, as the trainer does.
SELECTION_RULES = {"dev acc": ("dev_acc", "max"), "dev F1": ("dev_f1", "max"), "dev loss": ("dev_loss", "min"),
                   "last": ("epoch", "max"), "oracle (test)": ("test_acc", "max")}


def epoch_picks(epochs: pd.DataFrame) -> dict[str, float]:
    """Test accuracy (fraction) of the epoch each rule picks, for the rules the log supports."""
    out = {}
    for name, (col, how) in SELECTION_RULES.items():
        if col in epochs and not epochs[col].isna().all():
            row = epochs[col].idxmax() if how == "max" else epochs[col].idxmin()
            out[name] = float(epochs.test_acc[row])
    return out


def selection(runs: list[Run]) -> pd.DataFrame:
    """Per run that logged test accuracy every epoch: the test accuracy each rule's epoch has."""
    rows = []
    for run in runs:
        try:
            epochs = run.epochs()
        except RunReadError:
            continue
        if "test_acc" in epochs:  # not with --no-eval-test-each-epoch
            rows.append({**_describe(run), **epoch_picks(epochs), "epochs": len(epochs)})
    return _ordered(pd.DataFrame(rows)) if rows else pd.DataFrame()


def selection_markdown(frame: pd.DataFrame, reference: str = "cmcs", baseline: str = "text_only") -> str:
    if frame.empty:
        return "No run logged test accuracy every epoch.\n"
    rules = [r for r in SELECTION_RULES if r in frame]
    frame = frame.assign(below=frame["dev acc"] < frame["oracle (test)"])

    def body(part: pd.DataFrame) -> str:
        g, names = _groups(part)
        out = pd.DataFrame(names)
        for rule in rules:
            out[rule] = [_pct(v) for v in g[rule].mean()]
        out["dev pick below oracle"] = [f"{int(b.sum())}/{len(b)}" for _, b in g.below]
        out["seeds"] = g.seed.nunique().values
        text = markdown_table(out)
        wide = part.pivot_table(index=["dataset", "seed"], columns="method", values=rules)
        if all((r, m) in wide for r in rules for m in (reference, baseline)):
            diff = pd.DataFrame({r: 100 * (wide[(r, reference)] - wide[(r, baseline)]) for r in rules}).dropna(how="all")
            diff = diff.reset_index().assign(**{r: lambda d, r=r: d[r].map(lambda v: f"{v:+.1f}") for r in rules})
            text += (f"\n{METHOD_TITLES[reference]} minus {METHOD_TITLES[baseline]} under each rule, by seed "
                     f"(accuracy points):\n\n" + markdown_table(diff))
        return text

    gap = 100 * (frame["oracle (test)"] - frame["dev acc"]).mean()
    return (_by_regime(frame, "Test accuracy (%) of the epoch each rule keeps", body)
            + f"\nThe dev-accuracy pick is below the best test epoch in {int(frame.below.sum())} of {len(frame)} runs, "
              f"by {gap:.2f} points on average (the oracle is a maximum over noisy values: not attainable).\n")


# -- targets -------------------------------------------------------------------------------------------
def targets(runs: list[Run], split: str = "test") -> pd.DataFrame:
    """Per run with predictions (or the figures in metrics.json): target awareness on the tweets
    with targets of different gold labels; runs whose tweets cannot be read back are skipped."""
    rows, skipped = [], []
    for run in runs:
        ta = run.target_awareness(split) if run.finished else None
        if ta is not None:
            rows.append({**_describe(run), **ta})
        else:
            skipped.append(run.name)
    frame = _ordered(pd.DataFrame(rows)) if rows else pd.DataFrame()
    frame.attrs["skipped"] = skipped
    return frame


def targets_markdown(frame: pd.DataFrame) -> str:
    skipped = frame.attrs.get("skipped", [])
    left_out = (f"\n{len(skipped)} run folder(s) left out: no predictions whose tweets can be read, and no figures "
                f"in metrics.json ({', '.join(skipped[:3])}{' …' if len(skipped) > 3 else ''}).\n" if skipped else "")
    if frame.empty:
        return ("No run with predictions whose tweets can be read (committed folders keep them by reference: "
                "the data must be at hand).\n" + left_out)

    def body(part: pd.DataFrame) -> str:
        g, names = _groups(part)
        out = pd.DataFrame({**names, "tweets (their rows)": [f"{t} ({r})" for t, r in zip(g.tweets.first(),
                                                                                          g.rows.first())]})
        for key, head in (("all_targets_right", "all targets right (%)"), ("single_label", "one label for all (%)")):
            out[head] = [seeds_mean_std(100 * v.dropna()) if v.notna().any() else "–" for _, v in g[key]]
        out["seeds"] = g.seed.nunique().values
        per_run = pd.DataFrame({"run": part.run, "seed": part.seed,
                                "all targets right (%)": [_pct(v, c) for v, c in zip(part.all_targets_right,
                                                                                     part.all_targets_right_ci)],
                                "one label for all (%)": [_pct(v, c) for v, c in zip(part.single_label,
                                                                                     part.single_label_ci)]})
        return markdown_table(out) + "\n<details><summary>per run, 95% bootstrap interval over tweets</summary>\n\n" \
            + markdown_table(per_run) + "\n</details>\n"

    return (_by_regime(frame, "Tweets with targets of different gold labels", body)
            + "\nTweets: a tweet is its image and its text; only tweets with two or more targets whose gold labels "
              "differ count. All targets right: every target of the tweet predicted right. One label for all: the "
              "model gave all its targets the same label. Mean ± std over seeds (no ± with one seed).\n" + left_out)


# -- playground -------------------------------------------------------------------------------------
# Word roles of the truth (cmcs_core/playground/score.py) in the order a reader asks about them.
TEXT_ROLES = {"sentiment": "own sentiment word", "spurious": "planted word", "other_sentiment": "other targets' sentiment",
              "other_spurious": "other targets' planted", "target": "target", "other": "other words"}


def playground(runs: list[Run]) -> pd.DataFrame:
    """Per playground run (playground_score.json): test accuracy, accuracy where the planted word
    and where the planted image cue disagree with the label, the mean text gate per word role, the image mask on the planted cue
    against the rest, and phi_v / phi_t in the last epoch."""
    rows, skipped = [], []
    for run in runs:
        score = run.playground_score()
        if score is None:
            skipped.append(run.name)
            continue
        acc = score.get("accuracy") or {}
        row = {"variant": Variant.of(run.cfg), "seed": run.cfg.train.seed, "run": run.name, "data": run.dataset,
               "acc": acc.get("all"), "acc_cue_against_label": acc.get("spurious_conflicting"),
               "acc_image_cue_against_label": acc.get("image_conflicting")}
        text = (score.get("text") or {}) if run.cfg.model.mask_mode == "learned" else {}  # no mask: no gates
        row.update({f"gate:{role}": text.get(role) for role in TEXT_ROLES})
        visual = score.get("visual") or {}
        row.update({"image:cue": visual.get("cue"), "image:other": visual.get("other")})
        row["phi_ratio"] = phi_ratio_last(run, run.batches())
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values(["variant", "seed"]).reset_index(drop=True)
    frame.attrs["skipped"] = skipped
    return frame


def playground_markdown(frame: pd.DataFrame) -> str:
    """Mean ± std over seeds per variant: accuracy and gates in percent (a gate of 50% lets half through)."""
    if frame.empty:
        return f"No playground run (make them with `{cli_command('playground')}`).\n"
    columns = {"acc": "test acc", "acc_cue_against_label": "acc, cue against label",
               "acc_image_cue_against_label": "acc, image cue against label",
               **{f"gate:{r}": f"gate: {t}" for r, t in TEXT_ROLES.items()},
               "image:cue": "image mask: cue", "image:other": "image mask: rest"}
    out = []
    for variant, part in frame.groupby("variant", sort=True):
        cells = {"variant": str(variant), "seeds": str(part.seed.nunique())}
        for col, head in columns.items():
            values = part[col].dropna().astype(float)
            cells[head] = seeds_mean_std(100 * values) if len(values) else "–"
        ratio = part.phi_ratio.dropna().astype(float)
        cells["phi_v / phi_t"] = seeds_mean_std(ratio, 2) if len(ratio) else "–"
        out.append(cells)
    return (markdown_table(pd.DataFrame(out)) + "\nGates: the mean text gate (%) on the words of each role in the "
            "truth (100 = let through, 0 = removed); image mask on the cells or caption words of the planted cue "
            "against the rest. Mean ± std over seeds (no ± with one seed).\n")


# -- case studies ---------------------------------------------------------------------------------------
def align_predictions(runs: list[Run], split: str = "test") -> pd.DataFrame:
    """One row per sample, one pred column per run: the same samples side by side (Fig. 6).

    Columns are keyed by the run's path (`pred:<path>`, `correct:<path>`): run names repeat
    across grids. Samples are matched on (index, target); a run that lacks a sample has NaN there.
    """
    base = None
    for run in runs:
        pred = run.predictions(split)
        keep = pred[["index", "target", "pred", "correct"]].rename(
            columns={"pred": f"pred:{run.path}", "correct": f"correct:{run.path}"})
        if base is None:
            base = pred[["index", "line", "image_id", "tweet", "target", "label"]].merge(keep, on=["index", "target"])
        else:
            base = base.merge(keep, on=["index", "target"], how="left")
    return base if base is not None else pd.DataFrame()


ANALYSES = {"fusion": (fusion, fusion_markdown), "selection": (selection, selection_markdown),
            "targets": (targets, targets_markdown), "machinery": (machinery, machinery_markdown),
            "curvature": (curvature, machinery_markdown), "playground": (playground, playground_markdown),
            "precision": (precision_pairs, precision_markdown),
            "scheduler": (scheduler_pairs, scheduler_markdown), "ideas": (idea_pairs, ideas_markdown),
            "aims": (aims, aims_markdown)}
