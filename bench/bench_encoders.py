"""Encoder throughput against this CPU's matmul peak: frozen extraction and fine-tuning.

Rates are per CPU-second of this process with --threads 1 (the cost on one dedicated core; wall
rates are also stored). Achieved GFLOP/s: 2 * non-embedding params * real tokens for a forward,
6x for training; images use FlopCounterMode. "padded" batches are file order with every sample
padded to the split's longest (the library's order before extract_text sorted by length);
"bucketed" sorts by length first, then pads each batch only to its own longest (extract_text's
order now). Every variant is timed --repeats times, the variants of one encoder in alternating
order (A B, B A, A B, ...); figures are medians with (min-max) over the repeats. No progress bar
is drawn inside a timed region.

    python bench/bench_encoders.py            # everything (MPNet unzips ~400 MB on first use)
    python bench/bench_encoders.py --quick    # fewer samples, no MPNet, no CLIP
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from _common import matmul_peak_gflops, summary, time_alternating, timed, write_result
from PIL import Image
from torch.nn import functional as F

from cmcs_core.data.dataset import dataset_files, load_split
from cmcs_core.encoders.text import TextEncoder
from cmcs_core.model.cmcs import TextTower

ROOT = Path(__file__).resolve().parents[1]


def batches(mask: torch.Tensor, batch_size: int, bucket: bool) -> list[tuple[torch.Tensor, int]]:
    """(indices, width) per batch: file order at the full padded width, or sorted by length."""
    lengths = mask.sum(1)
    order = torch.argsort(lengths, stable=True) if bucket else torch.arange(len(lengths))
    out = []
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        out.append((idx, int(lengths[idx].max()) if bucket else mask.shape[1]))
    return out


def encoder_params(enc: TextEncoder, top: int | None = None) -> int:
    """Non-embedding parameters: the transformer layers (all, or the top `top`)."""
    layers = enc.layers if top is None else enc.layers[-top:]
    return sum(p.numel() for p in layers.parameters())


def rates(n: int, real: int | None, padded: int | None, times: dict[str, list[float]], flops: float,
          peak: float) -> dict:
    """Rates at the median CPU time over the repeats; *_range: at the slowest and fastest repeat."""
    cpu, wall = summary(times["cpu"]), summary(times["wall"])
    med, slow, fast = cpu["median"], cpu["max"], cpu["min"]
    out = {"samples": n, "repeats": cpu["n"], "wall_s": wall, "cpu_s": cpu,
           "samples_per_s": n / med, "samples_per_s_range": [n / slow, n / fast],
           "samples_per_wall_s": n / wall["median"], "gflops": flops / med / 1e9,
           "frac_of_peak": flops / med / 1e9 / peak, "frac_of_peak_range": [flops / slow / 1e9 / peak,
                                                                            flops / fast / 1e9 / peak]}
    if real is not None:
        out.update(real_tokens=real, padded_tokens=padded, pad_waste=1 - real / padded, real_tokens_per_s=real / med)
    return out


def text_extraction(enc: TextEncoder, texts: list[str], pairs: list[str] | None, max_length: int,
                    batch_size: int, peak: float, repeats: int) -> dict:
    tok = enc.tokenize(texts, pairs, max_length=max_length)
    real = int(tok["attention_mask"].sum())
    params = encoder_params(enc)
    out = {"params_nonembedding": params, "max_length": max_length, "batch_size": batch_size}
    plans = {"padded": batches(tok["attention_mask"], batch_size, False),
             "bucketed": batches(tok["attention_mask"], batch_size, True)}

    def run(plan: list[tuple[torch.Tensor, int]]) -> None:
        with torch.no_grad():
            for idx, width in plan:
                enc.hidden_at({k: v[idx, :width] for k, v in tok.items()}, enc.num_layers)

    with torch.no_grad():
        enc.hidden_at({k: v[:2, :8] for k, v in tok.items()}, enc.num_layers)  # warm-up
    times = time_alternating({name: (lambda plan=plan: run(plan)) for name, plan in plans.items()}, repeats)
    for name, plan in plans.items():
        padded = sum(len(idx) * w for idx, w in plan)
        out[name] = rates(len(texts), real, padded, times[name], 2 * params * real, peak)
    return out


def text_finetune(enc: TextEncoder, texts: list[str], pairs: list[str], layers: int, batch_size: int,
                  peak: float, repeats: int) -> dict:
    """Forward + backward + AdamW of the library's TextTower (-1: all layers from ids; N: top N
    over cached states), mean-pooled into a linear head; random-order batches vs bucketed."""
    tower = TextTower(enc, layers)
    tok = enc.tokenize(texts, pairs, max_length=64)
    if layers > 0:
        with torch.no_grad():
            tok["text_hidden"] = enc.hidden_at(tok, tower.cache_layer)
    head = torch.nn.Linear(enc.dim, 3)
    params = [p for p in tower.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=2e-5)
    labels = torch.randint(0, 3, (len(texts),))
    trained = encoder_params(enc, None if layers == -1 else layers)
    real = int(tok["attention_mask"].sum())
    out = {"finetune_layers": layers, "params_trained_nonembedding": trained, "batch_size": batch_size}

    def step(idx: torch.Tensor, width: int) -> None:
        batch = {k: v[idx, :width] for k, v in tok.items()}
        hidden = tower(batch)
        m = batch["attention_mask"].unsqueeze(-1).float()
        loss = F.cross_entropy(head((hidden * m).sum(1) / m.sum(1)), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    gen = torch.Generator().manual_seed(0)
    step(torch.arange(4), 16)  # warm-up
    lengths = tok["attention_mask"].sum(1)
    order = torch.randperm(len(texts), generator=gen)  # the Trainer's order: shuffled, each batch at its own longest
    plans = {"shuffled": [(order[i : i + batch_size], int(lengths[order[i : i + batch_size]].max()))
                          for i in range(0, len(texts), batch_size)],
             "bucketed": batches(tok["attention_mask"], batch_size, True)}
    times = time_alternating({name: (lambda plan=plan: [step(i, w) for i, w in plan]) for name, plan in plans.items()},
                             repeats)
    for name, plan in plans.items():
        padded = sum(len(idx) * w for idx, w in plan)
        out[name] = rates(len(texts), real, padded, times[name], 6 * trained * real, peak)
    enc.requires_grad_(False)
    return out


def sample_images(n: int) -> list[Image.Image]:
    """skimage's sample photographs, then random-noise images of random sizes to fill n."""
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry", "colorwheel"]
    images = [Image.fromarray(getattr(data, k)()) for k in names if hasattr(data, k)]
    rng = np.random.default_rng(0)
    while len(images) < n:
        h, w = rng.integers(200, 700, 2)
        images.append(Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)))
    return images[:n]


def image_extraction(encoder, images: list[Image.Image], batch_size: int, peak: float, repeats: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    pixels = encoder.preprocess(images[:1])
    torch.backends.mha.set_fastpath_enabled(False)  # the fused MHA kernel hides its matmuls from the counter
    with FlopCounterMode(display=False) as counter:
        encoder.encode(pixels)
    torch.backends.mha.set_fastpath_enabled(True)
    per_image = counter.get_total_flops()
    pre_wall, pre_cpu, pixels = timed(lambda: encoder.preprocess(images))
    plan = [pixels[i : i + batch_size] for i in range(0, len(images), batch_size)]
    times = time_alternating({"encode": lambda: [encoder.encode(b) for b in plan]}, repeats)["encode"]
    n = len(images)
    return {"gflop_per_image": per_image / 1e9, "batch_size": batch_size, "preprocess_samples_per_s": n / pre_cpu,
            "params": sum(p.numel() for p in encoder.parameters()), **rates(n, None, None, times, per_image * n, peak)}


def random_clip(model_name: str):
    """ViT-B-32 with RANDOM weights (no checkpoint here): speed only, its features are noise."""
    import open_clip

    from cmcs_core.encoders.visual import ClipEncoder

    model, _, transform = open_clip.create_model_and_transforms(model_name, pretrained=None)
    return ClipEncoder(model, transform, open_clip.get_tokenizer(model_name), f"clip-{model_name}:random", True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="twitter2015")
    p.add_argument("--samples", type=int, default=512, help="tweets for MiniLM extraction")
    p.add_argument("--mpnet-samples", type=int, default=128)
    p.add_argument("--finetune-samples", type=int, default=256)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64, help="extraction batch (the library's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timings per variant (alternating order); medians reported")
    p.add_argument("--skip", default="", help="comma list of: mpnet,captions,efficientnet,clip,finetune")
    p.add_argument("--quick", action="store_true", help="few samples, no MPNet, no CLIP")
    p.add_argument("--name", default="encoders")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    if args.quick:
        args.samples, args.finetune_samples, args.images = 128, 64, 16
        skip |= {"mpnet", "clip"}
    load_start = list(os.getloadavg())
    peak = matmul_peak_gflops()
    print(f"matmul peak ({peak['threads']} thread): {peak['gflops_cpu']:.1f} GFLOP/s per CPU-second "
          f"({peak['gflops_wall']:.1f} wall)")
    bound = peak["gflops_cpu"]
    split = load_split(dataset_files(args.dataset), "train", max_samples=args.samples)
    texts, pairs = [s.text for s in split.samples], [s.target for s in split.samples]
    out: dict = {"loadavg_start": load_start, "matmul_peak": peak, "dataset": args.dataset, "repeats": args.repeats,
                 "results": {}}
    res = out["results"]
    minilm = TextEncoder("minilm")
    res["minilm_text"] = text_extraction(minilm, texts, pairs, 64, args.batch_size, bound, args.repeats)
    if "captions" not in skip:
        captions = list(dict.fromkeys(split.visual_text))
        res["minilm_captions"] = text_extraction(minilm, captions, None, 40, args.batch_size, bound, args.repeats)
    if "finetune" not in skip:
        ft_texts, ft_pairs = texts[: args.finetune_samples], pairs[: args.finetune_samples]
        res["minilm_finetune_top2"] = text_finetune(minilm, ft_texts, ft_pairs, 2, 32, bound, args.repeats)
        res["minilm_finetune_full"] = text_finetune(TextEncoder("minilm"), ft_texts, ft_pairs, -1, 32, bound,
                                                    args.repeats)
    write_result(args.name, out)  # after each stage from here on, so a failure keeps what was measured
    if "mpnet" not in skip:
        try:
            unzip_wall, _, mpnet = timed(lambda: TextEncoder("mpnet", attn_implementation="eager"))  # no sdpa
        except FileNotFoundError as err:  # the optional weights package (requirements-mpnet.txt)
            print(f"MPNet skipped: {err}")
            out["skipped"] = {"mpnet": str(err)}
        else:
            n = args.mpnet_samples
            res["mpnet_text"] = text_extraction(mpnet, texts[:n], pairs[:n], 64, args.batch_size, bound, args.repeats)
            res["mpnet_text"]["load_s_incl_first_unzip"] = unzip_wall
            del mpnet
            write_result(args.name, out)
    images = sample_images(args.images)
    if "efficientnet" not in skip:
        from cmcs_core.encoders.visual import load_image_encoder

        res["efficientnet_lite0"] = image_extraction(load_image_encoder("efficientnet-lite0"), images, 32, bound,
                                                     args.repeats)
        write_result(args.name, out)
    if "clip" not in skip:
        res["clip_vit_b32_RANDOM_WEIGHTS"] = image_extraction(random_clip("ViT-B-32"), images, 32, bound, args.repeats)
        res["clip_vit_b32_RANDOM_WEIGHTS"]["note"] = "random weights: speed only, features meaningless"
    print(f"\n{'encoder':<28} {'variant':<9} {'samples/s':>9} {'tokens/s':>9} {'GFLOP/s':>8} {'% peak':>6} "
          f"{'(min-max)':>9} {'pad':>5}   medians of {args.repeats}")
    for name, r in res.items():
        for variant in ("padded", "shuffled", "bucketed", None):
            v = r if variant is None and "samples_per_s" in r else r.get(variant) if variant else None
            if v:
                tps = f"{v['real_tokens_per_s']:>9.0f}" if "real_tokens_per_s" in v else f"{'-':>9}"
                pad = f"{v['pad_waste']:>5.0%}" if "pad_waste" in v else f"{'-':>5}"
                lo, hi = v["frac_of_peak_range"]
                print(f"{name:<28} {variant or '-':<9} {v['samples_per_s']:>9.1f} {tps} {v['gflops']:>8.1f} "
                      f"{v['frac_of_peak']:>6.0%} {f'{lo:.0%}-{hi:.0%}':>9} {pad}")
    out["loadavg_end"] = list(os.getloadavg())
    write_result(args.name, out)


if __name__ == "__main__":
    main()
