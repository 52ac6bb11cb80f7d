"""The copy branch and the paired dev objective (model/target_aware.py) by hand: the sign of the branch's
causal effect, and invariance_weight in both objectives and in the trainer's calls (a mutation audit
flipped or dropped each of these and no other test noticed)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from cmcs_core.config import ModelConfig, apply_method
from cmcs_core.model.cmcs import CMCSModel, ScheduledTerm, TextTower
from cmcs_core.model.target_aware import TargetAware, invariance
from cmcs_core.pipeline import torch_threads

WEIGHT = 2.5


@pytest.fixture(scope="module")
def model(text_encoder) -> CMCSModel:
    """CMCS without the visual branch."""
    cfg = apply_method(ModelConfig(), "wo_visual")
    return CMCSModel(cfg, TextTower(text_encoder, 0), None).eval()


@pytest.fixture(scope="module")
def component(model) -> TargetAware:
    """Both opt-ins on, with invariance_weight WEIGHT; attached to `model` (gamma joins it)."""
    ta = TargetAware(copy_share=0.5, paired_dev=True, invariance_weight=WEIGHT)
    ta.attach(model)
    return ta


def _logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows, their copies predicted otherwise (the invariance is far from 0), and labels."""
    rows = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.5, 0.0]])
    copies = torch.tensor([[-1.0, 0.5, 2.0], [1.0, -0.5, 0.2]])
    return rows, copies, torch.tensor([0, 1])


def test_the_branchs_effect_is_exp_of_the_copys_loss_minus_the_rows(model, component) -> None:
    """eff_c = exp(L_t(copy) - L_t(row)): above 1 when the clause about something else makes the copy
    harder, so phi_c = softplus(gamma * eff_c) weighs the branch more where the copy helps less."""
    losses = {"L_t": torch.tensor(0.5), "L_t_raw": torch.tensor(0.5)}

    def term(copy: float, row: float) -> list[ScheduledTerm]:
        return [ScheduledTerm("c", torch.tensor(1.2), raw=torch.tensor(copy), bar=torch.tensor(row),
                              scheduler=component.gamma)]

    total, stats = model.scheduled_loss(losses, terms=term(0.9, 0.4))
    assert stats["eff_c"] == pytest.approx(math.exp(0.5))
    gamma = float(component.gamma.detach())
    assert stats["phi_c"] == pytest.approx(float(F.softplus(torch.tensor(gamma * math.exp(0.5)))))
    assert float(total) == pytest.approx(stats["phi_t"] * 0.5 + stats["phi_c"] * 1.2, rel=1e-6)
    easier = model.scheduled_loss(losses, terms=term(0.4, 0.9))[1]
    assert easier["eff_c"] == pytest.approx(math.exp(-0.5)) and easier["phi_c"] < stats["phi_c"]
    assert "L_c" not in model.scheduled_loss({**losses, "L_c": torch.tensor(1.2)})[1]  # a term, not a sniffed key


def test_the_paired_dev_loss_adds_invariance_weight_times_the_invariance(model) -> None:
    rows, copies, labels = _logits()
    inv = float(invariance(rows, copies))
    assert inv > 0.1
    losses = {"L_t": F.cross_entropy(rows, labels)}
    batch = {"label": labels}

    def total(weight: float) -> float:
        ta = TargetAware(paired_dev=True, invariance_weight=weight)
        ta.attach(model)
        return float(ta.paired_dev_loss(losses, {"text_logits": rows}, {"text_logits": copies}, batch)[0])

    plain = float(losses["L_t"]) + float(F.cross_entropy(copies, labels))
    assert total(0.0) == pytest.approx(plain)
    assert total(WEIGHT) == pytest.approx(plain + WEIGHT * inv)


def test_the_copy_branch_adds_invariance_weight_times_the_invariance(component) -> None:
    rows, copies, labels = _logits()
    inv = float(invariance(rows, copies))
    out = component.copy_losses({"text_logits": rows}, {"text_logits": copies}, {"label": labels})
    assert float(out["L_c_copy"]) == pytest.approx(float(F.cross_entropy(copies, labels)))
    assert float(out["L_c_row"]) == pytest.approx(float(F.cross_entropy(rows, labels)))
    assert float(out["L_c"]) == pytest.approx(float(out["L_c_copy"]) + WEIGHT * inv)


def test_the_trainer_hands_invariance_weight_to_both_objectives(tiny_config_factory, cmcs_cache, tmp_path,
                                                                monkeypatch) -> None:
    """A short run with both opt-ins: every call of either objective gets the config's invariance_weight."""
    from cmcs_core.train.trainer import train

    seen: dict[str, list[float]] = {"branch": [], "dev": []}
    branch, dev = TargetAware.copy_losses, TargetAware.paired_dev_loss

    def spy_branch(self, out, copy_out, batch):
        seen["branch"].append(self.copy_invariance_weight)
        return branch(self, out, copy_out, batch)

    def spy_dev(self, losses, out, copy_out, batch):
        seen["dev"].append(self.dev_invariance_weight)
        return dev(self, losses, out, copy_out, batch)

    monkeypatch.setattr(TargetAware, "copy_losses", spy_branch)
    monkeypatch.setattr(TargetAware, "paired_dev_loss", spy_dev)
    cfg = tiny_config_factory("cmcs", epochs=1, counterfactual_share=0.5, upper_objective="counterfactual",
                              invariance_weight=WEIGHT)
    cfg.data = dataclasses.replace(cfg.data, max_train_samples=32, max_eval_samples=16, dev_subset_size=16)
    with torch_threads(1):
        train(cfg, tmp_path / "run", progress=False)
    assert seen["branch"] and seen["dev"]
    assert set(seen["branch"]) == {WEIGHT} and set(seen["dev"]) == {WEIGHT}
