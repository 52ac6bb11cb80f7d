"""Copy stress-tested run folders into results/ compactly: config, metrics, epochs, stress.json and
the flipped rows (gzipped), no checkpoints and no edited TSVs (both are remade by the commands
in docs/robustness.md). `table --stress` and the app's Robustness page read the copies.

The flipped rows keep their text by reference (cmcs_core/runs/packed.py): it is dropped only after
`restore_flipped` rebuilt exactly the same columns from the data file and the edit; where the data
is not at hand, or differs, the text stays in the file. `--repack` redoes packed folders.

    python scripts/pack_stress.py runs/frozen runs/frozen_aug --out results/stress_frozen
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cmcs_core.data.counterfactual import EDITS
from cmcs_core.runs.compact import pack_stress_run, repack_stress_run
from cmcs_core.runs.files import METRICS_FILE, STRESS_FILE
from cmcs_core.runs.formats import read_stress_report


def stress_unfinished(run: Path) -> list[str]:
    """The edits a split of the run's stress.json still lacks: `stress` writes the file after each edit,
    so a run packed mid-test would travel with a partial report."""
    return sorted({e for entry in read_stress_report(run)["splits"].values() for e in EDITS
                   if e not in entry.get("edits", {})})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grids", nargs="+", help="folders holding run folders")
    p.add_argument("--out", help="where the packed folders go (not with --repack)")
    p.add_argument("--repack", action="store_true", help="grids are packed folders: rewrite them in place")
    p.add_argument("--partial", action="store_true",
                   help="also pack runs whose stress.json lacks some edits (a deliberate `stress --edits` subset)")
    args = p.parse_args()
    if not args.repack and not args.out:
        p.error("--out is required (or --repack for folders packed before)")
    total = 0
    for grid in args.grids:
        for run in sorted(Path(grid).iterdir()):
            if (run / STRESS_FILE).is_file() and (run / METRICS_FILE).is_file():
                if stress_unfinished(run) and not args.partial:
                    print(f"{run}: skipped, its stress.json lacks {', '.join(stress_unfinished(run))} (still "
                          f"running? --partial packs it as it is)")
                    continue
                if args.repack:
                    total += repack_stress_run(run)
                else:
                    total += pack_stress_run(run, Path(args.out) / Path(grid).name / run.name)
    print(f"{args.out or ', '.join(args.grids)}: {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
