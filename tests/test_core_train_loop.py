"""Guards on the training loop itself: model selection on dev (scripted metrics), the
model back in training mode after an upper step, the clipped hypergradient that reaches phi's
optimiser, the learning-rate schedule, the direction of an upper step, and the thread count.

Each test here was checked by applying the mutation it names to cmcs_core/ and seeing it fail.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from torch.func import functional_call
from torch.nn import functional as F

from cmcs_core.checkpoint import trainable_state
from cmcs_core.pipeline import torch_threads
from cmcs_core.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def _ready_trainer(cfg, run_dir) -> Trainer:
    """A Trainer with data, model and optimisers built, before its first step."""
    trainer = Trainer(cfg, run_dir, progress=False)
    trainer.setup()
    return trainer


def _batches(trainer: Trainer, n: int = 16) -> tuple[dict, dict]:
    """The first n training rows and one D_dev batch, fixed."""
    return trainer.train_data.batch(torch.arange(n), trainer.device), next(trainer._dev_batches())


# -- model selection: scripted dev/test metrics --------------------------------------------------
# Epoch:          1     2     3     4
DEV_ACC = [0.50, 0.70, 0.60, 0.70]  # best on dev: epoch 2 (the first of the tie with epoch 4)
TEST_ACC = [0.40, 0.45, 0.90, 0.50]  # best on test: epoch 3; the last epoch: 4


def test_selection_keeps_the_first_best_dev_epoch(tiny_config_factory, cmcs_cache, tmp_path, monkeypatch) -> None:
    """Selection reads dev accuracy only, keeps the first maximum, and the model that writes the
    run's outputs is that epoch's model (not the last one, not the best on test)."""
    cfg = tiny_config_factory("wo_cms", epochs=4)
    cfg.data = dataclasses.replace(cfg.data, max_train_samples=32)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def scripted(self: Trainer, data) -> dict:
        epoch = len(self.epoch_rows) + 1
        snapshots[epoch] = {k: v.clone() for k, v in trainable_state(self.model).items()}
        acc = (DEV_ACC if data is self.dev_data else TEST_ACC)[epoch - 1]
        return {"acc": acc, "macro_f1": acc / 2, "loss": 1 - acc}

    monkeypatch.setattr(Trainer, "_split_metrics", scripted)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    metrics = trainer.fit()
    assert metrics["best_epoch"] == 2
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["best_epoch"] == 2
    assert [r["dev_acc"] for r in trainer.epoch_rows] == DEV_ACC  # the script did drive the loop
    assert any(not torch.equal(snapshots[2][k], snapshots[4][k]) for k in snapshots[2])  # epochs differ
    checkpoint = load_file(str(tmp_path / "run" / "best.safetensors"))
    final = trainable_state(trainer.model)  # the model _finish evaluated for metrics.json
    for k, v in snapshots[2].items():
        assert torch.equal(checkpoint[k], v), k
        assert torch.equal(final[k], v), k


# -- the upper step ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cmcs_trainer(tmp_path_factory, cmcs_cache, tiny_config_factory) -> Trainer:
    return _ready_trainer(tiny_config_factory("cmcs"), tmp_path_factory.mktemp("runs") / "upper")


def test_upper_step_runs_in_eval_mode_and_hands_back_a_training_model(cmcs_trainer) -> None:
    model = cmcs_trainer.model
    model.train()
    before = {name: m.training for name, m in model.named_modules()}
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    try:
        cmcs_trainer.upper_step(*_batches(cmcs_trainer))
    finally:
        hook.remove()
    assert seen == [False, False]  # train and dev forwards without dropout: exact Hessian-vector products
    assert {name: m.training for name, m in model.named_modules()} == before  # dropout back on
    assert sum(isinstance(m, torch.nn.Dropout) and m.training for m in model.modules()) >= 4


def test_phi_optimiser_gets_the_clipped_hypergradient(cmcs_trainer, monkeypatch) -> None:
    """The gradient handed to Adam on phi is the hypergradient scaled to norm <= hypergrad_clip."""
    trainer = cmcs_trainer
    phi = trainer.model.scheduler_parameters()
    handed: list[torch.Tensor] = []
    step = trainer.phi_opt.step

    def spy(*args, **kwargs):
        handed.append(torch.stack([p.grad.detach().clone() for p in phi]))
        return step(*args, **kwargs)

    monkeypatch.setattr(trainer.phi_opt, "step", spy)
    monkeypatch.setattr(trainer.cfg, "train", dataclasses.replace(trainer.cfg.train))  # a copy to edit
    for clip in (1e-3, 1e6):
        trainer.cfg.train.hypergrad_clip = clip
        stats = trainer.upper_step(*_batches(trainer))
        raw = torch.tensor([stats["hypergrad_alpha"], stats["hypergrad_beta"]])
        assert float(raw.norm()) == pytest.approx(stats["hypergrad_norm"], rel=1e-5)
        assert float(raw.norm()) > 10 * 1e-3  # so the small clip binds
        expected = raw * min(1.0, clip / float(raw.norm()))
        torch.testing.assert_close(handed[-1], expected, rtol=1e-5, atol=1e-9)
    assert float(handed[0].norm()) == pytest.approx(1e-3, rel=1e-5)


def _branch_losses(out: dict, batch: dict) -> dict[str, torch.Tensor]:
    """The four branch losses written out here (cross-entropy for text, per-label BCE for the
    image), not the model's branch_losses."""
    y, yv = batch["label"], batch["image_label"]
    ce = lambda logits: -logits.log_softmax(-1)[torch.arange(len(y)), y].mean()  # noqa: E731
    bce = lambda logits: -(yv * F.logsigmoid(logits) + (1 - yv) * F.logsigmoid(-logits)).mean()  # noqa: E731
    return {"t": ce(out["text_logits"]), "t_raw": ce(out["text_logits_raw"]),
            "v": bce(out["visual_logits"]), "v_raw": bce(out["visual_logits_raw"])}


def _lookahead_dev_loss(model, train_batch: dict, dev_batch: dict, eta: float) -> torch.Tensor:
    """L_dev after one SGD step of size eta on the scheduled training loss, as a function of phi
    (autograd through the step: the unrolled hypergradient, independent of the Neumann code). The
    schedule is written out from the paper (Eq. 7-9: phi = softplus(alpha * exp(L_raw - L_masked)),
    the effect a constant) and L_dev = L_t + L_v: none of the model's loss or scheduling functions."""
    model.eval()
    heads = dict((n, p) for n, p in model.named_parameters() if p.requires_grad and n not in ("alpha", "beta"))
    train = _branch_losses(model(train_batch, encoder_grad=False), train_batch)
    phi_t = F.softplus(model.alpha * (train["t_raw"] - train["t"]).detach().clamp(-10, 10).exp())
    phi_v = F.softplus(model.beta * (train["v_raw"] - train["v"]).detach().clamp(-10, 10).exp())
    train_loss = phi_t * train["t"] + phi_v * train["v"]
    grads = torch.autograd.grad(train_loss, list(heads.values()), create_graph=True)
    stepped = {n: p - eta * g for (n, p), g in zip(heads.items(), grads)}
    dev = _branch_losses(functional_call(model, stepped, (dev_batch,), {"encoder_grad": False}), dev_batch)
    return dev["t"] + dev["v"]


def test_upper_step_moves_phi_downhill_on_the_dev_loss(tmp_path, cmcs_cache, tiny_config_factory) -> None:
    """With K=0 the implicit hypergradient is the derivative of the dev loss after one SGD step of
    size eta (to first order in eta). One upper step of the Trainer must move alpha and beta against
    that derivative and so lower the look-ahead dev loss. (eta 1e-4: the two agree to 3% here, 39% at
    1e-3 where the step's own curvature shows; the sign is what matters.)"""
    eta = 1e-4
    trainer = _ready_trainer(tiny_config_factory("cmcs", K=0, neumann_eta=eta), tmp_path / "run")
    model = trainer.model
    train_batch, dev_batch = _batches(trainer)
    phi = model.scheduler_parameters()
    before = _lookahead_dev_loss(model, train_batch, dev_batch, eta)
    unrolled = torch.stack(torch.autograd.grad(before, phi))
    phi0 = torch.stack([p.detach().clone() for p in phi])

    stats = trainer.upper_step(train_batch, dev_batch)
    implicit = torch.tensor([stats["hypergrad_alpha"], stats["hypergrad_beta"]])
    torch.testing.assert_close(implicit, unrolled, rtol=0.05, atol=0.0)  # same quantity, same sign
    moved = torch.stack([p.detach() for p in phi]) - phi0
    assert (torch.sign(moved) == -torch.sign(unrolled)).all(), (moved, unrolled)
    after = _lookahead_dev_loss(model, train_batch, dev_batch, eta)
    assert float(before.detach() - after.detach()) > 0.5 * float(-(unrolled * moved).sum())  # as much as predicted


# -- a short fit observed from inside: the LR schedule, training mode, threads ---------------------
@pytest.fixture(scope="module")
def observed_fit(tmp_path_factory, cmcs_cache, tiny_config_factory) -> dict:
    """2 epochs x 8 steps of CMCS (H=2), warm-up 25%, num_threads=1 called from a 2-thread process;
    records each lower step's learning rate and the training flag of each lower-step forward."""
    cfg = tiny_config_factory("cmcs", warmup_ratio=0.25, num_threads=1, eval_test_each_epoch=False)
    trainer = Trainer(cfg, tmp_path_factory.mktemp("runs") / "observed", progress=False)
    seen: dict = {"lr": [], "training": [], "threads": []}
    build = trainer._build_optim

    def build_and_watch() -> None:
        build()
        trainer.opt.register_step_pre_hook(lambda opt, args, kwargs: seen["lr"].append(
            [g["lr"] for g in opt.param_groups]))  # the learning rate each lower step uses

        def lower_forward(module, args, kwargs):
            if torch.is_grad_enabled() and "encoder_grad" not in kwargs:  # not eval, not the upper step
                seen["training"].append(all(m.training for m in module.modules() if isinstance(m, torch.nn.Dropout)))
                seen["threads"].append(torch.get_num_threads())

        trainer.model.register_forward_pre_hook(lower_forward, with_kwargs=True)

    trainer._build_optim = build_and_watch
    with torch_threads(2):
        trainer.fit()
        seen["threads_after"] = torch.get_num_threads()
    seen["cfg"] = cfg
    return seen


def test_learning_rate_follows_warmup_then_linear_decay(observed_fit) -> None:
    head_lr = observed_fit["cfg"].train.head_lr
    total, warm = 16, 4  # 128 rows / 16 = 8 steps x 2 epochs; 25% warm-up
    factors = [0.25, 0.5, 0.75, 1.0] + [(total - k) / (total - warm) for k in range(warm, total)]
    assert len(observed_fit["lr"]) == total
    assert all(len(groups) == 1 for groups in observed_fit["lr"])  # frozen encoder: the heads' group only
    lrs = [groups[0] for groups in observed_fit["lr"]]
    assert lrs == pytest.approx([head_lr * f for f in factors], rel=1e-9)


def test_every_lower_step_trains_with_dropout_on(observed_fit) -> None:
    """Upper steps (every H=2 steps) switch to eval mode; every lower step after them must not inherit it."""
    assert len(observed_fit["training"]) == 16
    assert all(observed_fit["training"]), observed_fit["training"]


def test_num_threads_holds_during_fit_and_is_restored(observed_fit) -> None:
    assert set(observed_fit["threads"]) == {1}
    assert observed_fit["threads_after"] == 2
