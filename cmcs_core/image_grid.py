"""Per-token values laid out on an image encoder's feature grid (a 7x7 grid of cells for
EfficientNet-Lite0). Torch-free, so app pages that only draw saved masks start fast."""
from __future__ import annotations

import numpy as np


def grid_of(values: list[float], grid: tuple[int, int] | list[int] | None) -> np.ndarray | None:
    """Row-major token values -> (h, w) array, when they form the encoder's spatial grid."""
    if grid is None or len(values) != int(grid[0]) * int(grid[1]):
        return None
    return np.asarray(values, dtype=float).reshape(int(grid[0]), int(grid[1]))
