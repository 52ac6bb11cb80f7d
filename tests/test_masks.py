"""The opt-in mask extensions (token gates, sparsity prior), what the mask does to the
prediction (explain.mask_effects), and old run configs loading with the paper's defaults."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_core_model import M_V, B, _batch, _model

from cmcs_core.config import RunConfig
from cmcs_core.explain import mask_effects
from cmcs_core.model.mfs import CausalIntervention
from cmcs_core.runs.reader import load_run

pytestmark = pytest.mark.usefixtures("one_thread")


def test_token_gate_is_constant_over_the_feature_dimension() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 7, 16)
    token = CausalIntervention(16, 8, 0.0, granularity="token").eval()
    mask = token.mask(x)
    assert mask.shape == x.shape
    assert torch.equal(mask, mask[..., :1].expand_as(mask))  # one gate per token, broadcast over d
    assert mask[..., 0].std() > 1e-3  # ... and the gates differ between tokens
    element = CausalIntervention(16, 8, 0.0).eval().mask(x)
    assert (element - element[..., :1]).abs().max() > 1e-3  # the paper's mask is element-wise
    with pytest.raises(ValueError, match="granularity"):
        CausalIntervention(16, 8, 0.0, granularity="word")


def test_token_gate_through_the_model(text_encoder) -> None:
    model = _model(text_encoder, mask_granularity="token")
    out = model(_batch(text_encoder.dim))
    for key in ("text_mask", "visual_mask"):
        assert torch.equal(out[key], out[key][..., :1].expand_as(out[key]))


def test_old_configs_load_with_the_papers_mask_and_flags_set_the_extensions(tmp_path: Path) -> None:
    from cmcs_core.cli import build_parser
    from cmcs_core.flags import config_from_args

    old = RunConfig().to_dict()
    for key in ("mask_granularity", "mask_sparsity"):
        old["model"].pop(key)  # a config.json written before the extensions existed
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = RunConfig.load(tmp_path / "config.json")
    assert cfg.model.mask_granularity == "element" and cfg.model.mask_sparsity == 0.0
    args = build_parser().parse_args(["train", "--mask-granularity", "token", "--mask-sparsity", "0.3"])
    cfg = config_from_args(args)
    assert cfg.model.mask_granularity == "token" and cfg.model.mask_sparsity == 0.3


def test_sparsity_prior_enters_the_lower_objective_only(text_encoder) -> None:
    batch = _batch(text_encoder.dim)
    plain, sparse = _model(text_encoder), _model(text_encoder, mask_sparsity=0.5)
    sparse.load_state_dict(plain.state_dict())
    lp, ls = plain.branch_losses(plain(batch), batch), sparse.branch_losses(sparse(batch), batch)
    assert "L_sparse" not in lp and 0.0 < ls["L_sparse"].item() < 2.0
    total_p, _ = plain.scheduled_loss(lp)
    total_s, stats = sparse.scheduled_loss(ls)
    assert total_s.item() == pytest.approx(total_p.item() + 0.5 * ls["L_sparse"].item(), rel=1e-5)
    assert sparse.dev_loss(ls).item() == pytest.approx(plain.dev_loss(lp).item(), rel=1e-6)  # upper level unchanged


def test_sparsity_prior_lowers_the_mean_mask_on_a_tiny_run(tmp_path: Path, monkeypatch) -> None:
    from cmcs_core.playground import PlaygroundConfig, generate_playground
    from cmcs_core.playground.run import run_config
    from cmcs_core.train.trainer import train

    monkeypatch.setenv("CMCS_CACHE_DIR", str(tmp_path / "cache"))
    data = generate_playground(tmp_path / "data", PlaygroundConfig(seed=4, n_train=96, n_dev=32, n_test=32,
                                                                   image_size=64, photo_fraction=0.0))
    means = {}
    for lam in (0.0, 2.0):
        cfg = run_config(data, "cmcs", seed=0, epochs=2, mask_sparsity=lam)
        cfg.train.H = 2
        train(cfg, tmp_path / f"run_{lam}", progress=False)
        samples = load_run(tmp_path / f"run_{lam}").masks("test")["samples"]
        means[lam] = (np.mean(np.concatenate([s["mask"] for s in samples])),
                      np.mean(np.concatenate([s["visual_mask"] for s in samples])))
    # same seed, same data: only the prior differs (measured: 0.499 -> 0.490 text, 0.501 -> 0.483 caption)
    assert means[2.0][0] < means[0.0][0] - 0.004, means
    assert means[2.0][1] < means[0.0][1] - 0.004, means


def _one(batch: dict[str, torch.Tensor], i: int = 0) -> dict[str, torch.Tensor]:
    """Sample i alone, cut to its real tokens (what explain.input_batch gives)."""
    n, nv = int(batch["attention_mask"][i].sum()), int(batch["visual_mask"][i].sum())
    out = {k: v[i : i + 1] for k, v in batch.items()}
    for k in ("text_hidden", "attention_mask"):
        out[k] = out[k][:, :n]
    for k in ("visual_tokens", "visual_mask"):
        out[k] = out[k][:, :nv]
    return out


def test_mask_effect_of_a_token_the_model_ignores_is_zero(text_encoder) -> None:
    """[CLS] pooling reads token 0 only; MFS works token by token, so releasing any other
    text token cannot move the prediction, while the visual branch (mean pooled) reads all."""
    model = _model(text_encoder, pooling="cls")
    one = _one(_batch(text_encoder.dim), 2)  # s = 0.25: both branches reach p_final
    eff = mask_effects(model, one, target_label=2)
    assert len(eff["text"]) == 7 and len(eff["visual"]) == M_V
    assert eff["text"][1:] == [0.0] * 6
    assert abs(eff["text"][0]) > 1e-6
    assert all(abs(v) > 1e-7 for v in eff["visual"])


def test_mask_effect_is_masked_minus_that_token_raw(text_encoder) -> None:
    """Checked against a hand-made forward pass whose mask lets token 3 through (gate 1)."""
    model = _model(text_encoder)
    one = _one(_batch(text_encoder.dim), 2)
    eff = mask_effects(model, one, target_label=1)
    p = model.fuse(model(one), one["fusion_sim"])["p_final"][0, 1]
    learned = model.text_mfs.mask

    def opened(features: torch.Tensor) -> torch.Tensor:
        m = learned(features).clone()
        m[:, 3] = 1.0
        return m

    model.text_mfs.mask = opened
    p_raw = model.fuse(model(one), one["fusion_sim"])["p_final"][0, 1]
    assert eff["p_masked"] == pytest.approx(p.item(), abs=1e-6)
    assert eff["text"][3] == pytest.approx((p - p_raw).item(), abs=1e-6)
    assert abs(eff["text"][3]) > 1e-4  # a real change, not float noise
    assert B > 1  # the helper really took one sample of a larger batch


def test_mask_effect_without_a_mask_is_zero(text_encoder) -> None:
    model = _model(text_encoder, "text_only")
    batch = _batch(text_encoder.dim)
    one = {k: v for k, v in _one(batch, 0).items() if not k.startswith("visual")}
    assert set(mask_effects(model, one, 0)["text"]) == {0.0}
