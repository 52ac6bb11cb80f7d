"""Bring your own rows (cmcs_core.own_rows), the TSV read from memory, the long-input cut, the preset trained
with progress and the commands the app prints: library functions the app only calls."""
from __future__ import annotations

import argparse
import hashlib
import shlex
import tomllib
from pathlib import Path

import pytest
from app_fixtures import REPO

from cmcs_core.data.dataset import MissingVisualError
from cmcs_core.data.tsv import TSVFormatError, read_tsv


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def edited_rows(app_runs, n: int = 12) -> tuple[str, list[str]]:
    """The test split of the app runs' data with a positive clause appended to every other row (same index,
    image and target, so each row pairs with the split's)."""
    import json

    data = Path(json.loads((app_runs / "cap_cmcs" / "config.json").read_text())["data"]["dataset"])
    lines = (data / "test.tsv").read_text().splitlines()
    rows = [line if k % 2 else line.replace("tonight", "tonight but the weather was lovely")
            for k, line in enumerate(lines[1:n + 1])]
    return "\n".join([lines[0], *rows]) + "\n", rows


def test_read_rows_fails_like_the_cli_with_name_and_line():
    from cmcs_core.own_rows import read_rows

    good = "index\tlabel\timage\ttweet\ttarget\n1\t2\ta.png\t$T$ was great\tPat\n"
    assert [s.target for s in read_rows(good.encode(), "mine.tsv")] == ["Pat"]
    with pytest.raises(TSVFormatError, match=r"^mine\.tsv:3: expected 5 tab-separated columns"):
        read_rows((good + "2\t1\tb.png\tno target column\n").encode(), "mine.tsv")
    with pytest.raises(TSVFormatError, match=r"^mine\.tsv:2: tweet has no \$T\$ placeholder"):
        read_rows(b"index\tl\ti\tt\tg\n1\t0\ta.png\tPat was great\tPat\n", "mine.tsv")
    with pytest.raises(TSVFormatError, match=r"^mine\.tsv:2: unknown label 'happy'"):
        read_rows(b"1\t0\ta.png\t$T$ ok\tPat\n2\thappy\ta.png\t$T$ ok\tPat\n", "mine.tsv")
    with pytest.raises(TSVFormatError, match="not UTF-8"):
        read_rows(b"\xff\xfe\x00bad", "mine.tsv")


def test_read_tsv_and_parse_agree(tmp_path):
    """The file reader and the in-memory reader are one parser: same rows, same line numbers."""
    from cmcs_core.own_rows import read_rows

    text = "index\tl\ti\tt\tg\n\n7\tpositive\ta.png\t$T$ rocks\tPat\n8\t0\tb.png\tmeh $T$\tSam\n"
    (tmp_path / "f.tsv").write_text(text)
    assert read_tsv(tmp_path / "f.tsv") == read_rows(text.encode(), str(tmp_path / "f.tsv"))


def test_evaluate_rows_is_the_runs_prediction_and_writes_nothing(app_runs, tmp_path, monkeypatch):
    """Each row's prediction is what the Predictor says for that row alone; the figures are the library's
    metrics of those predictions; pairing with the test split counts the flips; no file is written."""
    from cmcs_core.evaluate import compute_metrics
    from cmcs_core.inference import Predictor
    from cmcs_core.own_rows import best_pairing, evaluate_rows, flips, read_rows
    from cmcs_core.runs.reader import load_run

    monkeypatch.setenv("CMCS_CACHE_DIR", str(tmp_path / "cache"))
    pred = Predictor(app_runs / "cap_cmcs")
    text, rows = edited_rows(app_runs)
    samples = read_rows(text.encode(), "mine.tsv")
    (tmp_path / "cache").mkdir(exist_ok=True)
    before = tree_digest(tmp_path / "cache"), tree_digest(app_runs)
    result = evaluate_rows(pred, samples, "mine.tsv")
    assert (tree_digest(tmp_path / "cache"), tree_digest(app_runs)) == before
    frame = result["predictions"]
    captions = frame.caption.tolist()
    alone = [pred.predict(s.text, s.target, caption=c)["label"] for s, c in zip(samples, captions)]
    assert [["negative", "neutral", "positive"][p] for p in frame.pred] == alone
    assert result["metrics"] == compute_metrics(frame.label.to_numpy(), frame.pred.to_numpy())
    run = load_run(app_runs / "cap_cmcs")
    split, paired = best_pairing(frame, {s: run.predictions(s) for s in run.splits()})
    assert split == "test" and len(paired) == len(rows)
    original = run.predictions("test").set_index("index").pred
    changed = sum(int(original[str(i)]) != int(p) for i, p in zip(paired["index"], paired.pred_after))
    f = flips(paired)
    assert f["flipped"] == changed == len(f["rows_flipped"]) and f["changed_text"] == len(rows) // 2
    assert all("$T$" not in t for t in f["rows_flipped"].text)


def test_evaluate_rows_names_rows_without_a_picture(app_runs):
    from cmcs_core.inference import Predictor
    from cmcs_core.own_rows import evaluate_rows, read_rows

    pred = Predictor(app_runs / "cap_cmcs")
    rows = read_rows(b"1\t2\tnowhere.png\t$T$ was great\tDrake\n2\t0\timg01.png\t$T$ was awful\tDrake\n", "mine.tsv")
    with pytest.raises(MissingVisualError, match=r"mine\.tsv:1 \(nowhere\.png\)"):
        evaluate_rows(pred, rows, "mine.tsv")
    kept = evaluate_rows(pred, rows, "mine.tsv", drop_missing=True)
    assert kept["dropped"] == 1 and kept["metrics"]["n"] == 1


def test_pieces_say_when_the_targets_mention_is_cut(app_runs):
    from cmcs_core.inference import Predictor

    pred = Predictor(app_runs / "cap_cmcs")  # max_length 32
    filler = "word " * 40
    late = pred.pieces(f"{filler} and Drake was great", "Drake")
    early = pred.pieces(f"Drake was great {filler}", "Drake")
    short = pred.pieces("Drake was great", "Drake")
    assert late.total > late.read and late.mention_cut
    assert early.total > early.read and not early.mention_cut
    assert short.total == short.read and not short.mention_cut


def test_make_playground_reports_every_step(tmp_path):
    """The preset the app trains from a button: progress from 0 to the announced total, one step per epoch
    and per stress edit, and the runs the printed command names."""
    from cmcs_core.playground_command import make_playground, preset_arguments
    from cmcs_core.playground.story import preset_runs

    args = preset_arguments("target-cue", tmp_path / "runs", tmp_path / "data")
    args.n_train, args.n_dev, args.n_test, args.epochs = 60, 30, 30, 1
    seen = []
    runs = make_playground(args, on_progress=lambda done, total, what: seen.append((done, total)))
    total = seen[0][1]
    assert [d for d, _ in seen] == list(range(total + 1)) and {t for _, t in seen} == {total}
    assert {str(p) for p in runs} == {str(p) for p in preset_runs(tmp_path / "runs", "target-cue").values()}
    assert all((p / "stress.json").is_file() and (p / "playground_score.json").is_file() for p in runs)


def test_printed_commands_parse_and_use_the_venvs_cmcs():
    """Every command the app prints starts with the venv's `cmcs` (declared in pyproject), and the CLI's own
    parser accepts it as printed."""
    from cmcs_core.cli import build_parser
    from cmcs_core.command import CLI, cli_command
    from cmcs_core.playground.story import preset_command

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(CLI).name in scripts and CLI == f".venv/bin/{Path(CLI).name}"
    assert "VENV ?= .venv" in (REPO / "Makefile").read_text()
    for command in (preset_command("target-cue", "runs"), preset_command("target-cue", "/tmp/a b/runs"),
                    cli_command("stress", "--run", "runs/x y"), cli_command("playground", "--runs-dir", "runs")):
        words = shlex.split(command)
        assert words[0] == CLI
        assert isinstance(build_parser().parse_args(words[1:]), argparse.Namespace)
    assert "--data-out" not in preset_command("target-cue", "runs")  # the command's own default place


def test_first_run_trains_the_playground_then_the_target_cue_preset_beside_it(tmp_path, monkeypatch):
    """`cmcs playground --first-run` (what `make app` runs where no run exists): the command's own runs, then the
    target-cue preset's into the same runs folder, its data beside the playground's, never over it."""
    from cmcs_core import cli
    from cmcs_core import playground_command as playground

    calls = []
    monkeypatch.setattr(playground, "make_playground", lambda args, on_progress=None: calls.append(args) or [])
    args = cli.build_parser().parse_args(["playground", "--first-run", "--runs-dir", str(tmp_path / "runs"),
                                          "--data-out", str(tmp_path / "pg" / "data"), "--seed", "3"])
    args.func(args)
    assert [getattr(a, "preset", None) for a in calls] == [None, playground.FIRST_RUN_PRESET]
    assert {a.runs_dir for a in calls} == {str(tmp_path / "runs")} and calls[1].seed == 3
    assert calls[1].data_out == str(tmp_path / "pg" / "target_cue") and not calls[1].quiet


def test_word_edits_of_the_inspector() -> None:
    """The Inspector's counterfactual edits (cmcs_core.inference): which words hold the target, one word
    replaced or deleted, and whether an edited tweet still names its target."""
    from cmcs_core.inference import edit_word, keeps_target, target_words

    tweet = "The new Real Madrid kit is great"
    assert target_words(tweet, "real madrid") == {2, 3}
    assert target_words("so $T$ again", "anything") == {1}
    assert target_words(tweet, "Barcelona") == set() and target_words(tweet, " ") == set()
    assert edit_word(tweet, 6, "awful") == "The new Real Madrid kit is awful"
    assert edit_word(tweet, 5, "  ") == "The new Real Madrid kit great"  # a blank replacement deletes
    assert edit_word("a  b", None) == "a b"
    assert keeps_target(edit_word(tweet, 5), "Real Madrid") and keeps_target("so $T$", "x")
    assert not keeps_target(edit_word(tweet, 2), "Real Madrid") and not keeps_target("   ", "x")
