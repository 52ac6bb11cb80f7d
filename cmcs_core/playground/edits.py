"""Stress edits that use the playground's planted truth: take the shortcut away, or point it at
another label, and keep everything else (the gold label, the target, its own sentiment word).

  remove_planted_word  the planted word of the row's own clause removed with its frame
                       ("at the stadium", "on thursday")
  swap_planted_word    that word swapped for the planted word of another class in the same frame
                       ("at the stadium" -> "at the airport")
  swap_image_cue       the image's planted cue swapped for another class's: the caption names the
                       other cue, the pixels take the other cue's colour (the shape is kept)

A model that reads the target's own sentiment word flips on none of them; the flip rates measure
how much a model leans on each planted shortcut. Positions come from truth.json (whitespace words
of the tweet with its target put back), never from guessing which word is planted. The rows stay
in the benchmark TSV format; an edited image gets a new id (`<file stem>__cue<class>.png`) whose
caption or PNG `run_stress` supplies from `Edited.captions` / `Edited.images`.
"""
from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cmcs_core.data.counterfactual import PLANTED_EDITS, Edited
from cmcs_core.data.tsv import TARGET_TOKEN, Sample
from cmcs_core.playground import scene as scn
from cmcs_core.playground import vocab

TEXT_PLANTED = ("remove_planted_word", "swap_planted_word")


@dataclass
class PlantedEdited(Edited):
    """An edit's rows plus the visual inputs of the edited image ids it made up."""

    captions: dict[str, str] = field(default_factory=dict)  # new image id -> caption
    images: dict[str, Image.Image] = field(default_factory=dict)  # new image id -> picture


def read_truth(data_dir: str | Path) -> dict[str, Any] | None:
    """truth.json of a playground folder, or None for any other dataset."""
    path = Path(data_dir) / "truth.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _frame_positions(tokens: list[str], p: int) -> list[int]:
    """Positions of the planted word at p and the frame words before it ("thanks to the")."""
    word = tokens[p]
    cls = vocab.spurious_class_of(word)
    kind = vocab.SPURIOUS_WORDS[cls][word]
    for frame in sorted(vocab.SPURIOUS_FRAMES[kind], key=len, reverse=True):
        words = frame.format(W=word).split()
        start = p - len(words) + 1
        if start >= 0 and tokens[start:p + 1] == words:
            return list(range(start, p + 1))
    return [p]


def _other_word(word: str, rng: random.Random) -> str:
    """The planted word of another class that fills the same frame kind."""
    cls = vocab.spurious_class_of(word)
    kind = vocab.SPURIOUS_WORDS[cls][word]
    choices = [w for c, words in sorted(vocab.SPURIOUS_WORDS.items()) if c != cls
               for w, k in sorted(words.items()) if k == kind]
    return rng.choice(choices)


def _rebuild(sample: Sample, truth_row: dict[str, Any], drop: set[int], swap: dict[int, str]) -> Sample:
    """The row's tweet with words dropped or replaced (truth positions), its target slot kept."""
    tokens = sample.tweet.replace(TARGET_TOKEN, sample.target).split()
    t0, t1 = truth_row["target_span"]
    out: list[str] = []
    for i, tok in enumerate(tokens):
        if i == t0:
            out.append(TARGET_TOKEN)
        elif t0 < i < t1 or i in drop:
            continue
        else:
            out.append(swap.get(i, tok))
    return dataclasses.replace(sample, tweet=" ".join(out))


def _check_positions(sample: Sample, truth_row: dict[str, Any]) -> list[int]:
    tokens = sample.tweet.replace(TARGET_TOKEN, sample.target).split()
    positions = list(truth_row["spurious_positions"])
    for p in positions:
        if p >= len(tokens) or vocab.spurious_class_of(tokens[p]) is None:
            raise ValueError(f"row {sample.index}: truth.json puts a planted word at {p}, but the tweet has "
                             f"{tokens[p] if p < len(tokens) else 'no word'!r} there (truth from another dataset?)")
    return positions


def recolour_cue(image: Image.Image, kind: str, bbox: tuple[int, int, int, int], old: int, new: int) -> Image.Image:
    """The picture with the cue of class `old` painted in class `new`'s exact colour: the object's
    pixels inside its bbox (kind "object") or every background pixel (kind "background")."""
    arr = np.asarray(image.convert("RGB")).copy()
    table = ({c: v[2] for c, v in scn.CUE_OBJECTS.items()} if kind == "object"
             else {c: v[1] for c, v in scn.CUE_BACKGROUNDS.items()})
    region = np.zeros(arr.shape[:2], dtype=bool)
    if kind == "object":
        x0, y0, x1, y1 = bbox
        region[y0:y1, x0:x1] = True
    else:
        region[:] = True
    hit = region & np.all(arr == np.array(table[old], dtype=arr.dtype), axis=-1)
    arr[hit] = table[new]
    return Image.fromarray(arr)


def planted_edit_rows(samples: list[Sample], edit: str, truth: dict[str, Any], split: str, seed: int = 0,
                      captions: dict[str, str] | None = None, image_dir: str | Path | None = None) -> PlantedEdited:
    """Apply one planted-truth edit to every row it applies to; deterministic in (rows, edit, seed).

    `truth` is truth.json of the rows' playground folder and `split` the split they come from;
    swap_image_cue needs the split's captions (caption runs) or its image folder (pixel runs)."""
    if edit not in PLANTED_EDITS:
        raise ValueError(f"unknown planted edit {edit!r}; choose from {', '.join(PLANTED_EDITS)}")
    rows_truth = truth.get("splits", {}).get(split)
    if rows_truth is None:
        return PlantedEdited(edit, [], [], not_applicable=f"truth.json has no split {split!r}")
    rng = random.Random(f"{seed}:{edit}")
    out = PlantedEdited(edit, [], [])
    missing = [s.index for s in samples if s.index not in rows_truth]
    if missing:
        return PlantedEdited(edit, [], [], not_applicable=f"{len(missing)} rows are not in truth.json's {split} split "
                                                           f"(first: {missing[0]})")
    if edit in TEXT_PLANTED:
        for i, s in enumerate(samples):
            t = rows_truth[s.index]
            positions = _check_positions(s, t)
            if not positions:
                continue
            tokens = s.tweet.replace(TARGET_TOKEN, s.target).split()
            if edit == "remove_planted_word":
                edited = _rebuild(s, t, {q for p in positions for q in _frame_positions(tokens, p)}, {})
            else:
                edited = _rebuild(s, t, set(), {p: _other_word(tokens[p], rng) for p in positions})
            out.rows.append(edited)
            out.positions.append(i)
        if not out.rows:
            out.not_applicable = "no row's own clause carries a planted word"
        return out
    kind = truth["image_cue_kind"]
    if captions is None and image_dir is None:
        raise ValueError("swap_image_cue needs the split's captions or its image folder")
    new_ids: dict[str, str] = {}
    for i, s in enumerate(samples):
        image_truth = rows_truth[s.index]["image"]
        if s.image_id not in new_ids:
            old = int(image_truth["spurious_class"])
            new = random.Random(f"{seed}:{edit}:{s.image_id}").choice([c for c in vocab.LABELS if c != old])
            stem, suffix = Path(s.image_id).stem, Path(s.image_id).suffix or ".png"
            new_id = f"{stem}__cue{new}{suffix}"
            if captions is not None:
                from cmcs_core.playground.score import cue_span

                caption = captions[s.image_id]
                a, b = cue_span(caption, image_truth, kind)
                name = scn.CUE_OBJECTS[new][0] if kind == "object" else scn.CUE_BACKGROUNDS[new][0]
                out.captions[new_id] = caption[:a] + name + caption[b:]
            if image_dir is not None:
                with Image.open(Path(image_dir) / s.image_id) as im:
                    out.images[new_id] = recolour_cue(im, kind, tuple(image_truth["bbox"]), old, new)
            new_ids[s.image_id] = new_id
        out.rows.append(dataclasses.replace(s, image_id=new_ids[s.image_id]))
        out.positions.append(i)
    if not out.rows:
        out.not_applicable = "the split has no rows"
    return out
