"""Does the selection machinery engage? What reaches the masks and the scheduler in a run.

Read from a run folder's per-batch log (batches.parquet; the machinery columns the trainer
logs) and its test masks: the lower-level gradient that reaches the text mask network and
the share the gradient clip takes off it, how far the gates spread over tokens and how many
saturate, the hypergradient on phi (and on the mask when it is an upper-level variable) and the
share its clip takes off, the cosine between grad_theta L_dev and grad_theta L_train (near 1:
the upper level asks for nothing but "fit the training loss more"), and how far alpha and beta
moved. docs/method.md, "Why MFS and CMS stay inert", is made from this (`cmcs analyse machinery`;
`cmcs analyse curvature` adds the heads' Hessian at the kept checkpoint).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cmcs_core.command import cli_command
from cmcs_core.report.regime import Variant
from cmcs_core.runs.files import CONFIG_FILE
from cmcs_core.runs.reader import Run, RunReadError

NEEDED = ("grad_norm", "mask_grad_norm", "mask_token_std")


def _share_removed(norms: pd.Series, clip: float) -> pd.Series:
    """Share of a gradient a norm clip takes away: 1 - min(1, clip / |g|)."""
    return 1.0 - np.minimum(1.0, clip / norms.clip(lower=1e-12))


def gate_saturation(run: Run, split: str = "test") -> dict[str, float]:
    """Per-token text gates of a split (masks_<split>): their spread and how many sit near 0.5
    (|g - 0.5| < 0.05: the mask is not choosing) or near 0/1 (saturated: the sigmoid's gradient
    vanishes). Empty when the run kept no masks."""
    try:
        samples = run.masks(split)["samples"]
    except RunReadError:
        return {}
    kept = [np.asarray(s["mask"], dtype=float) for s in samples if s.get("mask")]
    if not kept:
        return {}
    gates = np.concatenate(kept)
    return {"gate_median": float(np.median(gates)), "gate_p05": float(np.percentile(gates, 5)),
            "gate_p95": float(np.percentile(gates, 95)), "gates_near_half": float(np.mean(np.abs(gates - 0.5) < 0.05)),
            "gates_saturated": float(np.mean((gates < 0.05) | (gates > 0.95)))}


def phi_ratio_last(run: Run, batches: pd.DataFrame) -> float:
    """Median phi_v / phi_t over the last epoch's batches; NaN without a visual branch."""
    if not run.cfg.model.use_visual or "phi_v" not in batches:
        return float("nan")
    last = batches[batches.epoch == batches.epoch.max()]
    return float((last.phi_v / last.phi_t).median())


def machinery_summary(run: Run) -> dict[str, object]:
    """One run's figures (fractions, not percent). Raises RunReadError for a run without a batches
    log or logged before the machinery columns existed."""
    cfg = run.cfg
    b = run.batches()
    missing = [c for c in NEEDED if c not in b]
    if missing:
        raise RunReadError(f"{run.path}: the batches log has no {', '.join(missing)} (trained before this log "
                           f"existed; retrain with `{cli_command('train', '--config', run.path / CONFIG_FILE)}` in a "
                           "new folder)")
    t = cfg.train
    first, last = b[b.epoch == b.epoch.min()], b[b.epoch == b.epoch.max()]
    upper = b[b.hypergrad_norm.notna()] if "hypergrad_norm" in b else b.iloc[:0]
    out: dict[str, object] = {
        "run": run.name, "method": cfg.model.method, "variant": str(Variant.of(cfg)), "dataset": run.dataset,
        "finetune_layers": cfg.encoder.finetune_layers, "mask_level": t.mask_level,
        "upper_objective": t.upper_objective, "mask_condition": cfg.model.mask_condition,
        "steps": len(b), "upper_steps": len(upper),
        "mask_grad_norm": float(b.mask_grad_norm.median()),
        "grad_norm": float(b.grad_norm.median()),
        "mask_grad_share": float((b.mask_grad_norm / b.grad_norm.clip(lower=1e-12)).median()),
        "clip_binds": float((b.grad_norm > t.grad_clip).mean()),
        "clip_removes": float(_share_removed(b.grad_norm, t.grad_clip).median()),
        "gate_spread_first": float(first.mask_token_std.median()),
        "gate_spread_last": float(last.mask_token_std.median()),
        "gate_mean_last": float(last.mask_mean.median()),
        "alpha_moved": float(b.alpha.iloc[-1] - cfg.model.alpha_init),
        "beta_moved": float(b.beta.iloc[-1] - cfg.model.alpha_init) if cfg.model.use_visual else np.nan,
        "phi_ratio_last": phi_ratio_last(run, b),
    }
    if len(upper):
        out.update({
            "hypergrad_norm": float(upper.hypergrad_norm.median()),
            "hypergrad_clip_removes": float(_share_removed(upper.hypergrad_norm, t.hypergrad_clip).median()),
            "dev_train_cos_first": float(upper[upper.epoch == upper.epoch.min()].dev_train_cos.median()),
            "dev_train_cos_last": float(upper[upper.epoch == upper.epoch.max()].dev_train_cos.median()),
            # the upper level moving alpha and beta the same way acts as a learning-rate knob, not a choice
            "alpha_beta_same_sign": (float((np.sign(upper.hypergrad_alpha) == np.sign(upper.hypergrad_beta)).mean())
                                     if cfg.model.use_visual else np.nan),
        })
        if "hypergrad_mask_norm" in upper and upper.hypergrad_mask_norm.notna().any():
            out["hypergrad_mask_norm"] = float(upper.hypergrad_mask_norm.median())
        if "dev_invariance" in upper and upper.dev_invariance.notna().any():
            out["dev_invariance_first"] = float(upper[upper.epoch == upper.epoch.min()].dev_invariance.median())
            out["dev_invariance_last"] = float(upper[upper.epoch == upper.epoch.max()].dev_invariance.median())
    out.update(gate_saturation(run))
    return out


def head_curvature(run: Run, batches: int = 3, iters: int = 20, seed: int = 0) -> dict[str, float]:
    """lambda_max of the lower objective's Hessian over the hypergradient's parameters, at the run's
    kept checkpoint, on a few training batches (power iteration on Hessian-vector products), and
    the factor |1 - eta lambda|^K by which the run's K-term Neumann series multiplies that direction.
    Above 1 the series diverges there, and the clipped hypergradient keeps only its direction."""
    import torch

    from cmcs_core.inference import Predictor
    from cmcs_core.model.hypergrad import top_eigenvalue

    pred = Predictor(run.path)
    cfg, model = pred.cfg, pred.model
    data = pred.pipe.tensors(pred.pipe.load_split("train", cfg.data.max_train_samples), progress=False)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    values = []
    params = model.head_parameters(cfg.train.mask_level)
    torch.manual_seed(seed)
    for b in range(batches):
        batch = data.batch(order[b * cfg.train.batch_size:(b + 1) * cfg.train.batch_size], pred.pipe.device)
        loss, _ = model.scheduled_loss(model.branch_losses(model(batch, encoder_grad=False), batch), detach_phi=True)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        pairs = [(g, p) for g, p in zip(grads, params) if g is not None]
        values.append(abs(top_eigenvalue([g for g, _ in pairs], [p for _, p in pairs], iters)))
    lam = float(np.median(values))
    eta, k = cfg.train.neumann_eta, cfg.train.K
    if cfg.train.neumann_eta_rule == "curvature":  # the step the run took: its logged median
        eta = float(run.batches()["neumann_eta"].median())
    return {"hessian_top_eig": lam, "eta_lambda": eta * lam, "neumann_growth": abs(1 - eta * lam) ** k}


def machinery(runs: list[Run], curvature: bool = False) -> pd.DataFrame:
    """One row per run that has the machinery columns; the others are named in .attrs["skipped"]
    with the reason. `curvature` adds head_curvature (needs the checkpoint and the data; a few
    seconds per run)."""
    rows, skipped = [], []
    for run in runs:
        try:
            row = machinery_summary(run)
            if curvature:
                if not run.has_checkpoint:
                    raise RunReadError(f"{run.path}: no checkpoint (the curvature is measured at the kept epoch)")
                row.update(head_curvature(run))
            rows.append(row)
        except (OSError, ValueError) as err:
            skipped.append(str(err))
    frame = pd.DataFrame(rows)
    frame.attrs["skipped"] = skipped
    return frame


def curvature(runs: list[Run]) -> pd.DataFrame:
    """machinery with the heads' Hessian at each run's kept checkpoint (`cmcs analyse curvature`)."""
    return machinery(runs, curvature=True)


COLUMNS = {  # column -> (heading, format)
    "mask_grad_norm": ("mask grad (median)", "{:.3g}"),
    "mask_grad_share": ("mask share of grad", "{:.2f}"),
    "clip_binds": ("lower clip binds", "{:.0%}"),
    "clip_removes": ("lower clip removes (median)", "{:.0%}"),
    "gate_spread_first": ("gate spread over tokens, epoch 1", "{:.3f}"),
    "gate_spread_last": ("… last epoch", "{:.3f}"),
    "gates_near_half": ("test gates within 0.05 of 0.5", "{:.0%}"),
    "gates_saturated": ("saturated (<0.05 or >0.95)", "{:.0%}"),
    "hypergrad_norm": ("phi hypergrad (median)", "{:.3g}"),
    "hypergrad_clip_removes": ("upper clip removes (median)", "{:.1%}"),
    "dev_train_cos_first": ("cos(grad L_dev, grad L_train), epoch 1", "{:.2f}"),
    "dev_train_cos_last": ("… last epoch", "{:.2f}"),
    "alpha_beta_same_sign": ("upper steps moving alpha and beta alike", "{:.0%}"),
    "alpha_moved": ("alpha moved", "{:+.3f}"),
    "beta_moved": ("beta moved", "{:+.3f}"),
    "phi_ratio_last": ("phi_v / phi_t, last epoch", "{:.2f}"),
    "hessian_top_eig": ("lambda_max of the heads' Hessian", "{:.0f}"),
    "eta_lambda": ("eta x lambda_max (series converges below 2)", "{:.2f}"),
    "neumann_growth": ("(1 - eta lambda)^K in absolute value, top direction", "{:.3g}"),
}


def machinery_markdown(table: pd.DataFrame) -> str:
    """The table transposed (a column per run), since there are more figures than runs."""
    skipped = table.attrs.get("skipped", [])
    left_out = "".join(f"\nleft out: {why}" for why in skipped) + ("\n" if skipped else "")
    if table.empty:
        return "No run with the machinery columns (train a run with this version).\n" + left_out
    names = [f"{r.dataset} {r.variant}" + ("" if r.finetune_layers == 0 else f", top-{r.finetune_layers}"
                                           if r.finetune_layers > 0 else ", all layers") for r in table.itertuples()]
    lines = ["| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for col, (title, fmt) in COLUMNS.items():
        if col not in table:
            continue
        cells = ["–" if pd.isna(v) else fmt.format(v) for v in table[col]]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + left_out
