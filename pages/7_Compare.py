"""Compare: Table 1 and Table 2 from the run folders, confusion matrices and per-class F1 of
the chosen runs; every figure downloadable."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app import figures, state, widgets
from cmcs_core.config import METHOD_ORDER, METHOD_TITLES
from cmcs_core.data.tsv import LABEL_NAMES
from cmcs_core.report.regime import percent
from cmcs_core.report.tables import DATASETS, markdown_tables, paired_differences, results_table, runs_frame
from cmcs_core.runs.files import METRICS_FILE

st.title("Compare runs")
runs, run, other = widgets.require_run()
finished = [r for r in runs if r.finished]
if not finished:
    st.warning("No finished run yet.")
    st.stop()

found = runs_frame(finished)  # a run is named by its folder under the runs folder: names repeat across grids
bench = found[found.dataset.isin(DATASETS)] if not found.empty else found
md = markdown_tables(bench) if not bench.empty else ""
paired = paired_differences(found) if not found.empty and (found.method == "cmcs").any() else ""
tab_tables, tab_runs = st.tabs(["Table 1 & Table 2", "Confusion matrices & per-class F1"])
with tab_tables:
    st.markdown("Test accuracy | macro-F1 (%) per method, mean ± std over seeds, one block per regime "
                "(text encoder, tuning, **visual source**); the published numbers once, above them.")
    if md:
        with st.container(height=900):  # every regime's tables scroll inside the page, not as its length
            st.markdown(md)
        st.download_button("⬇ Tables (Markdown)", md, file_name="cmcs_tables.md", mime="text/markdown")
    others = found[~found.dataset.isin(DATASETS)] if not found.empty else found
    if not others.empty:
        st.markdown(f"**Table 1 / Table 2 on {', '.join(sorted(others.dataset.unique()))}** (not a benchmark, "
                    "so no published numbers beside them): text-only baseline, CMCS and the ablations.")
        results = results_table(others)
        st.dataframe(results, hide_index=True, width="stretch")
        st.download_button("⬇ Table (CSV)", results.to_csv(index=False), file_name="cmcs_results.csv", mime="text/csv")
    if paired:
        with st.expander("CMCS minus each method, paired by seed", expanded=False):
            st.markdown("Runs with the same seed share initialisation and batch order up to the method's "
                        "switches, so a per-seed difference shows what two means ± std can hide.")
            st.markdown(paired)
    if not found.empty:
        metric = st.radio("Per run", ["test_acc", "test_f1"], horizontal=True,
                          format_func={"test_acc": "test accuracy (%)", "test_f1": "macro-F1 (%)"}.get)
        points = percent(found, ["test_acc", "test_f1"]).assign(
            method=found.method.map(lambda m: METHOD_TITLES.get(m, m)), regime=found.regime.map(str))
        order = [METHOD_TITLES[m] for m in METHOD_ORDER]
        order = [m for m in order if m in set(points.method)] + sorted(set(points.method) - set(order))
        fig = px.strip(points, x=metric, y="method", color="regime", facet_col="dataset",
                       color_discrete_sequence=figures.DISTINCT,
                       category_orders={"method": order}, hover_name="run", hover_data=["seed", "visual_source"],
                       title=f"{'Test accuracy' if metric == 'test_acc' else 'Macro-F1'} (%): one point per run "
                             f"({len(points)} runs); spread = seeds")
        fig.update_traces(marker=dict(size=8, opacity=0.8))
        # The legend (one line per regime) gets its own room below the plot: left to plotly, it took the plot's.
        legend_px = 20 * points.regime.nunique() + 30
        fig.update_layout(height=110 + 34 * len(order) + legend_px, margin=dict(l=10, r=10, t=60, b=legend_px + 30),
                          legend=dict(orientation="v", yref="container", yanchor="bottom", y=0, x=0,
                                      maxheight=legend_px, title_text="regime"))
        fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
        fig.update_xaxes(title=None)
        widgets.show_fig(fig, key="acc_points", name="runs_accuracy")

with tab_runs:
    by_path = {str(r.path): r for r in finished}
    default = [p for p in (str(run.path), str(getattr(other, "path", ""))) if p in by_path] or [str(finished[0].path)]
    c1, c2, c3 = st.columns([3, 1, 1])
    chosen = c1.multiselect("Runs", list(by_path), default=default, format_func=lambda p: state.run_label(by_path[p]))
    split = c2.selectbox("Split", ["test", "dev"], format_func=widgets.split_name)
    normalise = c3.checkbox("Row-normalised", value=False)
    if not chosen:
        st.info("Pick runs to compare.")
        st.stop()
    cols = st.columns(min(len(chosen), 3))
    f1_rows = []
    for i, path in enumerate(chosen):
        r = by_path[path]
        name = r.name
        widgets.random_warning(r)
        res = (r.metrics or {}).get(split)
        if not res:
            st.error(f"{name}: {METRICS_FILE} has no {split} results")
            continue
        cm = np.asarray(res["confusion"], dtype=float)
        z = cm / cm.sum(1, keepdims=True).clip(min=1) if normalise else cm
        fig = go.Figure(go.Heatmap(z=z, x=list(LABEL_NAMES), y=list(LABEL_NAMES), colorscale="Blues",
                                   text=[[f"{v:.2f}" if normalise else f"{int(v)}" for v in row] for row in z],
                                   texttemplate="%{text}", showscale=False))
        fig.update_layout(title=f"{name}<br><sup>{r.method_title} · visual: {r.visual_source} · acc {res['acc']:.3f}</sup>",
                          height=340, margin=dict(l=10, r=10, t=60, b=10))
        fig.update_xaxes(title="predicted")
        fig.update_yaxes(title="gold", autorange="reversed")
        with cols[i % len(cols)]:
            widgets.show_fig(fig, key=f"cm_{i}", name=f"{r.name}_{split}_confusion")
        for label, pc in res["per_class"].items():
            f1_rows.append({"run": name, "label": label, "f1": pc["f1"], "precision": pc["precision"],
                            "recall": pc["recall"], "support": pc["support"]})
    if f1_rows:
        per_class = pd.DataFrame(f1_rows)
        fig = px.bar(per_class, x="label", y="f1", color="run", barmode="group", color_discrete_sequence=figures.DISTINCT,
                     hover_data=["precision", "recall", "support"], title=f"Per-class F1 ({split})")
        fig.update_layout(height=360, margin=dict(l=10, r=10, t=50, b=10), yaxis_range=[0, 1])
        widgets.show_fig(fig, key="per_class_f1", name=f"per_class_f1_{split}")
        st.dataframe(per_class, hide_index=True, width="stretch")
