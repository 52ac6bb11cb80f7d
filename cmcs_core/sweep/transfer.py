"""Run folders between Ray workers and the driver: a worker that cannot write to --out trains in a
node-local scratch folder and sends the folder back as a tarball, which the driver swaps in whole."""
from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path


def scratch_dir(out: str, name: str) -> Path:
    """A node-local folder for a run whose worker cannot write to --out; stable across restarts of
    the grid, so a run interrupted there resumes there."""
    key = hashlib.sha1(out.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "cmcs-grid" / key / name


def pack_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        tar.add(folder, arcname=".")
    return buf.getvalue()


def unpack_folder(data: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")


def place_folder(data: bytes, dest: Path) -> None:
    """Unpack a sent-back run folder next to dest, then swap it in: dest is never half-written."""
    incoming = dest.parent / f".incoming-{dest.name}-{uuid.uuid4().hex[:8]}"
    unpack_folder(data, incoming)
    old = dest.parent / f".replaced-{dest.name}-{uuid.uuid4().hex[:8]}"
    if dest.exists():
        dest.rename(old)
    incoming.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
