"""The target-aware training machinery beyond the paper, as one component (TargetAware): it owns
its data (the clause copies of training and D_dev rows, drawn from their own seed), its parameter
(gamma, the copy branch's scheduler) and its losses (the copy branch's term of the lower objective,
the paired D_dev objective of the upper level). The trainer asks it for them; with both opt-ins off
it adds nothing.

One word for each thing once called "counterfactual". Names written to disk or set on the command
line keep the old word; this table is where each maps:

  intervened features   MFS's do-intervention output Ebar (Eq. 3-5), the paper's "counterfactual
                        features" (model/mfs.py).
  clause copy           a row with a clause about something else appended, label, target and image
                        kept: this component's data. Old word in data/counterfactual.py
                        (counterfactual_copies, counterfactual_split) and phrases.json's
                        "counterfactual" grammar.
  copy branch           the lower-level term L_c = CE(copy) + w JS(row || copy) on a share of each
                        batch, scheduled by phi_c = softplus(gamma * eff_c), eff_c =
                        exp(L_t(copy) - L_t(row)). Old word: TrainConfig.counterfactual_share (the
                        copy share), the regime tag "+cf-branch-<share>"; log columns eff_c, phi_c,
                        L_c, gamma, hypergrad_gamma.
  paired dev objective  L_dev = L_t + L_v on D_dev rows + L_t on their clause copies + w JS(row ||
                        copy). Old word: upper_objective="counterfactual", the regime tag
                        "+dev-counterfactual"; log columns dev_invariance, dev_L_t_edited.
  stress edit           one change of a test row that keeps its label: the stress test, no part of
                        training. Old word: data/counterfactual.py's module name (EDITS).

w is TrainConfig.invariance_weight, which today weighs both JS terms; here it is read once into
copy_invariance_weight and dev_invariance_weight. The copies' seed (copy_seed) is DataConfig.augment_seed,
which the augment_clauses copies read too: so every existing run's copies are the ones it trained on.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from cmcs_core.config import RunConfig
from cmcs_core.data.counterfactual import counterfactual_split
from cmcs_core.data.dataset import Split
from cmcs_core.model.cmcs import CMCSModel, ScheduledTerm

GAMMA_KEY = "gamma"  # gamma's name in the model's state: best.safetensors and last_state.pt keep it


class Rows(Protocol):
    """A split's tensors (pipeline.SplitTensors): its rows, and batches of them by index."""

    split: Split

    def batch(self, idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]: ...


def invariance(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean Jensen-Shannon divergence (nats, in [0, log 2]) between the text predictions of
    rows and their clause copies: zero exactly when every pair is predicted alike."""
    p, q = logits_a.float().softmax(-1), logits_b.float().softmax(-1)
    mid = (0.5 * (p + q)).clamp(min=1e-12).log()
    kl = lambda a: (a * (a.clamp(min=1e-12).log() - mid)).sum(-1)  # noqa: E731
    return (0.5 * (kl(p) + kl(q))).mean()


class TargetAware:
    """The copy branch (copy_share > 0) and the paired dev objective (paired_dev), with the clause
    copies both read. Build it with `of(cfg)`, give it its rows (`build_copies`) and its model
    (`attach`); then `lower_terms` and `dev_objective` are its losses, `named_scheduler_parameters` its
    parameters (the trainer adds them to phi)."""

    def __init__(self, copy_share: float = 0.0, paired_dev: bool = False, invariance_weight: float = 1.0,
                 copy_seed: int = 0) -> None:
        self.copy_share = copy_share
        self.paired_dev = paired_dev
        self.copy_invariance_weight = invariance_weight
        self.dev_invariance_weight = invariance_weight
        self.copy_seed = copy_seed
        self.train_copies: Rows | None = None  # row i: the clause copy of training row i
        self.dev_copies: Rows | None = None  # row i: the clause copy of D_dev row i
        self.model: CMCSModel | None = None
        self.gamma: nn.Parameter | None = None  # the copy branch's scheduler, made by attach

    @classmethod
    def of(cls, cfg: RunConfig, copies_from: "TargetAware | None" = None) -> "TargetAware":
        """Every setting of the component, read from a run's config in this one place. `copies_from`: a
        component whose clause copies (built with the same seed) this one keeps, so a caller that
        changes other settings over loaded data need not build them again."""
        t = cfg.train
        made = cls(t.counterfactual_share, t.upper_objective == "counterfactual", t.invariance_weight,
                   cfg.data.augment_seed)
        if copies_from is not None and copies_from.copy_seed == made.copy_seed:
            made.train_copies, made.dev_copies = copies_from.train_copies, copies_from.dev_copies
        return made

    @property
    def copy_branch(self) -> bool:
        """Whether the copy branch is on (it then owns gamma and the training rows' copies)."""
        return self.copy_share > 0

    # -- data ------------------------------------------------------------------------------
    def copies_of(self, split: Split) -> Split:
        """The split with each row replaced by its clause copy (same order): a pure function of
        the rows and copy_seed."""
        return counterfactual_split(split, self.copy_seed)

    def build_copies(self, train: Rows, dev: Rows, encode: Callable[[Split], Rows]) -> None:
        """The clause copies this component reads, of the training rows (copy branch) and of the D_dev
        rows (paired dev objective); `encode` turns a split into tensors (Pipeline.tensors)."""
        self.train_copies = encode(self.copies_of(train.split)) if self.copy_branch else None
        self.dev_copies = encode(self.copies_of(dev.split)) if self.paired_dev else None

    # -- parameters ------------------------------------------------------------------------
    def attach(self, model: CMCSModel) -> None:
        """Run the copies through `model`. gamma starts like alpha and beta and joins the model's
        state as GAMMA_KEY, so checkpoints save and restore it with the rest."""
        self.model = model
        self.gamma = None
        if self.copy_branch:
            self.gamma = nn.Parameter(torch.tensor(float(model.cfg.alpha_init), device=model.alpha.device))
            model.register_parameter(GAMMA_KEY, self.gamma)

    def named_scheduler_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The component's part of phi, moved by the upper level after the model's alpha and beta."""
        return [(GAMMA_KEY, self.gamma)] if self.gamma is not None else []

    def log_row(self) -> dict[str, float]:
        return {GAMMA_KEY: self.gamma.item()} if self.gamma is not None else {}

    # -- losses ----------------------------------------------------------------------------
    def lower_terms(self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor],
                    encoder_grad: bool = True) -> list[ScheduledTerm]:
        """The component's terms of the lower objective (CMCSModel.scheduled_loss schedules them):
        the copy branch on the batch's first rows and their clause copies (batches are shuffled, so
        the first rows are a random share)."""
        if not self.copy_branch:
            return []
        k = max(1, math.ceil(self.copy_share * len(batch["label"])))
        copies = self.train_copies.batch(batch["index"][:k].cpu(), self.model.alpha.device)
        losses = self.copy_losses(out, self.model(copies, encoder_grad=encoder_grad), batch)
        return [ScheduledTerm("c", losses["L_c"], raw=losses["L_c_copy"], bar=losses["L_c_row"],
                              scheduler=self.gamma)]

    def copy_losses(self, out: dict[str, torch.Tensor], copy_out: dict[str, torch.Tensor],
                    batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The copy branch on the first k rows of a batch and their copies (k = len(copy_out)):
        L_c = CE(copy) + copy_invariance_weight * JS(row || copy), and the two text losses whose
        gap is its causal effect (copy: raw, row: bar)."""
        k = len(copy_out["text_logits"])
        y = batch["label"][:k]
        row_lt = F.cross_entropy(out["text_logits"][:k], y)
        copy_lt = F.cross_entropy(copy_out["text_logits"], y)
        inv = invariance(out["text_logits"][:k], copy_out["text_logits"])
        return {"L_c": copy_lt + self.copy_invariance_weight * inv, "L_c_copy": copy_lt, "L_c_row": row_lt}

    def dev_objective(self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor],
                      losses: dict[str, torch.Tensor], encoder_grad: bool = True
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """The upper level's L_dev of a D_dev batch: the model's (L_t + L_v), or with paired_dev the
        paired dev objective on the batch's rows and their clause copies."""
        if not self.paired_dev:
            return self.model.dev_loss(losses), {}
        copies = self.dev_copies.batch(batch["index"].cpu(), self.model.alpha.device)
        return self.paired_dev_loss(losses, out, self.model(copies, encoder_grad=encoder_grad), batch)

    def paired_dev_loss(self, losses: dict[str, torch.Tensor], out: dict[str, torch.Tensor],
                        copy_out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                        ) -> tuple[torch.Tensor, dict[str, float]]:
        """L_t + L_v on the D_dev rows, plus L_t on their clause copies (same label), plus
        dev_invariance_weight x the invariance between the two predictions: both must be classified
        right, and alike."""
        copy_lt = F.cross_entropy(copy_out["text_logits"], batch["label"])
        inv = invariance(out["text_logits"], copy_out["text_logits"])
        total = self.model.dev_loss(losses) + copy_lt + self.dev_invariance_weight * inv
        return total, {"dev_invariance": inv.item(), "dev_L_t_edited": copy_lt.item()}
