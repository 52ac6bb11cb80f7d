"""`cmcs search` on an embedded Ray with 2 CPUs: trials scored on dev only, a best config that trains,
a second search into the same folder (same base settings: more trials, and the printed next step trains
the new best; other base settings: refused, or moved aside with --overwrite), and a table that never
ranks trials of other base settings or calls a full trial stopped early."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from bad_values import BAD_RUN_VALUES

from cmcs_core import cli
from cmcs_core.config import RunConfig
from cmcs_core.pipeline import torch_threads
from cmcs_core.sweep.search import BASE_FILE, load_space, summarise


@pytest.fixture(scope="module")
def searched(data_dir, cmcs_cache, tmp_path_factory) -> dict:
    """One search of 3 trials on a dataset folder with no test.tsv at all: a trial that opened the test
    split would fail. Ray workers inherit this process's environment (the session's cache)."""
    root = tmp_path_factory.mktemp("search")
    data = root / "tiny"
    data.mkdir()
    for split, n in (("train", 48), ("dev", 32)):
        lines = (data_dir / "twitter2015" / f"{split}.tsv").read_text().splitlines(keepends=True)
        (data / f"{split}.tsv").write_text("".join(lines[: n + 1]))
    shutil.copy(data_dir / "captions" / "twitter2015_images.json", data / "captions.json")
    space = root / "space.yaml"
    space.write_text("head_lr: {loguniform: [1.0e-4, 1.0e-2]}\nalpha_init: {uniform: [-1.0, 2.0]}\n"
                     "K: {choice: [1, 3]}\nH: {randint: [1, 3]}\nepochs: {choice: [1, 2]}\n")
    out = root / "search"
    argv = ["search", "--out", str(out), "--space", str(space), "--dataset", str(data), "--batch-size", "16",
            "--dev-subset-size", "16", "--cpus", "2"]
    code, err = _search([*argv, "--trials", "3"])
    assert code == 0, err
    return {"out": out, "data": data, "space": space, "argv": argv, "err": err}


def _search(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, err.getvalue()


@contextlib.contextmanager
def _with_test_split(data: Path):
    """A final run may read test (the trials never do): dev stands in for it while the block runs."""
    (data / "test.tsv").write_text((data / "dev.tsv").read_text())
    try:
        yield
    finally:
        (data / "test.tsv").unlink()


def test_search_scores_on_dev_only_and_its_best_config_trains(searched, capsys) -> None:
    out, data = searched["out"], searched["data"]
    summary = json.loads((out / "search.json").read_text())
    assert summary["split"] == "dev" and len(summary["trials"]) == 3 and not summary["other_base_settings"]
    for trial in summary["trials"]:
        run = Path(trial["run"])
        metrics = json.loads((run / "metrics.json").read_text())
        assert "test" not in metrics and not list(run.glob("*_test.*"))
        assert "test not read" in (run / "train.log").read_text()
        assert RunConfig.load(run / "config.json").data.read_test is False
    best = RunConfig.load(out / "best_config.json")
    trial = RunConfig.load(Path(summary["best"]["run"]) / "config.json")
    assert best.data.read_test and best.train.head_lr == trial.train.head_lr and best.train.K == trial.train.K
    assert "Token authentication" not in searched["err"] and "search: 3 trials," in searched["err"]
    with _with_test_split(data), torch_threads(1):
        capsys.readouterr()
        assert cli.main(["train", "--quiet", "--config", str(out / "best_config.json"),
                         "--output-dir", str(out / "trained")]) == 0
        trained = json.loads(capsys.readouterr().out)
        assert cli.main(["grid", "--config", str(out / "best_config.json"), "--out", str(out / "g"), "--dry-run"]) == 0
        assert capsys.readouterr().out.strip().endswith("\n1 run")
    assert trained["run_dir"] == str(out / "trained") and trained["test_acc"] is not None


def _printed_train_command(err: str) -> list[str]:
    line = next(s for s in err.splitlines() if s.strip().startswith("train it: cmcs train"))
    return line.split("cmcs ", 1)[1].split()


def test_a_second_search_into_the_same_folder_adds_trials_and_its_next_step_trains_the_new_best(searched,
                                                                                                 capsys) -> None:
    """The issue's case: a second search rewrote best/config.json while best/ held the old best's trained
    run, so the printed step resumed the old model. Now the printed step trains the best config of the
    whole search into a folder of its own."""
    out, data = searched["out"], searched["data"]
    code, err = _search([*searched["argv"], "--trials", "1", "--search-seed", "1"])
    assert code == 0, err
    summary = json.loads((out / "search.json").read_text())
    assert len(summary["trials"]) == 4 and not summary["other_base_settings"]
    best_run = Path(summary["best"]["run"])
    best = json.loads((out / "best_config.json").read_text())
    trial = json.loads((best_run / "config.json").read_text())
    assert best == {**trial, "data": {**trial["data"], "read_test": True},
                    "train": {**trial["train"], "eval_test_each_epoch": True}}
    argv = _printed_train_command(err)
    run_dir = Path(argv[argv.index("--output-dir") + 1])
    assert argv[argv.index("--config") + 1] == str(out / "best_config.json")
    assert run_dir == out / f"best-{best_run.name}"
    assert not run_dir.exists()
    with _with_test_split(data), torch_threads(1):
        assert cli.main([*argv, "--quiet"]) == 0
    capsys.readouterr()
    assert json.loads((run_dir / "config.json").read_text()) == best
    assert "resumed" not in (run_dir / "train.log").read_text()


def test_a_search_with_other_base_settings_is_refused_and_writes_nothing(searched) -> None:
    out = searched["out"]
    before = sorted(p.name for p in (out / "trials").iterdir())
    kept = (out / BASE_FILE).stat().st_mtime_ns
    code, err = _search([*searched["argv"], "--trials", "1", "--max-train-samples", "32"])
    assert code == 2 and err.count("\n") == 1, err
    assert f"{out} holds another config (max_train_samples None -> 32)" in err and "--overwrite" in err
    assert sorted(p.name for p in (out / "trials").iterdir()) == before
    assert (out / BASE_FILE).stat().st_mtime_ns == kept


@pytest.mark.parametrize("argv, culprit", [
    *BAD_RUN_VALUES,
    (["--search-seed", "-1"], "--search-seed -1: must be in 0..2**32-1"),
    (["--cpus-per-run", "999"], "--cpus-per-run 999 is more than"),
])
def test_bad_search_values_are_refused_in_one_line_and_write_nothing(argv, culprit, tmp_path) -> None:
    space = tmp_path / "space.json"
    space.write_text('{"head_lr": {"loguniform": [1e-4, 1e-2]}}')
    out = tmp_path / "search"
    code, err = _search(["search", "--out", str(out), "--space", str(space), "--trials", "1", *argv])
    assert code == 2 and culprit in err and err.count("\n") == 1, err
    assert not out.exists()


def _edit_config(folder: Path, section: str, key: str, value) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg[section][key] = value
    (folder / "config.json").write_text(json.dumps(cfg))


def test_trials_of_other_base_settings_are_not_ranked_and_a_full_trial_is_not_stopped_early(searched, tmp_path):
    """summarise over copies of the search's trials: one made with another max_train_samples is named
    apart; one that ran fewer epochs than its config's is `(stopped early)`, one that ran all is not."""
    out = searched["out"]
    trials = tmp_path / "trials"
    shutil.copytree(out / "trials", trials)
    other, short, full = sorted(trials.iterdir())[:3]
    ran = {p: len((p / "epochs.csv").read_text().splitlines()) - 1 for p in (short, full)}
    _edit_config(other, "data", "max_train_samples", 40)
    _edit_config(short, "train", "epochs", ran[short] + 1)
    _edit_config(full, "train", "epochs", ran[full])  # epochs is searched: still this search's base settings
    stream = io.StringIO()
    summary = summarise(RunConfig.load(out / BASE_FILE), load_space(searched["space"]), trials, tmp_path,
                        "dev_acc", [], stream)
    ranked = {Path(r["run"]).name: r for r in summary["trials"]}
    assert other.name not in ranked
    assert summary["other_base_settings"] == [f"{other.name}: max_train_samples 40 -> None"]
    assert f"not ranked, 1 trial in {trials} made with other base settings" in stream.getvalue()
    assert ranked[short.name]["stopped_early"] and not ranked[full.name]["stopped_early"]
    for r in ranked.values():  # the label says exactly this
        assert r["stopped_early"] == (r["epochs_run"] < RunConfig.load(Path(r["run"]) / "config.json").train.epochs)
    lines = {line.split()[0]: line for line in stream.getvalue().splitlines() if line.startswith("trial_")}
    assert "(stopped early)" in lines[short.name] and "(stopped early)" not in lines[full.name]
