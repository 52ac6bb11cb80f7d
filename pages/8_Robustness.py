"""Robustness: the counterfactual stress tests (`cmcs stress`) of every run — flip rate per edit and
method with intervals, target awareness on tweets with targets of different labels beside them, CMCS
paired against each method by seed, each change (CMS, an opt-in) against the same run without it with
t-intervals over seeds, the target-awareness aims met or not per variant, the flipped examples (each one click away from the Inspector with
the edit applied), and a run evaluated on rows you upload (app/your_rows.py)."""
from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from app import data, figures, flipped, glossary, widgets, your_rows
from cmcs_core.command import cli_command
from cmcs_core.data.counterfactual import ALL_EDITS
from cmcs_core.report.aims import AIMS, aims, aims_markdown, aims_table
from cmcs_core.report.regime import Variant, percent
from cmcs_core.report.stress_tables import (
    AWARENESS,
    AWARENESS_TITLES,
    FRACTIONS,
    collect_stress,
    paired_flip_differences,
    stress_tables,
)
from cmcs_core.report.seed_pairs import cms_subject, idea_pairs, idea_subject, pair_summary, pairs_markdown, scheduler_pairs
from cmcs_core.runs.files import METRICS_FILE
from cmcs_core.runs.reader import load_run

st.title("Robustness")
runs, run, other = widgets.require_run()
finished = [r for r in runs if r.finished]


@st.cache_data(show_spinner="Reading stress results…", max_entries=8)
def stress_frames(paths: tuple[str, ...], root: str, versions: tuple[float, ...]) -> tuple[pd.DataFrame, ...]:
    """The stress results, CMS against its twin without it, each opt-in variant against its base (seed_pairs),
    and the aims per variant, from one reading of the runs."""
    loaded = [load_run(p, root) for p in paths]
    return collect_stress(loaded), scheduler_pairs(loaded), idea_pairs(loaded), aims(loaded)


found, with_cms, ideas, aim_frame = stress_frames(tuple(str(r.path) for r in finished), str(run.root),  # names under the runs folder
                                       tuple(data.stamp(r) for r in finished))
st.markdown(
    f"Each {glossary.link('stress-test', 'stress test')} edits something that is **not about the target** and keeps "
    "the gold label: a clause of positive or negative sentiment about something else appended (rows whose gold label "
    "differs from it), the picture swapped with another row's or removed, or the target replaced by another target of "
    f"the split. The **{glossary.link('flip-rate', 'flip rate')}** is the share of edited rows whose predicted label "
    "changes: a model that reads the target's context flips little on the first three kinds. Last on this page: "
    "**your own rows**, uploaded.")
if found.empty:
    st.warning("No stress results under this runs folder yet. Stress-test a run with a checkpoint:")
    st.code(cli_command("stress", "--run", run.path), language="bash")
    your_rows.section(runs, run)
    st.stop()

c1, c2, c3 = st.columns(3)
mine = found[found.path == str(run.path)]  # the sidebar's run decides what is shown first


def _index(options: list, preferred) -> int:
    return options.index(preferred) if preferred in options else 0


datasets = sorted(found.dataset.unique())
dataset = c1.selectbox("Dataset", datasets, index=_index(datasets, run.dataset), key="rob_dataset")
part = found[found.dataset == dataset]
regimes = sorted(set(part.regime))
regime = c2.selectbox("Regime", regimes, index=_index(regimes, mine.regime.iloc[0] if len(mine) else None),
                      key="rob_regime", format_func=str)
part = part[part.regime == regime]
split = c3.selectbox("Split", sorted(part.split.unique(), key=lambda s: (s != "test", s)), key="rob_split",
                     format_func=widgets.split_name)
if mine.empty:
    st.caption(f"The sidebar's run `{run.name}` has no stress results; showing the runs that have.")
part = part[part.split == split]
shown = percent(part, FRACTIONS)  # the frame holds fractions, as the files do
ok = shown[shown.applies]
variants = sorted(set(part.variant))
CMCS = Variant("cmcs")
edits = [e for e in ALL_EDITS if e in set(ok.edit)]

# -- flip rate per edit and method -------------------------------------------------------------
st.subheader("Flip rate per edit and method")
# one colour per method, never reused before they run out; the same method's colour in the awareness chart
methods = {v.key: (v.title, figures.DISTINCT[n % len(figures.DISTINCT)]) for n, v in enumerate(variants)}
key_of = lambda frame: frame.variant.map(lambda v: v.key)  # noqa: E731
fig = figures.seed_bars(ok.assign(method=key_of(ok), group=ok.edit, value=ok.flip_rate, lo=ok.flip_lo, hi=ok.flip_hi),
                        methods, edits, f"Share of edited rows whose prediction changes — {dataset}, {split} split",
                        "flip rate (%)", height=430, axis={e: figures.wrap(glossary.edit_name(e)) for e in edits})
widgets.show_fig(fig, key="rob_bars", name=f"robustness_flip_rates_{dataset}")
st.caption(f"Bars: mean over seeds; whiskers: the per-seed {glossary.link('interval', '95% intervals')} (over rows), "
           "averaged; dots: each seed. Each edit, with its code name, is in the "
           f"{glossary.link('stress-test', 'Glossary')}.", help=glossary.edit_help(edits))
na = part[~part.applies].drop_duplicates(["variant", "edit"])
if not na.empty:
    st.caption("Not run: " + "; ".join(f"{r.variant.title} × {glossary.edit_name(r.edit)} ({r.reason})"
                                       for r in na.itertuples()))

# -- target awareness beside the flip rates ---------------------------------------------------------
st.subheader("Tweets with targets of different labels")
per_run = shown.drop_duplicates("run")
if per_run[list(AWARENESS)].isna().all().all():
    st.info("These runs carry no target-awareness figures: committed stress folders keep no predictions. Runs "
            f"trained or evaluated now write them into {METRICS_FILE}; `{cli_command('analyse', 'targets', run.path)}` computes them "
            "for any run folder with predictions.")
else:
    aware = pd.concat([per_run.assign(method=key_of(per_run), group=AWARENESS_TITLES[k], value=per_run[k],
                                      lo=per_run[f"{k}_lo"], hi=per_run[f"{k}_hi"]) for k in AWARENESS])
    fig = figures.seed_bars(aware, methods, [AWARENESS_TITLES[k] for k in AWARENESS], "Tweets with two or more targets "
                            f"of different gold labels — {dataset}, {split} split", "share of those tweets (%)", 360)
    widgets.show_fig(fig, key="rob_awareness", name=f"robustness_target_awareness_{dataset}")
    tweets = int(per_run.awareness_tweets.max())
    st.caption(f"{tweets} such tweets in this split ({glossary.link('multi-target', 'multi-target score')}). **all "
               "targets right**: every target of the tweet predicted right; **one label for all**: the model gave all "
               "its targets the same label, which a model that reads the target should not. Bars: mean over seeds; "
               "whiskers: the per-seed 95% intervals (over tweets), averaged; dots: each seed.")

acc = ok.groupby(["variant", "edit"]).agg(before=("acc_before", "mean"), after=("acc_after", "mean"),
                                          rows=("rows", "max"), seeds=("seed", "nunique")).reset_index()
acc["method"], acc["edit"] = acc.variant.map(lambda v: v.title), acc.edit.map(glossary.edit_name)
with st.expander("Accuracy on the edited rows, before and after the edit"):
    st.dataframe(acc[["method", "edit", "rows", "before", "after", "seeds"]].round(1), hide_index=True,
                 width="stretch")

# -- CMCS paired against each method, by seed ----------------------------------------------------
st.subheader("CMCS against each method, paired by seed")
if CMCS not in set(ok.variant) or len(variants) < 2:
    st.info("Paired differences need CMCS and at least one other method stress-tested on this dataset and regime.")
else:
    edit = st.selectbox("Edit", edits, format_func=glossary.edit_name, key="rob_paired_edit",
                        help=glossary.edit_help(edits))
    diffs = paired_flip_differences(ok, edit, CMCS)  # the library's pairing
    fig = figures.paired_dots({v.title: d for v, d in diffs.items()}, "CMCS minus each method: flip-rate points per "
                              f"seed under “{glossary.edit_name(edit)}” (below 0: CMCS flips less)",
                              "flip-rate difference (points)")
    widgets.show_fig(fig, key="rob_paired", name=f"robustness_paired_{dataset}_{edit}")
    st.caption("Runs with the same seed share initialisation and batch order up to the method's switches; the bar "
               "marks the mean over seeds. The axis is symmetric around zero.")
with st.expander(f"The tables (Markdown, as `{cli_command('table', '--stress', 'RUNS_FOLDER')}`)"):
    md = stress_tables(part)
    st.markdown(md)
    st.download_button("⬇ Tables (Markdown)", md, file_name=f"stress_{dataset}.md", mime="text/markdown")

# -- each change against the same run without it, with intervals ------------------------------------
st.subheader("Each change against the same run without it, paired by seed")
shared = dataclasses.replace(regime, precision="")  # a pair may cross precisions: its title says so
choices = {}
for pairs, subject in ((with_cms, cms_subject), (ideas, idea_subject)):
    if not pairs.empty:
        here = pairs[(pairs.dataset == dataset) & (pairs.regime == shared)]
        for (variant, twin), pair_rows in here.groupby(["variant", "twin"], sort=True):
            choices[f"{variant.title} minus {twin.title}"] = (pair_rows, subject)
if not choices:
    st.info("No two runs here differ in one change only (CMS, or an opt-in such as `--pooling mention` or "
            "`--variant target_aware`) with the same seed. Train both with the same seeds, e.g. "
            f"`{cli_command('grid', '--methods', 'text_only', '--pooling', 'mention', '--seeds', '1', '2', '3')}` "
            "beside the plain grid.")
else:
    picked = st.selectbox("Pair", list(choices), key="rob_change_pair")
    pair_rows, subject = choices[picked]
    summary = pair_summary(pair_rows, subject)
    fig = figures.pair_forest(summary, f"{picked} — {dataset}, {summary.regime.iloc[0].precision}",
                              subject(pair_rows.variant.iloc[0]))
    widgets.show_fig(fig, key="rob_change_forest", name=f"robustness_change_{dataset}")
    st.caption("Dots: each seed's difference (hover for its seed); blue tick: their mean; blue line: the 95% Student-t interval over "
               "seeds (none below three seeds: two seeds give no honest spread). Every row is turned so that right "
               "is better with the change: fewer flips, more accuracy. The interval leaves out the test rows' "
               "sampling, which both runs of a pair share.")
    with st.expander(f"The table (Markdown, as `{cli_command('analyse', 'ideas', 'RUNS_FOLDER')}` and "
                     f"`{cli_command('analyse', 'scheduler', 'RUNS_FOLDER')}`)"):
        st.markdown(pairs_markdown(pair_rows, subject, ""))

# -- the aims ---------------------------------------------------------------------------------------
st.subheader("The target-awareness aims, met or not")
judged = aim_frame[(aim_frame.dataset == dataset) & (aim_frame.regime == shared)] if not aim_frame.empty else aim_frame
if judged.empty:
    st.info("The aims judge each variant against plain text-only runs of the same seeds: none here for this dataset "
            f"and regime (`{cli_command('grid', '--methods', 'text_only', '--seeds', '1', '2', '3')}` beside the grid).")
else:
    table = aims_table(judged)
    verdicts = [a.title for a in AIMS]
    st.dataframe(table.style.map(lambda cell: "background-color: #d8f0d8" if cell.endswith("**met**") else
                                 ("background-color: #f6dcdc" if cell.endswith(": no") else ""), subset=verdicts)
                 .format(lambda cell: cell.replace("**", ""), subset=verdicts),
                 hide_index=True, width="stretch", key="rob_aims")
    st.caption("Each variant on the seeds that also have a plain text-only run, mean ± std over them; green: the mean "
               "meets the aim, red: it does not, –: not judged (text-only is the reference of the relative aims). In "
               "brackets, the paired difference to text-only in points with its 95% t-interval over seeds (none "
               "below three): a met aim whose interval spans zero is met on the mean, not measurably.")
    with st.expander(f"The table (Markdown, as `{cli_command('analyse', 'aims', 'RUNS_FOLDER')}`)"):
        st.markdown(aims_markdown(judged))

# -- flipped examples ------------------------------------------------------------------------------
st.subheader("Flipped examples")
with_rows = ok[ok.rows_file != ""]
by_path = {str(r.path): r for r in finished}
run_paths = [p for p in dict.fromkeys(with_rows.path) if p in by_path]
if run_paths:
    d1, d2 = st.columns([3, 2])
    default = run_paths.index(str(run.path)) if str(run.path) in run_paths else 0
    names = {p: f"{by_path[p].name} · {by_path[p].method_title}" for p in run_paths}
    chosen = d1.selectbox("Run", run_paths, index=default, key="rob_run", format_func=names.get)  # paths: names repeat
    run_edits = [e for e in edits if e in set(with_rows[with_rows.path == chosen].edit)]
    edit = d2.selectbox("Edit", run_edits, key="rob_rows_edit", format_func=glossary.edit_name,
                        help=glossary.edit_help(run_edits))
    record = with_rows[(with_rows.path == chosen) & (with_rows.edit == edit)].iloc[0]
    rows = data.flipped_rows(by_path[chosen], record.rows_file)
    if rows is not None:
        moves = ", ".join(f"{k} {v}" for k, v in record.flips.items())
        st.markdown(f"**{len(rows)}** of {record.rows} edited rows flipped ({record.flip_rate:.1f}%, 95% interval "
                    f"{record.flip_lo:.1f}–{record.flip_hi:.1f}); where they went: {moves or '–'}.")
        if rows.attrs.get("text_missing"):
            st.warning(f"Only labels and predictions here: {rows.attrs['text_missing']}. Point the app at the data "
                       "(`CMCS_DATA_DIR`) to see the tweets.")
    if rows is not None and not rows.empty:
        shown = rows.head(500)
        pick = st.dataframe(flipped.table(shown, edit), hide_index=True, width="stretch",
                            height=min(300, 36 * (len(shown) + 1) + 2), on_select="rerun", selection_mode="single-row",
                            key="rob_table")
        row = shown.iloc[pick.selection.rows[0] if pick and pick.selection.rows else 0]
        flipped.show_row(by_path[chosen], record.rows_file, edit, row)
        flipped.open_button(by_path[chosen], record.rows_file, edit, row, "Robustness page", "rob_open",
                            bool(rows.attrs.get("text_missing")))

# -- your own rows ---------------------------------------------------------------------------------
your_rows.section(runs, run)
