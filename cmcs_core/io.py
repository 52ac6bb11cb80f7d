"""Atomic file writes: an interrupted run never leaves a half-written file behind."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; run files are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return _atomic(path, lambda p: p.write_text(text))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=float))


def atomic_save(path: str | Path, save: Callable[[str], None]) -> Path:
    """Run `save(tmp_path)` (torch.save, np.savez, df.to_csv ...) then rename into place."""
    return _atomic(path, lambda p: save(str(p)))


def cache_root() -> Path:
    """Where extracted weights, cached features and projections live ($CMCS_CACHE_DIR or
    ~/.cache/cmcs). Here, not in the encoders, so the app finds it without importing torch."""
    return Path(os.environ.get("CMCS_CACHE_DIR", Path.home() / ".cache" / "cmcs")).expanduser()
