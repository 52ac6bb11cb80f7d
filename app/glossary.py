"""The lab's words in plain language: one entry per term, shown on the Glossary page, which every page
links to (`link`). The stress edits' entries come from the library's own names and descriptions
(cmcs_core.data.counterfactual), so a menu, a chart and the glossary always say the same thing.
"""
from __future__ import annotations

from cmcs_core.command import cli_command
from cmcs_core.data.counterfactual import ALL_EDITS, EDIT_FLIP_MEANS, EDIT_NAMES, EDIT_TITLES

PAGE = "Glossary"  # its url path (app/main.py)

# anchor -> (term, explanation). Anchors are what links name: keep them stable.
TERMS: dict[str, tuple[str, str]] = {
    "target": ("Target", "The person, thing or place a prediction is about. One tweet can name several targets, "
                         "each with its own label: *great night with Pat, the venue was awful* is positive about "
                         "Pat and negative about the venue. The data marks the target's place in the tweet with "
                         "`$T$`; the app always shows the name instead."),
    "shortcut": ("Shortcut", "Something that goes with the label in the training data without being about the "
                             "target: a word, a colour in the picture. A model that learns it scores well until the "
                             "shortcut stops going with the label."),
    "planted-cue": ("Planted cue", "A shortcut the playground puts in on purpose, so we know where it is: a "
                                   "*planted word* (a neutral noun such as *podcast*, always in the same little "
                                   "phrase: *after the podcast*) and a *planted image cue* (a small coloured shape). "
                                   "In training they go with one label; in test they are at chance."),
    "playground": ("Playground", f"A synthetic dataset the lab generates (`{cli_command('playground')}`), with planted cues and "
                                 "a record of which word and which part of the picture is which, so every mask "
                                 "and every prediction can be checked against the truth."),
    "visual-source": ("Captions or pixels", "What a run reads of the picture: its *caption* (a sentence describing "
                                            "it, read like text) or its *pixels* (an image encoder's 7x7 grid of "
                                            "cells). A *text-only* run reads no picture at all."),
    "cmcs": ("CMCS", "Cross-Modal Causal Scheduling, the method of the paper this lab reimplements and tests. Two "
                     "parts: MFS (masks) and CMS (scheduling). *Text-only baseline*: the same model without the "
                     "picture and without either part."),
    "mask": ("Mask, gate (MFS)", "MFS multiplies each word's (or image cell's) features by a gate between 0 and 1: "
                                 "near 0 turns the word down, near 1 keeps it, 0.5 is a gate that does not choose. "
                                 "The paper's mask has one gate per feature; a *token gate* is one per word."),
    "target-aware": ("Target-aware gates", "A variant beyond the paper: each word's gate is computed from the word "
                                           "and the target, so the same word can be kept beside one target and "
                                           "turned down beside another. *Learned on the validation split*: the gates "
                                           "are fitted by the outer loop (below), which reads validation rows drawn "
                                           "without the shortcut."),
    "scheduling": ("Scheduling weight, causal effect (CMS)", "CMS weighs the text and the image losses by how much "
                                                             "the masked features help (their *causal effect*: "
                                                             "1 = no help), with weights φ = softplus(α · effect)."),
    "levels": ("Inner and outer loop (lower and upper level)", "CMCS trains in two nested loops: the inner one "
                                                                "fits the model on the training split; every few "
                                                                "steps the outer one adjusts the scheduler (α, β) "
                                                                "so the model does better on the validation split."),
    "splits": ("Training, validation (dev) and test splits", "The model learns from *train*; *dev* (validation) "
                                                             "picks the best epoch, and CMCS's outer loop learns "
                                                             "from it; *test* is only measured. On the playground "
                                                             "the planted cues are at chance in test."),
    "fusion": ("Fusion weight s", "How much of the final prediction comes from the picture: final = (1 − s) · text "
                                  "+ s · image, with s the similarity of the picture and the target."),
    "flip-rate": ("Flip rate", "Of the rows a stress test edited, the share whose predicted label changed. The "
                               "edits change nothing about the target, so a model that reads the target flips "
                               "little."),
    "interval": ("95% interval (bootstrap)", "How far a rate could move with other rows of the same kind: the rows "
                                             "are drawn again at random 2,000 times, and the interval holds the "
                                             "middle 95% of the rates found. Two bars whose intervals overlap a "
                                             "lot may not differ."),
    "stress-test": ("Stress test, edit", "Each row of the test split is edited in one way that is not about the "
                                         "target, the label kept, and the run predicts again. The edits are "
                                         "listed below."),
    "multi-target": ("Multi-target score", "On tweets whose targets have different labels: *all targets right* "
                                           "(every target of the tweet predicted right) and *one label for all* "
                                           "(the model gave all its targets the same label, which a model that "
                                           "reads the target should not)."),
    "metrics": ("Accuracy, macro-F1, per class", "Accuracy: the share of rows predicted right. Per class: "
                                                 "*precision* (of the rows predicted positive, the share that are) "
                                                 "and *recall* (of the positive rows, the share found); F1 combines "
                                                 "the two, macro-F1 averages it over the classes."),
    "attribution": ("Attribution", "How much each word pushed the prediction: *Integrated Gradients* (the "
                                   "gradient summed on the way from an empty input) and *occlusion* (the drop when "
                                   "a word or cell is blanked)."),
    "mask-effect": ("What the mask does (Δp)", "For each word: the prediction with every gate as learned, minus "
                                               "the prediction with this one word let through whole. 0: its gate "
                                               "changes nothing."),
    "word-pieces": ("Word pieces", "The encoder splits words into pieces (*mess ##i*) and reads at most a fixed "
                                   "number of them; the rest of a long tweet is cut. [UNK] is a piece it does not "
                                   "know (emoji)."),
    "seed": ("Seed", "The number that fixes a run's random choices; runs that differ only in their seed show how "
                     "much of a result is chance."),
}


def edit_entries() -> dict[str, tuple[str, str]]:
    """One glossary entry per stress edit: its plain name, what it does, what a flip means, its code name."""
    return {f"edit-{e}": (EDIT_NAMES[e].capitalize(), f"{EDIT_TITLES[e][0].upper()}{EDIT_TITLES[e][1:]}. "
                          f"{EDIT_FLIP_MEANS[e]} Code name: `{e}`.") for e in ALL_EDITS}


def link(anchor: str, text: str | None = None) -> str:
    """A Markdown link to one glossary entry."""
    terms = {**TERMS, **edit_entries()}
    return f"[{text or terms[anchor][0].lower()}](/{PAGE}#{anchor})"


def edit_name(edit: str) -> str:
    """An edit's plain name, for menus and charts (the code name goes in the tooltip: edit_help)."""
    return EDIT_NAMES[edit]


def edit_help(edits) -> str:
    """Tooltip of a menu or chart of edits: each plain name with its code name."""
    return "  \n".join(f"**{EDIT_NAMES[e]}** (`{e}`): {EDIT_TITLES[e]}" for e in edits)
