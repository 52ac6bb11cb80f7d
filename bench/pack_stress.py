"""Copy stress-tested run folders into results/ compactly: config, metrics, epochs, stress.json and
the flipped rows (gzipped), no checkpoints and no edited TSVs (both are remade by the commands
in docs/robustness.md). `table --stress` and the app's Robustness page read the copies.

    python bench/pack_stress.py runs/frozen runs/frozen_aug --out results/stress_frozen
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

from cmcs_core.io import atomic_save, atomic_write_json

KEEP = ("config.json", "metrics.json", "epochs.csv")


def pack(run: Path, out: Path) -> int:
    """Copy one run; returns the bytes written."""
    report = json.loads((run / "stress.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    for name in KEEP:
        if (run / name).is_file():
            shutil.copy2(run / name, out / name)
    for entry in report["splits"].values():
        for res in entry["edits"].values():
            if not res.get("rows_file"):
                continue
            data = (run / res["rows_file"]).read_bytes()
            res["rows_file"] += ".gz"
            res.pop("file", None)  # the edited TSV is not kept: `stress` writes it again
            atomic_save(out / res["rows_file"], lambda p: Path(p).write_bytes(gzip.compress(data, mtime=0)))
    atomic_write_json(out / "stress.json", report)
    return sum(f.stat().st_size for f in out.rglob("*") if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grids", nargs="+", help="folders holding run folders")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    total = 0
    for grid in args.grids:
        for run in sorted(Path(grid).iterdir()):
            if (run / "stress.json").is_file() and (run / "metrics.json").is_file():
                total += pack(run, Path(args.out) / Path(grid).name / run.name)
    print(f"{args.out}: {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
