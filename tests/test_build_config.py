"""The one builder (config.build_config), the fields' declarations and what is derived from them, and the
one validation that reports every problem at once."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmcs_core import config
from cmcs_core.config import (CHOICES, EXPERIMENTAL, FIELDS, RANGES, SECTIONS, UPPER_LEVEL_FIELDS, RunConfig,
                              build_config, parse_value)
from cmcs_core.variants import VARIANTS

RESULTS = Path(__file__).resolve().parent.parent / "results"


# -- one builder, one order ---------------------------------------------------------------------------------
def test_build_config_applies_method_then_variant_then_overrides():
    base = build_config(None, "text_only", None, {"hidden_dim": 77, "pooling": "cls", "epochs": 3})
    cfg = build_config(base, "cmcs", "target_aware", {"pooling": "mean", "train.counterfactual_share": 0.25})
    # the method's preset replaced the base's switches and kept its other fields
    assert (cfg.model.method, cfg.model.use_visual, cfg.model.use_cms, cfg.model.mask_mode) == ("cmcs", True, True,
                                                                                                "learned")
    assert (cfg.model.hidden_dim, cfg.train.epochs) == (77, 3)
    # the variant's flags came after the method, the overrides after the variant (and win over it)
    assert cfg.model.mask_condition == "target" and cfg.train.upper_objective == "counterfactual"
    assert cfg.model.pooling == "mean" and cfg.train.counterfactual_share == 0.25
    assert base.model.method == "text_only" and base.model.pooling == "cls"  # the base is not changed


def test_the_variant_sees_the_method_chosen_before_it():
    """wo_cms is chosen before the variant, so the variant leaves out its upper-level flags."""
    cfg = build_config(None, "wo_cms", "target_aware")
    assert cfg.train.upper_objective == "dev" and cfg.train.neumann_eta_rule == "fixed"
    assert cfg.train.counterfactual_share == VARIANTS["target_aware"]["train"]["counterfactual_share"]
    with pytest.raises(ValueError, match="has no upper level"):  # an explicit flag is not left out: refused
        build_config(None, "wo_cms", "target_aware", {"upper_objective": "counterfactual"})


def test_override_keys_are_field_names_in_any_spelling_and_unknown_ones_are_refused():
    cfg = build_config(overrides={"head_lr": 1e-4, "finetune-layers": 2, "data.dataset": "twitter2017"})
    assert (cfg.train.head_lr, cfg.encoder.finetune_layers, cfg.data.dataset) == (1e-4, 2, "twitter2017")
    with pytest.raises(ValueError, match="did you mean head_lr"):
        build_config(overrides={"head_rl": 1e-4})
    with pytest.raises(ValueError, match="pass it as build_config's method"):
        build_config(overrides={"method": "wo_cms"})


def test_the_cli_grid_playground_and_smoke_config_build_through_it(tmp_path, monkeypatch):
    import argparse

    from cmcs_core.flags import add_config_flags, config_from_args
    from cmcs_core.playground.run import run_config
    from cmcs_core.sweep.spec import plan_grid

    calls = []
    real = config.build_config

    def spy(*args, **kwargs):
        calls.append(args[1:3])
        return real(*args, **kwargs)

    for module in ("cmcs_core.flags", "cmcs_core.sweep.spec", "cmcs_core.playground.run", "cmcs_core.config"):
        monkeypatch.setattr(f"{module}.build_config", spy)
    parser = argparse.ArgumentParser()
    parser.add_argument("--config"), parser.add_argument("--method"), parser.add_argument("--variant")
    add_config_flags(parser)
    config_from_args(parser.parse_args(["--method", "wo_cms", "--variant", "target_aware"]))
    plan_grid(RunConfig(), ["twitter2015"], ["cmcs"], [1], {}, name_of=lambda cfg: "run")
    run_config(tmp_path, "text_only", 0, 1)
    config.smoke_config(tmp_path, "wo_mfs")
    assert calls == [("wo_cms", "target_aware"), ("cmcs", None), ("text_only", None), ("wo_mfs", None)]


# -- validate: one source of truth, every problem at once -----------------------------------------------------
def test_every_problem_is_reported_at_once():
    cfg = build_config(None, "wo_cms", None, {"epochs": 0, "fusion": "max", "pooling": "max", "use_cms": True,
                                              "mask_lr": 0.5, "mask_condition": "target"}, validate=False)
    with pytest.raises(ValueError) as err:
        cfg.validate()
    message = str(err.value)
    assert message.startswith("invalid config: ") and message.count("invalid config") == 1
    for problem in ("epochs=0: must be a positive integer", "fusion='max': choose from", "pooling='max'",
                    "use_cms=True contradicts method 'wo_cms'", "mask_lr=0.5: it is the learning rate",
                    "mask_condition=target gives one gate per token"):
        assert problem in message


def test_a_config_is_checked_once(monkeypatch):
    calls = []
    real = config.config_problems
    monkeypatch.setattr(config, "config_problems", lambda cfg: calls.append(1) or real(cfg))
    cfg = build_config(None, "wo_visual", None, {"seed": 123457})  # a config no other test builds
    cfg.validate()
    RunConfig.from_dict(cfg.to_dict()).validate()
    assert len(calls) == 1
    cfg.train.seed = 123458  # changed: checked anew
    cfg.validate()
    assert len(calls) == 2


def test_pixels_with_the_caption_in_the_text_are_refused_by_validate():
    with pytest.raises(ValueError, match="caption_in_text=True: .*needs the caption visual source"):
        build_config(overrides={"caption_in_text": True, "visual_model": "efficientnet-lite0"})


def test_cli_refuses_a_method_with_its_switch_set_against_it(capsys):
    from cmcs_core.cli import main

    assert main(["train", "--method", "cmcs", "--no-use-cms", "--output-dir", "/nonexistent/never-written"]) == 2
    assert "use_cms=False contradicts method 'cmcs'" in capsys.readouterr().err


def test_every_committed_config_still_loads_and_stays_valid():
    """results/ keeps configs written before some fields existed (and `amp` before `precision`)."""
    paths = sorted(RESULTS.rglob("config.json"))
    assert paths
    for path in paths:
        cfg = RunConfig.load(path)
        if "amp" in json.loads(path.read_text()).get("train", {}):
            assert cfg.train.precision in ("fp32", "bf16")


# -- the declarations and what is derived from them ----------------------------------------------------------
# What config.py, report/regime.py and variants.py stated by hand before the fields carried their metadata.
OLD_CHOICES = {
    "augment_polarity": ("opposite", "random"), "augment_position": ("end", "either"), "mask_mode": ("learned", "fixed", "none"),
    "fusion": ("auto", "similarity", "constant"), "mask_granularity": ("element", "token"),
    "hessian_params": ("heads", "heads+encoder"), "select_on": ("dev_acc", "dev_f1", "dev_loss"),
    "mask_condition": ("none", "target"), "upper_objective": ("dev", "counterfactual"),
    "mask_level": ("lower", "upper", "relation"), "neumann_eta_rule": ("fixed", "curvature"),
    "precision": ("auto", "fp32", "bf16"),
}
OLD_RANGES = {
    "max_train_samples": "a positive integer", "max_eval_samples": "a positive integer",
    "dev_subset_size": "a positive integer", "augment_clauses": "0 or more", "max_length": "a positive integer",
    "caption_max_length": "a positive integer", "finetune_layers": "-1 (all), 0 (frozen) or a number of top layers",
    "hidden_dim": "a positive integer", "dropout": "in [0, 1)", "fusion_constant": "in [0, 1]",
    "mask_sparsity": "0 or more", "epochs": "a positive integer", "batch_size": "a positive integer",
    "lr": "positive", "head_lr": "positive", "weight_decay": "0 or more", "warmup_ratio": "in [0, 1]",
    "grad_clip": "positive", "seed": "in 0..2**32-1 (numpy's seed range)", "H": "a positive integer",
    "K": "0 or more", "neumann_eta": "positive", "phi_lr": "positive", "hypergrad_clip": "positive",
    "num_threads": "a positive integer", "invariance_weight": "0 or more", "mask_lr": "positive",
    "counterfactual_share": "in [0, 1]",
}
OLD_OPT_INS = [  # field, default, tag, phrase, label, paired (None: a function of the value and the config)
    ("model.pooling", "mean", "+pool-{value}", "{value} pooling", None, True),
    ("encoder.caption_in_text", False, "+caption-in-text", "caption in the text input", None, True),
    ("encoder.mark_target", False, "+marked", "target marked in the tweet", None, True),
    ("data.augment_clauses", 0.0, None, None, None, False),
    ("data.augment_position", "end", "+either-end", "the augmentation's clause at either end", "clause at either end",
     False),
    ("model.mask_granularity", "element", "+gates-{value}", "one gate per {value}", None, True),
    ("model.mask_condition", "none", "+gates-on-{value}", "gates conditioned on the {value}", None, True),
    ("train.counterfactual_share", 0.0, "+cf-branch-{value:g}", "counterfactual branch on {value:.0%} of rows",
     "counterfactual branch", True),
    ("train.upper_objective", "dev", "+dev-{value}", "{value} D_dev", None, True),
    ("train.invariance_weight", 1.0, "+inv-{value:g}", "invariance weight {value:g}", None, True),
    ("train.mask_level", "lower", "+mask-{value}", "mask learned at the {value} level", None, True),
    ("train.mask_lr", 1e-3, "+mask-lr-{value:g}", "mask lr {value:g}", None, True),
    ("train.neumann_eta_rule", "fixed", "+eta-{value}", "Neumann step from the {value}", None, True),
]


def test_choices_and_ranges_derived_from_the_fields_are_the_tables_they_replaced():
    assert CHOICES == OLD_CHOICES
    assert {name: meaning for name, (meaning, _ok) in RANGES.items()} == OLD_RANGES
    ok = {name: test for name, (_meaning, test) in RANGES.items()}
    assert ok["dropout"](0) and not ok["dropout"](1) and ok["fusion_constant"](1) and not ok["K"](-1)
    assert ok["finetune_layers"](-1) and not ok["finetune_layers"](-2) and not ok["seed"](2**32)


def test_opt_ins_derived_from_the_fields_are_the_registry_they_replaced():
    from cmcs_core.report.regime import OPT_IN_ORDER, OPT_INS

    got = [(o.field, o.default, *(None if callable(t) else t for t in (o.tag, o.phrase)),
            None if callable(o.label) else o.label, o.paired) for o in OPT_INS]
    assert got == OLD_OPT_INS
    assert set(OPT_IN_ORDER) == {name for name, (_, f) in FIELDS.items() if "tag" in f.metadata}
    aug = build_config(overrides={"augment_clauses": 1.0, "augment_polarity": "random"})
    change = next(o for o in OPT_INS if o.field == "data.augment_clauses").change(aug)
    assert (change.tag, change.phrase, change.label) == ("+aug-random", "counterfactual augmentation 1 (random "
                                                         "sentiment)", "counterfactual augmentation (random sentiment)")


def test_upper_level_fields_and_experimental_opt_ins_are_declared_once():
    assert set(UPPER_LEVEL_FIELDS) == {"upper_objective", "mask_level", "mask_lr", "neumann_eta_rule"}
    assert set(EXPERIMENTAL) == {"caption_in_text", "mask_sparsity"}  # mark_target earned its place (robustness.md)


def test_sections_and_the_text_parser_are_one(capsys):
    from cmcs_core import flags
    from cmcs_core.cli import main
    from cmcs_core.sweep import spec

    assert flags.SECTIONS is SECTIONS and spec.parse_value is parse_value and not hasattr(spec, "SECTIONS")
    assert parse_value("max_train_samples", "none") is None and parse_value("use_faces", "yes") is True
    assert parse_value("head_lr", "1e-4") == 1e-4 and parse_value("pooling", " mean ") == "mean"
    with pytest.raises(ValueError, match="seed='1.5': not a int"):
        parse_value("seed", "1.5")
    with pytest.raises(SystemExit):  # argparse says it, with the field's kind
        main(["train", "--seed", "1.5", "--output-dir", "/nonexistent/never-written"])
    assert "invalid int value: '1.5'" in capsys.readouterr().err


def test_gate_note_says_the_fields_own_phrase():
    pytest.importorskip("streamlit")
    from fake_runs import fake_run

    from app.widgets import gate_note

    note = gate_note(fake_run("cmcs", 1, 0.5, mask_granularity="token", mask_condition="target"))
    assert "mask_condition=target: gates conditioned on the target" in note
    assert "mask_granularity=token: one gate per token" in gate_note(fake_run("cmcs", 1, 0.5, mask_granularity="token"))
    assert gate_note(fake_run("text_only", 1, 0.5)) == ""


def test_every_variant_names_fields_of_its_sections_and_builds_on_cmcs_and_without_cms():
    for name, parts in VARIANTS.items():
        for section, values in parts.items():
            assert all(FIELDS[key][0] == section for key in values), name
        assert build_config(None, "cmcs", name).model.method == "cmcs"
        assert build_config(None, "wo_cms", name).train.upper_objective == "dev"
