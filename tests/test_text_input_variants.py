"""Opt-in changes to the text input and readout, and how the tables keep them apart.

The caption-aware text input (`--caption-in-text`, CapTrBERT's way of reading the image) puts the
caption into the text encoder's second segment; a run trained with it asks for a caption everywhere
it predicts, and the stress test's visual edits reach it. Target pooling (`--pooling target`)
averages only the target's word pieces. Tables and stress tables name each as its own variant and
pair it with the same method without it."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from fake_runs import fake_run

from cmcs_core.data.dataset import Split
from cmcs_core.data.tsv import Sample
from cmcs_core.encoders.features import extract_text
from cmcs_core.pipeline import torch_threads


def _split(captions: list[str] | None, tweets: list[str], targets: list[str]) -> Split:
    import numpy as np

    samples = [Sample(str(i), 1, f"{i}.jpg", t, g, i + 1) for i, (t, g) in enumerate(zip(tweets, targets))]
    return Split("t", __import__("pathlib").Path("<t>"), samples, "captions" if captions else "pixels",
                 captions, None, np.zeros((len(samples), 3), dtype=np.float32))


def test_caption_is_the_second_segment_after_the_target(text_encoder):
    tweets = ["$T$ scored twice tonight", "I can't believe what $T$ said " + "really " * 80]
    targets = ["Messi", "the mayor"]
    captions = ["a man kicking a ball on a field", "a woman speaking at a podium"]
    plain = extract_text(text_encoder, _split(captions, tweets, targets), -1, 64, cache=False, progress=False)
    feats = extract_text(text_encoder, _split(captions, tweets, targets), -1, 64, cache=False, progress=False,
                         caption_in_text=True)
    tok = text_encoder.tokenizer
    first = tok.decode(feats.input_ids[0][feats.attention_mask[0].bool()])
    assert first == "[CLS] messi scored twice tonight [SEP] messi [SEP] a man kicking a ball on a field [SEP]"
    # target and caption are one segment (type 1), the tweet the other (type 0)
    types = feats.token_type_ids[0][feats.attention_mask[0].bool()]
    n_tweet = len(tok.tokenize("Messi scored twice tonight")) + 2  # [CLS] ... [SEP]
    assert types[:n_tweet].eq(0).all() and types[n_tweet:].eq(1).all()
    # a long tweet is cut to max_length and the target and caption survive
    second = tok.decode(feats.input_ids[1][feats.attention_mask[1].bool()])
    assert feats.attention_mask[1].sum() == 64
    assert second.endswith("[SEP] the mayor [SEP] a woman speaking at a podium [SEP]")
    # without the flag nothing changes: the plain input has no caption
    assert "kicking" not in tok.decode(plain.input_ids[0])


def test_caption_in_text_needs_a_caption_source(text_encoder):
    with pytest.raises(ValueError, match="caption_in_text reads the image's caption"):
        extract_text(text_encoder, _split(None, ["$T$ is great"], ["x"]), -1, 64, cache=False, progress=False,
                     caption_in_text=True)


def test_pixel_run_with_caption_in_text_is_refused(tiny_config_factory):
    with pytest.raises(ValueError, match="caption_in_text=True: .* needs the caption visual source"):
        tiny_config_factory("cmcs", visual_model="efficientnet-lite0", caption_in_text=True)


@pytest.fixture(scope="module")
def caption_text_run(tmp_path_factory, cmcs_cache, tiny_config_factory):
    """A tiny text-only run that reads the caption inside its text input."""
    from cmcs_core.train.trainer import train

    cfg = tiny_config_factory("text_only")
    cfg.encoder = dataclasses.replace(cfg.encoder, caption_in_text=True, max_length=96)
    run_dir = tmp_path_factory.mktemp("runs") / "tiny_text_caption"
    with torch_threads(1):
        metrics = train(cfg, run_dir, progress=False)
    return run_dir, metrics


def test_trained_run_reads_the_caption_everywhere(caption_text_run):
    from cmcs_core.inference import Predictor
    from cmcs_core.report.regime import Regime, Variant
    from cmcs_core.runs.reader import load_run

    run_dir, _ = caption_text_run
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["encoder"]["caption_in_text"] is True
    pred = Predictor(run_dir)
    assert pred.needs_caption and not pred.needs_image
    with pytest.raises(ValueError, match="give a caption"):
        pred.predict("$T$ was on stage tonight", "the band")
    a = pred.predict("$T$ was on stage tonight", "the band", caption="a crowd cheering at a concert")
    b = pred.predict("$T$ was on stage tonight", "the band", caption="a burning car in a street")
    assert "concert" in a["tokens"] and "burning" in b["tokens"]
    assert a["p_text"] != b["p_text"]  # the text branch sees the caption
    cfg = load_run(run_dir).cfg
    assert Regime.of(cfg).title.endswith("caption in the text input")
    assert Variant.of(cfg).key == "text_only +caption-in-text"


def test_stress_visual_edits_reach_a_text_only_run_with_caption_in_text(caption_text_run, data_dir, tmp_path):
    """A plain text-only run skips the visual edits; this one reads the caption, so they apply."""
    from cmcs_core.data.tsv import read_tsv, write_tsv
    from cmcs_core.stress import run_stress

    run_dir, _ = caption_text_run
    rows = write_tsv(tmp_path / "first32.tsv", read_tsv(data_dir / "twitter2015" / "test.tsv")[:32])
    with torch_threads(1):
        entry = run_stress(run_dir, str(rows), edits=("no_visual", "swap_visual"), n_boot=50, progress=False)
    for edit in ("no_visual", "swap_visual"):
        assert entry["edits"][edit]["applies"] is True, entry["edits"][edit]
        assert entry["edits"][edit]["rows"] == 32


def test_target_pooling_reads_only_the_target_segment(text_encoder):
    """pooling="target" averages the target's word pieces: BERT's second segment, MPNet's
    (`<s> A </s></s> B </s>`, no token types), never the caption after it; no segment -> all."""
    from cmcs_core.model.mfs import pool, target_segment

    tok = text_encoder.tokenizer
    enc = text_encoder.tokenize(["$T$ is awful but the pizza was great", "hello"],
                                [f"the mayor {tok.sep_token} a man at a podium", "x"], max_length=64,
                                truncation="longest_first")
    seg = target_segment(enc["input_ids"], enc["attention_mask"], tok.sep_token_id, tok.all_special_ids)
    assert tok.convert_ids_to_tokens(enc["input_ids"][0][seg[0]]) == ["the", "mayor"]
    assert tok.convert_ids_to_tokens(enc["input_ids"][1][seg[1]]) == ["x"]
    # MPNet's layout with ids 0 <s>, 2 </s>, 1 <pad>: B is 7 8; a row with one segment falls back to all
    ids = torch.tensor([[0, 5, 6, 2, 2, 7, 8, 2, 1], [0, 5, 6, 2, 1, 1, 1, 1, 1]])
    mask = (ids != 1).long()
    seg = target_segment(ids, mask, 2, [0, 1, 2])
    assert seg[0].nonzero().flatten().tolist() == [5, 6]
    assert seg[1].tolist() == mask[1].bool().tolist()
    feats = torch.arange(9, dtype=torch.float).repeat(2, 1).unsqueeze(-1)
    assert pool(feats, seg)[0].item() == 5.5  # mean of positions 5 and 6


def test_unknown_pooling_is_refused():
    from cmcs_core.config import build_config

    with pytest.raises(ValueError, match="pooling must be"):  # when the config is built, before any model
        build_config(overrides={"pooling": "max"})


def test_variants_are_named_and_paired_with_their_base():
    from cmcs_core.report.regime import Regime, Variant
    from cmcs_core.report.tables import paired_differences, runs_frame

    runs = [fake_run("text_only", s, 0.60 + s / 100) for s in (1, 2)]
    runs += [fake_run("text_only", s, 0.61 + 2 * s / 100, caption_in_text=True) for s in (1, 2)]
    runs += [fake_run("text_only", s, 0.50, pooling="target", augment_clauses=1.0, augment_polarity="random")
             for s in (1, 2)]
    v = Variant.of(runs[4].cfg)
    assert v.key == "text_only +pool-target +aug-random" and v.base.key == "text_only +pool-target"
    assert Variant("cmcs").base is None
    assert v.title == "Text-only baseline + target pooling + counterfactual augmentation (random sentiment)"
    regime = Regime.of(runs[4].cfg)
    assert regime.title.endswith(", target pooling, counterfactual augmentation 1 (random sentiment)")
    assert regime.base.title == "minilm, frozen, visual = captions, fp32"
    text = paired_differences(runs_frame(runs))
    # caption in text minus plain, seed by seed: 63 - 61 and 65 - 62
    line = next(row for row in text.splitlines() if row.startswith("| caption in the text input |"))
    assert "| Text-only baseline | twitter2015 | +2.0 +3.0 | +2.50 | 2/2 |" in line, line
    # the target-pooling run has augmentation too: no base without augmentation here, so no row for it
    assert "| target pooling |" not in text


def test_a_new_opt_in_is_one_registry_entry(monkeypatch):
    """Regimes and stress variants read the opt-in changes from OPT_INS alone: an entry for another
    config field names its runs everywhere, with nothing else to edit."""
    from cmcs_core.report import regime as regime_mod
    from cmcs_core.report.regime import OptIn, Regime, Variant

    entry = OptIn("train.hypergrad_clip", 1.0, "+clip-{value}", "hypergradient clipped at {value}")
    monkeypatch.setattr(regime_mod, "OPT_INS", (*regime_mod.OPT_INS, entry))
    cfg = fake_run("cmcs", 1, 0.5, hypergrad_clip=5.0, pooling="target").cfg
    assert Variant.of(cfg).key == "cmcs +pool-target +clip-5.0"
    assert Regime.of(cfg).title == "minilm, frozen, visual = captions, fp32, target pooling, hypergradient clipped at 5.0"
    assert Regime.of(fake_run("cmcs", 1, 0.5).cfg).changes == ()


def test_mark_target_puts_markers_around_this_rows_mention(text_encoder) -> None:
    """`--mark-target`: the tweet's mention of the row's own target sits between the markers, so two rows of one
    tweet with different targets differ inside the tweet too; mention pooling still finds the mention."""
    from cmcs_core.data.tsv import TARGET_MARKERS
    from cmcs_core.model.mfs import mention_tokens

    rows = [Sample("1", 2, "img", "$T$ and Pat Smith debate tonight", "Lee Jones", 1),
            Sample("2", 0, "img", "Lee Jones and $T$ debate tonight", "Pat Smith", 2)]
    split = Split("marked", None, rows, "captions", ["two people"] * 2, None, np.zeros((2, 3)))
    tok = text_encoder.tokenizer
    plain = extract_text(text_encoder, split, -1, 64, cache=False, progress=False)
    marked = extract_text(text_encoder, split, -1, 64, cache=False, progress=False, mark_target=True)
    open_id, close_id = tok.convert_tokens_to_ids(list(TARGET_MARKERS))
    for i, target in enumerate(["lee jones", "pat smith"]):
        pieces = tok.convert_ids_to_tokens(marked.input_ids[i][marked.attention_mask[i].bool()].tolist())
        first = pieces.index(TARGET_MARKERS[0])
        assert " ".join(pieces[first + 1 : pieces.index(TARGET_MARKERS[1])]) == " ".join(tok.tokenize(target))
        assert open_id not in plain.input_ids[i].tolist() and close_id not in plain.input_ids[i].tolist()
    special = tok.all_special_ids
    found = mention_tokens(marked.input_ids, marked.attention_mask, tok.sep_token_id, special)
    assert found.sum(1).tolist() == [len(tok.tokenize("lee jones")), len(tok.tokenize("pat smith"))]
    assert not torch.equal(marked.input_ids[0], marked.input_ids[1][: marked.input_ids.shape[1]])
