"""Shared fixtures of the core suite (tests/test_core_*.py).

Nothing here is autouse: the fixtures only touch tests that ask for them. The features
cache goes to a per-session temporary folder (CMCS_CACHE_DIR), so a run never reads a
cache left by another session and the cache tests see exactly what this session wrote.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from the tests

import pytest

from cmcs_core.config import smoke_config
from cmcs_core.data.dataset import resolve_data_dir
from cmcs_core.pipeline import torch_threads

pytest_plugins = ["app_fixtures"]  # the app's tiny run folders (fixture app_runs)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine two intra-op threads competing with other
    processes slow training down by an order of magnitude."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def cmcs_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh CMCS_CACHE_DIR for the whole session (features and extracted weights)."""
    path = tmp_path_factory.mktemp("cmcs_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("CMCS_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark data root; the tests that need it skip only when it is truly absent."""
    root = resolve_data_dir()
    if root is None or not (root / "twitter2015" / "train.tsv").is_file():
        pytest.skip("benchmark data not found (set CMCS_DATA_DIR or provide ../shared/data)")
    return root


@pytest.fixture(scope="session")
def tiny_config_factory(data_dir: Path):
    return lambda method="cmcs", **kw: smoke_config(data_dir, method, **kw)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, cmcs_cache: Path, tiny_config_factory) -> dict:
    """One finished CMCS run (2 epochs on 128 real samples), trained once per session.

    bench/bench_smoke.py times the same run from the CLI.
    """
    from cmcs_core.train.trainer import train

    cfg = tiny_config_factory("cmcs")
    run_dir = tmp_path_factory.mktemp("runs") / "tiny_cmcs"
    with torch_threads(1):
        metrics = train(cfg, run_dir, progress=False)
    return {"dir": run_dir, "cfg": cfg, "metrics": metrics}


@pytest.fixture(scope="session")
def text_encoder():
    """The packaged MiniLM, loaded once; tests that build TextTowers re-set requires_grad themselves."""
    from cmcs_core.encoders.text import TextEncoder

    enc = TextEncoder("minilm")
    enc.eval()
    return enc
