"""Algorithm 1: H lower-level steps on theta with phi fixed, then one implicit-gradient step
on phi = {alpha, beta}; model selection on the validation split (accuracy by default,
--select-on dev_f1 | dev_loss); a resumable run folder."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from cmcs_core.checkpoint import load_trainable_state, trainable_state
from cmcs_core.config import SELECT_ON, RunConfig
from cmcs_core.data.counterfactual import augmented_split
from cmcs_core.evaluate import compute_metrics, predict_tensors, write_outputs
from cmcs_core.io import atomic_save, atomic_write_json
from cmcs_core.model.cmcs import CMCSModel, MaskLevel, ScheduledTerm
from cmcs_core.model.hypergrad import implicit_hypergradient
from cmcs_core.model.target_aware import TargetAware
from cmcs_core.pipeline import Pipeline, SplitTensors, resolve_device, torch_threads
from cmcs_core.precision import resolve_precision
from cmcs_core.preflight import check_inputs
from cmcs_core.progress import progress_bar
from cmcs_core.runs.files import run_paths
from cmcs_core.runs.formats import read_table, table_path, write_table
from cmcs_core.runs.holds import claim

BATCH_LOG_COLUMNS = [
    "epoch", "step", "global_step", "eff_t", "eff_v", "phi_t", "phi_v", "L_t", "L_v",
    "loss", "alpha", "beta", "hypergrad_norm", "hypergrad_alpha", "hypergrad_beta",
    # what reaches the selection machinery (docs/method.md, "Why MFS and CMS stay inert"): the lower
    # step's gradient norm before the clip and its text-mask part, the text gates' batch mean and their
    # spread over tokens; per upper step, cos(grad L_dev, grad L_train) and the mask's hypergradient
    "grad_norm", "mask_grad_norm", "mask_mean", "mask_token_std",
    "dev_train_cos", "hypergrad_mask_norm", "dev_invariance", "dev_L_t_edited", "hessian_top_eig", "neumann_eta",
    # the copy branch (model/target_aware.py; counterfactual_share): its effect, weight, loss and scheduler parameter
    "eff_c", "phi_c", "L_c", "gamma", "hypergrad_gamma",
]


POWER_ITERS = 5  # Hessian-vector products per upper step that estimate lambda_max (neumann_eta_rule="curvature")

def check_select_on(key: str) -> str:
    if key not in SELECT_ON:
        raise ValueError(f"unknown select_on {key!r}; choose from {sorted(SELECT_ON)}")
    return key


def improves(key: str, value: float, best: dict) -> bool:
    """Is an epoch's `key` strictly better than the best kept so far (none kept: `best`
    has no `key`)?"""
    if check_select_on(key) not in best:
        return True
    return value > best[key] if SELECT_ON[key] == "max" else value < best[key]


def dev_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Cross-entropy of the fused prediction (Eq. 15) on the validation split: smoother than
    accuracy, which moves in steps of 1/|dev| and ties often."""
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, None)).mean())


def seed_everything(seed: int) -> torch.Generator:
    """Seeds torch/numpy/random for this process; returns the generator that shuffles batches."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def warmup_linear_decay(total_steps: int, warmup_steps: int):
    """LR multiplier for step k: linear warm-up to 1 over `warmup_steps`, then linear decay to 0 at
    `total_steps` (transformers' get_linear_schedule_with_warmup)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def _setup_logger(path: Path) -> logging.Logger:
    logger = logging.getLogger(f"cmcs.run.{path.parent.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    return logger


class DevSampler:
    """Endless shuffled index batches over D_dev for the upper level. The permutation in use and
    how far into it the upper level has read are saved with the run's state, so a resumed run
    draws the same dev batches as an uninterrupted one (the shuffling generator is the run's own,
    shared with the training batches, and saved beside it)."""

    def __init__(self, subset: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.subset, self.batch_size, self.generator = subset, batch_size, generator
        self.order: torch.Tensor | None = None
        self.pos = 0

    def next_indices(self) -> torch.Tensor:
        if self.order is None or self.pos >= len(self.order):
            self.order = self.subset[torch.randperm(len(self.subset), generator=self.generator)]
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"order": self.order, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.pos = state["order"], state["pos"]


EpochCallback = Callable[[dict], None]


@dataclasses.dataclass(frozen=True)
class Variables:
    """Who moves what, resolved once from the config: theta (the heads, less what the mask level
    makes a hyperparameter, and the trainable encoder layers), phi (the model's alpha and beta, then
    the target-aware component's gamma) and the text mask's upper-level part."""

    heads: list[torch.nn.Parameter]
    encoder: list[torch.nn.Parameter]
    phi_names: list[str]
    phi: list[torch.nn.Parameter]
    upper_masks: list[torch.nn.Parameter]  # mask_level upper/relation: moved by the upper level alone
    encoder_in_hessian: bool  # hessian_params heads+encoder: the upper level differentiates through the encoder too

    @classmethod
    def of(cls, model: CMCSModel, component: TargetAware, mask_level: MaskLevel, hessian_params: str) -> "Variables":
        named_phi = model.named_scheduler_parameters() + component.named_scheduler_parameters()
        return cls(model.head_parameters(mask_level), model.encoder_parameters(), [n for n, _ in named_phi],
                   [p for _, p in named_phi], model.upper_mask_parameters(mask_level), hessian_params != "heads")

    @property
    def theta(self) -> list[torch.nn.Parameter]:
        """What the lower level's optimiser steps (and its gradient clip covers)."""
        return self.heads + self.encoder

    @property
    def hessian(self) -> list[torch.nn.Parameter]:
        """What the upper level's Hessian-vector products run over."""
        return self.heads + self.encoder if self.encoder_in_hessian else list(self.heads)


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, progress: bool = True,
                 on_epoch: EpochCallback | None = None, overwrite: bool = False) -> None:
        """`on_epoch(row)` is called after each epoch is logged and its state saved, with the epoch's
        row of epochs.csv plus `best` (the selection so far): a search reports dev figures
        through it without the trainer knowing the search engine. `overwrite`: a run_dir holding
        another config is moved aside (`set_aside` says where) instead of refused."""
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.paths = run_paths(self.run_dir)
        self.progress = progress
        self.on_epoch = on_epoch
        self.overwrite = overwrite
        self._cpu_start = time.process_time()  # fit() restarts it; metrics.json's cpu_seconds
        cfg.validate()  # fail before any work (a config from build_config was validated there: not checked again)
        device = resolve_device(cfg.train.device)
        # config.json holds the precision used (auto resolved here), so `train --config` repeats its arithmetic
        # and a resumed run never mixes two
        self.precision = resolve_precision(cfg.train.precision, device, training=True)
        self.cfg = cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision=self.precision.used))
        self._check_run_dir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(self.paths["config"])
        self.log = _setup_logger(self.paths["log"])
        self.log.info("precision %s (%s)", self.precision.used, self.precision.reason)
        self.generator = seed_everything(cfg.train.seed)
        self.pipe = Pipeline(cfg, device, self.precision)
        self.device = device

    def _check_run_dir(self) -> None:
        """Before anything is written: the inputs must exist here, and a folder holding another config
        (in a field that changes results) is refused, never resumed under this one (cmcs_core/runs/holds.py)."""
        check_inputs(self.cfg)
        self.set_aside = claim(self.run_dir, self.cfg, self.overwrite, new_folder="--output-dir")

    # -- data ------------------------------------------------------------------------------
    def _load_data(self) -> None:
        d = self.cfg.data
        t0 = time.time()
        def tensors(split: str, max_samples: int | None) -> SplitTensors:
            rows = self.pipe.load_split(split, max_samples)
            if split == "train" and d.augment_clauses > 0:
                rows = augmented_split(rows, d.augment_clauses, d.augment_seed, d.augment_polarity,
                                      d.augment_position)
            return self.pipe.tensors(rows, progress=self.progress)

        self.train_data = tensors("train", d.max_train_samples)
        self.dev_data = tensors("dev", d.max_eval_samples)
        # read_test off (searches): the test split is never opened, so nothing tuned can have seen it
        self.test_data = tensors("test", d.max_eval_samples) if d.read_test else None
        # the machinery beyond the paper, with the clause copies it reads (none when its opt-ins are off)
        self.target_aware = TargetAware.of(self.cfg)
        self.target_aware.build_copies(self.train_data, self.dev_data,
                                       lambda split: self.pipe.tensors(split, progress=self.progress))
        n_dev = min(d.dev_subset_size, len(self.dev_data))
        pick = torch.randperm(len(self.dev_data), generator=torch.Generator().manual_seed(self.cfg.train.seed))
        self.dev_subset = pick[:n_dev]
        self.log.info(
            "data %s: train %d dev %d test %s, visual=%s, features in %.1fs",
            d.dataset, len(self.train_data), len(self.dev_data),
            len(self.test_data) if self.test_data is not None else "not read",
            self.pipe.visual_source, time.time() - t0,
        )

    def _dev_batches(self):
        """Endless shuffled batches from D_dev (the upper level's small validation subset); where
        they stand lives in self.dev_sampler, which the state saves."""
        while True:
            yield self.dev_data.batch(self.dev_sampler.next_indices(), self.device)

    def setup(self) -> None:
        """Data, model and optimisers: everything before the first step (tests start here too)."""
        t = self.cfg.train
        self._load_data()
        # the config may have changed since the data was loaded (bench/bench_overhead.py times several over one
        # load): the component's settings follow it, its clause copies stay
        self.target_aware = TargetAware.of(self.cfg, copies_from=self.target_aware)
        self.dev_sampler = DevSampler(self.dev_subset, t.batch_size, self.generator)
        self.model = self.pipe.build_model()
        self.target_aware.attach(self.model)
        self.vars = Variables.of(self.model, self.target_aware, MaskLevel(t.mask_level), t.hessian_params)
        self.power_iters = POWER_ITERS if t.neumann_eta_rule == "curvature" else 0
        self._build_optim()
        self.global_step = 0

    # -- optimisation ---------------------------------------------------------------------
    def _build_optim(self) -> None:
        t, v = self.cfg.train, self.vars
        groups = [{"params": v.heads, "lr": t.head_lr}]
        if v.encoder:
            groups.append({"params": v.encoder, "lr": t.lr})
        # bf16 runs step theta with the fused AdamW (one kernel over every tensor; the per-tensor ops were a fifth of
        # an MPNet top-2 step): their numbers are new anyway, while fp32 runs keep the per-tensor AdamW, so the
        # committed fp32 runs still reproduce bit for bit
        self.opt = torch.optim.AdamW(groups, weight_decay=t.weight_decay, fused=self.precision.bf16 or None)
        # mask_level upper/relation: (part of) the text mask moves only with the upper level, by its own Adam
        self.mask_opt = torch.optim.Adam(v.upper_masks, lr=t.mask_lr) if v.upper_masks else None
        steps_per_epoch = math.ceil(len(self.train_data) / t.batch_size)
        total = max(1, steps_per_epoch * t.epochs)
        schedule = warmup_linear_decay(total, int(total * t.warmup_ratio))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, schedule)
        self.phi_opt = torch.optim.Adam(v.phi, lr=t.phi_lr)

    def _lower_losses(self, batch: dict, out: dict, encoder_grad: bool = True) -> tuple[dict, list[ScheduledTerm]]:
        """The lower objective's parts of a training batch, for CMCSModel.scheduled_loss: both branches'
        losses, and the target-aware component's terms."""
        return self.model.branch_losses(out, batch), self.target_aware.lower_terms(batch, out, encoder_grad)

    def upper_step(self, train_batch, dev_batch) -> dict[str, float]:
        """One step on phi (and on the text mask's upper-level part, mask_level upper/relation) with the implicit
        gradient (Eq. 14), in eval mode so HVPs are exact. Each group's hypergradient is clipped on its
        own, so phi steps exactly as in the paper's setting whatever else moves."""
        t, v = self.cfg.train, self.vars
        self.model.eval()
        enc_grad = v.encoder_in_hessian
        train_out = self.model(train_batch, encoder_grad=enc_grad)
        losses, terms = self._lower_losses(train_batch, train_out, enc_grad)
        train_loss, _ = self.model.scheduled_loss(losses, detach_phi=False, terms=terms)
        dev_out = self.model(dev_batch, encoder_grad=enc_grad)
        dev_losses = self.model.branch_losses(dev_out, dev_batch)
        dev_loss, info = self.target_aware.dev_objective(dev_batch, dev_out, dev_losses, enc_grad)
        grads = implicit_hypergradient(train_loss, dev_loss, v.hessian, v.phi + v.upper_masks, t.K,
                                       t.neumann_eta, stats=info, power_iters=self.power_iters)
        norm = self._clipped_step(self.phi_opt, v.phi, grads[: len(v.phi)])
        if v.upper_masks:
            info["hypergrad_mask_norm"] = self._clipped_step(self.mask_opt, v.upper_masks, grads[len(v.phi):])
        self.model.train()
        by_name = {name: float(g) for name, g in zip(v.phi_names, grads)}
        return {
            "hypergrad_norm": norm,
            "hypergrad_alpha": by_name["alpha"],
            "hypergrad_beta": by_name.get("beta", math.nan),
            "hypergrad_gamma": by_name.get("gamma", math.nan),
            **info,
        }

    def _clipped_step(self, opt: torch.optim.Optimizer, params: list, grads: list[torch.Tensor]) -> float:
        """Hand the hypergradient, its norm clipped at hypergrad_clip, to an upper-level optimiser;
        returns the unclipped norm (what batches.parquet logs)."""
        norm = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
        scale = min(1.0, self.cfg.train.hypergrad_clip / (norm + 1e-12))
        opt.zero_grad(set_to_none=True)
        for p, g in zip(params, grads):
            p.grad = (g * scale).detach()
        opt.step()
        return norm

    # -- state -----------------------------------------------------------------------------
    def _save_state(self, epoch: int) -> None:
        state = {
            "epoch": epoch,
            "global_step": self.global_step,
            "best": self.best,
            "model": trainable_state(self.model),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "phi_opt": self.phi_opt.state_dict(),
            "mask_opt": self.mask_opt.state_dict() if self.mask_opt is not None else None,
            "generator": self.generator.get_state(),
            "dev_sampler": self.dev_sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        atomic_save(self.paths["state"], lambda p: torch.save(state, p))

    def _resume(self) -> int:
        if not self.paths["state"].is_file():
            return 0
        state = torch.load(self.paths["state"], weights_only=False)
        self.model.load_state_dict(state["model"], strict=False)
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.phi_opt.load_state_dict(state["phi_opt"])
        if self.mask_opt is not None:
            self.mask_opt.load_state_dict(state["mask_opt"])
        self.generator.set_state(state["generator"])
        if "dev_sampler" in state:  # states saved before it was kept restart D_dev's permutation
            self.dev_sampler.load_state_dict(state["dev_sampler"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.global_step, self.best = state["global_step"], state["best"]
        self.batch_rows = [r for r in self._read_table("batches") if r["epoch"] <= state["epoch"]]
        self.epoch_rows = [r for r in self._read_table("epochs") if r["epoch"] <= state["epoch"]]
        self.log.info("resumed after epoch %d", state["epoch"])
        return state["epoch"]

    def _read_table(self, name: str) -> list[dict]:
        """The rows logged so far."""
        path = table_path(self.run_dir, self.paths[name].stem)
        return read_table(path).to_dict("records") if path is not None else []

    def _write_table(self, name: str, rows: list[dict], columns: list[str] | None = None) -> None:
        write_table(self.paths[name], pd.DataFrame(rows, columns=columns))

    # -- main loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train (or resume) and write the run folder. train.num_threads holds only while fitting:
        the caller's torch thread count is restored afterwards, so a library call never changes it."""
        n = self.cfg.train.num_threads
        self._cpu_start = time.process_time()
        with torch_threads(n) if n else contextlib.nullcontext():
            return self._fit()

    def _fit(self) -> dict:
        t = self.cfg.train
        self.setup()
        self.global_step, self.best = 0, {"dev_acc": -1.0, "epoch": 0}
        self.batch_rows: list[dict] = []
        self.epoch_rows: list[dict] = []
        start_epoch = self._resume()
        dev_iter = self._dev_batches()
        use_upper = self.cfg.model.use_cms
        for epoch in range(start_epoch + 1, t.epochs + 1):
            self.model.train()
            t0 = time.time()
            bar = progress_bar(
                self.train_data.batches(t.batch_size, self.device, self.generator),
                self.progress,
                total=math.ceil(len(self.train_data) / t.batch_size),
                desc=f"epoch {epoch}/{t.epochs}",
                leave=False,
            )
            losses = []
            for step, batch in enumerate(bar):
                row = {"epoch": epoch, "step": step, **self.lower_step(batch)}
                if use_upper and self.global_step % t.H == 0:
                    row.update(self.upper_step(batch, next(dev_iter)))
                self.batch_rows.append(row)
                losses.append(row["loss"])
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", phi_t=f"{row['phi_t']:.2f}")
            self._end_epoch(epoch, time.time() - t0, float(np.mean(losses)))
        return self._finish()

    def lower_step(self, batch: dict) -> dict:
        """One step on theta with phi fixed (Algorithm 1's inner loop), forward in the run's precision;
        returns the batch's log row (bench/bench_precision.py times exactly this)."""
        with self.pipe.autocast():
            out = self.model(batch)
            losses, terms = self._lower_losses(batch, out)
        loss, stats = self.model.scheduled_loss(losses, terms=terms)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        stats.update(self._mask_stats(out, batch))
        for p in self.vars.upper_masks:  # an upper-level mask takes no lower step
            p.grad = None
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.vars.theta, self.cfg.train.grad_clip))
        self.opt.step()
        self.sched.step()
        self.global_step += 1
        return {"global_step": self.global_step, "loss": loss.item(), **stats,
                "alpha": self.model.alpha.item(), "beta": self.model.beta.item(), **self.target_aware.log_row()}

    def _mask_stats(self, out: dict, batch: dict) -> dict[str, float]:
        """The text gates of this batch (mean over real tokens, spread of the per-token gate over
        tokens) and the norm of their network's gradient before the clip: whether the mask can move."""
        real = batch["attention_mask"].bool()
        gates = out["text_mask"].detach().float().mean(-1)[real]
        grads = [p.grad for p in self.model.mask_parameters() if p.grad is not None]
        norm = float(torch.sqrt(sum(g.pow(2).sum() for g in grads))) if grads else math.nan
        return {"mask_mean": float(gates.mean()), "mask_token_std": float(gates.std()) if len(gates) > 1 else 0.0,
                "mask_grad_norm": norm}

    def _end_epoch(self, epoch: int, seconds: float, train_loss: float) -> None:
        dev_m = self._split_metrics(self.dev_data)
        row = {"epoch": epoch, "train_loss": train_loss, "dev_acc": dev_m["acc"], "dev_f1": dev_m["macro_f1"],
               "dev_loss": dev_m["loss"],
               "seconds": seconds, "samples_per_s": len(self.train_data) / max(seconds, 1e-9)}
        if self.cfg.train.eval_test_each_epoch and self.test_data is not None:
            test_m = self._split_metrics(self.test_data)  # logged only: selection reads dev
            row.update(test_acc=test_m["acc"], test_f1=test_m["macro_f1"])
        self.epoch_rows.append(row)
        key = self.cfg.train.select_on
        if improves(key, row[key], self.best):
            self.best = {"epoch": epoch, **{k: row[k] for k in SELECT_ON}}
            atomic_save(self.paths["best"], lambda p: save_file(trainable_state(self.model), p))
        self._write_table("batches", self.batch_rows, BATCH_LOG_COLUMNS)
        self._write_table("epochs", self.epoch_rows)
        self._save_state(epoch)
        self.log.info("epoch %d: %s", epoch, json.dumps(row))
        if self.on_epoch is not None:
            self.on_epoch({**row, "best": dict(self.best)})

    def _split_metrics(self, data: SplitTensors) -> dict:
        """Metrics and fused cross-entropy of the current model on one split (the tests script
        these to check selection)."""
        res = predict_tensors(self.model, data, self.device, precision=self.precision.used)
        labels = data.labels.numpy()
        return {**compute_metrics(labels, res["pred"]), "loss": dev_loss(res["p_final"], labels)}

    def _finish(self) -> dict:
        """Reload the best checkpoint and write test/dev outputs at that epoch."""
        load_trainable_state(self.model, self.paths["best"])
        metrics = {
            "dataset": self.cfg.data.dataset,
            "method": self.cfg.model.method,
            "seed": self.cfg.train.seed,
            "text_model": self.cfg.encoder.text_model,
            "visual_model": self.cfg.encoder.visual_model,
            "visual_source": self.pipe.visual_source,
            "finetune_layers": self.cfg.encoder.finetune_layers,
            "device": str(self.device),
            "precision": self.precision.as_dict(),
            "best_epoch": self.best["epoch"],
            "selected_on": self.cfg.train.select_on,
            "epochs_run": len(self.epoch_rows),
            "train_seconds": float(sum(r["seconds"] for r in self.epoch_rows)),
            # this process's CPU time for the whole call (features, epochs, outputs; this call only when resumed):
            # with one thread, the time on a dedicated core, whatever else the machine ran
            "cpu_seconds": time.process_time() - self._cpu_start,
        }
        for tag, data in (("dev", self.dev_data), ("test", self.test_data)):
            if data is not None:
                res = predict_tensors(self.model, data, self.device, precision=self.precision.used)
                metrics[tag] = write_outputs(self.run_dir, tag, self.pipe, data, res)
        atomic_write_json(self.paths["metrics"], metrics)
        test = metrics.get("test")
        self.log.info("done: dev acc %.4f %s", metrics["dev"]["acc"],
                      f"test acc {test['acc']:.4f} f1 {test['macro_f1']:.4f}" if test else "test not read")
        return metrics

    def finish_early(self) -> dict:
        """Write an interrupted run's outputs at its best epoch so far, without training further
        (a search's trials that early stopping cut short become ordinary run folders)."""
        self.setup()
        self.global_step, self.best, self.batch_rows, self.epoch_rows = 0, {"dev_acc": -1.0, "epoch": 0}, [], []
        if self._resume() == 0:
            raise ValueError(f"{self.run_dir}: no finished epoch to write outputs from")
        return self._finish()


def train(cfg: RunConfig, run_dir: str | Path, progress: bool = True, on_epoch: EpochCallback | None = None) -> dict:
    """Train one run into run_dir (resuming if it holds an unfinished run of the same config);
    `on_epoch` sees each epoch's logged row (Trainer)."""
    return Trainer(cfg, run_dir, progress, on_epoch).fit()
