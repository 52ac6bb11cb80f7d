"""Shared app helpers: the runs-folder setting, run selection kept across pages, cached
readers keyed by run path + mtime, run badges and downloadable figures.

Everything here is presentation; the reading and computing lives in cmcs_core.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from cmcs_core.image_grid import grid_of
from cmcs_core.runs.reader import Run, RunReadError, default_runs_dir, load_run, run_stamp, scan_runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the app never downloads weights
os.environ.setdefault("TQDM_DISABLE", "1")
if Path("/usr/bin/chromium").is_file():
    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")  # kaleido's PNG export

ROOT = Path(__file__).resolve().parents[1]
PAGES_DIR = ROOT / "pages"
LABEL_COLORS = {"negative": "#d62728", "neutral": "#7f7f7f", "positive": "#2ca02c"}
PLAYGROUND_COMMAND = "python -m cmcs_core playground"
NONE = "(none)"
SELECTION = "_selection"  # session-state key: what the entry's sidebar chose on this rerun


def setup() -> None:
    st.set_page_config(page_title="CMCS lab", page_icon=":material/science:", layout="wide")


# -- runs folder and selection (drawn once per rerun by app/main.py) ------------------------
def runs_root() -> Path:
    """Sidebar setting, defaulting to $CMCS_RUNS_DIR or runs/."""
    st.session_state.setdefault("runs_dir", str(default_runs_dir()))
    st.sidebar.text_input("Runs folder", key="runs_dir", help="env CMCS_RUNS_DIR sets the default")
    return Path(st.session_state.runs_dir).expanduser()


@st.cache_data(show_spinner=False, ttl=10)
def _scan(root: str) -> tuple[list[Run], list[str]]:
    return scan_runs(root)


def run_label(run: Run) -> str:
    """Menu label: the run's name (its folder under the runs folder), method and visual source."""
    return f"{run.name} · {run.method_title} · visual: {run.visual_source}"


def seed_matched(run: Run, runs: list[Run]) -> list[Run]:
    """The finished runs of the selected run's grid cell that differ only in method: same folder,
    dataset, seed, text encoder and tuning — CMCS beside its baseline and ablations (Fig. 6)."""
    def cell(r: Run) -> tuple:
        c = r.cfg
        return (r.path.parent, r.dataset, c.train.seed, c.encoder.text_model, c.encoder.finetune_layers,
                c.train.lr, c.train.head_lr)

    return [r for r in runs if r.finished and cell(r) == cell(run)]


def _pick(label: str, key: str, options: list[str], names: dict[str, str]) -> str:
    """A sidebar selectbox whose state is its key; an invalid or missing value falls back to the first."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    return st.sidebar.selectbox(label, options, key=key, format_func=lambda p: names.get(p, p))


def sidebar() -> tuple[list[Run], Run | None, Run | None]:
    """Runs folder, the chosen run and an optional second run to compare (all pages share them).

    `?run=<folder relative to the runs folder>` selects a run (a bare folder name works when it is
    unique), so a page can be linked directly; the URL then follows the selection.
    """
    root = runs_root()
    runs, errors = _scan(str(root))
    for err in errors:
        st.sidebar.error(f"Skipped an unreadable run folder: {err}")
    if not runs:
        return [], None, None
    ids = {str(r.path): r.name for r in runs}
    names = {str(r.path): run_label(r) for r in runs}
    paths = list(ids)
    wanted = st.query_params.get("run")
    if wanted and st.session_state.get("_applied_query") != wanted:
        match = [p for p in paths if ids[p] == wanted] or [p for p in paths if Path(p).name == wanted]
        if len(match) == 1:
            st.session_state.run_path = match[0]
        elif match:
            st.sidebar.warning(f"`?run={wanted}` names {len(match)} runs; give its path relative to the runs folder.")
        else:
            st.sidebar.warning(f"`?run={wanted}`: no such run under {root}.")
    run_path = _pick("Run", "run_path", paths, names)
    other = _pick("Compare with", "compare_path", [NONE] + [p for p in paths if p != run_path], names)
    st.query_params["run"] = st.session_state._applied_query = ids[run_path]
    by_path = {str(r.path): r for r in runs}
    return runs, by_path[run_path], by_path.get(other)


def remember_selection(selection: tuple[list[Run], Run | None, Run | None]) -> None:
    st.session_state[SELECTION] = selection


def selection() -> tuple[list[Run], Run | None, Run | None]:
    """What the entry's sidebar chose on this rerun (pages run only through app/main.py)."""
    if SELECTION not in st.session_state:
        st.error("Open the app through its entry: `streamlit run app/main.py`.")
        st.stop()
    return st.session_state[SELECTION]


def require_run() -> tuple[list[Run], Run, Run | None]:
    """The selection, or stop the page with the command that makes a first run."""
    runs, run, other = selection()
    if run is None:
        no_runs_message()
        st.stop()
    badge(run)
    return runs, run, other


def no_runs_message() -> None:
    root = st.session_state.get("runs_dir", str(default_runs_dir()))
    st.warning(f"No runs found under `{root}`.")
    st.markdown(
        "Make the playground run (a synthetic dataset with planted spurious words and image cues, "
        "trained in a few minutes on a CPU), then reload this page:\n\n"
        f"```bash\n{PLAYGROUND_COMMAND} --runs-dir {root}\n```\n"
        "or start the app with `scripts/run_app.sh`, which does that first. With the Twitter "
        "benchmark on disk, `python -m cmcs_core train --method cmcs` trains a real run."
    )


def badge(run: Run) -> None:
    """Which run, and what its visual branch read, shown above every result."""
    m = run.metrics or {}
    acc = m.get("test", {}).get("acc")
    st.caption(f"**Run** `{run.name}` · method **{run.method_title}** · dataset **{run.dataset}** · "
               f"text **{run.cfg.encoder.text_model}** · visual source **{run.visual_source}** · seed "
               f"{run.cfg.train.seed}" + (f" · test acc {acc:.3f}" if acc is not None else ""))
    random_warning(run)
    if not run.finished:
        st.warning(f"`{run.name}` is unfinished (no metrics.json yet): some views are empty.")


def random_warning(run: Run) -> None:
    if run.random_visual:
        st.error(f"⚠️ `{run.name}` used a RANDOMLY INITIALISED CLIP checkpoint "
                 f"({run.cfg.encoder.visual_model}): its visual features are meaningless noise. "
                 "Do not read anything into its visual results.")


# -- cached readers: keyed by path + mtime so a rewritten run is read again -----------------
def stamp(run: Run) -> float:
    return run_stamp(run.path)


@st.cache_data(show_spinner=False, max_entries=32)
def _predictions(path: str, split: str, _stamp: float) -> pd.DataFrame:
    return load_run(path).predictions(split)


@st.cache_data(show_spinner=False, max_entries=16)
def _batches(path: str, _stamp: float) -> pd.DataFrame:
    return load_run(path).batches()


@st.cache_data(show_spinner=False, max_entries=16)
def _epochs(path: str, _stamp: float) -> pd.DataFrame:
    return load_run(path).epochs()


@st.cache_data(show_spinner=False, max_entries=16)
def _masks(path: str, split: str, _stamp: float) -> dict:
    return load_run(path).masks(split)


def _or_error(read, *args):
    """A cached reader's result, or None with the reader's error shown."""
    try:
        return read(*args)
    except RunReadError as err:
        st.error(str(err))
        return None


def predictions(run: Run, split: str = "test") -> pd.DataFrame | None:
    return _or_error(_predictions, str(run.path), split, stamp(run))


def batches(run: Run) -> pd.DataFrame | None:
    return _or_error(_batches, str(run.path), stamp(run))


def epochs(run: Run) -> pd.DataFrame | None:
    return _or_error(_epochs, str(run.path), stamp(run))


def masks(run: Run, split: str = "test") -> dict | None:
    return _or_error(_masks, str(run.path), split, stamp(run))


# -- figures -------------------------------------------------------------------------------
def _png(fig: go.Figure) -> bytes:
    return fig.to_image(format="png", scale=2)


def show_fig(fig: go.Figure, key: str, name: str | None = None, **chart_kwargs):
    """A plotly chart with HTML and PNG downloads (PNG is made on click via kaleido + chromium)."""
    event = st.plotly_chart(fig, key=key, **chart_kwargs)
    name = name or key
    row = st.container(horizontal=True)
    row.download_button("HTML", data=lambda: fig.to_html(include_plotlyjs=True, full_html=True), icon="⬇️",
                        file_name=f"{name}.html", mime="text/html", key=f"{key}_html", on_click="ignore",
                        type="tertiary", help="interactive figure, works offline")
    row.download_button("PNG", data=lambda: _png(fig), file_name=f"{name}.png", mime="image/png", icon="⬇️",
                        key=f"{key}_png", on_click="ignore", type="tertiary",
                        help="rendered on click by kaleido with the system chromium; HTML always works")
    return event


# -- mask / attribution colour scales: one rule for every page -----------------------------
# Absolute by default: masks on 0..1 (what MFS lets through), signed values (attributions, what
# the mask does) on -1..1 (they are probability differences). A contrast view stretches the
# colours to the values shown; it is only drawn when chosen, and says so with the spread.
SCALE_OPTIONS = ("absolute", "contrast")


def scale_picker(key: str) -> bool:
    """The colour-scale choice of one view; True = contrast (stretched to the values shown)."""
    choice = st.radio("Colour scale", SCALE_OPTIONS, key=key, horizontal=True,
                      format_func=lambda o: "absolute (mask 0…1, Δp −1…1)" if o == "absolute"
                      else "contrast (stretched to the values shown)",
                      help="Absolute: the same colours mean the same values on every sample and run. Contrast: "
                           "the colours span only the values shown, so tiny differences look large; the spread "
                           "is printed with it.")
    return choice == "contrast"


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


def label_name(i) -> str:
    from cmcs_core.data.tsv import LABEL_NAMES

    return LABEL_NAMES[int(i)] if pd.notna(i) else "–"


# -- one sample, shown the same way on every page ------------------------------------------
_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:=")


def md(text: str) -> str:
    """User or dataset text made literal for st.markdown: a tweet starting with `#` stays a tweet,
    not a heading; `:red[…]`, `$…$`, tables and links in it are shown as typed."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in str(text)).replace("\n", " ")


def highlight_target(tweet: str, target: str) -> str:
    """The tweet as Markdown with its $T$ slot shown as the highlighted target; both escaped."""
    slot = f"**:blue-background[{md(target)}]**"
    return slot.join(md(part) for part in str(tweet).split("$T$"))


def load_dataset_image(run: Run, image_id: str):
    """The sample's image from the run's image folder (pixels) or the dataset's images/, else None."""
    from cmcs_core.data.images import load_image

    folder = run.image_dir()
    if folder is None or not (folder / image_id).is_file():
        return None
    try:
        return load_image(folder / image_id)
    except ValueError:
        return None


def show_sample(run: Run, split: str, i: int, key: str) -> None:
    """Tweet with its target, gold vs predicted label, branch probabilities, image or caption, masks
    (absolute colour scale unless the contrast view is chosen)."""
    pred = predictions(run, split)
    m = masks(run, split)
    if pred is None or not 0 <= i < len(pred):
        st.error(f"sample {i} is not in {run.name}/{split}")
        return
    row = pred.iloc[i]
    gold, guess = label_name(row.label), label_name(row.pred)
    st.markdown(f"**\\#{md(row['index'])}** (line {row.line}, image {md(row.image_id)}) — "
                f"{highlight_target(str(row.tweet), str(row.target))}")
    st.markdown(f"gold **:{'green' if gold == 'positive' else 'red' if gold == 'negative' else 'gray'}[{gold}]** · "
                f"predicted **{guess}** {'✓' if row.pred == row.label else '✗ (wrong)'} · fusion weight s = {row.s:.3f} · "
                f"visual source: {run.visual_source}")
    probs = {b: [float(row[f"p_{b}_{n}"]) for n in LABEL_COLORS] for b in ("text", "image", "final")
             if f"p_{b}_negative" in row}
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(prob_bars(probs, "branch probabilities"), key=f"{key}_probs")
    entry = m["samples"][i] if m and i < len(m["samples"]) else None
    image = load_dataset_image(run, str(row.image_id))
    contrast = scale_picker(f"{key}_scale") if entry else False
    with right:
        if image is not None:
            grid = grid_of(entry.get("visual_mask", []), m.get("grid")) if entry else None
            if grid is not None:
                st.plotly_chart(grid_overlay(image, grid, "visual mask on the image grid (low = suppressed)",
                                             contrast=contrast), key=f"{key}_grid")
            else:
                st.image(image, caption=f"image {row.image_id}", width=260)
        if entry and entry.get("caption"):
            st.markdown(f"**caption** (the visual input of this run): _{md(entry['caption'])}_")
    if entry:
        st.plotly_chart(token_heatmap(entry["tokens"], entry["mask"], "text mask per token (low = suppressed)",
                                      contrast=contrast), key=f"{key}_tmask")
        if entry.get("visual_tokens"):
            st.plotly_chart(token_heatmap(entry["visual_tokens"], entry["visual_mask"],
                                          "visual mask per caption token", contrast=contrast), key=f"{key}_vmask")


MASK_EFFECT_HELP = (
    "**What the mask does**: for each token (or image cell), Δp = p(label | every token through its "
    "learned mask) − p(label | the same, but this one token let through raw, gate 1). It is the part of "
    "the prediction that the mask's intervention on that token is responsible for: 0 = the mask's "
    "gate on it changes nothing, red = the intervention pushes towards the label, blue = away from it. "
    "A low mask value with Δp ≈ 0 suppressed features the model did not use anyway. "
    "`cmcs_core.explain.mask_effects`."
)


@st.cache_resource(show_spinner="Loading the run's encoders and checkpoint…", max_entries=3)
def _predictor(path: str, _stamp: float, threads: int):
    import torch

    from cmcs_core.inference import Predictor

    torch.set_num_threads(threads)
    return Predictor(path, device="cpu")


def predictor(run: Run, threads: int = 1):
    """The run's Predictor, loaded once per checkpoint (one thread: see bench/bench_app.py)."""
    return _predictor(str(run.path), stamp(run), threads)


@st.cache_data(show_spinner="Measuring what the mask does to each token…", max_entries=64)
def _sample_mask_effects(path: str, _stamp: float, split: str, i: int) -> dict:
    from cmcs_core.explain import input_batch, mask_effects

    run = load_run(path)
    row = run.predictions(split).iloc[i]
    entry = run.masks(split)["samples"][i]
    pred = predictor(run)
    image = load_dataset_image(run, str(row.image_id)) if pred.needs_image else None
    if pred.needs_image and image is None:
        raise ValueError(f"image {row.image_id} is not in the run's image folder")
    batch = input_batch(pred, str(row.tweet), str(row.target), entry.get("caption"), image)
    return mask_effects(pred.model, batch, int(row.pred))


def sample_mask_effects(run: Run, split: str, i: int) -> dict | None:
    """What the mask does on one sample of a run's split (needs the checkpoint), or None + a note."""
    if not run.has_checkpoint:
        st.info("What the mask does needs the run's checkpoint (best.safetensors); this folder has none.")
        return None
    try:
        return _sample_mask_effects(str(run.path), stamp(run), split, i)
    except (OSError, ValueError, RuntimeError) as err:
        st.error(f"Cannot measure what the mask does on this sample: {err}")
        return None


def show_mask_effects(effect: dict, tokens: list[str], key: str, contrast: bool, visual_tokens: list[str] | None = None,
                      grid=None, image=None) -> None:
    """Δp per text token, and per caption token or image cell, drawn on the shared colour rule."""
    label = effect.get("target", "label")
    st.plotly_chart(token_heatmap(tokens, effect["text"], f"what the text mask does: Δp({label}) per token",
                                  label="Δp", signed=True, contrast=contrast), key=f"{key}_text")
    if "visual" in effect:
        cells = grid_of(effect["visual"], grid)
        if cells is not None and image is not None:
            st.plotly_chart(grid_overlay(image, cells, f"what the visual mask does: Δp({label}) per cell",
                                         signed=True, contrast=contrast), key=f"{key}_visual")
        elif visual_tokens:
            st.plotly_chart(token_heatmap(visual_tokens, effect["visual"], f"what the visual mask does: Δp({label}) "
                                          "per caption token", label="Δp", signed=True, contrast=contrast),
                            key=f"{key}_visual")
    big = max(((abs(v), t) for v, t in zip(effect["text"], tokens)), default=(0.0, ""))
    st.caption(MASK_EFFECT_HELP + f" p({label}) with the masks: {effect['p_masked']:.3f}; largest |Δp| on a "
               f"text token: {big[0]:.4f} (`{big[1]}`).")


def require_splits(run: Run) -> list[str]:
    """The splits with per-sample outputs (masks, features), or stop the page with a warning."""
    splits = run.splits()
    if not splits:
        st.warning("This run has no per-sample outputs yet.")
        st.stop()
    return splits
