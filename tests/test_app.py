"""Every app page through Streamlit's AppTest, entered through app/main.py (st.navigation) as a
user would, against tiny run folders made by the test."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from app_fixtures import REPO
from streamlit.testing.v1 import AppTest

ENTRY = REPO / "app" / "main.py"
PAGES = REPO / "pages"
LABELS = {"negative", "neutral", "positive"}


def page(name: str, runs_dir, run: str | None = None, monkeypatch=None) -> AppTest:
    """An AppTest of the app switched to one page, with the runs folder (and optionally the
    selected run) set; call .run() to render that page."""
    at = AppTest.from_file(str(ENTRY), default_timeout=180)
    at.session_state["runs_dir"] = str(runs_dir)
    if run is not None:
        at.session_state["run_path"] = str(runs_dir / run)
    if name != "Home":
        at.run()  # st.navigation registers the pages on the first run
        at.switch_page(f"../pages/{next(PAGES.glob(f'*_{name}.py')).name}")
    return at


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def test_home_lists_runs_and_reports_broken_folder(app_runs):
    at = page("Home", app_runs).run()
    no_exceptions(at)
    table = at.dataframe[0].value
    assert set(table["run"]) == {"cap_cmcs", "cap_text_only", "pix_cmcs"}
    assert set(table["visual_source"]) == {"captions", "none (text only)", "pixels (efficientnet-lite0)"}
    assert table["test_acc"].between(0, 1).all()
    assert any("broken_run" in e.value for e in at.sidebar.error)
    at.sidebar.selectbox[1].select(str(app_runs / "cap_text_only")).run()  # compare with
    assert at.session_state["compare_path"] == str(app_runs / "cap_text_only")
    assert any("cap_text_only" in c.value for c in at.caption)


def test_home_without_runs_gives_the_command(tmp_path):
    at = page("Home", tmp_path / "empty").run()
    no_exceptions(at)
    assert any("No runs found" in w.value for w in at.warning)
    assert any("python -m cmcs_core playground" in m.value for m in at.markdown)


def test_training_dynamics(app_runs):
    at = page("Training_dynamics", app_runs, "cap_cmcs").run()
    no_exceptions(at)
    assert at.multiselect[0].value == [1, 2]
    assert len(charts(at)) >= 6  # Fig. 4 x2, alpha/beta, losses, accuracy, effect vs weight
    at.multiselect[0].set_value([2]).run()
    assert len(charts(at)) == 5


def test_feature_space_projects_and_caches(app_runs):
    at = page("Feature_space", app_runs, "pix_cmcs").run()
    no_exceptions(at)
    assert len(charts(at)) >= 2
    cached = list((app_runs / "pix_cmcs" / "projections").glob("test_text_*_tsne_*.npy"))
    assert len(cached) == 2
    features = next(s for s in at.selectbox if s.label == "Features")
    assert "visual" in features.options[1]
    features.select("visual").run()
    no_exceptions(at)
    assert len(list((app_runs / "pix_cmcs" / "projections").glob("test_visual_*"))) == 2


def test_masks_page(app_runs):
    at = page("Masks", app_runs, "cap_cmcs").run()
    no_exceptions(at)
    assert len(charts(at)) >= 3  # probabilities, text mask, caption mask, suppressed words …
    words = at.dataframe[-1].value
    assert {"word", "mean_mask", "lift", "top_label"} <= set(words.columns)
    assert words["mean_mask"].is_monotonic_increasing


def test_case_studies_side_by_side(app_runs):
    at = page("Case_studies", app_runs, "cap_cmcs").run()
    no_exceptions(at)
    table = at.dataframe[0].value
    assert {"cap_cmcs", "cap_text_only", "pix_cmcs"} <= set(table.columns)
    n_all = len(table)
    at.checkbox[0].check().run()
    no_exceptions(at)
    if at.dataframe:
        shown = at.dataframe[0].value
        assert len(shown) <= n_all
        labels = shown[["cap_cmcs", "cap_text_only", "pix_cmcs"]].map(lambda v: v.split()[0])
        assert (labels.nunique(axis=1) > 1).all()


def test_inspector_caption_run(app_runs):
    at = page("Inspector", app_runs, "cap_cmcs").run()
    no_exceptions(at)
    at.text_area(key="ins_tweet").input("The new album by Drake is amazing tonight")
    at.text_input(key="ins_target").input("Drake")
    at.text_input(key="ins_caption").input("a red picture with a white circle")
    at.run()
    no_exceptions(at)
    assert not at.main.error, [e.value for e in at.main.error]
    final = next(m for m in at.metric if m.label == "Final label")
    assert final.value in LABELS
    assert len(charts(at)) >= 5  # probabilities, text mask, caption mask, IG, occlusion, counterfactual

    at.text_input(key="ins_target").input("Taylor").run()
    assert any("does not occur in the tweet" in e.value for e in at.main.error)
    at.text_input(key="ins_target").input("Drake")
    at.text_area(key="ins_tweet").input("   ").run()
    assert any("tweet is empty" in e.value for e in at.main.error)
    no_exceptions(at)


def test_inspector_counterfactual_and_pixels(app_runs):
    at = page("Inspector", app_runs, "pix_cmcs").run()
    no_exceptions(at)
    final = next(m for m in at.metric if m.label == "Final label")  # a dataset image is preselected
    assert final.value in LABELS
    assert any("visual input: dataset image img00.png" in c.value for c in at.caption)
    at.selectbox(key="cf_word").select(3)
    at.text_input(key="cf_replacement").input("awful").run()
    no_exceptions(at)
    assert any("Label" in m.value for m in list(at.success) + list(at.warning))


def test_compare_tables_and_confusions(app_runs):
    at = page("Compare", app_runs, "cap_cmcs").run()
    no_exceptions(at)
    assert any("Table 1" in m.value for m in at.markdown)
    assert any("Table 2" in m.value for m in at.markdown)
    results = at.dataframe[0].value  # the playground-style table: not a benchmark dataset
    assert {"CMCS (ours)", "Text-only baseline"} <= set(results["method"])
    assert results["regime"].str.contains("visual = captions").any()
    assert len(charts(at)) >= 3  # accuracy bars, confusion matrix, per-class F1
    paired = next(m.value for m in at.markdown if "minus each method, paired by seed" in m.value)
    acc = {name: 100 * json.loads((app_runs / name / "metrics.json").read_text())["test"]["acc"]
           for name in ("cap_cmcs", "cap_text_only")}
    row = next(line for line in paired.splitlines() if line.startswith("| Text-only baseline"))
    assert row.split("|")[3].strip() == f"{acc['cap_cmcs'] - acc['cap_text_only']:+.1f}"
    assert "visual = pixels" not in paired  # pix_cmcs has no other method to pair with
    per_class = at.dataframe[-1].value
    assert set(per_class["label"]) == LABELS


def test_robustness_page_and_open_in_inspector(app_runs):
    at = page("Robustness", app_runs, "cap_cmcs").run()
    no_exceptions(at)
    assert len(charts(at)) >= 2  # flip rates per edit and method, CMCS paired by seed
    assert json.loads(charts(at)[0].proto.spec)["layout"]["yaxis"]["range"] == [0, 100]  # honest scale
    report = json.loads((app_runs / "cap_cmcs" / "stress.json").read_text())["splits"]["test"]["edits"]
    first = next(e for e in ("clause_positive", "clause_negative", "swap_target", "swap_visual")
                 if report[e]["flipped"] > 0)
    at.selectbox(key="rob_rows_edit").select(first).run()
    no_exceptions(at)
    res = report[first]
    assert any(f"**{res['flipped']}** of {res['rows']} edited rows flipped" in m.value for m in at.markdown)
    flipped = pd.read_csv(app_runs / "cap_cmcs" / res["rows_file"], keep_default_na=False, dtype={"index": str})
    row = flipped.iloc[0]
    at.button[0].click().run()  # open the first flipped row in the Inspector
    no_exceptions(at)
    assert at.session_state["ins_tweet"] == row.edited_tweet.replace("$T$", row.edited_target)
    assert at.session_state["ins_target"] == row.edited_target
    assert at.text_area(key="ins_tweet").value == at.session_state["ins_tweet"]  # the Inspector drew it
    assert any("Opened from the Robustness page" in i.value for i in at.info)
    final = next(m for m in at.metric if m.label == "Final label")
    assert final.value == row.pred_after  # the Inspector predicts what the stress test recorded


@pytest.mark.parametrize("name", ["Training_dynamics", "Feature_space", "Masks", "Case_studies", "Inspector", "Compare",
                                  "Robustness"])
def test_pages_without_runs_do_not_crash(name, tmp_path):
    at = page(name, tmp_path).run()
    no_exceptions(at)
    assert any("No runs found" in w.value for w in at.warning)


def test_png_export_with_system_chromium():
    """The PNG download renders offline through kaleido and Debian's chromium."""
    import plotly.graph_objects as go

    from app import common

    png = common._png(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_result_folder_without_checkpoint(app_runs, tmp_path):
    """Committed result folders (results/) travel without weights: every page but the inspector."""
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(app_runs / "cap_cmcs", runs / "kept")
    (runs / "kept" / "best.safetensors").unlink()
    (runs / "kept" / "last_state.pt").unlink()
    at = page("Compare", runs, "kept").run()
    no_exceptions(at)
    assert not at.warning or all("No finished run" not in w.value for w in at.warning)
    assert len(charts(at)) >= 3
    at = page("Inspector", runs, "kept").run()
    assert any("no best checkpoint" in e.value for e in at.main.error)
