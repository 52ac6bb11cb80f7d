"""`cmcs search`: a hyperparameter search with Ray Tune, Optuna's sampler (TPE) and ASHA early stopping.

Trials are scored on dev only: each trains with `read_test` off, so the test split is never opened
(a trial's metrics.json has no "test" entry and its train.log says "test not read"). Each epoch's dev
figures reach Tune through the trainer's `on_epoch` hook; ASHA stops the weak trials after
--grace-period epochs, and a stopped trial's folder is finished at its best epoch so far, so every
trial is an ordinary run folder under `--out/trials/`. The best trial's config, with the test split
back on, is written to `--out/best_config.json` for `cmcs train --config` and `cmcs grid --config`: a
file beside the search, not a run folder, so no state of an earlier best can be resumed under it.

`--out` holds one search: its base config (`base_config.json`) is the folder's config under the rule of
cmcs_core/runs/holds.py, so a rerun adds trials to the same search and one with other base settings is
refused (--overwrite moves the old search aside). Trials made with other base settings (a folder from
before that rule) are listed apart, never ranked with the others.

A space file (JSON or YAML) maps config fields to distributions; a plain value fixes the field:

    head_lr: {loguniform: [1.0e-4, 1.0e-2]}
    alpha_init: {uniform: [-1.0, 2.0]}
    K: {choice: [1, 3, 5]}
    H: {randint: [5, 40]}        # both ends included
    epochs: {choice: [4, 8]}
    batch_size: 16
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cmcs_core.config import FIELDS, RANGES, SELECT_ON, RunConfig, resolve_field
from cmcs_core.preflight import check_inputs
from cmcs_core.runs.files import CONFIG_FILE, METRICS_FILE, STATE_FILE, epochs_done
from cmcs_core.runs.holds import claim, difference, listing
from cmcs_core.sweep.cluster import RayOptions, check_options, enter_driver_cwd, ray_cluster
from cmcs_core.sweep.progress_line import count
from cmcs_core.sweep.spec import OWN_OPTION, with_values
from cmcs_core.train.trainer import Trainer, train

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
SEARCH_FILE = "search.json"
BASE_FILE = "base_config.json"  # the search's own config: what every trial is the base plus its values
BEST_FILE = "best_config.json"


@dataclass
class SearchOptions:
    out: Path
    space: Path
    trials: int = 20
    metric: str | None = None  # dev_acc | dev_f1 | dev_loss; None: the base config's select_on
    grace_period: int = 1
    reduction_factor: int = 2
    seed: int = 0
    ray: RayOptions = field(default_factory=RayOptions)
    overwrite: bool = False  # an --out holding a search of other base settings is moved aside, not refused


def load_space(path: str | Path) -> dict[str, Any]:
    """Read and check a space file: {field: {distribution: args} | fixed value}. Field names as in
    --set (bare, dashed or section.field); each distribution's ends are checked by the config."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise FileNotFoundError(f"search space {path}: {err.strerror}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text)
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a mapping of config fields to distributions")
    space = {}
    for key, spec in raw.items():
        try:
            _, name = resolve_field(str(key))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        if name in ("seed", "dataset", "read_test"):
            raise ValueError(f"{path}: {name} is not searched ({OWN_OPTION.get(name, 'trials never read test')})")
        if isinstance(spec, dict):
            if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
                raise ValueError(f"{path}: {key}: write one of {', '.join(DISTRIBUTIONS)}, e.g. "
                                 f"{{loguniform: [1e-4, 1e-2]}}")
            kind, args = next(iter(spec.items()))
            if kind != "choice" and (not isinstance(args, list) or len(args) != 2 or not args[0] < args[1]):
                raise ValueError(f"{path}: {key}: {kind} takes [low, high] with low < high")
            if kind == "loguniform" and args[0] <= 0:
                raise ValueError(f"{path}: {key}: loguniform needs low > 0")
            if kind == "choice" and (not isinstance(args, list) or not args):
                raise ValueError(f"{path}: {key}: choice takes a non-empty list")
            space[name] = (kind, args)
        else:
            space[name] = ("fixed", spec)
    return space


def extremes(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Configs' worth of values to validate before anything starts: every end and every choice."""
    picks = []
    for name, (kind, args) in space.items():
        values = args if kind in ("choice", "randint", "uniform", "loguniform") else [args]
        picks += [{name: v} for v in values]
    return picks


def tune_space(space: dict[str, Any]) -> dict[str, Any]:
    from ray import tune

    make = {"uniform": lambda a: tune.uniform(*a), "loguniform": lambda a: tune.loguniform(*a),
            "randint": lambda a: tune.randint(a[0], a[1] + 1), "choice": tune.choice, "fixed": lambda a: a}
    return {name: make[kind](args) for name, (kind, args) in space.items()}


def trial_config(base: RunConfig, values: dict[str, Any]) -> RunConfig:
    """A trial's config: the base with the sampled values, test off (scored on dev only)."""
    return with_values(base, {**values, "read_test": False, "eval_test_each_epoch": False}, validate=False)


def run_trial(values: dict[str, Any], base_dict: dict, trials_dir: str, threads: int) -> None:
    """One Tune trial: train a run folder named after the trial, reporting each epoch's dev figures."""
    from ray import tune

    from cmcs_core.pipeline import torch_threads

    enter_driver_cwd()
    cfg = trial_config(RunConfig.from_dict(base_dict), values)
    run_dir = Path(trials_dir) / f"trial_{tune.get_context().get_trial_id()}"

    def report(row: dict) -> None:
        tune.report({k: float(row[k]) for k in ("epoch", "train_loss", *SELECT_ON)})

    with torch_threads(threads):
        train(cfg, run_dir, progress=False, on_epoch=report)


def trial_score(run_dir: Path, metric: str) -> float | None:
    """A trial's score: its kept epoch's dev figure (the trainer's selection), read from epochs.csv."""
    from cmcs_core.runs.reader import load_run

    run = load_run(run_dir)
    if not run.finished:
        return None
    epochs = run.epochs()
    return float(epochs.loc[epochs.epoch == run.metrics["best_epoch"], metric].iloc[0])


def run_search(base: RunConfig, opts: SearchOptions, stream: TextIO | None = None) -> dict:
    """Run the search; returns what search.json holds (every trial's values and score, the best)."""
    stream = stream or sys.stderr  # read at call time (tests capture it)
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from cmcs_core.pipeline import torch_threads
    from cmcs_core.sweep.grid import torch_threads_for

    metric = opts.metric or base.train.select_on
    if metric not in SELECT_ON:
        raise ValueError(f"--metric {metric!r}: choose from {', '.join(SELECT_ON)}")
    if opts.trials < 1:
        raise ValueError(f"--trials {opts.trials}: at least 1")
    meaning, seed_ok = RANGES["seed"]
    if not seed_ok(opts.seed):
        raise ValueError(f"--search-seed {opts.seed}: must be {meaning}")
    space = load_space(opts.space)
    ends = [trial_config(base, values) for values in [{}] + extremes(space)]
    for cfg in ends:  # every end of the space must be a config the trainer takes, with inputs found here
        try:
            cfg.validate()
        except ValueError as err:
            raise ValueError(f"{opts.space}: {err}") from None
    check_inputs(*ends)
    check_options(opts.ray)
    out = opts.out.expanduser().resolve()
    moved = claim(out, ends[0], opts.overwrite, "--out", name=BASE_FILE)
    if moved is not None:
        stream.write(f"search: {out} held a search of other base settings; moved to {moved}\n")
    trials_dir = out / "trials"
    trials_dir.mkdir(parents=True, exist_ok=True)
    ends[0].save(out / BASE_FILE)
    max_epochs = max([p["epochs"] for p in extremes(space) if "epochs" in p] or [base.train.epochs])
    threads = torch_threads_for(opts.ray.cpus_per_run)
    with ray_cluster(opts.ray) as cluster:
        slots = cluster.slots(opts.ray)
        stream.write(f"search: {count(opts.trials, 'trial')}, {slots} at a time, optimising {metric} on dev "
                     f"({SELECT_ON[metric]}), ASHA after {opts.grace_period} epoch(s) of at most {max_epochs}\n")
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, base_dict=base.to_dict(), trials_dir=str(trials_dir), threads=threads),
            {"cpu": opts.ray.cpus_per_run, "gpu": opts.ray.gpus_per_run})
        tuner = tune.Tuner(
            trainable,
            param_space=tune_space(space),
            tune_config=tune.TuneConfig(
                metric=metric, mode=SELECT_ON[metric], num_samples=opts.trials, max_concurrent_trials=slots,
                search_alg=OptunaSearch(seed=opts.seed),
                scheduler=ASHAScheduler(time_attr="training_iteration", max_t=max_epochs,
                                        grace_period=opts.grace_period, reduction_factor=opts.reduction_factor)),
            run_config=tune.RunConfig(storage_path=str(out / ".tune"), name="search", verbose=0),
        )
        grid = tuner.fit()
        errors = [str(r.error).splitlines()[0] for r in grid if r.error]
    with torch_threads(threads):
        for run_dir in sorted(trials_dir.iterdir()):
            if (run_dir / STATE_FILE).is_file() and not (run_dir / METRICS_FILE).is_file():
                try:
                    Trainer(RunConfig.load(run_dir / CONFIG_FILE), run_dir, progress=False).finish_early()
                except (OSError, ValueError, RuntimeError) as err:  # reported; the other trials still count
                    errors.append(f"{run_dir.name}: could not be finished ({err})")
    return summarise(base, space, trials_dir, out, metric, errors, stream)


def summarise(base: RunConfig, space: dict, trials_dir: Path, out: Path, metric: str, errors: list[str],
              stream: TextIO) -> dict:
    """Score every trial of this search's base settings from its run folder, write search.json and
    best_config.json, print a table; trials made with other base settings are named apart, not ranked."""
    rows, other = [], []
    for run_dir in sorted(trials_dir.iterdir()):
        if not (run_dir / CONFIG_FILE).is_file():
            continue
        cfg = RunConfig.load(run_dir / CONFIG_FILE)
        values = {name: getattr(getattr(cfg, FIELDS[name][0]), name) for name in space}
        diff = difference(trial_config(base, values), cfg)
        if diff is not None:
            other.append(f"{run_dir.name}: {diff}")
            continue
        epochs = epochs_done(run_dir)
        rows.append({"run": str(run_dir), "values": values, "score": trial_score(run_dir, metric),
                     "epochs_run": epochs, "stopped_early": epochs < cfg.train.epochs})
    scored = [r for r in rows if r["score"] is not None and not math.isnan(r["score"])]
    if not scored:
        raise ValueError(f"no trial finished ({'; '.join(errors[:3]) or 'see ' + str(out / '.tune')})")
    sign = 1 if SELECT_ON[metric] == "max" else -1
    best = max(scored, key=lambda r: sign * r["score"])  # ties: the first trial
    best_cfg = RunConfig.load(Path(best["run"]) / CONFIG_FILE)
    best_cfg.data.read_test = base.data.read_test
    best_cfg.train.eval_test_each_epoch = base.train.eval_test_each_epoch
    best_cfg.save(out / BEST_FILE)
    summary = {"metric": metric, "mode": SELECT_ON[metric], "split": "dev", "trials": rows, "best": best,
               "best_config": str(out / BEST_FILE), "other_base_settings": other, "errors": errors}
    (out / SEARCH_FILE).write_text(json.dumps(summary, indent=2, default=float))
    for r in sorted(scored, key=lambda r: -sign * r["score"]):
        stream.write(f"{Path(r['run']).name}  {metric} {r['score']:.4f}  epochs {r['epochs_run']}"
                     f"{' (stopped early)' if r['stopped_early'] else ''}  "
                     + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["values"].items())
                     + "\n")
    if other:
        stream.write(f"search: not ranked, {count(len(other), 'trial')} in {trials_dir} made with other base "
                     f"settings ({listing(other)})\n")
    best_file, name = out / BEST_FILE, Path(best["run"]).name
    stream.write(f"search: best {metric} {best['score']:.4f} ({name}); its config: {best_file}\n"
                 f"  train it: cmcs train --config {best_file} --output-dir {out / f'best-{name}'}\n"
                 f"  or over seeds: cmcs grid --config {best_file} --seeds 1 2 3 --out {out / f'best-{name}-seeds'}\n")
    return summary
