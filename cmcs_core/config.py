"""Run configuration: one dataclass tree, saved as config.json in every run folder.

A run is reproduced by `python -m cmcs_core train --config RUN/config.json`, so every knob
that changes a result lives here and nowhere else. Each field is declared once, with what
else there is to say about it as field metadata (`knob`): the values it takes, the tag and
phrase tables name it by when it is away from its default, what it needs to mean anything.
CHOICES, RANGES, the command-line flags, the opt-in registry of the tables (report/regime.py)
and the refusals of `validate` are derived from those declarations. `build_config` is the one
way a config is made from parts (a base, a method, a named variant, explicit values).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from cmcs_core.io import atomic_write_text
from cmcs_core.variants import VARIANTS

# Ablations of Table 2 and the text-only baseline are presets of one code path. Their order here is
# the one order of every table, menu and plot: the baseline, CMCS, then its ablations as in Table 2.
METHODS: dict[str, dict[str, Any]] = {
    "text_only": dict(use_visual=False, use_cms=False, mask_mode="none"),
    "cmcs": dict(use_visual=True, use_cms=True, mask_mode="learned"),
    "wo_visual": dict(use_visual=False, use_cms=True, mask_mode="learned"),
    "wo_cms": dict(use_visual=True, use_cms=False, mask_mode="learned"),
    "wo_mfs": dict(use_visual=True, use_cms=True, mask_mode="fixed"),
    "wo_mfs_cms": dict(use_visual=True, use_cms=False, mask_mode="fixed"),
}
METHOD_ORDER = tuple(METHODS)

POOLINGS = ("mean", "cls", "target", "mention")
# Which way each selection figure improves (the trainer keeps the best epoch by it; ties keep the earlier one).
SELECT_ON = {"dev_acc": "max", "dev_f1": "max", "dev_loss": "min"}
MASK_MODES = ("learned", "fixed", "none")
MASK_GRANULARITIES = ("element", "token")


METHOD_TITLES = {
    "text_only": "Text-only baseline",
    "cmcs": "CMCS",  # the paper's method, reimplemented here
    "wo_visual": "w/o Visual Modality",
    "wo_cms": "w/o CMS",
    "wo_mfs": "w/o MFS",
    "wo_mfs_cms": "w/o (MFS & CMS)",
}

# `<checkpoint>.cmcs.json` beside a CLIP checkpoint (visual_model clip:MODEL:CHECKPOINT) carries
# metadata such as random_weights: the app and the tables warn about runs on random weights.
CLIP_SIDECAR_SUFFIX = ".cmcs.json"

Text = str | Callable[[Any, "RunConfig"], str]  # a template ("{value} pooling") or a function of (value, config)


def knob(default: Any, *, choices: tuple | None = None, range: tuple[str, Callable[[Any], bool]] | None = None,
         tag: Text | None = None, phrase: Text | None = None, label: Text | None = None, paired: bool = True,
         level: str | None = None, needs: tuple[Callable[["RunConfig"], bool], str] | None = None,
         experimental: str | None = None) -> Any:
    """A config field with what there is to say about it, as field metadata:

    - choices / range: the values `validate` accepts (range: what it says, the test); a field with
      neither takes any value of its type (paths, model names: the run itself says when they are wrong);
      a field typed `X | None` also takes None;
    - tag / phrase / label: an opt-in beyond the paper, named when away from its default: its tag in
      variant names ("+pool-{value}"), its phrase in regime titles ("{value} pooling"), its label in
      method titles when shorter than the phrase; paired=False leaves it out of `table --paired`;
    - level="upper": it acts on the upper level, so a method without CMS refuses it away from its default
      (and a named variant leaves it out there);
    - needs=(test of the config, what is needed): away from its default it means nothing unless the test holds,
      so it is refused, never silently ignored;
    - experimental: why this opt-in is kept although it earned nothing in the project's own tables.
    """
    meta = dict(choices=choices, range=range, tag=tag, phrase=phrase, label=label, paired=paired, level=level,
                needs=needs, experimental=experimental)
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


POSITIVE_INT = ("a positive integer", lambda v: v >= 1)
POSITIVE = ("positive", lambda v: v > 0)
NON_NEGATIVE = ("0 or more", lambda v: v >= 0)
UNIT = ("in [0, 1]", lambda v: 0 <= v <= 1)


def _augmentation_tag(value, cfg: RunConfig) -> str:
    polarity = cfg.data.augment_polarity
    return "+aug" if polarity == "opposite" else f"+aug-{polarity}"


def _augmentation_phrase(value, cfg: RunConfig, amount: bool = True) -> str:
    polarity = cfg.data.augment_polarity
    return (f"counterfactual augmentation{f' {value:g}' if amount else ''}"
            + ("" if polarity == "opposite" else f" ({polarity} sentiment)"))


def _uses_invariance(cfg: RunConfig) -> bool:
    return cfg.train.upper_objective == "counterfactual" or cfg.train.counterfactual_share > 0


@dataclass
class DataConfig:
    """Where samples and the visual modality come from."""

    dataset: str = "twitter2015"  # twitter2015 | twitter2017 | a dataset folder (train/dev/test.tsv)
    data_dir: str | None = None  # root holding twitter2015/, captions/ ...; env CMCS_DATA_DIR
    image_dir: str | None = None  # TomBERT image folder -> real pixels; None -> captions
    use_faces: bool = False  # append FITE face descriptions to captions
    drop_missing_visual: bool = False  # drop rows whose image has no caption/file instead of failing
    max_train_samples: int | None = knob(None, range=POSITIVE_INT)  # quick runs, as in the transformers examples
    # target-focused training: this share of train rows (1.0 = each once) gets a copy with a clause of
    # another sentiment about something else appended, label kept (data/counterfactual.py); 0 = off.
    # Augmentation is compared with its base run in the stress tables (`table --stress`), so not paired.
    augment_clauses: float = knob(0.0, range=NON_NEGATIVE, tag=_augmentation_tag, phrase=_augmentation_phrase,
                                  label=lambda value, cfg: _augmentation_phrase(value, cfg, amount=False),
                                  paired=False)
    augment_seed: int = 0  # which copies/phrases: fixed apart from the run's seed, so a grid shares one set
    # opposite: the clause's sentiment differs from the label (ARTS' AddDiff) -- which makes "negative clause"
    # a sign of a positive label; random: either sentiment, independent of the label
    augment_polarity: str = knob("opposite", choices=("opposite", "random"))
    # end: the clause follows the tweet, as the stress bank's clause edits put it; either: each copy's clause
    # goes in front or at the end by a coin (the same rows and clauses), since end-only copies teach the
    # clause's place too (docs/robustness.md, the prefix probe). Compared with end-only augmentation.
    augment_position: str = knob("end", choices=("end", "either"), tag="+either-end",
                                 phrase="the augmentation's clause at either end", label="clause at either end",
                                 paired=False,
                                 needs=(lambda cfg: cfg.data.augment_clauses > 0,
                                        "it places the augmentation's clauses: it needs --augment-clauses"))
    max_eval_samples: int | None = knob(None, range=POSITIVE_INT)
    dev_subset_size: int = knob(256, range=POSITIVE_INT)  # |D_dev| for the upper level, drawn from the validation split
    read_test: bool = True  # False: the test split is never opened (hyperparameter searches score on dev only)


@dataclass
class EncoderConfig:
    """Which encoders produce E^t and E^v, and how much of the text encoder trains."""

    text_model: str = "minilm"  # minilm | mpnet | local folder | hub id
    visual_model: str = "caption"  # caption | efficientnet-lite0 | clip:MODEL:CHECKPOINT
    caption_model: str | None = None  # text encoder for captions; None -> text_model
    max_length: int = knob(64, range=POSITIVE_INT)
    caption_max_length: int = knob(40, range=POSITIVE_INT)
    finetune_layers: int = knob(0, range=("-1 (all), 0 (frozen) or a number of top layers", lambda v: v >= -1))
    # Beyond the paper, opt-in: the image's caption also goes into the text encoder's input,
    # `[CLS] tweet [SEP] target [SEP] caption [SEP]`, as CapTrBERT reads it (needs the caption visual source)
    caption_in_text: bool = knob(False, tag="+caption-in-text", phrase="caption in the text input",
                                 needs=(lambda cfg: cfg.encoder.visual_model == "caption",
                                        "it reads the image's caption inside the text input: it needs the caption "
                                        "visual source"),
                                 experimental="docs/robustness.md: accuracy -2.1 +0.6 -2.0 points on Twitter2015, "
                                              "and caption swaps flip more predictions")
    # Opt-in: the target's mention in the tweet is put between markers, `... [ Obama ] and Romney ...`
    # (MPNet top 4, 3 seeds: Twitter2015 all targets right +3.8 [+1.5, +6.2] points, docs/robustness.md)
    mark_target: bool = knob(False, tag="+marked", phrase="target marked in the tweet")


@dataclass
class ModelConfig:
    """MFS / CMS architecture and the ablation switches."""

    method: str = "cmcs"  # a name of METHODS
    # The method's switches (METHODS): a value other than its method's is refused, never tabled under its name.
    use_visual: bool = True
    use_cms: bool = True
    mask_mode: str = knob("learned", choices=MASK_MODES)  # learned | fixed (0.5, w/o MFS) | none (identity, baseline)
    hidden_dim: int = knob(256, range=POSITIVE_INT)  # MLP width inside MFS
    dropout: float = knob(0.1, range=("in [0, 1)", lambda v: 0 <= v < 1))
    # mean over real tokens | cls | target (opt-in: mean over the target segment's tokens) | mention (opt-in:
    # the target's words inside the tweet); "+" concatenates readouts, e.g. "mean+target" (TD-BERT-style)
    pooling: str = knob("mean", tag="+pool-{value}", phrase="{value} pooling")
    fusion: str = knob("auto", choices=("auto", "similarity", "constant"))
    fusion_constant: float = knob(0.5, range=UNIT)
    alpha_init: float = 0.5413  # softplus(0.5413) = 1: CMCS starts as joint training
    # Opt-in extensions beyond the paper (docs/method.md, "Beyond the paper"); the defaults are the paper's MFS.
    # element (paper: m x d gates) | token (one gate per token/cell, broadcast over d)
    mask_granularity: str = knob("element", choices=MASK_GRANULARITIES, tag="+gates-{value}",
                                 phrase="one gate per {value}")
    # lambda of a prior lambda * mean(M) in the lower objective; 0 = off (paper)
    mask_sparsity: float = knob(0.0, range=NON_NEGATIVE,
                                experimental="docs/playground.md: the gates drop and keep their order; accuracy "
                                             "falls (66.2 -> 62.3 at 0.5) and the planted word is barely singled out")
    # Opt-in: "target" adds to each text token's gate a term of its relation to the target (zero at
    # init); the text branch then averages tokens weighted by their gates. Needs token granularity.
    mask_condition: str = knob("none", choices=("none", "target"), tag="+gates-on-{value}",
                               phrase="gates conditioned on the {value}")  # none (paper) | target


@dataclass
class TrainConfig:
    """Optimisation of the lower (theta) and upper (phi) levels."""

    epochs: int = knob(10, range=POSITIVE_INT)
    batch_size: int = knob(32, range=POSITIVE_INT)
    lr: float = knob(2e-5, range=POSITIVE)  # text encoder layers (paper)
    head_lr: float = knob(1e-3, range=POSITIVE)  # MFS heads and classifiers
    weight_decay: float = knob(0.01, range=NON_NEGATIVE)
    warmup_ratio: float = knob(0.1, range=UNIT)
    grad_clip: float = knob(1.0, range=POSITIVE)
    seed: int = knob(42, range=("in 0..2**32-1 (numpy's seed range)", lambda v: 0 <= v < 2**32))
    # bi-level (Algorithm 1); unknown in the paper, JTDS values where it gives them
    H: int = knob(20, range=POSITIVE_INT)  # lower steps per upper step
    K: int = knob(3, range=NON_NEGATIVE)  # Neumann terms
    neumann_eta: float = knob(0.1, range=POSITIVE)  # Neumann step eta
    # Opt-in "curvature": eta = 0.8 / lambda_max of each upper step's Hessian (5 HVPs), so the series converges
    neumann_eta_rule: str = knob("fixed", choices=("fixed", "curvature"), level="upper", tag="+eta-{value}",
                                 phrase="Neumann step from the {value}")  # fixed (neumann_eta) | curvature
    phi_lr: float = knob(1e-2, range=POSITIVE)  # eta2
    hypergrad_clip: float = knob(1.0, range=POSITIVE)
    hessian_params: str = knob("heads", choices=("heads", "heads+encoder"))
    device: str = "auto"  # auto | cpu | cuda
    # auto: bf16 autocast where the device computes bf16 natively and a probe finds it faster (cmcs_core/precision.py);
    # a run's config.json holds what auto resolved to, so `train --config` repeats the same arithmetic
    precision: str = knob("auto", choices=("auto", "fp32", "bf16"))
    eval_test_each_epoch: bool = True
    # which dev figure picks the kept epoch
    select_on: str = knob("dev_acc", choices=tuple(SELECT_ON))
    # Opt-in "counterfactual": D_dev also holds each row's copy with a clause about something else
    # appended (label kept); L_dev adds that copy's L_t plus invariance_weight * JS(p_t(row) || p_t(copy)).
    upper_objective: str = knob("dev", choices=("dev", "counterfactual"), level="upper", tag="+dev-{value}",
                                phrase="{value} D_dev")  # dev (paper: L_t + L_v on D_dev) | counterfactual
    # weight of the JS invariance terms (counterfactual D_dev and counterfactual branch)
    invariance_weight: float = knob(1.0, range=NON_NEGATIVE, tag="+inv-{value:g}", phrase="invariance weight {value:g}",
                                    needs=(_uses_invariance, "it weighs the invariance terms of the counterfactual "
                                           "D_dev and branch: set upper_objective=counterfactual or "
                                           "counterfactual_share > 0"))
    # "upper": the text mask network is a hyperparameter: it leaves theta and moves only by the upper level's
    # hypergradient (direct + implicit term), with Adam at mask_lr. "relation": only the target term of a
    # target-conditioned gate does (its content part learns from the training rows). "lower" is the paper.
    mask_level: str = knob("lower", choices=("lower", "upper", "relation"), level="upper", tag="+mask-{value}",
                           phrase="mask learned at the {value} level")  # lower | upper | relation
    mask_lr: float = knob(1e-3, range=POSITIVE, level="upper", tag="+mask-lr-{value:g}", phrase="mask lr {value:g}",
                          needs=(lambda cfg: cfg.train.mask_level != "lower",
                                 "it is the learning rate of a mask the upper level moves: set mask_level=upper "
                                 "or relation"))
    # Opt-in counterfactual branch: this share of each batch also passes with a clause about something
    # else appended (label kept); L_c = CE(copy) + invariance_weight JS(row || copy) is a third scheduled loss,
    # phi_c = softplus(gamma * eff_c), eff_c = exp(L_t(copy) - L_t(row)) (1 without CMS). 0 = off.
    counterfactual_share: float = knob(0.0, range=UNIT, tag="+cf-branch-{value:g}",
                                       phrase="counterfactual branch on {value:.0%} of rows",
                                       label="counterfactual branch")
    num_threads: int | None = knob(None, range=POSITIVE_INT)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        def build(kind, values):
            if kind is TrainConfig:
                values = _legacy_train(values)
            names = {f.name for f in dataclasses.fields(kind)}
            unknown = set(values) - names
            if unknown:
                raise ValueError(f"unknown {kind.__name__} keys: {sorted(unknown)}")
            return kind(**values)

        return cls(**{name: build(kind, d.get(name, {})) for name, kind in SECTIONS.items()}).validate()

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def validate(self) -> "RunConfig":
        """Refuse values no run can train with and combinations that cannot mean anything, every one of them
        in one error, naming each field and why, before any work starts. build_config, the trainer (for a
        config made by hand) and every reader of a config.json call this; a config found valid is not checked
        again (the checks depend on its values alone)."""
        key = json.dumps(self.to_dict(), sort_keys=True, default=repr)
        if key not in _VALID:
            problems = config_problems(self)
            if problems:
                raise ValueError("invalid config: " + "; ".join(problems))
            _VALID.add(key)
        return self


SECTIONS: dict[str, type] = {"data": DataConfig, "encoder": EncoderConfig, "model": ModelConfig,
                             "train": TrainConfig}
# Field name -> (section, field); the names are unique across the sections.
FIELDS: dict[str, tuple[str, dataclasses.Field]] = {
    f.name: (section, f) for section, kind in SECTIONS.items() for f in dataclasses.fields(kind)
}
_VALID: set[str] = set()  # configs validate() found valid, as sorted JSON


def _with_meta(key: str) -> dict[str, Any]:
    return {name: f.metadata[key] for name, (_, f) in FIELDS.items() if key in f.metadata}


# What validate() accepts, from the declarations above.
CHOICES: dict[str, tuple[str, ...]] = _with_meta("choices")
RANGES: dict[str, tuple[str, Callable[[float], bool]]] = _with_meta("range")
# Opt-ins kept although they earned nothing in the project's tables: field -> why (said in `train --help`).
EXPERIMENTAL: dict[str, str] = _with_meta("experimental")
# What a method without CMS (no upper level) refuses, and a named variant leaves out there.
UPPER_LEVEL_FIELDS = tuple(_with_meta("level"))


def value_of(cfg: RunConfig, name: str) -> Any:
    """The value of config field `name` (bare, as in FIELDS)."""
    return getattr(getattr(cfg, FIELDS[name][0]), name)


def is_optional(name: str) -> bool:
    """A field typed `X | None` (None: not set)."""
    return "None" in str(FIELDS[name][1].type)


def field_problems(section) -> list[str]:
    """Each field of one config section whose value CHOICES or RANGES refuse, said with the field's name."""
    problems = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if value is None and is_optional(f.name):
            continue
        if f.name in CHOICES and value not in CHOICES[f.name]:
            problems.append(f"{f.name}={value!r}: choose from {', '.join(CHOICES[f.name])}")
        if f.name in RANGES:
            meaning, ok = RANGES[f.name]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok(value):
                problems.append(f"{f.name}={value!r}: must be {meaning}")
    return problems


def config_problems(cfg: RunConfig) -> list[str]:
    """Everything validate() refuses in `cfg`, each said with its field and why."""
    problems = [p for section in SECTIONS for p in field_problems(getattr(cfg, section))]
    m, t = cfg.model, cfg.train
    parts = str(m.pooling).split("+")
    if any(p not in POOLINGS for p in parts) or len(set(parts)) != len(parts):
        problems.append(f"pooling={m.pooling!r}: pooling must be one of {', '.join(POOLINGS)}, or several "
                        "joined by '+' (each once, e.g. mean+target)")
    if m.method not in METHODS:
        problems.append(f"method={m.method!r}: choose from {', '.join(sorted(METHODS))}")
    for switch, preset in METHODS.get(m.method, {}).items():
        if getattr(m, switch) != preset:
            same = [name for name, s in METHODS.items() if all(getattr(m, k) == v for k, v in s.items())]
            problems.append(f"{switch}={getattr(m, switch)!r} contradicts method {m.method!r}, which sets "
                            f"{switch}={preset!r}: choose the method instead"
                            + (f" ({' or '.join(same)})" if same else ""))
    no_upper = f"method {m.method!r} has no upper level (no CMS, phi fixed to 1)"
    for name in UPPER_LEVEL_FIELDS:
        value = value_of(cfg, name)
        if not m.use_cms and value != FIELDS[name][1].default:
            problems.append(f"{name}={value}: {no_upper}" + (", so the mask could never move"
                                                              if name == "mask_level" else ""))
    for name, (holds, why) in _with_meta("needs").items():
        value = value_of(cfg, name)
        if value != FIELDS[name][1].default and not holds(cfg):
            problems.append(f"{name}={value!r}: {why}")
    if m.mask_condition == "target":
        if m.mask_mode != "learned":
            problems.append(f"mask_condition=target conditions a learned mask on the target, but method "
                            f"{m.method!r} has mask mode {m.mask_mode!r} (no learned mask to condition)")
        elif m.mask_granularity != "token":
            problems.append("mask_condition=target gives one gate per token (its relation to the target): "
                            "set mask_granularity=token")
    if t.mask_level != "lower" and m.mask_mode != "learned":
        problems.append(f"mask_level={t.mask_level}: method {m.method!r} has no learned mask")
    if t.mask_level == "relation" and m.mask_condition != "target":
        problems.append("mask_level=relation moves the target term of a target-conditioned gate: "
                        "set mask_condition=target")
    return problems


def _legacy_train(values: dict[str, Any]) -> dict[str, Any]:
    """Configs written before `precision` said `amp: true`, which meant bf16 autocast on CUDA and fp32
    elsewhere; the committed CPU runs with device auto all ran on a CPU (their metrics.json say so)."""
    if "amp" not in values:
        return values
    values = dict(values)
    amp = values.pop("amp")
    values.setdefault("precision", "bf16" if amp and values.get("device") == "cuda" else "fp32")
    return values


TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def resolve_field(key: str) -> tuple[str, str]:
    """`head_lr`, `head-lr` or `train.head_lr` -> ("train", "head_lr"); unknown keys are refused
    with the closest field names."""
    name = key.split(".", 1)[-1].replace("-", "_")
    if name not in FIELDS or ("." in key and key.split(".", 1)[0] != FIELDS[name][0]):
        close = difflib.get_close_matches(name, list(FIELDS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"{key!r} is not a config field{hint}; the fields are the flags of `train --help`")
    return FIELDS[name][0], name


def field_kind(name: str) -> str:
    """The type a field is declared with, without `| None`: bool, int, float or str."""
    return str(FIELDS[name][1].type).replace("| None", "").replace("None |", "").strip()


def parse_value(name: str, text: str) -> Any:
    """A value of field `name` from its text, typed as its declaration says (flags, `--set`, search spaces)."""
    kind = field_kind(name)
    raw = text.strip()
    if is_optional(name) and raw.lower() in ("none", "null", ""):
        return None
    try:
        if kind == "bool":
            if raw.lower() in TRUE:
                return True
            if raw.lower() in FALSE:
                return False
            raise ValueError
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: not a {kind}") from None
    return raw


def apply_method(model: ModelConfig, method: str) -> ModelConfig:
    """Set the ablation switches of a named method (Table 2)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    return dataclasses.replace(model, method=method, **METHODS[method])


def variant_flags(name: str, use_cms: bool) -> dict[str, dict[str, Any]]:
    """The flags a named variant (variants.VARIANTS) sets, per config section, on a method with or without
    CMS: without it, all but those of the upper level (UPPER_LEVEL_FIELDS), so `--method wo_cms --variant
    target_aware` is the same variant without CMS, the pair that says what the upper level adds."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {sorted(VARIANTS)}")
    parts = VARIANTS[name]
    return {"model": dict(parts.get("model", {})),
            "train": {k: v for k, v in parts.get("train", {}).items() if use_cms or k not in UPPER_LEVEL_FIELDS}}


def build_config(base: RunConfig | None = None, method: str | None = None, variant: str | None = None,
                 overrides: Mapping[str, Any] | None = None, validate: bool = True) -> RunConfig:
    """The one way a RunConfig is made from parts, in one order: a copy of `base` (default: the defaults),
    then `method`'s preset (METHODS), then `variant`'s flags (variants.VARIANTS, on the method now chosen),
    then `overrides` (field -> value; `head_lr`, `head-lr` or `train.head_lr`), which win over both.
    The result is validated (every problem in one error) unless validate=False (the caller names the run
    first, then validates)."""
    cfg = RunConfig(**{name: dataclasses.replace(getattr(base or RunConfig(), name)) for name in SECTIONS})
    if method:
        cfg.model = apply_method(cfg.model, method)
    if variant:
        for section, values in variant_flags(variant, cfg.model.use_cms).items():
            setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **values))
    updates: dict[str, dict[str, Any]] = {}
    for key, value in (overrides or {}).items():
        section, name = resolve_field(key)
        if name == "method":
            raise ValueError(f"{key}: a method is its preset of switches; pass it as build_config's method")
        updates.setdefault(section, {})[name] = value
    for section, values in updates.items():
        setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **values))
    return cfg.validate() if validate else cfg


def smoke_config(data_dir: str | Path, method: str = "cmcs", **overrides) -> RunConfig:
    """The CPU smoke run: Twitter2015 with 128 train rows, 64 dev/test rows, 2 epochs, H=2, fp32, with
    `overrides` (any config fields) on top. The tests train it once per session; bench/bench_smoke.py times
    it through the CLI."""
    smoke = dict(dataset="twitter2015", data_dir=str(data_dir), max_train_samples=128, max_eval_samples=64,
                 dev_subset_size=32, epochs=2, batch_size=16, H=2,
                 device="cpu", precision="fp32")  # the same numbers on every CPU
    return build_config(None, method, None, {**smoke, **overrides})
