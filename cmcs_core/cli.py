"""`python -m cmcs_core train | evaluate | stress | predict | table | analyse | playground | grid | search`
(grid and search: cmcs_core/sweep/commands.py).

Every field of the config dataclasses is a flag (`--finetune-layers 2`), so a run folder's
config.json and the command line describe the same thing. The commands that need the model
(train, evaluate, predict, stress) import torch when they run; `table` and `analyse` never do.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cmcs_core.config import (
    METHODS,
)
from cmcs_core.data.counterfactual import ALL_EDITS
from cmcs_core.data.dataset import split_tag
from cmcs_core.data.images import load_image
from cmcs_core.flags import OneLineParser, add_config_flags, add_overwrite_flag, config_from_args, default_run_dir
from cmcs_core.io import atomic_write_json
from cmcs_core.playground.run import add_playground_args
from cmcs_core.playground_command import first_run, make_playground
from cmcs_core.report.analyses import ANALYSES
from cmcs_core.report.stress_tables import collect_stress, stress_tables
from cmcs_core.report.tables import markdown_tables, paired_differences, runs_frame
from cmcs_core.runs.files import CONFIG_FILE, METRICS_FILE, STRESS_DIR, STRESS_FILE
from cmcs_core.runs.reader import scan_runs
from cmcs_core.sweep.commands import add_sweep_parsers
from cmcs_core.variants import VARIANTS


def cmd_train(args: argparse.Namespace) -> None:
    from cmcs_core.train.trainer import Trainer

    cfg = config_from_args(args)
    out = Path(args.output_dir) if args.output_dir else default_run_dir(cfg)
    if args.config and not args.output_dir and Path(args.config).name == CONFIG_FILE:
        out = Path(args.config).parent  # `train --config RUN/config.json` resumes RUN
    trainer = Trainer(cfg, out, progress=not args.quiet, overwrite=args.overwrite)
    if trainer.set_aside is not None:
        print(f"moved the old run of another config to {trainer.set_aside}", file=sys.stderr)
    metrics = trainer.fit()
    test = metrics.get("test", {})  # a search's trials (read_test off) have none
    print(json.dumps({"run_dir": str(out), "best_epoch": metrics["best_epoch"],
                      "dev_acc": metrics["dev"]["acc"], "test_acc": test.get("acc"),
                      "test_macro_f1": test.get("macro_f1"), "visual_source": metrics["visual_source"]}, indent=2))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from cmcs_core.evaluate import evaluate_split, write_outputs
    from cmcs_core.inference import Predictor

    pred = Predictor(args.run, device=args.device)
    if args.image_dir:
        pred.pipe.cfg.data.image_dir = args.image_dir
    data, res = evaluate_split(pred.model, pred.pipe, args.split, args.max_samples, progress=not args.quiet)
    split = data.split
    name = split_tag(args.split, split.path)
    if args.max_samples:
        name += f"-first{args.max_samples}"
    out = Path(args.output_dir) if args.output_dir else Path(args.run) / f"eval_{name}"
    metrics = write_outputs(out, name, pred.pipe, data, res)
    metrics.update(file=str(split.path), visual_source=split.visual_source, dropped=split.dropped)
    atomic_write_json(out / METRICS_FILE, metrics)
    print(json.dumps({k: metrics[k] for k in ("file", "n", "acc", "macro_f1", "macro_f1_classes", "visual_source",
                                              "dropped", "target_awareness")}, indent=2))
    if len(metrics["macro_f1_classes"]) < 3:
        print(f"note: macro_f1 averages over the {len(metrics['macro_f1_classes'])} classes present in the file "
              f"({', '.join(metrics['macro_f1_classes'])}), not over all three")
    print(f"outputs in {out}")


def cmd_predict(args: argparse.Namespace) -> None:
    from cmcs_core.inference import Predictor

    pred = Predictor(args.run, device=args.device)
    image = load_image(args.image) if args.image else None
    out = pred.predict(args.tweet, args.target, caption=args.caption, image=image)
    print(json.dumps(out, indent=2))


def cmd_stress(args: argparse.Namespace) -> None:
    from cmcs_core.stress import run_stress  # torch: imported by the commands that need it

    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    refused = []
    for run in args.run:  # several runs in one process share the start-up and the feature cache
        try:
            entry = run_stress(run, args.split, tuple(args.edits) if args.edits else None, args.seed, args.phrases, args.n_boot, args.device,
                               progress=not args.quiet, log=lambda msg: print(f"{run}: {msg}", file=sys.stderr))
        except FileNotFoundError as err:  # one bad folder (or a grid.log in a glob) does not stop the others
            print(f"skipped: {err}", file=sys.stderr)
            refused.append(run)
            continue
        print(f"== {run} [{entry['tag']}]")
        for edit in args.edits or entry["edits"]:
            res = entry["edits"].get(edit, {})
            if not res.get("applies"):
                print(f"{edit:19s} not run: {res.get('reason', '?')}")
                continue
            lo, hi = res["flip_ci"]
            moves = ", ".join(f"{k} {v}" for k, v in list(res["flips"].items())[:3])
            print(f"{edit:19s} rows {res['rows']:5d}  acc {100 * res['acc_before']:5.1f} -> "
                  f"{100 * res['acc_after']:5.1f}  flip {100 * res['flip_rate']:5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
                  f"  {moves}")
        print(f"results in {Path(run) / STRESS_FILE} and {Path(run) / STRESS_DIR / entry['tag']}/")
    if refused:
        raise FileNotFoundError(f"{len(refused)} of {len(args.run)} paths could not be stress-tested: {', '.join(refused)}")


def _runs(paths: list[str]) -> list:
    """The runs under the paths; folders that cannot be read are named on stderr, not fatal."""
    runs, errors = scan_runs(*paths)
    for err in errors:
        print(f"skipped: {err}", file=sys.stderr)
    return runs


def _print(text: str, output: str | None) -> None:
    print(text)
    if output:
        Path(output).write_text(text)


def cmd_table(args: argparse.Namespace) -> None:
    runs = _runs(args.runs)
    if args.stress:
        _print(stress_tables(collect_stress(runs)), args.output)
        return
    frame = runs_frame(runs)
    text = markdown_tables(frame)
    if args.paired:
        text += "\n" + paired_differences(frame)
    _print(text, args.output)


def cmd_analyse(args: argparse.Namespace) -> None:
    compute, markdown = ANALYSES[args.name]
    _print(markdown(compute(_runs(args.runs))), args.output)


def cmd_playground(args: argparse.Namespace) -> None:
    (first_run if args.first_run else make_playground)(args)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m cmcs_core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run into a run folder (resumes an unfinished one)")
    p.add_argument("--config", help="a config.json (e.g. RUN/config.json to resume or reproduce RUN)")
    p.add_argument("--method", choices=sorted(METHODS), help="CMCS, an ablation, or the text-only baseline")
    p.add_argument("--variant", choices=sorted(VARIANTS),
                   help="a named opt-in variant beyond the paper (its flags; methods without CMS take its model part)")
    p.add_argument("--output-dir", help="run folder (default runs/<dataset>_<text>_<regime>_<method>_s<seed>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_overwrite_flag(p, "an --output-dir")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run on a split or on any TSV in the benchmark format")
    p.add_argument("--run", required=True)
    p.add_argument("--split", default="test", help="train | dev | test | path/to/file.tsv")
    p.add_argument("--image-dir", help="image folder for runs that read pixels")
    p.add_argument("--max-samples", type=int)
    p.add_argument("--output-dir", help="default RUN/eval_<split>, or RUN/eval_<file stem>-<content digest>")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("stress", help="counterfactual stress tests: edit a split, evaluate the run, count flips")
    p.add_argument("--run", required=True, nargs="+", help="run folder(s) with a checkpoint (best.safetensors)")
    p.add_argument("--split", default="test", help="train | dev | test | path/to/file.tsv")
    p.add_argument("--edits", nargs="+", choices=ALL_EDITS,
                   help="default: all but the prefix_* probes (the planted-truth edits only on a playground run)")
    p.add_argument("--seed", type=int, default=0, help="seed of the edits' random choices (phrases, swaps)")
    p.add_argument("--phrases", help="a phrase-bank JSON with a 'stress' bank (default: the shipped one)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the flip-rate interval")
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-threads", type=int, help="torch threads (1 on a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_stress)

    p = sub.add_parser("predict", help="predict one tweet/target with a caption or image")
    p.add_argument("--run", required=True)
    p.add_argument("--tweet", required=True, help="the tweet (with the target, or with $T$)")
    p.add_argument("--target", required=True)
    p.add_argument("--caption", help="the image's caption (runs that read captions)")
    p.add_argument("--image", help="an image file (runs that read pixels)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("table", help="print Table 1 and Table 2 (mean ± std over seeds) from run folders")
    p.add_argument("runs", nargs="+", help="run folders or folders that contain them")
    p.add_argument("--output", help="also write the Markdown here")
    p.add_argument("--paired", action="store_true", help="also CMCS minus each method, seed by seed")
    p.add_argument("--stress", action="store_true",
                   help="the stress tests' flip rates instead (methods side by side, paired by seed)")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("analyse", help="an analysis of finished runs, as Markdown (docs/results.md, docs/robustness.md)")
    p.add_argument("name", choices=sorted(ANALYSES), help="fusion: what each branch contributes; selection: the "
                   "epoch each selection rule keeps; targets: target awareness on multi-target tweets; "
                   "machinery: what reaches the masks and phi (gradients, clip, gate spread); curvature: machinery and "
                   "the heads' Hessian at the kept checkpoint; playground: playground runs scored "
                   "against the planted truth, by variant over seeds; precision: fp32/bf16 pairs; scheduler: "
                   "each method with CMS minus its twin without it, paired by seed, with intervals; ideas: each opt-in "
                   "variant minus the same method without it, paired by seed, with intervals; aims: the target-awareness "
                   "aims, met or not, per variant against text-only of the same seeds")
    p.add_argument("runs", nargs="+", help="run folders or folders that contain them")
    p.add_argument("--output", help="also write the Markdown here")
    p.set_defaults(func=cmd_analyse)

    p = sub.add_parser("playground", help="generate the spurious-correlation playground and train on it")
    add_playground_args(p)
    p.set_defaults(func=cmd_playground)

    add_sweep_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
