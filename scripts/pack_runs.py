"""Pack run folders for the trip back from a GPU machine, already in the committed form
(cmcs_core/runs/compact.py, as scripts/compact_runs.py: compact formats, no checkpoints, masks for seed 1, features only for
the runs named by --features; a stress-tested run keeps stress.json and its flipped rows as scripts/pack_stress.py keeps them).

    python scripts/pack_runs.py GRID_DIR OUT.tar.gz [--dataset twitter2015] [--features 'twitter2015_*_cmcs_s1']
"""
from __future__ import annotations

import argparse
import tarfile
import tempfile
from pathlib import Path

from cmcs_core.runs.compact import compact_copy
from cmcs_core.runs.reader import find_run_dirs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid")
    p.add_argument("out")
    p.add_argument("--dataset")
    p.add_argument("--features", nargs="*", default=["twitter2015_*_cmcs_s1"], metavar="GLOB")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(args.out, "w:gz") as tar:
        for run in find_run_dirs(args.grid, max_depth=1):
            if args.dataset and not run.name.startswith(args.dataset):
                continue
            tar.add(compact_copy(run, Path(tmp) / run.name, args.features), arcname=run.name)
    print(f"{args.out}: {Path(args.out).stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
