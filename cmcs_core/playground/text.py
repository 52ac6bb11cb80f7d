"""Tweets built from per-target clauses, with every token's role known by construction.

A tweet is a list of whitespace tokens; positions recorded here index
`tweet.replace("$T$", target).split()` for any of the tweet's rows, because every target
phrase is itself space-separated tokens and no field contains other whitespace.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cmcs_core.playground import vocab

TARGET_TOKEN = "$T$"


@dataclass
class Clause:
    """One target's clause: its own sentiment word and, maybe, its own planted spurious word."""

    target: str
    clean_label: int
    template: str
    sentiment_word: str
    spurious_word: str | None = None
    spurious_frame: str | None = None
    spurious_first: bool = False  # frame before the clause instead of after it


@dataclass
class RenderedTweet:
    """Tokens plus, per clause, where its target, sentiment and spurious words landed."""

    tokens: list[str]
    target_spans: list[tuple[int, int]] = field(default_factory=list)  # [start, end)
    sentiment_positions: list[list[int]] = field(default_factory=list)
    spurious_positions: list[list[int]] = field(default_factory=list)

    def tweet_for(self, clause_no: int) -> str:
        """The TSV tweet of one row: that clause's target replaced by $T$."""
        start, end = self.target_spans[clause_no]
        return " ".join(self.tokens[:start] + [TARGET_TOKEN] + self.tokens[end:])


def sample_clauses(rng: np.random.Generator, k: int) -> list[Clause]:
    """k clauses with distinct targets and independent, uniform clean labels."""
    picks = rng.choice(len(vocab.TARGETS), size=k, replace=False)
    clauses = []
    for pick in picks:
        label = int(rng.integers(3))
        words = vocab.SENTIMENT_WORDS[label]
        template = vocab.CLAUSE_TEMPLATES[int(rng.integers(len(vocab.CLAUSE_TEMPLATES)))]
        clauses.append(Clause(vocab.TARGETS[int(pick)], label, template,
                              words[int(rng.integers(len(words)))]))
    return clauses


def plant_spurious(rng: np.random.Generator, clause: Clause, planted_class: int) -> None:
    """Attach one spurious word of `planted_class`, in a frame shared by all classes."""
    words = sorted(vocab.SPURIOUS_WORDS[planted_class])
    word = words[int(rng.integers(len(words)))]
    frames = vocab.SPURIOUS_FRAMES[vocab.SPURIOUS_WORDS[planted_class][word]]
    clause.spurious_word = word
    clause.spurious_frame = frames[int(rng.integers(len(frames)))]
    clause.spurious_first = bool(rng.random() < 0.5)


def render(clauses: list[Clause], connectors: list[str], filler: str | None) -> RenderedTweet:
    """Join clauses with connectors; record each clause's token positions as we go."""
    out = RenderedTweet(tokens=[])
    for no, clause in enumerate(clauses):
        if no:
            out.tokens.append(connectors[no - 1])
        spurious: list[int] = []
        frame = clause.spurious_frame.split() if clause.spurious_frame else []
        if frame and clause.spurious_first:
            spurious = _emit_frame(out.tokens, frame, clause.spurious_word)
        sentiment: list[int] = []
        for piece in clause.template.split():
            if piece == "{T}":
                start = len(out.tokens)
                out.tokens.extend(clause.target.split())
                out.target_spans.append((start, len(out.tokens)))
            elif piece == "{S}":
                sentiment.append(len(out.tokens))
                out.tokens.append(clause.sentiment_word)
            else:
                out.tokens.append(piece)
        if frame and not clause.spurious_first:
            spurious = _emit_frame(out.tokens, frame, clause.spurious_word)
        out.sentiment_positions.append(sentiment)
        out.spurious_positions.append(spurious)
    if filler:
        out.tokens.append(filler)
    return out


def _emit_frame(tokens: list[str], frame: list[str], word: str | None) -> list[int]:
    positions = []
    for piece in frame:
        if piece == "{W}":
            positions.append(len(tokens))
            tokens.append(str(word))
        else:
            tokens.append(piece)
    return positions
