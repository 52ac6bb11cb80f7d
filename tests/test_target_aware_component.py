"""The target-aware component (model/target_aware.py) on its own: it owns its data (clause copies
from its own seed), its parameter (gamma) and its losses, and the trainer reads each from it
explicitly. Hand computations on a tiny batch, the optimisers' parameter groups, the copies'
reproducibility, and the mask level's split of the heads."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from cmcs_core.checkpoint import trainable_state
from cmcs_core.config import ModelConfig, apply_method, build_config
from cmcs_core.data.counterfactual import counterfactual_copies
from cmcs_core.model.cmcs import CMCSModel, MaskLevel, TextTower
from cmcs_core.model.target_aware import GAMMA_KEY, TargetAware
from cmcs_core.pipeline import torch_threads


pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(text_encoder, tweets: list[str], targets: list[str], labels: list[int]) -> dict[str, torch.Tensor]:
    enc = text_encoder.tokenize(tweets, targets, max_length=32)
    with torch.no_grad():
        hidden = text_encoder.hidden_at(enc, text_encoder.num_layers)
    return {**enc, "text_hidden": hidden, "label": torch.tensor(labels), "image_label": torch.zeros(len(tweets), 3),
            "index": torch.arange(len(tweets))}


class _Copies:
    """Stands in for the clause copies' tensors: row i is `rows`' row i."""

    def __init__(self, rows: dict[str, torch.Tensor]) -> None:
        self.rows = rows
        self.asked: list[list[int]] = []

    def batch(self, idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        self.asked.append(idx.tolist())
        return {k: v[idx] for k, v in self.rows.items()}


def _js(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """Mean Jensen-Shannon divergence, written out row by row."""
    total = 0.0
    for a, b in zip(p_logits.double().softmax(-1), q_logits.double().softmax(-1)):
        m = 0.5 * (a + b)
        total += 0.5 * float((a * (a / m).log()).sum()) + 0.5 * float((b * (b / m).log()).sum())
    return total / len(p_logits)


def test_the_copy_branch_is_a_scheduled_term_computed_by_hand(text_encoder):
    """lower_terms: the first ceil(share * B) rows beside their copies; L_c = CE(copy) + w JS; the
    model schedules it by softplus(gamma * exp(CE(copy) - CE(row))), beside phi_t L_t."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(apply_method(ModelConfig(), "cmcs"), use_visual=False)
    model = CMCSModel(cfg, TextTower(text_encoder, 0), None).eval()
    batch = _batch(text_encoder, ["pat was lovely tonight", "sam was late again", "the team won", "rain all day"],
                   ["pat", "sam", "the team", "rain"], [2, 0, 2, 1])
    copies = _batch(text_encoder, ["pat was lovely tonight but the bus was awful", "sam was late again, what a view",
                                   "the team won", "rain all day"], ["pat", "sam", "the team", "rain"], [2, 0, 2, 1])
    ta = TargetAware(copy_share=0.3, invariance_weight=0.7)
    ta.train_copies = _Copies(copies)
    ta.attach(model)
    with torch.no_grad():
        ta.gamma.fill_(0.9)
        out = model(batch)
        (term,) = ta.lower_terms(batch, out)
        total, stats = model.scheduled_loss(model.branch_losses(out, batch), terms=[term])
        copy_out = model({k: v[:2] for k, v in copies.items()})
    assert ta.train_copies.asked == [[0, 1]]  # k = ceil(0.3 * 4) = 2 rows, by their index
    row_ce = float(F.cross_entropy(out["text_logits"][:2], batch["label"][:2]))
    copy_ce = float(F.cross_entropy(copy_out["text_logits"], batch["label"][:2]))
    js = _js(out["text_logits"][:2], copy_out["text_logits"])
    assert js > 0
    assert float(term.loss) == pytest.approx(copy_ce + 0.7 * js, rel=1e-5)
    assert (float(term.raw), float(term.bar)) == pytest.approx((copy_ce, row_ce), rel=1e-6)
    assert term.scheduler is ta.gamma
    phi_c = math.log1p(math.exp(0.9 * math.exp(copy_ce - row_ce)))
    assert stats["phi_c"] == pytest.approx(phi_c, rel=1e-5) and stats["L_c"] == pytest.approx(float(term.loss))
    assert float(total) == pytest.approx(stats["phi_t"] * stats["L_t"] + phi_c * float(term.loss), rel=1e-5)


def test_with_its_opt_ins_off_the_component_adds_nothing(text_encoder):
    cfg = dataclasses.replace(apply_method(ModelConfig(), "cmcs"), use_visual=False)
    model = CMCSModel(cfg, TextTower(text_encoder, 0), None).eval()
    ta = TargetAware()
    ta.build_copies(None, None, encode=lambda split: pytest.fail("no copies to build"))
    ta.attach(model)
    batch = _batch(text_encoder, ["pat was lovely tonight"], ["pat"], [2])
    with torch.no_grad():
        out = model(batch)
        losses = model.branch_losses(out, batch)
        dev, stats = ta.dev_objective(batch, out, losses)
    assert ta.lower_terms(batch, out) == [] and stats == {} and float(dev) == float(model.dev_loss(losses))
    assert ta.gamma is None and ta.named_scheduler_parameters() == [] and ta.log_row() == {}
    assert GAMMA_KEY not in dict(model.named_parameters())


@pytest.fixture(scope="module")
def target_aware_trainer(tmp_path_factory, cmcs_cache, tiny_config_factory):
    """CMCS with the target_aware variant, set up (data, copies, model, optimisers) but not trained."""
    from cmcs_core.train.trainer import Trainer

    cfg = build_config(tiny_config_factory("cmcs", epochs=1), None, "target_aware")
    cfg.data = dataclasses.replace(cfg.data, max_train_samples=32, max_eval_samples=16, dev_subset_size=16,
                                   augment_seed=5)
    trainer = Trainer(cfg, tmp_path_factory.mktemp("target_aware") / "run", progress=False)
    with torch_threads(1):
        trainer.setup()
    return trainer


def test_the_optimisers_hold_exactly_the_components_parameters(target_aware_trainer):
    """phi's Adam holds the model's alpha, beta and then the component's gamma; theta's AdamW holds the
    heads the mask level leaves it and never gamma; gamma is saved as the model's 'gamma'."""
    trainer = target_aware_trainer
    model, ta = trainer.model, trainer.target_aware
    phi = [p for g in trainer.phi_opt.param_groups for p in g["params"]]
    own = [p for _, p in ta.named_scheduler_parameters()]
    assert own == [ta.gamma] and phi == model.scheduler_parameters() + own
    assert trainer.vars.phi_names == ["alpha", "beta", GAMMA_KEY]
    theta = [p for g in trainer.opt.param_groups for p in g["params"]]
    assert theta == trainer.vars.theta == model.head_parameters(MaskLevel.LOWER) + model.encoder_parameters()
    assert not any(p is ta.gamma for p in theta)
    assert dict(model.named_parameters())[GAMMA_KEY] is ta.gamma
    assert torch.equal(trainable_state(model)[GAMMA_KEY], ta.gamma.detach())
    assert "gamma" in trainer.target_aware.log_row()


def test_the_copies_are_the_rows_with_a_clause_from_their_own_seed(target_aware_trainer):
    """Row i of each copy set is the clause copy of row i, drawn from copy_seed (the data's augment_seed,
    as every run before): the same seed gives the same copies, another seed other ones."""
    trainer = target_aware_trainer
    ta = trainer.target_aware
    assert ta.copy_seed == trainer.cfg.data.augment_seed == 5
    for rows, copies in ((trainer.train_data, ta.train_copies), (trainer.dev_data, ta.dev_copies)):
        expected = counterfactual_copies(rows.split.samples, 5)
        assert copies.split.samples == expected == ta.copies_of(rows.split).samples
        assert expected != counterfactual_copies(rows.split.samples, 6)
        assert [s.label for s in copies.split.samples] == [s.label for s in rows.split.samples]
        assert torch.equal(copies.labels, rows.labels)
        assert all(c.tweet.startswith(r.tweet) for c, r in zip(copies.split.samples, rows.split.samples))


@pytest.mark.parametrize("level", list(MaskLevel))
def test_the_mask_level_splits_the_heads_between_the_levels(text_encoder, level):
    """head_parameters + upper_mask_parameters are the heads' trainable tensors, each exactly once, in
    the modules' order; strings and the enum resolve alike."""
    cfg = dataclasses.replace(apply_method(ModelConfig(), "cmcs"), use_visual=False, mask_granularity="token",
                              mask_condition="target")
    model = CMCSModel(cfg, TextTower(text_encoder, 0), None)
    heads, upper = model.head_parameters(level), model.upper_mask_parameters(level)
    every = [p for m in (model.text_mfs, model.text_head) for p in m.parameters() if p.requires_grad]
    assert sorted(map(id, heads + upper)) == sorted(map(id, every)) and len(heads + upper) == len(every)
    assert heads == [p for p in every if not any(p is u for u in upper)]
    assert heads == model.head_parameters(level.value)
    gate = {MaskLevel.LOWER: [], MaskLevel.UPPER: model.mask_parameters(),
            MaskLevel.RELATION: list(model.text_mfs.relation.parameters())}[level]
    assert upper == gate


def test_settings_follow_a_changed_config_and_the_copies_stay_with_their_seed(target_aware_trainer):
    """A caller that swaps the config over loaded data (bench/bench_overhead.py) gets the new settings
    and keeps the copies, unless the new config draws them from another seed."""
    trainer = target_aware_trainer
    old = trainer.target_aware
    plain = dataclasses.replace(trainer.cfg, train=dataclasses.replace(trainer.cfg.train, counterfactual_share=0.0,
                                                                       upper_objective="dev", invariance_weight=3.0))
    kept = TargetAware.of(plain, copies_from=old)
    assert (kept.copy_branch, kept.paired_dev, kept.copy_invariance_weight) == (False, False, 3.0)
    assert kept.train_copies is old.train_copies and kept.dev_copies is old.dev_copies
    reseeded = dataclasses.replace(plain, data=dataclasses.replace(plain.data, augment_seed=6))
    assert TargetAware.of(reseeded, copies_from=old).train_copies is None
