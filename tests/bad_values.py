"""Values of one run's config that `train` and `search` refuse in one line before anything is written,
each with the phrase the refusal names it by (a grid's plural flags: tests/test_sweep.py)."""
from __future__ import annotations

BAD_RUN_VALUES = [
    (["--seed", "-1"], "seed=-1: must be in 0..2**32-1"),
    (["--seed", str(2**32)], f"seed={2**32}: must be in 0..2**32-1"),
    (["--dataset", "twitter2019"], "dataset 'twitter2019' is neither a benchmark"),
    (["--text-model", "no/such-model"], "unknown text model 'no/such-model' (text_model): not packaged"),
]
