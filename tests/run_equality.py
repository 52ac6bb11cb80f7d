"""One check that two run folders hold the same run: every logged number, the selection, the
final metrics, the predictions and the kept weights (timings and the run's own paths aside)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from cmcs_core.runs.formats import read_table, table_path

TIMING = ["seconds", "samples_per_s"]
VARYING_METRICS = ("train_seconds", "cpu_seconds", "precision")  # precision holds the probe's timings; config.json the choice


def assert_same_run(got: Path, ref: Path) -> None:
    assert json.loads((got / "config.json").read_text()) == json.loads((ref / "config.json").read_text())
    for stem in ("batches", "predictions_dev", "predictions_test", "masks_dev", "masks_test"):
        a, b = table_path(got, stem), table_path(ref, stem)
        assert (a is None) == (b is None), stem
        if a is not None:
            pd.testing.assert_frame_equal(read_table(a), read_table(b), obj=stem)
    epochs = [pd.read_csv(p / "epochs.csv").drop(columns=TIMING) for p in (got, ref)]
    pd.testing.assert_frame_equal(*epochs, obj="epochs.csv")
    metrics = [json.loads((p / "metrics.json").read_text()) for p in (got, ref)]
    for m in metrics:
        for key in VARYING_METRICS:
            m.pop(key)
    assert metrics[0] == metrics[1]
    weights = [load_file(str(p / "best.safetensors")) for p in (got, ref)]
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k
