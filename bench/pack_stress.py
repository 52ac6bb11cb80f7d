"""Copy stress-tested run folders into results/ compactly: config, metrics, epochs, stress.json and
the flipped rows (gzipped), no checkpoints and no edited TSVs (both are remade by the commands
in docs/robustness.md). `table --stress` and the app's Robustness page read the copies.

The flipped rows keep their text by reference (stress.FLIPPED_BY_REFERENCE): it is dropped only
after `restore_flipped` rebuilt exactly the same columns from the data file and the edit; where
the data is not at hand, or differs, the text stays in the file. `--repack` redoes packed folders.

    python bench/pack_stress.py runs/frozen runs/frozen_aug --out results/stress_frozen
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
from pathlib import Path

import pandas as pd

from cmcs_core.io import atomic_save, atomic_write_json
from cmcs_core.stress import FLIPPED_BY_REFERENCE, STRESS_FILE, read_flipped, restore_flipped

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
            rows = read_flipped(run, res["rows_file"])
            data = _slim_csv(rows, run, res["rows_file"])
            res["rows_file"] = res["rows_file"].removesuffix(".gz") + ".gz"
            res.pop("file", None)  # the edited TSV is not kept: `stress` writes it again
            atomic_save(out / res["rows_file"], lambda p: Path(p).write_bytes(gzip.compress(data, mtime=0)))
    atomic_write_json(out / STRESS_FILE, report)
    return sum(f.stat().st_size for f in out.rglob("*") if f.is_file())


def _slim_csv(rows: pd.DataFrame, run: Path, rows_file: str) -> bytes:
    """The rows as CSV bytes, without the text columns when they come back identical from the data."""
    full = rows.to_csv(index=False).encode()
    if rows.attrs.get("text_missing"):
        return full
    slim = rows.drop(columns=list(FLIPPED_BY_REFERENCE))
    try:
        back = restore_flipped(pd.read_csv(io.BytesIO(slim.to_csv(index=False).encode()), keep_default_na=False,
                                           dtype={"index": str}), run, rows_file)
        if back.to_csv(index=False).encode() == full:
            return slim.to_csv(index=False).encode()
    except (OSError, ValueError, KeyError):
        pass
    return full


def repack(run: Path) -> int:
    """Drop the text of an already packed folder's flipped rows where the data gives it back."""
    report = json.loads((run / STRESS_FILE).read_text())
    for entry in report["splits"].values():
        for res in entry["edits"].values():
            if res.get("rows_file"):
                data = _slim_csv(read_flipped(run, res["rows_file"]), run, res["rows_file"])
                atomic_save(run / res["rows_file"], lambda p: Path(p).write_bytes(gzip.compress(data, mtime=0)))
    return sum(f.stat().st_size for f in run.rglob("*") if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grids", nargs="+", help="folders holding run folders")
    p.add_argument("--out", help="where the packed folders go (not with --repack)")
    p.add_argument("--repack", action="store_true", help="grids are packed folders: rewrite them in place")
    args = p.parse_args()
    if not args.repack and not args.out:
        p.error("--out is required (or --repack for folders packed before)")
    total = 0
    for grid in args.grids:
        for run in sorted(Path(grid).iterdir()):
            if (run / "stress.json").is_file() and (run / "metrics.json").is_file():
                if args.repack:
                    total += repack(run)
                else:
                    total += pack(run, Path(args.out) / Path(grid).name / run.name)
    print(f"{args.out or ', '.join(args.grids)}: {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
