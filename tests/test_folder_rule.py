"""The rule "this folder holds this config" (cmcs_core/runs/holds.py) as `train` and `grid` apply it:
which fields count, the one-line refusal and its two ways out, --overwrite moving a folder aside and
never deleting it; and the values refused before anything is written (seeds, datasets, models, usage)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from bad_values import BAD_RUN_VALUES

from cmcs_core import cli
from cmcs_core.config import RunConfig
from cmcs_core.runs import holds
from cmcs_core.runs.holds import FolderHoldsAnotherConfig, claim, conflict, results_differ, set_aside
from cmcs_core.runs.reader import find_run_dirs
from cmcs_core.sweep.progress_line import ProgressLine, count
from cmcs_core.sweep.spec import FINISHED, OTHER_CONFIG, TO_RUN, folder_status

# A tiny CLI training: seconds on one thread.
TINY = ["--method", "text_only", "--max-train-samples", "16", "--max-eval-samples", "8", "--dev-subset-size", "8",
        "--batch-size", "8", "--H", "1", "--epochs", "1", "--num-threads", "1", "--quiet"]


def _changed(value):
    """Another value of the same kind (validity does not matter: the rule compares, it does not validate)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if value is None:
        return 7
    return value + "_other"


def _with(cfg: RunConfig, key: str, value) -> RunConfig:
    section, name = key.split(".")
    out = RunConfig.from_dict(cfg.to_dict())
    setattr(out, section, dataclasses.replace(getattr(out, section), **{name: value}))
    return out


def test_every_field_but_threads_and_device_names_changes_results() -> None:
    base = RunConfig()
    flat = {f"{s}.{k}": v for s, fields in base.to_dict().items() for k, v in fields.items()}
    for key, value in flat.items():
        planned = _with(base, key, _changed(value))
        assert results_differ(planned, base) == ([] if key in ("train.num_threads", "train.device") else [key]), key
    assert results_differ(base, RunConfig.from_dict(base.to_dict())) == []


def test_a_precision_auto_matches_the_precision_the_trainer_stored() -> None:
    """The trainer writes what `auto` resolved to; a grid's driver (which cannot resolve it for the worker's
    machine) takes either resolution as the planned run, an explicit precision only itself."""
    def precision(value: str) -> RunConfig:
        return _with(RunConfig(), "train.precision", value)

    assert results_differ(precision("auto"), precision("fp32")) == []
    assert results_differ(precision("auto"), precision("bf16")) == []
    assert results_differ(precision("fp32"), precision("bf16")) == ["train.precision"]


def test_the_resolving_hook_takes_any_field(monkeypatch) -> None:
    monkeypatch.setitem(holds.RESOLVED_BY_TRAINER, "encoder.text_model", "auto")
    stored = RunConfig()
    assert results_differ(_with(stored, "encoder.text_model", "auto"), stored) == []
    assert results_differ(_with(stored, "encoder.text_model", "mpnet"), stored) == ["encoder.text_model"]
    assert results_differ(stored, _with(stored, "encoder.text_model", "auto")) == ["encoder.text_model"]


def test_claim_refuses_in_one_line_or_moves_the_folder_aside_and_never_deletes(tmp_path) -> None:
    old, new = RunConfig(), _with(RunConfig(), "train.epochs", 3)
    run = tmp_path / "run"
    assert claim(run, new, overwrite=False, new_folder="--output-dir") is None and not run.exists()
    run.mkdir()
    old.save(run / "config.json")
    (run / "metrics.json").write_text("{}")
    assert claim(run, _with(old, "train.num_threads", 1), overwrite=False, new_folder="--output-dir") is None
    with pytest.raises(FolderHoldsAnotherConfig) as refused:
        claim(run, new, overwrite=False, new_folder="--output-dir")
    message = str(refused.value)
    assert "\n" not in message and f"{run} holds another config (epochs 10 -> 3)" in message
    assert "pick a new --output-dir" in message and "--overwrite" in message
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 10  # untouched
    moved = claim(run, new, overwrite=True, new_folder="--output-dir")
    assert not run.exists() and moved.name.startswith("run.old-") and (moved / "metrics.json").is_file()
    assert RunConfig.load(moved / "config.json") == old
    run.mkdir()
    (run / "config.json").write_text("{not json")  # a config no reader accepts is never taken for the planned one
    assert "config.json cannot be read" in conflict(run, new)
    again = set_aside(run)
    assert again != moved and again.parent == tmp_path and (again / "config.json").is_file()
    assert find_run_dirs(tmp_path) == []  # folders moved aside are not runs of the folder they sit in


def test_a_run_is_finished_only_by_its_outputs_beside_the_planned_config(tmp_path) -> None:
    cfg, run = RunConfig(), tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    assert folder_status(run, cfg) == (TO_RUN, None)  # metrics.json alone
    cfg.save(run / "config.json")
    assert folder_status(run, cfg) == (FINISHED, None)
    assert folder_status(run, cfg, stress=True) == (TO_RUN, None)  # stress tests asked for, not run
    (run / "stress.json").write_text("{}")
    assert folder_status(run, cfg, stress=True) == (FINISHED, None)
    assert folder_status(run, _with(cfg, "train.head_lr", 0.01)) == (OTHER_CONFIG, "head_lr 0.001 -> 0.01")
    (run / "metrics.json").unlink()
    assert folder_status(run, cfg) == (TO_RUN, None)


@pytest.mark.parametrize("argv, culprit", [
    *BAD_RUN_VALUES,
    (["--visual-model", "efficientnet-lite0"], "visual_model efficientnet-lite0 reads real pixels: pass --image-dir"),
])
def test_train_refuses_bad_values_in_one_line_and_writes_nothing(data_dir, argv, culprit, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert cli.main(["train", "--output-dir", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert culprit in err and err.count("\n") == 1, err
    assert not out.exists()


def test_usage_errors_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as ended:
        cli.main(["train", "--method", "nope"])
    err = capsys.readouterr().err
    assert ended.value.code == 2 and err.count("\n") == 1 and "invalid choice: 'nope'" in err
    assert "(see python -m cmcs_core train --help)" in err


def test_train_refuses_a_folder_of_another_config_and_overwrite_moves_it_aside(data_dir, cmcs_cache, tmp_path,
                                                                               capsys) -> None:
    out = tmp_path / "run"
    assert cli.main(["train", "--output-dir", str(out), *TINY]) == 0
    kept = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert cli.main(["train", "--output-dir", str(out), *TINY, "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{out} holds another config (epochs 1 -> 2)" in err and err.count("\n") == 1
    assert (out / "metrics.json").read_text() == kept and not list(tmp_path.glob("run.old-*"))
    assert cli.main(["train", "--output-dir", str(out), *TINY, "--epochs", "2", "--overwrite"]) == 0
    moved = next(tmp_path.glob("run.old-*"))
    assert f"moved the old run of another config to {moved}" in capsys.readouterr().err
    assert (moved / "metrics.json").read_text() == kept
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2


def test_eta_is_list_scheduled_and_does_not_jump_when_a_queued_run_starts() -> None:
    """Two slots, runs of 10 s on average: one started 4 s ago (6 s left) and one queued take 10 s in all
    (the queued one starts now in the free slot), and still 10 s once it has started."""
    line = ProgressLine(_Stream(), total=3, skipped=0, slots=2)
    queued = line.text(1, {"a": 96.0}, 0, 1, [10.0], now=100.0)
    started = line.text(1, {"a": 96.0, "b": 100.0}, 0, 0, [10.0], now=100.0)
    assert queued.endswith("ETA 0m10s") and started.endswith("ETA 0m10s")
    assert line.text(0, {}, 0, 5, [10.0], now=0.0).endswith("ETA 0m30s")  # 5 runs of 10 s on 2 slots
    assert (count(1, "run"), count(2, "run"), count(0, "trial")) == ("1 run", "2 runs", "0 trials")


def test_before_a_run_finishes_the_eta_is_projected_from_its_epochs() -> None:
    """No finished run to time: two runs 100 s in, one 2 of 6 epochs done, the other resumed at epoch 3 and 1 epoch
    further (4 of 6): each would take 300 s in all, so 200 s are left; a queued run takes 300 s more."""
    line = ProgressLine(_Stream(), total=3, skipped=0, slots=2)
    epochs = {"a": (2, 0, 6), "b": (4, 3, 6)}
    text = line.text(0, {"a": 0.0, "b": 0.0}, 0, 0, [], now=100.0, epochs=epochs)
    assert "2 running (epoch 2/6, 4/6)" in text and text.endswith("ETA ~3m20s")
    assert line.text(0, {"a": 0.0, "b": 0.0}, 0, 1, [], now=100.0, epochs=epochs).endswith("ETA ~8m20s")
    # a run without an epoch since it started gives nothing to project from
    assert line.text(0, {"a": 0.0, "b": 0.0}, 0, 0, [], now=100.0, epochs={**epochs, "b": (3, 3, 6)}).endswith("ETA ?")
    # a finished run's time wins over the projection
    assert line.text(1, {"a": 0.0}, 0, 0, [500.0], now=100.0, epochs={"a": (2, 0, 6)}).endswith("ETA 6m40s")


class _Stream:
    def isatty(self) -> bool:
        return False
