"""Run configuration: one dataclass tree, saved as config.json in every run folder.

A run is reproduced by `python -m cmcs_core train --config RUN/config.json`, so every knob
that changes a result lives here and nowhere else.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cmcs_core.io import atomic_write_text

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


@dataclass
class DataConfig:
    """Where samples and the visual modality come from."""

    dataset: str = "twitter2015"  # twitter2015 | twitter2017 | a dataset folder (train/dev/test.tsv)
    data_dir: str | None = None  # root holding twitter2015/, captions/ ...; env CMCS_DATA_DIR
    image_dir: str | None = None  # TomBERT image folder -> real pixels; None -> captions
    use_faces: bool = False  # append FITE face descriptions to captions
    drop_missing_visual: bool = False  # drop rows whose image has no caption/file instead of failing
    max_train_samples: int | None = None  # quick runs, as in the transformers examples
    # target-focused training: this share of train rows (1.0 = each once) gets a copy with a clause of
    # another sentiment about something else appended, label kept (data/counterfactual.py); 0 = off
    augment_clauses: float = 0.0
    augment_seed: int = 0  # which copies/phrases: fixed apart from the run's seed, so a grid shares one set
    # opposite: the clause's sentiment differs from the label (ARTS' AddDiff) -- which makes "negative clause"
    # a sign of a positive label; random: either sentiment, independent of the label
    augment_polarity: str = "opposite"
    max_eval_samples: int | None = None
    dev_subset_size: int = 256  # |D_dev| for the upper level, drawn from the validation split
    read_test: bool = True  # False: the test split is never opened (hyperparameter searches score on dev only)


@dataclass
class EncoderConfig:
    """Which encoders produce E^t and E^v, and how much of the text encoder trains."""

    text_model: str = "minilm"  # minilm | mpnet | local folder | hub id
    visual_model: str = "caption"  # caption | efficientnet-lite0 | clip:MODEL:CHECKPOINT
    caption_model: str | None = None  # text encoder for captions; None -> text_model
    max_length: int = 64
    caption_max_length: int = 40
    finetune_layers: int = 0  # 0 frozen, N top layers over cached states, -1 all layers
    # Beyond the paper, opt-in: the image's caption also goes into the text encoder's input,
    # `[CLS] tweet [SEP] target [SEP] caption [SEP]`, as CapTrBERT reads it (needs captions)
    caption_in_text: bool = False
    # Opt-in: the target's mention in the tweet is put between markers, `... [ Obama ] and Romney ...`
    mark_target: bool = False


@dataclass
class ModelConfig:
    """MFS / CMS architecture and the ablation switches."""

    method: str = "cmcs"
    use_visual: bool = True
    use_cms: bool = True
    mask_mode: str = "learned"  # learned | fixed (0.5, w/o MFS) | none (identity, baseline)
    hidden_dim: int = 256  # MLP width inside MFS
    dropout: float = 0.1
    # mean over real tokens | cls | target (opt-in: mean over the target segment's tokens) | mention (opt-in:
    # the target's words inside the tweet); "+" concatenates readouts, e.g. "mean+target" (TD-BERT-style)
    pooling: str = "mean"
    fusion: str = "auto"  # auto | similarity | constant
    fusion_constant: float = 0.5
    alpha_init: float = 0.5413  # softplus(0.5413) = 1: CMCS starts as joint training
    # Opt-in extensions beyond the paper (docs/method.md, "Beyond the paper"); the defaults are the paper's MFS.
    mask_granularity: str = "element"  # element (paper: m x d gates) | token (one gate per token/cell, broadcast over d)
    mask_sparsity: float = 0.0  # lambda of a prior lambda * mean(M) in the lower objective; 0 = off (paper)
    # Opt-in: "target" adds to each text token's gate a term of its relation to the target (zero at
    # init); the text branch then averages tokens weighted by their gates. Needs token granularity.
    mask_condition: str = "none"  # none (paper) | target

    def validate(self) -> "ModelConfig":
        """The model's own refusals (RunConfig.validate adds those across sections)."""
        problems = field_problems(self)
        parts = self.pooling.split("+")
        if any(p not in POOLINGS for p in parts) or len(set(parts)) != len(parts):
            problems.append(f"pooling={self.pooling!r}: pooling must be one of {', '.join(POOLINGS)}, or several "
                            "joined by '+' (each once, e.g. mean+target)")
        if problems:
            raise ValueError("invalid config: " + "; ".join(problems))
        if self.mask_condition == "target":
            if self.mask_mode != "learned":
                raise ValueError(f"mask_condition=target conditions a learned mask on the target, but method "
                                 f"{self.method!r} has mask mode {self.mask_mode!r} (no learned mask to condition)")
            if self.mask_granularity != "token":
                raise ValueError("mask_condition=target gives one gate per token (its relation to the target): "
                                 "set mask_granularity=token")
        return self


@dataclass
class TrainConfig:
    """Optimisation of the lower (theta) and upper (phi) levels."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-5  # text encoder layers (paper)
    head_lr: float = 1e-3  # MFS heads and classifiers
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 42
    # bi-level (Algorithm 1); unknown in the paper, JTDS values where it gives them
    H: int = 20  # lower steps per upper step
    K: int = 3  # Neumann terms
    neumann_eta: float = 0.1  # Neumann step eta
    # Opt-in "curvature": eta = 0.8 / lambda_max of each upper step's Hessian (5 HVPs), so the series converges
    neumann_eta_rule: str = "fixed"  # fixed (neumann_eta) | curvature
    phi_lr: float = 1e-2  # eta2
    hypergrad_clip: float = 1.0
    hessian_params: str = "heads"  # heads | heads+encoder
    device: str = "auto"  # auto | cpu | cuda
    # auto: bf16 autocast where the device computes bf16 natively and a probe finds it faster (cmcs_core/precision.py);
    # a run's config.json holds what auto resolved to, so `train --config` repeats the same arithmetic
    precision: str = "auto"  # auto | fp32 | bf16
    eval_test_each_epoch: bool = True
    select_on: str = "dev_acc"  # dev_acc | dev_f1 | dev_loss: which dev figure picks the kept epoch
    # Opt-in "counterfactual": D_dev also holds each row's copy with a clause about something else
    # appended (label kept); L_dev adds that copy's L_t plus invariance_weight * JS(p_t(row) || p_t(copy)).
    upper_objective: str = "dev"  # dev (paper: L_t + L_v on D_dev) | counterfactual
    invariance_weight: float = 1.0  # weight of the JS invariance terms (counterfactual D_dev and counterfactual branch)
    # "upper": the text mask network is a hyperparameter: it leaves theta and moves only by the upper level's
    # hypergradient (direct + implicit term), with Adam at mask_lr. "relation": only the target term of a
    # target-conditioned gate does (its content part learns from the training rows). "lower" is the paper.
    mask_level: str = "lower"  # lower | upper | relation
    mask_lr: float = 1e-3
    # Opt-in counterfactual branch: this share of each batch also passes with a clause about something
    # else appended (label kept); L_c = CE(copy) + invariance_weight JS(row || copy) is a third scheduled loss,
    # phi_c = softplus(gamma * eff_c), eff_c = exp(L_t(copy) - L_t(row)) (1 without CMS). 0 = off.
    counterfactual_share: float = 0.0
    num_threads: int | None = None


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

        return cls(
            data=build(DataConfig, d.get("data", {})),
            encoder=build(EncoderConfig, d.get("encoder", {})),
            model=build(ModelConfig, d.get("model", {})),
            train=build(TrainConfig, d.get("train", {})),
        ).validate()

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def validate(self) -> "RunConfig":
        """Refuse values no run can train with and combinations that cannot mean anything, naming the
        field and why, before any work starts (the CLI, the trainer, a grid for each of its runs, and
        every reader of a config.json call this)."""
        problems = [p for section in (self.data, self.encoder, self.train) for p in field_problems(section)]
        if self.model.method not in METHODS:
            problems.append(f"method={self.model.method!r}: choose from {', '.join(sorted(METHODS))}")
        if problems:
            raise ValueError("invalid config: " + "; ".join(problems))
        m, t = self.model.validate(), self.train
        no_upper = f"method {m.method!r} has no upper level (no CMS, phi fixed to 1)"
        if t.upper_objective != "dev" and not m.use_cms:
            raise ValueError(f"upper_objective={t.upper_objective}: {no_upper}")
        if t.mask_level != "lower":
            if not m.use_cms:
                raise ValueError(f"mask_level={t.mask_level}: {no_upper}, so the mask could never move")
            if m.mask_mode != "learned":
                raise ValueError(f"mask_level={t.mask_level}: method {m.method!r} has no learned mask")
            if t.mask_level == "relation" and m.mask_condition != "target":
                raise ValueError("mask_level=relation moves the target term of a target-conditioned gate: "
                                 "set mask_condition=target")
        return self


def _legacy_train(values: dict[str, Any]) -> dict[str, Any]:
    """Configs written before `precision` said `amp: true`, which meant bf16 autocast on CUDA and fp32
    elsewhere; the committed CPU runs with device auto all ran on a CPU (their metrics.json say so)."""
    if "amp" not in values:
        return values
    values = dict(values)
    amp = values.pop("amp")
    values.setdefault("precision", "bf16" if amp and values.get("device") == "cuda" else "fp32")
    return values


# What validate() accepts. Fields named in neither take any value of their type (paths, model names:
# the run itself says when they are wrong).
CHOICES: dict[str, tuple[str, ...]] = {
    "augment_polarity": ("opposite", "random"),
    "mask_mode": ("learned", "fixed", "none"),
    "fusion": ("auto", "similarity", "constant"),
    "mask_granularity": ("element", "token"),
    "hessian_params": ("heads", "heads+encoder"),
    "select_on": ("dev_acc", "dev_f1", "dev_loss"),
    "mask_condition": ("none", "target"),
    "upper_objective": ("dev", "counterfactual"),
    "mask_level": ("lower", "upper", "relation"),
    "neumann_eta_rule": ("fixed", "curvature"),
    "precision": ("auto", "fp32", "bf16"),
}
RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "max_train_samples": ("a positive integer", lambda v: v >= 1),
    "max_eval_samples": ("a positive integer", lambda v: v >= 1),
    "dev_subset_size": ("a positive integer", lambda v: v >= 1),
    "augment_clauses": ("0 or more", lambda v: v >= 0),
    "max_length": ("a positive integer", lambda v: v >= 1),
    "caption_max_length": ("a positive integer", lambda v: v >= 1),
    "finetune_layers": ("-1 (all), 0 (frozen) or a number of top layers", lambda v: v >= -1),
    "hidden_dim": ("a positive integer", lambda v: v >= 1),
    "dropout": ("in [0, 1)", lambda v: 0 <= v < 1),
    "fusion_constant": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "mask_sparsity": ("0 or more", lambda v: v >= 0),
    "epochs": ("a positive integer", lambda v: v >= 1),
    "batch_size": ("a positive integer", lambda v: v >= 1),
    "lr": ("positive", lambda v: v > 0),
    "head_lr": ("positive", lambda v: v > 0),
    "weight_decay": ("0 or more", lambda v: v >= 0),
    "warmup_ratio": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "grad_clip": ("positive", lambda v: v > 0),
    "seed": ("in 0..2**32-1 (numpy's seed range)", lambda v: 0 <= v < 2**32),
    "H": ("a positive integer", lambda v: v >= 1),
    "K": ("0 or more", lambda v: v >= 0),
    "neumann_eta": ("positive", lambda v: v > 0),
    "phi_lr": ("positive", lambda v: v > 0),
    "hypergrad_clip": ("positive", lambda v: v > 0),
    "num_threads": ("a positive integer", lambda v: v >= 1),
    "invariance_weight": ("0 or more", lambda v: v >= 0),
    "mask_lr": ("positive", lambda v: v > 0),
    "counterfactual_share": ("in [0, 1]", lambda v: 0 <= v <= 1),
}
OPTIONAL = {"max_train_samples", "max_eval_samples", "num_threads"}


def field_problems(section) -> list[str]:
    """Each field of one config section whose value CHOICES or RANGES refuse, said with the field's name."""
    problems = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if value is None and f.name in OPTIONAL:
            continue
        if f.name in CHOICES and value not in CHOICES[f.name]:
            problems.append(f"{f.name}={value!r}: choose from {', '.join(CHOICES[f.name])}")
        if f.name in RANGES:
            meaning, ok = RANGES[f.name]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok(value):
                problems.append(f"{f.name}={value!r}: must be {meaning}")
    return problems


def apply_method(model: ModelConfig, method: str) -> ModelConfig:
    """Set the ablation switches of a named method (Table 2)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    return dataclasses.replace(model, method=method, **METHODS[method])


def smoke_config(data_dir: str | Path, method: str = "cmcs", **train_overrides) -> RunConfig:
    """The CPU smoke run: Twitter2015 with 128 train rows, 64 dev/test rows, 2 epochs, H=2, fp32. The
    tests train it once per session; bench/bench_smoke.py times it through the CLI."""
    cfg = RunConfig()
    cfg.data = dataclasses.replace(cfg.data, dataset="twitter2015", data_dir=str(data_dir),
                                   max_train_samples=128, max_eval_samples=64, dev_subset_size=32)
    cfg.model = apply_method(cfg.model, method)
    train = dict(epochs=2, batch_size=16, H=2, device="cpu", precision="fp32")  # the same numbers on every CPU
    cfg.train = dataclasses.replace(cfg.train, **{**train, **train_overrides})
    return cfg
