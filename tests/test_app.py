"""Every app page through Streamlit's AppTest, entered through app/main.py (st.navigation) as a
user would, against tiny run folders made by the test."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from app_fixtures import REPO
from streamlit.testing.v1 import AppTest

from app.figures import wrap
from cmcs_core.config import METHOD_TITLES
from cmcs_core.data.counterfactual import EDIT_NAMES
from cmcs_core.data.tsv import LABEL_NAMES
from cmcs_core.runs.reader import load_run

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
    assert table["test_acc"].between(0, 100).all() and (table["test_acc"] > 1).any()  # percent, like the headline
    assert any("broken_run" in e.value for e in at.sidebar.error)
    at.sidebar.selectbox[1].select(str(app_runs / "cap_text_only")).run()  # compare with
    assert at.session_state["compare_path"] == str(app_runs / "cap_text_only")
    assert any("cap_text_only" in c.value for c in at.caption)


def test_home_without_runs_gives_the_command(tmp_path):
    at = page("Home", tmp_path / "empty").run()
    no_exceptions(at)
    assert any("No runs found" in w.value for w in at.warning)
    assert any(".venv/bin/cmcs playground --runs-dir" in m.value for m in at.markdown)  # works from the project root


def test_training_dynamics(app_runs):
    at = page("Training_dynamics", app_runs, "cap_cmcs").run()
    no_exceptions(at)
    assert at.multiselect[0].value == [1, 2]
    assert len(charts(at)) >= 6  # Fig. 4 x2, alpha/beta, losses, accuracy, effect vs weight
    fig4 = [json.loads(c.proto.spec)["layout"] for c in charts(at) if c.key.startswith("fig4_")]
    assert fig4[0]["yaxis"]["range"] == fig4[1]["yaxis"]["range"]  # side by side: one y range
    assert fig4[0]["yaxis2"]["range"] == fig4[1]["yaxis2"]["range"]
    machinery = {c.key: json.loads(c.proto.spec) for c in charts(at) if c.key.startswith("machinery_")}
    assert {"machinery_grad_norm", "machinery_mask_mean"} <= set(machinery)  # does the mask move
    gates = machinery["machinery_mask_mean"]
    assert gates["layout"]["yaxis"]["range"] == [0, 1]  # gates on their absolute scale
    for trace in gates["data"]:
        assert all(v is not None for v in plotly_values(trace["y"]))  # NaN rows are left out, never drawn
    n = len(charts(at))
    at.multiselect[0].set_value([2]).run()
    assert len(charts(at)) == n - 1
    at.session_state["compare_path"] = str(app_runs / "cap_text_only")
    at.run()
    no_exceptions(at)
    layout = json.loads(next(c for c in charts(at) if c.key == "machinery_grad_norm").proto.spec)["layout"]
    assert layout["yaxis2"]["matches"] == "y"  # this run beside the compare run on one y axis


def test_feature_space_projects_and_caches(app_runs, tmp_path, monkeypatch):
    """PCA draws first; a t-SNE is cached under $CMCS_CACHE_DIR, never in the run folder."""
    monkeypatch.setenv("CMCS_CACHE_DIR", str(tmp_path / "cache"))
    at = page("Feature_space", app_runs, "pix_cmcs").run()
    no_exceptions(at)
    assert len(charts(at)) >= 2
    projection = next(s for s in at.selectbox if s.label == "Projection")
    assert projection.value == "pca"
    projection.select("tsne").run()
    no_exceptions(at)
    cached = list((tmp_path / "cache" / "projections").glob("pix_cmcs_test_text_*_tsne_*.npy"))
    assert len(cached) == 2
    features = next(s for s in at.selectbox if s.label == "Features")
    assert "visual" in features.options[1]
    features.select("visual").run()
    no_exceptions(at)
    assert len(list((tmp_path / "cache" / "projections").glob("pix_cmcs_test_visual_*_tsne_*"))) == 2
    assert not (app_runs / "pix_cmcs" / "projections").exists()


def figures(at: AppTest) -> list[dict]:
    """The plotly figures of a rendered page, as JSON."""
    return [json.loads(c.proto.spec) for c in charts(at)]


def heatmaps(at: AppTest, title_part: str) -> list[dict]:
    """Heatmap traces of the figures whose title contains title_part (with the figure's title)."""
    out = []
    for fig in figures(at):
        title = fig.get("layout", {}).get("title", {}).get("text", "")
        if title_part in title:
            out += [{**t, "figure_title": title} for t in fig["data"] if t.get("type") == "heatmap"]
    return out


def cells(heatmap: dict) -> int:
    """Tokens drawn in a wrapped token heatmap (rows padded with None)."""
    return sum(v is not None for row in heatmap["z"] for v in row)


def test_masks_page(app_runs):
    at = page("Masks", app_runs, "cap_cmcs").run()
    no_exceptions(at)
    assert not heatmaps(at, "what the text mask does")  # the model is loaded only when asked for
    at.toggle(key="mask_effect_on").set_value(True).run()
    no_exceptions(at)
    assert len(charts(at)) >= 5  # probabilities, text + caption mask, what the mask does (2), suppressed words …
    words = at.dataframe[-1].value
    assert {"word", "mean_mask", "lift", "top_label"} <= set(words.columns)
    assert words["mean_mask"].is_monotonic_increasing
    masks = heatmaps(at, "text mask per token")
    assert masks and all((h["zmin"], h["zmax"]) == (0, 1) for h in masks)  # absolute by default
    assert "absolute scale 0…1" in masks[0]["figure_title"] and "spread" in masks[0]["figure_title"]
    effects = heatmaps(at, "what the text mask does")
    assert effects and (effects[0]["zmin"], effects[0]["zmax"]) == (-1, 1)
    assert cells(effects[0]) == cells(masks[0])  # one Δp per token
    at.radio(key="mask_sample_scale").set_value("contrast").run()
    no_exceptions(at)
    stretched = heatmaps(at, "text mask per token")[0]
    values = [v for row in stretched["z"] for v in row if v is not None]  # long inputs wrap onto more rows
    assert "CONTRAST VIEW" in stretched["figure_title"]
    assert (stretched["zmin"], stretched["zmax"]) == pytest.approx((min(values), max(values)))


def test_masks_page_pixel_run_draws_the_cell_grid(app_runs):
    at = page("Masks", app_runs, "pix_cmcs").run()
    at.toggle(key="mask_effect_on").set_value(True).run()
    no_exceptions(at)
    grids = [f for f in figures(at) if any(t.get("type") == "image" for t in f["data"])]
    titles = [f["layout"]["title"]["text"] for f in grids]
    assert any("visual mask on the image grid" in t for t in titles), titles
    assert any("what the visual mask does" in t for t in titles), titles
    z = heatmaps(at, "what the visual mask does")[0]["z"]  # plotly may ship arrays as typed buffers
    shape = tuple(int(n) for n in z["shape"].split(",")) if isinstance(z, dict) else (len(z), len(z[0]))
    assert shape == (7, 7)


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
    assert any("visual input: dataset image img00\\.png" in c.value for c in at.caption)  # escaped Markdown
    at.selectbox(key="cf_word").select(3).run()  # the replacement box opens once a word is chosen
    at.text_input(key="cf_replacement").input("awful").run()
    no_exceptions(at)
    assert any("Label" in m.value for m in list(at.success) + list(at.warning))


def test_compare_tables_and_confusions(app_runs):
    at = page("Compare", app_runs, "cap_cmcs").run()
    no_exceptions(at)
    assert any("Table 1" in m.value for m in at.markdown)
    assert any("Table 2" in m.value for m in at.markdown)
    results = at.dataframe[0].value  # the playground-style table: not a benchmark dataset
    assert {METHOD_TITLES["cmcs"], "Text-only baseline"} <= set(results["method"])
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


def test_robustness_page_shows_target_awareness_beside_the_flip_rates(app_runs, tmp_path):
    """Runs whose metrics.json carries target awareness get a chart of it on 0-100% with the
    intervals; runs without it (committed stress folders keep no predictions) get a note instead."""
    import shutil

    at = page("Robustness", app_runs, "cap_cmcs").run()
    assert any("carry no target-awareness figures" in i.value for i in at.info)
    root = tmp_path / "runs"
    shares = {"cap_cmcs": (0.25, 0.5), "cap_text_only": (0.1, 0.8)}
    for name, (right, single) in shares.items():
        shutil.copytree(app_runs / name, root / name)
        metrics = json.loads((root / name / "metrics.json").read_text())
        metrics["test"]["target_awareness"] = {"tweets": 20, "rows": 45, "all_targets_right": right,
                                               "all_targets_right_ci": [right - 0.1, right + 0.1],
                                               "single_label": single, "single_label_ci": [single - 0.2, single + 0.1]}
        (root / name / "metrics.json").write_text(json.dumps(metrics))
    at = page("Robustness", root, "cap_cmcs").run()
    no_exceptions(at)
    spec = next(json.loads(c.proto.spec) for c in charts(at)
                if "targets of different gold labels" in json.loads(c.proto.spec)["layout"]["title"]["text"])
    assert spec["layout"]["yaxis"]["range"] == [0, 100]
    bars = {t["name"]: plotly_values(t["y"]) for t in spec["data"] if t["type"] == "bar"}
    assert bars == {METHOD_TITLES["cmcs"]: pytest.approx([25.0, 50.0]), "Text-only baseline": pytest.approx([10.0, 80.0])}
    assert any("20 such tweets" in c.value for c in at.caption)


def test_robustness_page_reads_committed_rows_by_reference(data_dir):
    """results/stress_frozen keeps the flipped rows' tweets by reference: the page shows them back
    from the data, and without a checkpoint the Inspector button is off."""
    root = REPO / "results" / "stress_frozen"
    run = root / "frozen" / "twitter2015_minilm_frozen_cmcs_s1"
    at = page("Robustness", root, str(run.relative_to(root))).run()
    no_exceptions(at)
    at.selectbox(key="rob_rows_edit").select("clause_positive").run()
    no_exceptions(at)
    shown = at.dataframe[-1].value
    res = json.loads((run / "stress.json").read_text())["splits"]["test"]["edits"]["clause_positive"]
    assert len(shown) == res["flipped"] and (shown["edited tweet"].str.len() > 0).all()
    first = load_run(run).flipped(res["rows_file"]).iloc[0]
    assert shown["edited tweet"].iloc[0] == first.edited_tweet.replace("$T$", first.edited_target)
    assert not at.warning or all("Only labels" not in w.value for w in at.warning)
    assert at.button[0].disabled


@pytest.mark.parametrize("name", ["Training_dynamics", "Feature_space", "Masks", "Case_studies", "Inspector", "Compare",
                                  "Robustness"])
def test_pages_without_runs_do_not_crash(name, tmp_path):
    at = page(name, tmp_path).run()
    no_exceptions(at)
    assert any("No runs found" in w.value for w in at.warning)


def test_png_export_with_system_chromium():
    """The PNG download renders offline through kaleido and Debian's chromium."""
    import plotly.graph_objects as go

    from app import figures

    png = figures._png(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])))
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
    errors = [e.value for e in at.main.error]
    assert any("result folder kept without its weights" in e for e in errors), errors  # said as what it is
    assert not any("unfinished" in e or "still training" in e for e in errors), errors


def plotly_values(a) -> list:
    """A trace's array from a figure's JSON: plain, or plotly's typed-array encoding."""
    import base64

    import numpy as np

    if isinstance(a, dict):
        return np.frombuffer(base64.b64decode(a["bdata"]), dtype=a["dtype"]).tolist()
    return list(a)


def fusion_change(at: AppTest) -> tuple[float, float]:
    """(original, edited) fusion weight from the counterfactual's message."""
    import re

    msg = next(m.value for m in list(at.success) + list(at.warning) if "fusion weight" in m.value)
    a, b = re.search(r"fusion weight ([0-9]+\.[0-9]+) → ([0-9]+\.[0-9]+)", msg).groups()
    return float(a), float(b)


def test_inspector_counterfactual_uses_the_typed_caption(app_runs):
    """The swap starts from the caption typed above (not the default or a previous one), no edit is
    applied until one is asked for, and the edited prediction is the one of the edited inputs."""
    from cmcs_core.inference import Predictor

    at = page("Inspector", app_runs, "cap_cmcs").run()
    tweet, target = "Drake was great tonight at the show", "Drake"
    at.text_area(key="ins_tweet").input(tweet)
    at.text_input(key="ins_target").input(target)
    at.text_input(key="ins_caption").input("a red picture with a white circle").run()
    no_exceptions(at)
    assert at.text_input(key="cf_caption").value == "a red picture with a white circle"
    assert at.selectbox(key="cf_word").value == -1  # no edit the user did not ask for
    assert any("Pick a word to delete or replace" in i.value for i in at.info)
    at.selectbox(key="cf_word").select(1).run()  # delete "was"
    edited = "Drake great tonight at the show"
    assert any(edited in m.value for m in at.markdown)
    at.text_input(key="ins_caption").input("a blue picture with a white circle").run()
    assert at.text_input(key="cf_caption").value == "a blue picture with a white circle"  # follows the typed one
    at.text_input(key="cf_caption").input("a green picture with a white circle").run()
    no_exceptions(at)
    assert not at.main.error, [e.value for e in at.main.error]
    pred = Predictor(app_runs / "cap_cmcs")
    s0 = pred.predict(tweet, target, caption="a blue picture with a white circle")["s"]
    s1 = pred.predict(edited, target, caption="a green picture with a white circle")["s"]
    assert fusion_change(at) == (round(s0, 3), round(s1, 3))
    at.selectbox(key="cf_word").select(0).run()  # deleting the target itself is refused
    assert any("removes the target" in e.value for e in at.main.error)


def test_inspector_warns_when_the_encoder_reads_mostly_unknown_tokens(app_runs):
    at = page("Inspector", app_runs, "cap_cmcs").run()
    at.text_area(key="ins_tweet").input("😀😀 🎉🎉 Drake 🔥🔥 😍😍 🙌🙌")
    at.text_input(key="ins_target").input("Drake").run()
    no_exceptions(at)
    assert any("unknown to the encoder" in w.value and "tweet" in w.value for w in at.warning)
    at.text_area(key="ins_tweet").input("The new album by Drake is amazing tonight").run()
    assert not any("unknown to the encoder" in w.value for w in at.warning)


def test_user_text_is_not_markdown(app_runs):
    """A tweet starting with # stays a line of text (escaped), not a heading."""
    at = page("Inspector", app_runs, "cap_cmcs").run()
    at.text_area(key="ins_tweet").input("# Drake :red[is] *great* tonight now").run()
    at.text_input(key="ins_target").input("Drake").run()
    at.selectbox(key="cf_word").select(5).run()  # delete "now": the rest is shown as typed
    no_exceptions(at)
    edited = next(m.value for m in at.markdown if m.value.startswith("Edited tweet"))
    assert "\\#" in edited and "\\:red\\[is\\]" in edited and "\\*great\\*" in edited
    assert not any(m.value.lstrip().startswith("#") for m in at.markdown)


def test_upload_limit_is_the_one_the_app_states():
    """Streamlit's own limit (.streamlit/config.toml) is the Inspector's."""
    import tomllib
    from streamlit import config

    limit = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    assert limit == 20
    config.get_config_options(force_reparse=True)
    assert config.get_option("server.maxUploadSize") == limit
    source = (REPO / "app" / "widgets.py").read_text()
    assert 'st.get_option("server.maxUploadSize")' in source and "MAX_UPLOAD_MB = 20" not in source


def twin_runs(app_runs, tmp_path):
    """Two runs named `twin` in different folders: CMCS (grid_a) and the text-only baseline (grid_b)."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(app_runs / "cap_cmcs", root / "grid_a" / "twin")
    shutil.copytree(app_runs / "cap_text_only", root / "grid_b" / "twin")
    return root


def test_case_studies_and_compare_tell_same_name_runs_apart(app_runs, tmp_path):
    root = twin_runs(app_runs, tmp_path)
    at = page("Case_studies", root, "grid_a/twin")
    at.session_state["compare_path"] = str(root / "grid_b" / "twin")
    at.run()
    no_exceptions(at)
    table = at.dataframe[0].value
    assert {"grid_a/twin", "grid_b/twin"} <= set(table.columns)
    truth = {g: load_run(root / g / "twin").predictions("test") for g in ("grid_a", "grid_b")}
    for g in truth:
        assert table[f"{g}/twin"].str.split().str[0].tolist() == truth[g].pred.map(LABEL_NAMES.__getitem__).tolist()[:len(table)]
    at = page("Compare", root, "grid_a/twin").run()
    no_exceptions(at)
    chart = charts(at)[0]  # one point per run, not bars stacked by name
    xs = sorted(float(x) for trace in json.loads(chart.proto.spec)["data"] for x in plotly_values(trace["x"]))
    acc = sorted(100 * json.loads((root / g / "twin" / "metrics.json").read_text())["test"]["acc"] for g in truth)
    assert xs == pytest.approx(acc)


def test_pca_map_is_sklearns():
    """The instant first map (numpy SVD, no sklearn import) is scikit-learn's PCA, signs included."""
    import numpy as np
    from sklearn.decomposition import PCA

    from cmcs_core.projection import project

    x = np.random.default_rng(0).normal(size=(120, 40)).astype(np.float32) * np.linspace(0.5, 3, 40)
    ours = project(x, "pca")
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    np.testing.assert_allclose(ours, PCA(2).fit_transform(z), atol=1e-3)


def test_inspector_caption_box_survives_an_input_error(app_runs):
    """An input error stops the page above the swap box; the caption typed there comes back with the
    page, and the next edit uses it."""
    at = page("Inspector", app_runs, "cap_cmcs").run()
    at.text_area(key="ins_tweet").input("Drake was great tonight at the show")
    at.text_input(key="ins_target").input("Drake")
    at.text_input(key="ins_caption").input("a red picture with a white circle").run()
    at.text_input(key="cf_caption").input("a green picture with a white circle").run()
    no_exceptions(at)
    at.text_input(key="ins_target").input("Taylor").run()  # not in the tweet: the page stops with an error
    assert any("does not occur in the tweet" in e.value for e in at.main.error)
    at.text_input(key="ins_target").input("Drake").run()
    no_exceptions(at)
    assert at.text_input(key="cf_caption").value == "a green picture with a white circle"
    assert not at.main.error, [e.value for e in at.main.error]
    assert any("Swapped caption: _a green picture with a white circle_" in m.value for m in at.markdown)


def _result_folder(app_runs, tmp_path):
    """A finished run kept the way committed stress folders are: config, metrics and stress.json only."""
    import shutil

    runs = tmp_path / "runs"
    kept = runs / "stress_kept"
    kept.mkdir(parents=True)
    for name in ("config.json", "metrics.json", "stress.json"):
        shutil.copy(app_runs / "cap_cmcs" / name, kept / name)
    return runs


@pytest.mark.parametrize("name", ["Training_dynamics", "Masks", "Case_studies", "Feature_space", "Home"])
def test_result_folder_is_described_as_one(app_runs, tmp_path, name):
    runs = _result_folder(app_runs, tmp_path)
    at = page(name, runs, "stress_kept").run()
    no_exceptions(at)
    shown = [e.value for e in list(at.error) + list(at.warning) + list(at.info) + list(at.caption)]
    assert not any("yet" in t or "unfinished" in t.lower() or "missing" in t for t in shown), shown
    assert not at.main.error, [e.value for e in at.main.error]
    if name != "Home":
        assert any("result folder" in t for t in shown), shown


def test_tour_names_every_planted_cue_from_the_truth(playground_runs):
    """The Tour on what `make app` trains: every planted word and image cue of the generator's truth,
    the score, the masks by role and the flip rates, and a flipped row opened in the Inspector."""
    from cmcs_core.playground.story import planted_cues

    data_dir = json.loads((playground_runs / "playground_cmcs_s0" / "config.json").read_text())["data"]["dataset"]
    cues = planted_cues(data_dir)["cues"]
    at = page("Tour", playground_runs, "playground_cmcs_s0").run()
    no_exceptions(at)
    shown = " ".join([m.value for m in at.markdown] + [c.value for c in at.caption])
    for words in cues["text_spurious_words"].values():
        for word in words:
            assert word in shown, word
    for cue in cues["image_objects"].values():
        assert cue["object"] in shown, cue
    specs = [json.loads(c.proto.spec) for c in charts(at)]
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert any("agree" in t for t in titles) and any("word role" in t for t in titles)
    flips = next(s for s in specs if "prediction changes" in s["layout"]["title"]["text"])
    assert flips["layout"]["yaxis"]["range"][0] == 0 and flips["layout"]["yaxis"]["range"][1] >= 100  # full scale
    assert {t["name"] for t in flips["data"] if t["type"] == "bar"} == {f"{METHOD_TITLES['cmcs']} · captions",
                                                                         "Text-only baseline"}
    assert set(flips["data"][0]["x"]) >= {wrap(EDIT_NAMES[e]) for e in ("remove_planted_word", "swap_planted_word")}
    at.selectbox(key="tour_run").select(str(playground_runs / "playground_cmcs_s0")).run()
    report = json.loads((playground_runs / "playground_cmcs_s0" / "stress.json").read_text())["splits"]["test"]["edits"]
    edit = next(e for e in ("remove_planted_word", "swap_planted_word", "swap_image_cue") if report[e]["flipped"])
    at.selectbox(key="tour_edit").select(edit).run()
    flipped = pd.read_csv(playground_runs / "playground_cmcs_s0" / report[edit]["rows_file"], keep_default_na=False,
                          dtype={"index": str})
    row = flipped.iloc[0]
    next(b for b in at.button if b.key == "tour_open").click().run()
    no_exceptions(at)
    assert at.session_state["ins_tweet"] == row.edited_tweet.replace("$T$", row.edited_target)
    assert any("Opened from the Tour" in i.value for i in at.info)
    final = next(m for m in at.metric if m.label == "Final label")
    assert final.value == row.pred_after  # the Inspector predicts what the stress test recorded


def test_demo_mode_refuses_paths_outside_the_runs_folder(app_runs, tmp_path, monkeypatch):
    """CMCS_DEMO=1: no runs-folder field; ?runs= and ?run= naming anything outside the fixed folder are
    refused, and no folder outside it is scanned or read."""
    import shutil

    from app import data as app_data

    outside = tmp_path / "outside"
    shutil.copytree(app_runs / "cap_text_only", outside / "secret_run")
    monkeypatch.setenv("CMCS_DEMO", "1")
    monkeypatch.setenv("CMCS_RUNS_DIR", str(app_runs))
    read = []
    real_scan, real_load = app_data.scan_runs, app_data.load_run
    monkeypatch.setattr(app_data, "scan_runs", lambda *roots: read.extend(roots) or real_scan(*roots))
    monkeypatch.setattr(app_data, "load_run", lambda p, *a: read.append(p) or real_load(p, *a))
    app_data.scan.clear()
    at = AppTest.from_file(str(ENTRY), default_timeout=180)
    at.query_params["runs"] = str(outside)
    at.query_params["run"] = str(outside / "secret_run")
    at.run()
    no_exceptions(at)
    assert not [t for t in at.sidebar.text_input if t.label == "Runs folder"]  # nothing to type a path into
    warnings = " ".join(w.value for w in at.sidebar.warning)
    assert "runs folder is fixed" in warnings and "no such run" in warnings
    assert at.session_state["run_path"] != str(outside / "secret_run")
    assert read and all(str(p).startswith(str(app_runs)) for p in read), read
    at.session_state["runs_dir"] = str(outside)  # even a forged session value is not used
    at.run()
    assert all(str(p).startswith(str(app_runs)) for p in read), read


def test_home_and_robustness_offer_the_mpnet_cpu_regime(data_dir):
    """The base-size encoder's CPU runs (results/mpnet_cpu) are a regime of their own on the pages that
    choose one: named with its encoder, layers and precision, never mixed into another."""
    root = REPO / "results" / "mpnet_cpu"
    at = page("Home", root).run()
    no_exceptions(at)
    titles = [str(o) for o in at.selectbox(key="home_regime").options]
    assert any("mpnet, fine-tuned (top 4 layers)" in t and "bf16" in t for t in titles), titles
    run = root / "target_aware" / "twitter2015_mpnet_ft4_cmcs_s1+target_aware"
    at = page("Robustness", root, str(run.relative_to(root))).run()
    no_exceptions(at)
    regimes = [str(o) for o in at.selectbox(key="rob_regime").options]
    assert any("mpnet, fine-tuned (top 4 layers)" in r for r in regimes), regimes
    assert not any("minilm" in r for r in regimes), regimes
    # each change against the same run without it: the target-aware gates against paper CMCS, seed by seed
    pair = "CMCS + target-aware gates minus CMCS"
    assert {pair, "CMCS + target-aware gates minus w/o CMS + target-aware gates"} <= set(
        at.selectbox(key="rob_change_pair").options)
    at.selectbox(key="rob_change_pair").select(pair).run()
    no_exceptions(at)
    spec = next(json.loads(c.proto.spec) for c in charts(at) if json.loads(c.proto.spec)["layout"]["title"]["text"]
                .startswith(pair))
    flips = {}
    for folder, key in (("target_aware", "cmcs_s{}+target_aware"), ("paper", "cmcs_s{}")):
        for seed in (1, 2, 3):
            edits = json.loads((root / folder / f"twitter2015_mpnet_ft4_{key.format(seed)}" / "stress.json")
                               .read_text())["splits"]["test"]["edits"]
            flips.setdefault(seed, []).append(100 * edits["clause_positive"]["flip_rate"])
    # fewer flips is better, so each seed's dot sits at (without - with): right of zero in the gates' favour
    row = spec["layout"]["yaxis"]["ticktext"].index("clause_positive flips")
    dots = next(t for t in spec["data"] if t.get("name") == "seeds" and plotly_values(t["y"])[0] == row)
    assert plotly_values(dots["x"]) == pytest.approx([b - a for a, b in flips.values()])
    low, high = spec["layout"]["xaxis"]["range"]
    assert low == pytest.approx(-high)  # symmetric around zero
    # the aims, one row per variant judged against text-only of the same seeds: the target-aware CMCS's clause
    # flips as its stress.json files give them, and no aim met on Twitter2015
    aims_shown = next(d.value for d in at.dataframe if "aims met" in getattr(d.value, "data", d.value).columns)
    aims_shown = getattr(aims_shown, "data", aims_shown)
    gated = aims_shown.set_index("variant").loc["CMCS + target-aware gates"]
    mean = float(np.mean([f[0] for f in flips.values()]))
    assert next(c for k, c in gated.items() if k.startswith("clause flips")).startswith(f"{mean:.1f} ± ")
    assert gated["aims met"] == "0/4"
