"""One flipped row of a stress test, shown the same way on the Tour and on Robustness: the table of flipped
rows as a class reads it, what the edit changed (tweet, target, caption or picture), and the button that
opens the edited row in the Inspector.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import data, glossary, state, widgets
from cmcs_core.data.counterfactual import VISUAL_EDITS
from cmcs_core.data.dataset import NO_VISUAL
from cmcs_core.data.tsv import TARGET_TOKEN
from cmcs_core.runs.files import CHECKPOINT_FILE
from cmcs_core.runs.reader import Run

PICTURE_EDITS = (*VISUAL_EDITS, "swap_image_cue")  # the edits that change what the run sees of the picture


def filled(tweet: str, target: str) -> str:
    """A tweet with its target's name where the data has `$T$`."""
    return str(tweet).replace(TARGET_TOKEN, str(target))


def table(rows: pd.DataFrame, edit: str) -> pd.DataFrame:
    """The flipped rows with plain column names and the target's name in every tweet; the new target, or the
    edited caption, where the edit changed them."""
    view = pd.DataFrame({"row": rows["index"], "gold label": rows.label, "predicted before": rows.pred_before,
                         "after the edit": rows.pred_after, "target": rows.target,
                         "edited tweet": [filled(t, g) for t, g in zip(rows.edited_tweet, rows.edited_target)]})
    if edit == "swap_target":
        view.insert(5, "new target", rows.edited_target)
    if edit in PICTURE_EDITS and (rows.edited_caption.astype(str).str.len() > 0).any():
        view["edited caption"] = rows.edited_caption
    return view


def _picture(run: Run, rows_file: str, edit: str, image_id: str):
    """The picture a row shows after the edit: one the edit drew (kept in the run folder), else the dataset's."""
    drawn = run.edited_image(rows_file, edit, image_id)
    if drawn is not None:
        from cmcs_core.data.images import load_image

        return load_image(drawn), drawn
    return data.load_dataset_image(run, image_id), None


def show_row(run: Run, rows_file: str, edit: str, row: pd.Series) -> None:
    """Gold label, the prediction before and after, and what the edit changed: the tweet (or target), and for
    an edit of the picture the caption or the picture before and after."""
    st.markdown(f"**#{widgets.md(row['index'])}** · gold **{row.label}** · prediction **{row.pred_before} → "
                f"{row.pred_after}** · edit: **{glossary.edit_name(edit)}**", help=glossary.edit_help([edit]))
    target = str(row.edited_target)
    if edit not in PICTURE_EDITS or str(row.edited_tweet) != str(row.tweet) or target != str(row.target):
        st.markdown(f"original: {widgets.highlight_target(str(row.tweet), str(row.target))}")
        st.markdown(f"edited: {widgets.highlight_target(str(row.edited_tweet), target)}")
    else:
        st.markdown(f"tweet (unchanged): {widgets.highlight_target(str(row.tweet), str(row.target))}")
    if edit not in PICTURE_EDITS:
        return
    before, after = st.columns(2)
    if run.visual_source.startswith("pixels"):
        original = data.load_dataset_image(run, str(row.image_id))
        edited = None if row.edited_image_id == NO_VISUAL else _picture(run, rows_file, edit, str(row.edited_image_id))[0]
        for col, image, what in ((before, original, "picture before"), (after, edited, "picture after the edit")):
            if image is not None:
                col.image(image, caption=what, width=220)
            else:
                col.caption(f"{what}: {'none (removed)' if what.endswith('edit') else 'not on disk'}")
        return
    caption = data.captions(run).get(str(row.image_id), "")
    before.markdown(f"caption before: _{widgets.md(caption) or '–'}_")
    after.markdown(f"caption after the edit: _{widgets.md(row.edited_caption) or '(none: the picture removed)'}_")


def open_button(run: Run, rows_file: str, edit: str, row: pd.Series, source: str, key: str,
                text_missing: bool = False) -> None:
    """Open the edited row in the Inspector (its tweet, target and caption, or the edited picture), or say why not."""
    drawn = run.edited_image(rows_file, edit, str(row.edited_image_id))
    blocked = None
    if text_missing:
        blocked = "the tweet of this row could not be read back from the data"
    elif not run.has_checkpoint:
        blocked = f"this run has no checkpoint ({CHECKPOINT_FILE}), so the Inspector cannot load it"
    elif row.edited_image_id == NO_VISUAL:
        blocked = "the Inspector needs a caption or a picture, and this edit removed it"
    caption = row.edited_caption if isinstance(row.edited_caption, str) and row.edited_caption else None
    if st.button("Open in the Inspector with the edit applied", key=key, disabled=blocked is not None,
                 on_click=state.open_in_inspector, help=blocked or "fills the Inspector's tweet, target and caption "
                 "or picture with the edited row",
                 args=(str(run.path), filled(row.edited_tweet, row.edited_target), str(row.edited_target), caption,
                       str(row.edited_image_id), f"{source}: “{glossary.edit_name(edit)}” applied to row "
                       f"#{row['index']} of `{Path(str(run.path)).name}`", str(drawn) if drawn else None)):
        st.switch_page(state.INSPECTOR)
    if blocked:
        st.caption(f"Inspector: {blocked}.")
