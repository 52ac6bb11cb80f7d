"""Home: what CMCS is, the runs found and the selected run (the sidebar is drawn by app/main.py)."""
from __future__ import annotations

import streamlit as st

from app import glossary, state, widgets
from cmcs_core.report.regime import percent
from cmcs_core.report.tables import headline, headline_regimes, runs_frame
from cmcs_core.runs.reader import runs_table

st.title("CMCS lab")
st.markdown(
    "Target-oriented multimodal sentiment: given a tweet, a **target** phrase in it and the tweet's "
    "**image**, say whether the tweet is negative, neutral or positive *about the target*. "
    "Models love shortcuts: on the lab's playground the word *podcast* and a magenta diamond in the picture go "
    "with the positive label in the training data without being about any target (the *Tour* page shows every "
    "planted cue and which model falls for it). **CMCS** fights that with two parts:\n"
    "- **MFS** learns a mask over each modality's token features and trains the classifier on the "
    "masked (counterfactual) features, so features that are not about the target can be turned down;\n"
    "- **CMS** measures each batch's *causal effect* — how much better the masked features do than the raw "
    "ones — and weighs the text and image losses by it, with the weights α, β tuned on held-out data "
    f"({glossary.link('levels', 'an inner and an outer loop')}). At test time the two branches are fused by an "
    f"image–target similarity *{glossary.link('fusion', 's')}*.\n\nEvery term is in the "
    f"{glossary.link('target', 'Glossary')}."
)

runs, run, other = state.selection()
diagram = state.ROOT / "assets" / "cmcs_diagram.svg"
with st.expander("Diagram: what CMCS does", expanded=not runs):
    if diagram.is_file():
        st.image(str(diagram), width="stretch")

if not runs:
    widgets.no_runs_message()
    st.stop()

frame = runs_frame(runs)
regimes = headline_regimes(frame)
if regimes:
    st.subheader("Headline")
    chosen = st.selectbox("Regime (encoder, how much of it trains, visual input, precision)", regimes,
                          format_func=lambda r: r.title, key="home_regime",
                          help="Strongest first: the base-size encoder before MiniLM, end-to-end fine-tuning before "
                               "the top layers before frozen. Runs of different regimes are never averaged together.")
    reg, rows = headline(frame, chosen)
    st.markdown(f"Test accuracy (%) in **{widgets.md(reg.title)}**. All tables, ablations "
                "and CMCS paired against each method by seed: *Compare*; flip rates under counterfactual "
                "edits: *Robustness*.")
    st.dataframe(rows, hide_index=True)

st.subheader(f"Runs found ({len(runs)})")
table = runs_table(runs)  # a run is named by its folder under the runs folder: names repeat across grids
# What tells runs apart and how they did first, so it fits the page; the rest scrolls after it.
first = ["run", "method", "dataset", "visual_source", "seed", "test_acc", "test_f1", "dev_acc", "status"]
table = table[first + [c for c in table.columns if c not in first and c != "path"]]
table = percent(table, ("dev_acc", "test_acc", "test_f1"))  # percent, like the headline above
st.dataframe(
    table, hide_index=True, width="stretch",
    column_config={
        "run": st.column_config.TextColumn("run", pinned=True, help="folder under the runs folder"),
        **{c: st.column_config.NumberColumn(f"{c} (%)", format="%.1f", width="small")
           for c in ("dev_acc", "test_acc", "test_f1")},
        "seed": st.column_config.NumberColumn(width="small"),
    },
)
for r in runs:
    widgets.random_warning(r)
unfinished = [r.name for r in runs if not r.finished]
if unfinished:
    st.info(f"Unfinished runs (still training or interrupted): {', '.join(unfinished)}")

st.subheader("Selected")
st.markdown("Pick the run to explore, and optionally a second one to compare, in the sidebar; "
            "every page uses this choice.")
col1, col2 = st.columns(2)
with col1:
    st.markdown("**Run**")
    widgets.badge(run)
with col2:
    st.markdown("**Compare with**")
    if other is not None:
        widgets.badge(other)
    else:
        st.caption("none — pick one in the sidebar to compare two runs")

st.markdown(
    "**Pages.** *Tour*: the playground's planted shortcuts and which model falls for them, in ten minutes. "
    "*Training dynamics*: causal effects and scheduling weights per batch (paper Fig. 4) and whether the selection machinery engages. "
    "*Feature space*: t-SNE/UMAP of raw vs masked features (Fig. 5). *Masks*: what the masks keep and "
    "suppress, per sample and over the dataset. *Case studies*: the same samples across CMCS, the "
    "text-only baseline and the ablations (Fig. 6). *Inspector*: your own tweet, target and image. "
    "*Compare*: Tables 1–2, confusion matrices, per-class F1. *Robustness*: how often a prediction flips when "
    "something that is not about the target is edited, and a run on rows you upload. *Glossary*: every term in "
    "plain language. Teaching with it: docs/teaching.md."
)
