"""fp32 against bf16 autocast on this machine, side by side in one process: training steps (the
trainer's own `lower_step`, plus CMCS's upper step every H), an evaluate pass (feature extraction and
prediction), and one Inspector prediction, for MiniLM frozen and top-2 and MPNet top-2, top-4 and all
layers. Rates are per CPU-second with one torch thread (the cost on one dedicated core); FLOPs are
counted by torch's FlopCounterMode over the very step timed, and set against the matmul peak this
process measures in each dtype. Each fp32/bf16 pair is timed in alternating order (A B, B A, ...), on
the same batch of 32 real Twitter2015 rows; figures are medians with (min-max).

    python bench/bench_precision.py                  # ~10 min on an AMX core
    python bench/bench_precision.py --quick          # MiniLM only
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch
from _common import summary, time_alternating, timed, write_result
from torch.utils.flop_counter import FlopCounterMode

from cmcs_core import precision as prec
from cmcs_core.config import RunConfig, build_config
from cmcs_core.evaluate import predict_tensors
from cmcs_core.inference import Predictor
from cmcs_core.train.trainer import Trainer, train

REGIMES = (("minilm", 0), ("minilm", 2), ("mpnet", 2), ("mpnet", 4), ("mpnet", -1))
METHODS = ("text_only", "cmcs")
DTYPES = ("fp32", "bf16")
BATCH = 32


def matmul_peaks(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best CPU-time GFLOP/s of an n^3 matmul in each dtype: the compute bound of each."""
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        out[name] = max(2 * n**3 / timed(lambda: a @ b)[1] / 1e9 for _ in range(repeats))
    return out


def config(text_model: str, layers: int, method: str, precision: str, rows: int) -> RunConfig:
    return build_config(None, method, None, {
        "dataset": "twitter2015", "max_train_samples": rows, "max_eval_samples": rows, "dev_subset_size": BATCH,
        "text_model": text_model, "finetune_layers": layers, "batch_size": BATCH, "device": "cpu",
        "precision": precision, "epochs": 1})


def flops_of(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def rate(n: int, cpu: list[float], flops: float, peak: float) -> dict:
    med = statistics.median(cpu)
    return {"cpu_s": summary(cpu), "samples_per_s": n / med, "samples_per_s_range": [n / max(cpu), n / min(cpu)],
            "gflops": flops / med / 1e9, "frac_of_peak": flops / med / 1e9 / peak}


def bench_regime(text_model: str, layers: int, method: str, peaks: dict, repeats: int, work: Path) -> dict:
    trainers = {}
    for p in DTYPES:
        trainers[p] = Trainer(config(text_model, layers, method, p, 2 * BATCH), work / f"{text_model}{layers}{method}{p}",
                              progress=False)
        trainers[p].setup()
    batch = {p: next(t.train_data.batches(BATCH, t.device)) for p, t in trainers.items()}
    dev = {p: t.dev_data.batch(torch.arange(BATCH), t.device) for p, t in trainers.items()}
    flops = {p: flops_of(lambda p=p: trainers[p].lower_step(batch[p])) for p in DTYPES}  # also the warm-up
    times = time_alternating({p: (lambda p=p: trainers[p].lower_step(batch[p])) for p in DTYPES}, repeats)
    out = {"lower_step": {p: rate(BATCH, times[p]["cpu"], flops[p], peaks[p]) for p in DTYPES}}
    if trainers["fp32"].cfg.model.use_cms:  # the upper step stays fp32 in both: its amortised share per step
        upper = time_alternating({p: (lambda p=p: trainers[p].upper_step(batch[p], dev[p])) for p in DTYPES},
                                 max(2, repeats // 2))
        H = trainers["fp32"].cfg.train.H
        out["upper_step_cpu_s"] = {p: summary(upper[p]["cpu"]) for p in DTYPES}
        out["amortised_samples_per_s"] = {
            p: BATCH / (statistics.median(times[p]["cpu"]) + statistics.median(upper[p]["cpu"]) / H) for p in DTYPES}
    # an evaluate pass: features of the rows (uncached: the lower layers' forward) and the model's predictions
    evaluate = {}
    for p, t in trainers.items():
        split = t.pipe.load_split("dev", BATCH * 2)

        def run(t=t, split=split):
            data = t.pipe.tensors(split, cache=False, progress=False)
            return predict_tensors(t.model, data, t.device, precision=t.precision.used)

        evaluate[p] = (flops_of(run), run)
    eval_times = time_alternating({p: evaluate[p][1] for p in DTYPES}, max(2, repeats // 2))
    out["evaluate"] = {p: rate(2 * BATCH, eval_times[p]["cpu"], evaluate[p][0], peaks[p]) for p in DTYPES}
    for key in ("lower_step", "evaluate"):
        out[key]["speedup"] = out[key]["bf16"]["samples_per_s"] / out[key]["fp32"]["samples_per_s"]
    if "amortised_samples_per_s" in out:
        a = out["amortised_samples_per_s"]
        out["amortised_speedup"] = a["bf16"] / a["fp32"]
    return out


def bench_inspector(repeats: int, work: Path) -> dict:
    """One Predictor.predict (the Inspector's call) on a MiniLM frozen CMCS run trained in each precision."""
    predictors = {}
    for p in DTYPES:
        cfg = config("minilm", 0, "cmcs", p, BATCH)
        train(cfg, work / f"inspector_{p}", progress=False)
        predictors[p] = Predictor(work / f"inspector_{p}")
    args = ("Great night at the match with $T$ and friends", "Pat", "two people smiling at a stadium")
    for p in DTYPES:
        predictors[p].predict(*args[:2], caption=args[2])
    times = time_alternating({p: (lambda p=p: predictors[p].predict(*args[:2], caption=args[2])) for p in DTYPES},
                             repeats)
    return {p: {"wall_s": summary(times[p]["wall"]), "cpu_s": summary(times[p]["cpu"])} for p in DTYPES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="MiniLM only")
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--name", default="precision")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    native = prec.native_bf16(torch.device("cpu"))
    if not native:
        print("this CPU has no native bf16 (no amx_bf16/avx512_bf16): bf16 is emulated; measuring it anyway")
        prec.native_bf16 = lambda device, flags=None: True  # noqa: E731 - this script measures emulation too
    peaks = matmul_peaks()
    print(f"matmul peak (one thread): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
          f"({peaks['bf16'] / peaks['fp32']:.1f}x)")
    results = {}
    regimes = [r for r in REGIMES if not args.quick or r[0] == "minilm"]
    with tempfile.TemporaryDirectory() as tmp:
        for text_model, layers in regimes:
            for method in METHODS:
                key = f"{text_model} {'frozen' if layers == 0 else 'all layers' if layers == -1 else f'top-{layers}'} {method}"
                repeats = args.repeats if text_model == "minilm" or layers == 2 else max(3, args.repeats // 2)
                r = bench_regime(text_model, layers, method, peaks, repeats, Path(tmp))
                results[key] = r
                low = r["lower_step"]
                print(f"{key:28s} step {low['fp32']['samples_per_s']:6.1f} -> {low['bf16']['samples_per_s']:6.1f} "
                      f"samples/s ({low['speedup']:.2f}x; bf16 at {low['bf16']['frac_of_peak']:.0%} of its peak, "
                      f"fp32 at {low['fp32']['frac_of_peak']:.0%}); evaluate {r['evaluate']['speedup']:.2f}x"
                      + (f"; with the upper step {r['amortised_speedup']:.2f}x" if "amortised_speedup" in r else ""))
        inspector = bench_inspector(args.repeats, Path(tmp))
    print("Inspector prediction (wall, median): " + ", ".join(
        f"{p} {inspector[p]['wall_s']['median'] * 1000:.0f} ms" for p in DTYPES))
    write_result(args.name, {"native_bf16": native, "cpu_flags": list(prec.cpu_flags()),
                             "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                             "mkldnn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
                             "matmul_peak_gflops": peaks, "batch": BATCH, "regimes": results,
                             "inspector": inspector})


if __name__ == "__main__":
    main()
