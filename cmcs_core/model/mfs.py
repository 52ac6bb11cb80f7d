"""Multimodal Feature Selection (Eq. 1-6): a learnable causal-intervention mask per modality.

M = sigmoid(MLP(E)) picks features element-wise (the do-operator on each of m x d entries);
Ebar = MLP(M*E + MLP(M*E)) are the counterfactual features the classifier is trained on.
"""
from __future__ import annotations

import torch
from torch import nn

MASK_MODES = ("learned", "fixed", "none")


def mlp(dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class CausalIntervention(nn.Module):
    """One modality's MFS network.

    mode "learned" is the paper; "fixed" sets M = 0.5 (the w/o MFS ablation, the two MLPs
    still train); "none" is the identity, for the text-only baseline.
    """

    def __init__(self, dim: int, hidden: int, dropout: float, mode: str = "learned") -> None:
        super().__init__()
        if mode not in MASK_MODES:
            raise ValueError(f"mask mode {mode!r} not in {MASK_MODES}")
        self.mode = mode
        if mode == "learned":
            self.mask_net = mlp(dim, hidden, dropout)
        if mode != "none":
            self.inner = mlp(dim, hidden, dropout)
            self.outer = mlp(dim, hidden, dropout)
            self.norm = nn.LayerNorm(dim)

    def mask(self, features: torch.Tensor) -> torch.Tensor:
        if self.mode == "learned":
            return torch.sigmoid(self.mask_net(features))
        fill = 0.5 if self.mode == "fixed" else 1.0
        return torch.full_like(features, fill)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, m, d) -> counterfactual features (B, m, d), mask (B, m, d)."""
        mask = self.mask(features)
        if self.mode == "none":
            return features, mask
        selected = mask * features
        # LayerNorm keeps Ebar on the scale of E so one classifier serves both (like with like).
        return self.norm(self.outer(selected + self.inner(selected))), mask


def pool(features: torch.Tensor, mask: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Masked mean over real tokens, or the first ([CLS]) token."""
    if how == "cls":
        return features[:, 0]
    weights = mask.unsqueeze(-1).to(features.dtype)
    return (features * weights).sum(1) / weights.sum(1).clamp(min=1.0)
