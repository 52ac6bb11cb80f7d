"""The CMCS model: text tower, MFS per modality, classifiers, the causal scheduler and fusion.

The ablations of Table 2 and the text-only baseline are switches of this one module
(ModelConfig.use_visual / use_cms / mask_mode), so they differ in nothing else. The target-aware
training machinery beyond the paper (clause copies, the copy branch, the paired D_dev objective)
is a component of its own, model/target_aware.py, which hands its loss terms to scheduled_loss.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from cmcs_core.config import ModelConfig
from cmcs_core.encoders.text import TextEncoder
from cmcs_core.model.mfs import CausalIntervention, mean_gate, mention_distance, mention_tokens, pool, target_segment

EFFECT_LOG_CLAMP = 10.0  # exp() of a loss gap is clamped to e^±10 so one bad batch cannot explode phi


class MaskLevel(enum.Enum):
    """Where the text mask learns (TrainConfig.mask_level), resolved once per run: in theta with the
    lower level ("lower", the paper), as a hyperparameter moved only by the upper level ("upper": the
    whole gate), or split ("relation": the gate's content part in theta, its target term upper)."""

    LOWER = "lower"
    UPPER = "upper"
    RELATION = "relation"

    @property
    def upper_parts(self) -> tuple[str, ...]:
        """The text MFS's submodules (CausalIntervention) the upper level moves at this level."""
        return {MaskLevel.LOWER: (), MaskLevel.UPPER: ("mask_net", "relation"), MaskLevel.RELATION: ("relation",)}[self]


@dataclass(frozen=True)
class ScheduledTerm:
    """A loss the scheduler weighs beside L_t and L_v: phi = softplus(scheduler * eff), eff =
    exp(raw - bar) (its causal effect, as Eq. 7-8), phi = 1 without CMS. `name` suffixes its log
    columns (eff_<name>, phi_<name>, L_<name>)."""

    name: str
    loss: torch.Tensor
    raw: torch.Tensor
    bar: torch.Tensor
    scheduler: nn.Parameter


class TextTower(nn.Module):
    """E^t from a batch: cached hidden states through the trainable top layers.

    start == num_layers: frozen (identity over cached top-layer states);
    0 < start < num_layers: layers start.. train over cached states of layer `start`;
    start == -1: the whole encoder trains from token ids.
    """

    def __init__(self, encoder: TextEncoder, finetune_layers: int) -> None:
        super().__init__()
        self.encoder = encoder
        total = encoder.num_layers
        if finetune_layers < -1 or finetune_layers > total:
            raise ValueError(f"finetune_layers must be -1, 0..{total}; got {finetune_layers}")
        self.start = -1 if finetune_layers == -1 else total - finetune_layers
        for p in encoder.parameters():
            p.requires_grad_(False)
        if self.start == -1:
            for p in encoder.model.parameters():
                p.requires_grad_(True)
        elif self.start < total:
            for p in encoder.layers[self.start :].parameters():
                p.requires_grad_(True)

    @property
    def cache_layer(self) -> int:
        """Which hidden states the dataset must provide (-1: token ids only)."""
        return self.start

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.start == -1:
            ids = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
            return self.encoder.hidden_at(ids, self.encoder.num_layers)
        hidden = batch["text_hidden"].to(self.dtype)
        if self.start == self.encoder.num_layers:
            return hidden
        return self.encoder.run_layers(hidden, batch["attention_mask"], self.start)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.encoder.parameters()).dtype


class CMCSModel(nn.Module):
    def __init__(self, cfg: ModelConfig, text_tower: TextTower, visual_dim: int | None) -> None:
        super().__init__()
        self.cfg = cfg  # validated with its RunConfig (config.build_config, the trainer)
        self.readouts = cfg.pooling.split("+")  # e.g. ["mean", "target"]: concatenated (TD-BERT-style)
        self.text_tower = text_tower
        d_t = text_tower.encoder.dim
        self.text_mfs = CausalIntervention(d_t, cfg.hidden_dim, cfg.dropout, cfg.mask_mode, cfg.mask_granularity,
                                           target_conditioned=cfg.mask_condition == "target")
        self.text_head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d_t * len(self.readouts), 3))  # f_t
        if cfg.use_visual:
            if visual_dim is None:
                raise ValueError("use_visual needs a visual feature dimension")
            self.visual_mfs = CausalIntervention(visual_dim, cfg.hidden_dim, cfg.dropout, cfg.mask_mode,
                                                 cfg.mask_granularity)
            self.visual_head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(visual_dim, 3))  # f_v, sigmoids
        # phi = {alpha, beta}: the scheduler, optimised only by the upper level.
        self.alpha = nn.Parameter(torch.tensor(float(cfg.alpha_init)))
        self.beta = nn.Parameter(torch.tensor(float(cfg.alpha_init)))

    # -- parameter groups used by the bi-level optimiser --------------------------------
    def named_scheduler_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """phi's parameters by name, in the order of the hypergradient's log: alpha, beta (visual)."""
        return [("alpha", self.alpha), ("beta", self.beta)] if self.cfg.use_visual else [("alpha", self.alpha)]

    def scheduler_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_scheduler_parameters()]

    def head_parameters(self, mask_level: MaskLevel | str = MaskLevel.LOWER) -> list[nn.Parameter]:
        """theta's heads: MFS networks and classifiers, less what `mask_level` makes a
        hyperparameter (upper_mask_parameters)."""
        level = MaskLevel(mask_level)
        parts = [(self.text_mfs, level.upper_parts), (self.text_head, ())]
        if self.cfg.use_visual:
            parts += [(self.visual_mfs, ()), (self.visual_head, ())]
        return [p for m, upper in parts for name, p in m.named_parameters()
                if p.requires_grad and name.split(".", 1)[0] not in upper]

    def mask_parameters(self) -> list[nn.Parameter]:
        """The text mask's own network and its target term."""
        return self.text_mfs.gate_parameters()

    def upper_mask_parameters(self, mask_level: MaskLevel | str) -> list[nn.Parameter]:
        """What the upper level moves besides phi: nothing ("lower", the paper), the whole text
        mask network ("upper"), or only its target term ("relation": the gate's content part learns
        from the training rows, its relation to the target from D_dev)."""
        level = MaskLevel(mask_level)  # config.validate refuses relation without a target-conditioned gate
        mods = [getattr(self.text_mfs, part, None) for part in level.upper_parts]
        return [p for m in mods if m is not None for p in m.parameters()]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.text_tower.parameters() if p.requires_grad]

    # -- forward ------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor], encoder_grad: bool = True,
                release: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Predictions of raw and intervened features (MFS's do-intervention output) for both branches.

        `release` ({"text": (B, m) bool, "visual": (B, mv) bool}, optional) passes the flagged
        tokens through MFS with gate 1 (explain.mask_effects); training never sets it.
        """
        release = release or {}
        with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
            text = self.text_tower(batch)
        text = text.float()
        spans = self._token_sets(batch)
        target, distance = None, None
        if self.text_mfs.relation is not None:
            target = pool(text, spans["target"])
            distance = mention_distance(spans["mention"], batch["attention_mask"])
        text_bar, text_sel = self.text_mfs(text, release.get("text"), target, distance)
        # A target-conditioned gate also decides how much each token counts in the readout, so a
        # token it closes leaves the average instead of diluting it (pooling weights = gates).
        weights = text_sel[..., 0] if self.text_mfs.relation is not None else None
        if weights is not None and release.get("text") is not None:
            weights = torch.where(release["text"], torch.ones_like(weights), weights)
        out = {
            "text_raw_pooled": self._readout(text, spans),
            "text_bar_pooled": self._readout(text_bar, spans, weights),
            "text_mask": text_sel,
        }
        out["text_logits_raw"] = self.text_head(out["text_raw_pooled"])
        out["text_logits"] = self.text_head(out["text_bar_pooled"])
        if self.cfg.use_visual:
            vis, vis_mask = batch["visual_tokens"].float(), batch["visual_mask"]
            vis_bar, vis_sel = self.visual_mfs(vis, release.get("visual"))
            out["visual_raw_pooled"] = pool(vis, vis_mask, "mean")
            out["visual_bar_pooled"] = pool(vis_bar, vis_mask, "mean")
            out["visual_mask"] = vis_sel
            out["visual_logits_raw"] = self.visual_head(out["visual_raw_pooled"])
            out["visual_logits"] = self.visual_head(out["visual_bar_pooled"])
        return out

    def _token_sets(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The token sets the readouts average: all real tokens ("mean"), the target segment
        ("target", opt-in: the tweet reaches the classifier only through what attention carried
        into the target's states), the target's words inside the tweet ("mention", falling back
        to the target segment where the tweet was cut before them). Only what is needed is built."""
        sets = {"mean": batch["attention_mask"]}
        wanted = set(self.readouts) | ({"target", "mention"} if self.text_mfs.relation is not None else set())
        if wanted & {"target", "mention"}:
            tok = self.text_tower.encoder.tokenizer
            ids, real = batch["input_ids"], batch["attention_mask"]
            sets["target"] = target_segment(ids, real, tok.sep_token_id, tok.all_special_ids)
            if "mention" in wanted:
                sets["mention"] = mention_tokens(ids, real, tok.sep_token_id, tok.all_special_ids)
        return sets

    def _readout(self, features: torch.Tensor, sets: dict[str, torch.Tensor],
                 weights: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled text vector: one pooling, or several concatenated ("mean+target");
        `weights` (B, m) weigh the tokens of every averaged set (a gate-weighted mean)."""
        parts = []
        for how in self.readouts:
            if how == "cls":
                parts.append(features[:, 0])
                continue
            chosen = sets[how]
            if how == "mention":  # a row without a mention reads its target segment instead
                chosen = torch.where(chosen.any(1, keepdim=True), chosen, sets["target"])
            parts.append(pool(features, chosen if weights is None else chosen.float() * weights))
        return torch.cat(parts, -1)

    # -- losses, causal effects (Eq. 3, 6-8) and scheduling weights (Eq. 9) --------------
    def branch_losses(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        y = batch["label"]
        losses = {
            "L_t": F.cross_entropy(out["text_logits"], y),
            "L_t_raw": F.cross_entropy(out["text_logits_raw"], y),
        }
        if self.cfg.use_visual:
            yv = batch["image_label"]
            losses["L_v"] = F.binary_cross_entropy_with_logits(out["visual_logits"], yv)
            losses["L_v_raw"] = F.binary_cross_entropy_with_logits(out["visual_logits_raw"], yv)
        if self.cfg.mask_sparsity > 0:  # beyond the paper: a prior that makes the mask choose
            sparse = mean_gate(out["text_mask"], batch["attention_mask"])
            if self.cfg.use_visual:
                sparse = sparse + mean_gate(out["visual_mask"], batch["visual_mask"])
            losses["L_sparse"] = sparse
        return losses

    @staticmethod
    def causal_effect(loss_raw: torch.Tensor, loss_bar: torch.Tensor) -> torch.Tensor:
        """exp(L(raw) - L(intervened)) > 1 when the selected features help (Eq. 7-8)."""
        gap = (loss_raw - loss_bar).detach().clamp(-EFFECT_LOG_CLAMP, EFFECT_LOG_CLAMP)
        return torch.exp(gap)

    def scheduled_loss(self, losses: dict[str, torch.Tensor], detach_phi: bool = True,
                       terms: Sequence[ScheduledTerm] = ()) -> tuple[torch.Tensor, dict[str, float]]:
        """phi_t * L_t + phi_v * L_v (+ phi * loss of each further term, e.g. the copy branch of
        model/target_aware.py); phi fixed to 1 without CMS."""
        eff_t = self.causal_effect(losses["L_t_raw"], losses["L_t"])
        phi_t = self._phi(self.alpha, eff_t, detach_phi)
        total = phi_t * losses["L_t"]
        stats = {"eff_t": eff_t.item(), "phi_t": float(phi_t.detach()), "L_t": losses["L_t"].item()}
        if self.cfg.use_visual:
            eff_v = self.causal_effect(losses["L_v_raw"], losses["L_v"])
            phi_v = self._phi(self.beta, eff_v, detach_phi)
            total = total + phi_v * losses["L_v"]
            stats.update(eff_v=eff_v.item(), phi_v=float(phi_v.detach()), L_v=losses["L_v"].item())
        else:
            stats.update(eff_v=math.nan, phi_v=math.nan, L_v=math.nan)
        for term in terms:  # each scheduled by its own causal effect
            eff = self.causal_effect(term.raw, term.bar)
            phi = self._phi(term.scheduler, eff, detach_phi)
            total = total + phi * term.loss
            stats.update({f"eff_{term.name}": eff.item(), f"phi_{term.name}": float(phi.detach()),
                          f"L_{term.name}": term.loss.item()})
        if "L_sparse" in losses:  # outside phi: the prior is not a modality's loss to schedule
            total = total + self.cfg.mask_sparsity * losses["L_sparse"]
            stats["L_sparse"] = losses["L_sparse"].item()
        return total, stats

    def _phi(self, scheduler: nn.Parameter, effect: torch.Tensor, detach: bool) -> torch.Tensor:
        """Eq. 9: softplus(scheduler * effect), or 1 without CMS; `detach` holds the scheduler fixed (lower level)."""
        if not self.cfg.use_cms:
            return torch.ones(())
        return F.softplus((scheduler.detach() if detach else scheduler) * effect)

    def dev_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """L_dev = L_t + L_v on D_dev: it does not depend on phi directly."""
        return losses["L_t"] + (losses["L_v"] if self.cfg.use_visual else 0.0)

    # -- inference (Eq. 15) ---------------------------------------------------------------
    def fuse(self, out: dict[str, torch.Tensor], fusion_sim: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """y = (1 - s) p_text + s p_image, s = cos(image, prompt) in [0, 1]."""
        p_text = out["text_logits"].float().softmax(-1)
        res = {"p_text": p_text, "p_final": p_text}
        if not self.cfg.use_visual:
            res["s"] = torch.zeros(len(p_text))
            return res
        sig = torch.sigmoid(out["visual_logits"].float())
        p_image = sig / sig.sum(-1, keepdim=True).clamp(min=1e-8)
        s = self.fusion_weight(fusion_sim, len(p_text), p_text.device)
        res.update(p_image=p_image, s=s, p_final=(1 - s[:, None]) * p_text + s[:, None] * p_image)
        return res

    def fusion_is_constant(self, fusion_sim: torch.Tensor | None) -> bool:
        """Whether s is cfg.fusion_constant for these inputs rather than their image-prompt similarity."""
        mode = self.cfg.fusion
        have_sim = fusion_sim is not None and not torch.isnan(fusion_sim).any()
        if mode == "similarity" and not have_sim:
            raise ValueError("fusion='similarity' needs an encoder with a text tower or captions")
        return mode == "constant" or (mode == "auto" and not have_sim)

    def fusion_weight(self, fusion_sim: torch.Tensor | None, n: int, device) -> torch.Tensor:
        if self.fusion_is_constant(fusion_sim):
            return torch.full((n,), float(self.cfg.fusion_constant), device=device)
        return fusion_sim.to(device).float().clamp(0.0, 1.0)
