"""Training dynamics: per-batch causal effects and scheduling weights (paper Fig. 4), alpha and
beta, losses, dev accuracy per epoch, effect against weight."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app import data, figures, glossary, widgets
from cmcs_core.command import cli_command
from cmcs_core.runs.files import BATCHES_FILE

st.title("Training dynamics")
runs, run, other = widgets.require_run()
st.caption(f"The words of this page — {glossary.link('scheduling', 'causal effect, scheduling weight φ')}, "
           f"{glossary.link('levels', 'lower (inner) and upper (outer) level')}, "
           f"{glossary.link('splits', 'dev (validation)')} — are in the Glossary.")
batches = data.batches(run) if data.has_table(run, "batches") else None
epochs = data.epochs(run) if data.has_table(run, "epochs") else None
if batches is None or batches.empty:
    widgets.missing_output(run, f"per-batch log ({BATCHES_FILE})", "it is written at the end of each epoch")

has_visual = batches["eff_v"].notna().any()
uses_cms = run.cfg.model.use_cms
if not uses_cms:
    st.info(f"{run.method_title} has no causal scheduler: φ is fixed to 1 and α, β never move. "
            "The causal effects are still measured.")

all_epochs = sorted(int(e) for e in batches["epoch"].unique())
c1, c2 = st.columns([3, 1])
chosen = c1.multiselect("Epochs (paper Fig. 4 shows the first and the last)", all_epochs,
                        default=sorted({all_epochs[0], all_epochs[-1]}))
n_show = c2.number_input("Batches per epoch", 4, 500, 16, help="the paper shows 16")

def _shown(epoch: int) -> pd.DataFrame:
    return batches[batches.epoch == epoch].head(int(n_show))


def _span(columns: list[str], floor: float) -> tuple[float, float] | None:
    """One range over every chosen epoch, so panels side by side share their axes (at least `floor` wide)."""
    vals = pd.concat([_shown(e)[c] for e in chosen for c in columns if c in batches]).to_numpy(dtype=float)
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return None
    lo, hi = float(vals.min()), float(vals.max())
    mid, half = (lo + hi) / 2, max(hi - lo, floor) * 0.55
    return mid - half, mid + half


def fig4(epoch: int) -> go.Figure:
    """Bars: causal effect per batch; lines: the scheduling weight it produced."""
    rows = _shown(epoch)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    branches = [("t", "text", "#1f77b4")] + ([("v", "visual", "#ff7f0e")] if has_visual else [])
    for key, name, color in branches:
        fig.add_trace(go.Bar(x=rows.step, y=rows[f"eff_{key}"], name=f"effect {name}", marker_color=color,
                             opacity=0.55), secondary_y=False)
        fig.add_trace(go.Scatter(x=rows.step, y=rows[f"phi_{key}"], name=f"φ {name}", mode="lines+markers",
                                 line=dict(color=color)), secondary_y=True)
    # effect = 1: the mask neither helps nor hurts. A legend entry, not a label drawn over the bars.
    fig.add_trace(go.Scatter(x=[rows.step.min() - 0.5, rows.step.max() + 0.5], y=[1.0, 1.0], mode="lines",
                             name="effect = 1 (no effect)", line=dict(color="gray", dash="dot"),
                             hoverinfo="skip"), secondary_y=False)
    fig.update_layout(title=f"Epoch {epoch}: causal effect and scheduling weight per batch", barmode="group",
                      height=420, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    fig.update_xaxes(title="batch in epoch")
    fig.update_yaxes(title="causal effect exp(L_raw − L_masked)", secondary_y=False, tickformat=".2f")
    # One range for every panel shown (effects and φ each); round ticks; a flat φ drawn flat: its axis spans at
    # least 0.1, so a change in the 4th decimal does not fill the panel.
    keys = [k for k, _, _ in branches]
    effects = _span([f"eff_{k}" for k in keys], 0.1)
    if effects is not None:
        fig.update_yaxes(range=[min(effects[0], 0.95), max(effects[1], 1.05)], secondary_y=False)
    fig.update_yaxes(title="scheduling weight φ", secondary_y=True, tickformat=".2f", showgrid=False)
    phis = _span([f"phi_{k}" for k in keys], 0.1)
    if phis is not None:
        lo, hi = phis
        step = next(d for d in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, float("inf")) if (hi - lo) / d <= 6)
        fig.update_yaxes(secondary_y=True, tick0=0, dtick=step, range=[lo, hi])
    return fig

cols = st.columns(2) if len(chosen) > 1 else [st.container()]
for i, ep in enumerate(chosen):
    with cols[i % len(cols)]:
        widgets.show_fig(fig4(ep), key=f"fig4_{ep}", name=f"{run.name}_fig4_epoch{ep}")

st.subheader("Scheduler parameters α, β over training")
phi = batches.melt(id_vars=["global_step"], value_vars=["alpha"] + (["beta"] if has_visual else []),
                   var_name="parameter", value_name="value")
fig = px.line(phi, x="global_step", y="value", color="parameter")
hyper = batches.dropna(subset=["hypergrad_norm"])
if not hyper.empty:
    fig.add_trace(go.Scatter(x=hyper.global_step, y=hyper.alpha, mode="markers", name="upper-level step",
                             marker=dict(size=6, symbol="x", color="black")))
fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10))
widgets.show_fig(fig, key="alpha_beta", name=f"{run.name}_alpha_beta")

st.subheader("Losses")
smooth = st.slider("Smoothing (batches)", 1, 50, 5)
loss_cols = [c for c in ("loss", "L_t", "L_v") if batches[c].notna().any()]
losses = batches[["global_step"] + loss_cols].set_index("global_step").rolling(smooth, min_periods=1).mean()
fig = px.line(losses.reset_index().melt(id_vars="global_step", var_name="loss", value_name="value"),
              x="global_step", y="value", color="loss")
fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10))
widgets.show_fig(fig, key="losses", name=f"{run.name}_losses")

st.subheader("Accuracy per epoch")
if epochs is not None and not epochs.empty:
    frames = [epochs.assign(run=run.name)]
    if other is not None:
        theirs = data.epochs(other)
        if theirs is not None:
            frames.append(theirs.assign(run=other.name))
    acc = pd.concat(frames)
    value_cols = [c for c in ("dev_acc", "test_acc", "dev_f1") if c in acc]
    long = acc.melt(id_vars=["epoch", "run"], value_vars=value_cols, var_name="metric", value_name="value")
    # one colour per metric, one dash per run: every line tells itself apart
    two = other is not None and long.run.nunique() > 1
    fig = px.line(long, x="epoch", y="value", color="metric", line_dash="run" if two else None,
                  symbol="run" if two else None, markers=True,
                  color_discrete_map={"dev_acc": "#1f77b4", "test_acc": "#ff7f0e", "dev_f1": "#2ca02c"})
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0, title_text=""))
    fig.update_xaxes(dtick=1)
    widgets.show_fig(fig, key="dev_acc", name=f"{run.name}_accuracy")
    st.caption("Model selection uses dev accuracy; the checkpoint of the best dev epoch is the one evaluated.")

st.subheader("Effect against weight")
pts = [batches.assign(branch="text", effect=batches.eff_t, weight=batches.phi_t)]
if has_visual:
    pts.append(batches.assign(branch="visual", effect=batches.eff_v, weight=batches.phi_v))
pts = pd.concat(pts)
fig = px.scatter(pts, x="effect", y="weight", color="epoch", facet_col="branch", opacity=0.7,
                 hover_data=["global_step"], color_continuous_scale="Viridis")
fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10))
widgets.show_fig(fig, key="effect_weight", name=f"{run.name}_effect_vs_weight")
st.caption("Within an epoch, batches with a larger causal effect get a larger weight (φ = softplus(α·effect)); "
           "the paper reads this as the scheduler prioritising samples whose selected features help.")

# -- the selection machinery: does the mask move, does the upper level ask for anything ---------------
st.subheader("Does the selection machinery engage?")
MACHINERY = {  # panel -> (columns, y title, y range or "log"), runs logged before these columns lack them
    "Gradient norms per batch (lower level)": (["grad_norm", "mask_grad_norm"], "norm (log)", "log"),
    "Text gates per batch": (["mask_mean", "mask_token_std"], "gate (absolute 0…1)", (0.0, 1.0)),
    "Upper level, per upper step": (["dev_train_cos"], "cos(∇L_dev, ∇L_train)", (-1.0, 1.0)),
    "Upper level: what it asks of the mask": (["hypergrad_mask_norm", "hypergrad_norm"], "norm (log)", "log"),
    "Counterfactual dev rows": (["dev_invariance", "dev_L_t_edited"], "loss", None),
    "Curvature and Neumann step": (["hessian_top_eig", "neumann_eta"], "value (log)", "log"),
}
pair = [r for r in (run, other) if r is not None]
logs = {r.name: (batches if r is run else data.batches(r)) for r in pair}
logs = {name: b for name, b in logs.items() if b is not None and not b.empty}
shown_any = False
for title, (columns, y_title, y_range) in MACHINERY.items():
    panels = {}
    for name, b in logs.items():
        series = []
        for col in columns:
            if col in b and b[col].notna().any():  # a column a run never logged, or NaN where not taken: not drawn
                part = b.dropna(subset=[col])
                series.append((col, part.global_step.tolist(), part[col].tolist()))
        if series:
            panels[name] = series
    if not panels:
        continue
    shown_any = True
    fig = figures.shared_y_panels(panels, title, y_title, log_y=y_range == "log")
    if isinstance(y_range, tuple):
        fig.update_yaxes(range=list(y_range))
    widgets.show_fig(fig, key=f"machinery_{columns[0]}", name=f"{run.name}_{columns[0]}")
if not shown_any:
    st.info(f"`{run.name}` was logged before the machinery columns existed (grad_norm, mask_grad_norm, mask_mean, "
            "…): retrain it to see whether its mask moves and what the upper level asks for.")
summary, why = data.machinery(run)
if summary is not None:
    from cmcs_core.report.machinery import COLUMNS

    rows = [{"figure": COLUMNS[k][0], "value": COLUMNS[k][1].format(v)} for k, v in summary.items()
            if k in COLUMNS and isinstance(v, (int, float)) and np.isfinite(v)]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption(f"`{cli_command('analyse', 'machinery', run.path)}` (cmcs_core.report.machinery): medians over the run. Near 1, "
               "cos(∇L_dev, ∇L_train) says the upper level asks for nothing but fitting the training loss more; gates "
               "near 0.5 with a small spread over tokens are a mask that does not choose.")
elif why and shown_any:
    st.caption(f"No machinery summary: {why}")
