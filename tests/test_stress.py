"""Counterfactual stress tests and target-focused training: the edits write valid benchmark
TSVs that change one thing, flip rates match a count made through `evaluate`, reruns skip
finished work, bad input fails clearly and leaves nothing half-written, and the augmentation
never trains on a stress-bank phrase."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from cmcs_core.cli import main
from cmcs_core.data.counterfactual import (
    CLAUSE_LABEL,
    EDITS,
    PROBE_EDITS,
    append_clause,
    augment_rows,
    edit_rows,
    names_target,
    phrase_bank,
)
from cmcs_core.data.dataset import NO_VISUAL, split_tag
from cmcs_core.data.tsv import read_tsv, write_tsv
from cmcs_core.evaluate import compute_metrics
from cmcs_core.report.stress_tables import collect_stress, stress_tables
from cmcs_core.robustness import flip_stats
from cmcs_core.runs.formats import STRESS_FILE, read_table
from cmcs_core.runs.reader import load_run, scan_runs
from cmcs_core.stress import run_stress

FUNCTION_WORDS = {"and", "is", "my", "the", "this", "was", "a", "i", "of", "so", "that", "are", "on", "but", "also"}


@pytest.fixture(scope="module")
def rows_file(data_dir, tmp_path_factory):
    """The first 64 rows of Twitter2015 test as a file of its own (indices unique)."""
    rows = read_tsv(data_dir / "twitter2015" / "test.tsv")[:64]
    assert len({r.index for r in rows}) == len(rows)
    return write_tsv(tmp_path_factory.mktemp("split") / "first64.tsv", rows)


@pytest.fixture(scope="module")
def stressed(tiny_run, rows_file, tmp_path_factory, one_thread):
    """A copy of the session's tiny CMCS run, stress-tested on the 64 rows."""
    run = tmp_path_factory.mktemp("stressed") / "run"
    shutil.copytree(tiny_run["dir"], run)
    entry = run_stress(run, str(rows_file), progress=False)
    return run, entry


def test_phrase_banks_are_disjoint_and_name_no_target():
    stress, augment = phrase_bank("stress"), phrase_bank("augment")
    for bank in (stress, augment):
        assert all(len(bank[p]) >= 3 for p in CLAUSE_LABEL)  # several phrasings per polarity
    words = {name: {w for p in bank.values() for x in p for w in re.findall(r"[a-z]+", x.lower())}
             for name, bank in (("stress", stress), ("augment", augment))}
    assert not (words["stress"] & words["augment"]) - FUNCTION_WORDS


def test_each_edit_writes_a_valid_tsv_with_only_the_intended_change(stressed, rows_file):
    run, entry = stressed
    originals = {r.index: r for r in read_tsv(rows_file)}
    bank = phrase_bank("stress")
    images = {r.image_id for r in originals.values()}
    targets = {r.target for r in originals.values()}
    for edit in EDITS:
        res = entry["edits"][edit]
        assert res["applies"], edit
        edited = read_tsv(run / res["file"])  # parses as a benchmark TSV
        assert len(edited) == res["rows"]
        for row in edited:
            orig = originals[row.index]
            assert row.label == orig.label
            same = lambda *fields: all(getattr(row, f) == getattr(orig, f) for f in fields)  # noqa: E731
            if edit.startswith("clause_"):
                polarity = edit.split("_")[1]
                assert orig.label != CLAUSE_LABEL[polarity]
                assert row.tweet.startswith(orig.tweet + " ")
                assert row.tweet[len(orig.tweet) + 1:] in bank[polarity]
                assert same("image_id", "target")
            elif edit == "swap_visual":
                assert row.image_id != orig.image_id and row.image_id in images
                assert same("tweet", "target")
            elif edit == "no_visual":
                assert row.image_id == NO_VISUAL and same("tweet", "target")
            else:
                assert row.target.lower() != orig.target.lower() and row.target in targets
                assert same("tweet", "image_id")
    clause_rows = {e: sum(r.label != CLAUSE_LABEL[e.split("_")[1]] for r in originals.values())
                   for e in ("clause_positive", "clause_negative")}
    assert all(entry["edits"][e]["rows"] == n for e, n in clause_rows.items())


def test_flip_rate_equals_a_count_through_evaluate(stressed, rows_file, tmp_path, capsys):
    """Evaluate the original file and each edited file with the CLI, match rows by index, count."""
    run, entry = stressed

    def preds(path, name):
        assert main(["evaluate", "--run", str(run), "--split", str(path), "--output-dir", str(tmp_path / name),
                     "--quiet"]) == 0
        frame = next((tmp_path / name).glob("predictions_*.parquet"))
        return read_table(frame).set_index("index")

    before = preds(rows_file, "original")
    for edit in EDITS:
        res = entry["edits"][edit]
        after = preds(run / res["file"], edit)
        flips = int((before.loc[after.index, "pred"] != after["pred"]).sum())
        assert res["flipped"] == flips
        assert res["flip_rate"] == pytest.approx(flips / len(after))
        assert res["acc_before"] == pytest.approx((before.loc[after.index, "pred"] == after["label"]).mean())
        assert res["acc_after"] == pytest.approx((after["pred"] == after["label"]).mean())
        assert sum(res["flips"].values()) == flips
        flipped = pd.read_csv(run / res["rows_file"], dtype={"index": str})
        assert len(flipped) == flips and set(flipped["index"]) <= set(after.index)
        lo, hi = res["flip_ci"]
        assert lo <= res["flip_rate"] <= hi


def test_rerun_skips_finished_work(stressed, rows_file, monkeypatch):
    run, entry = stressed
    before = (run / STRESS_FILE).read_text()

    def fail(*args, **kwargs):
        raise AssertionError("a finished edit was evaluated again")

    monkeypatch.setattr("cmcs_core.evaluate.predict_tensors", fail)
    again = run_stress(run, str(rows_file), progress=False)
    assert again["edits"] == entry["edits"]
    assert json.loads((run / STRESS_FILE).read_text()) == json.loads(before)


def test_table_stress_puts_the_run_in(stressed, capsys):
    run, entry = stressed
    found = collect_stress(scan_runs(run)[0])
    assert set(found.edit) == set(EDITS) and (found.method == "cmcs").all()
    md = stress_tables(found)
    rate = 100 * entry["edits"]["clause_positive"]["flip_rate"]
    row = next(line for line in md.splitlines() if line.startswith("| CMCS |"))
    assert row.split("|")[3].strip() == f"{rate:.1f}"  # one seed: the rate, no ± to pretend a spread
    assert main(["table", "--stress", str(run)]) == 0
    assert "clause_positive" in capsys.readouterr().out


def test_flip_stats_by_hand():
    labels, before, after = np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1]), np.array([2, 1, 1, 0])
    s = flip_stats(labels, before, after, n_boot=500)
    assert s["flipped"] == 2 and s["flip_rate"] == 0.5
    assert s["acc_before"] == 0.75 and s["acc_after"] == 0.25
    assert s["flips"] == {"negative→positive": 1, "neutral→negative": 1}
    assert 0.0 <= s["flip_ci"][0] <= 0.5 <= s["flip_ci"][1] <= 1.0


@pytest.mark.parametrize("n, flipped", [(400, 120), (1000, 500)])
def test_flip_interval_is_as_wide_as_the_binomial_one_and_random(n, flipped):
    """A percentile bootstrap over rows of a flip rate p has about the normal-approximation width of a
    binomial proportion, 2 * 1.96 * sqrt(p (1 - p) / n); an interval that collapsed onto the rate (no
    resampling) or ignored the seed would not."""
    labels = np.zeros(n, dtype=int)
    before = np.zeros(n, dtype=int)
    after = np.where(np.arange(n) < flipped, 1, 0)
    p = flipped / n
    binomial = 2 * 1.96 * np.sqrt(p * (1 - p) / n)
    intervals = [flip_stats(labels, before, after, n_boot=4000, seed=seed)["flip_ci"] for seed in (0, 1)]
    for lo, hi in intervals:
        assert lo < p < hi
        assert hi - lo == pytest.approx(binomial, rel=0.1)
        assert (p - lo) == pytest.approx(hi - p, rel=0.25)  # near-symmetric at these sizes
    assert intervals[0] != intervals[1]  # another seed, other resamples, other endpoints


def test_run_without_checkpoint_is_refused(stressed, tmp_path, capsys):
    run, _ = stressed
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    (bare / "best.safetensors").unlink()
    assert main(["stress", "--run", str(bare), "--quiet"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_bad_paths_among_runs_are_reported_and_the_rest_run(stressed, rows_file, tmp_path, capsys):
    """`stress --run runs/grid/*` also matches grid.log: it is named and skipped, the runs are
    stress-tested, and the command still fails at the end."""
    run, _ = stressed
    log = tmp_path / "grid.log"
    log.write_text("{}\n")
    good = tmp_path / "good"
    shutil.copytree(run, good)
    (good / STRESS_FILE).unlink()
    assert main(["stress", "--run", str(log), str(good), "--split", str(rows_file),
                 "--edits", "clause_positive", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"skipped: {log} is not a run folder" in err and "1 of 2 paths" in err
    assert "clause_positive" in json.loads((good / STRESS_FILE).read_text())["splits"][split_tag(str(rows_file), rows_file)]["edits"]


def test_edit_that_applies_to_no_row_and_phrase_naming_the_target(tiny_run, rows_file, tmp_path):
    rows = [r for r in read_tsv(rows_file) if r.label == CLAUSE_LABEL["positive"]][:6]
    only_positive = write_tsv(tmp_path / "positive.tsv", rows)
    run = tmp_path / "run"
    shutil.copytree(tiny_run["dir"], run)
    phrases = tmp_path / "phrases.json"
    target = rows[0].target
    phrases.write_text(json.dumps({"stress": {"positive": ["lovely day"], "negative": [f"I hate {target} so much"]}}))
    messages = []
    entry = run_stress(run, str(only_positive), edits=("clause_positive", "clause_negative"),
                       phrases_file=phrases, progress=False, log=messages.append)
    pos = entry["edits"]["clause_positive"]
    assert not pos["applies"] and "no row has a gold label other than positive" in pos["reason"]
    assert any("applies to no row" in m for m in messages)
    neg = entry["edits"]["clause_negative"]
    skipped = [r for r in rows if names_target(f"I hate {target} so much", r.target)]
    assert neg["rows"] == len(rows) - len(skipped) and len(neg["skipped"]) == len(skipped) >= 1
    assert any(target in m and "names its target" in m for m in messages)
    assert not list((run / "stress").rglob("clause_positive*"))  # nothing written for it
    assert not list(run.rglob(".*.tmp*"))  # no half-written file
    with pytest.raises(ValueError, match="contains the target"):
        append_clause(rows[0], f"what a day for {target.upper()}")


def test_interrupted_stress_leaves_valid_files(tiny_run, rows_file, tmp_path, monkeypatch):
    """An error in the third edit keeps the first two recorded and writes nothing partial."""
    import cmcs_core.evaluate as ev

    run = tmp_path / "run"
    shutil.copytree(tiny_run["dir"], run)
    real, calls = ev.predict_tensors, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # edit 1 (+ the unedited rows), edit 2, then edit 3 fails
            raise RuntimeError("interrupted")
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "predict_tensors", flaky)
    with pytest.raises(RuntimeError):
        run_stress(run, str(rows_file), progress=False)
    report = json.loads((run / STRESS_FILE).read_text())
    done = report["splits"][split_tag(str(rows_file), rows_file)]["edits"]
    assert list(done) == list(EDITS[:2])
    assert not list(run.rglob(".*.tmp*"))
    assert not list((run / "stress").rglob(f"{EDITS[2]}_flipped.csv"))


def test_augmentation_never_trains_on_a_stress_phrase(tiny_config_factory, tmp_path, one_thread):
    """What the trainer actually reads: every added row is an original row plus an augment-bank
    clause of another sentiment, label kept; no stress-bank phrase anywhere."""
    from cmcs_core.train.trainer import Trainer

    cfg = tiny_config_factory("text_only", epochs=1)
    cfg.data.augment_clauses = 1.0
    trainer = Trainer(cfg, tmp_path / "aug", progress=False)
    trainer._load_data()
    rows = trainer.train_data.split.samples
    n = cfg.data.max_train_samples
    assert len(rows) == 2 * n and len(trainer.train_data) == 2 * n
    stress = [p for ps in phrase_bank("stress").values() for p in ps]
    augment = phrase_bank("augment")
    originals = {r.index: r for r in rows[:n]}
    for row in rows:
        assert not any(p in row.tweet for p in stress)
    for row in rows[n:]:
        orig = originals[row.index.split("+aug")[0]]
        clause = row.tweet[len(orig.tweet) + 1:]
        polarity = next(p for p, bank in augment.items() if clause in bank)
        assert row.tweet.startswith(orig.tweet) and row.label == orig.label
        assert CLAUSE_LABEL[polarity] != orig.label and row.target == orig.target
    # many more rows than phrases: still none from the stress bank
    train_rows = read_tsv(trainer.pipe.dataset().split_path("train"))
    big = augment_rows(train_rows, 2.0, seed=3)
    assert not any(p in r.tweet for r in big for p in stress)
    # polarity="random": every label meets clauses of both sentiments (no label signal in the clause)
    rnd = augment_rows(train_rows, 1.0, seed=0, polarity="random")[len(train_rows):]
    seen = {(r.label, side) for r in rnd for side, bank in augment.items() if any(r.tweet.endswith(x) for x in bank)}
    assert seen == {(label, side) for label in range(3) for side in CLAUSE_LABEL}
    assert not any(p in r.tweet for r in rnd for p in stress)


def test_either_end_augmentation_moves_the_same_clauses_in_front_of_about_half_the_copies(rows_file):
    """position="either" keeps "end"'s rows, clauses and labels and only moves some clauses in front, so the
    two runs are paired on everything but the clause's place; "end" is what every earlier run trained on."""
    rows = read_tsv(rows_file) * 4  # 256 rows: enough coins for "about half"
    rows = [dataclasses.replace(r, index=f"{r.index}-{n}") for n, r in enumerate(rows)]
    end = augment_rows(rows, 1.0, seed=5, polarity="random")
    assert end == augment_rows(rows, 1.0, seed=5, polarity="random", position="end")
    either = augment_rows(rows, 1.0, seed=5, polarity="random", position="either")
    assert either == augment_rows(rows, 1.0, seed=5, polarity="random", position="either")  # deterministic
    assert either[:len(rows)] == end[:len(rows)]
    originals = {r.index: r for r in rows}
    moved = 0
    for at_end, placed in zip(end[len(rows):], either[len(rows):]):
        assert (placed.index, placed.label, placed.target) == (at_end.index, at_end.label, at_end.target)
        tweet = originals[at_end.index.split("+aug")[0]].tweet
        clause = at_end.tweet[len(tweet) + 1:]
        if placed.tweet != at_end.tweet:
            moved += 1
            front = placed.tweet[:-len(tweet) - 1]  # prepend_clause: the clause, its connective dropped, ended
            assert placed.tweet == f"{front} {tweet}" and front[-1] in ".!?"
            assert clause.endswith(front.removesuffix(" .")) and front not in tweet
    assert 0.35 < moved / len(rows) < 0.65
    with pytest.raises(ValueError, match="'end' or 'either'"):
        augment_rows(rows, 1.0, seed=5, position="front")


def test_edits_are_deterministic_and_change_one_thing(rows_file):
    rows = read_tsv(rows_file)
    for edit in EDITS:
        a, b = edit_rows(rows, edit, seed=0), edit_rows(rows, edit, seed=0)
        assert a.rows == b.rows and a.positions == b.positions


def test_prefix_probe_puts_the_same_clause_on_the_same_rows_in_front(rows_file):
    """Only the place differs from the clause edit, so prefix minus clause flips measures position alone."""
    rows = read_tsv(rows_file)
    connectives = ("and ", "also ", "btw ", "plus ")
    for polarity in ("positive", "negative"):
        end, front = edit_rows(rows, f"clause_{polarity}"), edit_rows(rows, f"prefix_{polarity}")
        assert front.positions == end.positions and len(front.rows) > 0
        for orig_pos, e, f in zip(front.positions, end.rows, front.rows):
            original = rows[orig_pos]
            assert (f.label, f.target, f.image_id) == (original.label, original.target, original.image_id)
            assert f.label != CLAUSE_LABEL[polarity]
            clause = e.tweet[len(original.tweet):].strip()
            assert f.tweet.endswith(" " + original.tweet) and not f.tweet.startswith(original.tweet)
            moved = f.tweet[: -len(original.tweet)].strip()
            assert not moved.lower().startswith(connectives)  # nothing precedes it, so no "and ..."
            assert moved.rstrip(" .!") in clause  # the same phrase, its connective dropped
            assert moved[-1] in ".!?"


def test_probes_run_only_when_named_and_join_the_report(stressed, tmp_path):
    run, entry = stressed
    assert not set(PROBE_EDITS) & set(entry["edits"])  # the default test leaves them out
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    probed = run_stress(copy, entry["file"], edits=PROBE_EDITS, progress=False)
    assert set(probed["edits"]) == set(entry["edits"]) | set(PROBE_EDITS)  # merged, nothing lost
    for edit in PROBE_EDITS:
        res, twin = probed["edits"][edit], entry["edits"][edit.replace("prefix_", "clause_")]
        assert res["applies"] and res["rows"] == twin["rows"] and 0 <= res["flip_rate"] <= 1
        assert res["to_clause_polarity"] <= round(res["flip_rate"] * res["rows"])


def test_macro_f1_over_present_classes_and_output_names(tmp_path):
    m = compute_metrics(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]))
    assert m["macro_f1_classes"] == ["negative", "neutral"]
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)  # the absent positive class is not averaged in
    a, b = tmp_path / "a" / "test.tsv", tmp_path / "b" / "test.tsv"
    for path, text in ((a, "x"), (b, "y")):
        path.parent.mkdir()
        path.write_text(text)
    assert split_tag(str(a), a) != split_tag(str(b), b) and split_tag("test", a) == "test"


def test_packed_flipped_rows_keep_their_text_by_reference(stressed, rows_file, tmp_path):
    """scripts/pack_stress.py drops the tweets of the flipped rows only when redoing the edit on the
    data file gives them back exactly; without the data file they come back empty, with a reason."""
    import gzip
    import subprocess
    import sys
    from pathlib import Path

    run, entry = stressed
    grid = tmp_path / "grid"
    shutil.copytree(run, grid / "run")
    # a run trained before training wrote target awareness: the pack computes it from its predictions
    old_metrics = json.loads((run / "metrics.json").read_text())
    assert old_metrics["test"]["target_awareness"] is not None
    stripped = {k: ({kk: vv for kk, vv in v.items() if kk != "target_awareness"} if isinstance(v, dict) else v)
                for k, v in old_metrics.items()}
    (grid / "run" / "metrics.json").write_text(json.dumps(stripped))
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, str(root / "scripts" / "pack_stress.py"), str(grid), "--out", str(tmp_path / "packed")],
                   check=True, capture_output=True)
    packed = tmp_path / "packed" / "grid" / "run"
    assert json.loads((packed / "metrics.json").read_text())["test"]["target_awareness"] == \
        old_metrics["test"]["target_awareness"]
    assert not (packed / "predictions_test.parquet").exists()
    report = json.loads((packed / STRESS_FILE).read_text())
    checked = 0
    for edit, res in report["splits"][entry["tag"]]["edits"].items():
        if not res.get("rows_file"):
            continue
        header = gzip.decompress((packed / res["rows_file"]).read_bytes()).decode().splitlines()[0].split(",")
        assert "tweet" not in header and "edited_tweet" not in header and "target" in header
        original = load_run(run).flipped(entry["edits"][edit]["rows_file"])
        back = load_run(packed).flipped(res["rows_file"])
        pd.testing.assert_frame_equal(back, original)
        checked += len(back)
    assert checked > 0  # some rows flipped, so the comparison above compared text
    # the data file gone: the rows still read, the text is empty and the frame says why
    moved = rows_file.with_name("moved.tsv")
    rows_file.rename(moved)
    try:
        res = next(r for r in report["splits"][entry["tag"]]["edits"].values() if r.get("rows_file"))
        rows = load_run(packed).flipped(res["rows_file"])
        assert (rows.tweet == "").all() and "by reference" in rows.attrs["text_missing"]
    finally:
        moved.rename(rows_file)


def _stress_run(root, name: str, method: str, seed: int, acc: float, rates: dict[str, float], **fields):
    """A run folder as the stress test leaves it (config, metrics, stress.json), no model."""
    from fake_runs import fake_run

    run = fake_run(method, seed, acc, **fields)
    folder = root / name
    folder.mkdir(parents=True)
    run.cfg.save(folder / "config.json")
    (folder / "metrics.json").write_text(json.dumps(run.metrics))
    edits = {e: {"applies": True, "rows": 100, "flip_rate": r, "flip_ci": [r - 0.05, r + 0.05], "acc_before": 0.6,
                 "acc_after": 0.5, "flips": {}} for e, r in rates.items()}
    (folder / STRESS_FILE).write_text(json.dumps({"splits": {"test": {"edits": edits}}}))


def test_table_stress_pairs_by_seed_not_by_listing_order(tmp_path):
    """Seeds listed out of order (folder names sort 3, 1, 2) and one run missing (text-only seed 2):
    every paired cell subtracts the same seed, in ascending seed order, and skips the missing one."""
    cmcs = {3: 0.40, 1: 0.10, 2: 0.25}
    text = {3: 0.45, 1: 0.30}  # seed 2 missing
    aug = {3: 0.05, 1: 0.20, 2: 0.02}
    acc = {"cmcs": {3: 0.70, 1: 0.60, 2: 0.65}, "text_only": {3: 0.66, 1: 0.61}, "aug": {3: 0.62, 1: 0.64, 2: 0.59}}
    for k, seed in enumerate((3, 1, 2)):
        _stress_run(tmp_path, f"a{k}_cmcs", "cmcs", seed, acc["cmcs"][seed], {"clause_positive": cmcs[seed]})
        if seed in text:
            _stress_run(tmp_path, f"b{k}_text", "text_only", seed, acc["text_only"][seed], {"clause_positive": text[seed]})
        _stress_run(tmp_path, f"c{k}_aug", "text_only", seed, acc["aug"][seed], {"clause_positive": aug[seed]},
                    augment_clauses=1.0)
    md = stress_tables(collect_stress(scan_runs(tmp_path)[0]))
    lines = md.splitlines()

    def cells(prefix: str, after: str) -> list[str]:
        start = next(i for i, line in enumerate(lines) if line.startswith(after))
        row = next(line for line in lines[start:] if line.startswith(prefix))
        return [c.strip() for c in row.split("|")[2:-1]]

    paired = cells("| Text-only baseline |", "CMCS minus each method")
    assert paired == [f"{100 * (cmcs[1] - text[1]):+.1f} {100 * (cmcs[3] - text[3]):+.1f} "
                      f"(mean {100 * np.mean([cmcs[s] - text[s] for s in (1, 3)]):+.1f})"]
    base = cells("| Text-only baseline + counterfactual augmentation |", "Each variant minus")
    assert base[1] == " ".join(f"{100 * (acc['aug'][s] - acc['text_only'][s]):+.1f}" for s in (1, 3)) + \
        f" (mean {100 * np.mean([acc['aug'][s] - acc['text_only'][s] for s in (1, 3)]):+.1f})"  # test acc
    assert base[2].startswith(" ".join(f"{100 * (aug[s] - text[s]):+.1f}" for s in (1, 3)))
    table = cells("| Text-only baseline |", "| method | test acc")
    assert table[1] == f"{100 * np.mean(list(text.values())):.1f} ± {100 * np.std(list(text.values()), ddof=1):.1f}"
    assert table[-1] == "2"  # seeds


def test_pack_skips_a_run_whose_stress_test_is_still_running(stressed, tmp_path):
    """`stress` writes stress.json after each edit: a run packed mid-test would travel with a partial
    report, so pack_stress.py skips it unless --partial says the subset is deliberate."""
    import subprocess
    import sys
    from pathlib import Path

    run, _ = stressed
    grid = tmp_path / "grid"
    shutil.copytree(run, grid / "run")
    report = json.loads((grid / "run" / STRESS_FILE).read_text())
    for entry in report["splits"].values():
        entry["edits"].pop("swap_target")
    (grid / "run" / STRESS_FILE).write_text(json.dumps(report))
    script = Path(__file__).resolve().parents[1] / "scripts" / "pack_stress.py"
    out = subprocess.run([sys.executable, str(script), str(grid), "--out", str(tmp_path / "packed")],
                         check=True, capture_output=True, text=True).stdout
    assert "skipped" in out and "swap_target" in out
    assert not (tmp_path / "packed" / "grid" / "run").exists()
    subprocess.run([sys.executable, str(script), str(grid), "--out", str(tmp_path / "packed"), "--partial"],
                   check=True, capture_output=True)
    (packed,) = json.loads((tmp_path / "packed" / "grid" / "run" / STRESS_FILE).read_text())["splits"].values()
    assert "clause_positive" in packed["edits"] and "swap_target" not in packed["edits"]


def test_table_stress_says_when_a_cell_has_fewer_seeds_than_its_row(tmp_path):
    """A run packed without some edits (seed 3 here lacks swap_target) must not pass for the row's
    full seed count: its cell names how many seeds it averages."""
    for seed in (1, 2, 3):
        edits = {"clause_positive": 0.1 * seed}
        if seed < 3:
            edits["swap_target"] = 0.2 + 0.01 * seed
        _stress_run(tmp_path, f"r{seed}", "cmcs", seed, 0.6 + 0.01 * seed, edits)
    md = stress_tables(collect_stress(scan_runs(tmp_path)[0]))
    header = next(line for line in md.splitlines() if line.startswith("| method | test acc"))
    row = next(line for line in md.splitlines() if line.startswith("| CMCS |"))
    cells = dict(zip([c.strip() for c in header.split("|")[1:-1]], [c.strip() for c in row.split("|")[1:-1]]))
    assert cells["seeds"] == "3"
    assert cells["clause_positive"] == f"{20.0:.1f} ± {10.0:.1f}"
    two = [20.0 + s for s in (1, 2)]
    assert cells["swap_target"] == f"{np.mean(two):.1f} ± {np.std(two, ddof=1):.1f} (2 seeds)"
