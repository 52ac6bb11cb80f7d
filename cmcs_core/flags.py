"""Every config field is a command-line flag (`--finetune-layers 2`), so a run folder's config.json and the
command line describe the same thing: the flags, the config they build, and the run folder a config names."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from cmcs_core.config import EXPERIMENTAL, SECTIONS, RunConfig, build_config, field_kind, parse_value
from cmcs_core.runs.holds import SET_ASIDE


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


def _flag_type(name: str):
    """The argparse type of field `name`: config.parse_value, named after the field's kind for argparse's
    "invalid int value" message."""
    def parse(text: str):
        return parse_value(name, text)

    parse.__name__ = field_kind(name)
    return parse


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    for section, kind in SECTIONS.items():
        group = parser.add_argument_group(f"{section} ({kind.__doc__.strip().splitlines()[0]})")
        for f in dataclasses.fields(kind):
            if section == "model" and f.name == "method":
                continue
            flag = "--" + f.name.replace("_", "-")
            dest = f"{section}.{f.name}"
            note = f" (experimental: {EXPERIMENTAL[f.name]})" if f.name in EXPERIMENTAL else ""
            if field_kind(f.name) == "bool":
                group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None,
                                   help=note.strip(" ()") or None)
            else:
                group.add_argument(flag, dest=dest, type=_flag_type(f.name), default=None,
                                   help=f"default: {f.default}{note}")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """--config file (if any), then --method preset, then --variant, then explicit flags (config.build_config)."""
    base = RunConfig.load(args.config) if args.config else None
    overrides = {k: v for k, v in vars(args).items() if k.split(".")[0] in SECTIONS and "." in k and v is not None}
    return build_config(base, args.method, getattr(args, "variant", None), overrides)


def default_run_dir(cfg: RunConfig) -> Path:
    ft = {0: "frozen", -1: "ftall"}.get(cfg.encoder.finetune_layers, f"ft{cfg.encoder.finetune_layers}")
    name = Path(cfg.data.dataset).name
    return Path("runs") / f"{name}_{cfg.encoder.text_model}_{ft}_{cfg.model.method}_s{cfg.train.seed}"
