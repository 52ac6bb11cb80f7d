"""One file cut into parts that each fit a transfer, with a manifest of sizes and sha256 checksums: how a
bundle too large for one trip (model weights, data, Ray for the GPU machine) travels and is checked back."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

MIB = 1 << 20


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def split_into_parts(archive: Path, dest: Path, prefix: str, part_bytes: int, info: dict) -> dict:
    """Cut `archive` into dest/<prefix>_part_1..N of at most part_bytes; writes and returns the manifest
    (the whole archive's and every part's size and sha256, plus `info`)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob(f"{prefix}_part_*"):
        old.unlink()
    parts = []
    with archive.open("rb") as src:
        while chunk := src.read(part_bytes):
            part = dest / f"{prefix}_part_{len(parts) + 1}"
            part.write_bytes(chunk)
            parts.append({"file": part.name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    manifest = {**info, "archive": archive.name, "bytes": archive.stat().st_size, "sha256": sha256(archive),
                "part_bytes": part_bytes, "parts": parts}
    (dest / f"{prefix}_manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def check_part(path: Path, entry: dict) -> None:
    """A part as its manifest entry says: present, of its size and checksum."""
    if not path.is_file():
        raise FileNotFoundError(f"{entry['file']} is missing")
    if path.stat().st_size != entry["bytes"] or sha256(path) != entry["sha256"]:
        raise ValueError(f"{path}: checksum differs from the manifest (a truncated or stale part); prepare and "
                         "carry it again")
