"""Inspector: your own tweet, target and image (or caption) through a trained run — each branch's
prediction, the fusion weight, the final probabilities, the masks, what the mask does to the
prediction, captum attributions, and counterfactual edits (delete/replace a word, swap the image
or caption)."""
from __future__ import annotations

import io

import streamlit as st

from app import data, figures, state, timing, widgets
from cmcs_core.data.images import load_image
from cmcs_core.data.tsv import LABEL_NAMES
from cmcs_core.image_grid import grid_of
from cmcs_core.inference import edit_word, keeps_target, target_words
from cmcs_core.playground.story import is_playground

st.title("Inspector")
runs, run, other = widgets.require_run()
widgets.require_checkpoint(run)
try:
    pred = data.predictor(run, data.APP_THREADS)
except (OSError, ValueError, RuntimeError) as err:
    st.error(f"Cannot load `{run.name}`: {err}")
    st.stop()

needs = "image" if pred.needs_image else "caption" if pred.needs_caption else "text only"
st.markdown(f"This run reads **{'real pixels (upload an image)' if needs == 'image' else 'the image as its caption (type one)' if needs == 'caption' else 'the text only'}** "
            f"— visual source: **{run.visual_source}**.")

widgets.example_picker(run)  # an example from the run's own test split fills the inputs
if st.session_state.get(state.HANDOFF):  # set by "open in the Inspector" (Robustness, Tour)
    st.info(f"Opened from the {st.session_state.pop(state.HANDOFF)}.")
state.keep("ins_tweet", "The new phone from Apple is great, but the battery is awful")
state.keep("ins_target", "Apple")
state.keep("ins_caption", "a person holding a smartphone")
tweet = st.text_area("Tweet", key="ins_tweet", height=80, on_change=state.remember("ins_tweet"))
target = st.text_input("Target (a phrase that occurs in the tweet)", key="ins_target",
                       on_change=state.remember("ins_target"))

caption = image_bytes = image_name = None
if needs == "caption":
    caption = st.text_input("Caption of the image (this run reads captions, not pixels)", key="ins_caption",
                            on_change=state.remember("ins_caption"))
elif needs == "image":
    image_bytes, image_name, err = widgets.image_input(run, "Image", "ins_image")
    if err:  # one message: the upload's, not a second one saying an image is missing
        st.error(err)
        st.stop()

problem = pred.input_error(tweet, target, caption, image_bytes is not None)
if problem:
    st.error(widgets.md(problem[0].upper() + problem[1:]) + ".")
    st.stop()


def predict(tw: str, tg: str, cap: str | None, img: bytes | None, attribute: bool = True) -> dict | None:
    try:
        return data.inspect(run, tw, tg, cap, img, attribute)
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
widgets.input_warnings(pred, pred.pieces(tweet, target), res)

st.subheader("Prediction")
visual_input = {"image": widgets.md(image_name), "caption": f"caption “{widgets.md(caption)}”",
                "text only": "none (text-only run)"}[needs]
st.caption(f"visual input: {visual_input} · visual source: {run.visual_source}")
c = st.columns(4)
c[0].metric("Final label", res["label"])
c[1].metric("p(final label)", f"{max(res['p_final']):.3f}")
c[2].metric("Fusion weight s", f"{res['s']:.3f}", help="y = (1 − s)·p_text + s·p_image")
if widgets.fusion_note(run, res):
    st.caption(widgets.fusion_note(run, res))
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
edited_tweet = edit_word(tweet, None if word_i == NO_EDIT else word_i, replacement)
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
    swapped, _, err = widgets.image_input(run, "Swap the image (upload another)", "cf_image", keep=True)
    if err:
        st.error(err)
        st.stop()
    cf_image = swapped if swapped is not None else image_bytes
st.markdown(f"Edited tweet: _{widgets.md(edited_tweet)}_")
if needs == "caption" and cf_caption != caption:
    st.markdown(f"Swapped caption: _{widgets.md(cf_caption)}_")
if not keeps_target(edited_tweet, target):
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
widgets.show_fig(figures.prob_bars({"original": res["p_final"], "edited": cf["p_final"]},
                                   "final probabilities, original vs edited"), key="cf_probs",
                 name="inspector_counterfactual")
