"""The `cmcs playground` command end to end: train the playground's runs (playground/run.py), then stress-test
the captions runs (stress.py). It stands above both, so that the playground never imports the stress tests
that use its edits. The CLI, the app's training button and the tests call it."""
from __future__ import annotations

import argparse
from pathlib import Path

from cmcs_core.playground.run import (FIRST_RUN_PRESET, PRESETS, Progress, add_playground_args, epochs_of,
                                      playground_main, stress_edits, stress_plan, training_plan)


def make_playground(args: argparse.Namespace, on_progress: Progress | None = None) -> list[Path]:
    """What `cmcs playground` does: generate, train and score the runs, then stress-test the captions runs.
    `on_progress(done, total, what)` after each epoch and each stress edit, so a caller (the app's Tour)
    can draw a bar; the steps are known before the first one runs."""
    from cmcs_core.stress import stress_runs  # torch: imported by the commands that need it

    plan = training_plan(args)
    stressed = sum(v == "caption" for v, _, _ in plan) if args.stress and not args.generate_only else 0
    total = (0 if args.generate_only else sum(epochs_of(args, v) for v, _, _ in plan)) + stressed * len(stress_edits(args))
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total, what)

    if on_progress is not None:
        on_progress(0, total, "generating the dataset and encoding its text")
    runs, edits = stress_plan(args, playground_main(args, on_epoch=lambda name: step(f"trained an epoch of {name}")))
    if runs:
        stress_runs(runs, edits, args.quiet, on_edit=lambda name, edit: step(f"stress-tested {name}: {edit}"))
    return runs


def preset_arguments(preset: str, runs_dir: str | Path, data_out: str | Path, seed: int = 0,
                     quiet: bool = True) -> argparse.Namespace:
    """The arguments of `cmcs playground --preset PRESET --runs-dir RUNS_DIR --data-out DATA_OUT --quiet`: what
    the app trains from a button is exactly what the printed command trains."""
    parser = argparse.ArgumentParser()
    add_playground_args(parser)
    return parser.parse_args(["--preset", preset, "--runs-dir", str(runs_dir), "--data-out", str(data_out),
                              "--seed", str(seed)] + (["--quiet"] if quiet else []))


def first_run(args: argparse.Namespace) -> list[Path]:
    """`cmcs playground --first-run`: the command's own runs, then the FIRST_RUN_PRESET preset's beside them, so the
    Tour's every section has its runs without a terminal (scripts/run_app.sh; bench/bench_first_run.py times it)."""
    runs = make_playground(args)
    data_out = Path(args.data_out).parent / PRESETS[FIRST_RUN_PRESET]["data_out"].name  # beside the playground's
    preset = preset_arguments(FIRST_RUN_PRESET, args.runs_dir, data_out, args.seed, quiet=args.quiet)
    return runs + make_playground(preset)
