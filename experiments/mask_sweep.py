"""A measured claim: do the paper's mask or its opt-in extensions turn down the planted
cues, and does CMCS schedule away from the shortcut when D_dev has no shortcut?

On the playground (planted train strength 0.95 for the word and the badge, test at chance),
for D_dev drawn like train ("iid") and D_dev with the cues at chance ("chance"), and per seed,
trains CMCS with the paper's element-wise mask, with one gate per token, and with token gates
plus a sparsity prior (two lambdas), plus joint training (w/o CMS, paper's mask) as the
scheduling control; scores each run against the truth (cmcs_core.playground.score) and reads
the scheduler (alpha, beta, phi) from the run's per-batch log. Finished runs are reused, so it resumes.

    nice -n 5 python experiments/mask_sweep.py        # experiments/results/mask_sweep.json, docs/img/mask_sweep_*.png
    python experiments/mask_sweep.py --plot-only       # redraw from the results file
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from playground_sweep import mean_and_std  # beside this script
from tqdm.auto import tqdm

from cmcs_core.playground import PlaygroundConfig
from cmcs_core.playground.run import ensure_dataset, run_config
from cmcs_core.playground.score import effect_values, score_run
from cmcs_core.report.regime import mean_std
from cmcs_core.runs.files import METRICS_FILE
from cmcs_core.runs.reader import load_run

ROOT = Path(__file__).resolve().parents[1]

# name -> (method, ModelConfig overrides)
VARIANTS: dict[str, tuple[str, dict]] = {
    "joint (w/o CMS)": ("wo_cms", {}),
    "CMCS, paper mask": ("cmcs", {}),
    "CMCS, token gate": ("cmcs", {"mask_granularity": "token"}),
    "CMCS, token + sparsity 0.1": ("cmcs", {"mask_granularity": "token", "mask_sparsity": 0.1}),
    "CMCS, token + sparsity 0.5": ("cmcs", {"mask_granularity": "token", "mask_sparsity": 0.5}),
}
DEVS = ("iid", "chance")


def slug(variant: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in variant.lower()).strip("_")


def scheduler_stats(run: Path) -> dict:
    """Where the upper level left phi: final alpha/beta, mean phi_t/phi_v over the last epoch."""
    b = load_run(run).batches()
    last = b[b["epoch"] == b["epoch"].max()]
    return {"alpha": float(b["alpha"].iloc[-1]), "beta": float(b["beta"].iloc[-1]),
            "phi_t": float(last["phi_t"].mean()), "phi_v": float(last["phi_v"].mean()),
            "phi_v_over_t": float((last["phi_v"] / last["phi_t"]).mean())}


def mask_stats(run: Path) -> dict:
    """Mean and spread of the per-token mask values over the test split (text and caption)."""
    samples = load_run(run).masks("test")["samples"]
    text = np.concatenate([s["mask"] for s in samples])
    vis = np.concatenate([s["visual_mask"] for s in samples if "visual_mask" in s])
    return {"text_mean": float(text.mean()), "text_std": float(text.std()),
            "visual_mean": float(vis.mean()), "visual_std": float(vis.std())}


def run_one(args: argparse.Namespace, dev: str, seed: int, variant: str) -> dict:
    from cmcs_core.train.trainer import train

    pg = PlaygroundConfig(seed=seed, n_train=args.n_train, n_dev=args.n_dev, n_test=args.n_test,
                          text_spurious_strength_train=args.strength, image_spurious_strength_train=args.strength,
                          dev_cues_at_chance=dev == "chance")
    data = ensure_dataset(Path(args.out) / f"data_{dev}_s{seed}", pg)
    method, overrides = VARIANTS[variant]
    run = Path(args.out) / f"{dev}_s{seed}_{slug(variant)}"
    t0 = time.time()
    if not (run / METRICS_FILE).is_file():
        train(run_config(data, method, seed, args.epochs, **overrides), run, progress=False)
    metrics = json.loads((run / METRICS_FILE).read_text())
    return {"dev": dev, "seed": seed, "variant": variant, "seconds": round(time.time() - t0, 1),
            "dev_acc": metrics["dev"]["acc"], "test_acc": metrics["test"]["acc"], "best_epoch": metrics["best_epoch"],
            "score": score_run(run), "scheduler": scheduler_stats(run), "masks": mask_stats(run),
            "effects": effect_score(run)}


def effect_score(run: Path) -> dict:
    """What the mask does (|Δp| per token, explain.mask_effects) by word role, scored like the masks;
    kept in the run folder (mask_effect_score.json), so a redraw does not recompute it."""
    path = run / "mask_effect_score.json"
    if path.is_file():
        return json.loads(path.read_text())
    res = score_run(run, values=effect_values(run))
    out = {k: res[k] for k in ("text", "visual", "ratio_spurious_to_sentiment", "ratio_cue_to_other",
                               "p_spurious_below_sentiment", "p_cue_below_other")}
    path.write_text(json.dumps(out, indent=1))
    return out


COLUMNS = {  # summary column -> (reader, shown as %)
    "test_acc": (lambda r: r["test_acc"], True),
    "acc_conflicting": (lambda r: r["score"]["accuracy"]["spurious_conflicting"], True),
    "text_below": (lambda r: r["score"]["p_spurious_below_sentiment"], True),
    "visual_below": (lambda r: r["score"]["p_cue_below_other"], True),
    "effect_text_ratio": (lambda r: r["effects"]["ratio_spurious_to_sentiment"], False),
    "effect_visual_ratio": (lambda r: r["effects"]["ratio_cue_to_other"], False),
    "text_mask_mean": (lambda r: r["masks"]["text_mean"], False),
    "text_mask_std": (lambda r: r["masks"]["text_std"], False),
    "phi_v_over_t": (lambda r: r["scheduler"]["phi_v_over_t"], False),
    "beta": (lambda r: r["scheduler"]["beta"], False),
}


def summarise(records: list[dict]) -> list[dict]:
    rows = []
    for dev in DEVS:
        for v in VARIANTS:
            rs = [r for r in records if r["dev"] == dev and r["variant"] == v]
            if not rs:
                continue
            row = {"dev": dev, "variant": v, "n_seeds": len(rs)}
            for key, (fn, _) in COLUMNS.items():
                row[key], row[key + "_sd"] = mean_and_std([fn(r) for r in rs])
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| D_dev | variant | seeds | test acc % | acc, cues conflict % | % planted word < sentiment word "
            "| % caption cue < other words | \\|Δp\\| planted / sentiment word | \\|Δp\\| caption cue / other words "
            "| text mask mean (sd over tokens) | phi_v / phi_t | beta |")
    lines = [head, "|---" * (head.replace("\\|", "").count("|") - 1) + "|"]
    for r in rows:
        def c(k: str, pct: bool) -> str:
            if np.isnan(r[k]):
                return "–"
            return mean_std(100 * r[k], 100 * r[k + "_sd"]) if pct else mean_std(r[k], r[k + "_sd"], digits=3)
        sched = [c("phi_v_over_t", False), c("beta", False)] if "w/o CMS" not in r["variant"] else ["fixed 1", "–"]
        lines.append(f"| {r['dev']} | {r['variant']} | {r['n_seeds']} | {c('test_acc', True)} | "
                     f"{c('acc_conflicting', True)} | {c('text_below', True)} | {c('visual_below', True)} | "
                     f"{c('effect_text_ratio', False)} | {c('effect_visual_ratio', False)} | "
                     f"{r['text_mask_mean']:.3f} ({r['text_mask_std']:.3f}) | " + " | ".join(sched) + " |")
    return "\n".join(lines)


def plot(records: list[dict], img_dir: Path) -> list[Path]:
    """Per variant, one dot per seed and the mean, for D_dev iid (o) and at chance (s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    panels = (("acc_conflicting", "accuracy on test rows whose cues point elsewhere", None),
              ("text_below", "share of test rows: planted word masked below sentiment word", 0.5),
              ("visual_below", "share of test rows: caption cue masked below other words", 0.5),
              ("phi_v_over_t", "scheduler: phi_v / phi_t, last epoch (1 = joint training)", 1.0))
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.3), sharey=False)
    names = list(VARIANTS)
    for ax, (key, title, ref) in zip(axes, panels):
        fn = COLUMNS[key][0]
        for k, (dev, marker, colour) in enumerate((("iid", "o", "C0"), ("chance", "s", "C3"))):
            for i, v in enumerate(names):
                vals = [fn(r) for r in records if r["dev"] == dev and r["variant"] == v and fn(r) is not None]
                if not vals:
                    continue
                x = i + (k - 0.5) * 0.25
                ax.scatter([x] * len(vals), vals, marker=marker, color=colour, alpha=0.5, s=22)
                ax.hlines(np.mean(vals), x - 0.1, x + 0.1, color=colour, lw=2,
                          label=f"D_dev {dev}" if i == 0 else None)
        if ref is not None:
            ax.axhline(ref, color="grey", ls="--", lw=0.8)
            if ref == 0.5:
                ax.set_ylim(0, 1)
        short = {"joint (w/o CMS)": "joint\n(w/o CMS)", "CMCS, paper mask": "CMCS\npaper", "CMCS, token gate": "CMCS\ntoken",
                 "CMCS, token + sparsity 0.1": "CMCS token\n+ λ 0.1", "CMCS, token + sparsity 0.5": "CMCS token\n+ λ 0.5"}
        ax.set_xticks(range(len(names)), [short.get(n, n) for n in names], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = img_dir / "mask_sweep.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


def write(path: Path, meta: dict, records: list[dict], wall: float) -> None:
    rows = summarise(records)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "wall_seconds": round(wall, 1), "summary": rows,
                                "table_markdown": markdown(rows), "runs": records}, indent=1, default=float) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--devs", nargs="+", default=list(DEVS), choices=DEVS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--strength", type=float, default=0.95, help="planted train strength (word and badge)")
    p.add_argument("--n-train", type=int, default=600)
    p.add_argument("--n-dev", type=int, default=150)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "runs" / "mask_sweep"))
    p.add_argument("--results", default=str(ROOT / "experiments" / "results" / "mask_sweep.json"))
    p.add_argument("--img-dir", default=str(ROOT / "docs" / "img"))
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)  # see docs/benchmarks.md: one thread is faster on a shared 2-core box
    if args.plot_only:
        saved = json.loads(Path(args.results).read_text())
        records = saved["runs"]
        missing = [r for r in records if "effects" not in r]
        for r in tqdm(missing, desc="what the masks do"):
            r["effects"] = effect_score(Path(r["score"]["run"]))
        if missing:
            write(Path(args.results), {k: saved[k] for k in ("argv", "settings")}, records, saved["wall_seconds"])
    else:
        jobs = [(d, s, v) for s in args.seeds for d in args.devs for v in args.variants]  # seed-major
        records, start = [], time.time()
        meta = {"argv": sys.argv[1:], "settings": {k: v for k, v in vars(args).items() if k != "plot_only"}}
        for d, s, v in tqdm(jobs, desc="mask sweep"):
            records.append(run_one(args, d, s, v))
            r = records[-1]
            tqdm.write(f"{d} s{s} {v}: test {r['test_acc']:.3f} conflict "
                       f"{r['score']['accuracy']['spurious_conflicting']:.3f} word<sent "
                       f"{r['score']['p_spurious_below_sentiment']:.2f} ({r['seconds']:.0f}s)")
            write(Path(args.results), meta, records, time.time() - start)
    print(markdown(summarise(records)))
    for path in plot(records, Path(args.img_dir)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
