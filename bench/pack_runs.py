"""Pack run folders for the trip back from a GPU machine, already in the committed form
(bench/compact_runs.py: compact formats, no checkpoints, masks for seed 1, features only for
the runs named by --features).

    python bench/pack_runs.py GRID_DIR OUT.tar.gz [--dataset twitter2015] [--features 'twitter2015_*_cmcs_s1']
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # this checkout's cmcs_core

from compact_runs import NEVER, compact  # noqa: E402

from cmcs_core.runs import find_run_dirs  # noqa: E402


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
            copy = Path(tmp) / run.name
            shutil.copytree(run, copy, ignore=shutil.ignore_patterns(*NEVER, "projections"))
            compact(copy, args.features)
            tar.add(copy, arcname=run.name)
    print(f"{args.out}: {Path(args.out).stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
