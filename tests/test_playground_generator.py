"""Playground generator: determinism, planted strengths, truth positions, image regions, format."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmcs_core.playground import PlaygroundConfig, generate_playground, measure_spurious_strength, scene, vocab
from cmcs_core.playground.generator import HEADER, SPLITS

SMALL = dict(n_train=150, n_dev=40, n_test=40)
# Distinct value per knob and split, so a knob wired to the wrong split is caught.
SHIFTED = PlaygroundConfig(seed=11, n_train=2400, n_dev=300, n_test=1200, spurious_rate=0.6,
                           text_spurious_strength_train=0.8, text_spurious_strength_test=0.2,
                           image_spurious_strength_train=0.95, image_spurious_strength_test=1 / 3)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(root: Path, split: str) -> list[list[str]]:
    with (root / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def _within_3_sigma(measured: float, p: float, n: int) -> bool:
    """A correct generator misses a 3-sigma binomial band ~0.3% of the time; p in {0, 1} is exact."""
    return abs(measured - p) <= 3 * math.sqrt(p * (1 - p) / n) + 1e-12


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_playground(tmp_path_factory.mktemp("small"), PlaygroundConfig(seed=7, **SMALL))


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_playground(tmp_path_factory.mktemp("shifted"), dataclasses.replace(SHIFTED, photo_fraction=0.0))


def test_same_seed_is_byte_identical_and_other_seed_differs(small: Path, tmp_path: Path) -> None:
    again = generate_playground(tmp_path / "again", PlaygroundConfig(seed=7, **SMALL))
    assert _hashes(again) == _hashes(small)
    other = _hashes(generate_playground(tmp_path / "other", PlaygroundConfig(seed=8, **SMALL)))
    assert other["train.tsv"] != _hashes(small)["train.tsv"]
    assert other["images/pg_train_00000.png"] != _hashes(small)["images/pg_train_00000.png"]


def test_refuses_non_empty_dir_and_overwrite_replaces_only_own_files(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_playground(out, PlaygroundConfig(seed=7, **SMALL))
    generate_playground(out, PlaygroundConfig(seed=1, n_train=300, n_dev=5, n_test=5), overwrite=True)
    generate_playground(out, PlaygroundConfig(seed=7, **SMALL), overwrite=True)
    hashes = _hashes(out)
    assert hashes.pop("notes.txt") and hashes == _hashes(small)  # no leftover images either


@pytest.mark.parametrize("bad", [dict(text_spurious_strength_train=1.5), dict(spurious_rate=-0.1),
                                 dict(max_targets_per_tweet=4), dict(image_spurious_kind="sky"),
                                 dict(n_test=0), dict(label_noise=0.9)])
def test_config_rejects_bad_knobs(bad: dict) -> None:
    with pytest.raises(ValueError):
        PlaygroundConfig(**bad)


def test_tsv_parses_like_the_benchmark(small: Path) -> None:
    captions = json.loads((small / "captions.json").read_text())
    referenced = set()
    for split in SPLITS:
        rows = _rows(small, split)
        assert "\t".join(rows[0]) == HEADER
        assert [r[0] for r in rows[1:]] == [str(i) for i in range(len(rows) - 1)]
        for row in rows[1:]:
            assert len(row) == 5
            assert row[1] in {"0", "1", "2"}
            assert row[3].count("$T$") == 1 and row[4] and "$T$" not in row[4]
            assert (small / "images" / row[2]).is_file() and captions[row[2]]
            referenced.add(row[2])
    assert set(captions) == referenced == {p.name for p in (small / "images").iterdir()}


def test_library_reader_loads_the_playground(small: Path) -> None:
    tsv = pytest.importorskip("cmcs_core.data.tsv")
    samples = tsv.read_tsv(small / "train.tsv")
    assert len(samples) == SMALL["n_train"] and {s.label for s in samples} == {0, 1, 2}


def test_multi_target_tweets_give_targets_their_own_sentiment(small: Path) -> None:
    by_image: dict[str, set[int]] = {}
    for row in _rows(small, "train")[1:]:
        by_image.setdefault(row[2], set()).add(int(row[1]))
    assert sum(len(labels) > 1 for labels in by_image.values()) >= 0.3 * len(by_image)


def test_truth_positions_point_at_the_right_tokens(shifted: Path) -> None:
    truth = json.loads((shifted / "truth.json").read_text())["splits"]
    for split in SPLITS:
        for index, label, _, tweet, target in _rows(shifted, split)[1:]:
            t = truth[split][index]
            tokens = tweet.replace("$T$", target).split()
            start, end = t["target_span"]
            assert tokens[start:end] == target.split()
            assert [vocab.sentiment_class_of(tokens[p]) for p in t["sentiment_positions"]] == [t["clean_label"]]
            assert [vocab.spurious_class_of(tokens[p]) for p in t["spurious_positions"]] == (
                [] if t["text_spurious_class"] is None else [t["text_spurious_class"]])
            # nothing else in the tweet is a sentiment or spurious word
            sentiment = [i for i, w in enumerate(tokens) if vocab.sentiment_class_of(w) is not None]
            spurious = [i for i, w in enumerate(tokens) if vocab.spurious_class_of(w) is not None]
            assert sorted(t["sentiment_positions"] + t["other_sentiment_positions"]) == sentiment
            assert sorted(t["spurious_positions"] + t["other_spurious_positions"]) == spurious
            assert not set(range(start, end)) & set(sentiment + spurious)
            assert t["label_flipped"] == (int(label) != t["clean_label"])


def test_measured_strength_matches_the_knobs(shifted: Path) -> None:
    cfg = SHIFTED
    expected = {"train": (0.8, 0.95), "dev": (0.8, 0.95), "test": (0.2, 1 / 3)}  # dev follows train
    for split in SPLITS:
        m = measure_spurious_strength(shifted, split)
        text_p, image_p = expected[split]
        assert m["text_n"] >= 100 and _within_3_sigma(m["text_strength"], text_p, m["text_n"]), m
        assert _within_3_sigma(m["image_strength"], image_p, m["image_n"]), m
        assert _within_3_sigma(m["text_n"] / m["n_rows"], cfg.spurious_rate, m["n_rows"]), m
    meta = json.loads((shifted / "meta.json").read_text())
    assert meta["config"] == json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(SHIFTED, photo_fraction=0.0))))
    assert measure_spurious_strength(shifted, "test").items() <= meta["statistics"]["test"].items()


def test_extreme_strengths_and_label_noise_are_exact(tmp_path: Path) -> None:
    cfg = PlaygroundConfig(seed=3, text_spurious_strength_train=1.0, image_spurious_strength_train=0.0,
                           text_spurious_strength_test=0.0, label_noise=0.2, **SMALL)
    out = generate_playground(tmp_path, cfg)
    train, test = measure_spurious_strength(out, "train"), measure_spurious_strength(out, "test")
    assert train["text_strength"] == 1.0 and train["image_strength"] == 0.0 and test["text_strength"] == 0.0
    assert train["label_noise"] == round(0.2 * cfg.n_train) / cfg.n_train and test["label_noise"] == 0.0


def _cue_pixels(image: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.all(image == np.array(rgb, dtype=np.uint8), axis=-1)


def test_object_cue_is_drawn_inside_its_bbox(small: Path) -> None:
    truth = json.loads((small / "truth.json").read_text())["splits"]
    seen = {}
    for split in SPLITS:
        for t in truth[split].values():
            seen[t["image"]["file"]] = t["image"]
    for name, info in seen.items():
        image = np.asarray(Image.open(small / "images" / name).convert("RGB"))
        x0, y0, x1, y1 = info["bbox"]
        mask = _cue_pixels(image, scene.CUE_OBJECTS[info["spurious_class"]][2])
        inside = mask[y0:y1, x0:x1].sum()
        assert inside >= 0.4 * (x1 - x0) * (y1 - y0), name  # diamond/triangle fill half their box
        assert mask.sum() - inside <= 0.01 * inside, name  # (photos may hold a stray exact match)
        for other, (_, _, rgb) in scene.CUE_OBJECTS.items():
            if other != info["spurious_class"]:
                assert _cue_pixels(image, rgb).sum() <= 0.01 * inside, name


def test_background_cue_fills_the_image(tmp_path: Path) -> None:
    out = generate_playground(tmp_path, PlaygroundConfig(seed=5, image_spurious_kind="background", **SMALL))
    truth = json.loads((out / "truth.json").read_text())["splits"]["train"]
    for t in truth.values():
        image = np.asarray(Image.open(out / "images" / t["image"]["file"]).convert("RGB"))
        assert t["image"]["bbox"] == [0, 0, image.shape[1], image.shape[0]]
        mask = _cue_pixels(image, scene.CUE_BACKGROUNDS[t["image"]["spurious_class"]][1])
        assert mask[0, 0] and mask[-1, -1] and mask[0, -1] and mask[-1, 0] and mask.mean() > 0.3
    assert measure_spurious_strength(out, "train")["image_n"] > 0


def test_vocabularies_are_disjoint() -> None:
    spurious = {w for words in vocab.SPURIOUS_WORDS.values() for w in words}
    sentiment = {w for words in vocab.SENTIMENT_WORDS.values() for w in words}
    other = {w for t in vocab.TARGETS for w in t.split()}
    other |= {w for t in vocab.CLAUSE_TEMPLATES for w in t.split()}
    other |= {w for f in vocab.SPURIOUS_FRAMES.values() for t in f for w in t.split()}
    other |= set(vocab.CONNECTORS) | set(vocab.FILLERS)
    assert not spurious & sentiment and not (spurious | sentiment) & other
    assert sum(len(w) for w in vocab.SENTIMENT_WORDS.values()) == 3 * len(vocab.SENTIMENT_WORDS[0])
