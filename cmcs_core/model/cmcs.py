"""The CMCS model: text tower, MFS per modality, classifiers, the causal scheduler and fusion.

The ablations of Table 2 and the text-only baseline are switches of this one module
(ModelConfig.use_visual / use_cms / mask_mode), so they differ in nothing else.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from cmcs_core.config import ModelConfig
from cmcs_core.encoders.text import TextEncoder
from cmcs_core.model.mfs import CausalIntervention, mean_gate, pool, target_segment

EFFECT_LOG_CLAMP = 10.0  # exp() of a loss gap is clamped to e^±10 so one bad batch cannot explode phi


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
        if cfg.pooling not in ("mean", "cls", "target"):
            raise ValueError(f"pooling must be mean, cls or target, not {cfg.pooling!r}")
        self.cfg = cfg
        self.text_tower = text_tower
        d_t = text_tower.encoder.dim
        self.text_mfs = CausalIntervention(d_t, cfg.hidden_dim, cfg.dropout, cfg.mask_mode, cfg.mask_granularity)
        self.text_head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d_t, 3))  # f_t, softmax
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
    def scheduler_parameters(self) -> list[nn.Parameter]:
        return [self.alpha, self.beta] if self.cfg.use_visual else [self.alpha]

    def head_parameters(self) -> list[nn.Parameter]:
        mods = [self.text_mfs, self.text_head]
        if self.cfg.use_visual:
            mods += [self.visual_mfs, self.visual_head]
        return [p for m in mods for p in m.parameters() if p.requires_grad]

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.text_tower.parameters() if p.requires_grad]

    # -- forward ------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor], encoder_grad: bool = True,
                release: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Predictions of raw and counterfactual features for both branches.

        `release` ({"text": (B, m) bool, "visual": (B, mv) bool}, optional) passes the flagged
        tokens through MFS with gate 1 (explain.mask_effects); training never sets it.
        """
        release = release or {}
        with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
            text = self.text_tower(batch)
        text = text.float()
        text_bar, text_sel = self.text_mfs(text, release.get("text"))
        pool_mask = self._pool_mask(batch)
        out = {
            "text_raw_pooled": pool(text, pool_mask, self.cfg.pooling),
            "text_bar_pooled": pool(text_bar, pool_mask, self.cfg.pooling),
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

    def _pool_mask(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The tokens the text branch averages: all real tokens, or only the target's
        (`pooling="target"`, opt-in: the tweet reaches the classifier only through what the
        encoder's attention carried into the target's states)."""
        if self.cfg.pooling != "target":
            return batch["attention_mask"]
        tok = self.text_tower.encoder.tokenizer
        return target_segment(batch["input_ids"], batch["attention_mask"], tok.sep_token_id, tok.all_special_ids)

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
        """exp(L(raw) - L(counterfactual)) > 1 when the selected features help (Eq. 7-8)."""
        gap = (loss_raw - loss_bar).detach().clamp(-EFFECT_LOG_CLAMP, EFFECT_LOG_CLAMP)
        return torch.exp(gap)

    def scheduled_loss(
        self, losses: dict[str, torch.Tensor], detach_phi: bool = True
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """phi_t * L_t + phi_v * L_v; phi fixed to 1 without CMS."""
        eff_t = self.causal_effect(losses["L_t_raw"], losses["L_t"])
        alpha = self.alpha.detach() if detach_phi else self.alpha
        phi_t = F.softplus(alpha * eff_t) if self.cfg.use_cms else torch.ones(())
        total = phi_t * losses["L_t"]
        stats = {"eff_t": eff_t.item(), "phi_t": float(phi_t.detach()), "L_t": losses["L_t"].item()}
        if self.cfg.use_visual:
            eff_v = self.causal_effect(losses["L_v_raw"], losses["L_v"])
            beta = self.beta.detach() if detach_phi else self.beta
            phi_v = F.softplus(beta * eff_v) if self.cfg.use_cms else torch.ones(())
            total = total + phi_v * losses["L_v"]
            stats.update(eff_v=eff_v.item(), phi_v=float(phi_v.detach()), L_v=losses["L_v"].item())
        else:
            stats.update(eff_v=math.nan, phi_v=math.nan, L_v=math.nan)
        if "L_sparse" in losses:  # outside phi: the prior is not a modality's loss to schedule
            total = total + self.cfg.mask_sparsity * losses["L_sparse"]
            stats["L_sparse"] = losses["L_sparse"].item()
        return total, stats

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

    def fusion_weight(self, fusion_sim: torch.Tensor | None, n: int, device) -> torch.Tensor:
        mode = self.cfg.fusion
        have_sim = fusion_sim is not None and not torch.isnan(fusion_sim).any()
        if mode == "similarity" and not have_sim:
            raise ValueError("fusion='similarity' needs an encoder with a text tower or captions")
        if mode == "constant" or (mode == "auto" and not have_sim):
            return torch.full((n,), float(self.cfg.fusion_constant), device=device)
        return fusion_sim.to(device).float().clamp(0.0, 1.0)
