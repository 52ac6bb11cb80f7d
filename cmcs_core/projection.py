"""2-D maps (PCA, t-SNE, UMAP) of pooled features before and after the MFS mask (paper Fig. 5).

t-SNE and UMAP take seconds to minutes, so each map is cached as a .npy under the cache folder
($CMCS_CACHE_DIR/projections/), keyed by the run folder's path and the features file's size and
mtime. Run folders are never written to: they may be committed results or read-only.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cmcs_core.io import atomic_save, cache_root
from cmcs_core.runs.formats import feature_names, features_path, read_features

METHODS = ("pca", "tsne", "umap")
FEATURE_KEYS = {
    ("text", "raw"): "text_raw_pooled",
    ("text", "masked"): "text_bar_pooled",
    ("visual", "raw"): "visual_raw_pooled",
    ("visual", "masked"): "visual_bar_pooled",
}


def project(x: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, d) -> (N, 2). Standardised first so one wide feature cannot dominate the map.

    Runs single-threaded: on a busy small CPU, OpenMP spinning made t-SNE ten times slower.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _project(x, method, seed)


def _project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; choose from {METHODS}")
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    if n < 3:
        raise ValueError(f"need at least 3 samples to project, got {n}")
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    if method == "pca":  # linear and instant, numpy only (no sklearn import on a cold server)
        _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
        axes = vt[:2] * np.sign(vt[np.arange(2), np.abs(vt[:2]).argmax(1)])[:, None]  # sign as sklearn's
        return (x @ axes.T).astype(np.float32)
    if x.shape[1] > 50 and n > 50:  # the usual PCA-50 first step: same map, much faster
        from sklearn.decomposition import PCA

        x = PCA(50, random_state=seed).fit_transform(x).astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x).astype(np.float32)
    import umap

    neighbours = int(min(15, max(2, n - 1)))
    reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed, n_jobs=1)
    return reducer.fit_transform(x).astype(np.float32)


def _key(features_file: Path, feature: str, method: str, seed: int) -> str:
    st = features_file.stat()
    raw = f"{features_file.resolve()}:{st.st_size}:{st.st_mtime_ns}:{feature}:{method}:{seed}"
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def projection_cache_dir() -> Path:
    return cache_root() / "projections"


def cached_path(run_dir: str | Path, split: str, modality: str, stage: str, method: str = "tsne",
                seed: int = 0, cache_dir: Path | None = None) -> Path | None:
    """Where the map of one pooled feature is cached (None when the run has no features file)."""
    feature = FEATURE_KEYS.get((modality, stage))
    if feature is None:
        raise ValueError(f"unknown feature {modality}/{stage}")
    features_file = features_path(run_dir, split)
    if features_file is None:
        return None
    key = _key(features_file, feature, method, seed)
    return (cache_dir or projection_cache_dir()) / f"{Path(run_dir).name}_{split}_{feature}_{method}_{key}.npy"


def cached_projection(run_dir: str | Path, split: str, modality: str, stage: str,
                      method: str = "tsne", seed: int = 0, cache_dir: Path | None = None) -> np.ndarray:
    """The 2-D map of one pooled feature of a run's split, from the cache folder if there."""
    run_dir = Path(run_dir)
    feature = FEATURE_KEYS.get((modality, stage))
    if feature is None:
        raise ValueError(f"unknown feature {modality}/{stage}")
    features_file = features_path(run_dir, split)
    cache = cached_path(run_dir, split, modality, stage, method, seed, cache_dir)
    if cache is None:
        raise FileNotFoundError(f"{run_dir}: no features_{split}.npz")
    if cache.is_file():
        try:
            return np.load(cache)
        except (OSError, ValueError):
            cache.unlink(missing_ok=True)
    x = read_features(features_file, [feature]).get(feature)
    if x is None:
        raise ValueError(f"this run has no {modality} features (method without that branch)")
    xy = project(x, method, seed)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(cache, lambda p: np.save(p, xy))  # tmp name ends in .npy
    except OSError:
        pass  # read-only cache folder: the projection is still returned
    return xy


def available_modalities(run_dir: str | Path, split: str) -> list[str]:
    """Which of text / visual have pooled features in this run's split."""
    path = features_path(run_dir, split)
    if path is None:
        return []
    names = feature_names(path)
    return [m for m in ("text", "visual") if FEATURE_KEYS[(m, "raw")] in names]
