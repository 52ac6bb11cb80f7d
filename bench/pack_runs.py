"""Pack run folders for the trip back from a GPU machine: everything the tables and the app's
non-inspector pages read, without checkpoints; per-sample masks/features only for seed 1.

    python bench/pack_runs.py GRID_DIR OUT.tar.gz [--dataset twitter2015]
"""
from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

ALWAYS_SKIP = {"best.safetensors", "last_state.pt", "features_dev.npz", "masks_dev.json"}
SEED1_ONLY = {"masks_test.json"}
FEATURES_FOR = {"cmcs", "text_only"}  # features_test.npz, seed 1 only (keeps each file < 16 MB)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid")
    p.add_argument("out")
    p.add_argument("--dataset")
    args = p.parse_args()
    with tarfile.open(args.out, "w:gz") as tar:
        for run in sorted(Path(args.grid).iterdir()):
            cfg = run / "config.json"
            if not cfg.is_file() or (args.dataset and not run.name.startswith(args.dataset)):
                continue
            config = json.loads(cfg.read_text())
            seed, method = config["train"]["seed"], config["model"]["method"]
            for f in sorted(run.iterdir()):
                if f.name in ALWAYS_SKIP or (seed != 1 and f.name in SEED1_ONLY):
                    continue
                if f.name == "features_test.npz" and (seed != 1 or method not in FEATURES_FOR):
                    continue
                tar.add(f, arcname=f"{run.name}/{f.name}")
    print(f"{args.out}: {Path(args.out).stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
