"""Shared views: figures with downloads, run badges, one sample shown the same way on every
page, the mask-effect view, the colour-scale picker and the Inspector's inputs (image upload, checked).
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import data, figures, glossary, state
from cmcs_core.command import cli_command
from cmcs_core.image_grid import grid_of
from cmcs_core.playground.story import is_playground
from cmcs_core.runs.files import CHECKPOINT_FILE, METRICS_FILE
from cmcs_core.report.regime import OptIn
from cmcs_core.runs.reader import Run, default_runs_dir


def show_fig(fig: go.Figure, key: str, name: str | None = None, **chart_kwargs):
    """A plotly chart with HTML and PNG downloads (PNG is made on click via kaleido + chromium)."""
    event = st.plotly_chart(fig, key=key, **chart_kwargs)
    name = name or key
    row = st.container(horizontal=True)
    row.download_button("HTML", data=lambda: fig.to_html(include_plotlyjs=True, full_html=True), icon="⬇️",
                        file_name=f"{name}.html", mime="text/html", key=f"{key}_html", on_click="ignore",
                        type="tertiary", help="interactive figure, works offline")
    row.download_button("PNG", data=lambda: figures._png(fig), file_name=f"{name}.png", mime="image/png", icon="⬇️",
                        key=f"{key}_png", on_click="ignore", type="tertiary",
                        help="rendered on click by kaleido with the system chromium; HTML always works")
    return event


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


SPLIT_NAMES = {"train": "train", "dev": "dev (validation)", "test": "test"}


def split_name(split: str) -> str:
    """A split as a menu shows it: `dev` says what it is (the Glossary has the three)."""
    return SPLIT_NAMES.get(split, split)


def label_name(i) -> str:
    from cmcs_core.data.tsv import LABEL_NAMES

    return LABEL_NAMES[int(i)] if pd.notna(i) else "–"


_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:=")


def md(text: str) -> str:
    """User or dataset text made literal for st.markdown: a tweet starting with `#` stays a tweet,
    not a heading; `:red[…]`, `$…$`, tables and links in it are shown as typed."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in str(text)).replace("\n", " ")


def highlight_target(tweet: str, target: str) -> str:
    """The tweet as Markdown with its $T$ slot shown as the highlighted target; both escaped."""
    slot = f"**:blue-background[{md(target)}]**"
    return slot.join(md(part) for part in str(tweet).split("$T$"))


def require_run() -> tuple[list[Run], Run, Run | None]:
    """The selection, or stop the page with the command that makes a first run."""
    runs, run, other = state.selection()
    if run is None:
        no_runs_message()
        st.stop()
    badge(run)
    return runs, run, other


def no_runs_message() -> None:
    root = st.session_state.get("runs_dir", str(default_runs_dir()))
    st.warning(f"No runs found under `{root}`.")
    st.markdown(
        "Make the playground runs (a synthetic dataset with planted spurious words and image cues, "
        "trained in a few minutes on a CPU), then reload this page:\n\n"
        f"```bash\n{data.playground_command(root)}\n```\n"
        "or start the app with `make app`, which does that first. With the Twitter "
        f"benchmark on disk, `{cli_command('train', '--method', 'cmcs')}` trains a real run."
    )


def badge(run: Run) -> None:
    """Which run, and what its visual branch read, shown above every result."""
    m = run.metrics or {}
    acc = m.get("test", {}).get("acc")
    st.caption(f"**Run** `{run.name}` · method **{run.method_title}** · dataset **{run.dataset}** · "
               f"text **{run.cfg.encoder.text_model}** · visual source **{run.visual_source}** · "
               f"precision **{run.precision}** · seed {run.cfg.train.seed}"
               + (f" · test acc {acc:.3f}" if acc is not None else ""), help=run.precision_reason or None)
    random_warning(run)
    if not run.finished:
        st.warning(f"`{run.name}` is unfinished (no {METRICS_FILE} yet): some views are empty.")


def random_warning(run: Run) -> None:
    if run.random_visual:
        st.error(f"⚠️ `{run.name}` used a RANDOMLY INITIALISED CLIP checkpoint "
                 f"({run.cfg.encoder.visual_model}): its visual features are meaningless noise. "
                 "Do not read anything into its visual results.")


def show_sample(run: Run, split: str, i: int, key: str) -> None:
    """Tweet with its target, gold vs predicted label, branch probabilities, image or caption, masks
    (absolute colour scale unless the contrast view is chosen)."""
    pred = data.predictions(run, split)
    m = data.masks(run, split)
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
    probs = {b: [float(row[f"p_{b}_{n}"]) for n in figures.LABEL_COLORS] for b in ("text", "image", "final")
             if f"p_{b}_negative" in row}
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(figures.prob_bars(probs, "branch probabilities"), key=f"{key}_probs")
    entry = m["samples"][i] if m and i < len(m["samples"]) else None
    image = data.load_dataset_image(run, str(row.image_id))
    contrast = scale_picker(f"{key}_scale") if entry else False
    with right:
        if image is not None:
            grid = grid_of(entry.get("visual_mask", []), m.get("grid")) if entry else None
            if grid is not None:
                st.plotly_chart(figures.grid_overlay(image, grid, "visual mask on the image grid (low = suppressed)",
                                             contrast=contrast), key=f"{key}_grid")
            else:
                st.image(image, caption=f"image {row.image_id}", width=260)
        if entry and entry.get("caption"):
            st.markdown(f"**caption** (the visual input of this run): _{md(entry['caption'])}_")
    if entry:
        st.plotly_chart(figures.token_heatmap(entry["tokens"], entry["mask"], "text mask per token (low = suppressed)",
                                      contrast=contrast), key=f"{key}_tmask")
        if run.cfg.model.mask_mode == "learned":
            st.plotly_chart(figures.gate_bars(entry["tokens"], entry["mask"], "text gates, most suppressed first",
                                              planted_tokens(entry["tokens"]) if is_playground(run) else None),
                            key=f"{key}_tbars")
        if entry.get("visual_tokens"):
            st.plotly_chart(figures.token_heatmap(entry["visual_tokens"], entry["visual_mask"],
                                          "visual mask per caption token", contrast=contrast), key=f"{key}_vmask")


MASK_EFFECT_HELP = (
    "**What the mask does**: for each token (or image cell), Δp = p(label | every token through its "
    "learned mask) − p(label | the same, but this one token let through raw, gate 1). It is the part of "
    "the prediction that the mask's intervention on that token is responsible for: 0 = the mask's "
    "gate on it changes nothing, red = the intervention pushes towards the label, blue = away from it. "
    "A low mask value with Δp ≈ 0 suppressed features the model did not use anyway. "
    "`cmcs_core.explain.mask_effects`."
)


def show_mask_effects(effect: dict, tokens: list[str], key: str, contrast: bool, visual_tokens: list[str] | None = None,
                      grid=None, image=None) -> None:
    """Δp per text token, and per caption token or image cell, drawn on the shared colour rule."""
    label = effect.get("target", "label")
    st.plotly_chart(figures.token_heatmap(tokens, effect["text"], f"what the text mask does: Δp({label}) per token",
                                  label="Δp", signed=True, contrast=contrast), key=f"{key}_text")
    if "visual" in effect:
        cells = grid_of(effect["visual"], grid)
        if cells is not None and image is not None:
            st.plotly_chart(figures.grid_overlay(image, cells, f"what the visual mask does: Δp({label}) per cell",
                                         signed=True, contrast=contrast), key=f"{key}_visual")
        elif visual_tokens:
            st.plotly_chart(figures.token_heatmap(visual_tokens, effect["visual"], f"what the visual mask does: Δp({label}) "
                                          "per caption token", label="Δp", signed=True, contrast=contrast),
                            key=f"{key}_visual")
    big = max(((abs(v), t) for v, t in zip(effect["text"], tokens)), default=(0.0, ""))
    st.caption(MASK_EFFECT_HELP + f" p({label}) with the masks: {effect['p_masked']:.3f}; largest |Δp| on a "
               f"text token: {big[0]:.4f} (`{big[1]}`).")


def require_splits(run: Run) -> list[str]:
    """The splits with per-sample outputs (masks, features), or stop the page with a warning."""
    splits = run.splits()
    if not splits:
        missing_output(run, "per-sample outputs (predictions, masks)", "they are written when training ends")
    return splits


def missing_output(run: Run, what: str, when: str) -> None:
    """Stop the page: a finished folder kept without `what` is a result folder (said as such, never "yet");
    an unfinished run has not written it yet (`when` says when it will)."""
    if run.finished:
        st.info(f"`{run.name}` is a finished result folder kept without its {what}: its metrics are on *Compare*, "
                "and its flip rates on *Robustness* when it was stress-tested.")
    else:
        st.warning(f"This run has no {what} yet ({when}).")
    st.stop()


def planted_tokens(tokens: list[str]) -> dict[int, str]:
    """Positions of the playground's planted words among a text's word pieces (named in the gate bars)."""
    from cmcs_core.playground.vocab import spurious_class_of

    return {i: "planted word" for i, t in enumerate(tokens) if spurious_class_of(t) is not None}


def gate_note(run: Run) -> str:
    """What one value of this run's text mask is: a per-token gate or the mean of d element gates, and
    whether it reads the target (the fields' own phrases, config.knob)."""
    m = run.cfg.model
    if m.mask_mode != "learned":
        return ""

    def opt_in(name: str) -> str:  # "mask_condition=target: gates conditioned on the target"
        change = OptIn.of(name).change(run.cfg)
        return f"{name}={getattr(m, name)}: {change.phrase}" if change else ""

    if m.mask_condition == "target":
        return (f"**Target-conditioned token gates** ({opt_in('mask_condition')}, an opt-in beyond the paper): one "
                "gate in [0, 1] per token, computed from the token and its relation to the target, so the same word "
                "can be kept beside one target and turned down beside another. Drawn on the absolute 0…1 scale.")
    if m.mask_granularity == "token":
        return (f"Token gates ({opt_in('mask_granularity')}): one gate in [0, 1] per token, the same whatever the "
                "target.")
    return ("Element masks (the paper's MFS): each token has d gates; a cell shows their mean over d, on the absolute "
            "0…1 scale.")
    if m.mask_granularity == "token":
        return "Token gates (mask_granularity=token): one gate in [0, 1] per token, the same whatever the target."
    return ("Element masks (the paper's MFS): each token has d gates; a cell shows their mean over d, on the absolute "
            "0…1 scale.")


# -- the Inspector's inputs ----------------------------------------------------------------------------------
# Streamlit's own upload limit (.streamlit/config.toml server.maxUploadSize) is the one the app accepts.
MAX_UPLOAD_MB = int(st.get_option("server.maxUploadSize"))
IMAGE_KINDS = "PNG, JPEG, GIF, BMP or WebP"
KEEP_IMAGE = "(keep the original image)"
# Warn when the encoder reads most of a text as [UNK] (emoji, scripts outside its vocabulary).
UNKNOWN_WARN_SHARE = 0.5


def require_checkpoint(run: Run) -> None:
    """Stop the page unless the run has weights to predict with."""
    if not run.has_checkpoint:
        st.error(f"`{run.name}` is a result folder kept without its weights (no best checkpoint, {CHECKPOINT_FILE}): "
                 "its figures are on the other pages; the Inspector needs a run with weights — pick one in the sidebar."
                 if run.finished else f"`{run.name}` has no best checkpoint yet: it is still training (or was stopped "
                 "before its first epoch ended). Pick a finished run in the sidebar.")
        st.stop()


def example_picker(run: Run) -> None:
    """"Start from a test sample": a sample of the run's test split fills the Inspector's inputs."""
    examples = data.predictions(run, "test")
    if examples is None or not len(examples):
        return
    m = data.masks(run, "test")

    def use_example() -> None:
        row = examples.iloc[st.session_state.ins_example]
        st.session_state.ins_tweet = str(row.tweet).replace("$T$", str(row.target))
        st.session_state.ins_target = str(row.target)
        if m and st.session_state.ins_example < len(m["samples"]):
            st.session_state.ins_caption = m["samples"][st.session_state.ins_example].get("caption", "")
        st.session_state.ins_dataset_image = str(row.image_id)

    with st.expander("Start from a test sample"):
        st.selectbox("Sample", range(len(examples)), key="ins_example",
                     format_func=lambda r: f"#{examples.iloc[r]['index']} [{examples.iloc[r]['target']}] "
                                           f"{str(examples.iloc[r]['tweet'])[:80]}")
        st.button("Use this sample", on_click=use_example)

def upload_error(name: str, content: bytes) -> str | None:
    """Why an uploaded file cannot be the image (too large, not an image the app reads), or None."""
    from cmcs_core.data.images import load_image

    if len(content) > MAX_UPLOAD_MB * 2**20:
        return f"“{md(name)}” is {len(content) / 2**20:.0f} MB: images up to {MAX_UPLOAD_MB} MB only."
    try:
        load_image(io.BytesIO(content))
    except ValueError as err:
        why = (str(err).replace("image is ", "it is ") if "too large" in str(err) else
               "it is not an image the app can read")
        return f"“{md(name)}” was not used: {why}. Upload a {IMAGE_KINDS} file."
    return None


def image_input(run: Run, label: str, key: str, keep: bool = False) -> tuple[bytes | None, str | None, str | None]:
    """Uploaded bytes (checked), else a dataset image (or a picture a stress edit drew); returns (bytes, name, error).

    keep=True offers 'keep the original image' first (the counterfactual's default)."""
    up = st.file_uploader(label, key=key, type=None, help=f"{IMAGE_KINDS}, at most {MAX_UPLOAD_MB} MB")
    if up is not None:
        content = up.getvalue()
        err = upload_error(up.name, content)
        return (None, None, err) if err else (content, f"uploaded {up.name}", None)
    folder = run.image_dir()
    names = sorted(p.name for p in folder.iterdir() if p.is_file())[:500] if folder is not None else []
    picture = st.session_state.get(state.PICTURE_FILE) if key == "ins_image" else None
    if picture and Path(picture).is_file():  # a picture a stress edit drew (set by the hand-off, under the run folder)
        names = [state.EDITED_PICTURE] + names
    if keep:
        names = [KEEP_IMAGE] + names
    if names:
        pick_key = "ins_dataset_image" if key == "ins_image" else f"{key}_dataset"
        if st.session_state.get(pick_key) not in names:
            st.session_state[pick_key] = names[0]
        name = st.selectbox("…or a dataset image", names, key=pick_key)
        if name == state.EDITED_PICTURE and picture:
            return Path(picture).read_bytes(), f"the edited picture {Path(picture).name}", None
        if name != KEEP_IMAGE:
            return (folder / name).read_bytes(), f"dataset image {name}", None
    return None, None, None


def input_warnings(pred, pieces, res: dict) -> None:
    """What the model does not read of an input: the end of a long tweet, and word pieces unknown to the encoder."""
    if pieces.total > pieces.read:
        st.warning(f"This input is {pieces.total} {glossary.link('word-pieces', 'word pieces')} long; the run reads "
                   f"{pieces.read} (its max_length), so the end of the tweet — {pieces.total - pieces.read} pieces — "
                   "never reaches the model. "
                   + ("**The target's own mention and the words around it are in the part that was cut**: the model "
                      "reads the target's name only in the separate target segment, not the clause about it. Move the "
                      "target's clause to the front, or shorten the tweet." if pieces.mention_cut else
                      "The target's mention is read; the words after the cut are not, its own clause's end included "
                      "if it comes late.") + " The tokens below are what it read.")
    for what, share in (("tweet", pred.unknown_share(res["tokens"])),
                        ("caption", pred.unknown_share(res.get("visual_tokens") or [], visual=True))):
        if share >= UNKNOWN_WARN_SHARE:
            st.warning(f"{share:.0%} of the {what}'s word pieces are unknown to the encoder ([UNK]: emoji or "
                       f"characters outside its vocabulary), so it reads little of the {what}: the outputs below "
                       "say little about what you typed.")


def fusion_note(run: Run, res: dict) -> str:
    """Why s is the same for every input of this run (the model says so, CMCSModel.fusion_is_constant), or ""."""
    if not res.get("s_constant"):
        return ""
    why = ("its fusion is set to a constant." if run.cfg.model.fusion == "constant" else
           f"its image encoder ({run.cfg.encoder.visual_model}) has no text tower to compare the image with the "
           "target, so the two branches are mixed with the constant fusion weight.")
    return f"s is {res['s']:.3f} for every input of this run: {why}"
