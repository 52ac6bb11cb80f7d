"""Implicit hypergradient with a K-truncated Neumann series (Eq. 13-14; Lorraine et al. 2020).

The series is a fair inverse only while eta * lambda_max(H) <= 1; `power_iters` (opt-in) sets eta
from the batch's own top eigenvalue (docs/method.md, "Why MFS and CMS stay inert").

d L_dev / d phi = dL_dev/dphi (direct; zero for alpha, beta) - grad_theta L_dev . H^-1 . d/dphi grad_theta L_train, with
H^-1 ~ eta * sum_{j=0..K} (I - eta H)^j and H applied only as Hessian-vector products.
"""
from __future__ import annotations

from typing import Sequence

import torch

Tensors = Sequence[torch.Tensor]


def _dot(a: Tensors, b: Tensors) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def neumann_inverse_hvp(
    train_grad: Tensors, params: Tensors, vector: Tensors, K: int, eta: float
) -> list[torch.Tensor]:
    """eta * sum_{j=0..K} (I - eta H)^j v, where H is the Hessian behind `train_grad`.

    train_grad must come from autograd.grad(..., create_graph=True) over `params`.
    """
    current = [v.detach().clone() for v in vector]
    total = [c.clone() for c in current]
    for _ in range(K):
        hvp = torch.autograd.grad(train_grad, params, grad_outputs=current, retain_graph=True, allow_unused=True)
        current = [c - eta * (h if h is not None else torch.zeros_like(c)) for c, h in zip(current, hvp)]
        total = [t + c for t, c in zip(total, current)]
    return [eta * t for t in total]


def top_eigenvalue(train_grad: Tensors, params: Tensors, iters: int, generator: torch.Generator | None = None
                   ) -> float:
    """Largest-magnitude eigenvalue of the Hessian behind `train_grad` by power iteration on
    Hessian-vector products (Rayleigh quotient of the last iterate; from below, so slightly low)."""
    vec = [torch.randn(p.shape, generator=generator).to(p) for p in params]
    value = 0.0
    for _ in range(max(1, iters)):
        norm = torch.sqrt(_dot(vec, vec))
        vec = [v / norm for v in vec]
        hvp = torch.autograd.grad(train_grad, params, grad_outputs=vec, retain_graph=True, allow_unused=True)
        hvp = [h if h is not None else torch.zeros_like(v) for h, v in zip(hvp, vec)]
        value = float(_dot(hvp, vec))
        vec = hvp
    return value


def implicit_hypergradient(
    train_loss: torch.Tensor,
    dev_loss: torch.Tensor,
    params: Tensors,
    hyperparams: Tensors,
    K: int,
    eta: float,
    stats: dict | None = None,
    power_iters: int = 0,
) -> list[torch.Tensor]:
    """Total derivative of dev_loss w.r.t. hyperparams through theta*(phi): the direct term
    (zero for phi = {alpha, beta}, which the dev loss does not read; the mask network when it is
    a hyperparameter) minus the implicit one. `stats`, when given, receives the cosine between
    grad_theta L_dev and grad_theta L_train (how much the upper level asks beyond "fit more")."""
    wrt = [*params, *hyperparams]
    grads_dev = torch.autograd.grad(dev_loss, wrt, allow_unused=True)
    dev_grad = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads_dev[: len(params)], params)]
    direct = [g if g is not None else torch.zeros_like(h) for g, h in zip(grads_dev[len(params):], hyperparams)]
    train_grad = torch.autograd.grad(train_loss, params, create_graph=True, allow_unused=True)
    pairs = [(g, p) for g, p in zip(train_grad, params) if g is not None and g.requires_grad]
    if not pairs:
        return direct
    keep = {id(p) for _, p in pairs}
    grads = [g for g, _ in pairs]
    used = [p for _, p in pairs]
    vec = [d for d, p in zip(dev_grad, params) if id(p) in keep]
    if power_iters > 0:
        # The series sum_j (I - eta H)^j converges only where eta * lambda < 2, and approximates H^-1
        # well only for eta * lambda <= 1: take eta = 0.8 / lambda_max of this batch's Hessian.
        lam = top_eigenvalue(grads, used, power_iters)
        eta = 0.8 / abs(lam) if lam != 0 else eta
        if stats is not None:
            stats.update(hessian_top_eig=lam, neumann_eta=eta)
    if stats is not None:
        dot = float(_dot(vec, [g.detach() for g in grads]))
        norms = float(_dot(vec, vec)) ** 0.5 * float(_dot([g.detach() for g in grads], [g.detach() for g in grads])) ** 0.5
        stats["dev_train_cos"] = dot / norms if norms > 0 else float("nan")
    inv = neumann_inverse_hvp(grads, used, vec, K, eta)
    mixed = torch.autograd.grad(_dot(grads, inv), hyperparams, allow_unused=True)
    return [d - (m if m is not None else torch.zeros_like(h)) for d, m, h in zip(direct, mixed, hyperparams)]


def exact_hypergradient(
    train_loss_fn, dev_loss_fn, theta: torch.Tensor, phi: torch.Tensor
) -> torch.Tensor:
    """Reference by a dense solve, for tests on small problems: -g_dev^T H^-1 d2L/dtheta dphi."""
    from torch.autograd.functional import hessian, jacobian

    H = hessian(lambda t: train_loss_fn(t, phi), theta)
    g_dev = torch.autograd.grad(dev_loss_fn(theta), theta)[0]
    mixed = jacobian(lambda p: torch.autograd.grad(train_loss_fn(theta, p), theta, create_graph=True)[0], phi)
    return -g_dev @ torch.linalg.solve(H, mixed)
