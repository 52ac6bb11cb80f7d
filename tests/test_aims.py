"""`cmcs analyse aims`: each variant judged against the target-awareness aims, on the seeds that also have a plain
text-only run. Run folders are written to disk, figures chosen on either side of each bar."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmcs_core.cli import main
from cmcs_core.config import build_config
from cmcs_core.report.aims import MAX_CLAUSE_FLIPS, MAX_SINGLE_LABEL, MIN_ALL_RIGHT, aims, aims_markdown
from cmcs_core.runs.reader import scan_runs


def write_run(root: Path, method: str, seed: int, variant: str | None, acc: float, clauses: tuple[float, float],
              swap_target: float, all_right: float, single: float) -> None:
    folder = root / f"{method}_{variant or 'paper'}_s{seed}"
    folder.mkdir(parents=True)
    build_config(None, method, variant, dict(seed=seed, dataset="twitter2015"), validate=False).save(folder / "config.json")
    test = {"acc": acc, "macro_f1": acc,
            "target_awareness": {"tweets": 10, "rows": 25, "all_targets_right": all_right, "single_label": single}}
    (folder / "metrics.json").write_text(json.dumps({"test": test, "dev": {"acc": acc}, "best_epoch": 1}))
    rates = {"clause_positive": clauses[0], "clause_negative": clauses[1], "swap_target": swap_target}
    edits = {e: {"applies": True, "rows": 100, "flip_rate": r} for e, r in rates.items()}
    (folder / "stress.json").write_text(json.dumps({"splits": {"test": {"edits": edits}}}))


@pytest.fixture()
def grid(tmp_path: Path) -> Path:
    bar = MIN_ALL_RIGHT["twitter2015"] / 100
    for seed in (1, 2, 3):
        write_run(tmp_path, "text_only", seed, None, 0.70, (0.5, 0.4), 0.20, 0.30, 0.6)
        # under every bar: clause flips 8-10%, accuracy 71 on average, fewer swap_target flips, all right above the bar
        write_run(tmp_path, "cmcs", seed, "target_aware", 0.70 + seed / 100, (0.07 + seed / 100, 0.05), 0.15,
                  bar + 0.05, MAX_SINGLE_LABEL / 100 - 0.05)
        # the negative clause over its bar, all right under it, more swap_target flips than text-only
        write_run(tmp_path, "wo_cms", seed, "target_aware", 0.72, (0.05, MAX_CLAUSE_FLIPS / 100 + 0.02), 0.25,
                  bar - 0.05, 0.5)
    write_run(tmp_path, "cmcs", 4, "target_aware", 0.10, (0.9, 0.9), 0.9, 0.0, 1.0)  # no text-only seed 4: left out
    return tmp_path


def test_each_aim_is_judged_on_the_side_of_its_bar(grid: Path) -> None:
    runs, errors = scan_runs(grid)
    assert not errors
    frame = aims(runs)
    met = {(str(r.variant), r.aim): None if r.met is None else bool(r.met) for r in frame.itertuples()}
    assert met[("cmcs +target_aware", "clauses")] is True
    assert met[("cmcs +target_aware", "swap_target")] is True
    assert met[("cmcs +target_aware", "all_targets_right")] is True
    assert met[("cmcs +target_aware", "single_label")] is True
    assert met[("wo_cms +target_aware", "clauses")] is False  # the negative clause
    assert met[("wo_cms +target_aware", "swap_target")] is False
    assert met[("wo_cms +target_aware", "all_targets_right")] is False
    assert met[("wo_cms +target_aware", "single_label")] is False
    # text-only is the reference: its relative aim is not judged against itself
    assert met[("text_only", "swap_target")] is None
    assert met[("text_only", "clauses")] is False  # 50% / 40% clause flips
    # seed 4 has no text-only twin: every judged figure rests on seeds 1-3
    assert set(frame[frame.met.notna()].seeds) == {3}
    text = frame.set_index(["variant", "aim"]).text
    cms_clauses = next(t for (v, a), t in text.items() if str(v) == "cmcs +target_aware" and a == "clauses")
    assert cms_clauses.startswith("9.0 ± 1.0 / 5.0 ± 0.0%; acc 72.0 vs 70.0 (+2.0 [")


def test_markdown_counts_the_aims_met(grid: Path, capsys) -> None:
    runs, _ = scan_runs(grid)
    md = aims_markdown(aims(runs))
    row = next(line for line in md.splitlines() if line.startswith("| CMCS + target-aware"))
    assert row.split("|")[-3].strip() == "4/4"
    row = next(line for line in md.splitlines() if line.startswith("| w/o CMS + target-aware"))
    assert row.split("|")[-3].strip() == "0/4"
    assert main(["analyse", "aims", str(grid)]) == 0
    assert "The aims — twitter2015" in capsys.readouterr().out


def test_no_text_only_run_means_nothing_to_judge(tmp_path: Path) -> None:
    write_run(tmp_path, "cmcs", 1, None, 0.7, (0.1, 0.1), 0.1, 0.6, 0.2)
    runs, _ = scan_runs(tmp_path)
    assert aims(runs).empty
    assert "plain text-only runs of the same seeds" in aims_markdown(aims(runs))


def test_bars_include_their_edge_and_face_their_side() -> None:
    from cmcs_core.report.aims import bar, meets
    assert meets(MAX_CLAUSE_FLIPS, "clause_negative", "twitter2015")
    assert not meets(MAX_CLAUSE_FLIPS + 0.1, "clause_positive", "twitter2017")
    assert meets(MIN_ALL_RIGHT["twitter2017"], "all_targets_right", "twitter2017")
    assert not meets(MIN_ALL_RIGHT["twitter2017"] - 0.1, "all_targets_right", "twitter2017")
    assert meets(MIN_ALL_RIGHT["twitter2015"], "all_targets_right", "twitter2015")  # the lower bar of Twitter2015
    assert not meets(MAX_SINGLE_LABEL + 0.1, "single_label", "my_edited_rows")
    assert bar("all_targets_right", "my_edited_rows") is None  # no bar for the user's own data
    assert bar("test_acc", "twitter2015") is None  # judged against text-only, not a bar
