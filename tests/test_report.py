"""The reporting side: target awareness against a hand count, the analyses behind `cmcs analyse`
against the run files they read, and the one formatter of mean ± std."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cmcs_core.cli import main
from cmcs_core.config import RunConfig
from cmcs_core.data.tsv import read_tsv
from cmcs_core.report.analyses import fusion, selection, targets
from cmcs_core.report.regime import mean_std
from cmcs_core.robustness import target_awareness
from cmcs_core.runs.formats import write_table
from cmcs_core.runs.reader import load_run, scan_runs

# Six images. a: two targets of different labels; b: two of the same label (not counted); c: three
# targets, three labels; d: one target; e: two of different labels; g: two tweets that share an
# image but not their text, one target each (two tweets, neither counted).
HAND_TSV = """index\t#1 Label\t#2 ImageID\t#3 String\t#3 String
1\t2\ta.jpg\t$T$ beat Bob today\tAlice
2\t0\ta.jpg\tAlice beat $T$ today\tBob
3\t1\tb.jpg\t$T$ and Dan at the game\tCarl
4\t1\tb.jpg\tCarl and $T$ at the game\tDan
5\t2\tc.jpg\t$T$ rocks but Fay flops with Gus\tEve
6\t0\tc.jpg\tEve rocks but $T$ flops with Gus\tFay
7\t1\tc.jpg\tEve rocks but Fay flops with $T$\tGus
8\t2\td.jpg\t$T$ is great\tHal
9\t2\te.jpg\t$T$ wins over Ivy\tJo
10\t0\te.jpg\tJo wins over $T$\tIvy
11\t2\tg.jpg\t$T$ is lovely\tKim
12\t0\tg.jpg\t$T$ is awful\tLee
"""
# By hand: the counted tweets are a (rows 1-2), c (5-7) and e (9-10).
#   a: predicted 2, 0 -> every target right, two labels
#   c: predicted 2, 2, 2 -> not all right, one label for all
#   e: predicted 2, 1 -> not all right, two labels
HAND_PREDS = [2, 0, 1, 0, 2, 2, 2, 0, 2, 1, 0, 0]


def _hand_rows(tmp_path: Path) -> pd.DataFrame:
    (tmp_path / "test.tsv").write_text(HAND_TSV)
    samples = read_tsv(tmp_path / "test.tsv")
    return pd.DataFrame({"index": [s.index for s in samples], "line": [s.line for s in samples],
                         "image_id": [s.image_id for s in samples], "tweet": [s.tweet for s in samples],
                         "target": [s.target for s in samples], "label": [s.label for s in samples],
                         "pred": HAND_PREDS})


def test_target_awareness_against_a_hand_count(tmp_path):
    ta = target_awareness(_hand_rows(tmp_path), n_boot=2000)
    assert ta["tweets"] == 3 and ta["rows"] == 7
    assert ta["all_targets_right"] == pytest.approx(1 / 3) and ta["single_label"] == pytest.approx(1 / 3)
    for key in ("all_targets_right", "single_label"):
        lo, hi = ta[f"{key}_ci"]
        assert 0.0 <= lo < ta[key] < hi <= 1.0  # three tweets: a wide interval, never a point
    none = target_awareness(_hand_rows(tmp_path).iloc[7:8])  # one single-target tweet: nothing to count
    assert none["tweets"] == 0 and none["all_targets_right"] is None and none["single_label_ci"] is None


def _by_reference_run(tmp_path: Path) -> Path:
    """A committed-style run folder over the hand-written dataset: predictions without their text."""
    data = tmp_path / "data"
    data.mkdir()
    rows = _hand_rows(data)
    run = tmp_path / "runs" / "hand_run"
    run.mkdir(parents=True)
    cfg = RunConfig()
    cfg.data.dataset = str(data)
    cfg.save(run / "config.json")
    (run / "metrics.json").write_text(json.dumps({"test": {"acc": 0.5, "macro_f1": 0.5}, "dev": {"acc": 0.5}}))
    write_table(run / "predictions_test.parquet", rows.drop(columns=["tweet", "image_id"]))
    return run


def test_analyse_targets_reads_committed_style_runs(tmp_path, capsys):
    run = _by_reference_run(tmp_path)
    frame = targets(scan_runs(tmp_path / "runs")[0])
    assert frame.tweets.tolist() == [3] and frame.all_targets_right.tolist() == pytest.approx([1 / 3])
    assert main(["analyse", "targets", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "| twitter" not in out and "| data | CMCS | 3 (7) | 33.3 | 33.3 | 1 |" in out
    (tmp_path / "data" / "test.tsv").unlink()  # the data gone: the tweets cannot be grouped
    assert load_run(run).target_awareness() is None and targets([load_run(run)]).empty
    assert main(["analyse", "targets", str(tmp_path / "runs")]) == 0
    assert "1 run folder(s) left out" in capsys.readouterr().out


def test_analyse_fusion_and_selection_match_the_run_files(tiny_run):
    run = load_run(tiny_run["dir"])
    pred = run.predictions("test")
    row = fusion([run]).iloc[0]
    assert row.acc_p_final == pytest.approx(tiny_run["metrics"]["test"]["acc"])  # the fused prediction is the run's
    text = pred[["p_text_negative", "p_text_neutral", "p_text_positive"]].to_numpy().argmax(1)
    assert row.acc_p_text == pytest.approx((text == pred.label).mean())
    assert row.changed_by_fusion == pytest.approx((text != pred.pred).mean())
    assert row.s == pytest.approx(pred.s.mean())
    epochs = run.epochs()
    picks = selection([run]).iloc[0]
    assert picks["dev acc"] == epochs.test_acc[epochs.dev_acc.idxmax()]  # first maximum, as the trainer keeps
    assert picks["last"] == epochs.test_acc.iloc[-1] and picks["oracle (test)"] == epochs.test_acc.max()


def test_training_writes_target_awareness_into_the_split_metrics(tiny_run):
    saved = json.loads((tiny_run["dir"] / "metrics.json").read_text())["test"]["target_awareness"]
    again = target_awareness(load_run(tiny_run["dir"]).predictions("test"))
    assert saved == again and saved["tweets"] > 0  # 64 rows of Twitter2015 test hold some such tweets


def test_one_formatter_of_mean_and_spread():
    values = pd.Series([61.0, 63.0])
    assert mean_std(values.mean(), values.std()) == "62.0 ± 1.4"
    one = pd.Series([61.04])
    assert mean_std(one.mean(), one.std()) == "61.0"  # one seed: no spread to show
    assert mean_std(0.12345, math.nan, digits=3) == "0.123"
    assert np.isnan(one.std())
