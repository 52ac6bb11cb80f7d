"""Masks: per-token mask heatmaps over the tweet and over the image grid (pixels) or the
caption's tokens (captions), on an absolute 0..1 scale unless the contrast view is chosen;
what the mask does to the prediction, token by token (explain.mask_effects); a dataset view of
the words the masks suppress most, beside how strongly each goes with a label in training."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app import data, figures, widgets
from cmcs_core.playground.story import is_playground
from cmcs_core.playground.vocab import spurious_class_of
from cmcs_core.runs.reader import RunReadError, load_run
from cmcs_core.word_stats import standing, suppressed_vs_association

CHOOSES = 0.05  # a spread of mean gates below this is a mask that does not choose between words
NEAR_ZERO, SATURATED = 0.01, 0.2  # when a fifth of the words sit below 0.01, a 0…1 axis draws them all as 0
GATE_FLOOR, SHARE_FLOOR = 1e-4, 1e-5  # gates are stored to 4 decimals: a log axis draws 0 at the floor

st.title("Masks")
runs, run, other = widgets.require_run()
splits = widgets.require_splits(run)
mode = run.cfg.model.mask_mode
extensions = [f"{run.cfg.model.mask_granularity} gates" if run.cfg.model.mask_granularity != "element" else "",
              f"sparsity prior λ = {run.cfg.model.mask_sparsity:g}" if run.cfg.model.mask_sparsity else ""]
if any(extensions):
    st.caption("This run's mask uses extensions beyond the paper: " + ", ".join(e for e in extensions if e) + ".")
if widgets.gate_note(run):
    st.markdown(widgets.gate_note(run))
cue = ((run.playground_score() or {}).get("visual") or {}) if is_playground(run) and mode == "learned" else {}
if cue.get("cue") is not None:
    st.caption(f"The image's mask on the caption: {cue['cue']:.2f} on average on the words that name the planted image "
               f"cue, {cue['other']:.2f} on the other caption words — "
               + ("it keeps the cue, the shortcut, rather than turning it down. Only the text gates can read the "
                  "target; the image mask cannot." if cue["cue"] >= cue["other"] else "it turns the cue down."))
if mode != "learned":
    st.info(f"{run.method_title} has no learned mask (mask mode '{mode}': "
            f"{'every value is 0.5' if mode == 'fixed' else 'the identity, every value is 1'}). "
            "Pick a CMCS run to see what MFS keeps and suppresses.")

split = st.selectbox("Split", splits, format_func=widgets.split_name)
pred = data.predictions(run, split)
if pred is None:
    st.stop()

tab_sample, tab_data = st.tabs(["One sample", "Dataset view: words by mask value"])
with tab_sample:
    only = st.radio("Show", ["all", "errors", "correct"], horizontal=True)
    rows = pred.index if only == "all" else pred.index[pred.correct == (0 if only == "errors" else 1)]
    if len(rows) == 0:
        st.info("No samples match.")
    else:
        i = st.selectbox("Sample", list(rows), format_func=lambda r: f"#{pred.loc[r, 'index']} · "
                         f"[{pred.loc[r, 'target']}] {str(pred.loc[r, 'tweet'])[:90]}")
        widgets.show_sample(run, split, int(i), key="mask_sample")
        st.caption("Mask values near 1 keep a token's features, near 0 suppress them (mean over the d "
                   f"features of each token). Visual source of this run: **{run.visual_source}** — "
                   + ("the visual mask is drawn over the image's 7x7 feature grid." if run.cfg.encoder.visual_model != "caption"
                      else "the visual mask is over the caption's tokens."))
        st.subheader("What the mask does")
        # Measured with the run's model: the first time loads torch and the checkpoint (most of this page's
        # cold start), so it runs when asked for (bench/results/cold_pages.json).
        measure = st.toggle("Measure what the mask does on this sample (loads the run's model)", key="mask_effect_on")
        effect = data.sample_mask_effects(run, split, int(i)) if measure else None
        if effect is not None:
            m = data.masks(run, split)
            entry = m["samples"][int(i)]
            image = data.load_dataset_image(run, str(pred.loc[i, "image_id"]))
            widgets.show_mask_effects(effect, entry["tokens"], "mask_effect",
                                     contrast=st.session_state.get("mask_sample_scale") == "contrast",
                                     visual_tokens=entry.get("visual_tokens"), grid=m.get("grid"), image=image)

@st.cache_data(show_spinner="Counting words in the masks and the training data…", max_entries=8)
def word_table(path: str, split: str, min_count: int, version: float) -> tuple[pd.DataFrame, str | None]:
    r = load_run(path)
    note = None
    try:
        samples = r.split_samples("train")
    except RunReadError as err:
        samples, note = None, str(err)
    return suppressed_vs_association(r.masks(split), samples, min_count), note

with tab_data:
    c1, c2 = st.columns(2)
    min_count = c1.slider("Minimum occurrences", 1, 20, 3)
    top_n = c2.slider("Words shown", 5, 60, 20)
    contrast = widgets.scale_picker("mask_data_scale")
    try:
        table, note = word_table(str(run.path), split, min_count, data.stamp(run))
    except RunReadError as err:
        st.error(str(err))
        st.stop()
    if note:
        st.warning(f"Label association unavailable: {note}")
    if table.empty:
        st.info("No word occurs often enough; lower the minimum.")
        st.stop()
    saturated = float((table["mean_mask"] < NEAR_ZERO).mean()) >= SATURATED
    if saturated:
        st.info(f"{(table['mean_mask'] < NEAR_ZERO).mean():.0%} of the words have a mean gate below {NEAR_ZERO}: this "
                "mask keeps few words and turns the rest nearly off, so on a 0…1 axis they all look like 0. The log "
                "axis (and each word's share of its tweet) tells them apart; gates are stored to 4 decimals, so "
                f"anything below {GATE_FLOOR} is drawn at {GATE_FLOOR}.")
    m1, m2 = st.columns(2)
    column = m1.radio("Value", ["mean_mask", "mean_share"], horizontal=True, key="mask_measure",
                      format_func={"mean_mask": "mean gate (0…1)", "mean_share": "share of its tweet's gates"}.get,
                      help="share: the word's gate ÷ the sum of its tweet's word gates, averaged over its occurrences — "
                           "how much of the gated tweet comes from it")
    log = m2.toggle("Log axis", value=saturated, key="mask_log", help="tells apart gates near 0")
    top = table.nsmallest(top_n, column).sort_values(column).copy()  # the lowest first, bars in order
    colour = "top_label" if "top_label" in top else None
    if colour:
        top["top_label"] = top["top_label"].fillna("unseen in train")
    planted = is_playground(run)
    if planted:
        top["word"] = [f"{w} (planted)" if spurious_class_of(w) is not None else w for w in top["word"]]
    lo_all, hi_all = float(table["mean_mask"].min()), float(table["mean_mask"].max())
    chooses = hi_all - lo_all >= CHOOSES
    what = (f"The {len(top)} words with the lowest {'mean gate' if column == 'mean_mask' else 'share'}" if chooses else
            f"No word is suppressed: every word's mean gate lies in {lo_all:.3f}…{hi_all:.3f}. The {len(top)} lowest")
    lo, hi, note = figures.colour_range(table[column], signed=False, contrast=contrast)
    axis = (f"log axis, {GATE_FLOOR if column == 'mean_mask' else SHARE_FLOOR:g} … 1" if log else
            note if column == "mean_mask" else "share of the tweet, 0 … the largest")
    fig = figures.word_bars(top, column, f"{what} ({split}), coloured by the label they go with in training<br>"
                            f"<sup>y axis: {axis} (all words)</sup>", colour, log,
                            GATE_FLOOR if column == "mean_mask" else SHARE_FLOOR,
                            None if log or column != "mean_mask" else
                            (lo, hi) if not contrast else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)))
    widgets.show_fig(fig, key="suppressed", name=f"{run.name}_{split}_suppressed_words")
    if planted:
        marks = [f"*{r['word']}* {r['value']:.4f}, below {r['below']:.0%} of the words"
                 + (f" (tied with {r['tied']})" if r["tied"] else "")
                 for r in standing(table, column, [w for w in table.word if spurious_class_of(w) is not None])]
        st.caption(f"The playground's planted words by {'mean gate' if column == 'mean_mask' else 'share'}, of "
                   f"{len(table)} words: " + ("; ".join(marks) or "none occurs often enough")
                   + ". A mask that caught the shortcut puts them below almost every word.")
    if "lift" in table:
        scatter = table.dropna(subset=["lift"])
        fig = px.scatter(scatter, x="lift", y="mean_mask", size="count", color="top_label", hover_name="word",
                         color_discrete_map=figures.LABEL_COLORS, log_x=True,
                         title="Mask value against label association (lift = P(label | word) / P(label) in train)")
        fig.update_layout(height=440, margin=dict(l=10, r=10, t=70, b=10),
                          title=f"{fig.layout.title.text}<br><sup>y axis: {note}</sup>")
        if not contrast:
            fig.update_yaxes(range=[0, 1])
        widgets.show_fig(fig, key="mask_vs_lift", name=f"{run.name}_{split}_mask_vs_lift")
        st.caption("Words far right go with one label much more often than chance in the training data — "
                   "candidate spurious cues. If MFS works as intended, those that are not about the target "
                   "sit low (suppressed).")
    st.dataframe(table, hide_index=True, width="stretch")
