"""Plots (docs/img/*.png) and Markdown tables from bench/results/*.json, for docs/benchmarks.md.

    python experiments/plot_benchmarks.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS, IMG = ROOT / "bench" / "results", ROOT / "docs" / "img"


def plain_ticks(ax, axis: str = "both", ticks: list[float] | None = None) -> None:
    """Log axes labelled 1, 5, 20 instead of 10^0 (and no minor labels)."""
    fmt = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    for name in ("x", "y") if axis == "both" else (axis,):
        a = getattr(ax, f"{name}axis")
        if ticks is not None and name == "x":
            ax.set_xticks(ticks)
        a.set_major_formatter(fmt)
        a.set_minor_formatter(matplotlib.ticker.NullFormatter())


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def upper_step_model(regime: dict) -> dict:
    """Least squares of (cmcs - wo_cms) CPU seconds = n_upper * (a + b * K): the cost of one upper step."""
    rows = regime["results"]
    X = np.array([[r["upper_steps"], r["upper_steps"] * r["K"]] for r in rows], dtype=float)
    y = np.array([r["cpu_cmcs"]["median"] - r["cpu_wo_cms"]["median"] for r in rows])
    (a, b), *_ = np.linalg.lstsq(X, y, rcond=None)
    lower = np.median([r["cpu_wo_cms"]["median"] for r in rows]) / regime["steps_per_epoch"]
    return {"a": a, "b": b, "lower_step": lower}


def overhead(res: dict) -> None:
    regimes = res["regimes"]
    fig, axes = plt.subplots(1, len(regimes), figsize=(5.5 * len(regimes), 4), squeeze=False)
    for ax, (name, reg) in zip(axes[0], regimes.items()):
        m = upper_step_model(reg) if len(reg["results"]) > 2 else None
        print(f"\n### {name} (finetune_layers {reg['finetune_layers']}, {reg['train_samples']} samples, "
              f"{reg['steps_per_epoch']} steps/epoch)\n")
        print("| H | K | upper steps/epoch | w/o CMS epoch (CPU s) | CMCS epoch (CPU s) | ratio CPU (min-max) | ratio wall |")
        print("|---|---|---|---|---|---|---|")
        for r in reg["results"]:
            rc, rw = r["ratio_cpu"], r["ratio_wall"]
            print(f"| {r['H']} | {r['K']} | {r['upper_steps']} | {r['cpu_wo_cms']['median']:.2f} | "
                  f"{r['cpu_cmcs']['median']:.2f} | **{rc['median']:.2f}** ({rc['min']:.2f}-{rc['max']:.2f}) | "
                  f"{rw['median']:.2f} |")
        if m:
            print(f"\nfit: one lower step {m['lower_step'] * 1e3:.0f} ms; one upper step "
                  f"{m['a'] * 1e3:.0f} + {m['b'] * 1e3:.0f}*K ms = {(m['a'] + 3 * m['b']) / m['lower_step']:.1f} lower "
                  f"steps at K=3")
        for K in sorted({r["K"] for r in reg["results"]}):
            sel = sorted((r for r in reg["results"] if r["K"] == K), key=lambda r: r["H"])
            H = [r["H"] for r in sel]
            med = np.array([r["ratio_cpu"]["median"] for r in sel])
            err = [med - [r["ratio_cpu"]["min"] for r in sel], [r["ratio_cpu"]["max"] for r in sel] - med]
            line = ax.errorbar(H, med, yerr=err, marker="o", capsize=3, label=f"K={K} measured")
            if m:
                hh = np.geomspace(1, 20, 50)
                ax.plot(hh, 1 + (m["a"] + m["b"] * K) / (hh * m["lower_step"]), ls=":", color=line[0].get_color())
        ax.axhline(1.2, color="k", ls="--", lw=1, label="aim 1.2x")
        ax.set(xscale="log", yscale="log", xlabel="H (lower steps per upper step)", ylabel="epoch time CMCS / w/o CMS",
               title=f"{name} (finetune_layers {reg['finetune_layers']})")
        plain_ticks(ax, ticks=[1, 5, 20])
        ax.set_yticks([1, 1.2, 1.5, 2, 3, 5, 10] if max(r["ratio_cpu"]["max"] for r in reg["results"]) > 5
                      else [1, 1.2, 1.5, 2, 3, 4])
        plain_ticks(ax, "y")
        ax.legend(fontsize=8)
    fig.suptitle("CMCS scheduling overhead (CPU time, medians, min-max bars; dotted: 1 + (a + bK) / (H t_lower))",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(IMG / "overhead.png", dpi=110)


def encoders(res: dict) -> None:
    rs = res["results"]
    peak = res["matmul_peak"]
    print(f"\nmatmul peak: {peak['gflops_cpu']:.1f} GFLOP/s per CPU-second ({peak['threads']} thread), "
          f"{peak['gflops_wall']:.1f} wall\n")
    print(f"medians of {res.get('repeats', 1)} repeat(s) per variant, variants of an encoder in alternating order\n")
    print("| encoder | batches | samples/s | real tokens/s | padding | GFLOP/s | % of peak (min-max) |")
    print("|---|---|---|---|---|---|---|")
    labels, fracs, colors = [], [], []
    for name, r in rs.items():
        variants = [(v, r[v]) for v in ("padded", "shuffled", "bucketed") if v in r] or [("-", r)]
        for v, x in variants:
            tps = f"{x['real_tokens_per_s']:.0f}" if "real_tokens_per_s" in x else "-"
            pad = f"{x['pad_waste']:.0%}" if "pad_waste" in x else "-"
            lo, hi = x.get("frac_of_peak_range", (x["frac_of_peak"],) * 2)
            print(f"| {name} | {v} | {x['samples_per_s']:.1f} | {tps} | {pad} | {x['gflops']:.1f} | "
                  f"{x['frac_of_peak']:.0%} ({lo:.0%}-{hi:.0%}) |")
            labels.append(f"{name}\n{v}" if v != "-" else name)
            fracs.append(100 * x["frac_of_peak"])
            colors.append({"padded": "tab:red", "shuffled": "tab:orange", "bucketed": "tab:green"}.get(v, "tab:blue"))
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(labels) + 1.2))
    ax.barh(range(len(labels)), fracs, color=colors)
    ax.set_yticks(range(len(labels)), [lbl.replace("\n", " / ") for lbl in labels], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(100, color="k", ls="--", lw=1)
    ax.set(xlabel=f"% of fp32 matmul peak ({peak['gflops_cpu']:.0f} GFLOP/s, {peak['threads']} thread)",
           title="Encoder throughput vs the matmul bound (real tokens only)")
    fig.tight_layout()
    fig.savefig(IMG / "encoders.png", dpi=110)


def scale(res: dict) -> None:
    pts = res["points"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, kind, key, xlabel in ((axes[0], "samples", "samples", "training samples N"),
                                  (axes[1], "length", "length", "real tokens per sample L")):
        sel = [p for p in pts if p["kind"] == kind]
        if not sel:
            continue
        print(f"\n| {xlabel} | real tokens | epoch CPU s | epoch wall s | upper steps | features MB | peak RSS MB "
              f"| peak increase MB |\n|---|---|---|---|---|---|---|---|")
        for p in sel:
            print(f"| {p[key]} | {p['real_tokens']} | {p['cpu_s']:.2f} | {p['wall_s']:.2f} | {p['upper_steps']} | "
                  f"{p['feature_mb']:.0f} | {p['peak_rss_mb']:.0f} | {p['peak_increase_mb']:.0f} |")
        x = [p[key] for p in sel]
        fit = res["fits"].get(kind, {})
        ax.plot(x, [p["cpu_s"] for p in sel], "o-", label=f"epoch CPU s (slope {fit.get('time_exponent', 0):.2f})")
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="epoch CPU seconds")
        ax2 = ax.twinx()
        ax2.plot(x, [p["peak_rss_mb"] for p in sel], "s--", color="tab:red", label="peak RSS MB")
        ax2.plot(x, [p["feature_mb"] for p in sel], "^:", color="tab:purple", label="cached features MB")
        ax2.plot(x, [max(p["peak_increase_mb"], 1) for p in sel], "v-.", color="tab:orange",
                 label="peak increase MB (features + training)")
        ax2.set(yscale="log", ylabel="MB")
        plain_ticks(ax, ticks=x)
        plain_ticks(ax2, "y")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
        ax.set_title(f"CMCS frozen, H=20 K=3: cost vs {xlabel}", fontsize=9)
    fig.tight_layout()
    fig.savefig(IMG / "scale.png", dpi=110)


def precision(res: dict) -> None:
    """fp32 vs bf16 per regime: a training step (and with CMCS's upper step every H), an evaluate pass."""
    peak = res["matmul_peak_gflops"]
    print(f"\nmatmul peak, one thread: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s "
          f"({peak['bf16'] / peak['fp32']:.1f}x); native bf16: {res['native_bf16']} ({', '.join(res['cpu_flags'])})\n")
    print("| regime, method | step fp32 (samples/s) | step bf16 (samples/s) | step speed-up (min-max) | "
          "with the upper step | bf16 share of its peak | fp32 share of its peak | evaluate speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in res["regimes"].items():
        low = r["lower_step"]
        f32, b16 = low["fp32"], low["bf16"]
        lo, hi = b16["samples_per_s_range"][0] / f32["samples_per_s_range"][1], \
            b16["samples_per_s_range"][1] / f32["samples_per_s_range"][0]
        upper = f"{r['amortised_speedup']:.2f}x" if "amortised_speedup" in r else "(no upper level)"
        print(f"| {name} | {f32['samples_per_s']:.1f} | {b16['samples_per_s']:.1f} | **{low['speedup']:.2f}x** "
              f"({lo:.2f}-{hi:.2f}) | {upper} | {b16['frac_of_peak']:.0%} | {f32['frac_of_peak']:.0%} | "
              f"{r['evaluate']['speedup']:.2f}x |")
    ins = res["inspector"]
    print("\nInspector prediction (wall, median of "
          f"{ins['fp32']['wall_s']['n']}): fp32 {ins['fp32']['wall_s']['median'] * 1000:.0f} ms, "
          f"bf16 {ins['bf16']['wall_s']['median'] * 1000:.0f} ms")


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    for name, fn in (("overhead", overhead), ("encoders", encoders), ("scale", scale), ("precision", precision)):
        res = load(name)
        if res is None:
            print(f"(no bench/results/{name}.json)", file=sys.stderr)
            continue
        print(f"\n## {name}  (load {res['machine']['loadavg']}, {res['machine']['date']})")
        fn(res)


if __name__ == "__main__":
    main()
