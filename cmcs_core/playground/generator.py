"""Spurious-correlation playground: a synthetic TMSC dataset where the truth is known.

Writes a folder in the TomBERT TSV format (train/dev/test.tsv + images/ + captions.json),
so the rest of the library reads it unchanged, plus truth.json (which tokens and which
image region are genuine or planted) and meta.json (config + measured statistics).
Everything is drawn from numpy Generators seeded by (seed, split, stream), so the same
config gives byte-identical files and changing an image knob does not reshuffle the text.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cmcs_core.playground import scene as scn
from cmcs_core.playground import text as txt
from cmcs_core.playground import vocab

SPLITS = ("train", "dev", "test")
HEADER = "index\t#1 Label\t#2 ImageID\t#3 String\t#3 String"
OUTPUTS = ("train.tsv", "dev.tsv", "test.tsv", "captions.json", "truth.json", "meta.json")
TOKENISATION = 'tweet.replace("$T$", target).split()  (whitespace split; positions index this list)'
_STREAMS = {"structure": 0, "noise": 1, "text": 2, "image": 3}


@dataclass
class PlaygroundConfig:
    """Every knob of the generator; saved verbatim in meta.json so a dataset can be remade."""

    n_train: int = 1200  # rows (tweet-target pairs), not tweets
    n_dev: int = 300
    n_test: int = 300
    seed: int = 0
    min_targets_per_tweet: int = 1
    max_targets_per_tweet: int = 3
    spurious_rate: float = 0.5  # P(a row's own clause carries a planted spurious word)
    # P(planted class == label); dev follows train (i.i.d. validation), test is the shifted split.
    # 1/3 = uncorrelated; misses are spread uniformly over the two other classes.
    text_spurious_strength_train: float = 0.9
    text_spurious_strength_test: float = 1 / 3
    image_spurious_strength_train: float = 0.9
    image_spurious_strength_test: float = 1 / 3
    # True: dev is drawn like test (cues at chance), so CMCS's upper level, which only sees
    # D_dev, sees no shortcut; False (default): dev follows train (an i.i.d. validation split).
    dev_cues_at_chance: bool = False
    image_spurious_kind: str = "object"  # "object" (coloured badge) | "background" (colour)
    label_noise: float = 0.0  # train only: this fraction of labels flipped to another class
    image_size: int = 224
    photo_fraction: float = 0.2  # object kind: share of scenes on a skimage sample photo
    filler_rate: float = 0.3  # P(a tweet ends with a label-free filler like "lol")

    def __post_init__(self) -> None:
        for name in ("n_train", "n_dev", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 1 <= self.min_targets_per_tweet <= self.max_targets_per_tweet <= 3:
            raise ValueError("need 1 <= min_targets_per_tweet <= max_targets_per_tweet <= 3")
        for f in dataclasses.fields(self):
            if f.type == "float" and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise ValueError(f"{f.name} must be in [0, 1], got {getattr(self, f.name)}")
        if self.label_noise > 2 / 3:
            raise ValueError("label_noise above 2/3 makes labels anti-informative")
        if self.image_spurious_kind not in scn.CUE_KINDS:
            raise ValueError(f"image_spurious_kind must be one of {sorted(scn.CUE_KINDS)}")
        if self.image_size < 64:
            raise ValueError("image_size must be >= 64 pixels")

    def strengths(self, split: str) -> tuple[float, float]:
        """(text, image) planted strength used for a split."""
        if split == "test" or (split == "dev" and self.dev_cues_at_chance):
            return self.text_spurious_strength_test, self.image_spurious_strength_test
        return self.text_spurious_strength_train, self.image_spurious_strength_train


def generate_playground(out_dir: str | Path, config: PlaygroundConfig, overwrite: bool = False) -> Path:
    """Write the whole dataset; meta.json is written last, so its presence means complete.

    Refuses a non-empty folder unless `overwrite`, which then deletes only this generator's
    own outputs (the three TSVs, the JSON files and images/), never anything else.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True to replace it")
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "images", ignore_errors=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    photos = scn.load_photos() if config.image_spurious_kind == "object" and config.photo_fraction > 0 else {}
    captions: dict[str, str] = {}
    truth: dict[str, Any] = {
        "tokenisation": TOKENISATION,
        "bbox_format": "[x0, y0, x1, y1] pixels, x1/y1 exclusive (image[y0:y1, x0:x1])",
        "image_cue_kind": config.image_spurious_kind,
        "labels": dict(enumerate(vocab.LABEL_NAMES)),
        "splits": {},
    }
    for split_no, split in enumerate(SPLITS):
        lines, rows = _write_split(out, split_no, split, config, photos, captions)
        (out / f"{split}.tsv").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8", newline="\n")
        truth["splits"][split] = rows
    _write_json(out / "captions.json", captions)
    _write_json(out / "truth.json", truth)
    stats = {split: _split_stats(out, split) for split in SPLITS}
    _write_json(out / "meta.json", {
        "generator": "cmcs_core.playground",
        "config": dataclasses.asdict(config),
        "cues": _cue_tables(),
        "statistics": stats,
    })
    return out


def _write_split(out: Path, split_no: int, split: str, cfg: PlaygroundConfig,
                 photos: dict[str, np.ndarray], captions: dict[str, str]) -> tuple[list[str], dict]:
    """Sample tweets, flip labels, plant cues, draw images; return TSV lines and truth rows."""
    n = (cfg.n_train, cfg.n_dev, cfg.n_test)[split_no]
    rng = {k: np.random.default_rng([cfg.seed, split_no, v]) for k, v in _STREAMS.items()}
    tweets: list[tuple[list[txt.Clause], list[str], str | None]] = []
    n_rows = 0
    while n_rows < n:
        k = min(int(rng["structure"].integers(cfg.min_targets_per_tweet, cfg.max_targets_per_tweet + 1)), n - n_rows)
        clauses = txt.sample_clauses(rng["structure"], k)
        picks = rng["structure"].choice(len(vocab.CONNECTORS), size=k - 1, replace=False)
        conns = [vocab.CONNECTORS[int(i)] for i in picks]
        filler_pick = int(rng["structure"].integers(len(vocab.FILLERS)))
        filler = vocab.FILLERS[filler_pick] if rng["structure"].random() < cfg.filler_rate else None
        tweets.append((clauses, conns, filler))
        n_rows += k
    clean = [c.clean_label for clauses, _, _ in tweets for c in clauses]
    labels = _flip(rng["noise"], clean, cfg.label_noise if split == "train" else 0.0)
    text_strength, image_strength = cfg.strengths(split)
    row = 0
    for clauses, _, _ in tweets:  # planted relative to the observed (possibly noisy) label
        for clause in clauses:
            if rng["text"].random() < cfg.spurious_rate:
                txt.plant_spurious(rng["text"], clause, _planted(rng["text"], labels[row], text_strength))
            row += 1
    lines: list[str] = []
    rows: dict[str, Any] = {}
    row = 0
    for tweet_no, (clauses, conns, filler) in enumerate(tweets):
        rendered = txt.render(clauses, conns, filler)
        anchor = int(rng["image"].integers(len(clauses)))
        cue = _planted(rng["image"], labels[row + anchor], image_strength)
        picture = scn.draw_scene(rng["image"], cfg.image_size, cfg.image_spurious_kind, cue, photos, cfg.photo_fraction)
        image_file = f"pg_{split}_{tweet_no:05d}.png"
        picture.image.save(out / "images" / image_file, format="PNG")
        captions[image_file] = picture.caption
        for no, clause in enumerate(clauses):
            tweet = rendered.tweet_for(no)
            fields = [str(row), str(labels[row]), image_file, tweet, clause.target]
            if any(ch in f for f in fields for ch in "\t\r\n"):
                raise AssertionError(f"whitespace control character in a field: {fields}")
            lines.append("\t".join(fields))
            rows[str(row)] = _truth_row(rendered, clauses, no, labels[row], tweet_no, {
                "file": image_file, "property": scn.CUE_KINDS[cfg.image_spurious_kind],
                "bbox": list(picture.bbox), "spurious_class": cue, "anchor": no == anchor,
            })
            row += 1
    return lines, rows


def _truth_row(rendered: txt.RenderedTweet, clauses: list[txt.Clause], no: int, label: int,
               tweet_no: int, image: dict[str, Any]) -> dict[str, Any]:
    clause = clauses[no]
    text_class = vocab.spurious_class_of(clause.spurious_word) if clause.spurious_word else None
    text_aligned = None if text_class is None else text_class == label
    image_aligned = image["spurious_class"] == label
    others = [i for i in range(len(clauses)) if i != no]
    return {
        "tweet_id": tweet_no,
        "target_span": list(rendered.target_spans[no]),
        "sentiment_positions": rendered.sentiment_positions[no],
        "spurious_positions": rendered.spurious_positions[no],
        "other_sentiment_positions": [p for i in others for p in rendered.sentiment_positions[i]],
        "other_spurious_positions": [p for i in others for p in rendered.spurious_positions[i]],
        "clean_label": clause.clean_label,
        "label_flipped": clause.clean_label != label,
        "text_spurious_class": text_class,
        "text_aligned": text_aligned,
        "image": image,
        "image_aligned": image_aligned,
        # every cue this row shows: its own spurious word (if any) and its image
        "spurious_aligned": image_aligned and text_aligned is not False,
    }


def _planted(rng: np.random.Generator, label: int, strength: float) -> int:
    """The label with probability `strength`, otherwise one of the other two uniformly."""
    return label if rng.random() < strength else (label + int(rng.integers(1, 3))) % 3


def _flip(rng: np.random.Generator, clean: list[int], rate: float) -> list[int]:
    """Flip exactly round(rate * n) labels, each to one of the other classes uniformly."""
    labels = list(clean)
    for i in rng.choice(len(labels), size=round(rate * len(labels)), replace=False):
        labels[int(i)] = (labels[int(i)] + int(rng.integers(1, 3))) % 3
    return labels


def read_split(out_dir: str | Path, split: str) -> list[list[str]]:
    """TSV rows of one split (header dropped), parsed exactly as the benchmark reader does."""
    with (Path(out_dir) / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[1:]


def measure_spurious_strength(out_dir: str | Path, split: str) -> dict[str, Any]:
    """Measured P(label == planted class | cue) for one split, read back from the files.

    Text: the class comes from the word found at the recorded position of the re-tokenised
    TSV tweet; `text_*` counts rows whose own clause carries the word (what the knob sets),
    `text_any_*` every (row, spurious word anywhere in its tweet) pair (what a bag of words
    sees). Image: the class comes from the PNG's pixel colour at the recorded region;
    `image_*` counts each image's anchor row (what the knob sets), `image_all_*` every row
    (an image is shared by all targets of its tweet, so this is diluted toward 1/3).
    """
    out = Path(out_dir)
    truth_all = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    truth, kind = truth_all["splits"][split], truth_all["image_cue_kind"]
    counts = {k: [0, 0] for k in ("text", "text_any", "image", "image_all")}  # [agree, n]
    pixels: dict[str, int | None] = {}
    flipped = 0
    rows = read_split(out, split)
    for index, label_s, image_file, tweet, target in rows:
        label, t = int(label_s), truth[index]
        tokens = tweet.replace(txt.TARGET_TOKEN, target).split()
        for key, positions in (("text", t["spurious_positions"]),
                               ("text_any", t["spurious_positions"] + t["other_spurious_positions"])):
            for p in positions:
                cls = vocab.spurious_class_of(tokens[p])
                if cls is None:
                    raise ValueError(f"{split}/{index}: token {tokens[p]!r} at {p} is not a spurious word")
                counts[key][0] += cls == label
                counts[key][1] += 1
        if image_file not in pixels:
            with Image.open(out / "images" / image_file) as im:
                pixels[image_file] = scn.cue_class_at(np.asarray(im.convert("RGB")), kind, tuple(t["image"]["bbox"]))
        cls = pixels[image_file]
        if cls is None:
            raise ValueError(f"{split}/{index}: no cue colour found in {image_file} at its bbox")
        for key in ("image", "image_all") if t["image"]["anchor"] else ("image_all",):
            counts[key][0] += cls == label
            counts[key][1] += 1
        flipped += label != t["clean_label"]
    result: dict[str, Any] = {"split": split, "n_rows": len(rows), "label_noise": flipped / max(1, len(rows))}
    for key, (agree, n) in counts.items():
        result[f"{key}_n"] = n
        result[f"{key}_strength"] = agree / n if n else None
    return result


def _split_stats(out: Path, split: str) -> dict[str, Any]:
    rows = read_split(out, split)
    labels = [int(r[1]) for r in rows]
    per_image: dict[str, int] = {}
    for r in rows:
        per_image[r[2]] = per_image.get(r[2], 0) + 1
    return {
        **measure_spurious_strength(out, split),
        "label_counts": {vocab.LABEL_NAMES[c]: labels.count(c) for c in vocab.LABELS},
        "n_images": len(per_image),
        "rows_in_multi_target_tweets": sum(n for n in per_image.values() if n > 1),
    }


def _cue_tables() -> dict[str, Any]:
    """The planted cue -> class tables, so a user can read what a model should NOT rely on."""
    names = vocab.LABEL_NAMES
    return {
        "text_spurious_words": {names[c]: sorted(w) for c, w in vocab.SPURIOUS_WORDS.items()},
        "image_objects": {names[c]: {"object": v[0], "rgb": list(v[2])} for c, v in scn.CUE_OBJECTS.items()},
        "image_backgrounds": {names[c]: {"colour": v[0], "rgb": list(v[1])} for c, v in scn.CUE_BACKGROUNDS.items()},
        "sentiment_words": {names[c]: list(w) for c, w in vocab.SENTIMENT_WORDS.items()},
    }


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8", newline="\n")
