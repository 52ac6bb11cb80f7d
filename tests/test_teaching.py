"""What a teacher hit, through Streamlit's AppTest on the runs `make app` trains: intervals
printed, gaps in the charts explained, no placeholders or "(ours)", what a picture edit changed, masks that
choose hard drawn readably, plain names with a glossary, the target-aware runs trained from the Tour."""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from test_app import charts, no_exceptions, page, plotly_values

from app import glossary
from app.widgets import md
from cmcs_core.command import cli_command
from cmcs_core.config import METHOD_TITLES
from cmcs_core.data.counterfactual import EDIT_FLIP_MEANS, EDIT_NAMES
from cmcs_core.variants import VARIANT_TITLES

CMCS = "playground_cmcs_s0"


def spec_of(at, title_part: str) -> dict:
    return next(s for s in (json.loads(c.proto.spec) for c in charts(at)) if title_part in s["layout"]["title"]["text"])


def written(at) -> list[str]:
    """Every text a class reads on the page: Markdown, captions, alerts, metric labels, table cells, chart titles,
    legends and axis labels."""
    out = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success") for e in at.get(kind)]
    for frame in at.dataframe:
        out += [str(v) for v in frame.value.astype(str).to_numpy().ravel()] + [str(c) for c in frame.value.columns]
    for spec in (json.loads(c.proto.spec) for c in charts(at)):
        out.append(spec["layout"].get("title", {}).get("text", ""))
        out += [str(t.get("name", "")) for t in spec["data"]]
        out += [str(x) for t in spec["data"] if isinstance(t.get("x"), list) for x in t["x"]]
    return out


def stress_of(runs, name: str) -> dict:
    return json.loads((runs / name / "stress.json").read_text())["splits"]["test"]["edits"]


def test_tour_prints_intervals_and_puts_labels_above_the_whiskers(playground_runs):
    at = page("Tour", playground_runs, CMCS).run()
    no_exceptions(at)
    spec = spec_of(at, "prediction changes")
    bars = [t for t in spec["data"] if t["type"] == "bar"]
    labels = [t for t in spec["data"] if t["type"] == "scatter" and t.get("mode") == "text"]
    assert bars and len(labels) == len(bars)
    for bar, label in zip(bars, labels):
        assert not any(bar.get("text") or [])  # no value printed on the bar, where the whisker's cap would cover it
        ys, ups = plotly_values(bar["y"]), plotly_values(bar["error_y"]["array"])
        tops = [None if y is None else y + (u or 0) for y, u in zip(ys, ups)]
        assert plotly_values(label["y"]) == pytest.approx(tops)  # each value printed at its whisker's top
        assert all("95% interval" in h for h in bar["hovertext"] if h)
    table = next(m.value for m in at.markdown if "flip rate (95% interval)" in m.value)
    for name in ("playground_cmcs_s0", "playground_text_only_s0"):
        for edit, res in stress_of(playground_runs, name).items():
            if res.get("applies"):
                lo, hi = res["flip_ci"]
                assert f"{100 * res['flip_rate']:.0f}% ({100 * lo:.0f}–{100 * hi:.0f})" in table, (name, edit)


def test_tour_explains_every_gap_in_the_stress_chart(playground_runs):
    at = page("Tour", playground_runs, CMCS).run()
    spec = spec_of(at, "prediction changes")
    legend = {t["name"] for t in spec["data"] if t["type"] == "bar"}
    assert not any("pixels" in name for name in legend)  # the untested pixel run is not an empty legend entry
    note = next(c.value for c in at.caption if "95% interval" in c.value)
    pixels = playground_runs / "playground_cmcs_pixels_s0"
    assert "was not stress-tested" in note and cli_command("stress", "--run", pixels) in note
    reason = stress_of(playground_runs, "playground_text_only_s0")["swap_image_cue"]["reason"]
    assert f"no bar for **Text-only baseline** under *{EDIT_NAMES['swap_image_cue']}*: {reason}" in note
    for edit in ("remove_planted_word", "swap_planted_word", "swap_image_cue"):
        assert EDIT_NAMES[edit] in note and EDIT_FLIP_MEANS[edit] in note


def test_nothing_a_class_reads_holds_a_placeholder_ours_or_a_code_name(playground_runs):
    """No `$T$`, no "(ours)", no snake_case edit name or pred_before/pred_after column: the code names live in
    tooltips, links and the Glossary (and in the tables as the command line prints them, in their expander)."""
    code_names = [*EDIT_NAMES, "pred_before", "pred_after"]
    for name in ("Home", "Tour", "Compare", "Robustness", "Masks"):
        at = page(name, playground_runs, CMCS).run()
        no_exceptions(at)
        cli_tables = {m.value for e in at.expander for m in e.markdown}
        texts = [re.sub(r"\]\([^)]*\)", "]", t) for t in written(at) if t not in cli_tables]  # links' targets out
        assert not [t for t in texts if "(ours)" in t], name
        assert not [t for t in texts if "$T$" in t and "tab-separated" not in t], name  # only the upload's format
        assert not [t for t in texts for c in code_names if c in t], name
    assert "(ours)" not in METHOD_TITLES["cmcs"]


def test_robustness_shows_what_a_caption_cue_swap_changed(playground_runs):
    at = page("Robustness", playground_runs, CMCS).run()
    at.selectbox(key="rob_run").select(str(playground_runs / CMCS)).run()
    at.selectbox(key="rob_rows_edit").select("swap_image_cue").run()
    no_exceptions(at)
    res = stress_of(playground_runs, CMCS)["swap_image_cue"]
    rows = pd.read_csv(playground_runs / CMCS / res["rows_file"], keep_default_na=False, dtype={"index": str})
    assert len(rows), "the fixture's CMCS run flips no row under swap_image_cue"
    table = at.dataframe[-1].value
    assert list(table["edited caption"]) == list(rows.edited_caption.head(500))
    data = Path(json.loads((playground_runs / CMCS / "config.json").read_text())["data"]["dataset"])
    row = rows.iloc[0]
    before, after = json.loads((data / "captions.json").read_text())[row.image_id], row.edited_caption
    assert before != after
    shown = [m.value for m in at.markdown]
    assert any(v.startswith("tweet (unchanged)") for v in shown)
    assert f"caption before: _{md(before)}_" in shown and f"caption after the edit: _{md(after)}_" in shown


def test_a_recoloured_picture_is_shown_and_opens_in_the_inspector(pixels_stressed_runs):
    runs, name = pixels_stressed_runs, "playground_cmcs_pixels_s0"
    res = stress_of(runs, name)["swap_image_cue"]
    rows = pd.read_csv(runs / name / res["rows_file"], keep_default_na=False, dtype={"index": str})
    assert len(rows), "the fixture's pixel run flips no row under swap_image_cue"
    at = page("Robustness", runs, name).run()
    at.selectbox(key="rob_run").select(str(runs / name)).run()
    at.selectbox(key="rob_rows_edit").select("swap_image_cue").run()
    no_exceptions(at)
    captions = [c for image in at.get("image") for c in image.captions]
    assert "picture before" in captions and "picture after the edit" in captions
    at.button(key="rob_open").click().run()
    no_exceptions(at)
    row = rows.iloc[0]
    assert any(md(f"the edited picture {row.edited_image_id}") in c.value for c in at.caption)
    final = next(m for m in at.metric if m.label == "Final label")
    assert final.value == row.pred_after  # the Inspector reads the recoloured picture the stress test read


def test_target_aware_masks_are_drawn_on_a_scale_that_shows_them(target_cue_runs):
    from cmcs_core.runs.reader import load_run
    from cmcs_core.word_stats import mask_word_table

    name = "playground-target-cue_cmcs+target_aware_mask_upper_s0"
    table = mask_word_table(load_run(target_cue_runs / name).masks("test"))
    assert (table.mean_mask < 0.01).mean() >= 0.2, "the fixture's target-aware gates do not choose hard"
    at = page("Masks", target_cue_runs, name).run()
    no_exceptions(at)
    assert any("of the words have a mean gate below 0.01" in i.value for i in at.info)
    assert at.toggle(key="mask_log").value
    axis = spec_of(at, "lowest mean gate")["layout"]["yaxis"]
    assert axis["type"] == "log" and axis["range"][0] < -4  # 0.0001 and below still drawn
    ranked = next(c.value for c in at.caption if "planted words by mean gate" in c.value)
    assert "(0.000)" not in ranked and re.search(r"\*\w+\* 0\.\d{4}, below \d+% of the words", ranked)
    assert any("the words that name the planted image cue" in c.value for c in at.caption)
    at.radio(key="mask_measure").set_value("mean_share").run()
    no_exceptions(at)
    assert spec_of(at, "lowest share")["layout"]["yaxis"]["type"] == "log"


def test_the_tour_names_the_target_aware_run_plainly(target_cue_runs):
    at = page("Tour", target_cue_runs, "playground-target-cue_cmcs+target_aware_mask_upper_s0").run()
    no_exceptions(at)
    box = at.selectbox(key="tour_data")
    labels = box.options  # as the menu shows them
    assert any(label.startswith("target-cue playground") for label in labels), labels
    assert any(label.startswith("first-run playground") for label in labels), labels
    texts = written(at)
    assert any(f"CMCS + {VARIANT_TITLES['target_aware_mask_upper']}" in t for t in texts)
    assert not [t for t in texts if "target_aware_mask_upper" in t or "target-aware-mask-upper" in t]
    note = next(c.value for c in at.caption if "95% interval" in c.value)
    assert EDIT_NAMES["clause_positive"] in note and EDIT_FLIP_MEANS["clause_positive"] in note


def test_the_glossary_holds_every_term_a_page_links_to(playground_runs):
    at = page("Glossary", playground_runs).run()
    no_exceptions(at)
    shown = " ".join(e.value for e in list(at.markdown) + list(at.subheader))
    for edit, name in EDIT_NAMES.items():
        assert name.capitalize() in shown and f"`{edit}`" in shown
    anchors = set(glossary.TERMS) | set(glossary.edit_entries())
    linked = set()
    for name in ("Tour", "Robustness"):
        at = page(name, playground_runs, CMCS).run()
        linked |= {m for t in written(at) for m in re.findall(r"\(/Glossary#([\w-]+)\)", t)}
    assert len(linked) >= 6 and linked <= anchors, linked - anchors


def test_the_inspector_says_when_the_targets_own_clause_was_cut(app_runs):
    at = page("Inspector", app_runs, "cap_cmcs").run()
    at.text_area(key="ins_tweet").input("word " * 40 + "and Drake was great tonight")
    at.text_input(key="ins_target").input("Drake").run()
    no_exceptions(at)
    assert any("target's own mention and the words around it are in the part that was cut" in w.value for w in at.warning)
    at.text_area(key="ins_tweet").input("Drake was great tonight " + "word " * 40).run()
    warning = next(w.value for w in at.warning if "word pieces" in w.value)
    assert "mention is read" in warning and "was cut**" not in warning


def test_the_target_cue_runs_train_from_the_tour(playground_runs, tmp_path, monkeypatch):
    """Outside the demo mode a button trains the preset through the library, with a progress bar; when it ends
    the Tour offers the comparison. (Smaller than the preset, so the test stays short.)"""
    from cmcs_core.playground import run as playground_run
    from cmcs_core.playground.story import preset_command, preset_data_dir, preset_runs

    runs = tmp_path / "runs"
    shutil.copytree(playground_runs, runs)
    generator = {**playground_run.PRESETS["target-cue"]["generator"], "n_train": 60, "n_dev": 30, "n_test": 30}
    monkeypatch.setitem(playground_run.PRESETS["target-cue"], "generator", generator)
    monkeypatch.setattr(playground_run, "DEFAULT_EPOCHS", 1)
    at = page("Tour", runs, CMCS).run()
    no_exceptions(at)
    assert any(c.value == preset_command("target-cue", runs) for c in at.code)
    at.button(key="tour_train").click().run()
    seen_bar, deadline = False, time.time() + 900
    while time.time() < deadline:
        seen_bar |= any(b.text.startswith("Training the target-cue runs: step") for b in at.get("progress"))
        if any("Pick it in *Playground dataset*" in m.value for m in at.markdown):
            break
        time.sleep(2)
        at.run()
    no_exceptions(at)
    assert seen_bar
    assert all((p / "metrics.json").is_file() for p in preset_runs(runs, "target-cue").values())
    assert (preset_data_dir(runs, "target-cue") / "truth.json").is_file()
    assert "tour_train" not in [b.key for b in at.button]


def test_the_demo_mode_trains_nothing_and_prints_the_command(playground_runs, tmp_path, monkeypatch):
    from cmcs_core.playground.story import preset_command

    runs = tmp_path / "runs"
    shutil.copytree(playground_runs, runs)
    monkeypatch.setenv("CMCS_DEMO", "1")
    monkeypatch.setenv("CMCS_RUNS_DIR", str(runs))
    at = page("Tour", runs, CMCS).run()
    no_exceptions(at)
    assert "tour_train" not in [b.key for b in at.button]
    assert any(c.value == preset_command("target-cue", runs) for c in at.code)
