"""Plotly figures shared by the pages; no Streamlit here.

Colour rule for every page: masks on 0..1 (what MFS lets through), signed values (attributions,
what the mask does) on -1..1 (they are probability differences). A contrast view stretches the
colours to the values shown; it is only drawn when chosen, and says so with the spread.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
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


TOKENS_PER_ROW = 16  # a long tweet wraps onto more rows instead of squeezing its words into each other


def shown_token(token: str) -> str:
    """A token as plotly draws it: `<s>` and `</s>` (MPNet's specials) are HTML to plotly and came out
    blank, so the brackets are escaped."""
    return token.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def token_heatmap(tokens: list[str], values: list[float], title: str, label: str = "mask",
                  signed: bool = False, contrast: bool = False) -> go.Figure:
    """Tokens coloured by a per-token value, TOKENS_PER_ROW per row: a mask (0..1, red = suppressed)
    or a signed probability change (attribution, what the mask does; red = towards the label)."""
    zmin, zmax, note = colour_range(values, signed, contrast)
    n_rows = max(1, -(-len(tokens) // TOKENS_PER_ROW))
    z, text, hover = [], [], []
    for r in range(n_rows):
        part = range(r * TOKENS_PER_ROW, min(len(tokens), (r + 1) * TOKENS_PER_ROW))
        pad = TOKENS_PER_ROW - len(part)
        z.append([float(values[i]) for i in part] + [None] * pad)
        text.append([shown_token(tokens[i]) for i in part] + [""] * pad)
        hover.append([f"{i}:{shown_token(tokens[i])}" for i in part] + [""] * pad)
    fig = go.Figure(go.Heatmap(z=z, y=[f"{label} {r * TOKENS_PER_ROW}–" for r in range(n_rows)],
                               colorscale="RdBu_r" if signed else "RdBu", zmin=zmin, zmax=zmax, text=text,
                               texttemplate="%{text}", textfont={"size": 11}, customdata=hover, xgap=1, ygap=2,
                               hovertemplate="%{customdata}<br>" + label + " %{z:.4f}<extra></extra>"))
    fig.update_layout(title=f"{title}<br><sup>{note}</sup>", height=130 + 45 * n_rows,
                      margin=dict(l=10, r=10, t=60, b=10))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(autorange="reversed", showticklabels=n_rows > 1)
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


# Categorical colours for many series (runs, regimes, methods): distinct hues, never reused before they run out
# (Streamlit's own theme cycles a short palette of blues and reds).
DISTINCT = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#000000")
PALETTE = ("#7f7f7f", "#1f77b4", "#d62728", "#9467bd", "#ff7f0e", "#2ca02c", "#8c564b", "#e377c2")  # one per run


def wrap(label: str, width: int = 18) -> str:
    """A long axis label on several lines (plotly does not wrap)."""
    lines, line = [], ""
    for word in label.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join(lines + [line])


def percent_bars(groups: list[str], series: dict[str, list[float | None]], title: str, y_title: str,
                 errors: dict[str, list[tuple[float, float] | None]] | None = None,
                 codes: list[str] | None = None) -> go.Figure:
    """Grouped bars of fractions drawn as percent on 0..100 (one trace per run or method), with the 95%
    interval as whiskers where given; each bar's value is printed above its whisker (not on the cap), and its
    hover gives the interval. `codes` names each group's code name in the hover. A missing value is left
    out, never drawn as 0."""
    fig = go.Figure()
    x = [wrap(g) for g in groups]
    for n, (name, values) in enumerate(series.items()):
        y = [None if v is None or not np.isfinite(v) else 100 * v for v in values]
        spans = [None if e is None or v is None else (100 * e[0], 100 * e[1])
                 for e, v in zip((errors or {}).get(name) or [None] * len(y), y)]
        error_y = None
        if any(spans):
            error_y = dict(type="data", symmetric=False, array=[None if s is None else s[1] - v for s, v in zip(spans, y)],
                           arrayminus=[None if s is None else v - s[0] for s, v in zip(spans, y)])
        hover = [None if v is None else f"{g}{f' ({codes[i]})' if codes else ''}: {v:.1f}%"
                 + ("" if spans[i] is None else f" (95% interval {spans[i][0]:.1f}–{spans[i][1]:.1f}%)")
                 for i, (g, v) in enumerate(zip(groups, y))]
        colour = PALETTE[n % len(PALETTE)]
        fig.add_trace(go.Bar(name=name, x=x, y=y, marker_color=colour, error_y=error_y, offsetgroup=name,
                             hovertext=hover, hovertemplate="%{hovertext}<extra>" + name + "</extra>"))
        fig.add_trace(go.Scatter(  # the value above the whisker's cap, where it can be read
            x=x, y=[None if v is None else (v if s is None else s[1]) for s, v in zip(spans, y)], mode="text",
            text=[None if v is None else f"{v:.0f}%" for v in y], textposition="top center", offsetgroup=name,
            textfont=dict(color=colour), showlegend=False, hoverinfo="skip", cliponaxis=False))
    fig.update_layout(barmode="group", scattermode="group", title=title, height=400, margin=dict(l=10, r=10, t=50, b=10),
                      yaxis=dict(range=[0, 108], title=y_title, ticksuffix="%"),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    return fig


def interval_table(groups: list[str], series: dict[str, list[float | None]],
                   errors: dict[str, list[tuple[float, float] | None]], what: str) -> str:
    """The bars of percent_bars as a Markdown table: each fraction as a percent with its 95% interval."""
    def cell(v, e) -> str:
        if v is None or not np.isfinite(v):
            return "–"
        return f"{100 * v:.0f}%" + ("" if e is None else f" ({100 * e[0]:.0f}–{100 * e[1]:.0f})")

    lines = [f"| {what} | " + " | ".join(g.replace("|", "\\|") for g in groups) + " |",
             "|---" * (len(groups) + 1) + "|"]
    for name, values in series.items():
        spans = errors.get(name) or [None] * len(values)
        lines.append(f"| {name.replace('|', '/')} | " + " | ".join(cell(v, e) for v, e in zip(values, spans)) + " |")
    return "\n".join(lines)


def role_bars(roles: list[str], series: dict[str, list[float | None]], title: str) -> go.Figure:
    """Mask value by word role, one bar group per role and one bar per run, on the absolute 0..1 scale
    (0.5 is a gate that does not choose)."""
    fig = go.Figure()
    for n, (name, values) in enumerate(series.items()):
        y = [None if v is None or not np.isfinite(v) else v for v in values]
        fig.add_trace(go.Bar(name=name, x=roles, y=y, marker_color=PALETTE[n % len(PALETTE)],  # small gates: 4 places
                             text=[None if v is None else f"{v:.3f}" if v >= 0.01 else f"{v:.4f}" for v in y],
                             textposition="outside",
                             hovertemplate="%{x}: %{y:.4f}<extra>" + name + "</extra>"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="grey")  # a gate at 0.5 does not choose (the caption says so)
    fig.update_layout(barmode="group", title=title, height=400, margin=dict(l=10, r=10, t=50, b=10),
                      yaxis=dict(range=[0, 1.08], title="mean gate (absolute 0…1)"),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return fig


def word_bars(words, column: str, title: str, colour: str | None, log: bool, floor: float,
              y_range: tuple[float, float] | None) -> go.Figure:
    """Words as bars of a mask value (`column` of the word table), coloured by the label they go with in
    training; on a log axis a value below `floor` (0 as stored) is drawn at the floor, its hover says so."""
    import plotly.express as px

    shown = words.assign(drawn=words[column].clip(lower=floor) if log else words[column],
                         value=[f"< {floor:g}" if log and v < floor else f"{v:.4f}" for v in words[column]])
    fig = px.bar(shown, x="word", y="drawn", color=colour, color_discrete_map=LABEL_COLORS, log_y=log,
                 hover_data={"value": True, "drawn": False, **{c: True for c in ("count", "lift", "train_count")
                                                             if c in words}},
                 category_orders={"word": list(words["word"])}, title=title)
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=70, b=10), xaxis_tickangle=-45)
    fig.update_yaxes(title=column.replace("_", " "))
    if log:  # bars start below the floor, so a word drawn at the floor still shows
        ticks = [10.0 ** k for k in range(int(np.floor(np.log10(floor))), 1)]
        fig.update_yaxes(range=[np.log10(floor) - 0.3, 0.02], tickvals=ticks,
                         ticktext=[f"≤ {t:g}" if t == ticks[0] else f"{t:g}" for t in ticks])
    elif y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return fig


def gate_bars(tokens: list[str], values: list[float], title: str, highlight: dict[int, str] | None = None) -> go.Figure:
    """Per-token gates sorted from the most suppressed to the most kept, on the absolute 0..1 axis;
    `highlight` names the role of some positions (the planted word, the target) in the bar's colour."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    roles = highlight or {}
    colours = {"planted word": "#d62728", "target": "#1f77b4", "sentiment word": "#2ca02c"}
    fig = go.Figure(go.Bar(
        x=[f"{i}:{tokens[i]}" for i in order], y=[values[i] for i in order],
        marker_color=[colours.get(roles.get(i, ""), "#7f7f7f") for i in order],
        customdata=[roles.get(i, "") for i in order],
        hovertemplate="%{x}<br>gate %{y:.4f} %{customdata}<extra></extra>"))
    vals = np.asarray(values, dtype=float)
    spread = f"values {vals.min():.3f} … {vals.max():.3f} (spread {vals.max() - vals.min():.3f})" if len(vals) else ""
    fig.update_layout(title=f"{title}<br><sup>absolute scale 0…1, sorted · {spread}</sup>", height=330,
                      margin=dict(l=10, r=10, t=60, b=10), yaxis=dict(range=[0, 1], title="gate"), xaxis_tickangle=-60)
    return fig


def shared_y_panels(frames: dict[str, list[tuple[str, list, list]]], title: str, y_title: str,
                    log_y: bool = False) -> go.Figure:
    """Side-by-side line panels (one per key) sharing one y axis: [(series name, x, y), ...] per panel."""
    from plotly.subplots import make_subplots

    names = list(frames)
    fig = make_subplots(rows=1, cols=max(1, len(names)), shared_yaxes=True, subplot_titles=names,
                        horizontal_spacing=0.04)
    seen = set()
    for col, name in enumerate(names, start=1):
        for n, (series, x, y) in enumerate(frames[name]):
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=series, legendgroup=series,
                                     showlegend=series not in seen, marker=dict(size=4),
                                     line=dict(color=PALETTE[(n + 1) % len(PALETTE)])), row=1, col=col)
            seen.add(series)
    fig.update_layout(title=title, height=340, margin=dict(l=10, r=10, t=60, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    fig.update_xaxes(title_text="global step")
    return fig


def seed_bars(frame: pd.DataFrame, methods: dict[str, tuple[str, str]], groups: list[str], title: str, y_title: str,
              height: int = 400, axis: dict[str, str] | None = None) -> go.Figure:
    """Grouped bars of a percent per method and group: the mean over seeds, whiskers the per-seed 95% intervals
    averaged, and every seed as a black dot over its bar (the spread the mean hides).

    frame: one row per (method, group, seed), columns method, group, value, lo, hi, seed (percent); a missing
    value is left out. methods: {method: (name, colour)} in legend order; groups: their order on the axis, each
    written there as `axis` says (the hover names the group itself)."""
    fig = go.Figure()
    axis = axis or {}
    for key, (name, colour) in methods.items():
        v = frame[frame.method == key].dropna(subset=["value"])
        if v.empty:
            continue  # nothing for this method: no empty legend entry
        g = v.groupby("group").agg(mean=("value", "mean"), lo=("lo", "mean"), hi=("hi", "mean"),
                                   seeds=("seed", "nunique")).reindex(groups)
        fig.add_trace(go.Bar(
            name=name, x=[axis.get(x, x) for x in groups], y=g["mean"], offsetgroup=key, marker_color=colour,
            error_y=dict(type="data", symmetric=False, array=g["hi"] - g["mean"], arrayminus=g["mean"] - g["lo"]),
            customdata=np.stack([g.lo, g.hi, g.seeds, groups], axis=-1),
            hovertemplate="%{customdata[3]}: %{y:.1f}% (95% interval %{customdata[0]:.1f}–%{customdata[1]:.1f}, "
                          "%{customdata[2]} seeds)<extra>" + name + "</extra>"))
        fig.add_trace(go.Scatter(
            x=[axis.get(x, x) for x in v.group], y=v.value, mode="markers", marker=dict(color="black", size=5),
            offsetgroup=key, showlegend=False, customdata=v.seed,
            hovertemplate="seed %{customdata}: %{y:.1f}%<extra></extra>"))
    fig.update_layout(barmode="group", scattermode="group", height=height, margin=dict(l=10, r=10, t=50, b=10),
                      title=title, yaxis=dict(range=[0, 100], title=y_title, ticksuffix="%"), legend_title="method")
    return fig


def paired_dots(differences: dict[str, pd.Series], title: str, y_title: str) -> go.Figure:
    """One column of dots per method: each seed's paired difference (labelled s<seed>), a bar at their mean, a
    dashed line at zero; the axis symmetric around zero."""
    fig = go.Figure()
    span = 1.0
    for name, diff in differences.items():
        span = max(span, float(diff.abs().max()))
        fig.add_trace(go.Scatter(x=[name] * len(diff), y=diff, mode="markers+text",
                                 text=[f"s{s}" for s in diff.index], textposition="middle right",
                                 marker=dict(size=10), name=name, showlegend=False,
                                 hovertemplate="seed %{text}: %{y:+.1f} points<extra></extra>"))
        fig.add_trace(go.Scatter(x=[name], y=[diff.mean()], mode="markers", showlegend=False,
                                 marker=dict(symbol="line-ew", size=30, line=dict(width=3, color="black")),
                                 hovertemplate=f"mean {diff.mean():+.1f} points<extra></extra>"))
    fig.add_hline(y=0, line_dash="dash", line_color="grey")
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10), title=title,
                      yaxis=dict(range=[-1.1 * span, 1.1 * span], title=y_title))
    return fig


def pair_forest(summary: pd.DataFrame, title: str, subject: str) -> go.Figure:
    """One row per figure of a seed_pairs.pair_summary part: each seed's difference as a dot, the mean as a bar,
    the 95% t-interval as a line (or "no interval" written on the row below three seeds). Turned so that right
    is in the subject's favour for every figure (fewer flips, more accuracy); the axis is symmetric around zero."""
    fig = go.Figure()
    span = 1.0
    rows = list(summary.itertuples())
    for y, r in enumerate(rows):
        diffs = r.favour
        span = max(span, *map(abs, diffs))
        if not np.isnan(r.favour_low):
            low, high = r.favour_low, r.favour_high
            span = max(span, abs(low), abs(high))
            fig.add_trace(go.Scatter(x=[low, high], y=[y, y], mode="lines", line=dict(width=8, color="rgba(31,119,180,0.35)"),
                                     showlegend=False, hovertemplate=f"95% t-interval {low:+.1f} … {high:+.1f}<extra></extra>"))
        else:
            fig.add_annotation(x=1, xref="paper", y=y, text=f"{len(diffs)} seed{'s' * (len(diffs) > 1)}: no interval",
                               showarrow=False, xanchor="right", font=dict(size=11, color="grey"))
        fig.add_trace(go.Scatter(x=diffs, y=[y] * len(diffs), mode="markers", name="seeds", text=[str(s) for s in r.seeds],
                                 marker=dict(size=9, color="black", opacity=0.7), showlegend=False,
                                 hovertemplate="seed %{text}: %{x:+.1f} points<extra></extra>"))
        fig.add_trace(go.Scatter(x=[r.favour_mean], y=[y], mode="markers", showlegend=False,
                                 marker=dict(symbol="line-ns", size=22, line=dict(width=3, color="#1f77b4")),
                                 hovertemplate=f"mean {r.favour_mean:+.1f} points · {r.says}<extra></extra>"))
    fig.add_vline(x=0, line_dash="dash", line_color="grey")
    fig.update_layout(height=90 + 48 * max(len(rows), 1), margin=dict(l=10, r=10, t=50, b=40), title=title,
                      xaxis=dict(range=[-1.1 * span, 1.1 * span],
                                 title=f"points in favour of {subject} (← worse with it | better with it →)"),
                      yaxis=dict(tickvals=list(range(len(rows))), ticktext=[r.title for r in rows], autorange="reversed"))
    return fig
