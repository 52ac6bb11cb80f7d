"""What makes runs comparable: a regime (encoder, tuning, visual input, precision, learning rates, selection
rule and opt-in changes), a variant (a method and its opt-in changes), and the one way numbers are
shown (mean ± std over seeds, percent).

Runs are averaged together only within one regime. The opt-in changes are read from the config
fields' declarations (config.knob: a field with a tag is an opt-in, its default the paper's setting,
its tag named in variant names `text_only +pool-target`, its phrase in regime titles "target pooling");
OPT_IN_ORDER is the order they are named in.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cmcs_core.config import FIELDS, METHOD_ORDER, METHOD_TITLES, RunConfig, Text, TrainConfig, variant_flags
from cmcs_core.runs.describe import visual_input_of
from cmcs_core.variants import VARIANT_TITLES, VARIANTS


@dataclass(frozen=True)
class OptIn:
    """An opt-in change: a config field away from its default (the paper's setting)."""

    field: str  # "section.name" of RunConfig
    default: Any
    tag: Text  # in variant names: "+pool-{value}"
    phrase: Text  # in regime titles: "{value} pooling"
    label: Text | None = None  # in method titles (stress tables), when shorter than the phrase
    paired: bool = True  # `table --paired` lists each regime with it minus the same regime without it

    def value(self, cfg: RunConfig) -> Any:
        section, name = self.field.split(".")
        return getattr(getattr(cfg, section), name)

    def change(self, cfg: RunConfig) -> Change | None:
        value = self.value(cfg)
        if value == self.default:
            return None
        text = lambda t: t(value, cfg) if callable(t) else t.format(value=value)  # noqa: E731
        phrase = text(self.phrase)
        return Change(self.field, text(self.tag), phrase, text(self.label) if self.label else phrase, self.paired)

    @classmethod
    def of(cls, name: str) -> OptIn:
        """The opt-in declared by config field `name` (its default, tag, phrase, label and pairing)."""
        section, f = FIELDS[name]
        meta = f.metadata
        return cls(f"{section}.{name}", f.default, meta["tag"], meta["phrase"], meta.get("label"),
                   meta.get("paired", True))


# In the order they are named: pooling, the text input, the training data, then the target-aware
# selection machinery (gates, the counterfactual branch and upper level, where the mask learns, the Neumann step).
OPT_IN_ORDER = ("pooling", "caption_in_text", "mark_target", "augment_clauses", "augment_position",
                "mask_granularity", "mask_condition", "counterfactual_share", "upper_objective", "invariance_weight",
                "mask_level", "mask_lr", "neumann_eta_rule")
OPT_INS = tuple(OptIn.of(name) for name in OPT_IN_ORDER)


@dataclass(frozen=True)
class Change:
    """One opt-in change a run was trained with, as OptIn.change names it."""

    field: str
    tag: str
    phrase: str
    label: str
    paired: bool


def named_variant(cfg: RunConfig) -> tuple[str, set[str]] | None:
    """The named variant (variants.VARIANTS) whose every flag this config carries, with the fields it
    covers; the one covering most fields when several match. config.json records flags, not names."""
    best = None
    for name in VARIANTS:
        flags = variant_flags(name, cfg.model.use_cms)
        fields = {f"{section}.{key}" for section, values in flags.items() for key in values}
        if all(getattr(getattr(cfg, section), key) == value for section, values in flags.items()
               for key, value in values.items()) and (best is None or len(fields) > len(best[1])):
            best = (name, fields)
    return best


def changes_of(cfg: RunConfig) -> tuple[Change, ...]:
    """The opt-in changes, with those of a named variant folded into one (`cmcs +target_aware`)."""
    changes = tuple(c for c in (o.change(cfg) for o in OPT_INS) if c is not None)
    named = named_variant(cfg)
    if named is None:
        return changes
    name, fields = named
    phrase = VARIANT_TITLES[name]
    return (Change("variant", f"+{name}", phrase, phrase, True), *(c for c in changes if c.field not in fields))


@functools.total_ordering
@dataclass(frozen=True)
class Regime:
    """The settings runs share to be averaged and compared; ordered strongest first (the headline
    leads every table and menu): the base-size encoder before MiniLM, end-to-end fine-tuning
    before the top layers before frozen, the default knobs before a variant of them."""

    text_model: str
    finetune_layers: int
    visual_input: str
    precision: str = "fp32"  # what the run computed in (config.json holds what auto resolved to)
    lr: float = TrainConfig.lr
    head_lr: float = TrainConfig.head_lr
    select_on: str = TrainConfig.select_on
    changes: tuple[Change, ...] = ()

    @classmethod
    def of(cls, cfg: RunConfig) -> Regime:
        enc, train = cfg.encoder, cfg.train
        return cls(enc.text_model, enc.finetune_layers, visual_input_of(cfg), train.precision, train.lr,
                   train.head_lr, train.select_on, changes_of(cfg))

    @property
    def base(self) -> Regime:
        """The same regime without its opt-in changes (the stress tables show those as variants)."""
        return dataclasses.replace(self, changes=())

    def without(self, change: Change) -> Regime:
        return dataclasses.replace(self, changes=tuple(c for c in self.changes if c != change))

    @property
    def title(self) -> str:
        ft = self.finetune_layers
        tuned = "frozen" if ft == 0 else ("fine-tuned (all layers)" if ft == -1 else f"fine-tuned (top {ft} layers)")
        # precision "": a pairing across precisions, which names them itself (report/seed_pairs.py, report/aims.py)
        parts = [self.text_model, tuned, f"visual = {self.visual_input}", *([self.precision] if self.precision else [])]
        # Learning rates or a selection rule away from the defaults make another regime: never averaged together.
        parts += [f"{name} {value:g}" for name, value, default in (("lr", self.lr, TrainConfig.lr),
                                                                  ("head lr", self.head_lr, TrainConfig.head_lr))
                  if value != default]
        if self.select_on != TrainConfig.select_on:
            parts.append(f"epoch chosen on {self.select_on.replace('_', ' ')}")
        return ", ".join(parts + [c.phrase for c in self.changes])

    @property
    def is_variant(self) -> bool:
        return (self.lr, self.head_lr, self.select_on) != (TrainConfig.lr, TrainConfig.head_lr,
                                                          TrainConfig.select_on) or bool(self.changes)

    @property
    def sort_key(self) -> tuple:
        tuning = {-1: 0, 0: 2}.get(self.finetune_layers, 1)
        return ("minilm" in self.text_model, tuning, self.is_variant, self.title)

    def __lt__(self, other: Regime) -> bool:
        return self.sort_key < other.sort_key

    def __str__(self) -> str:
        return self.title


@functools.total_ordering
@dataclass(frozen=True)
class Variant:
    """A method and the opt-in changes it was trained with: `text_only +pool-target +aug-random`.
    Each variant is compared with its base, the same method without its last change."""

    method: str
    changes: tuple[Change, ...] = ()

    @classmethod
    def of(cls, cfg: RunConfig) -> Variant:
        return cls(cfg.model.method, changes_of(cfg))

    @property
    def key(self) -> str:
        return " ".join([self.method, *(c.tag for c in self.changes)])

    @property
    def title(self) -> str:
        return " + ".join([METHOD_TITLES.get(self.method, self.method), *(c.label for c in self.changes)])

    @property
    def base(self) -> Variant | None:
        return Variant(self.method, self.changes[:-1]) if self.changes else None

    @property
    def sort_key(self) -> tuple:
        order = METHOD_ORDER.index(self.method) if self.method in METHOD_ORDER else len(METHOD_ORDER)
        return order, self.key

    def __lt__(self, other: Variant) -> bool:
        return self.sort_key < other.sort_key

    def __str__(self) -> str:
        return self.key


def method_order(methods) -> list[str]:
    """The methods present, in the one method order (unknown names last, by name)."""
    return sorted(set(methods), key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m))


def mean_std(mean: float, std: float, digits: int = 1) -> str:
    """Mean ± std over seeds; one seed has no spread (std NaN), so no ± at all."""
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def seeds_mean_std(values: pd.Series, digits: int = 1) -> str:
    """mean_std of one value per seed."""
    return mean_std(values.mean(), values.std(), digits)


def percent(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """The given fraction columns as percent, for display (files and frames hold fractions)."""
    return frame.assign(**{c: 100 * frame[c] for c in columns if c in frame})
