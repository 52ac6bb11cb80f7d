"""`cmcs grid` and `cmcs search`: their flags and what they run (the Ray side is in grid.py, search.py,
cluster.py beside this file). Ray is imported only when one of them runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cmcs_core.config import CHOICES, METHODS
from cmcs_core.data.dataset import BENCHMARKS
from cmcs_core.flags import add_config_flags, add_overwrite_flag, config_from_args, default_run_dir
from cmcs_core.report.stress_tables import collect_stress, stress_tables
from cmcs_core.report.tables import markdown_tables, runs_frame
from cmcs_core.runs.reader import scan_runs
from cmcs_core.variants import VARIANTS


def _ray_options(args: argparse.Namespace):
    from cmcs_core.sweep.cluster import RayOptions

    return RayOptions(address=args.address, cpus=args.cpus, gpus=args.gpus, cpus_per_run=args.cpus_per_run,
                      gpus_per_run=args.gpus_per_run, dashboard=args.dashboard, object_store_mb=args.object_store_mb)


def grid_runs(args: argparse.Namespace) -> list:
    """The runs `cmcs grid` plans from its parsed arguments (what --dry-run prints), in order."""
    from cmcs_core.sweep.spec import parse_sets, plan_grid

    base = config_from_args(args)
    defaults = args.config is not None  # a config's own dataset/method/seed, else the paper's grid
    return plan_grid(base, args.datasets or ([base.data.dataset] if defaults else list(BENCHMARKS)),
                     args.methods or ([base.model.method] if defaults else list(METHODS)),
                     args.seeds or ([base.train.seed] if defaults else [1, 2, 3]),
                     parse_sets(args.set), name_of=lambda cfg: str(default_run_dir(cfg).relative_to("runs")),
                     variant=args.grid_variant)


def cmd_grid(args: argparse.Namespace) -> int:
    from cmcs_core.preflight import check_inputs
    from cmcs_core.sweep.grid import GridOptions, run_grid
    from cmcs_core.sweep.spec import describe_plan, parse_sets

    runs = grid_runs(args)
    if args.dry_run:  # a plan may be made for another machine: what this one lacks is said, not refused
        try:
            check_inputs(*(run.cfg for run in runs))
        except FileNotFoundError as err:
            print(f"grid: this machine would refuse these runs: {err}", file=sys.stderr)
        print(describe_plan(runs, parse_sets(args.set), args.out))
        return 0
    opts = GridOptions(out=Path(args.out), ray=_ray_options(args), stress=args.stress, transfer=args.transfer,
                       deadline=args.deadline, overwrite=args.overwrite)
    report = run_grid(runs, opts)  # refuses bad resources, inputs and folders before anything starts
    if args.table:
        runs, errors = scan_runs(args.out)
        for err in errors:
            print(f"skipped: {err}", file=sys.stderr)
        print(markdown_tables(runs_frame(runs)))
        if args.stress:
            print(stress_tables(collect_stress(runs)))
    return 0 if report.ok else 1


def cmd_search(args: argparse.Namespace) -> int:
    from cmcs_core.sweep.search import SearchOptions, run_search

    base = config_from_args(args)
    opts = SearchOptions(out=Path(args.out), space=Path(args.space), trials=args.trials, metric=args.metric,
                         grace_period=args.grace_period, reduction_factor=args.reduction_factor,
                         seed=args.search_seed, ray=_ray_options(args), overwrite=args.overwrite)
    run_search(base, opts)
    return 0


def add_ray_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray (an embedded local Ray unless --address or $RAY_ADDRESS names a cluster)")
    g.add_argument("--address", help="join a running Ray cluster (HOST:PORT from `ray start --head`)")
    g.add_argument("--cpus", type=int, help="embedded Ray: CPUs it may use (default all)")
    g.add_argument("--gpus", type=float, help="embedded Ray: GPUs it may use (default all that torch sees)")
    g.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs per run; torch uses as many threads")
    g.add_argument("--gpus-per-run", type=float, default=0.0, help="GPU share per run (0.1: ten runs per GPU)")
    g.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (embedded Ray)")
    g.add_argument("--object-store-mb", type=int, default=256, help="embedded Ray's object store cap")


def add_sweep_parsers(sub) -> None:
    """The grid and search subcommands of the cmcs parser."""
    p = sub.add_parser("grid", help="train a grid (datasets x methods x seeds x --set lists) as Ray tasks",
                       description="Every run of the cross product trains as a Ray task into --out/<run>; finished "
                                   "runs are skipped and interrupted ones resume, so rerunning continues a grid; a "
                                   "run folder holding another config is refused (--overwrite moves it aside). "
                                   "Config flags set every run's value; --set FIELD=A,B makes FIELD a grid axis.")
    p.add_argument("--out", required=True, help="the grid's folder: one run folder per run")
    p.add_argument("--config", help="a config.json as the base of every run (e.g. a search's best_config.json)")
    p.add_argument("--datasets", nargs="+", help="default twitter2015 twitter2017 (with --config: its dataset)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), help="default all six (with --config: its method)")
    p.add_argument("--seeds", nargs="+", type=int, help="default 1 2 3 (with --config: its seed)")
    p.add_argument("--variant", dest="grid_variant", choices=sorted(VARIANTS),
                   help="a named opt-in variant set on every run after its method (methods without CMS take its "
                        "model part); the run folders get +VARIANT")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=A,B",
                   help="a config field as a grid axis, e.g. --set head_lr=1e-3,1e-4 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the runs and their folders, start nothing")
    p.add_argument("--stress", action="store_true", help="run the stress tests after each run")
    p.add_argument("--table", action="store_true", help="print the tables of --out at the end")
    p.add_argument("--transfer", default="auto", choices=["auto", "shared", "send"],
                   help="auto: workers that see --out write there, others send the finished folder back")
    p.add_argument("--deadline", type=float, help="seconds after which no new run starts (rerun to continue)")
    add_overwrite_flag(p, "a run folder")
    add_ray_flags(p)
    add_config_flags(p)
    p.set_defaults(func=cmd_grid, method=None)

    p = sub.add_parser("search", help="hyperparameter search: Ray Tune + Optuna + ASHA, scored on dev only",
                       description="Trials train as ordinary run folders under --out/trials (the test split is never "
                                   "read); the best one's config is written to --out/best_config.json, which "
                                   "`train --config` and `grid --config` take. A rerun into the same --out adds "
                                   "trials; one with other base settings is refused (--overwrite moves the old "
                                   "search aside).")
    p.add_argument("--out", required=True, help="the search's folder")
    p.add_argument("--space", required=True, help="search space, JSON or YAML: {field: {loguniform: [lo, hi]}, ...}")
    p.add_argument("--config", help="a config.json as the base of every trial")
    p.add_argument("--method", choices=sorted(METHODS), help="method of every trial (default cmcs)")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--metric", choices=CHOICES["select_on"],
                   help="dev figure to optimise (default: the config's select_on)")
    p.add_argument("--grace-period", type=int, default=1, help="ASHA: epochs every trial gets before a stop")
    p.add_argument("--reduction-factor", type=int, default=2, help="ASHA: keep 1/N of the trials at each rung")
    p.add_argument("--search-seed", type=int, default=0, help="seed of Optuna's sampler")
    add_overwrite_flag(p, "an --out")
    add_ray_flags(p)
    add_config_flags(p)
    p.set_defaults(func=cmd_search)
