"""Feature space: PCA / t-SNE / UMAP of raw vs masked pooled features (paper Fig. 5); click a
point to open that sample. PCA draws at once; t-SNE and UMAP are computed once and cached under
the cache folder ($CMCS_CACHE_DIR/projections) and in memory, never in the run folder."""
from __future__ import annotations

import numpy as np
import plotly.express as px
import streamlit as st

from app import data, figures, widgets
from cmcs_core.projection import available_modalities, cached_projection

st.title("Feature space")
runs, run, other = widgets.require_run()
splits = widgets.require_splits(run)

c = st.columns(4)
split = c[0].selectbox("Split", splits, format_func=widgets.split_name)
modalities = available_modalities(run.path, split)
if not modalities:
    st.error(f"{run.name}: features_{split}.npz is missing or unreadable.")
    st.stop()
labels = {"text": "text", "visual": f"visual ({run.visual_source})"}
modality = c[1].selectbox("Features", modalities, format_func=labels.get)
NAMES = {"pca": "PCA", "tsne": "t-SNE (paper Fig. 5)", "umap": "UMAP"}
method = c[2].selectbox("Projection", list(NAMES), format_func=NAMES.get,
                        help="PCA is instant. t-SNE and UMAP take seconds to a minute for a thousand samples "
                             "the first time, then come from the cache folder.")
colour = c[3].selectbox("Colour by", ["gold label", "prediction", "correct"])

@st.cache_data(show_spinner=False, max_entries=32)
def projection(path: str, split: str, modality: str, stage: str, method: str, version: float) -> np.ndarray:
    return cached_projection(path, split, modality, stage, method)

pred = data.predictions(run, split)
if pred is None:
    st.stop()
maps = {}
with st.status(f"Projecting {len(pred)} samples with {NAMES[method]} (cached after the first time)…",
               expanded=False) as status:
    for stage in ("raw", "masked"):
        status.update(label=f"{NAMES[method]} of {modality} {stage} features…")
        try:
            maps[stage] = projection(str(run.path), split, modality, stage, method, data.stamp(run))
        except (ValueError, FileNotFoundError) as err:
            st.error(f"Cannot project {modality}/{stage}: {err}")
            st.stop()
    status.update(label="Projections ready", state="complete")

frame = pred.assign(row=np.arange(len(pred)),
                    **{"gold label": pred.label.map(widgets.label_name), "prediction": pred.pred.map(widgets.label_name),
                       "correct": pred.correct.map({1: "correct", 0: "wrong"})})
colours = {**figures.LABEL_COLORS, "correct": "#2ca02c", "wrong": "#d62728"}
cols = st.columns(2)
selected = None
for col, stage in zip(cols, ("raw", "masked")):
    xy = maps[stage]
    data = frame.assign(x=xy[:, 0], y=xy[:, 1])
    title = f"{modality} features, {'raw E' if stage == 'raw' else 'masked Ē (after MFS)'}"
    fig = px.scatter(data, x="x", y="y", color=colour, color_discrete_map=colours, custom_data=["row"],
                     hover_data={"tweet": True, "target": True, "gold label": True, "prediction": True,
                                 "x": False, "y": False, "row": False}, title=title)
    fig.update_traces(marker=dict(size=7, opacity=0.8))
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=50, b=10), legend_title_text=colour)
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, title=None)
    with col:
        event = widgets.show_fig(fig, key=f"map_{stage}", name=f"{run.name}_{split}_{modality}_{stage}_{method}",
                                on_select="rerun", selection_mode="points")
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    if points:
        selected = int(points[0]["customdata"][0])

st.caption("Paper Fig. 5 (t-SNE): on raw features some samples sit among another label's cluster; after the "
           "causal intervention the three polarities separate better. Click a point to open the sample.")
st.subheader("Selected sample")
if selected is None:
    selected = int(st.number_input("…or pick a sample by row", 0, len(pred) - 1, 0))
widgets.show_sample(run, split, selected, key="fs_sample")
