"""What a grid runs: the cross product of datasets x methods x seeds x every config field given as a
list (`--set head_lr=1e-3,1e-4`), each a validated RunConfig with its run folder's name. Bad input
is refused here, naming the key or value, before anything starts."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from cmcs_core.config import FIELDS, RunConfig, build_config, parse_value, resolve_field
from cmcs_core.runs.files import METRICS_FILE, STRESS_FILE
from cmcs_core.runs.holds import CONFIG_FILE, FolderHoldsAnotherConfig, conflict, refusal, set_aside
from cmcs_core.sweep.progress_line import count

# These have a list option of their own (--datasets, --methods, --seeds).
OWN_OPTION = {"dataset": "--datasets", "method": "--methods", "seed": "--seeds"}
FINISHED, TO_RUN, OTHER_CONFIG = "finished", "to run", "holds another config"


@dataclass(frozen=True)
class PlannedRun:
    """One run of a grid: its folder name under the grid's --out and its full config."""

    name: str
    cfg: RunConfig


def is_finished(run_dir: str | Path, stress: bool = False) -> bool:
    """A run's outputs are complete once its metrics.json exists (the trainer writes it last, atomically);
    with the stress tests asked for, once stress.json does too. Anything less is resumed."""
    run_dir = Path(run_dir)
    return (run_dir / METRICS_FILE).is_file() and (not stress or (run_dir / STRESS_FILE).is_file())


def folder_status(run_dir: str | Path, planned: RunConfig, stress: bool = False) -> tuple[str, str | None]:
    """What a grid does with a run's folder: (OTHER_CONFIG, how it differs) when it holds another config
    (refused, or moved aside with --overwrite; cmcs_core/runs/holds.py), (FINISHED, None) when its outputs
    are complete beside a config.json of the planned config (metrics.json alone would call a run of other
    settings finished), else (TO_RUN, None): trained, or resumed from its last epoch."""
    diff = conflict(Path(run_dir), planned)
    if diff is not None:
        return OTHER_CONFIG, diff
    held = (Path(run_dir) / CONFIG_FILE).is_file()
    return (FINISHED if held and is_finished(run_dir, stress) else TO_RUN), None


def claim_run_folders(runs: list[PlannedRun], out: Path, overwrite: bool) -> list[tuple[str, Path]]:
    """The folder rule for every run of a grid before anything starts: run folders holding another config
    are refused together in one line, or with `overwrite` moved aside (never deleted); returns (run, where
    its old folder went) for each folder moved."""
    other = [(run.name, folder_status(out / run.name, run.cfg)[1]) for run in runs]
    other = [(name, diff) for name, diff in other if diff is not None]
    if other and not overwrite:
        held = f"{count(len(other), 'run folder')} in {out} {'holds' if len(other) == 1 else 'hold'}"
        raise FolderHoldsAnotherConfig(refusal(held, [f"{name}: {diff}" for name, diff in other], "--out"))
    return [(name, set_aside(out / name)) for name, _diff in other]


def parse_sets(items: Iterable[str]) -> dict[str, list[Any]]:
    """`--set key=v1,v2` items -> {field: [values]}, typed and checked against the config fields."""
    sets: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values.strip():
            raise ValueError(f"--set {item!r}: write KEY=VALUE[,VALUE...], e.g. --set head_lr=1e-3,1e-4")
        _, name = resolve_field(key.strip())
        if name in OWN_OPTION:
            raise ValueError(f"--set {key}: use {OWN_OPTION[name]} for the {name}s of a grid")
        if name in sets:
            raise ValueError(f"--set {key}: given twice")
        sets[name] = [parse_value(name, v) for v in values.split(",")]
    return sets


def with_values(cfg: RunConfig, values: dict[str, Any], validate: bool = True) -> RunConfig:
    """A copy of cfg with config fields (bare names) replaced; `method` applies the method's preset first
    (config.build_config)."""
    values = dict(values)
    return build_config(cfg, values.pop("method", None), None, values, validate=validate)


def _label(name: str, value: Any) -> str:
    """A folder-name-safe `_name<value>` for one varied field."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str) and Path(value).expanduser().exists():
        text = Path(value).name  # a dataset folder or checkpoint: its name
    return f"_{name}{safe_name(text)}"


def safe_name(text: str) -> str:
    """A folder name from text that may hold a hub id (org/model) or spaces."""
    return text.strip("/").replace("/", "-").replace(" ", "-")


def plan_grid(base: RunConfig, datasets: list[str], methods: list[str], seeds: list[int],
              sets: dict[str, list[Any]], name_of: Callable[[RunConfig], str],
              variant: str | None = None) -> list[PlannedRun]:
    """Every run of the grid, seed-major (all of seed 1 before any of seed 2, so a grid cut short
    still gives complete tables for fewer seeds); each config validated. `name_of` names a run's
    folder from its config; fields varied by --set add `_<field><value>` to it. `variant` (config.VARIANTS)
    is set on each run after its method, so a method without CMS takes only its model part, and
    adds `+<variant>` to the folder name."""
    runs = []
    combos = [dict(zip(sets, values)) for values in itertools.product(*sets.values())]
    for seed, combo, dataset, method in itertools.product(seeds, combos, datasets, methods):
        # --set values win over the variant's, as flags do in `train`
        cfg = build_config(base, method, variant, {"dataset": dataset, "seed": seed, **combo}, validate=False)
        name = safe_name(name_of(cfg)) + (f"+{variant}" if variant else "")
        name += "".join(_label(k, v) for k, v in combo.items() if len(sets[k]) > 1)
        try:
            cfg.validate()
        except ValueError as err:
            raise ValueError(f"run {name}: {err}") from None
        runs.append(PlannedRun(name, cfg))
    names = [r.name for r in runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"two runs would share the folder {dupes[0]}: a value repeats in the lists")
    return runs


def describe_plan(runs: list[PlannedRun], sets: dict[str, list[Any]], out: str | Path) -> str:
    """What --dry-run prints: one line per run (folder, what varies, and whether its folder is finished
    or holds another config), then the count."""
    varied = [k for k, v in sets.items() if len(v) > 1]
    lines = []
    for r in runs:
        fields = {"dataset": r.cfg.data.dataset, "method": r.cfg.model.method, "seed": r.cfg.train.seed}
        fields.update({k: getattr(getattr(r.cfg, FIELDS[k][0]), k) for k in varied})
        status, diff = folder_status(Path(out) / r.name, r.cfg)
        note = {FINISHED: " (finished)", OTHER_CONFIG: f" (holds another config: {diff})"}.get(status, "")
        lines.append(f"{Path(out) / r.name}  " + " ".join(f"{k}={v}" for k, v in fields.items()) + note)
    lines.append(count(len(runs), "run"))
    return "\n".join(lines)
