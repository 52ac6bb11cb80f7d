"""How close to the machine's limit a run gets: samples/s and model FLOP utilisation (MFU) read from run
folders, and a torch.profiler pass over a few training steps that names the CPU-side stalls.

    python bench/gpu_perf.py measure --out perf.json [--device cuda] [--extra "..."]   # one CMCS run alone + profile
    python bench/gpu_perf.py throughput RUN [RUN ...] [--wall SECONDS]                  # finished run folders

MFU = achieved model FLOP/s / peak (default: the H200's dense bf16 spec, 989 TFLOP/s; the device's own 8192^3
bf16 matmul reached ~790). Training FLOPs per sample = 6 x N x T: N the text encoder's parameters without its
embedding tables (lookups, not matmuls), T the sample's real (unpadded) tokens as training tokenizes them, plus
the counterfactual branch's share of rows. Not counted: the heads (under 1% of N), padding, the upper level's
forward passes every H steps, evaluation; so the MFU here is a lower bound. Speed is read from epochs.csv
(samples_per_s: the epoch's training loop alone), from epoch 2 on (epoch 1 pays CUDA's warm-up).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import shlex
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

H200_BF16_DENSE_TFLOPS = 989.0


def encoder_params(model_dir: str | Path) -> dict[str, int]:
    """Parameter counts of a safetensors checkpoint, read from its header (nothing loaded)."""
    from safetensors import safe_open

    total = embed = 0
    with safe_open(str(Path(model_dir) / "model.safetensors"), framework="pt") as f:
        for key in f.keys():
            n = math.prod(f.get_slice(key).get_shape())
            if key.endswith("position_ids"):
                continue  # a buffer
            total += n
            embed += n if "embeddings." in key and "LayerNorm" not in key else 0
    return {"total": total, "non_embedding": total - embed}


@functools.lru_cache(maxsize=32)
def _token_stats(model_dir: str, dataset: str, data_dir: str | None, max_samples: int | None, max_length: int,
                 caption_in_text: bool, use_faces: bool, batch_size: int) -> dict[str, float]:
    import torch
    from transformers import AutoTokenizer

    from cmcs_core.data.dataset import dataset_files, load_split
    from cmcs_core.encoders.features import text_pairs
    from cmcs_core.encoders.text import TextEncoder

    tok = AutoTokenizer.from_pretrained(model_dir)
    split = load_split(dataset_files(dataset, data_dir), "train", use_faces, False, max_samples)
    shim = SimpleNamespace(tokenizer=tok)  # the encoder's own tokenize(), without loading its weights
    enc = TextEncoder.tokenize(shim, [s.text for s in split.samples], text_pairs(shim, split, caption_in_text),
                               max_length=max_length, truncation="longest_first" if caption_in_text else None)
    lengths = enc["attention_mask"].sum(1).float()
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0))
    batches = [lengths[order[i: i + batch_size]] for i in range(0, len(order), batch_size)]
    return {"samples": len(lengths), "tokens_per_sample": float(lengths.mean()),
            "real_tokens_per_batch": statistics.mean(float(b.sum()) for b in batches),
            "padded_tokens_per_batch": statistics.mean(float(b.max()) * len(b) for b in batches)}


def token_stats(cfg, model_dir: str | Path | None = None) -> dict[str, float]:
    """Real tokens per training sample and per batch (shuffled batches, padded to the longest as training does)."""
    from cmcs_core.encoders.text import resolve_text_model

    d, e = cfg.data, cfg.encoder
    return _token_stats(str(model_dir or resolve_text_model(e.text_model)), d.dataset, d.data_dir, d.max_train_samples,
                        e.max_length, e.caption_in_text, d.use_faces, cfg.train.batch_size)


def flops_per_sample(cfg, model_dir: str | Path | None = None) -> dict[str, float]:
    from cmcs_core.encoders.text import resolve_text_model

    model_dir = model_dir or resolve_text_model(cfg.encoder.text_model)
    n = encoder_params(model_dir)["non_embedding"]
    tokens = token_stats(cfg, model_dir)
    rows = 1.0 + cfg.train.counterfactual_share  # the counterfactual branch trains a share of each batch again
    return {"params": n, **tokens, "flops_per_sample": 6.0 * n * tokens["tokens_per_sample"] * rows}


def _steady(samples_per_s: list[float]) -> float:
    """Median over the epochs after the first (which pays CUDA's warm-up), or the only one."""
    return statistics.median(samples_per_s[1:] or samples_per_s)


def run_throughput(run_dir: str | Path, peak_tflops: float = H200_BF16_DENSE_TFLOPS,
                   model_dir: str | Path | None = None) -> dict:
    """Samples/s and MFU of one run folder's training loop."""
    from cmcs_core.runs.reader import load_run

    run = load_run(run_dir)
    per_s = [float(x) for x in run.epochs()["samples_per_s"]]
    speed = _steady(per_s)
    f = flops_per_sample(run.cfg, model_dir)
    achieved = speed * f["flops_per_sample"]
    return {"run": Path(run_dir).name, "samples_per_s": speed, "samples_per_s_by_epoch": per_s, **f,
            "achieved_tflops": achieved / 1e12, "peak_tflops": peak_tflops, "mfu": achieved / (peak_tflops * 1e12)}


def grid_throughput(run_dirs: list[Path], wall_seconds: float, peak_tflops: float = H200_BF16_DENSE_TFLOPS,
                    model_dir: str | Path | None = None) -> dict:
    """The shared GPU as a whole: every run's training samples and FLOPs over the grid's wall time (which also
    holds evaluation, stress tests and start-up, so this is the utilisation the grid really got), and the runs'
    own training-loop speed while they shared it."""
    from cmcs_core.runs.reader import load_run

    samples = flops = 0.0
    each = []
    for d in run_dirs:
        run = load_run(d)
        per_s = [float(x) for x in run.epochs()["samples_per_s"]]
        f = flops_per_sample(run.cfg, model_dir)
        n = f["samples"] * len(per_s)
        samples, flops = samples + n, flops + n * f["flops_per_sample"]
        each.append(_steady(per_s))
    return {"runs": len(run_dirs), "wall_seconds": wall_seconds, "training_samples": samples,
            "samples_per_s": samples / wall_seconds, "achieved_tflops": flops / wall_seconds / 1e12,
            "peak_tflops": peak_tflops, "mfu": flops / wall_seconds / (peak_tflops * 1e12),
            "per_run_samples_per_s_median": statistics.median(each)}


# -- the profile --------------------------------------------------------------------------------------
# Methods whose time is a CPU-side stall (or a phase to keep apart from the training steps), labelled in the
# profile by wrapping them for its duration; nothing they do changes.
LABELS = {
    "setup (data, features, model)": ("cmcs_core.train.trainer", "Trainer", "setup"),
    "data: batch to device": ("cmcs_core.pipeline", "SplitTensors", "batch"),
    "upper step": ("cmcs_core.train.trainer", "Trainer", "upper_step"),
    "evaluation": ("cmcs_core.train.trainer", "Trainer", "_split_metrics"),
    "checkpoint": ("cmcs_core.train.trainer", "Trainer", "_save_state"),
}
SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize")


@contextlib.contextmanager
def _labelled():
    import importlib

    from torch.profiler import record_function

    saved = []
    for label, (module, cls_name, attr) in LABELS.items():
        cls = getattr(importlib.import_module(module), cls_name)
        original = getattr(cls, attr)

        def wrapped(*args, __original=original, __label=label, **kwargs):
            with record_function(__label):
                return __original(*args, **kwargs)

        saved.append((cls, attr, original))
        setattr(cls, attr, wrapped)
    try:
        yield
    finally:
        for cls, attr, original in saved:
            setattr(cls, attr, original)


def profile_training(cfg, run_dir: Path) -> dict:
    """Train cfg under torch.profiler with the LABELS phases; where the wall time went, CPU side and GPU side."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from cmcs_core.train.trainer import Trainer

    cuda = cfg.train.device.startswith("cuda") and torch.cuda.is_available()
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    trainer = Trainer(cfg, run_dir, progress=False)  # encoders loaded outside the profile
    with _labelled(), profile(activities=activities) as prof:
        t0 = time.perf_counter()
        trainer.fit()
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    by_name = {e.key: e for e in events}
    gpu_us = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA") if cuda else 0.0
    phases = {k: {"calls": by_name[k].count, "cpu_s": by_name[k].cpu_time_total / 1e6,
                  "share_of_wall": by_name[k].cpu_time_total / 1e6 / wall} for k in LABELS if k in by_name}
    syncs = {k: {"calls": by_name[k].count, "cpu_s": by_name[k].cpu_time_total / 1e6} for k in SYNC_OPS
             if k in by_name}
    steps = math.ceil(cfg.data.max_train_samples / cfg.train.batch_size) * cfg.train.epochs
    train_loop = wall - sum(phases.get(k, {}).get("cpu_s", 0.0) for k in ("setup (data, features, model)",
                                                                            "evaluation", "checkpoint"))
    top = sorted((e for e in events if e.key not in LABELS), key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "steps": steps, "upper_steps": phases.get("upper step", {}).get("calls", 0), "wall_s": wall,
        "train_loop_s": train_loop, "train_loop_ms_per_step": 1e3 * train_loop / steps,
        "gpu_kernel_s": gpu_us / 1e6, "gpu_busy_share_of_wall": gpu_us / 1e6 / wall if cuda else None,
        "phases": phases, "host_syncs": syncs,
        "top_cpu_ops": [{"op": e.key, "calls": e.count, "self_cpu_s": e.self_cpu_time_total / 1e6} for e in top[:12]],
    }


def measure(args: argparse.Namespace) -> dict:
    """One CMCS run alone on the device (throughput, MFU), then a profile of a few steps of the same config."""
    from cmcs_core.cli import build_parser
    from cmcs_core.sweep.commands import grid_runs
    from cmcs_core.train.trainer import train

    def config(epochs: int, samples: int):  # the grid's flags (--extra is the grid's too), one run of it
        grid = ["grid", "--out", "-", "--methods", "cmcs", "--datasets", "twitter2015", "--text-model", args.text_model,
                "--finetune-layers", "-1", "--device", args.device, "--no-eval-test-each-epoch",
                *shlex.split(args.extra), "--seeds", "1", "--epochs", str(epochs), "--max-train-samples", str(samples)]
        return grid_runs(build_parser().parse_args(grid))[0].cfg

    work = Path(args.work)
    alone = config(args.epochs, args.alone_samples)
    t0 = time.perf_counter()
    train(alone, work / "alone", progress=False)
    result = {"alone": {**run_throughput(work / "alone", args.peak_tflops), "wall_s": time.perf_counter() - t0,
                        "config": dataclasses.asdict(alone)}}
    prof = config(1, args.profile_samples)
    result["profile"] = {**profile_training(prof, work / "profiled"), "config": dataclasses.asdict(prof)}
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="stage", required=True)
    m = sub.add_parser("measure", help="one CMCS run alone + a profile of a few steps, into --out")
    m.add_argument("--out", required=True)
    m.add_argument("--work", default="perf_runs")
    m.add_argument("--text-model", default="mpnet_fp16")
    m.add_argument("--device", default="cuda")
    m.add_argument("--epochs", type=int, default=2)
    m.add_argument("--alone-samples", type=int, default=1600, help="training rows of the alone run (50 steps)")
    m.add_argument("--profile-samples", type=int, default=800, help="training rows profiled (25 steps, one upper)")
    m.add_argument("--extra", default="", help="more `cmcs grid` flags (tiny sizes for a CPU dry run)")
    m.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    t = sub.add_parser("throughput", help="samples/s and MFU of finished run folders")
    t.add_argument("runs", nargs="+")
    t.add_argument("--wall", type=float, help="the grid's wall seconds: also the shared GPU's figures")
    t.add_argument("--model-dir", help="the text model's folder (default: resolved from the runs' configs)")
    t.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    t.add_argument("--out", help="also write the figures here (bench/results/<name>.json)")
    args = p.parse_args(argv)
    from cmcs_core import provenance

    if args.stage == "measure":
        provenance.write_result(args.out, {"command": "python bench/gpu_perf.py measure", **measure(args)})
        return
    out = {"peak_tflops": args.peak_tflops,
           "runs": [run_throughput(r, args.peak_tflops, args.model_dir) for r in args.runs]}
    if args.wall:
        out["grid"] = grid_throughput([Path(r) for r in args.runs], args.wall, args.peak_tflops, args.model_dir)
    print(json.dumps(out, indent=2))
    if args.out:
        provenance.write_result(args.out, out)


if __name__ == "__main__":
    main()
