"""Plotly figures shared by the pages; no Streamlit here.

Colour rule for every page: masks on 0..1 (what MFS lets through), signed values (attributions,
what the mask does) on -1..1 (they are probability differences). A contrast view stretches the
colours to the values shown; it is only drawn when chosen, and says so with the spread.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


LABEL_COLORS = {"negative": "#d62728", "neutral": "#7f7f7f", "positive": "#2ca02c"}


def _png(fig: go.Figure) -> bytes:
    return fig.to_image(format="png", scale=2)


def colour_range(values, signed: bool, contrast: bool) -> tuple[float, float, str]:
    """zmin, zmax and the line that says which scale is drawn and how far the values spread."""
    vals = np.asarray(values, dtype=float).ravel()
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 0.0)
    spread = f"values {lo:.3f} … {hi:.3f} (spread {hi - lo:.3f})"
    if not contrast:
        return (-1.0, 1.0, f"absolute scale −1…1 · {spread}") if signed else (0.0, 1.0, f"absolute scale 0…1 · {spread}")
    if signed:
        bound = max(abs(lo), abs(hi), 1e-9)
        return -bound, bound, f"CONTRAST VIEW: colours stretched to ±{bound:.3f} · {spread}"
    pad = 1e-9 if hi - lo < 1e-9 else 0.0
    return lo - pad, hi + pad, f"CONTRAST VIEW: colours stretched to {lo:.3f}…{hi:.3f} · {spread}"


def token_heatmap(tokens: list[str], values: list[float], title: str, label: str = "mask",
                  signed: bool = False, contrast: bool = False) -> go.Figure:
    """One row of tokens coloured by a per-token value: a mask (0..1, red = suppressed) or a
    signed probability change (attribution, what the mask does; red = towards the label)."""
    x = [f"{i}:{t}" for i, t in enumerate(tokens)]
    zmin, zmax, note = colour_range(values, signed, contrast)
    fig = go.Figure(go.Heatmap(z=[values], x=x, y=[label], colorscale="RdBu_r" if signed else "RdBu",
                               zmin=zmin, zmax=zmax, text=[list(tokens)], texttemplate="%{text}",
                               textfont={"size": 11},
                               hovertemplate="%{x}<br>" + label + " %{z:.4f}<extra></extra>"))
    fig.update_layout(title=f"{title}<br><sup>{note}</sup>", height=210, margin=dict(l=10, r=10, t=60, b=10))
    fig.update_xaxes(showticklabels=False)
    return fig


def grid_overlay(image, grid_values: np.ndarray, title: str, signed: bool = False,
                 contrast: bool = False) -> go.Figure:
    """A per-cell value over the image's feature grid, drawn semi-transparent on the image
    (same colour rule as token_heatmap)."""
    h, w = grid_values.shape
    img = np.asarray(image.convert("RGB").resize((224, 224)))
    zmin, zmax, note = colour_range(grid_values, signed, contrast)
    fig = go.Figure(go.Image(z=img))
    fig.add_trace(go.Heatmap(z=grid_values, x0=224 / w / 2, dx=224 / w, y0=224 / h / 2, dy=224 / h,
                             colorscale="RdBu_r" if signed else "RdBu", zmin=zmin, zmax=zmax, opacity=0.55,
                             hovertemplate="cell (%{y:.0f}, %{x:.0f})<br>%{z:.4f}<extra></extra>"))
    fig.update_layout(title=f"{title}<br><sup>{note}</sup>", height=380, width=400,
                      margin=dict(l=10, r=10, t=60, b=10))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def prob_bars(probs: dict[str, list[float]], title: str) -> go.Figure:
    """Grouped bars: one group per label, one bar per branch (text, image, final)."""
    from cmcs_core.data.tsv import LABEL_NAMES

    fig = go.Figure()
    for branch, p in probs.items():
        fig.add_trace(go.Bar(name=branch, x=list(LABEL_NAMES), y=p, text=[f"{v:.2f}" for v in p],
                             textposition="outside"))
    fig.update_layout(title=title, barmode="group", yaxis_range=[0, 1.1], height=320,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig
