"""The compact run-folder formats (cmcs_core/runs/): what is written reads back the same, old folders
(CSV/JSON) convert to them losing nothing (scripts/compact_runs.py), and compaction drops only extras."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cmcs_core.config import RunConfig
from cmcs_core.data.tsv import LABEL_NAMES, Sample, write_tsv
from cmcs_core.runs.compact import compact_run
from cmcs_core.runs.formats import read_masks, read_table, table_path, write_masks, write_table
from cmcs_core.runs.packed import restore_text
from cmcs_core.runs.reader import RunReadError, load_run

REPO = Path(__file__).resolve().parents[1]


def _converter():
    """scripts/compact_runs.py, the one reader of the old formats, as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("scripts_compact_runs", REPO / "scripts" / "compact_runs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


convert_old_formats = _converter().convert_old_formats

SAMPLES = [Sample(index=str(10 + i), label=i % 3, image_id=f"{i}.jpg", tweet=f"tweet {i} about $T$ !",
                  target=f"T{i}", line=i + 2) for i in range(6)]


def _predictions(rng: np.random.Generator) -> pd.DataFrame:
    """What evaluate.write_outputs writes: float32 model outputs rounded as it rounds them."""
    rows = {"index": [s.index for s in SAMPLES], "line": [s.line for s in SAMPLES],
            "image_id": [s.image_id for s in SAMPLES], "tweet": [s.tweet for s in SAMPLES],
            "target": [s.target for s in SAMPLES], "label": [s.label for s in SAMPLES]}
    probs = rng.dirichlet(np.ones(3), size=len(SAMPLES)).astype(np.float32)
    rows.update(pred=probs.argmax(1), correct=(probs.argmax(1) == rows["label"]).astype(int),
                s=rng.random(len(SAMPLES)).astype(np.float32), effect_t=rng.random(len(SAMPLES)).astype(np.float32))
    for i, name in enumerate(LABEL_NAMES):
        rows[f"p_final_{name}"] = np.round(probs[:, i], 5)
    return pd.DataFrame(rows)


def _masks(rng: np.random.Generator) -> list[dict]:
    out = []
    for i, s in enumerate(SAMPLES):
        n = 3 + i
        entry = {"tokens": ["[CLS]", *s.tweet.split()[: n - 2], "[SEP]"][:n],
                 "mask": np.round(rng.random(n).astype(np.float32), 4).tolist()}
        if i % 2 == 0:  # some entries with a caption branch, some without (as text-only runs)
            entry.update(visual_mask=np.round(rng.random(2).astype(np.float32), 4).tolist(),
                         visual_tokens=["a", "dog"], caption="a dog")
        entry["mask"] = entry["mask"][: len(entry["tokens"])]
        out.append(entry)
    return out


@pytest.fixture()
def old_run(tmp_path: Path) -> tuple[Path, pd.DataFrame, list[dict], Path]:
    """A run folder in the formats written before (CSV, JSON) over a small dataset folder."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    write_tsv(data / "test.tsv", SAMPLES)  # header on line 1: sample i sits on line i + 2
    run = tmp_path / "run"
    run.mkdir()
    cfg = RunConfig()
    cfg.data.dataset = str(data)
    cfg.save(run / "config.json")
    pred = _predictions(rng)
    pred.to_csv(run / "predictions_test.csv", index=False)
    batches = pd.DataFrame({"epoch": [1, 1, 2], "step": [0, 1, 0], "global_step": [1, 2, 3],
                            "loss": np.float32([1.25, 0.5, 0.333]).astype(float), "hypergrad_norm": [np.nan, 3.5, np.nan]})
    batches.to_csv(run / "batches.csv", index=False)
    pd.DataFrame({"epoch": [1, 2], "dev_acc": [0.5, 0.625]}).to_csv(run / "epochs.csv", index=False)
    masks = _masks(rng)
    (run / "masks_test.json").write_text(json.dumps({"grid": [2, 3], "samples": masks}))
    (run / "metrics.json").write_text(json.dumps({"test": {"acc": 0.5}}))
    return run, pred, masks, data


def test_tables_round_trip_at_float32_with_text_ids(tmp_path: Path) -> None:
    frame = pd.DataFrame({"index": ["007", "8"], "step": [1, 2], "x": [0.1, np.nan], "name": ["a", "b"]})
    path = write_table(tmp_path / "t.parquet", frame)
    back = read_table(path)
    assert back["index"].tolist() == ["007", "8"]  # sample ids stay text (CSV would give 7)
    assert back.x.dtype == np.float32 and back.x[0] == np.float32(0.1) and np.isnan(back.x[1])
    assert back.step.tolist() == [1, 2] and back.name.tolist() == ["a", "b"]
    assert table_path(tmp_path, "t") == path
    frame.to_csv(tmp_path / "epochs.csv", index=False)  # epochs stay CSV
    assert table_path(tmp_path, "epochs") == tmp_path / "epochs.csv"
    assert read_table(tmp_path / "epochs.csv")["index"].tolist() == ["007", "8"]
    assert table_path(tmp_path, "batches") is None


def test_the_library_reads_no_old_format(old_run) -> None:
    """Old folders are scripts/compact_runs.py's to convert: the reader sees none of their tables."""
    run = load_run(old_run[0])
    assert run.splits() == []
    with pytest.raises(RunReadError, match="masks_test.parquet"):
        run.masks("test")


def test_masks_round_trip(tmp_path: Path) -> None:
    masks = _masks(np.random.default_rng(1))
    back = read_masks(write_masks(tmp_path / "m.parquet", [7, 7], masks))
    assert back == {"grid": [7, 7], "samples": masks}  # same floats, absent fields stay absent
    assert "visual_mask" not in read_masks(tmp_path / "m.parquet")["samples"][1]
    with pytest.raises(ValueError, match="unknown fields"):
        write_masks(tmp_path / "bad.parquet", None, [{"tokens": ["a"], "mask": [0.5], "oops": 1}])


def test_conversion_keeps_every_value(old_run) -> None:
    run_dir, pred, masks, _ = old_run
    before = {"pred": read_table(run_dir / "predictions_test.csv"), "batches": read_table(run_dir / "batches.csv")}
    assert before["pred"]["index"].tolist() == [s.index for s in SAMPLES]  # old CSV: ids as text too

    convert_old_formats(run_dir, samples_of=load_run(run_dir).split_samples)  # sizes: test_results_budget.py
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["batches.parquet", "config.json", "epochs.csv", "masks_test.parquet", "metrics.json",
                     "predictions_test.parquet"]
    stored = read_table(run_dir / "predictions_test.parquet")
    assert "tweet" not in stored and "image_id" not in stored  # by reference to the data file
    run = load_run(run_dir)
    after = run.predictions("test")
    pd.testing.assert_frame_equal(after, before["pred"], check_dtype=False)
    assert after.s.dtype == np.float32
    pd.testing.assert_frame_equal(run.batches(), before["batches"], check_dtype=False)
    assert run.masks("test") == {"grid": [2, 3], "samples": masks}
    assert run.splits() == ["test"]


def test_predictions_by_reference_without_the_data(old_run) -> None:
    run_dir, pred, _, data = old_run
    convert_old_formats(run_dir, samples_of=load_run(run_dir).split_samples)
    (data / "test.tsv").unlink()
    back = load_run(run_dir).predictions("test")
    assert (back.tweet == "").all() and back.target.tolist() == pred.target.tolist()
    assert "not readable" in back.attrs["text_note"]


def test_changed_data_file_is_refused_or_keeps_the_text(old_run) -> None:
    run_dir, pred, _, data = old_run
    changed = [dataclasses.replace(SAMPLES[0], target="Other"), *SAMPLES[1:]]
    write_tsv(data / "test.tsv", changed)
    convert_old_formats(run_dir, samples_of=load_run(run_dir).split_samples)
    assert "tweet" in read_table(run_dir / "predictions_test.parquet")  # text kept: data disagreed
    slim = pred.drop(columns=["tweet", "image_id"])
    with pytest.raises(ValueError, match="do not match"):
        restore_text(slim, changed)


def test_per_sample_extras_are_dropped_on_request(old_run) -> None:
    run_dir, *_ = old_run
    pd.DataFrame({"index": ["1"], "pred": [0]}).to_csv(run_dir / "predictions_dev.csv", index=False)
    np.savez_compressed(run_dir / "features_test.npz", text_raw_pooled=np.zeros((6, 4), np.float16))
    convert_old_formats(run_dir, per_sample=False)
    names = {p.name for p in run_dir.iterdir()}
    assert not names & {"masks_test.json", "masks_test.parquet", "predictions_dev.csv"}
    assert "predictions_test.parquet" in names  # the test predictions stay
    write_masks(run_dir / "masks_test.parquet", None, _masks(np.random.default_rng(2)))
    pd.DataFrame({"index": ["1"], "pred": [0]}).to_parquet(run_dir / "predictions_dev.parquet")
    compact_run(run_dir, per_sample=False, features=False)
    names = {p.name for p in run_dir.iterdir()}
    assert not names & {"masks_test.parquet", "predictions_dev.parquet", "features_test.npz"}
    assert "predictions_test.parquet" in names
    with pytest.raises(RunReadError, match="masks_test"):
        load_run(run_dir).masks("test")
