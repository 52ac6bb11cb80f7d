"""Every config field is a command-line flag (`--finetune-layers 2`), so a run folder's config.json and the
command line describe the same thing: the flags, the config they build, and the run folder a config names."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path

from cmcs_core.config import DataConfig, EncoderConfig, ModelConfig, RunConfig, TrainConfig, apply_method
from cmcs_core.runs.holds import SET_ASIDE
from cmcs_core.variants import apply_variant

SECTIONS = {"data": DataConfig, "encoder": EncoderConfig, "model": ModelConfig, "train": TrainConfig}


class OneLineParser(argparse.ArgumentParser):
    """A mistyped flag or value is said in one line (`train --help` prints the 60-odd flags on request),
    not buried under the whole usage; subcommand parsers inherit the class."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def add_overwrite_flag(parser: argparse.ArgumentParser, folder: str) -> None:
    """--overwrite, said the same way by every command that writes a folder (cmcs_core/runs/holds.py)."""
    parser.add_argument("--overwrite", action="store_true",
                        help=f"{folder} holding another config (a field that changes results differs) is moved "
                             f"aside to NAME{SET_ASIDE}<time>, never deleted, and trained anew; without it, refused")


def _flag_type(tp) -> type:
    """int | None -> int, etc. (a field's type as typing.get_type_hints resolves it)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] if isinstance(tp, types.UnionType) else [tp]
    return args[0]


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    for section, kind in SECTIONS.items():
        group = parser.add_argument_group(f"{section} ({kind.__doc__.strip().splitlines()[0]})")
        hints = typing.get_type_hints(kind)  # the annotations are strings under `from __future__ import annotations`
        for f in dataclasses.fields(kind):
            if section == "model" and f.name == "method":
                continue
            flag = "--" + f.name.replace("_", "-")
            tp = _flag_type(hints[f.name])
            dest = f"{section}.{f.name}"
            if tp is bool:
                group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None)
            else:
                group.add_argument(flag, dest=dest, type=tp, default=None, help=f"default: {f.default}")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """--config file (if any), then --method preset, then --variant, then explicit flags."""
    cfg = RunConfig.load(args.config) if args.config else RunConfig()
    if args.method:
        cfg.model = apply_method(cfg.model, args.method)
    if getattr(args, "variant", None):
        cfg = apply_variant(cfg, args.variant)
    for section in SECTIONS:
        updates = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith(section + ".") and v is not None}
        setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **updates))
    return cfg.validate()


def default_run_dir(cfg: RunConfig) -> Path:
    ft = {0: "frozen", -1: "ftall"}.get(cfg.encoder.finetune_layers, f"ft{cfg.encoder.finetune_layers}")
    name = Path(cfg.data.dataset).name
    return Path("runs") / f"{name}_{cfg.encoder.text_model}_{ft}_{cfg.model.method}_s{cfg.train.seed}"
