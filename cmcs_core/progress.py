"""Progress bars that honour both the caller's switch and TQDM_DISABLE."""
from __future__ import annotations

import os
from typing import Iterable

from tqdm.auto import tqdm


def bars_disabled_by_env() -> bool:
    """TQDM_DISABLE=1 (any value but '', 0, false, no) switches every bar of the library off."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def progress_bar(iterable: Iterable | None = None, show: bool = True, **kwargs) -> tqdm:
    """tqdm, drawn only when the caller asks for it and TQDM_DISABLE is not set. (tqdm reads
    TQDM_DISABLE as a default only: an explicit disable=False overrides it, so a benchmark or a
    quiet job could not switch the library's bars off.)"""
    return tqdm(iterable, disable=not show or bars_disabled_by_env(), **kwargs)
