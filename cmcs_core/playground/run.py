"""`python -m cmcs_core playground`: generate the playground dataset and train a run on it.

This is the embedded default of the app: with no benchmark data on the machine, one command
gives a populated lab in a few minutes on two CPU cores.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from cmcs_core.config import METHODS, RunConfig, apply_method

DEFAULT_DATA = Path("playground") / "data"
DEFAULT_RUNS = Path("runs")
# Sized so the whole command (generate, encode, 6 epochs of CMCS) fits ~2.5 min on 2 CPU cores
# (measured: docs/playground.md); the generator's own defaults stay larger for library use.
DEFAULT_SIZES = {"n_train": 800, "n_dev": 200, "n_test": 300}


def add_playground_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-out", default=str(DEFAULT_DATA), help="where the dataset folder is written")
    p.add_argument("--runs-dir", default=str(DEFAULT_RUNS), help="where run folders go")
    p.add_argument("--methods", nargs="+", default=["cmcs"], choices=sorted(METHODS))
    p.add_argument("--seed", type=int, default=0, help="generator and training seed")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--n-train", type=int, default=DEFAULT_SIZES["n_train"], help="rows (tweet-target pairs) in train")
    p.add_argument("--n-dev", type=int, default=DEFAULT_SIZES["n_dev"])
    p.add_argument("--n-test", type=int, default=DEFAULT_SIZES["n_test"])
    p.add_argument("--text-strength", type=float, default=None, help="planted word/label agreement in train")
    p.add_argument("--image-strength", type=float, default=None, help="planted image cue/label agreement in train")
    p.add_argument("--visual-model", default="caption", help="caption | efficientnet-lite0 (real pixels)")
    p.add_argument("--generate-only", action="store_true")
    p.add_argument("--quiet", action="store_true")


def playground_config(args: argparse.Namespace):
    from cmcs_core.playground.generator import PlaygroundConfig

    cfg = PlaygroundConfig(seed=args.seed)
    overrides = {
        "n_train": args.n_train,
        "n_dev": getattr(args, "n_dev", None),
        "n_test": getattr(args, "n_test", None),
        "text_spurious_strength_train": args.text_strength,
        "image_spurious_strength_train": args.image_strength,
    }
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def ensure_dataset(out: Path, config) -> Path:
    """Generate once; an existing folder made with the same config is reused."""
    import json

    from cmcs_core.playground.generator import generate_playground

    meta = out / "meta.json"
    if meta.is_file() and json.loads(meta.read_text()).get("config") == dataclasses.asdict(config):
        return out
    return generate_playground(out, config, overwrite=True)


def run_config(data_dir: Path, method: str, seed: int, epochs: int, visual_model: str = "caption") -> RunConfig:
    """Small, fast defaults: frozen MiniLM, captions (or pixels), a few epochs."""
    cfg = RunConfig()
    cfg.data.dataset = str(data_dir)
    if visual_model != "caption":
        cfg.data.image_dir = str(data_dir / "images")
    cfg.encoder.visual_model = visual_model
    cfg.encoder.max_length = 48
    cfg.encoder.caption_max_length = 40  # captions reach 34 wordpieces and the cue is named last
    cfg.model = apply_method(cfg.model, method)
    cfg.train.epochs = epochs
    cfg.train.seed = seed
    cfg.train.H = 5
    # The heads are tiny: on a busy 2-core box one thread did a training step in ~10x less
    # CPU time than two (OpenMP threads wait on each other); see docs/playground.md.
    cfg.train.num_threads = 1
    return cfg


def playground_main(args: argparse.Namespace) -> list[Path]:
    from cmcs_core.io import atomic_write_json
    from cmcs_core.playground.score import score_run
    from cmcs_core.train.trainer import train

    config = playground_config(args)
    data_dir = ensure_dataset(Path(args.data_out), config)
    print(f"playground dataset: {data_dir}")
    if args.generate_only:
        return []
    runs = []
    for method in args.methods:
        cfg = run_config(data_dir, method, args.seed, args.epochs, args.visual_model)
        out = Path(args.runs_dir) / f"playground_{method}_s{args.seed}"
        metrics = train(cfg, out, progress=not args.quiet)
        score = score_run(out, data_dir)  # the truth-scored masks travel with the run (for the app)
        atomic_write_json(out / "playground_score.json", score)
        acc = {k: "n/a" if v is None else f"{v:.3f}" for k, v in score["accuracy"].items()}
        print(f"{method}: test acc {metrics['test']['acc']:.3f} (dev {metrics['dev']['acc']:.3f}; "
              f"cues agree {acc['spurious_aligned']} / conflict {acc['spurious_conflicting']}) -> {out}")
        runs.append(out)
    return runs
