"""The committed results/ tree stays small enough to carry to a GPU check (64 MiB in all) and to
keep the tracked tree under 40 MB with room for more grids. Budgets: results/README.md."""
from __future__ import annotations

from pathlib import Path

import pytest

from cmcs_core.runs.reader import find_run_dirs

RESULTS = Path(__file__).resolve().parents[1] / "results"
RUN_BUDGET = 150_000  # bytes per run folder, per-sample extras (masks_*, features_*) not counted
MASKS_BUDGET = 200_000  # one masks_<split>.parquet
FEATURES_BUDGET = 5_500_000  # one features_<split>.npz (MPNet: 4 x 1037 x 768 float16)
MAX_FEATURE_RUNS = 2  # runs in results/ that carry pooled features (the Feature space page)
RESULTS_BUDGET = 30_000_000  # the whole results/ tree (the tracked tree stays under 40 MB)
LEGACY_OR_HEAVY = ("batches.csv", "predictions_*.csv", "masks_*.json", "predictions_dev.*", "*.safetensors", "*.pt")


def _files(folder: Path) -> list[Path]:
    """Files as committed: the app's projection cache (gitignored) is not part of a run."""
    return [p for p in folder.rglob("*") if p.is_file() and "projections" not in p.parts]


RUNS = find_run_dirs(RESULTS, max_depth=3)


def test_results_tree_has_runs() -> None:
    assert len(RUNS) >= 100  # the budget tests below would pass vacuously on an empty tree


@pytest.mark.parametrize("run", RUNS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_run_folder_within_budget(run: Path) -> None:
    files = _files(run)
    extras = [p for p in files if p.name.startswith(("masks_", "features_"))]
    core = sum(p.stat().st_size for p in files if p not in extras)
    assert core <= RUN_BUDGET, f"{run}: {core} bytes without masks/features (budget {RUN_BUDGET})"
    for p in extras:
        budget = MASKS_BUDGET if p.name.startswith("masks_") else FEATURES_BUDGET
        assert p.stat().st_size <= budget, f"{p}: {p.stat().st_size} bytes (budget {budget})"
    legacy = [p.name for p in files if any(p.match(g) for g in LEGACY_OR_HEAVY)]
    assert not legacy, f"{run}: convert with scripts/compact_runs.py first ({legacy})"


def test_whole_results_tree_within_budget() -> None:
    with_features = [r for r in RUNS if any(r.glob("features_*.npz"))]
    assert len(with_features) <= MAX_FEATURE_RUNS, with_features
    total = sum(p.stat().st_size for p in _files(RESULTS))
    assert total <= RESULTS_BUDGET, f"results/ is {total / 1e6:.1f} MB (budget {RESULTS_BUDGET / 1e6:.0f} MB)"
