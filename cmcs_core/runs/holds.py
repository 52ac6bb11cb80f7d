"""One rule for "this folder holds this config", used by `train`, `grid` and `search`.

A folder whose config differs from the planned one in a field that changes results would be resumed,
skipped as finished or ranked as if it had been trained with the planned config: that is refused,
naming the fields and the two ways out (a new folder, or --overwrite, which moves the old folder aside
and never deletes it). Fields that cannot change a result (how many threads, which device name) are
not compared, so `train --config RUN/config.json --num-threads 1` still resumes RUN.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cmcs_core.config import RunConfig
from cmcs_core.runs.files import CONFIG_FILE

# Fields that never change what a run computes: the one list of them.
RESULT_NEUTRAL = frozenset({"train.num_threads", "train.device"})
# Fields whose planned value is a request that the trainer resolves on its machine before it writes
# config.json (precision "auto" is stored as the precision used, cmcs_core/precision.py): a stored
# resolution satisfies the planned request. The trainer compares its own resolved config, so there a
# different resolution is refused.
RESOLVED_BY_TRAINER: dict[str, Any] = {"train.precision": "auto"}
SET_ASIDE = ".old-"  # NAME.old-<time>: a folder --overwrite moved aside (readers skip it)
OVERWRITE_HINT = "--overwrite moves the old folder aside"


class FolderHoldsAnotherConfig(ValueError):
    """A folder holds a run (or search) of a config that differs in fields that change results."""


def _flat(cfg: RunConfig) -> dict[str, Any]:
    return {f"{section}.{name}": value for section, fields in cfg.to_dict().items() for name, value in fields.items()}


def results_differ(planned: RunConfig, stored: RunConfig) -> list[str]:
    """The fields (section.field) in which a stored config differs from the planned one in a way that
    changes results; [] when the folder's run is the planned run."""
    want, have = _flat(planned), _flat(stored)
    differ = []
    for key, value in want.items():
        if key in RESULT_NEUTRAL or have.get(key) == value:
            continue
        if key in RESOLVED_BY_TRAINER and value == RESOLVED_BY_TRAINER[key]:
            continue
        differ.append(key)
    return differ


def describe(planned: RunConfig, stored: RunConfig, fields: list[str]) -> str:
    """`epochs 2 -> 6, head_lr 0.001 -> 0.01`: each field with the folder's value, then the planned one."""
    want, have = _flat(planned), _flat(stored)
    return ", ".join(f"{key.split('.', 1)[1]} {have[key]!r} -> {want[key]!r}" for key in fields)


def conflict(folder: Path, planned: RunConfig, name: str = CONFIG_FILE) -> str | None:
    """None when the folder holds no config or the planned one; else how it differs, for a message
    (a config no reader accepts differs too: nothing can say it is the planned run)."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        stored = RunConfig.load(path)
    except (OSError, ValueError) as err:
        return f"{name} cannot be read: {err}"
    return difference(planned, stored)


def difference(planned: RunConfig, stored: RunConfig) -> str | None:
    """None when the stored config is the planned run; else its differing fields, for a message."""
    fields = results_differ(planned, stored)
    return describe(planned, stored, fields) if fields else None


def listing(items: list[str], most: int = 3) -> str:
    """The first few items for a one-line message, and how many more."""
    return "; ".join(items[:most]) + (f"; and {len(items) - most} more" if len(items) > most else "")


def refusal(what: str, differences: list[str], new_folder: str) -> str:
    """The one-line refusal: what holds another config, how it differs, and the two ways out."""
    return (f"{what} another config ({listing(differences)}): pick a new {new_folder}, or {OVERWRITE_HINT} "
            f"(renamed NAME{SET_ASIDE}<time>, never deleted)")


def set_aside(folder: Path) -> Path:
    """Rename a folder to NAME.old-<time> beside it (never deletes); returns the new path."""
    folder = Path(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = folder.with_name(f"{folder.name}{SET_ASIDE}{stamp}"), 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}{SET_ASIDE}{stamp}-{n}")
    folder.rename(target)
    return target


def is_set_aside(name: str) -> bool:
    """A folder --overwrite moved aside: not a run of the folder it sits in."""
    return SET_ASIDE in name


def claim(folder: Path, planned: RunConfig, overwrite: bool, new_folder: str, name: str = CONFIG_FILE) -> Path | None:
    """Apply the rule to one folder before anything is written: refuse a folder that holds another
    config, or with `overwrite` move it aside (returned); a folder with the planned config is kept."""
    diff = conflict(folder, planned, name)
    if diff is None:
        return None
    if not overwrite:
        raise FolderHoldsAnotherConfig(refusal(f"{folder} holds", [diff], new_folder))
    return set_aside(folder)
