"""`python -m cmcs_core playground`: generate the playground dataset and train runs on it.

This is the embedded default of the app: with no benchmark data on the machine, one command
gives a populated lab in a few minutes on two CPU cores: a CMCS run that reads the images as
captions and one that reads their pixels (EfficientNet-Lite0), so the inspector takes an
uploaded picture and the masks page draws the 7x7 cell mask over it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

from cmcs_core.config import CHOICES, METHODS, RunConfig, build_config
from cmcs_core.data.counterfactual import ALL_EDITS, PLANTED_EDITS
from cmcs_core.io import atomic_write_json
from cmcs_core.runs.files import CONFIG_FILE, PLAYGROUND_SCORE_FILE
from cmcs_core.variants import VARIANTS

DEFAULT_DATA = Path("playground") / "data"
DEFAULT_RUNS = Path("runs")
# Sized so the whole command (generate, encode, a captions run and a pixel run) stays under
# 90 s of CPU time (bench/bench_first_run.py, docs/playground.md); the generator's own
# defaults stay larger for library use.
DEFAULT_SIZES = {"n_train": 600, "n_dev": 150, "n_test": 300}
DEFAULT_EPOCHS = 5
VISUAL_MODELS = ("caption", "efficientnet-lite0")
# The first run's stress tests: the planted-truth edits on the captions runs (about 6 s of CPU per edit and
# run; a pixel run re-encodes the images for every edit, ~25 s each, so it is left to `cmcs stress`).
STRESS_EDITS = PLANTED_EDITS
PRESET_STRESS_EDITS = PLANTED_EDITS + ("clause_positive", "clause_negative")
# CMCS beside the text-only baseline, so the first run shows what the image and the machinery add.
DEFAULT_METHODS = ("cmcs", "text_only")
# A pixel run's MFS works on 49 x 1280 features per image, ~35x the captions' 40 x 384: these
# keep it a short run (its point is the inspector and the cell masks, not the tables).
PIXEL_OVERRIDES = {"hidden_dim": 64, "H": 10}
# Small, fast defaults of every run: frozen MiniLM, a few epochs. The heads are tiny: on a busy 2-core box
# one thread did a training step in ~10x less CPU time than two (OpenMP threads wait on each other);
# see docs/playground.md. Captions reach 34 wordpieces and the cue is named last.
RUN_DEFAULTS = {"max_length": 48, "caption_max_length": 40, "H": 5, "num_threads": 1}
PIXEL_EPOCHS = 3
Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what just ran)

# Presets: a dataset that tells one story and the runs that show it side by side (`--preset NAME`).
# "target-cue": every tweet has two or three targets, every clause carries a planted word that goes
# with the label in train (0.95) and is at chance in dev and test, and the image cue likewise: a
# target-irrelevant cue beside target-relevant evidence, with other targets' sentiment words as
# context about something else. The paper's CMCS and the target-aware variant are trained on it next
# to the text-only baseline; their masks are scored against the planted truth (playground_score.json).
PRESETS: dict[str, dict] = {
    "target-cue": {
        "generator": {"min_targets_per_tweet": 2, "spurious_rate": 1.0, "dev_cues_at_chance": True,
                      "text_spurious_strength_train": 0.95, "image_spurious_strength_train": 0.95,
                      "n_train": 1200, "n_dev": 300, "n_test": 300},
        "runs": [("text_only", None), ("cmcs", None), ("cmcs", "target_aware_mask_upper")],
        "data_out": Path("playground") / "target_cue",
    },
}


FIRST_RUN_PRESET = "target-cue"


def add_playground_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-out", default=str(DEFAULT_DATA), help="where the dataset folder is written")
    p.add_argument("--runs-dir", default=str(DEFAULT_RUNS), help="where run folders go")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=sorted(METHODS),
                   help="methods trained per visual source (text_only reads no visual input: trained once)")
    p.add_argument("--seed", type=int, default=0, help="generator and training seed")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs of the captions run "
                   "(pixel runs: --pixel-epochs)")
    p.add_argument("--pixel-epochs", type=int, default=PIXEL_EPOCHS, help="epochs of the pixel run")
    p.add_argument("--n-train", type=int, help=f"rows (tweet-target pairs) in train (default {DEFAULT_SIZES['n_train']}, "
                   "or the preset's)")
    p.add_argument("--n-dev", type=int, help=f"default {DEFAULT_SIZES['n_dev']}, or the preset's")
    p.add_argument("--n-test", type=int, help=f"default {DEFAULT_SIZES['n_test']}, or the preset's")
    p.add_argument("--text-strength", type=float, default=None, help="planted word/label agreement in train")
    p.add_argument("--image-strength", type=float, default=None, help="planted image cue/label agreement in train")
    p.add_argument("--visual-model", nargs="+", default=list(VISUAL_MODELS), choices=VISUAL_MODELS,
                   help="one run per visual source: caption (the image's caption) and/or efficientnet-lite0 "
                        "(real pixels of the drawn images)")
    p.add_argument("--dev-at-chance", action="store_true",
                   help="draw dev with the cues at chance, like test (the upper level sees no shortcut)")
    p.add_argument("--mask-granularity", choices=CHOICES["mask_granularity"],
                   help="beyond the paper: token = one gate per token/image cell (default: element, or the variant's)")
    p.add_argument("--mask-sparsity", type=float, help="beyond the paper: lambda of the mask prior (default 0)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="a dataset and a set of runs that tell one story (target-cue: plain CMCS beside the target-aware "
                        "variant on tweets with a planted cue beside each target's own evidence); captions only")
    p.add_argument("--stress-edits", nargs="+", choices=ALL_EDITS,
                   help=f"edits the captions runs are stress-tested with (default: {' '.join(STRESS_EDITS)}; a preset's "
                        f"runs also {' '.join(PRESET_STRESS_EDITS[len(STRESS_EDITS):])}); pixel runs are not stress-tested "
                        "here (each edit re-encodes the images: `cmcs stress --run RUN`)")
    p.add_argument("--no-stress", dest="stress", action="store_false", help="skip the stress tests")
    p.add_argument("--variant", choices=sorted(VARIANTS),
                   help="train --methods with this named variant (config.VARIANTS), on the preset's data with --preset "
                        "instead of the preset's runs")
    p.add_argument("--generate-only", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--first-run", action="store_true",
                   help=f"what `make app` trains where no run exists: these runs, then the {FIRST_RUN_PRESET} preset's "
                        "(the Tour's target-aware comparison)")


def playground_config(args: argparse.Namespace):
    from cmcs_core.playground.generator import PlaygroundConfig

    preset = PRESETS[args.preset]["generator"] if args.preset else DEFAULT_SIZES
    cfg = PlaygroundConfig(seed=args.seed, **preset)
    overrides = {  # explicit flags win over the preset (or the first-run sizes)
        "n_train": args.n_train,
        "n_dev": args.n_dev,
        "n_test": args.n_test,
        "text_spurious_strength_train": args.text_strength,
        "image_spurious_strength_train": args.image_strength,
        "dev_cues_at_chance": args.dev_at_chance or None,
    }
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def ensure_dataset(out: Path, config) -> Path:
    """Generate once; an existing folder made with the same config is reused."""
    from cmcs_core.playground.generator import generate_playground

    meta = out / "meta.json"
    if meta.is_file() and json.loads(meta.read_text()).get("config") == dataclasses.asdict(config):
        return out
    return generate_playground(out, config, overwrite=True)


def run_config(data_dir: Path, method: str, seed: int, epochs: int, visual_model: str = "caption",
               variant: str | None = None, **fields: object) -> RunConfig:
    """A playground run's config (config.build_config): RUN_DEFAULTS on the dataset folder, captions (or
    pixels: PIXEL_OVERRIDES), then `method`, `variant` (one of variants.VARIANTS) and `fields` (config fields
    by name: mask_granularity=..., mask_sparsity=...), which win over the variant's and the defaults."""
    source = {"visual_model": visual_model}
    if visual_model != "caption":
        source.update(image_dir=str(data_dir / "images"), **PIXEL_OVERRIDES)
    overrides = {"dataset": str(data_dir), **RUN_DEFAULTS, "epochs": epochs, "seed": seed, **source, **fields}
    return build_config(None, method, variant, overrides)


def run_name(method: str, seed: int, visual_model: str, variant: str | None = None, preset: str | None = None) -> str:
    """playground_cmcs_s0 (captions, the name older versions used) / playground_cmcs_pixels_s0;
    a preset's runs: playground-target-cue_cmcs+target_aware_mask_upper_s0."""
    prefix = f"playground-{preset}" if preset else "playground"
    return f"{prefix}_{method}{f'+{variant}' if variant else ''}{'' if visual_model == 'caption' else '_pixels'}_s{seed}"


def training_plan(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """The (visual model, method, variant) of each run the command trains, in order."""
    visual_models = [args.visual_model] if isinstance(args.visual_model, str) else args.visual_model
    variant = args.variant
    preset = args.preset
    if preset:
        return ([("caption", m, variant) for m in args.methods] if variant
                else [("caption", m, v) for m, v in PRESETS[preset]["runs"]])
    plan = [(v, m, variant) for v in visual_models for m in args.methods]
    # a run that reads no visual input is the same whatever the visual source: train it once
    reads_visual = {m: METHODS[m].get("use_visual", True) for m in args.methods}
    return [(v, m, x) for v, m, x in plan if reads_visual[m] or v == visual_models[0]]


def epochs_of(args: argparse.Namespace, visual_model: str) -> int:
    return args.epochs if visual_model == "caption" else args.pixel_epochs


def playground_main(args: argparse.Namespace, on_epoch: Callable[[str], None] | None = None) -> list[Path]:
    """Generate the dataset, train and score each run of the plan; `on_epoch(run name)` after each epoch."""
    from cmcs_core.playground.score import score_run
    from cmcs_core.train.trainer import train

    config = playground_config(args)
    preset = args.preset
    if preset and args.data_out == str(DEFAULT_DATA):
        args.data_out = str(PRESETS[preset]["data_out"])  # never overwrite the default playground with a preset's
    data_dir = ensure_dataset(Path(args.data_out), config)
    print(f"playground dataset: {data_dir}")
    if args.generate_only:
        return []
    runs = []
    given = {"mask_granularity": args.mask_granularity, "mask_sparsity": args.mask_sparsity}
    extensions = {k: v for k, v in given.items() if v is not None}  # explicit flags win over a variant's
    for visual_model, method, variant in training_plan(args):
        cpu = time.process_time()
        cfg = run_config(data_dir, method, args.seed, epochs_of(args, visual_model), visual_model, variant, **extensions)
        out = Path(args.runs_dir) / run_name(method, args.seed, visual_model, variant, preset)
        metrics = train(cfg, out, progress=not args.quiet,
                        on_epoch=None if on_epoch is None else lambda row, name=out.name: on_epoch(name))
        score = score_run(out, data_dir)  # the truth-scored masks travel with the run (for the app)
        atomic_write_json(out / PLAYGROUND_SCORE_FILE, score)
        acc = {k: "n/a" if v is None else f"{v:.3f}" for k, v in score["accuracy"].items()}
        print(f"{method}{f' +{variant}' if variant else ''} ({metrics['visual_source']}): test acc {metrics['test']['acc']:.3f} "
              f"(dev {metrics['dev']['acc']:.3f}; cues agree {acc['spurious_aligned']} / conflict "
              f"{acc['spurious_conflicting']}; {time.process_time() - cpu:.0f} s CPU) -> {out}")
        runs.append(out)
    return runs


def stress_plan(args: argparse.Namespace, runs: list[Path]) -> tuple[list[Path], tuple[str, ...]]:
    """Which of the command's runs to stress-test, and with which edits: the captions runs (a pixel run
    re-encodes its images for every edit), with the planted-truth edits (a preset's: the clause edits too).
    cmcs_core.playground_command runs them after the trainings."""
    if not args.stress:
        return [], ()
    captions = [r for r in runs if RunConfig.load(r / CONFIG_FILE).encoder.visual_model == "caption"]
    return captions, stress_edits(args)


def stress_edits(args: argparse.Namespace) -> tuple[str, ...]:
    """--stress-edits, else the planted-truth edits (a preset's: the clause edits too)."""
    preset = args.preset
    return tuple(args.stress_edits or (PRESET_STRESS_EDITS if preset else STRESS_EDITS))
