"""Counterfactual edits of benchmark rows: what the stress test measures and what
target-focused training augments with.

Every edit changes one thing of a row and keeps its gold label:
  clause_positive / clause_negative  a clause of that sentiment about something else appended
                                     (ARTS' AddDiff; only rows whose gold label differs from it)
  prefix_positive / prefix_negative  the same clause on the same rows, put in front of the tweet instead:
                                     a probe (PROBE_EDITS, opt-in) of whether robustness to appended
                                     clauses is reading the target or only "ignore the last clause"
  swap_visual                        the row's image (or caption) replaced by another row's
  no_visual                          the visual input removed (empty caption / blank image)
  swap_target                        the target replaced by another target of the same split
and, on a playground, three edits of its planted cues (PLANTED_EDITS, cmcs_core/playground/edits.py).
The phrases come from `phrases.json` beside this package: the `stress` bank for the test, the
disjoint `augment` bank for training, so a model is never measured on a phrase it trained on.
Edits are pure functions of the rows and a seed: every run of a grid sees the same edited file.
"""
from __future__ import annotations

import dataclasses
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmcs_core.config import CHOICES
from cmcs_core.data.dataset import NO_VISUAL, Split, image_label_sets
from cmcs_core.data.tsv import LABEL_NAMES, TARGET_TOKEN, Sample

PHRASES_FILE = Path(__file__).resolve().parents[1] / "phrases.json"
CLAUSE_LABEL = {"positive": LABEL_NAMES.index("positive"), "negative": LABEL_NAMES.index("negative")}
EDITS = ("clause_positive", "clause_negative", "swap_visual", "no_visual", "swap_target")
VISUAL_EDITS = ("swap_visual", "no_visual")
# Each edit's plain name (what a chart or a menu shows; the code name goes in its tooltip) and what it does.
EDIT_NAMES = {
    "clause_positive": "a positive clause about something else",
    "clause_negative": "a negative clause about something else",
    "prefix_positive": "a positive clause about something else, in front",
    "prefix_negative": "a negative clause about something else, in front",
    "swap_visual": "another tweet's image",
    "no_visual": "no image",
    "swap_target": "another target named",
    "remove_planted_word": "planted word removed",
    "swap_planted_word": "another class's planted word",
    "swap_image_cue": "another class's image cue",
}
EDIT_TITLES = {
    "clause_positive": "a clause of positive sentiment about something else appended to the tweet",
    "clause_negative": "a clause of negative sentiment about something else appended to the tweet",
    "prefix_positive": "the positive clause of clause_positive, on the same rows, put in front of the tweet",
    "prefix_negative": "the negative clause of clause_negative, on the same rows, put in front of the tweet",
    "swap_visual": "the image (or its caption) replaced by another tweet's",
    "no_visual": "the image removed (an empty caption, or a blank grey picture)",
    "swap_target": "the target replaced by another target of the split",
    # on a playground, from its planted truth (cmcs_core/playground/edits.py)
    "remove_planted_word": "the planted word of the target's own clause removed, with the words that carry it "
                           "(\"at the stadium\")",
    "swap_planted_word": "the planted word of the target's own clause replaced by another class's planted word",
    "swap_image_cue": "the picture's planted cue changed to another class's cue (in the caption, or recoloured in "
                      "the pixels)",
}
_PLANTED_FLIP = ("It changes neither the target's own sentiment word nor the label: a flip follows the planted cue, "
                 "the shortcut.")
_CLAUSE_FLIP = "The clause is about something else: a flip means the model read its sentiment as the target's."
_VISUAL_FLIP = ("The label is about the target, not the picture: a model that reads the target's words changes "
                "little.")
EDIT_FLIP_MEANS = {  # what one flipped prediction says about the model, per edit
    "clause_positive": _CLAUSE_FLIP, "clause_negative": _CLAUSE_FLIP,
    "prefix_positive": _CLAUSE_FLIP, "prefix_negative": _CLAUSE_FLIP,
    "swap_visual": _VISUAL_FLIP, "no_visual": _VISUAL_FLIP,
    "swap_target": ("The tweet's sentiment may not be about the new target: a flip can be right, so compare "
                    "methods rather than read the rate alone."),
    "remove_planted_word": _PLANTED_FLIP, "swap_planted_word": _PLANTED_FLIP, "swap_image_cue": _PLANTED_FLIP,
}
PLANTED_EDITS = ("remove_planted_word", "swap_planted_word", "swap_image_cue")
# Opt-in probes (`cmcs stress RUN --edits prefix_positive prefix_negative`), not in the default test: the
# augmentation and the default clause edits both append, so a model could learn the position, not the target.
PROBE_EDITS = ("prefix_positive", "prefix_negative")
ALL_EDITS = EDITS[:2] + PROBE_EDITS + EDITS[2:] + PLANTED_EDITS  # the order of every table and chart


def phrase_bank(bank: str, path: str | Path | None = None) -> dict[str, list[str]]:
    """{'positive': [...], 'negative': [...]} of one bank ('stress' or 'augment')."""
    path = Path(path) if path else PHRASES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the phrase bank ({err})") from err
    if bank not in data or not all(data[bank].get(p) for p in CLAUSE_LABEL):
        raise ValueError(f"{path}: no '{bank}' bank with positive and negative phrases")
    return {p: [str(x).strip() for x in data[bank][p] if str(x).strip()] for p in CLAUSE_LABEL}


def _target_pattern(target: str) -> re.Pattern:
    return re.compile(rf"(?<!\w){re.escape(target.strip())}(?!\w)", flags=re.IGNORECASE)


def names_target(phrase: str, target: str) -> bool:
    """Whether the phrase mentions the target as a whole word (case-insensitive)."""
    return _target_pattern(target).search(phrase) is not None


def _refuse_target(sample: Sample, phrase: str) -> None:
    """A phrase naming the target would change what the label is about."""
    if names_target(phrase, sample.target):
        raise ValueError(f"phrase {phrase!r} contains the target {sample.target!r} (row {sample.index}): "
                         "a clause about something else must not name the target")


def clause_polarity(edit: str) -> str | None:
    """The clause's sentiment for a clause edit, appended or in front (clause_* / prefix_*); None otherwise."""
    kind, _, polarity = edit.partition("_")
    return polarity if kind in ("clause", "prefix") and polarity in CLAUSE_LABEL else None


def append_clause(sample: Sample, phrase: str) -> Sample:
    """The row with the clause appended; a phrase naming the target is refused."""
    _refuse_target(sample, phrase)
    return dataclasses.replace(sample, tweet=f"{sample.tweet} {phrase}")


_CONNECTIVE = re.compile(r"^(and|also|btw|plus)\s*,?\s+", flags=re.IGNORECASE)


def prepend_clause(sample: Sample, phrase: str) -> Sample:
    """The row with the clause in front: its leading connective ("and", "also ,", "btw", "plus") dropped,
    since nothing precedes it, and a full stop added where it ends without one."""
    _refuse_target(sample, phrase)
    clause = _CONNECTIVE.sub("", phrase.strip())
    clause = clause if clause[-1] in ".!?" else f"{clause} ."
    return dataclasses.replace(sample, tweet=f"{clause} {sample.tweet}")


def _free_phrase(phrases: list[str], sample: Sample, rng: random.Random) -> str | None:
    """A random phrase of the list that does not name the row's target, or None."""
    free = [p for p in phrases if not names_target(p, sample.target)]
    return rng.choice(free) if free else None


@dataclass
class Edited:
    """An edit applied to a split: the edited rows, their positions in the split, and why some
    rows were left out."""

    edit: str
    rows: list[Sample]
    positions: list[int]
    skipped: list[str] = field(default_factory=list)
    not_applicable: str | None = None  # why the edit applies to no row


def edit_rows(samples: list[Sample], edit: str, seed: int = 0, phrases: dict[str, list[str]] | None = None) -> Edited:
    """Apply one edit to every row it applies to; deterministic in (rows, edit, seed)."""
    if edit not in EDITS + PROBE_EDITS:
        raise ValueError(f"unknown edit {edit!r}; choose from {', '.join(EDITS + PROBE_EDITS)}")
    polarity = clause_polarity(edit)
    front = edit in PROBE_EDITS
    # a prefix edit draws as its clause edit does: the same rows get the same phrases, only the place differs
    rng = random.Random(f"{seed}:clause_{polarity}" if front else f"{seed}:{edit}")
    rows: list[Sample] = []
    positions: list[int] = []
    skipped: list[str] = []
    if polarity is not None:
        bank = (phrases or phrase_bank("stress"))[polarity]
        for i, s in enumerate(samples):
            if s.label == CLAUSE_LABEL[polarity]:
                continue
            phrase = _free_phrase(bank, s, rng)
            if phrase is None:
                skipped.append(f"row {s.index} (line {s.line}): every {polarity} phrase names its target {s.target!r}")
                continue
            rows.append(prepend_clause(s, phrase) if front else append_clause(s, phrase))
            positions.append(i)
        why = f"no row has a gold label other than {polarity}" if not rows and not skipped else None
    elif edit == "swap_visual":
        images = list(dict.fromkeys(s.image_id for s in samples if s.image_id != NO_VISUAL))
        for i, s in enumerate(samples):
            others = [x for x in images if x != s.image_id]
            if others:
                rows.append(dataclasses.replace(s, image_id=rng.choice(others)))
                positions.append(i)
        why = "the split has fewer than two distinct images" if not rows else None
    elif edit == "no_visual":
        for i, s in enumerate(samples):
            if s.image_id != NO_VISUAL:
                rows.append(dataclasses.replace(s, image_id=NO_VISUAL))
                positions.append(i)
        why = "every row already has no visual input" if not rows else None
    else:  # swap_target
        targets = list(dict.fromkeys(s.target for s in samples))
        patterns = [_target_pattern(t) for t in targets]  # compiled once: rows x targets searches
        for i, s in enumerate(samples):
            context = s.tweet.replace(TARGET_TOKEN, " ")
            others = [t for t, p in zip(targets, patterns) if t.lower() != s.target.lower() and not p.search(context)]
            if others:
                rows.append(dataclasses.replace(s, target=rng.choice(others)))
                positions.append(i)
        why = "the split has no second target to swap in" if not rows else None
    if not rows and skipped:
        why = f"every phrase names the target of each row it could apply to ({len(skipped)} rows)"
    return Edited(edit, rows, positions, skipped, why)


def augment_rows(samples: list[Sample], rate: float, seed: int, phrases: dict[str, list[str]] | None = None,
                 polarity: str = "opposite", position: str = "end") -> list[Sample]:
    """Target-focused training data: the rows plus, for a share `rate` of them (1.0 = every row;
    above 1, more than one copy), a copy with a clause from the `augment` bank appended whose
    sentiment differs from the row's label, which the copy keeps. What the sentence says about
    something else must not move the prediction for the target. polarity="random" draws the
    clause's sentiment independently of the label instead, so the clause carries no label signal.
    position="either" puts each copy's clause in front of the tweet or after it by a coin of its own
    RNG: the same rows and clauses as "end", so a model cannot learn that only the end is noise."""
    for name, value in (("augment_polarity", polarity), ("augment_position", position)):
        if value not in CHOICES[name]:  # the config field's choices, stated once
            raise ValueError(f"{name} must be one of {' or '.join(map(repr, CHOICES[name]))}, not {value!r}")
    if rate <= 0:
        return list(samples)
    bank = phrases or phrase_bank("augment")
    rng = random.Random(f"augment:{seed}")
    coin = random.Random(f"augment-position:{seed}")  # its own draws: "end"'s rows and phrases stay as they were
    copies = int(rate) * len(samples) + round((rate - int(rate)) * len(samples))
    order = [i for _ in range(int(rate) + 1) for i in rng.sample(range(len(samples)), len(samples))][:copies]
    out = list(samples)
    for n, i in enumerate(order):
        s = samples[i]
        polarities = [p for p, label in CLAUSE_LABEL.items() if polarity == "random" or label != s.label]
        phrase = None
        for side in rng.sample(polarities, len(polarities)):
            phrase = _free_phrase(bank[side], s, rng)
            if phrase is not None:
                break
        if phrase is not None:
            place = prepend_clause if position == "either" and coin.random() < 0.5 else append_clause
            out.append(dataclasses.replace(place(s, phrase), index=f"{s.index}+aug{n}"))
    return out


@dataclass(frozen=True)
class ClauseGrammar:
    """The counterfactual bank: clauses about something else composed from parts (phrases.json,
    "counterfactual"), thousands of them, so what the counterfactual upper level teaches is "a clause
    about something else", not a dozen memorised phrases. It shares no content word with the stress bank."""

    templates: tuple[str, ...]
    openers: tuple[str, ...]
    subjects: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: dict[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ClauseGrammar":
        path = Path(path) if path else PHRASES_FILE
        try:
            g = json.loads(path.read_text(encoding="utf-8"))["counterfactual"]
            return cls(*(tuple(g[k]) for k in ("templates", "openers", "subjects", "verbs")),
                       {side: tuple(words) for side, words in g["adjectives"].items()})
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: no usable 'counterfactual' grammar ({err})") from err

    def sample(self, rng: random.Random, polarity: str) -> str:
        return rng.choice(self.templates).format(
            opener=rng.choice(self.openers), subject=rng.choice(self.subjects), verb=rng.choice(self.verbs),
            adjective=rng.choice(self.adjectives[polarity]))

    def words(self) -> set[str]:
        parts = [*self.templates, *self.openers, *self.subjects, *self.verbs, *(a for v in self.adjectives.values() for a in v)]
        return {w for part in parts for w in re.sub(r"[{}]", " ", part).lower().split()}


def counterfactual_copies(samples: list[Sample], seed: int, grammar: ClauseGrammar | None = None,
                          tries: int = 20) -> list[Sample]:
    """One copy of every row with a clause about something else appended, label kept: the
    counterfactual upper level's D_dev pairs. The clause's sentiment is drawn independently of the
    label (so it carries no label signal) from the counterfactual grammar, never the stress bank; a row
    whose target every drawn clause names is copied unchanged (its pair then costs nothing)."""
    grammar = grammar or ClauseGrammar.load()
    rng = random.Random(f"counterfactual-dev:{seed}")
    out = []
    for s in samples:
        polarity = rng.choice(sorted(grammar.adjectives))
        phrase = next((c for c in (grammar.sample(rng, polarity) for _ in range(tries)) if not names_target(c, s.target)),
                      None)
        out.append(append_clause(s, phrase) if phrase is not None else s)
    return out


def counterfactual_split(split: Split, seed: int) -> Split:
    """The split with every row replaced by its counterfactual copy (same order, same visual input)."""
    return dataclasses.replace(split, samples=counterfactual_copies(split.samples, seed))


def augmented_split(split: Split, rate: float, seed: int, polarity: str = "opposite",
                    position: str = "end") -> Split:
    """The training split with augment_rows' copies added; each copy keeps its row's image."""
    rows = augment_rows(split.samples, rate, seed, polarity=polarity, position=position)
    if len(rows) == len(split.samples):
        return split
    text = dict(zip((s.image_id for s in split.samples), split.visual_text)) if split.visual_text else None
    paths = dict(zip((s.image_id for s in split.samples), split.image_paths)) if split.image_paths else None
    labels = image_label_sets(rows)
    return dataclasses.replace(
        split, samples=rows,
        visual_text=[text[s.image_id] for s in rows] if text is not None else None,
        image_paths=[paths[s.image_id] for s in rows] if paths is not None else None,
        image_labels=np.stack([labels[s.image_id] for s in rows]),
    )
