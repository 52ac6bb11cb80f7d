"""The counterfactual branch and the counterfactual D_dev (issue 15) by hand: the sign of the branch's
causal effect, and invariance_weight in both objectives and in the trainer's calls (a mutation audit
flipped or dropped each of these and no other test noticed)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from cmcs_core.config import ModelConfig, apply_method
from cmcs_core.model.cmcs import CMCSModel, TextTower
from cmcs_core.pipeline import torch_threads

WEIGHT = 2.5


@pytest.fixture(scope="module")
def model(text_encoder) -> CMCSModel:
    """CMCS without the visual branch, with the counterfactual branch's gamma."""
    cfg = apply_method(ModelConfig(), "wo_visual")
    return CMCSModel(cfg, TextTower(text_encoder, 0), None, counterfactual=True).eval()


def _logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows, their copies predicted otherwise (the invariance is far from 0), and labels."""
    rows = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.5, 0.0]])
    copies = torch.tensor([[-1.0, 0.5, 2.0], [1.0, -0.5, 0.2]])
    return rows, copies, torch.tensor([0, 1])


def test_the_branchs_effect_is_exp_of_the_copys_loss_minus_the_rows(model) -> None:
    """eff_c = exp(L_t(copy) - L_t(row)): above 1 when the clause about something else makes the copy
    harder, so phi_c = softplus(gamma * eff_c) weighs the branch more where the copy helps less."""
    losses = {"L_t": torch.tensor(0.5), "L_t_raw": torch.tensor(0.5), "L_c": torch.tensor(1.2),
              "L_c_copy": torch.tensor(0.9), "L_c_row": torch.tensor(0.4)}
    total, stats = model.scheduled_loss(losses)
    assert stats["eff_c"] == pytest.approx(math.exp(0.5))
    gamma = float(model.gamma.detach())
    assert stats["phi_c"] == pytest.approx(float(F.softplus(torch.tensor(gamma * math.exp(0.5)))))
    assert float(total) == pytest.approx(stats["phi_t"] * 0.5 + stats["phi_c"] * 1.2, rel=1e-6)
    easier = model.scheduled_loss({**losses, "L_c_copy": torch.tensor(0.4), "L_c_row": torch.tensor(0.9)})[1]
    assert easier["eff_c"] == pytest.approx(math.exp(-0.5)) and easier["phi_c"] < stats["phi_c"]


def test_the_counterfactual_dev_loss_adds_invariance_weight_times_the_invariance(model) -> None:
    rows, copies, labels = _logits()
    inv = float(CMCSModel.invariance(rows, copies))
    assert inv > 0.1
    losses = {"L_t": F.cross_entropy(rows, labels)}
    batch = {"label": labels}

    def total(weight: float) -> float:
        return float(model.counterfactual_dev_loss(losses, {"text_logits": rows}, {"text_logits": copies}, batch,
                                                   weight)[0])

    plain = float(losses["L_t"]) + float(F.cross_entropy(copies, labels))
    assert total(0.0) == pytest.approx(plain)
    assert total(WEIGHT) == pytest.approx(plain + WEIGHT * inv)


def test_the_counterfactual_branch_adds_invariance_weight_times_the_invariance(model) -> None:
    rows, copies, labels = _logits()
    inv = float(CMCSModel.invariance(rows, copies))
    out = model.counterfactual_losses({"text_logits": rows}, {"text_logits": copies}, {"label": labels}, WEIGHT)
    assert float(out["L_c_copy"]) == pytest.approx(float(F.cross_entropy(copies, labels)))
    assert float(out["L_c_row"]) == pytest.approx(float(F.cross_entropy(rows, labels)))
    assert float(out["L_c"]) == pytest.approx(float(out["L_c_copy"]) + WEIGHT * inv)


def test_the_trainer_hands_invariance_weight_to_both_objectives(tiny_config_factory, cmcs_cache, tmp_path,
                                                                monkeypatch) -> None:
    """A short run with both opt-ins: every call of either objective gets the config's invariance_weight."""
    from cmcs_core.train.trainer import train

    seen: dict[str, list[float]] = {"branch": [], "dev": []}
    branch, dev = CMCSModel.counterfactual_losses, CMCSModel.counterfactual_dev_loss

    def spy_branch(self, out, copy_out, batch, weight=1.0):
        seen["branch"].append(weight)
        return branch(self, out, copy_out, batch, weight)

    def spy_dev(self, losses, out, edited_out, batch, weight):
        seen["dev"].append(weight)
        return dev(self, losses, out, edited_out, batch, weight)

    monkeypatch.setattr(CMCSModel, "counterfactual_losses", spy_branch)
    monkeypatch.setattr(CMCSModel, "counterfactual_dev_loss", spy_dev)
    cfg = tiny_config_factory("cmcs", epochs=1, counterfactual_share=0.5, upper_objective="counterfactual",
                              invariance_weight=WEIGHT)
    cfg.data = dataclasses.replace(cfg.data, max_train_samples=32, max_eval_samples=16, dev_subset_size=16)
    with torch_threads(1):
        train(cfg, tmp_path / "run", progress=False)
    assert seen["branch"] and seen["dev"]
    assert set(seen["branch"]) == {WEIGHT} and set(seen["dev"]) == {WEIGHT}
