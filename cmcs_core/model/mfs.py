"""Multimodal Feature Selection (Eq. 1-6): a learnable causal-intervention mask per modality.

M = sigmoid(MLP(E)) picks features element-wise (the do-operator on each of m x d entries);
Ebar = MLP(M*E + MLP(M*E)) are the counterfactual features the classifier is trained on.

Beyond the paper (opt-in, docs/method.md): granularity "token" gives one gate per token or
image cell, broadcast over the d features, so the mask has to pick words/regions rather
than features; the sparsity prior lives in CMCSModel.branch_losses.
"""
from __future__ import annotations

import torch
from torch import nn

MASK_MODES = ("learned", "fixed", "none")
MASK_GRANULARITIES = ("element", "token")


def mlp(dim: int, hidden: int, dropout: float, out_dim: int | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim or dim))


class CausalIntervention(nn.Module):
    """One modality's MFS network.

    mode "learned" is the paper; "fixed" sets M = 0.5 (the w/o MFS ablation, the two MLPs
    still train); "none" is the identity, for the text-only baseline.
    """

    def __init__(self, dim: int, hidden: int, dropout: float, mode: str = "learned",
                 granularity: str = "element") -> None:
        super().__init__()
        if mode not in MASK_MODES:
            raise ValueError(f"mask mode {mode!r} not in {MASK_MODES}")
        if granularity not in MASK_GRANULARITIES:
            raise ValueError(f"mask granularity {granularity!r} not in {MASK_GRANULARITIES}")
        self.mode, self.granularity = mode, granularity
        if mode == "learned":
            self.mask_net = mlp(dim, hidden, dropout, out_dim=1 if granularity == "token" else dim)
        if mode != "none":
            self.inner = mlp(dim, hidden, dropout)
            self.outer = mlp(dim, hidden, dropout)
            self.norm = nn.LayerNorm(dim)

    def mask(self, features: torch.Tensor) -> torch.Tensor:
        """(B, m, d) gates in [0, 1]; a token gate is the same value on all d features."""
        if self.mode == "learned":
            return torch.sigmoid(self.mask_net(features)).expand_as(features)
        fill = 0.5 if self.mode == "fixed" else 1.0
        return torch.full_like(features, fill)

    def forward(self, features: torch.Tensor, release: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, m, d) -> counterfactual features (B, m, d), mask (B, m, d).

        `release` (B, m) bool lets the flagged tokens through raw (gate 1): explain.mask_effects
        uses it to measure what the mask does to each token. The returned mask is the learned one.
        """
        mask = self.mask(features)
        if self.mode == "none":
            return features, mask
        gate = mask if release is None else torch.where(release.unsqueeze(-1), torch.ones_like(mask), mask)
        selected = gate * features
        # LayerNorm keeps Ebar on the scale of E so one classifier serves both (like with like).
        return self.norm(self.outer(selected + self.inner(selected))), mask


def pool(features: torch.Tensor, mask: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Masked mean over the tokens `mask` flags (real tokens, or the target's: target_segment),
    or the first ([CLS]) token."""
    if how == "cls":
        return features[:, 0]
    weights = mask.unsqueeze(-1).to(features.dtype)
    return (features * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def target_segment(input_ids: torch.Tensor, attention_mask: torch.Tensor, sep_id: int,
                   special_ids: list[int]) -> torch.Tensor:
    """(B, m) bool: the word pieces of the input's second segment, the target (`[CLS] tweet [SEP]
    target [SEP]`; `<s> tweet </s></s> target </s>` for MPNet), found by the separators rather than
    token types, which MPNet does not have. With caption_in_text the caption after the target's
    separator is left out. A row without a second segment falls back to all its real tokens."""
    special = torch.isin(input_ids, torch.tensor(special_ids, device=input_ids.device))
    count = (input_ids == sep_id).long().cumsum(1)  # separators seen so far, this one included
    words = attention_mask.bool() & ~special
    after = words & (count >= 1)
    first = count.masked_fill(~after, torch.iinfo(count.dtype).max).min(1, keepdim=True).values
    segment = after & (count == first)
    return torch.where(segment.any(1, keepdim=True), segment, attention_mask.bool())


def mean_gate(mask: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean of the (B, m, d) mask over real tokens and features: the sparsity prior's term."""
    weights = real.unsqueeze(-1).to(mask.dtype)
    return (mask * weights).sum() / (weights.sum() * mask.shape[-1]).clamp(min=1.0)
