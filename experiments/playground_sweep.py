"""A measured claim: does CMCS resist planted shortcuts better than its baselines?

Over planted train strengths (text word and image cue together; test at chance, 1/3) and
seeds, trains text_only, wo_cms (joint training) and cmcs on a fresh playground per
(strength, seed), and scores every run against the truth (cmcs_core.playground.score).
Runs are reused when their metrics.json exists, so an interrupted sweep resumes.

    nice python experiments/playground_sweep.py            # writes experiments/results/playground_sweep.json
    python experiments/playground_sweep.py --plot-only      # redraws docs/img/playground_*.png + table
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cmcs_core.playground import PlaygroundConfig
from cmcs_core.playground.run import ensure_dataset, run_config
from cmcs_core.playground.score import score_run
from cmcs_core.provenance import machine_info
from cmcs_core.report.regime import mean_std
from cmcs_core.runs.files import METRICS_FILE

ROOT = Path(__file__).resolve().parents[1]

METHODS = ["text_only", "wo_cms", "cmcs"]
TITLES = {"text_only": "text-only", "wo_cms": "joint (w/o CMS)", "cmcs": "CMCS"}
COLOURS = {"text_only": "C0", "wo_cms": "C1", "cmcs": "C2"}  # the same method, the same colour in both plots


def run_one(args: argparse.Namespace, strength: float, seed: int, method: str) -> dict:
    """Generate (or reuse) the dataset, train (or reuse) the run, score it."""
    from cmcs_core.train.trainer import train

    pg = PlaygroundConfig(seed=seed, n_train=args.n_train, n_dev=args.n_dev, n_test=args.n_test,
                          text_spurious_strength_train=strength, image_spurious_strength_train=strength)
    data = ensure_dataset(Path(args.out) / f"data_p{strength:g}_s{seed}", pg)
    run = Path(args.out) / f"p{strength:g}_s{seed}_{method}"
    t0 = time.time()
    if not (run / METRICS_FILE).is_file():
        train(run_config(data, method, seed, args.epochs), run, progress=False)
    score = score_run(run)
    metrics = json.loads((run / METRICS_FILE).read_text())
    return {"strength": strength, "seed": seed, "method": method, "seconds": round(time.time() - t0, 1),
            "dev_acc": metrics["dev"]["acc"], "test_acc": metrics["test"]["acc"], "test_f1": metrics["test"]["macro_f1"],
            "best_epoch": metrics["best_epoch"], "score": score}


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std over seeds, missing values left out (std NaN for one seed)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan


def summarise(records: list[dict]) -> list[dict]:
    """One row per (strength, method): mean and std over seeds."""
    rows = []
    for s in sorted({r["strength"] for r in records}):
        for m in METHODS:
            rs = [r for r in records if r["strength"] == s and r["method"] == m]
            if not rs:
                continue
            get = {
                "test_acc": lambda r: r["test_acc"],
                "acc_conflicting": lambda r: r["score"]["accuracy"]["spurious_conflicting"],
                "acc_aligned": lambda r: r["score"]["accuracy"]["spurious_aligned"],
                "text_ratio": lambda r: r["score"]["ratio_spurious_to_sentiment"],
                "visual_ratio": lambda r: r["score"]["ratio_cue_to_other"],
                "text_below": lambda r: r["score"].get("p_spurious_below_sentiment"),
                "visual_below": lambda r: r["score"].get("p_cue_below_other"),
            }
            row = {"strength": s, "method": m, "n_seeds": len(rs)}
            for key, fn in get.items():
                row[key], row[key + "_std"] = mean_and_std([fn(r) for r in rs])
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    def cell(r: dict, k: str, pct: bool = True) -> str:
        if math.isnan(r[k]):
            return "–"
        return mean_std(100 * r[k], 100 * r[k + "_std"]) if pct else mean_std(r[k], r[k + "_std"], digits=4)

    lines = ["| train strength | method | seeds | test acc % | acc, cues conflict % | acc, cues agree % "
             "| text: mask spurious/sentiment | text: % spurious < sentiment | caption: mask cue/other "
             "| caption: % cue < other |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        masked = r["method"] != "text_only"
        mask_cells = [cell(r, "text_ratio", False), cell(r, "text_below"), cell(r, "visual_ratio", False),
                      cell(r, "visual_below")] if masked else ["no mask"] * 4
        lines.append(f"| {r['strength']:g} | {TITLES[r['method']]} | {r['n_seeds']} | {cell(r, 'test_acc')} "
                     f"| {cell(r, 'acc_conflicting')} | {cell(r, 'acc_aligned')} | " + " | ".join(mask_cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], img_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    accuracy = _panel_pair(plt, rows, METHODS, (("test_acc", "test accuracy (cues at chance)"),
                                                ("acc_conflicting", "test rows whose cues point elsewhere")),
                           xlabel="planted strength in train (text and image)", ylabel="accuracy", sharey=True)
    masks = _panel_pair(plt, rows, ("wo_cms", "cmcs"),
                        (("text_below", "text: planted word masked below sentiment word"),
                         ("visual_below", "caption: cue words masked below other words")),
                        xlabel="planted strength in train", ylabel="share of test samples (0.5 = no preference)",
                        shares=True)
    out = [img_dir / "playground_accuracy.png", img_dir / "playground_masks.png"]
    for fig, path in zip((accuracy, masks), out):
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return out


def _panel_pair(plt, rows: list[dict], methods, panels, xlabel: str, ylabel: str, sharey: bool = False,
                shares: bool = False):
    """Two panels of _errorbars side by side; `shares` draws 0..1 with the no-preference line."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=sharey)
    for ax, (key, title) in zip(axes, panels):
        _errorbars(ax, rows, methods, key)
        if shares:
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
            ax.set_ylim(0, 1)
        ax.set_title(title, **({"fontsize": 10} if shares else {}))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[0].legend()
    return fig


def _errorbars(ax, rows: list[dict], methods, key: str) -> None:
    """Mean ± std per strength, one line per method, nudged sideways so bars don't overlap."""
    for no, m in enumerate(methods):
        rs = [r for r in rows if r["method"] == m]
        shift = 0.006 * (no - (len(methods) - 1) / 2)
        ax.errorbar([r["strength"] + shift for r in rs], [r[key] for r in rs], [r[key + "_std"] for r in rs],
                    marker="o", capsize=3, label=TITLES[m], color=COLOURS[m])


def write(path: Path, meta: dict, records: list[dict], wall: float) -> None:
    """The results file: how it was made, the per-(strength, method) summary, every run."""
    rows = summarise(records)
    result = {"machine": machine_info(), **meta, "wall_seconds": round(wall, 1), "summary": rows,
              "table_markdown": markdown(rows), "runs": records}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=float) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strengths", nargs="+", type=float, default=[0.5, 0.75, 0.95])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--n-train", type=int, default=800)
    p.add_argument("--n-dev", type=int, default=200)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--out", default=str(ROOT / "runs" / "playground_sweep"), help="datasets and run folders")
    p.add_argument("--results", default=str(ROOT / "experiments" / "results" / "playground_sweep.json"))
    p.add_argument("--img-dir", default=str(ROOT / "docs" / "img"))
    p.add_argument("--plot-only", action="store_true",
                   help="train nothing: re-score the run folders listed in --results, redraw plots and table")
    args = p.parse_args()
    if args.plot_only:
        saved = json.loads(Path(args.results).read_text())
        records = saved["runs"]
        for r in records:
            if Path(r["score"]["run"]).is_dir():
                r["score"] = score_run(r["score"]["run"])
        write(Path(args.results), {k: saved[k] for k in ("argv", "settings")}, records, saved["wall_seconds"])
    else:
        jobs = [(s, seed, m) for seed in args.seeds for s in args.strengths for m in args.methods]  # seed-major
        records, start = [], time.time()
        for s, seed, m in tqdm(jobs, desc="playground sweep"):
            records.append(run_one(args, s, seed, m))
            tqdm.write(f"p={s:g} seed={seed} {m}: test {records[-1]['test_acc']:.3f} "
                       f"spur/sent {records[-1]['score']['ratio_spurious_to_sentiment']:.2f} "
                       f"({records[-1]['seconds']:.0f}s, {time.time() - start:.0f}s total)")
            meta = {"argv": sys.argv[1:], "settings": {k: v for k, v in vars(args).items() if k != "plot_only"}}
            write(Path(args.results), meta, records, time.time() - start)
    rows = summarise(records)
    print(markdown(rows))
    for path in plot(rows, Path(args.img_dir)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
