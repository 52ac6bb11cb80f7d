"""Inspector: your own tweet, target and image (or caption) through a trained run — each branch's
prediction, the fusion weight, the final probabilities, the masks, what the mask does to the
prediction, captum attributions, and counterfactual edits (delete/replace a word, swap the image
or caption)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from app import data, figures, glossary, state, timing, widgets
from cmcs_core.data.images import load_image
from cmcs_core.data.tsv import LABEL_NAMES
from cmcs_core.image_grid import grid_of
from cmcs_core.playground.story import is_playground
from cmcs_core.runs.reader import load_run

# Streamlit's own upload limit (.streamlit/config.toml server.maxUploadSize) is the one the app accepts.
MAX_UPLOAD_MB = int(st.get_option("server.maxUploadSize"))
IMAGE_KINDS = "PNG, JPEG, GIF, BMP or WebP"
# Warn when the encoder reads most of a text as [UNK] (emoji, scripts outside its vocabulary).
UNKNOWN_WARN_SHARE = 0.5
# One intra-op thread: a single short input gains nothing from more, and on a busy 2-core
# machine two threads made a prediction ~10x slower (bench/bench_app.py measures both).
APP_THREADS = int(os.environ.get("CMCS_APP_THREADS", "1"))

st.title("Inspector")
runs, run, other = widgets.require_run()
if not run.has_checkpoint:
    st.error(f"`{run.name}` is a result folder kept without its weights (no best checkpoint, best.safetensors): its "
             "figures are on the other pages; the Inspector needs a run with weights — pick one in the sidebar."
             if run.finished else f"`{run.name}` has no best checkpoint yet: it is still training (or was stopped "
             "before its first epoch ended). Pick a finished run in the sidebar.")
    st.stop()

@st.cache_data(show_spinner="Predicting and attributing…", max_entries=64)
def run_explain(path: str, stamp: float, tweet: str, target: str, caption: str | None,
                image_bytes: bytes | None) -> dict:
    from cmcs_core.explain import explain

    image = load_image(io.BytesIO(image_bytes)) if image_bytes is not None else None
    return explain(data.predictor(load_run(path), APP_THREADS), tweet, target, caption=caption, image=image)

@st.cache_data(show_spinner="Predicting the edited input…", max_entries=64)
def run_predict(path: str, stamp: float, tweet: str, target: str, caption: str | None,
                image_bytes: bytes | None) -> dict:
    """The counterfactual needs the prediction only, not the attributions (seconds saved)."""
    image = load_image(io.BytesIO(image_bytes)) if image_bytes is not None else None
    return data.predictor(load_run(path), APP_THREADS).predict(tweet, target, caption=caption, image=image)

try:
    pred = data.predictor(run, APP_THREADS)
except (OSError, ValueError, RuntimeError) as err:
    st.error(f"Cannot load `{run.name}`: {err}")
    st.stop()

needs = "image" if pred.needs_image else "caption" if pred.needs_caption else "text only"
st.markdown(f"This run reads **{'real pixels (upload an image)' if needs == 'image' else 'the image as its caption (type one)' if needs == 'caption' else 'the text only'}** "
            f"— visual source: **{run.visual_source}**.")

# -- an example from the run's own test split fills the inputs ------------------------------
examples = data.predictions(run, "test")
m = data.masks(run, "test") if examples is not None else None

def use_example() -> None:
    row = examples.iloc[st.session_state.ins_example]
    st.session_state.ins_tweet = str(row.tweet).replace("$T$", str(row.target))
    st.session_state.ins_target = str(row.target)
    if m and st.session_state.ins_example < len(m["samples"]):
        st.session_state.ins_caption = m["samples"][st.session_state.ins_example].get("caption", "")
    st.session_state.ins_dataset_image = str(row.image_id)

if examples is not None and len(examples):
    with st.expander("Start from a test sample"):
        st.selectbox("Sample", range(len(examples)), key="ins_example",
                     format_func=lambda r: f"#{examples.iloc[r]['index']} [{examples.iloc[r]['target']}] "
                                           f"{str(examples.iloc[r]['tweet'])[:80]}")
        st.button("Use this sample", on_click=use_example)

if st.session_state.get(state.HANDOFF):  # set by "open in the Inspector" (Robustness, Tour)
    st.info(f"Opened from the {st.session_state.pop(state.HANDOFF)}.")
state.keep("ins_tweet", "The new phone from Apple is great, but the battery is awful")
state.keep("ins_target", "Apple")
state.keep("ins_caption", "a person holding a smartphone")
tweet = st.text_area("Tweet", key="ins_tweet", height=80, on_change=state.remember("ins_tweet"))
target = st.text_input("Target (a phrase that occurs in the tweet)", key="ins_target",
                       on_change=state.remember("ins_target"))

KEEP = "(keep the original image)"


def target_words(tweet: str, target: str) -> set[int]:
    """Indices of the whitespace words of the tweet that hold (part of) the target."""
    low, tg = tweet.lower(), target.strip().lower()
    start = low.find("$t$") if "$T$" in tweet else low.find(tg) if tg else -1
    if start < 0:
        return set()
    end = start + (3 if "$T$" in tweet else len(tg))
    out, pos = set(), 0
    for i, word in enumerate(tweet.split()):
        pos = tweet.index(word, pos)
        if pos < end and pos + len(word) > start:
            out.add(i)
        pos += len(word)
    return out


def image_input(label: str, key: str, keep: bool = False) -> tuple[bytes | None, str | None, str | None]:
    """Uploaded bytes (checked), else a dataset image; returns (bytes, name, error).

    keep=True offers 'keep the original image' first (the counterfactual's default)."""
    up = st.file_uploader(label, key=key, type=None, help=f"{IMAGE_KINDS}, at most {MAX_UPLOAD_MB} MB")
    if up is not None:
        data = up.getvalue()
        if len(data) > MAX_UPLOAD_MB * 2**20:
            return None, None, f"“{widgets.md(up.name)}” is {len(data) / 2**20:.0f} MB: images up to {MAX_UPLOAD_MB} MB only."
        try:
            load_image(io.BytesIO(data))
        except ValueError as err:
            why = str(err).replace("image is ", "it is ") if "too large" in str(err) else "it is not an image the app can read"
            return None, None, f"“{widgets.md(up.name)}” was not used: {why}. Upload a {IMAGE_KINDS} file."
        return data, f"uploaded {up.name}", None
    folder = run.image_dir()
    names = sorted(p.name for p in folder.iterdir() if p.is_file())[:500] if folder is not None else []
    picture = st.session_state.get(state.PICTURE_FILE) if key == "ins_image" else None
    if picture and Path(picture).is_file():  # a picture a stress edit drew (set by the hand-off, under the run folder)
        names = [state.EDITED_PICTURE] + names
    if keep:
        names = [KEEP] + names
    if names:
        pick_key = "ins_dataset_image" if key == "ins_image" else f"{key}_dataset"
        if st.session_state.get(pick_key) not in names:
            st.session_state[pick_key] = names[0]
        name = st.selectbox("…or a dataset image", names, key=pick_key)
        if name == state.EDITED_PICTURE and picture:
            return Path(picture).read_bytes(), f"the edited picture {Path(picture).name}", None
        if name != KEEP:
            return (folder / name).read_bytes(), f"dataset image {name}", None
    return None, None, None

caption = image_bytes = image_name = None
if needs == "caption":
    caption = st.text_input("Caption of the image (this run reads captions, not pixels)", key="ins_caption",
                            on_change=state.remember("ins_caption"))
elif needs == "image":
    image_bytes, image_name, err = image_input("Image", "ins_image")
    if err:  # one message: the upload's, not a second one saying an image is missing
        st.error(err)
        st.stop()

problem = pred.input_error(tweet, target, caption, image_bytes is not None)
if problem:
    st.error(widgets.md(problem[0].upper() + problem[1:]) + ".")
    st.stop()
pieces = pred.pieces(tweet, target)
if pieces.total > pieces.read:
    st.warning(f"This input is {pieces.total} {glossary.link('word-pieces', 'word pieces')} long; the run reads "
               f"{pieces.read} (its max_length), so the end of the tweet — {pieces.total - pieces.read} pieces — never "
               "reaches the model. "
               + ("**The target's own mention and the words around it are in the part that was cut**: the model reads "
                  "the target's name only in the separate target segment, not the clause about it. Move the target's "
                  "clause to the front, or shorten the tweet." if pieces.mention_cut else
                  "The target's mention is read; the words after the cut are not, its own clause's end included if "
                  "it comes late.") + " The tokens below are what it read.")

def predict(tw: str, tg: str, cap: str | None, img: bytes | None, attribute: bool = True) -> dict | None:
    try:
        return (run_explain if attribute else run_predict)(str(run.path), data.stamp(run), tw, tg, cap, img)
    except ValueError as err:
        st.error(widgets.md(str(err)))
        return None

inputs = (tweet, target, caption, hash(image_bytes))
if st.session_state.get("_ins_inputs", inputs) != inputs:
    timing.mark("prediction")  # a new input, not the page's first run
st.session_state["_ins_inputs"] = inputs
res = predict(tweet, target, caption, image_bytes)
if res is None:
    st.stop()
for what, share in (("tweet", pred.unknown_share(res["tokens"])),
                    ("caption", pred.unknown_share(res.get("visual_tokens") or [], visual=True))):
    if share >= UNKNOWN_WARN_SHARE:
        st.warning(f"{share:.0%} of the {what}'s word pieces are unknown to the encoder ([UNK]: emoji or "
                   f"characters outside its vocabulary), so it reads little of the {what}: the outputs below "
                   "say little about what you typed.")

st.subheader("Prediction")
visual_input = {"image": widgets.md(image_name), "caption": f"caption “{widgets.md(caption)}”",
                "text only": "none (text-only run)"}[needs]
st.caption(f"visual input: {visual_input} · visual source: {run.visual_source}")
c = st.columns(4)
c[0].metric("Final label", res["label"])
c[1].metric("p(final label)", f"{max(res['p_final']):.3f}")
c[2].metric("Fusion weight s", f"{res['s']:.3f}", help="y = (1 − s)·p_text + s·p_image")
if "p_image" in res and run.cfg.model.fusion in ("auto", "constant") and (
        run.cfg.model.fusion == "constant" or not getattr(pred.pipe.image_encoder, "has_text_tower", True)):
    st.caption(f"s is {res['s']:.3f} for every input of this run: "
               + ("its fusion is set to a constant." if run.cfg.model.fusion == "constant" else
                  f"its image encoder ({run.cfg.encoder.visual_model}) has no text tower to compare the image with "
                  "the target, so the two branches are mixed with the constant fusion weight."))
c[3].metric("Text branch says", LABEL_NAMES[max(range(3), key=lambda i: res["p_text"][i])])
probs = {"text": res["p_text"], **({"image": res["p_image"]} if "p_image" in res else {}), "final": res["p_final"]}
widgets.show_fig(figures.prob_bars(probs, f"branch probabilities (visual source: {run.visual_source})"),
                key="ins_probs", name="inspector_probabilities")

image = load_image(io.BytesIO(image_bytes)) if image_bytes is not None else None
st.subheader("Masks")
if widgets.gate_note(run):
    st.markdown(widgets.gate_note(run))
contrast = widgets.scale_picker("ins_scale")
widgets.show_fig(figures.token_heatmap(res["tokens"], res["token_mask"], "text mask per token (low = suppressed)",
                                     contrast=contrast), key="ins_tmask", name="inspector_text_mask")
if run.cfg.model.mask_mode == "learned":
    widgets.show_fig(figures.gate_bars(res["tokens"], res["token_mask"], "text gates, most suppressed first",
                                       widgets.planted_tokens(res["tokens"]) if is_playground(run) else None),
                     key="ins_tbars", name="inspector_text_gates")
if "visual_mask" in res:
    grid = grid_of(res["visual_mask"], res.get("grid"))
    if grid is not None and image is not None:
        widgets.show_fig(figures.grid_overlay(image, grid, "visual mask on the image's feature grid (low = suppressed)",
                                            contrast=contrast), key="ins_vmask", name="inspector_visual_mask")
    elif res.get("visual_tokens"):
        widgets.show_fig(figures.token_heatmap(res["visual_tokens"], res["visual_mask"], "visual mask per caption token",
                                             contrast=contrast), key="ins_vmask", name="inspector_visual_mask")

st.subheader("What the mask does")
widgets.show_mask_effects(res["mask_effect"], res["tokens"], "ins_effect", contrast,
                         visual_tokens=res.get("visual_tokens"), grid=res.get("grid"), image=image)

st.subheader(f"Attributions towards “{res['label']}” (captum)")
ta = res["text_attr"]
span = max(1e-9, max(abs(v) for v in ta["scores"]))
widgets.show_fig(figures.token_heatmap(ta["tokens"], ta["scores"], "Integrated Gradients per token (red = pushes "
                                     "towards the label)", label="IG", signed=True, contrast=contrast),
                key="ins_ig", name="inspector_integrated_gradients")
st.caption(f"IG over the token states the model reads, baseline zeros, 32 steps; convergence error {ta['delta']:.1e}. "
           f"Largest |attribution| {span:.3f}.")
va = res.get("visual_attr")
if va is not None:
    grid = grid_of(va["scores"], va.get("grid"))
    if grid is not None and image is not None:
        widgets.show_fig(figures.grid_overlay(image, grid, "occlusion: drop in p(label) when a grid cell is zeroed",
                                            signed=True, contrast=contrast), key="ins_occ", name="inspector_occlusion")
    elif va.get("tokens"):
        widgets.show_fig(figures.token_heatmap(va["tokens"], va["scores"], "occlusion: drop in p(label) when a caption "
                                             "token is zeroed", label="occl.", signed=True, contrast=contrast),
                        key="ins_occ", name="inspector_occlusion")

# -- counterfactual edits ----------------------------------------------------------------------
st.subheader("Counterfactual edits")
words = tweet.split()
in_target = target_words(tweet, target)
NO_EDIT = -1
# An input error above stops the page before these boxes: keep() gives them back their values after it.
state.keep("cf_word", NO_EDIT)
state.keep("cf_replacement", "")
if st.session_state.get("_cf_words_of") != words or st.session_state.get("cf_word") not in [NO_EDIT, *range(len(words))]:
    st.session_state["cf_word"] = NO_EDIT  # a new tweet: no edit until the user asks for one
    st.session_state["_cf_words_of"] = words
e1, e2 = st.columns(2)
word_i = e1.selectbox("Word to edit", [NO_EDIT, *range(len(words))], key="cf_word", on_change=state.remember("cf_word"),
                      format_func=lambda i: "(no word edit)" if i == NO_EDIT else
                      f"{i}: {words[i]}" + (" (target)" if i in in_target else ""))
replacement = e2.text_input("Replace it with (empty = delete)", key="cf_replacement", disabled=word_i == NO_EDIT,
                            on_change=state.remember("cf_replacement"))
edited_words = words if word_i == NO_EDIT else words[:word_i] + ([replacement] if replacement.strip() else []) + words[word_i + 1:]
edited_tweet = " ".join(edited_words)
cf_caption, cf_image = caption, image_bytes
if needs == "caption":
    if st.session_state.get("_cf_caption_of") != caption:
        st.session_state["cf_caption"] = caption  # starts from the caption typed above, then yours to edit
        st.session_state.setdefault(state.KEPT, {})["cf_caption"] = caption
        st.session_state["_cf_caption_of"] = caption
    state.keep("cf_caption", caption)  # an input error above stops the page before this box: keep its text
    cf_caption = st.text_input("Swap the caption", key="cf_caption", on_change=state.remember("cf_caption"),
                               help="starts as the caption above; type another to see what the image input changes")
elif needs == "image":
    swapped, _, err = image_input("Swap the image (upload another)", "cf_image", keep=True)
    if err:
        st.error(err)
        st.stop()
    cf_image = swapped if swapped is not None else image_bytes
st.markdown(f"Edited tweet: _{widgets.md(edited_tweet)}_")
if needs == "caption" and cf_caption != caption:
    st.markdown(f"Swapped caption: _{widgets.md(cf_caption)}_")
if not edited_tweet.strip() or ("$T$" not in edited_tweet and target.strip().lower() not in edited_tweet.lower()):
    st.error("The edit removes the target from the tweet (or empties it): edit another word.")
    st.stop()
if needs == "caption" and not (cf_caption or "").strip():
    st.error("The swapped caption is empty.")
    st.stop()
if edited_tweet == tweet and cf_caption == caption and cf_image == image_bytes:
    st.info("Pick a word to delete or replace" + (", or swap the caption" if needs == "caption" else
                                                  ", or swap the image" if needs == "image" else "")
            + ", to see whether the label changes.")
    st.stop()
cf = predict(edited_tweet, target, cf_caption, cf_image, attribute=False)
if cf is None:
    st.stop()
changed = cf["label"] != res["label"]
(st.warning if changed else st.success)(
    f"Label {'changes' if changed else 'stays'}: **{res['label']}** → **{cf['label']}**; fusion weight "
    f"{res['s']:.3f} → {cf['s']:.3f}.")
fig = go.Figure()
for name, r in (("original", res), ("edited", cf)):
    fig.add_trace(go.Bar(name=name, x=list(LABEL_NAMES), y=r["p_final"], text=[f"{v:.2f}" for v in r["p_final"]],
                         textposition="outside"))
fig.update_layout(title="final probabilities, original vs edited", barmode="group", yaxis_range=[0, 1.1],
                  height=320, margin=dict(l=10, r=10, t=40, b=10))
widgets.show_fig(fig, key="cf_probs", name="inspector_counterfactual")
