"""Scale: epoch time and peak memory of CMCS (frozen, H=20, K=3) against the number of training
samples (1k-50k, Twitter2015 train features repeated) and the number of real tokens per sample.

All points share one process and one Trainer; before each point the kernel's peak-RSS mark is
reset (/proc/self/clear_refs), so its peak VmHWM minus the RSS before it is the point's own memory
(checked: freed feature tensors go back to the OS). Sequence length:
each tweet's cached states are tiled to exactly L real tokens (real tweets+targets are shorter
than 64 tokens, so max_length 128 would change nothing on this data; the tiling exercises it).

    python bench/bench_scale.py            # N = 1k..50k and L = 16..256
    python bench/bench_scale.py --quick    # N = 1k..10k, L = 16..128
"""
from __future__ import annotations

import argparse
import gc
import os
from pathlib import Path

import numpy as np
import torch
from _common import current_rss_mb, write_result
from bench_overhead import make_timer
from tqdm.auto import tqdm

from cmcs_core.encoders.features import TextFeatures, VisualFeatures
from cmcs_core.pipeline import SplitTensors

ROOT = Path(__file__).resolve().parents[1]


def repeat(data: SplitTensors, n: int) -> SplitTensors:
    """n samples by cycling through `data`; every copy gets its own image rows, like new tweets."""
    idx, copy = torch.arange(n) % len(data), torch.arange(n) // len(data)
    t, v = data.text, data.visual
    reps = int(copy.max()) + 1
    text = TextFeatures(t.input_ids[idx], t.attention_mask[idx], t.token_type_ids[idx], t.hidden[idx], t.layer)
    visual = VisualFeatures(v.tokens.repeat(reps, 1, 1), v.mask.repeat(reps, 1), v.image_index[idx] + copy * len(v.tokens),
                            v.fusion_sim[idx], None, v.image_ids * reps)
    return SplitTensors(data.split, text, visual, data.labels[idx], data.image_labels[idx])


def tile(data: SplitTensors, length: int) -> SplitTensors:
    """Every sample gets exactly `length` real tokens: its own states repeated along the sequence."""
    t = data.text
    real = t.attention_mask.sum(1, keepdim=True)
    pos = torch.arange(length)[None, :] % real  # (N, L) source position of each token
    hidden = t.hidden.gather(1, pos[..., None].expand(-1, -1, t.hidden.shape[-1]))
    ones = torch.ones(len(data), length, dtype=t.attention_mask.dtype)
    text = TextFeatures(t.input_ids.gather(1, pos), ones, torch.zeros_like(ones), hidden, t.layer)
    return SplitTensors(data.split, text, data.visual, data.labels, data.image_labels)


def feature_mb(data: SplitTensors) -> float:
    tensors = [data.text.hidden, data.text.input_ids, data.text.attention_mask, data.visual.tokens]
    return sum(x.nbytes for x in tensors) / 2**20


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(timer, base: SplitTensors, point: dict) -> dict:
    gc.collect()
    reset_peak_rss()
    rss_before = current_rss_mb()
    data = repeat(base, point["n"]) if point["kind"] == "samples" else tile(base, point["length"])
    timer.train_data = data
    wall, cpu, upper = timer.time_epoch("cmcs", 20, 3)
    peak = peak_rss_mb()
    tokens = int(data.text.attention_mask.sum())
    timer.train_data = base
    return {**point, "samples": len(data), "real_tokens": tokens, "wall_s": wall, "cpu_s": cpu,
            "upper_steps": upper, "rss_before_mb": rss_before, "peak_rss_mb": peak,
            "peak_increase_mb": peak - rss_before, "feature_mb": feature_mb(data), "loadavg": list(os.getloadavg())}


def slope(xs: list[float], ys: list[float]) -> float:
    """Exponent b of y = a * x^b fitted on log-log."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def fit_all(rows: list[dict]) -> dict:
    fits = {}
    for kind, key in (("samples", "samples"), ("length", "length")):
        sel = [r for r in rows if r["kind"] == kind]
        if len(sel) > 1:
            x = [r[key] for r in sel]
            fits[kind] = {"time_exponent": slope(x, [r["cpu_s"] for r in sel]),
                          "feature_mem_exponent": slope(x, [r["feature_mb"] for r in sel]),
                          "peak_increase_exponent": slope(x, [max(r["peak_increase_mb"], 1.0) for r in sel]),
                          "us_per_real_token": [1e6 * r["cpu_s"] / r["real_tokens"] for r in sel]}
    return fits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", default="1000,2000,5000,10000,20000,50000")
    p.add_argument("--lengths", default="16,32,64,128,256")
    p.add_argument("--base", type=int, default=640, help="real Twitter2015 train samples that get repeated")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--name", default="scale")
    args = p.parse_args()
    if args.quick:
        args.samples, args.lengths = "1000,2000,5000,10000", "16,32,64,128"
    points = [{"kind": "samples", "n": int(n)} for n in args.samples.split(",")]
    points += [{"kind": "length", "length": int(n)} for n in args.lengths.split(",")]
    load_start = list(os.getloadavg())
    torch.set_num_threads(args.threads)
    opts = argparse.Namespace(dataset="twitter2015", text_model="minilm", max_eval_samples=256)
    timer = make_timer(0, args.base, opts)
    base = timer.train_data
    timer.time_epoch("cmcs", 20, 3)  # warm-up
    rows: list[dict] = []
    setting = {"method": "cmcs", "H": 20, "K": 3, "finetune_layers": 0, "batch_size": 32, "base_samples": args.base}
    for point in tqdm(points, desc="scale"):
        rows.append(r := measure(timer, base, point))
        tqdm.write(f"{point['kind']:>7} {r.get('n', r.get('length')):>6}: epoch {r['cpu_s']:7.2f} CPU-s "
                   f"({r['wall_s']:.2f} wall), {r['upper_steps']} upper steps, peak RSS {r['peak_rss_mb']:.0f} MB "
                   f"(+{r['peak_increase_mb']:.0f}), features {r['feature_mb']:.0f} MB")
        write_result(args.name, {"loadavg_start": load_start, "points": rows, "fits": fit_all(rows), **setting})
    fits = fit_all(rows)
    for kind, f in fits.items():
        print(f"{kind}: epoch time ~ x^{f['time_exponent']:.2f}, feature memory ~ x^{f['feature_mem_exponent']:.2f}")
    write_result(args.name, {"loadavg_start": load_start, "points": rows, "fits": fits, **setting})


if __name__ == "__main__":
    main()
