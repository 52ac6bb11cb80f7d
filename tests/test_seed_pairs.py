"""`cmcs analyse scheduler` and `cmcs analyse ideas`: each method with CMS minus its twin without it, each opt-in
variant minus its base, paired by seed, with a Student-t interval over seeds. Run folders are written to disk
(stress.json is read from the folder)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cmcs_core.cli import main
from cmcs_core.config import build_config
from cmcs_core.report.seed_pairs import (cms_twins, idea_pairs, ideas_markdown, scheduler_markdown, scheduler_pairs,
                                         t_interval, verdict)
from cmcs_core.runs.reader import scan_runs

T_975_2DF = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom (a table value)
REPO = Path(__file__).resolve().parents[1]


def write_run(root: Path, method: str, seed: int, acc: float, clause_flip: float, variant: str | None = None,
              all_right: float | None = None, precision: str = "fp32", **overrides) -> Path:
    folder = root / "_".join([method, variant or "paper", *map(str, overrides.values()), precision, f"s{seed}"])
    folder.mkdir(parents=True)
    cfg = build_config(None, method, variant, dict(seed=seed, precision=precision, **overrides), validate=False)
    cfg.save(folder / "config.json")
    test = {"acc": acc, "macro_f1": acc}
    if all_right is not None:
        test["target_awareness"] = {"tweets": 10, "rows": 25, "all_targets_right": all_right, "single_label": 0.5}
    (folder / "metrics.json").write_text(json.dumps({"test": test, "dev": {"acc": acc}, "best_epoch": 1}))
    edits = {"clause_positive": {"applies": True, "rows": 100, "flip_rate": clause_flip},
             "swap_visual": {"applies": False, "reason": "no visual", "rows": 0}}
    (folder / "stress.json").write_text(json.dumps({"splits": {"test": {"edits": edits}}}))
    return folder


def test_twins_are_the_methods_that_differ_only_in_cms() -> None:
    assert cms_twins() == {"cmcs": "wo_cms", "wo_mfs": "wo_mfs_cms"}


def test_the_interval_is_students_t_over_seeds() -> None:
    import pandas as pd
    low, high = t_interval(pd.Series([1.0, 2.0, 3.0]))  # mean 2, sd 1
    half = T_975_2DF / math.sqrt(3)
    assert low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    assert all(math.isnan(v) for v in t_interval(pd.Series([1.0])))
    # two equal differences would make a zero-width interval: no interval below three seeds
    assert all(math.isnan(v) for v in t_interval(pd.Series([4.9, 4.9])))


def test_verdict_follows_which_way_is_better() -> None:
    assert verdict(0.5, 2.0, +1) == "**CMS better**"
    assert verdict(0.5, 2.0, -1) == "**CMS worse**"  # more flips
    assert verdict(-2.0, -0.5, -1) == "**CMS better**"
    assert verdict(-1.0, 1.0, +1) == "no measurable difference"
    assert verdict(math.nan, math.nan, +1).startswith("fewer than 3 seeds")


def test_pairs_only_twins_with_the_same_variant_and_seed(tmp_path: Path) -> None:
    flips = {1: (0.30, 0.20), 2: (0.34, 0.21), 3: (0.29, 0.25)}  # seed -> (cmcs, wo_cms) clause flips
    for seed, (a, b) in flips.items():
        write_run(tmp_path, "cmcs", seed, 0.70 + seed / 100, a, all_right=0.2)
        write_run(tmp_path, "wo_cms", seed, 0.70, b, all_right=0.1)
        write_run(tmp_path, "text_only", seed, 0.75, 0.5)  # no twin: never paired
    write_run(tmp_path, "cmcs", 1, 0.73, 0.1, variant="target_aware")  # its twin is wo_cms +target_aware: absent
    write_run(tmp_path, "wo_cms", 4, 0.73, 0.1)  # seed without a CMCS run
    runs, errors = scan_runs(tmp_path)
    assert not errors
    frame = scheduler_pairs(runs)
    assert {str(v) for v in frame.variant} == {"cmcs"}
    assert sorted(set(frame.seed)) == [1, 2, 3]
    clause = frame[frame.figure == "clause_positive"].set_index("seed")["diff"]
    assert clause.to_dict() == pytest.approx({s: a - b for s, (a, b) in flips.items()})
    acc = frame[frame.figure == "test_acc"].set_index("seed")["diff"]
    assert acc.to_dict() == pytest.approx({s: s / 100 for s in flips})
    assert "swap_visual" not in set(frame.figure)  # did not apply: no figure
    text = scheduler_markdown(frame)
    assert "CMCS minus w/o CMS" in text
    # accuracy +1 +2 +3 points: mean +2.0 ± 4.30 / sqrt(3), an interval that straddles zero
    assert "+1.0 +2.0 +3.0 | +2.0 [-0.5, +4.5] | 3 | no measurable difference" in text
    # clause flips +10 +13 +4 points: sd sqrt(21), so 9 ± 11.4 straddles zero
    assert "| clause_positive flips | 31.0 | 22.0 | +10.0 +13.0 +4.0 | +9.0 [-2.4, +20.4] | 3 | no measurable difference |" in text
    # all targets right +10 points in every seed: zero spread, an interval of one point, CMS better
    assert "| all targets right | 20.0 | 10.0 | +10.0 +10.0 +10.0 | +10.0 [+10.0, +10.0] | 3 | **CMS better** |" in text


def test_no_pairs_says_how_to_make_them(tmp_path: Path) -> None:
    write_run(tmp_path, "cmcs", 1, 0.7, 0.3)
    runs, _ = scan_runs(tmp_path)
    assert scheduler_markdown(scheduler_pairs(runs)).startswith("No pair of runs that differ only in CMS")


@pytest.mark.parametrize("analysis, pairs", [
    ("scheduler", ["CMCS minus w/o CMS", "CMCS + target-aware gates minus w/o CMS + target-aware gates"]),
    ("ideas", ["CMCS + target-aware gates minus CMCS", "Text-only baseline + mention pooling minus Text-only baseline"]),
])
def test_the_cli_pairs_the_committed_mpnet_regime(capsys, analysis: str, pairs: list[str]) -> None:
    main(["analyse", analysis, str(REPO / "results" / "mpnet_cpu")])
    text = capsys.readouterr().out
    for dataset in ("twitter2015", "twitter2017"):
        for pair in pairs:
            assert f"### {pair} — {dataset}, mpnet" in text


def test_ideas_pair_each_variant_with_the_same_method_without_its_change(tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        write_run(tmp_path, "text_only", seed, 0.66, 0.36, precision="bf16")
        write_run(tmp_path, "text_only", seed, 0.66 + seed / 100, 0.28, precision="fp32", pooling="mention")
        write_run(tmp_path, "cmcs", seed, 0.65, 0.30, precision="bf16")
        write_run(tmp_path, "cmcs", seed, 0.68, 0.12, precision="bf16", variant="target_aware")
    runs, errors = scan_runs(tmp_path)
    assert not errors
    frame = idea_pairs(runs)
    assert {(str(v), str(t)) for v, t in zip(frame.variant, frame.twin)} == {
        ("text_only +pool-mention", "text_only"), ("cmcs +target_aware", "cmcs")}
    acc = frame[(frame.figure == "test_acc") & (frame.twin.astype(str) == "text_only")].set_index("seed")["diff"]
    assert acc.to_dict() == pytest.approx({s: s / 100 for s in (1, 2, 3)})
    text = ideas_markdown(frame)
    # a pair that crosses precisions says so; a same-precision pair names its one precision
    assert "Text-only baseline + mention pooling minus Text-only baseline — twitter2015" in text
    assert "fp32 against its twin's bf16" in text
    heading = text.split("### CMCS + target-aware gates minus CMCS")[1].splitlines()[0]
    assert heading.endswith(", bf16") and "against" not in heading
    # clause flips 12 against 30 in every seed: the subject of the verdict is the change
    assert "| clause_positive flips | 12.0 | 30.0 | -18.0 -18.0 -18.0 | -18.0 [-18.0, -18.0] | 3 | " \
           "**target-aware gates better** |" in text


def test_either_end_augmentation_meets_end_only_augmentation_of_its_seed(tmp_path: Path) -> None:
    """--augment-position either changes only where the clause goes, so its twin is end-only augmentation."""
    aug = dict(augment_clauses=1.0, augment_polarity="random")
    for seed in (1, 2, 3):
        write_run(tmp_path, "text_only", seed, 0.66, 0.60, precision="bf16")
        write_run(tmp_path, "text_only", seed, 0.66, 0.30, precision="bf16", **aug)
        write_run(tmp_path, "text_only", seed, 0.66 - seed / 100, 0.30 - seed / 10, precision="bf16", **aug,
                  augment_position="either")
    runs, errors = scan_runs(tmp_path)
    assert not errors
    frame = idea_pairs(runs)
    assert {(str(v), str(t)) for v, t in zip(frame.variant, frame.twin)} == {
        ("text_only +aug-random", "text_only"), ("text_only +aug-random +either-end", "text_only +aug-random")}
    mine = frame[frame.variant.astype(str).str.endswith("+either-end")]
    flips = mine[mine.figure == "clause_positive"].set_index("seed")["diff"]
    assert flips.to_dict() == pytest.approx({s: -s / 10 for s in (1, 2, 3)})
    assert "Text-only baseline + counterfactual augmentation (random sentiment) + clause at either end minus " \
           "Text-only baseline + counterfactual augmentation (random sentiment)" in ideas_markdown(frame)


def test_a_same_precision_twin_is_preferred(tmp_path: Path) -> None:
    write_run(tmp_path, "text_only", 1, 0.70, 0.3, precision="bf16", pooling="mention")
    write_run(tmp_path, "text_only", 1, 0.60, 0.3, precision="fp32")
    write_run(tmp_path, "text_only", 1, 0.65, 0.3, precision="bf16")
    runs, _ = scan_runs(tmp_path)
    acc = idea_pairs(runs).query("figure == 'test_acc'")
    assert len(acc) == 1 and acc.twin_precision.item() == "bf16" and acc["diff"].item() == pytest.approx(0.05)
    assert ideas_markdown(idea_pairs(runs[:1])).startswith("No variant with its base run")
