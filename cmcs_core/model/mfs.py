"""Multimodal Feature Selection (Eq. 1-6): a learnable causal-intervention mask per modality.

M = sigmoid(MLP(E)) picks features element-wise (the do-operator on each of m x d entries);
Ebar = MLP(M*E + MLP(M*E)) are the intervened features the classifier is trained on (the paper's
"counterfactual features"; model/target_aware.py names each meaning of that word).

Beyond the paper (opt-in, docs/method.md): granularity "token" gives one gate per token or
image cell, broadcast over the d features, so the mask has to pick words/regions rather
than features; the sparsity prior lives in CMCSModel.branch_losses. A target-conditioned
gate (TargetRelation) adds to each token's gate logit a term of its relation to the target.
"""
from __future__ import annotations

import torch
from torch import nn

from cmcs_core.config import MASK_GRANULARITIES, MASK_MODES


def mlp(dim: int, hidden: int, dropout: float, out_dim: int | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim or dim))


# Token distance from the target's mention, bucketed like relative positions (T5): exact when near,
# coarse when far; the last bucket is "no mention found" (e.g. the tweet was cut before it).
DISTANCE_EDGES = (1, 2, 3, 4, 6, 9, 13, 20, 30)
NO_MENTION = len(DISTANCE_EDGES) + 1


class TargetRelation(nn.Module):
    """The target term of a target-conditioned token gate (beyond the paper, opt-in):
    r_i = w . GELU(W [e_i * t ; e_i - t] + D[bucket(distance_i)]), t the target segment's mean state.

    Context about something else differs from the target in both ways it sees: in its states and
    in how far it sits from the target's mention. `w` starts at zero, so at initialisation (and
    whenever w = 0) the gate is exactly the plain token mask."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.pair = nn.Linear(2 * dim, hidden)
        self.distance = nn.Embedding(NO_MENTION + 1, hidden)
        self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor, target: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """features (B, m, d), target (B, d), distance (B, m) bucket ids -> (B, m, 1) logit terms."""
        t = target.unsqueeze(1).expand_as(features)
        hidden = self.pair(torch.cat([features * t, features - t], -1)) + self.distance(distance)
        return self.out(nn.functional.gelu(hidden))


class CausalIntervention(nn.Module):
    """One modality's MFS network.

    mode "learned" is the paper; "fixed" sets M = 0.5 (the w/o MFS ablation, the two MLPs
    still train); "none" is the identity, for the text-only baseline. `target_conditioned`
    (token granularity only) adds TargetRelation to the gate's logit.
    """

    def __init__(self, dim: int, hidden: int, dropout: float, mode: str = "learned",
                 granularity: str = "element", target_conditioned: bool = False) -> None:
        super().__init__()
        if mode not in MASK_MODES:
            raise ValueError(f"mask mode {mode!r} not in {MASK_MODES}")
        if granularity not in MASK_GRANULARITIES:
            raise ValueError(f"mask granularity {granularity!r} not in {MASK_GRANULARITIES}")
        self.mode, self.granularity = mode, granularity
        self.relation = TargetRelation(dim, hidden) if target_conditioned else None
        if mode == "learned":
            self.mask_net = mlp(dim, hidden, dropout, out_dim=1 if granularity == "token" else dim)
        if mode != "none":
            self.inner = mlp(dim, hidden, dropout)
            self.outer = mlp(dim, hidden, dropout)
            self.norm = nn.LayerNorm(dim)

    def gate_parameters(self) -> list[nn.Parameter]:
        """The parameters that decide the mask (the mask MLP and the target term)."""
        mods = [m for m in (getattr(self, "mask_net", None), self.relation) if m is not None]
        return [p for m in mods for p in m.parameters()]

    def mask(self, features: torch.Tensor, target: torch.Tensor | None = None,
             distance: torch.Tensor | None = None) -> torch.Tensor:
        """(B, m, d) gates in [0, 1]; a token gate is the same value on all d features."""
        if self.mode == "learned":
            logits = self.mask_net(features)
            if self.relation is not None:
                if target is None or distance is None:
                    raise ValueError("a target-conditioned gate needs the target's state and token distances")
                logits = logits + self.relation(features, target, distance)
            return torch.sigmoid(logits).expand_as(features)
        fill = 0.5 if self.mode == "fixed" else 1.0
        return torch.full_like(features, fill)

    def forward(self, features: torch.Tensor, release: torch.Tensor | None = None,
                target: torch.Tensor | None = None, distance: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, m, d) -> intervened features Ebar (B, m, d), mask (B, m, d).

        `release` (B, m) bool lets the flagged tokens through raw (gate 1): explain.mask_effects
        uses it to measure what the mask does to each token. The returned mask is the learned one.
        `target` (B, d) and `distance` (B, m) feed a target-conditioned gate.
        """
        mask = self.mask(features) if self.relation is None else self.mask(features, target, distance)
        if self.mode == "none":
            return features, mask
        gate = mask if release is None else torch.where(release.unsqueeze(-1), torch.ones_like(mask), mask)
        selected = gate * features
        # LayerNorm keeps Ebar on the scale of E so one classifier serves both (like with like).
        return self.norm(self.outer(selected + self.inner(selected))), mask


def pool(features: torch.Tensor, mask: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Masked mean over the tokens `mask` flags (real tokens, or the target's: target_segment),
    or the first ([CLS]) token. A float `mask` weighs the tokens (a gate-weighted mean)."""
    if how == "cls":
        return features[:, 0]
    weights = mask.unsqueeze(-1).to(features.dtype)
    floor = 1.0 if mask.dtype in (torch.bool, torch.long, torch.int) else 1e-6
    return (features * weights).sum(1) / weights.sum(1).clamp(min=floor)


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


def mention_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, sep_id: int,
                   special_ids: list[int]) -> torch.Tensor:
    """(B, m) bool: where the target's word pieces occur inside the tweet (the first segment),
    every occurrence; a row whose tweet was cut before its target has none. The target's pieces
    are read from the second segment, so no offsets from the tokenizer are needed."""
    target = target_segment(input_ids, attention_mask, sep_id, special_ids)
    count = (input_ids == sep_id).long().cumsum(1)
    special = torch.isin(input_ids, torch.tensor(special_ids, device=input_ids.device))
    tweet = attention_mask.bool() & ~special & (count == 0)
    out = torch.zeros_like(tweet)
    for row, (ids, want, where) in enumerate(zip(input_ids.tolist(), target.tolist(), tweet.tolist())):
        pieces = [i for i, w in zip(ids, want) if w]
        n = len(pieces)
        for start in range(len(ids) - n + 1):
            if where[start] and all(where[start : start + n]) and ids[start : start + n] == pieces:
                out[row, start : start + n] = True
    return out


def mention_distance(mention: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, m) bucket ids (DISTANCE_EDGES) of each token's distance, in tokens, to the nearest
    token of the target's mention; NO_MENTION on every token of a row without a mention."""
    m = mention.shape[1]
    pos = torch.arange(m, device=mention.device)
    gap = (pos[None, :, None] - pos[None, None, :]).abs().expand(len(mention), m, m)
    far = torch.full_like(gap, 10**6)
    nearest = torch.where(mention[:, None, :], gap, far).min(-1).values
    bucket = torch.bucketize(nearest, torch.tensor(DISTANCE_EDGES, device=mention.device), right=True)
    none = ~mention.any(1, keepdim=True)
    return torch.where(none, torch.full_like(bucket, NO_MENTION), bucket)


def mean_gate(mask: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean of the (B, m, d) mask over real tokens and features: the sparsity prior's term."""
    weights = real.unsqueeze(-1).to(mask.dtype)
    return (mask * weights).sum() / (weights.sum() * mask.shape[-1]).clamp(min=1.0)
