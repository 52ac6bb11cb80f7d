"""Model: MFS masks, the causal effect and scheduling weights, fusion (Eq. 15), each ablation
switch, the implicit hypergradient against a dense solve, and top-N fine-tuning of the text
encoder over cached lower-layer states."""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch.nn import functional as F

from cmcs_core.config import METHODS, ModelConfig, apply_method
from cmcs_core.encoders.text import TextEncoder, additive_mask
from cmcs_core.model.cmcs import EFFECT_LOG_CLAMP, CMCSModel, TextTower
from cmcs_core.model.hypergrad import exact_hypergradient, implicit_hypergradient, neumann_inverse_hvp
from cmcs_core.model.mfs import CausalIntervention

pytestmark = pytest.mark.usefixtures("one_thread")

VIS_DIM = 24  # a visual width unlike the text width, so crossed wires fail on shapes
B, M_T, M_V = 6, 9, 5


def _model(encoder: TextEncoder, method: str = "cmcs", seed: int = 0, **cfg) -> CMCSModel:
    torch.manual_seed(seed)
    mcfg = dataclasses.replace(apply_method(ModelConfig(), method), hidden_dim=32, **cfg)
    model = CMCSModel(mcfg, TextTower(encoder, 0), VIS_DIM if mcfg.use_visual else None)
    return model.eval()


def _batch(dim: int, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([9, 4, 7, 2, 9, 5])
    vlengths = torch.tensor([5, 3, 5, 1, 2, 4])
    return {
        "text_hidden": torch.randn(B, M_T, dim, generator=g).half(),  # cached states are fp16
        "attention_mask": (torch.arange(M_T)[None] < lengths[:, None]).long(),
        "visual_tokens": torch.randn(B, M_V, VIS_DIM, generator=g).half(),
        "visual_mask": (torch.arange(M_V)[None] < vlengths[:, None]).long(),
        "label": torch.tensor([0, 1, 2, 1, 2, 0]),
        "image_label": torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 1, 1], [0, 1, 1], [1, 1, 0]]).float(),
        "fusion_sim": torch.tensor([-0.4, 0.0, 0.25, 0.8, 1.0, 1.6]),
    }


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(x.shape[0], x.shape[2])
    for i in range(x.shape[0]):
        n = int(mask[i].sum())
        total[i] = x[i, :n].mean(0)  # real tokens are a prefix
    return total


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -(logits.log_softmax(-1)[torch.arange(len(y)), y]).mean()


def _bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits.double())
    return (-(y * p.log() + (1 - y) * (1 - p).log())).mean().float()


# -- MFS masks --------------------------------------------------------------------------------
def test_learned_masks_are_strictly_between_0_and_1(text_encoder: TextEncoder) -> None:
    model = _model(text_encoder, "cmcs")
    batch = _batch(text_encoder.dim)
    out = model(batch)
    for key, width in (("text_mask", text_encoder.dim), ("visual_mask", VIS_DIM)):
        mask = out[key]
        assert mask.shape == (B, M_T if key == "text_mask" else M_V, width)  # m x d, per token and feature
        assert (mask > 0).all() and (mask < 1).all()
        assert mask.std() > 1e-3  # really learned/element-wise, not a constant
    # A different input gives a different mask (M depends on E).
    other = model(_batch(text_encoder.dim, seed=2))
    assert not torch.allclose(out["text_mask"], other["text_mask"])


def test_fixed_masks_are_one_half_and_none_is_identity(text_encoder: TextEncoder) -> None:
    batch = _batch(text_encoder.dim)
    fixed = _model(text_encoder, "wo_mfs")(batch)
    assert (fixed["text_mask"] == 0.5).all() and (fixed["visual_mask"] == 0.5).all()
    none = _model(text_encoder, "text_only")(batch)
    assert (none["text_mask"] == 1).all()
    torch.testing.assert_close(none["text_bar_pooled"], none["text_raw_pooled"], rtol=0, atol=0)
    torch.testing.assert_close(none["text_logits"], none["text_logits_raw"], rtol=0, atol=0)
    with pytest.raises(ValueError, match="mask mode"):
        CausalIntervention(8, 4, 0.0, "random")


def test_counterfactual_features_follow_eq_5(text_encoder: TextEncoder) -> None:
    """Ebar = LayerNorm(MLP(M*E + MLP(M*E))) with M = sigmoid(MLP(E))."""
    mfs = _model(text_encoder, "cmcs").text_mfs
    E = _batch(text_encoder.dim)["text_hidden"].float()
    M = torch.sigmoid(mfs.mask_net(E))
    expected = mfs.norm(mfs.outer(M * E + mfs.inner(M * E)))
    Ebar, mask = mfs(E)
    torch.testing.assert_close(mask, M)
    torch.testing.assert_close(Ebar, expected)


# -- causal effect and scheduling weights ---------------------------------------------------
@pytest.mark.parametrize("alpha,beta", [(0.5413, 0.5413), (2.0, -1.5)])
def test_causal_effect_and_softplus_weights_by_hand(text_encoder: TextEncoder, alpha: float, beta: float) -> None:
    model = _model(text_encoder, "cmcs")
    with torch.no_grad():
        model.alpha.fill_(alpha)
        model.beta.fill_(beta)
    batch = _batch(text_encoder.dim)
    out = model(batch)
    losses = model.branch_losses(out, batch)
    total, stats = model.scheduled_loss(losses)

    # By hand, from E and Ebar, without the model's pooling or loss code.
    E, Ev = batch["text_hidden"].float(), batch["visual_tokens"].float()
    with torch.no_grad():
        Ebar, Evbar = model.text_mfs(E)[0], model.visual_mfs(Ev)[0]
        ce_raw = _ce(model.text_head(_masked_mean(E, batch["attention_mask"])), batch["label"])
        ce_bar = _ce(model.text_head(_masked_mean(Ebar, batch["attention_mask"])), batch["label"])
        bce_raw = _bce(model.visual_head(_masked_mean(Ev, batch["visual_mask"])), batch["image_label"])
        bce_bar = _bce(model.visual_head(_masked_mean(Evbar, batch["visual_mask"])), batch["image_label"])
    eff_t, eff_v = math.exp(ce_raw - ce_bar), math.exp(bce_raw - bce_bar)
    phi_t, phi_v = math.log1p(math.exp(alpha * eff_t)), math.log1p(math.exp(beta * eff_v))
    assert stats["eff_t"] == pytest.approx(eff_t, rel=1e-5)
    assert stats["eff_v"] == pytest.approx(eff_v, rel=1e-5)
    assert stats["L_t"] == pytest.approx(float(ce_bar), rel=1e-5)
    assert stats["L_v"] == pytest.approx(float(bce_bar), rel=1e-5)
    assert stats["phi_t"] == pytest.approx(phi_t, rel=1e-5) and stats["phi_t"] > 0
    assert stats["phi_v"] == pytest.approx(phi_v, rel=1e-5) and stats["phi_v"] > 0
    assert total.item() == pytest.approx(phi_t * float(ce_bar) + phi_v * float(bce_bar), rel=1e-5)


@pytest.mark.parametrize("method", ["cmcs", "wo_visual"])
def test_dev_loss_is_the_text_plus_the_visual_loss(text_encoder: TextEncoder, method: str) -> None:
    """L_dev = L_t + L_v on D_dev (the upper objective), from the masked features, by hand; no phi in it."""
    model = _model(text_encoder, method)
    with torch.no_grad():
        model.alpha.fill_(3.0)  # a scheduler far from 1 must not reach the dev loss
    batch = _batch(text_encoder.dim)
    dev = model.dev_loss(model.branch_losses(model(batch), batch))
    with torch.no_grad():
        ebar = model.text_mfs(batch["text_hidden"].float())[0]
        expected = _ce(model.text_head(_masked_mean(ebar, batch["attention_mask"])), batch["label"])
        if method == "cmcs":
            evbar = model.visual_mfs(batch["visual_tokens"].float())[0]
            expected = expected + _bce(model.visual_head(_masked_mean(evbar, batch["visual_mask"])), batch["image_label"])
    assert dev.item() == pytest.approx(float(expected), rel=1e-5)


def test_effects_are_detached_and_phi_gets_the_softplus_gradient(text_encoder: TextEncoder) -> None:
    model = _model(text_encoder, "cmcs")
    batch = _batch(text_encoder.dim)
    losses = model.branch_losses(model(batch), batch)
    total, stats = model.scheduled_loss(losses, detach_phi=False)
    heads = model.head_parameters()
    got = torch.autograd.grad(total, heads + [model.alpha, model.beta], retain_graph=True)
    # d total / d alpha = sigmoid(alpha * eff) * eff * L_t (the effect itself is a constant).
    a, b = model.alpha.item(), model.beta.item()
    da = 1 / (1 + math.exp(-a * stats["eff_t"])) * stats["eff_t"] * stats["L_t"]
    db = 1 / (1 + math.exp(-b * stats["eff_v"])) * stats["eff_v"] * stats["L_v"]
    assert float(got[-2]) == pytest.approx(da, rel=1e-5)
    assert float(got[-1]) == pytest.approx(db, rel=1e-5)
    # theta sees phi_t * dL_t + phi_v * dL_v: no gradient flows through the effects.
    const = stats["phi_t"] * losses["L_t"] + stats["phi_v"] * losses["L_v"]
    ref = torch.autograd.grad(const, heads)
    for g, r in zip(got[:-2], ref):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)
    # With phi detached (the lower level), alpha and beta get no gradient at all.
    lower, _ = model.scheduled_loss(model.branch_losses(model(batch), batch))
    assert torch.autograd.grad(lower, [model.alpha, model.beta], allow_unused=True) == (None, None)


def test_causal_effect_clamps_the_loss_gap() -> None:
    eff = CMCSModel.causal_effect(torch.tensor(50.0), torch.tensor(1.0))
    assert float(eff) == pytest.approx(math.exp(EFFECT_LOG_CLAMP))
    assert float(CMCSModel.causal_effect(torch.tensor(0.7), torch.tensor(0.2))) == pytest.approx(math.exp(0.5))
    assert float(CMCSModel.causal_effect(torch.tensor(0.2), torch.tensor(0.7))) < 1  # Ebar is worse


# -- fusion (Eq. 15) ------------------------------------------------------------------------
def test_fusion_weight_in_unit_interval_and_eq_15(text_encoder: TextEncoder) -> None:
    model = _model(text_encoder, "cmcs")
    batch = _batch(text_encoder.dim)
    out = model(batch)
    fused = model.fuse(out, batch["fusion_sim"])
    s = fused["s"]
    assert ((s >= 0) & (s <= 1)).all()
    torch.testing.assert_close(s, batch["fusion_sim"].clamp(0, 1))
    p_text = out["text_logits"].softmax(-1)
    sig = torch.sigmoid(out["visual_logits"])
    p_image = sig / sig.sum(-1, keepdim=True)
    torch.testing.assert_close(fused["p_text"], p_text)
    torch.testing.assert_close(fused["p_image"], p_image)
    torch.testing.assert_close(fused["p_image"].sum(-1), torch.ones(B))
    torch.testing.assert_close(fused["p_final"], (1 - s[:, None]) * p_text + s[:, None] * p_image)
    torch.testing.assert_close(fused["p_final"].sum(-1), torch.ones(B))
    # s = 0 gives the text branch, s = 1 the image branch.
    torch.testing.assert_close(fused["p_final"][1], p_text[1])
    torch.testing.assert_close(fused["p_final"][4], p_image[4])


def test_fusion_modes(text_encoder: TextEncoder) -> None:
    batch = _batch(text_encoder.dim)
    nan = torch.full((B,), float("nan"))
    const = _model(text_encoder, "cmcs", fusion="constant", fusion_constant=0.3)
    assert (const.fuse(const(batch), batch["fusion_sim"])["s"] == 0.3).all()
    auto = _model(text_encoder, "cmcs")
    assert (auto.fuse(auto(batch), nan)["s"] == 0.5).all()  # no similarity available -> constant
    assert (auto.fuse(auto(batch), None)["s"] == 0.5).all()
    sim = _model(text_encoder, "cmcs", fusion="similarity")
    with pytest.raises(ValueError, match="similarity"):
        sim.fuse(sim(batch), nan)
    # the rule the Inspector shows ("s is the same for every input"), from the model itself
    assert const.fusion_is_constant(batch["fusion_sim"]) and auto.fusion_is_constant(nan)
    assert not auto.fusion_is_constant(batch["fusion_sim"]) and not sim.fusion_is_constant(batch["fusion_sim"])


# -- ablations: each switch changes what it should and nothing else ---------------------------
def _names(model: CMCSModel) -> set[str]:
    return {n for n, _ in model.named_parameters() if not n.startswith("text_tower.")}


def test_method_presets_only_flip_their_switches() -> None:
    base = ModelConfig(hidden_dim=77, dropout=0.3, pooling="cls")
    for method, switches in METHODS.items():
        cfg = apply_method(base, method)
        assert cfg.method == method
        assert {k: getattr(cfg, k) for k in switches} == switches
        assert (cfg.hidden_dim, cfg.dropout, cfg.pooling) == (77, 0.3, "cls")
    with pytest.raises(ValueError, match="unknown method"):
        apply_method(base, "wo_everything")


def test_parameter_sets_of_each_ablation(text_encoder: TextEncoder) -> None:
    models = {m: _model(text_encoder, m) for m in METHODS}
    full = _names(models["cmcs"])
    assert any(".mask_net." in n for n in full) and any(n.startswith("visual_") for n in full)
    expected = {
        "wo_cms": full,
        "wo_visual": {n for n in full if not n.startswith("visual_")},
        "wo_mfs": {n for n in full if ".mask_net." not in n},
        "wo_mfs_cms": {n for n in full if ".mask_net." not in n},
        "text_only": {n for n in full if n.startswith("text_head.")} | {"alpha", "beta"},
    }
    shapes = dict((n, p.shape) for n, p in models["cmcs"].named_parameters())
    for method, names in expected.items():
        assert _names(models[method]) == names, method
        for n, p in models[method].named_parameters():
            assert n.startswith("text_tower.") or p.shape == shapes[n]
    # The scheduler has one weight per branch.
    assert len(models["cmcs"].scheduler_parameters()) == 2
    assert models["wo_visual"].scheduler_parameters() == [models["wo_visual"].alpha]


def _shared(reference: CMCSModel, method: str, encoder: TextEncoder) -> CMCSModel:
    """An ablation carrying the reference model's weights for every parameter it has."""
    model = _model(encoder, method, seed=123)
    missing, unexpected = model.load_state_dict(reference.state_dict(), strict=False)
    assert not missing
    return model


def test_wo_cms_only_fixes_phi_to_one(text_encoder: TextEncoder) -> None:
    ref = _model(text_encoder, "cmcs")
    with torch.no_grad():
        ref.alpha.fill_(3.0)
        ref.beta.fill_(-2.0)
    abl = _shared(ref, "wo_cms", text_encoder)
    batch = _batch(text_encoder.dim)
    out_ref, out_abl = ref(batch), abl(batch)
    for k in out_ref:
        torch.testing.assert_close(out_abl[k], out_ref[k], rtol=0, atol=0)
    loss_ref, st_ref = ref.scheduled_loss(ref.branch_losses(out_ref, batch))
    loss_abl, st_abl = abl.scheduled_loss(abl.branch_losses(out_abl, batch))
    assert st_abl["phi_t"] == 1.0 and st_abl["phi_v"] == 1.0
    assert st_ref["phi_t"] != 1.0 and st_ref["phi_v"] != 1.0
    assert loss_abl.item() == pytest.approx(st_abl["L_t"] + st_abl["L_v"], rel=1e-6)
    for k in ("eff_t", "eff_v", "L_t", "L_v"):
        assert st_abl[k] == st_ref[k]


def test_wo_mfs_fixes_the_mask_and_keeps_the_mlps(text_encoder: TextEncoder) -> None:
    ref = _model(text_encoder, "cmcs")
    abl = _shared(ref, "wo_mfs", text_encoder)
    batch = _batch(text_encoder.dim)
    out_ref, out_abl = ref(batch), abl(batch)
    for k in ("text_raw_pooled", "text_logits_raw", "visual_raw_pooled", "visual_logits_raw"):
        torch.testing.assert_close(out_abl[k], out_ref[k], rtol=0, atol=0)  # raw path untouched
    E = batch["text_hidden"].float()
    m = abl.text_mfs
    expected = m.norm(m.outer(0.5 * E + m.inner(0.5 * E)))  # the same MLPs, M = 0.5
    torch.testing.assert_close(abl.text_mfs(E)[0], expected)
    assert not torch.allclose(out_abl["text_bar_pooled"], out_ref["text_bar_pooled"])
    _, st = abl.scheduled_loss(abl.branch_losses(out_abl, batch))
    assert st["phi_t"] != 1.0  # CMS still on


def test_wo_visual_has_no_visual_branch_and_fuses_to_text(text_encoder: TextEncoder) -> None:
    ref = _model(text_encoder, "cmcs")
    abl = _shared(ref, "wo_visual", text_encoder)
    assert not hasattr(abl, "visual_mfs") and not hasattr(abl, "visual_head")
    assert all(not n.startswith("visual_") for n, _ in abl.named_parameters())
    batch = _batch(text_encoder.dim)
    del batch["visual_tokens"], batch["visual_mask"]  # it must not even need them
    out = abl(batch)
    assert not any(k.startswith("visual_") for k in out)
    for k in ("text_raw_pooled", "text_bar_pooled", "text_logits", "text_mask"):
        torch.testing.assert_close(out[k], ref(_batch(text_encoder.dim))[k], rtol=0, atol=0)
    fused = abl.fuse(out, None)
    assert "p_image" not in fused and (fused["s"] == 0).all()
    torch.testing.assert_close(fused["p_final"], out["text_logits"].softmax(-1))
    total, st = abl.scheduled_loss(abl.branch_losses(out, batch))
    assert math.isnan(st["phi_v"]) and math.isnan(st["eff_v"])
    assert total.item() == pytest.approx(st["phi_t"] * st["L_t"], rel=1e-6)
    assert abl.dev_loss(abl.branch_losses(out, batch)).item() == pytest.approx(st["L_t"], rel=1e-6)


def test_text_only_is_the_plain_classifier(text_encoder: TextEncoder) -> None:
    ref = _model(text_encoder, "cmcs")
    abl = _shared(ref, "text_only", text_encoder)
    batch = _batch(text_encoder.dim)
    out = abl(batch)
    torch.testing.assert_close(out["text_bar_pooled"], out["text_raw_pooled"], rtol=0, atol=0)  # Ebar == E
    torch.testing.assert_close(out["text_logits"], ref(batch)["text_logits_raw"], rtol=0, atol=0)
    total, st = abl.scheduled_loss(abl.branch_losses(out, batch))
    assert st["eff_t"] == 1.0 and st["phi_t"] == 1.0
    assert total.item() == pytest.approx(F.cross_entropy(out["text_logits"], batch["label"]).item(), rel=1e-6)
    assert abl.head_parameters() == list(abl.text_head.parameters())


# -- the implicit hypergradient (Eq. 13-14) against a dense solve ---------------------------------
D_THETA = 6


def _ridge_problem():
    """Strongly convex lower level: softplus(phi_k * e_k)-weighted least squares + ridge."""
    g = torch.Generator().manual_seed(0)
    A1, A2, Ad = (torch.randn(n, D_THETA, generator=g, dtype=torch.float64) for n in (20, 16, 12))
    b1, b2, bd = (torch.randn(n, generator=g, dtype=torch.float64) for n in (20, 16, 12))
    effects = torch.tensor([1.3, 0.8], dtype=torch.float64)  # detached causal effects
    lam = 0.1

    def train_loss(theta, phi):
        w = F.softplus(phi * effects)
        return (w[0] * ((A1 @ theta - b1) ** 2).mean() + w[1] * ((A2 @ theta - b2) ** 2).mean()
                + lam * (theta ** 2).sum())

    def dev_loss(theta):
        return ((Ad @ theta - bd) ** 2).mean()

    def argmin(phi):
        w = F.softplus(phi * effects)
        H = 2 * (w[0] * A1.T @ A1 / 20 + w[1] * A2.T @ A2 / 16 + lam * torch.eye(D_THETA, dtype=torch.float64))
        rhs = 2 * (w[0] * A1.T @ b1 / 20 + w[1] * A2.T @ b2 / 16)
        return torch.linalg.solve(H, rhs), H

    return train_loss, dev_loss, argmin


def _implicit(train_loss, dev_loss, theta_star, phi, K, eta):
    theta = theta_star.clone().requires_grad_(True)
    phi = phi.clone().requires_grad_(True)
    return implicit_hypergradient(train_loss(theta, phi), dev_loss(theta), [theta], [phi], K, eta)[0]


def test_exact_hypergradient_is_the_total_derivative() -> None:
    """Sanity of the reference itself: d L_dev(theta*(phi)) / d phi by central differences."""
    train_loss, dev_loss, argmin = _ridge_problem()
    phi = torch.tensor([0.4, -0.2], dtype=torch.float64)
    theta_star, _ = argmin(phi)
    exact = exact_hypergradient(train_loss, dev_loss, theta_star.clone().requires_grad_(True), phi)
    h = 1e-6
    fd = torch.stack([
        (dev_loss(argmin(phi + h * e)[0]) - dev_loss(argmin(phi - h * e)[0])) / (2 * h)
        for e in torch.eye(2, dtype=torch.float64)
    ])
    torch.testing.assert_close(exact, fd, rtol=1e-6, atol=1e-9)
    assert exact.abs().min() > 1e-3  # a non-trivial problem


def test_neumann_hypergradient_matches_exact_and_converges_in_K() -> None:
    train_loss, dev_loss, argmin = _ridge_problem()
    phi = torch.tensor([0.4, -0.2], dtype=torch.float64)
    theta_star, H = argmin(phi)
    eigs = torch.linalg.eigvalsh(H)
    assert eigs.min() > 0  # strongly convex
    eta = 0.5 / float(eigs.max())
    exact = exact_hypergradient(train_loss, dev_loss, theta_star.clone().requires_grad_(True), phi)
    errors = [float((_implicit(train_loss, dev_loss, theta_star, phi, K, eta) - exact).norm())
              for K in (0, 2, 8, 32, 128, 512)]
    floor = 1e-13  # float64 round-off: once there, the error cannot keep shrinking
    assert all(later < earlier or later < floor for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-8 * float(exact.norm()) + 1e-12
    assert errors[0] > 1e-3 * float(exact.norm())  # truncation matters at small K


def _quadratic_two_tensors():
    g = torch.Generator().manual_seed(3)
    Q = torch.randn(7, 7, generator=g, dtype=torch.float64)
    A = Q @ Q.T + 0.5 * torch.eye(7, dtype=torch.float64)
    c = torch.randn(7, generator=g, dtype=torch.float64)
    a = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)

    def loss(x):
        return 0.5 * x @ A @ x + c @ x + (x ** 4).sum() / 12  # non-quadratic: H depends on x

    return loss, a, b


@pytest.mark.parametrize("K,eta", [(0, 0.05), (3, 0.1), (20, 0.02)])
def test_neumann_inverse_hvp_equals_dense_series(K: int, eta: float) -> None:
    loss, a, b = _quadratic_two_tensors()
    x = torch.cat([a, b])
    grads = torch.autograd.grad(loss(x), [a, b], create_graph=True)
    v = [torch.linspace(-1, 1, 4, dtype=torch.float64), torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64)]
    got = torch.cat(neumann_inverse_hvp(list(grads), [a, b], v, K, eta))
    H = torch.autograd.functional.hessian(loss, x.detach())
    step = torch.eye(7, dtype=torch.float64) - eta * H
    vec = torch.cat(v)
    dense = eta * sum(torch.linalg.matrix_power(step, j) @ vec for j in range(K + 1))
    torch.testing.assert_close(got, dense, rtol=1e-10, atol=1e-12)


# -- the text tower: top-N fine-tuning over cached lower-layer states -----------------------------
TEXTS = ["The $T$ match was amazing tonight , what a game !", "$T$ again", "Meet $T$ at the station at noon"]
TARGETS = ["Arsenal", "Obama", "Alice"]


def _inputs(encoder: TextEncoder) -> dict[str, torch.Tensor]:
    texts = [t.replace("$T$", g) for t, g in zip(TEXTS, TARGETS)]
    return encoder.tokenize(texts, TARGETS, max_length=64)


def test_additive_mask() -> None:
    ext = additive_mask(torch.tensor([[1, 1, 0]]), torch.float32)
    assert ext.shape == (1, 1, 1, 3)
    assert ext[0, 0, 0, :2].eq(0).all() and ext[0, 0, 0, 2] == torch.finfo(torch.float32).min


def test_top_layers_over_cached_states_equal_the_full_encoder(text_encoder: TextEncoder) -> None:
    inputs = _inputs(text_encoder)
    mask = inputs["attention_mask"]
    assert mask.sum(1).unique().numel() == 3  # padded batch: the mask matters
    tower = TextTower(text_encoder, 2)
    assert tower.cache_layer == text_encoder.num_layers - 2 == 4
    tower.eval()
    with torch.no_grad():
        lower = text_encoder.hidden_at(inputs, 4)
        full = text_encoder.hidden_at(inputs, text_encoder.num_layers)
        top = tower({"text_hidden": lower, "attention_mask": mask})
        unmasked = text_encoder.run_layers(lower, torch.ones_like(mask), 4)
    real = mask.bool()
    torch.testing.assert_close(top[real], full[real], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(lower[real], full[real], atol=1e-2)  # the top layers really ran
    assert not torch.allclose(unmasked[real], full[real], atol=1e-3)  # and padding was masked out
    # The frozen tower passes cached top states through; the -1 tower runs from token ids.
    frozen = TextTower(text_encoder, 0)
    torch.testing.assert_close(frozen({"text_hidden": full, "attention_mask": mask}), full, rtol=0, atol=0)
    whole = TextTower(text_encoder, -1).eval()
    with torch.no_grad():
        torch.testing.assert_close(whole(dict(inputs)), full, rtol=1e-5, atol=1e-5)
    TextTower(text_encoder, 0)  # leave the shared encoder frozen


def test_top_layers_over_the_fp16_features_cache(text_encoder: TextEncoder, cmcs_cache) -> None:
    """The training path: layer-4 states cached in fp16 by extract_text, then the top 2 layers."""
    import numpy as np

    from cmcs_core.data.dataset import Split
    from cmcs_core.data.tsv import Sample
    from cmcs_core.encoders.features import extract_text

    samples = [Sample(str(i), 1, "x.jpg", t, g, i + 2) for i, (t, g) in enumerate(zip(TEXTS, TARGETS))]
    split = Split("mini", cmcs_cache / "mini.tsv", samples, "captions", ["c"] * 3, None, np.zeros((3, 3)))
    feats = extract_text(text_encoder, split, 4, max_length=64)
    assert feats.hidden.dtype == torch.float16 and feats.layer == 4
    tower = TextTower(text_encoder, 2).eval()
    with torch.no_grad():
        top = tower({"text_hidden": feats.hidden, "attention_mask": feats.attention_mask})
        full = text_encoder.hidden_at(_inputs(text_encoder), text_encoder.num_layers)
    TextTower(text_encoder, 0)
    real = feats.attention_mask.bool()
    torch.testing.assert_close(top[real], full[real], rtol=0, atol=5e-3)  # fp16 rounding of the cache only


def test_finetune_layers_choose_the_trainable_parameters(text_encoder: TextEncoder) -> None:
    enc = copy.deepcopy(text_encoder)  # the steps below change weights
    names = [n for n, _ in enc.model.named_parameters()]
    layer = lambda n: int(n.split(".")[2]) if n.startswith("encoder.layer.") else None  # noqa: E731

    TextTower(enc, 0)
    assert not any(p.requires_grad for p in enc.parameters())
    TextTower(enc, 2)
    trainable = {n for n, p in enc.model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in names if layer(n) in (4, 5)}
    with pytest.raises(ValueError, match="finetune_layers"):
        TextTower(enc, 7)
    with pytest.raises(ValueError, match="finetune_layers"):
        TextTower(enc, -2)

    # -1: one optimiser step over the CMCS model moves every encoder weight the output depends on.
    inputs = _inputs(enc)
    model = CMCSModel(dataclasses.replace(apply_method(ModelConfig(), "wo_visual"), hidden_dim=16, dropout=0.0),
                      TextTower(enc, -1), None)
    assert {id(p) for p in model.encoder_parameters()} == {id(p) for p in enc.model.parameters()}
    before = {n: p.detach().clone() for n, p in enc.model.named_parameters()}
    batch = {**inputs, "label": torch.tensor([2, 0, 1]), "image_label": torch.zeros(3, 3)}
    loss, _ = model.scheduled_loss(model.branch_losses(model(batch), batch))
    opt = torch.optim.SGD(model.encoder_parameters() + model.head_parameters(), lr=1e-2)
    loss.backward()
    opt.step()
    changed = {n for n, p in enc.model.named_parameters() if not torch.equal(p, before[n])}
    used = {n for n in names if not n.startswith("pooler.")}  # the pooler is not part of E^t
    assert changed == used, sorted(used - changed)[:5]
