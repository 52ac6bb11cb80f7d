"""Bring your own rows, the Robustness page's last section: upload a TSV in the benchmark's format and pick a
run; see its accuracy, per-class figures and multi-target score on those rows, and where they pair with one
of the run's splits (same index, image and target), the flips against its own predictions there, each
flipped row one click from the Inspector. The library evaluates (cmcs_core.own_rows); in the demo mode the
upload is capped and nothing is written to disk.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import data, glossary, state, widgets
from cmcs_core.command import cli_command
from cmcs_core.data.tsv import LABEL_NAMES, TSVFormatError
from cmcs_core.runs.files import CHECKPOINT_FILE
from cmcs_core.runs.reader import Run

# The demo mode serves a class from one machine: an upload is read whole into memory and predicted at once.
DEMO_MAX_KB = 256
DEMO_MAX_ROWS = 1000
FORMAT = ("One row per tweet–target pair, five tab-separated columns: *index, label (0/1/2 or "
          "negative/neutral/positive), image file, the tweet with `$T$` where the target stands, the target*; an "
          "optional header line. The run reads each row's picture from its own dataset (its caption or file), by the "
          "image column.")


def _limits() -> str:
    if state.demo_mode():
        return f"demo mode: at most {DEMO_MAX_KB} KB and {DEMO_MAX_ROWS} rows; nothing is written to disk"
    return f"at most {int(st.get_option('server.maxUploadSize'))} MB"


def section(runs: list[Run], selected: Run) -> None:
    st.subheader("Your own rows", anchor="your-own-rows")
    st.markdown("Upload rows of your own — the test split with some tweets changed, or new tweets about the dataset's "
                "pictures — and see how a run does on them. " + FORMAT)
    usable = [r for r in runs if r.finished and r.has_checkpoint]
    if not usable:
        st.info(f"No run with weights ({CHECKPOINT_FILE}) under this runs folder: result folders cannot predict.")
        return
    paths = [str(r.path) for r in usable]
    by_path = dict(zip(paths, usable))
    c1, c2 = st.columns([2, 3])
    path = c1.selectbox("Run to evaluate", paths, key="own_run", format_func=lambda p: state.run_label(by_path[p]),
                        index=paths.index(str(selected.path)) if str(selected.path) in paths else 0)
    upload = c2.file_uploader("Rows (TSV)", type=["tsv", "txt"], key="own_file", help=_limits())
    drop = c1.checkbox("Leave out rows whose picture the run cannot read", key="own_drop",
                       help="by default such rows stop the evaluation with their line numbers")
    run = by_path[path]
    if upload is None:
        st.caption(f"On a terminal the same evaluation writes its outputs: `{cli_command('evaluate', '--run', path, '--split', 'FILE.tsv')}`.")
        return
    content = upload.getvalue()
    if state.demo_mode() and len(content) > DEMO_MAX_KB * 1024:
        st.error(f"“{widgets.md(upload.name)}” is {len(content) // 1024} KB: the demo mode takes {DEMO_MAX_KB} KB at most.")
        return
    try:
        result = data.own_rows(run, content, upload.name, drop, DEMO_MAX_ROWS if state.demo_mode() else None)
    except (TSVFormatError, ValueError, OSError, RuntimeError) as err:
        st.error(widgets.md(str(err)))
        return
    _scores(result)
    _flips(run, result)


def _scores(result: dict) -> None:
    m, aware = result["metrics"], result["target_awareness"]
    dropped = f" ({result['dropped']} left out: no picture the run can read)" if result["dropped"] else ""
    st.markdown(f"**{m['n']}** rows of *{widgets.md(result['name'])}* predicted{dropped}. "
                f"{glossary.link('metrics', 'What the figures mean')}.")
    cols = st.columns(4)
    cols[0].metric("Accuracy", f"{100 * m['acc']:.1f}%")
    cols[1].metric("Macro-F1", f"{100 * m['macro_f1']:.1f}%", help=f"over the classes present: {', '.join(m['macro_f1_classes'])}")
    if aware["tweets"]:
        lo, hi = aware["all_targets_right_ci"]
        cols[2].metric("All targets right", f"{100 * aware['all_targets_right']:.0f}%",
                       help=f"of the {aware['tweets']} tweets whose targets have different labels; 95% interval "
                            f"{100 * lo:.0f}–{100 * hi:.0f}%")
        lo, hi = aware["single_label_ci"]
        cols[3].metric("One label for all", f"{100 * aware['single_label']:.0f}%",
                       help=f"same tweets; 95% interval {100 * lo:.0f}–{100 * hi:.0f}%")
    else:
        cols[2].caption(f"No tweet with targets of different labels: no {glossary.link('multi-target', 'multi-target score')}.")
    per_class = pd.DataFrame(m["per_class"]).T.rename_axis("gold label").reset_index()
    per_class["predicted as"] = [", ".join(f"{LABEL_NAMES[j]} {n}" for j, n in enumerate(row) if n) for row in m["confusion"]]
    st.dataframe(per_class.round(3), hide_index=True, width="stretch")


def _flips(run: Run, result: dict) -> None:
    from cmcs_core.own_rows import best_pairing, flips

    originals = {s: p for s in run.splits() if (p := data.predictions(run, s)) is not None}
    split, paired = best_pairing(result["predictions"], originals)
    if split is None:
        st.caption("None of these rows pairs with a row of the run's splits (same index, image and target), so there "
                   "is no original prediction to compare with.")
        return
    f = flips(paired)
    lo, hi = f["flip_ci"]
    st.markdown(f"**{len(paired)}** of your rows pair with rows of the run's **{split}** split (same index, image and "
                f"target), **{f['changed_text']}** of them with a changed tweet. The prediction changed on "
                f"**{f['flipped']}** ({100 * f['flip_rate']:.1f}%, {glossary.link('interval', '95% interval')} "
                f"{100 * lo:.1f}–{100 * hi:.1f}%).")
    rows = f["rows_flipped"]
    if rows.empty:
        return
    view = rows.rename(columns={"index": "row", "label": "gold label", "pred_before": "predicted on the original",
                                "pred_after": "on yours", "original_text": "original tweet", "text": "your tweet"})
    pick = st.dataframe(view[["row", "gold label", "predicted on the original", "on yours", "target", "original tweet",
                              "your tweet"]], hide_index=True, width="stretch", on_select="rerun",
                        selection_mode="single-row", key="own_table", height=min(300, 36 * (len(view) + 1) + 2))
    row = rows.iloc[pick.selection.rows[0] if pick and pick.selection.rows else 0]
    caption = row.get("caption") if isinstance(row.get("caption"), str) and row.get("caption") else None
    if st.button("Open this row in the Inspector", key="own_open", on_click=state.open_in_inspector,
                 args=(str(run.path), row.text, str(row.target), caption, str(row.image_id),
                       f"Robustness page (your rows): row #{row['index']} of “{result['name']}”")):
        st.switch_page(state.INSPECTOR)
