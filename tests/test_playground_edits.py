"""The planted-truth stress edits of the playground: each changes only the planted cue it names,
keeps the target, its own sentiment word and the gold label, and is deterministic."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmcs_core.data.counterfactual import PLANTED_EDITS
from cmcs_core.data.dataset import load_json_map
from cmcs_core.data.tsv import TARGET_TOKEN, read_tsv
from cmcs_core.playground import PlaygroundConfig, generate_playground, vocab
from cmcs_core.playground import scene as scn
from cmcs_core.playground.edits import planted_edit_rows, read_truth, recolour_cue


@pytest.fixture(scope="module")
def playground(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = PlaygroundConfig(seed=5, n_train=30, n_dev=30, n_test=60, image_size=96, photo_fraction=0.0)
    return generate_playground(tmp_path_factory.mktemp("pg"), cfg)


def _words(sample) -> list[str]:
    return sample.tweet.replace(TARGET_TOKEN, sample.target).split()


def _planted_words(words: list[str]) -> list[str]:
    return [w for w in words if vocab.spurious_class_of(w) is not None]


def _sentiment(words: list[str]) -> list[str]:
    every = {w for ws in vocab.SENTIMENT_WORDS.values() for w in ws}
    return [w for w in words if w in every]


def test_remove_planted_word_drops_the_word_and_its_frame_only(playground: Path) -> None:
    samples, truth = read_tsv(playground / "test.tsv"), read_truth(playground)
    edited = planted_edit_rows(samples, "remove_planted_word", truth, "test")
    with_word = [i for i, s in enumerate(samples) if truth["splits"]["test"][s.index]["spurious_positions"]]
    assert edited.positions == with_word and with_word  # exactly the rows whose own clause has a planted word
    for pos, row in zip(edited.positions, edited.rows):
        before, after = _words(samples[pos]), _words(row)
        t = truth["splits"]["test"][row.index]
        own = [before[p] for p in t["spurious_positions"]]
        assert len(_planted_words(after)) == len(_planted_words(before)) - len(own)
        assert 2 <= len(before) - len(after) <= 4 * len(own)  # the word and its frame ("thanks to the")
        assert row.label == samples[pos].label and row.target == samples[pos].target
        assert row.tweet.count(TARGET_TOKEN) == 1
        assert _sentiment(after) == _sentiment(before)  # every target's own evidence stays


def test_swap_planted_word_points_the_cue_at_another_class(playground: Path) -> None:
    samples, truth = read_tsv(playground / "test.tsv"), read_truth(playground)
    edited = planted_edit_rows(samples, "swap_planted_word", truth, "test", seed=1)
    assert edited.rows
    for pos, row in zip(edited.positions, edited.rows):
        before, after = _words(samples[pos]), _words(row)
        assert len(after) == len(before)
        for p in truth["splits"]["test"][row.index]["spurious_positions"]:
            old, new = before[p], after[p]
            assert vocab.spurious_class_of(new) not in (None, vocab.spurious_class_of(old))
            kind = lambda w: vocab.SPURIOUS_WORDS[vocab.spurious_class_of(w)][w]  # noqa: E731
            assert kind(new) == kind(old)  # same frame: "at the stadium" -> "at the airport"
        changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
        assert changed == truth["splits"]["test"][row.index]["spurious_positions"]
    again = planted_edit_rows(samples, "swap_planted_word", truth, "test", seed=1)
    assert [r.tweet for r in again.rows] == [r.tweet for r in edited.rows]


def test_swap_image_cue_renames_the_caption_cue_and_recolours_the_pixels(playground: Path) -> None:
    samples, truth = read_tsv(playground / "test.tsv"), read_truth(playground)
    captions = load_json_map(playground / "captions.json")
    edited = planted_edit_rows(samples, "swap_image_cue", truth, "test", captions=captions,
                               image_dir=playground / "images")
    assert len(edited.rows) == len(samples)
    kind = truth["image_cue_kind"]
    for pos, row in zip(edited.positions, edited.rows):
        old_id, t = samples[pos].image_id, truth["splits"]["test"][row.index]["image"]
        old_class = t["spurious_class"]
        new_class = int(row.image_id.split("__cue")[1].split(".")[0])
        assert new_class != old_class
        old_name, new_name = scn.CUE_OBJECTS[old_class][0], scn.CUE_OBJECTS[new_class][0]
        caption = edited.captions[row.image_id]
        assert new_name in caption and caption.replace(new_name, old_name) == captions[old_id]
        pixels = np.asarray(edited.images[row.image_id])
        assert scn.cue_class_at(pixels, kind, tuple(t["bbox"])) == new_class
        with Image.open(playground / "images" / old_id) as im:
            orig = np.asarray(im.convert("RGB"))
        x0, y0, x1, y1 = t["bbox"]
        outside = np.ones(orig.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert (pixels[outside] == orig[outside]).all()  # nothing but the cue changes
    per_image = {}
    for row, pos in zip(edited.rows, edited.positions):  # every target of a tweet sees the same edited image
        per_image.setdefault(samples[pos].image_id, set()).add(row.image_id)
    assert all(len(ids) == 1 for ids in per_image.values())


def test_recolour_background_cue() -> None:
    img = Image.new("RGB", (32, 32), scn.CUE_BACKGROUNDS[2][1])
    out = recolour_cue(img, "background", (0, 0, 32, 32), 2, 0)
    assert scn.cue_class_at(np.asarray(out), "background", (0, 0, 32, 32)) == 0


def test_planted_edits_refuse_rows_from_another_dataset(playground: Path) -> None:
    samples, truth = read_tsv(playground / "test.tsv"), read_truth(playground)
    assert planted_edit_rows(samples, "remove_planted_word", truth, "nosuchsplit").not_applicable
    wrong = json.loads(json.dumps(truth))
    first = samples[0].index
    wrong["splits"]["test"][first]["spurious_positions"] = [0]  # the first word is never a planted one
    if vocab.spurious_class_of(_words(samples[0])[0]) is None:
        with pytest.raises(ValueError, match="truth.json puts a planted word"):
            planted_edit_rows(samples, "remove_planted_word", wrong, "test")
    with pytest.raises(ValueError, match="unknown planted edit"):
        planted_edit_rows(samples, "clause_positive", truth, "test")
    assert set(PLANTED_EDITS) == {"remove_planted_word", "swap_planted_word", "swap_image_cue"}
