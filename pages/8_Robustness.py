"""Robustness: the counterfactual stress tests (`python -m cmcs_core stress`) of every run —
flip rate per edit and method with intervals, target awareness on tweets with targets of
different labels beside them, CMCS paired against each method by seed, and the flipped
examples, each one click away from the Inspector with the edit applied."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import data, figures, state, widgets
from cmcs_core.data.counterfactual import ALL_EDITS, EDIT_TITLES
from cmcs_core.data.dataset import NO_VISUAL
from cmcs_core.report.regime import Variant, percent
from cmcs_core.report.stress_tables import (
    AWARENESS,
    AWARENESS_TITLES,
    FRACTIONS,
    collect_stress,
    paired_flip_differences,
    stress_tables,
)
from cmcs_core.runs.reader import load_run

st.title("Robustness")
runs, run, other = widgets.require_run()
finished = [r for r in runs if r.finished]


@st.cache_data(show_spinner="Reading stress results…", max_entries=8)
def stress_frame(paths: tuple[str, ...], root: str, _stamps: tuple[float, ...]) -> pd.DataFrame:
    return collect_stress([load_run(p, root) for p in paths])


found = stress_frame(tuple(str(r.path) for r in finished), str(run.root),  # the runs folder: names under it
                     tuple(data.stamp(r) for r in finished))
st.markdown(
    "Each stress test edits something that is **not about the target** and keeps the gold label: a clause of "
    "positive or negative sentiment about something else appended (rows whose gold label differs from it), the "
    "visual input swapped with another row's or removed, or the target replaced by another target of the split. "
    "The **flip rate** is the share of edited rows whose predicted label changes: a model that reads the target's "
    "context flips little on the first three kinds.")
if found.empty:
    st.warning("No stress results under this runs folder yet. Stress-test a run with a checkpoint:")
    st.code(f"python -m cmcs_core stress --run {run.path}", language="bash")
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
split = c3.selectbox("Split", sorted(part.split.unique(), key=lambda s: (s != "test", s)), key="rob_split")
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
fig = go.Figure()
PALETTE = figures.DISTINCT  # one colour per method, never reused before they run out
for n, variant in enumerate(variants):
    v = ok[ok.variant == variant]
    g = v.groupby("edit").agg(mean=("flip_rate", "mean"), lo=("flip_lo", "mean"), hi=("flip_hi", "mean"),
                              seeds=("seed", "nunique")).reindex(edits)
    fig.add_trace(go.Bar(
        name=variant.title, x=edits, y=g["mean"], offsetgroup=variant.key, marker_color=PALETTE[n % len(PALETTE)],
        error_y=dict(type="data", symmetric=False, array=g["hi"] - g["mean"], arrayminus=g["mean"] - g["lo"]),
        customdata=np.stack([g.lo, g.hi, g.seeds], axis=-1),
        hovertemplate="%{x}: %{y:.1f}% (95% CI %{customdata[0]:.1f}–%{customdata[1]:.1f}, %{customdata[2]} seeds)"
                      "<extra>" + variant.title + "</extra>"))
    fig.add_trace(go.Scatter(  # every seed as a dot: the spread the mean hides
        x=v.edit, y=v.flip_rate, mode="markers", marker=dict(color="black", size=5), offsetgroup=variant.key,
        showlegend=False, customdata=v.seed, hovertemplate="seed %{customdata}: %{y:.1f}%<extra></extra>"))
fig.update_layout(barmode="group", scattermode="group", height=430, margin=dict(l=10, r=10, t=50, b=10),
                  title=f"Share of edited rows whose prediction changes — {dataset}, {split} split",
                  yaxis=dict(range=[0, 100], title="flip rate (%)", ticksuffix="%"), legend_title="method")
widgets.show_fig(fig, key="rob_bars", name=f"robustness_flip_rates_{dataset}")
st.caption("Bars: mean over seeds; whiskers: the per-seed 95% bootstrap intervals (over rows), averaged; dots: "
           "each seed. " + " · ".join(f"**{e}**: {EDIT_TITLES[e]}" for e in edits))
na = part[~part.applies].drop_duplicates(["variant", "edit"])
if not na.empty:
    st.caption("Not run: " + "; ".join(f"{r.variant.title} × {r.edit} ({r.reason})" for r in na.itertuples()))

# -- target awareness beside the flip rates ---------------------------------------------------------
st.subheader("Tweets with targets of different labels")
per_run = shown.drop_duplicates("run")
if per_run[list(AWARENESS)].isna().all().all():
    st.info("These runs carry no target-awareness figures: committed stress folders keep no predictions. Runs "
            "trained or evaluated now write them into metrics.json; `cmcs analyse targets RUN_OR_GRID` computes them "
            "for any run folder with predictions.")
else:
    fig = go.Figure()
    for n, variant in enumerate(variants):  # n: the variant's colour in the flip-rate chart too
        v = per_run[per_run.variant == variant]
        if v[list(AWARENESS)].isna().all().all():
            continue  # no figures for this method: no empty legend entry
        means = [v[k].mean() for k in AWARENESS]
        lo = [v[f"{k}_lo"].mean() for k in AWARENESS]
        hi = [v[f"{k}_hi"].mean() for k in AWARENESS]
        x = [AWARENESS_TITLES[k] for k in AWARENESS]
        fig.add_trace(go.Bar(name=variant.title, x=x, y=means, offsetgroup=variant.key,
                             marker_color=PALETTE[n % len(PALETTE)],
                             error_y=dict(type="data", symmetric=False, array=np.subtract(hi, means),
                                          arrayminus=np.subtract(means, lo)),
                             hovertemplate="%{x}: %{y:.1f}%<extra>" + variant.title + "</extra>"))
        dots = v.melt(id_vars=["seed"], value_vars=list(AWARENESS)).dropna()
        fig.add_trace(go.Scatter(x=dots.variable.map(AWARENESS_TITLES), y=dots.value, mode="markers",
                                 marker=dict(color="black", size=5), offsetgroup=variant.key, showlegend=False,
                                 customdata=dots.seed, hovertemplate="seed %{customdata}: %{y:.1f}%<extra></extra>"))
    fig.update_layout(barmode="group", scattermode="group", height=360, margin=dict(l=10, r=10, t=50, b=10),
                      title=f"Tweets with two or more targets of different gold labels — {dataset}, {split} split",
                      yaxis=dict(range=[0, 100], title="share of those tweets (%)", ticksuffix="%"),
                      legend_title="method")
    widgets.show_fig(fig, key="rob_awareness", name=f"robustness_target_awareness_{dataset}")
    tweets = int(per_run.awareness_tweets.max())
    st.caption(f"{tweets} such tweets in this split. **all targets right**: every target of the tweet predicted right; "
               "**one label for all**: the model gave all its targets the same label, which a model that reads the "
               "target should not. Bars: mean over seeds; whiskers: the per-seed 95% bootstrap intervals (over "
               "tweets), averaged; dots: each seed.")

acc = ok.groupby(["variant", "edit"]).agg(before=("acc_before", "mean"), after=("acc_after", "mean"),
                                          rows=("rows", "max"), seeds=("seed", "nunique")).reset_index()
acc["method"] = acc.variant.map(lambda v: v.title)
with st.expander("Accuracy on the edited rows, before and after the edit"):
    st.dataframe(acc[["method", "edit", "rows", "before", "after", "seeds"]].round(1), hide_index=True,
                 width="stretch")

# -- CMCS paired against each method, by seed ----------------------------------------------------
st.subheader("CMCS against each method, paired by seed")
if CMCS not in set(ok.variant) or len(variants) < 2:
    st.info("Paired differences need CMCS and at least one other method stress-tested on this dataset and regime.")
else:
    edit = st.selectbox("Edit", edits, format_func=lambda e: f"{e} — {EDIT_TITLES[e]}", key="rob_paired_edit")
    fig = go.Figure()
    span = 1.0
    for variant, diff in paired_flip_differences(ok, edit, CMCS).items():  # the library's pairing
        span = max(span, float(diff.abs().max()))
        fig.add_trace(go.Scatter(x=[variant.title] * len(diff), y=diff, mode="markers+text",
                                 text=[f"s{s}" for s in diff.index], textposition="middle right",
                                 marker=dict(size=10), name=variant.title, showlegend=False,
                                 hovertemplate="seed %{text}: %{y:+.1f} points<extra></extra>"))
        fig.add_trace(go.Scatter(x=[variant.title], y=[diff.mean()], mode="markers", showlegend=False,
                                 marker=dict(symbol="line-ew", size=30, line=dict(width=3, color="black")),
                                 hovertemplate=f"mean {diff.mean():+.1f} points<extra></extra>"))
    fig.add_hline(y=0, line_dash="dash", line_color="grey")
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10),
                      title=f"CMCS minus each method: flip-rate points per seed under {edit} "
                            "(below 0: CMCS flips less)",
                      yaxis=dict(range=[-1.1 * span, 1.1 * span], title="flip-rate difference (points)"))
    widgets.show_fig(fig, key="rob_paired", name=f"robustness_paired_{dataset}_{edit}")
    st.caption("Runs with the same seed share initialisation and batch order up to the method's switches; the bar "
               "marks the mean over seeds. The axis is symmetric around zero.")
with st.expander("The tables (Markdown, as `python -m cmcs_core table --stress`)"):
    md = stress_tables(part)
    st.markdown(md)
    st.download_button("⬇ Tables (Markdown)", md, file_name=f"stress_{dataset}.md", mime="text/markdown")

# -- flipped examples ------------------------------------------------------------------------------
st.subheader("Flipped examples")
with_rows = ok[ok.rows_file != ""]
by_path = {str(r.path): r for r in finished}
run_paths = list(dict.fromkeys(with_rows.path))
if not run_paths:
    st.stop()
d1, d2 = st.columns([3, 2])
default = run_paths.index(str(run.path)) if str(run.path) in run_paths else 0
names = {p: f"{by_path[p].name} · {by_path[p].method_title}" if p in by_path else p for p in run_paths}
chosen = d1.selectbox("Run", run_paths, index=default, key="rob_run", format_func=names.get)  # paths: names repeat
run_edits = [e for e in edits if e in set(with_rows[with_rows.path == chosen].edit)]
edit = d2.selectbox("Edit", run_edits, key="rob_rows_edit", format_func=lambda e: f"{e} — {EDIT_TITLES[e]}")
record = with_rows[(with_rows.path == chosen) & (with_rows.edit == edit)].iloc[0]
try:
    rows = load_run(chosen).flipped(record.rows_file)
except ValueError as err:
    st.error(str(err))
    st.stop()
moves = ", ".join(f"{k} {v}" for k, v in record.flips.items())
st.markdown(f"**{len(rows)}** of {record.rows} edited rows flipped ({record.flip_rate:.1f}%, 95% CI "
            f"{record.flip_lo:.1f}–{record.flip_hi:.1f}); where they went: {moves or '–'}.")
if rows.attrs.get("text_missing"):
    st.warning(f"Only labels and predictions here: {rows.attrs['text_missing']}. Point the app at the data "
               "(`CMCS_DATA_DIR`) to see the tweets.")
if rows.empty:
    st.stop()
shown = rows.head(500)
view = shown[["index", "label", "pred_before", "pred_after", "target", "edited_tweet"]].copy()
if edit == "swap_target":
    view.insert(5, "edited_target", shown.edited_target)
if edit in ("swap_visual", "no_visual"):
    view["edited_caption"] = shown.edited_caption
pick = st.dataframe(view, hide_index=True, width="stretch", height=min(300, 36 * (len(view) + 1) + 2),
                    on_select="rerun", selection_mode="single-row", key="rob_table")
selected = pick.selection.rows[0] if pick and pick.selection.rows else 0
row = shown.iloc[selected]
target = str(row.edited_target)
st.markdown(f"**#{row['index']}** · gold **{row.label}** · prediction **{row.pred_before} → {row.pred_after}**")
st.markdown(f"original: {widgets.highlight_target(str(row.tweet), str(row.target))}")
st.markdown(f"edited: {widgets.highlight_target(str(row.edited_tweet), target)}")
if edit in ("swap_visual", "no_visual"):
    st.markdown(f"visual input after the edit: `{row.edited_image_id}`"
                + (f" — caption _{row.edited_caption}_" if isinstance(row.edited_caption, str) and row.edited_caption
                   else ""))

target_run = by_path.get(chosen)
blocked = None
if rows.attrs.get("text_missing"):
    blocked = "the tweet of this row could not be read back from the data"
elif target_run is None or not target_run.has_checkpoint:
    blocked = "this run has no checkpoint, so the Inspector cannot load it"
elif row.edited_image_id == NO_VISUAL:
    blocked = "the Inspector needs a caption or an image, and this edit removed the visual input"


if st.button("Open in the Inspector with the edit applied", on_click=state.open_in_inspector, disabled=blocked is not None,
             args=(chosen, str(row.edited_tweet).replace("$T$", target), target,
                   row.edited_caption if isinstance(row.edited_caption, str) else None, str(row.edited_image_id),
                   f"Robustness page: {edit} applied to row #{row['index']} of `{Path(chosen).name}`"),
             help=blocked or "fills the Inspector's tweet, target and caption/image with the edited row"):
    st.switch_page(state.INSPECTOR)
if blocked:
    st.caption(f"Inspector: {blocked}.")
