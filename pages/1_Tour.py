"""Tour: the playground's story in ten minutes, for a class. What the generator planted (named and
shown from its own truth files), how text-only and CMCS (and the target-aware variant) score where
the cues agree and where they conflict with the label, where the masks put the planted word, and
the stress tests that take the shortcut away, each flipped row one click from the Inspector."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import data, figures, state, widgets
from cmcs_core.data.counterfactual import ALL_EDITS, EDIT_TITLES, PLANTED_EDITS
from cmcs_core.playground.story import ACCURACY_COLUMNS, ROLE_TITLES, preset_command, preset_runs

PRESET = "target-cue"
FIRST_RUN = "python -m cmcs_core playground"

st.title("Tour: a shortcut, planted and caught")
runs, run, other = state.selection()
root = Path(st.session_state.get(state.RUNS_DIR, "runs"))
st.markdown(
    "A model can score well by reading a **shortcut**: something that goes with the label in the training data "
    "without being about the target. The *playground* is a synthetic dataset where we know the truth: each tweet "
    "names one to three targets, each with its own sentiment word, and the generator **plants** cues that go with "
    "the label in most training rows and are at chance in test. A model that learned the sentiment words is "
    "right whether the cues agree or not; a model that learned the cues falls to chance when they conflict.")

frame = data.story(runs) if runs else None
if frame is None or frame.empty:
    st.warning(f"No playground run under `{root}` yet. `make app` makes them on its first start; or run:")
    st.code(f"{FIRST_RUN} --runs-dir {root}", language="bash")
    st.stop()

folders = list(dict.fromkeys(frame.data))
current = frame[frame.path == str(run.path)].data.iloc[0] if run is not None and str(run.path) in set(frame.path) else folders[0]
folder = st.selectbox("Playground dataset", folders, index=folders.index(current), key="tour_data",
                      format_func=lambda f: f"{Path(f).name} ({(frame.data == f).sum()} runs)")
part = frame[frame.data == folder].reset_index(drop=True)
label_of = {row.path: row.variant + ("" if row.visual_source.startswith("none") else f" · {row.visual_source}")
            for row in part.itertuples()}
try:
    cues, examples = data.planted(folder)
except ValueError as err:
    st.error(f"Cannot read what the playground planted: {err}")
    st.stop()
cfg = cues["config"]

# -- 1. what is planted ----------------------------------------------------------------------------
st.header("1 · What the playground plants")
words = cues["cues"]["text_spurious_words"]
kind = cues["image_cue_kind"]
image_cues = cues["cues"]["image_objects" if kind == "object" else "image_backgrounds"]
table = ["| label | planted words | planted image cue | genuine sentiment words (e.g.) |", "|---|---|---|---|"]
for label in ("negative", "neutral", "positive"):  # a Markdown table: text a browser and a projector both show
    cue = image_cues[label]["object" if kind == "object" else "colour"]
    table.append(f"| **{label}** | {', '.join(words[label])} | {cue} | "
                 f"{', '.join(cues['cues']['sentiment_words'][label][:4])} |")
st.markdown("\n".join(table))
train_m, test_m = cues["measured"].get("train", {}), cues["measured"].get("test", {})
dev_chance = cfg.get("dev_cues_at_chance")


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


st.markdown(
    f"Planted words are neutral nouns in fixed frames (*at the stadium*, *on monday*); **{_pct(cfg['spurious_rate'])}** "
    f"of a target's clauses carry one. The image carries a **{'small coloured shape' if kind == 'object' else 'background colour'}** "
    f"of one class. How often a cue's class equals the label, measured on the files: planted word "
    f"**{_pct(train_m.get('text_strength'))}** in train, **{_pct(test_m.get('text_strength'))}** in test; image cue "
    f"**{_pct(train_m.get('image_strength'))}** in train, **{_pct(test_m.get('image_strength'))}** in test "
    f"(chance is 33%). Dev, which CMCS's upper level reads, is drawn "
    f"{'at chance, like test' if dev_chance else 'like train'}.")
if examples:
    cols = st.columns(len(examples))
    for col, (cls, ex) in zip(cols, examples.items()):
        name = ("negative", "neutral", "positive")[cls]
        with col:
            st.image(ex["path"], caption=f"cue of class {name}: {image_cues[name]['object' if kind == 'object' else 'colour']}",
                     width=180)
            st.caption(f"caption (what a captions run reads): _{widgets.md(ex['caption'])}_")
example = data.example(folder)
if example:
    colour = {"target": "blue", "sentiment": "green", "spurious": "red", "other_sentiment": "gray",
              "other_spurious": "orange"}
    shown = " ".join(f"**:{colour[r]}[{widgets.md(w)}]**" if r in colour else widgets.md(w) for w, r in example["words"])
    st.markdown(f"One test row (#{example['index']}), gold **{example['label']}** for the target "
                f"**:blue[{widgets.md(example['target'])}]**:\n\n> {shown}\n\n"
                f":green[green]: its own sentiment word · :red[red]: its planted word "
                f"(*{example['planted_word']}*, planted for **{example['planted_class']}**) · :gray[grey] / "
                ":orange[orange]: the other targets' sentiment and planted words.")

# -- 2. the score -----------------------------------------------------------------------------------
st.header("2 · The score: cues agree vs conflict")
scored = part[part.has_score]
if scored.empty:
    st.info("These runs have no playground_score.json (the playground command writes it).")
else:
    groups = [ACCURACY_COLUMNS[k] for k in ACCURACY_COLUMNS]
    series = {label_of[r.path]: [getattr(r, f"acc_{k}") for k in ACCURACY_COLUMNS] for r in scored.itertuples()}
    widgets.show_fig(figures.percent_bars(groups, series, "Test accuracy where every planted cue of a row agrees / "
                                          "conflicts with its label", "accuracy"), key="tour_score",
                     name="playground_score")
    n = scored.iloc[0]
    st.caption(f"Rows: all {int(n.n_all or 0)}, cues agree {int(n.n_spurious_aligned or 0)}, conflict "
               f"{int(n.n_spurious_conflicting or 0)}. A model that reads the target's own sentiment word scores the "
               "same on both; the gap between *agree* and *conflict* is what it takes from the shortcut. "
               "`playground_score.json` in each run folder.")

# -- 3. where the masks put the planted word ----------------------------------------------------------
st.header("3 · Where the text mask puts each kind of word")
masked = part[part[[f"mask_{r}" for r in ROLE_TITLES]].notna().any(axis=1)]
if masked.empty:
    st.info("No run with a learned mask on this playground.")
else:
    roles = ["sentiment", "spurious", "other_sentiment", "other_spurious", "other"]
    series = {label_of[r.path]: [getattr(r, f"mask_{k}") for k in roles] for r in masked.itertuples()}
    widgets.show_fig(figures.role_bars([ROLE_TITLES[k] for k in roles], series,
                                       "Mean text gate by word role (test split)"), key="tour_roles",
                     name="playground_mask_by_role")
    conditioned = [label_of[r.path] for r in masked.itertuples() if r.mask_condition == "target"]
    st.caption("Absolute scale: 1 keeps a word's features, 0 suppresses them, 0.5 is a gate that does not choose. "
               + (f"Target-conditioned gates (each token's gate reads the target): {', '.join(conditioned)}. "
                  if conditioned else "")
               + "A mask that selects for the target keeps the row's own sentiment word and turns down its planted "
                 "word and the other targets' words.")

# -- 4. stress tests -----------------------------------------------------------------------------------
st.header("4 · Take the shortcut away: stress tests")
edits = [e for e in ALL_EDITS if part[f"flip_{e}"].notna().any()]
if not edits:
    st.info("These runs were not stress-tested yet:")
    st.code(f"python -m cmcs_core stress --run {' '.join(part.path)}", language="bash")
else:
    series = {label_of[r.path]: [getattr(r, f"flip_{e}") for e in edits] for r in part.itertuples()}
    errors = {label_of[r.path]: [getattr(r, f"flip_{e}_ci") for e in edits] for r in part.itertuples()}
    widgets.show_fig(figures.percent_bars(edits, series, "Share of edited test rows whose prediction changes",
                                          "flip rate", errors), key="tour_flips", name="playground_flip_rates")
    st.caption("Whiskers: 95% bootstrap interval over rows. " + " · ".join(
        f"**{e}**: {EDIT_TITLES[e]}" for e in edits if e in PLANTED_EDITS) + ". None of these changes the target's "
        "own sentiment word or its label, so every flip is the shortcut at work.")
    tested = part[part[[f"flip_{e}" for e in edits]].notna().any(axis=1)]
    c1, c2 = st.columns([3, 2])
    pick = c1.selectbox("Run", list(tested.path), key="tour_run", format_func=label_of.get,
                        index=list(tested.path).index(str(run.path)) if str(run.path) in set(tested.path) else 0)
    chosen = next(r for r in runs if str(r.path) == pick)
    report = chosen.stress_report()["splits"].get("test", {}).get("edits", {})
    run_edits = [e for e in edits if report.get(e, {}).get("applies")]
    edit = c2.selectbox("Edit", run_edits, key="tour_edit", format_func=lambda e: f"{e} — {EDIT_TITLES[e]}")
    flipped = data.flipped_rows(chosen, report[edit]["rows_file"]) if edit else None
    if flipped is not None and flipped.empty:
        st.success("No row flipped under this edit.")
    elif flipped is not None:
        view = flipped[["index", "label", "pred_before", "pred_after", "target", "edited_tweet"]].copy()
        if edit == "swap_image_cue":
            view["edited_caption"] = flipped.edited_caption
        st.markdown(f"**{len(flipped)}** flipped rows. Pick one, then open it in the Inspector with the edit applied.")
        sel = st.dataframe(view.head(300), hide_index=True, width="stretch", on_select="rerun",
                           selection_mode="single-row", key="tour_rows", height=260)
        i = sel.selection.rows[0] if sel and sel.selection.rows else 0
        row = flipped.iloc[i]
        st.markdown(f"#{row['index']}: gold **{row.label}**, prediction **{row.pred_before} → {row.pred_after}** · "
                    f"original: {widgets.highlight_target(str(row.tweet), str(row.target))} · edited: "
                    f"{widgets.highlight_target(str(row.edited_tweet), str(row.edited_target))}")
        caption = row.edited_caption if isinstance(row.edited_caption, str) and row.edited_caption else None
        blocked = None if chosen.has_checkpoint else "this run has no checkpoint"
        if st.button("Open in the Inspector with the edit applied", key="tour_open", disabled=blocked is not None,
                     help=blocked, on_click=state.open_in_inspector,
                     args=(pick, str(row.edited_tweet).replace("$T$", str(row.edited_target)), str(row.edited_target),
                           caption, str(row.edited_image_id), f"Tour: {edit} applied to row #{row['index']} of "
                           f"`{chosen.name}`")):
            st.switch_page(state.INSPECTOR)

# -- 5. the target-aware variant ---------------------------------------------------------------------
st.header("5 · The paper's CMCS beside a target-aware CMCS")
expected = preset_runs(root, PRESET)
present = {name: path for name, path in expected.items() if str(path) in set(frame.path)}
if len(present) == len(expected):
    st.markdown(f"The **{PRESET}** playground puts a planted word in every clause, beside each target's own "
                "evidence and the other targets' words, and draws dev without the shortcut. Pick its dataset "
                f"(`{Path(next(iter(present.values()))).name.split('_')[0]}`… runs) above to read sections 2–4 for "
                "the text-only baseline, the paper's CMCS and CMCS with target-conditioned gates fitted by a "
                "counterfactual upper level.")
    if folder != frame[frame.path == str(next(iter(present.values())))].data.iloc[0]:
        st.caption("It is not the dataset shown above: choose it in *Playground dataset*.")
else:
    st.markdown(f"The **{PRESET}** preset trains the text-only baseline, the paper's CMCS and the target-aware "
                "variant (target-conditioned gates, a counterfactual upper level) on a playground where every "
                "clause carries a planted word beside its target's evidence. About 3–4 minutes of CPU:")
    st.code(preset_command(PRESET, root), language="bash")
    if state.demo_mode():
        st.caption("Demo mode trains nothing from the page: run it on the server, then reload.")
