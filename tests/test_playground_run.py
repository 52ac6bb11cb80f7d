"""Playground training and scoring: a smoke run end to end, and the wordpiece -> word alignment."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cmcs_core.config import RunConfig
from cmcs_core.playground import PlaygroundConfig, generate_playground
from cmcs_core.playground.run import run_config
from cmcs_core.playground.score import cue_span, score_run
from cmcs_core.runs.formats import read_masks, write_masks, write_table
from cmcs_core.runs.reader import load_run

TWEET = "on monday honestly $T$ is so-so #news"  # spurious "monday", sentiment "so-so" (3 pieces)
TARGET = "Real Madrid"
CAPTION = "A beige background with a blue square, and a small cyan square at the top left."


def _tokenizer():
    from transformers import AutoTokenizer

    from cmcs_core.encoders.text import resolve_text_model

    return AutoTokenizer.from_pretrained(resolve_text_model("minilm"))


def _hand_made_run(tmp: Path) -> tuple[Path, dict[str, float]]:
    """A run folder whose masks put a distinct value on each role, and its truth.json."""
    data, run = tmp / "data", tmp / "run"
    data.mkdir()
    run.mkdir()
    words = TWEET.replace("$T$", TARGET).split()  # on monday honestly Real Madrid is so-so #news
    truth_row = {"target_span": [3, 5], "sentiment_positions": [6], "spurious_positions": [1],
                 "other_sentiment_positions": [], "other_spurious_positions": [],
                 "text_aligned": False, "image_aligned": True, "spurious_aligned": False,
                 "image": {"spurious_class": 0, "bbox": [0, 0, 10, 10]}}
    (data / "truth.json").write_text(json.dumps({"image_cue_kind": "object", "splits": {"test": {"7": truth_row}}}))
    cfg = RunConfig()
    cfg.data.dataset = str(data)
    cfg.save(run / "config.json")
    value = {"on": 0.5, "monday": 0.9, "honestly": 0.5, "Real": 0.3, "Madrid": 0.3, "is": 0.5, "so-so": 0.1,
             "#news": 0.5}
    tok = _tokenizer()
    text = " ".join(words)
    enc = tok(text, TARGET, return_offsets_mapping=True)
    starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
    mask = []
    for (s, e), seq in zip(enc["offset_mapping"], enc.sequence_ids()):
        word = max(i for i, a in enumerate(starts) if a <= s)
        mask.append(value[words[word]] if seq == 0 and e > s else 0.7)  # specials and the target segment: 0.7
    cap = tok(CAPTION, return_offsets_mapping=True)
    c0, c1 = CAPTION.rfind("cyan square"), CAPTION.rfind("cyan square") + len("cyan square")
    vmask = [0.2 if c0 <= s < c1 and e > s else 0.6 for s, e in cap["offset_mapping"]]
    sample = {"tokens": tok.convert_ids_to_tokens(enc["input_ids"]), "mask": mask,
              "visual_tokens": tok.convert_ids_to_tokens(cap["input_ids"]), "visual_mask": vmask, "caption": CAPTION}
    write_masks(run / "masks_test.parquet", None, [sample])
    write_table(run / "predictions_test.parquet",
                pd.DataFrame([{"index": "7", "tweet": TWEET, "target": TARGET, "label": 2, "pred": 2, "correct": 1}]))
    return run, value


def test_alignment_picks_each_words_mask_value(tmp_path: Path) -> None:
    run, value = _hand_made_run(tmp_path)
    tokens = read_masks(run / "masks_test.parquet")["samples"][0]["tokens"]
    assert tokens.count("-") == 1 and "#" in tokens  # so-so and #news really span several pieces
    res = score_run(run)
    assert res["text"]["spurious"] == pytest.approx(0.9)  # monday, not a neighbour
    assert res["text"]["sentiment"] == pytest.approx(0.1)  # all three pieces of so-so
    assert res["text"]["target"] == pytest.approx(0.3)  # first segment only, not the 0.7 pair copy
    assert res["text"]["other"] == pytest.approx(0.5)  # specials excluded
    assert res["ratio_spurious_to_sentiment"] == pytest.approx(9.0)
    assert res["p_spurious_below_sentiment"] == 0.0 and res["p_cue_below_other"] == 1.0
    # the decoration "blue square" is not the cue: only "cyan square" after "small" is
    assert res["visual"] == {"cue": pytest.approx(0.2), "other": pytest.approx(0.6)}
    assert res["accuracy"]["all"] == 1.0 and res["accuracy"]["text_conflicting_n"] == 1
    assert res["accuracy"]["text_aligned"] is None


def test_cue_span_names_the_planted_cue_only() -> None:
    s, e = cue_span(CAPTION, {"spurious_class": 0}, "object")
    assert CAPTION[s:e] == "cyan square" and CAPTION[s - 6:s] == "small "
    bg = "A teal background with a yellow sun."
    assert bg[slice(*cue_span(bg, {"spurious_class": 2}, "background"))] == "teal"


def test_alignment_refuses_tokens_from_another_text(tmp_path: Path) -> None:
    run, _ = _hand_made_run(tmp_path)
    path = run / "masks_test.parquet"
    masks = read_masks(path)
    masks["samples"][0]["tokens"][2] = "tuesday"
    write_masks(path, masks["grid"], masks["samples"])
    with pytest.raises(ValueError, match="re-tokenising"):
        score_run(run)


def test_smoke_training_on_a_small_playground(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cmcs_core.train.trainer import train

    monkeypatch.setenv("CMCS_CACHE_DIR", str(tmp_path / "cache"))
    small = PlaygroundConfig(seed=3, n_train=120, n_dev=30, n_test=30, image_size=64, photo_fraction=0.0)
    data = generate_playground(tmp_path / "data", small)
    cfg = run_config(data, "cmcs", seed=0, epochs=1)
    metrics = train(cfg, tmp_path / "run", progress=False)
    for name in ("config.json", "metrics.json", "predictions_test.parquet", "masks_test.parquet", "best.safetensors"):
        assert (tmp_path / "run" / name).is_file()
    assert metrics["visual_source"] == "captions" and metrics["test"]["n"] == 30
    res = score_run(tmp_path / "run")
    assert res["n"] == 30 and res["accuracy"]["all"] == pytest.approx(metrics["test"]["acc"])
    assert 0.0 < res["text"]["spurious"] < 1.0 and 0.0 < res["visual"]["cue"] < 1.0


def test_default_command_trains_a_captions_and_a_pixel_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `make app` gives a fresh user: both runs, the pixel one reading the drawn images
    through EfficientNet-Lite0, whose inspector takes an uploaded PNG and whose masks and
    mask effects cover the 7x7 cell grid."""
    import io

    from PIL import Image

    from cmcs_core.cli import main
    from cmcs_core.data.images import load_image
    from cmcs_core.explain import explain
    from cmcs_core.inference import Predictor
    from cmcs_core.playground.run import PIXEL_EPOCHS, STRESS_EDITS, run_name

    monkeypatch.setenv("CMCS_CACHE_DIR", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    code = main(["playground", "--data-out", str(tmp_path / "data"), "--runs-dir", str(runs), "--quiet",
                 "--n-train", "48", "--n-dev", "24", "--n-test", "24", "--epochs", "1", "--pixel-epochs", "1"])
    assert code == 0 and PIXEL_EPOCHS >= 1
    cap, pix = runs / run_name("cmcs", 0, "caption"), runs / run_name("cmcs", 0, "efficientnet-lite0")
    text_only = runs / run_name("text_only", 0, "caption")
    assert sorted(p.name for p in runs.iterdir()) == sorted([cap.name, pix.name, text_only.name])  # one text-only
    for run in (cap, text_only):  # the captions runs are stress-tested out of the box with the planted-truth edits
        edits = json.loads((run / "stress.json").read_text())["splits"]["test"]["edits"]
        assert set(edits) == set(STRESS_EDITS)
        assert edits["remove_planted_word"]["applies"] and edits["swap_planted_word"]["applies"]
        assert edits["swap_image_cue"]["applies"] == (run != text_only)
    assert not (pix / "stress.json").exists()
    assert json.loads((cap / "metrics.json").read_text())["visual_source"] == "captions"
    assert json.loads((pix / "metrics.json").read_text())["visual_source"] == "pixels (efficientnet-lite0)"
    assert load_run(pix).masks("test")["grid"] == [7, 7]
    score = json.loads((pix / "playground_score.json").read_text())
    assert set(score["visual"]) == {"cue", "other"}  # the badge's grid cells vs the rest
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(buf, format="PNG")  # an upload, not a dataset file
    pred = Predictor(pix)
    assert pred.needs_image
    res = explain(pred, "the show by Drake was awful tonight", "Drake", image=load_image(io.BytesIO(buf.getvalue())),
                  n_steps=4)
    assert res["grid"] == (7, 7) and len(res["visual_mask"]) == 49 and len(res["mask_effect"]["visual"]) == 49
    assert len(res["mask_effect"]["text"]) == len(res["tokens"])


def test_efficientnet_cue_cells_follow_resize_and_centre_crop() -> None:
    from cmcs_core.playground.score import efficientnet_cue_cells

    centre = efficientnet_cue_cells([100, 100, 124, 124], 224, (7, 7))  # -> 98..126 px of the 224 crop
    assert centre.index(1) == 3 * 7 + 3 and sum(centre) == 1
    wide = efficientnet_cue_cells([100, 100, 140, 124], 224, (7, 7))  # reaches into the next column
    assert [i for i, v in enumerate(wide) if v] == [24, 25]
    assert sum(efficientnet_cue_cells([0, 0, 10, 10], 224, (7, 7))) == 0  # cut away by the crop


def test_target_cue_preset_plants_a_cue_beside_each_targets_evidence(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`playground --preset target-cue`: every tweet has two or more targets (so each row has another
    target's sentiment beside its own), every clause carries a planted word that goes with the label in
    train and not in dev or test, and the three runs (text-only, the paper's CMCS, the target-aware
    variant) are trained side by side and scored against that truth."""
    from cmcs_core.cli import main
    from cmcs_core.playground.run import PRESETS, run_name

    monkeypatch.setenv("CMCS_CACHE_DIR", str(tmp_path / "cache"))
    runs, data = tmp_path / "runs", tmp_path / "data"
    code = main(["playground", "--preset", "target-cue", "--data-out", str(data), "--runs-dir", str(runs), "--quiet",
                 "--n-train", "150", "--n-dev", "60", "--n-test", "60", "--epochs", "1"])
    assert code == 0
    truth = json.loads((data / "truth.json").read_text())["splits"]
    stats = json.loads((data / "meta.json").read_text())["statistics"]
    for split in ("train", "dev", "test"):
        rows = truth[split].values()
        alone = sum(not r["other_sentiment_positions"] for r in rows)
        assert alone <= 1  # another target's evidence in every tweet (the split's last may be cut to one row)
        assert all(r["spurious_positions"] for r in rows)  # a planted word beside each target's own clause
    assert stats["train"]["text_strength"] > 0.8 and stats["train"]["image_strength"] > 0.8
    for split in ("dev", "test"):  # the upper level's D_dev sees no shortcut, like test
        assert stats[split]["text_strength"] < 0.6 and stats[split]["image_strength"] < 0.7
    names = [run_name(m, 0, "caption", v, "target-cue") for m, v in PRESETS["target-cue"]["runs"]]
    assert names == ["playground-target-cue_text_only_s0", "playground-target-cue_cmcs_s0",
                     "playground-target-cue_cmcs+target_aware_mask_upper_s0"]
    cfgs = [RunConfig.load(runs / n / "config.json") for n in names]
    assert cfgs[2].model.mask_condition == "target" and cfgs[2].train.mask_level == "upper"
    assert cfgs[1].model.mask_condition == "none" and cfgs[1].train.mask_level == "lower"  # the paper's CMCS
    for name in names:
        score = json.loads((runs / name / "playground_score.json").read_text())
        assert {"spurious", "sentiment", "other_sentiment", "other"} <= set(score["text"])
    # --variant trains --methods with a named variant on the preset's data instead of the preset's runs
    code = main(["playground", "--preset", "target-cue", "--data-out", str(data), "--runs-dir", str(runs), "--quiet",
                 "--n-train", "150", "--n-dev", "60", "--n-test", "60", "--epochs", "1",
                 "--methods", "wo_cms", "--variant", "target_aware"])
    assert code == 0
    extra = runs / run_name("wo_cms", 0, "caption", "target_aware", "target-cue")
    cfg = RunConfig.load(extra / "config.json")
    assert cfg.model.method == "wo_cms" and cfg.model.mask_condition == "target" and cfg.train.counterfactual_share == 0.5
    assert cfg.train.upper_objective == "dev"  # no upper level without CMS
    assert (extra / "playground_score.json").is_file()
    assert sorted(p.name for p in runs.iterdir()) == sorted([*names, extra.name])
