"""Tour: the playground's story in ten minutes, for a class. What the generator planted (named and
shown from its own truth files), how text-only and CMCS (and the target-aware variant) score where
the cues agree and where they conflict with the label, where the masks put the planted word, and
the stress tests that take the shortcut away, each flipped row one click from the Inspector."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import data, figures, flipped, glossary, jobs, state, widgets
from cmcs_core.command import cli_command
from cmcs_core.data.counterfactual import ALL_EDITS, EDIT_FLIP_MEANS
from cmcs_core.playground.story import (
    ACCURACY_COLUMNS,
    ROLE_TITLES,
    playground_kind,
    preset_command,
    preset_runs,
)
from cmcs_core.runs.files import PLAYGROUND_SCORE_FILE, STRESS_FILE

PRESET = "target-cue"

st.title("Tour: a shortcut, planted and caught")
runs, run, other = state.selection()
root = Path(st.session_state.get(state.RUNS_DIR, "runs"))
st.markdown(
    f"A model can score well by reading a **{glossary.link('shortcut')}**: something that goes with the label in the "
    f"training data without being about the {glossary.link('target')}. The *{glossary.link('playground')}* is a "
    "synthetic dataset where we know the truth: each tweet names one to three targets, each with its own sentiment "
    f"word, and the generator **plants** {glossary.link('planted-cue', 'cues')} that go with the label in most "
    "training rows and are at chance in test. A model that learned the sentiment words is right whether the cues "
    "agree or not; a model that learned the cues falls to chance when they conflict. Every term is in the "
    f"{glossary.link('target', 'Glossary')}.")

frame = data.story(runs) if runs else None
if frame is None or frame.empty:
    st.warning(f"No playground run under `{root}` yet. `make app` makes them on its first start; or run:")
    st.code(data.playground_command(str(root)), language="bash")
    st.stop()

folders = list(dict.fromkeys(frame.data))
kinds = {f: data.kind(f) for f in folders}
current = frame[frame.path == str(run.path)].data.iloc[0] if run is not None and str(run.path) in set(frame.path) else folders[0]
folder = st.selectbox("Playground dataset", folders, index=folders.index(current), key="tour_data",
                      format_func=lambda f: f"{kinds[f]} — {(frame.data == f).sum()} runs ({Path(f).name})")
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
    f"Planted words are neutral nouns in the same little phrases (*at the stadium*, *on monday*); **{_pct(cfg['spurious_rate'])}** "
    f"of a target's clauses carry one. The image carries a **{'small coloured shape' if kind == 'object' else 'background colour'}** "
    f"of one class. How often a cue's class equals the label, measured on the files: planted word "
    f"**{_pct(train_m.get('text_strength'))}** in train, **{_pct(test_m.get('text_strength'))}** in test; image cue "
    f"**{_pct(train_m.get('image_strength'))}** in train, **{_pct(test_m.get('image_strength'))}** in test "
    f"(chance is 33%). The {glossary.link('splits', 'validation split (dev)')}, which CMCS's "
    f"{glossary.link('levels', 'outer loop')} learns from, is drawn {'at chance, like test' if dev_chance else 'like train'}.")
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
    st.info(f"These runs have no {PLAYGROUND_SCORE_FILE} (the playground command writes it).")
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
               f"`{PLAYGROUND_SCORE_FILE}` in each run folder.")

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
tested = part[part[[f"flip_{e}" for e in ALL_EDITS]].notna().any(axis=1)]
untested = part[~part.path.isin(tested.path)]
if tested.empty:
    st.info("These runs were not stress-tested yet:")
    st.code(cli_command("stress", "--run", *part.path), language="bash")
else:
    st.markdown(f"Each {glossary.link('stress-test', 'stress test')} edits every test row in one way that is not about "
                f"the target and keeps its label; the {glossary.link('flip-rate', 'flip rate')} is the share of rows "
                "whose prediction changes.")
    series = {label_of[r.path]: [getattr(r, f"flip_{e}") for e in edits] for r in tested.itertuples()}
    errors = {label_of[r.path]: [getattr(r, f"flip_{e}_ci") for e in edits] for r in tested.itertuples()}
    widgets.show_fig(figures.percent_bars([glossary.edit_name(e) for e in edits], series, "Share of edited test rows "
                                          "whose prediction changes", "flip rate", errors, codes=edits),
                     key="tour_flips", name="playground_flip_rates")
    st.markdown(figures.interval_table([glossary.edit_name(e) for e in edits], series, errors, "flip rate (95% interval)"))
    means = {}
    for e in edits:  # one line per meaning: the edits that say the same thing share it
        means.setdefault(EDIT_FLIP_MEANS[e], []).append(glossary.link(f"edit-{e}", glossary.edit_name(e)))
    why_not = {True: "a pixel run re-encodes its pictures for every edit, so the first run leaves it out",
               False: f"no {STRESS_FILE} in its folder"}
    gaps = [f"**{label_of[r.path]}** was not stress-tested ({why_not['pixels' in r.visual_source]}): "
            f"`{cli_command('stress', '--run', r.path)}`" for r in untested.itertuples()]
    gaps += [f"no bar for **{label_of[r.path]}** under *{glossary.edit_name(e)}*: {getattr(r, f'flip_{e}_why')}"
             for r in tested.itertuples() for e in edits if pd.isna(getattr(r, f"flip_{e}"))]
    st.caption(f"Whiskers and the ranges in brackets: the {glossary.link('interval', '95% interval')} over rows. "
               + " ".join(f"{', '.join(names)}: {mean}" for mean, names in means.items())
               + ("  \n" + "  \n".join(f"Gap: {g}." for g in gaps) if gaps else ""))
    c1, c2 = st.columns([3, 2])
    pick = c1.selectbox("Run", list(tested.path), key="tour_run", format_func=label_of.get,
                        index=list(tested.path).index(str(run.path)) if str(run.path) in set(tested.path) else 0)
    chosen = next(r for r in runs if str(r.path) == pick)
    report = chosen.stress_report()["splits"].get("test", {}).get("edits", {})
    run_edits = [e for e in edits if report.get(e, {}).get("applies")]
    edit = c2.selectbox("Edit", run_edits, key="tour_edit", format_func=glossary.edit_name,
                        help=glossary.edit_help(run_edits))
    rows = data.flipped_rows(chosen, report[edit]["rows_file"]) if edit else None
    if rows is not None and rows.empty:
        st.success("No row flipped under this edit.")
    elif rows is not None:
        st.markdown(f"**{len(rows)}** flipped rows. Pick one, then open it in the Inspector with the edit applied.")
        sel = st.dataframe(flipped.table(rows.head(300), edit), hide_index=True, width="stretch", on_select="rerun",
                           selection_mode="single-row", key="tour_rows", height=260)
        row = rows.iloc[sel.selection.rows[0] if sel and sel.selection.rows else 0]
        flipped.show_row(chosen, report[edit]["rows_file"], edit, row)
        flipped.open_button(chosen, report[edit]["rows_file"], edit, row, "Tour", "tour_open")

# -- 5. the target-aware variant ---------------------------------------------------------------------
st.header("5 · The paper's CMCS beside a target-aware CMCS")
expected = preset_runs(root, PRESET)
present = {name: path for name, path in expected.items() if str(path) in set(frame.path)}
about = (f"The **{PRESET}** playground puts a planted word in every clause, beside each target's own evidence and the "
         "other targets' words, and draws the validation split without the shortcut. Its runs: the text-only baseline, "
         f"the paper's CMCS and CMCS with {glossary.link('target-aware', 'target-aware gates')} learned on the "
         "validation split.")
if len(present) == len(expected):
    preset_data = frame[frame.path == str(next(iter(present.values())))].data.iloc[0]
    st.markdown(about + " Pick it in *Playground dataset* above to read sections 2–4 for them.")
    if folder != preset_data:
        st.button(f"Show the {PRESET} playground", key="tour_show_preset", on_click=st.session_state.__setitem__,
                  args=("tour_data", preset_data))
else:
    st.markdown(about + " They are not trained yet (about 3–4 minutes of CPU).")
    job = jobs.job_for(root)
    if state.demo_mode():
        st.code(preset_command(PRESET, root), language="bash")
        st.caption("Demo mode trains nothing from the page: run this from the project root on the server, then reload.")
    elif job is not None and not job.finished:
        jobs.show_progress(str(root))
    else:
        if job is not None and job.error:
            st.error(f"Training stopped: {job.error}")
        st.button(f"Train the {PRESET} runs here", key="tour_train", type="primary", on_click=jobs.start,
                  args=(root, PRESET), help="the library trains them in the server (the command below does the same "
                                            "in a terminal); a page switch does not stop it")
        st.caption("Or in a terminal, from the project root:")
        st.code(preset_command(PRESET, root), language="bash")
