"""A grid rerun into the same --out under the folder rule (cmcs_core/runs/holds.py): a changed setting is
refused before Ray starts (the issue's grid called its runs finished by metrics.json alone), a change of
threads is not, --overwrite moves the old run aside and trains the new one; and a grid started from another
checkout runs the driver's code on its workers."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cmcs_core
from cmcs_core import cli
from cmcs_core.config import RunConfig

CONFIG = ["--max-train-samples", "48", "--max-eval-samples", "32", "--dev-subset-size", "32", "--batch-size", "16",
          "--H", "2", "--epochs", "1"]
RUN = "twitter2015_minilm_frozen_text_only_s1"


@pytest.fixture(scope="module")
def grid(data_dir, cmcs_cache, tmp_path_factory) -> dict:
    """One finished grid of one run (Ray workers inherit this process's environment: the session's cache)."""
    out = tmp_path_factory.mktemp("rerun") / "grid"
    argv = ["grid", "--out", str(out), "--methods", "text_only", "--datasets", "twitter2015", "--seeds", "1",
            "--cpus", "2", *CONFIG]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return {"out": out, "argv": argv, "code": code, "err": err.getvalue()}


def test_the_first_grid_trains_its_one_run(grid) -> None:
    assert grid["code"] == 0 and (grid["out"] / RUN / "metrics.json").is_file()
    assert "grid: 1 run to go on a local Ray" in grid["err"]


def test_a_rerun_with_a_changed_setting_is_refused_before_anything_starts(grid, capsys) -> None:
    out = grid["out"]
    token, metrics = ((out / name).stat().st_mtime_ns for name in (".grid-token", f"{RUN}/metrics.json"))
    assert cli.main([*grid["argv"], "--epochs", "2", "--head-lr", "1e-2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"1 run folder in {out} holds another config ({RUN}: epochs 1 -> 2, head_lr 0.001 -> 0.01)" in err
    assert "pick a new --out, or --overwrite moves the old folder aside" in err
    assert (out / ".grid-token").stat().st_mtime_ns == token
    assert (out / RUN / "metrics.json").stat().st_mtime_ns == metrics
    assert cli.main([*grid["argv"], "--epochs", "2", "--dry-run"]) == 0
    assert "(holds another config: epochs 1 -> 2)" in capsys.readouterr().out


def test_a_rerun_with_other_threads_is_the_same_grid_and_finished(grid, capsys) -> None:
    assert cli.main([*grid["argv"], "--num-threads", "1"]) == 0
    assert f"grid: every run in {grid['out']} is finished (1 run)" in capsys.readouterr().err
    assert cli.main([*grid["argv"], "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("(finished)")


def test_overwrite_moves_the_old_run_aside_and_trains_the_new_setting(grid, capsys) -> None:
    out = grid["out"]
    old = RunConfig.load(out / RUN / "config.json")
    assert cli.main([*grid["argv"], "--epochs", "2", "--overwrite"]) == 0
    err = capsys.readouterr().err
    moved = next(out.glob(f"{RUN}.old-*"))
    assert f"grid: {RUN} held another config; moved to {moved}" in err and "1 run to go on" in err
    assert RunConfig.load(moved / "config.json") == old and (moved / "metrics.json").is_file()
    assert RunConfig.load(out / RUN / "config.json").train.epochs == 2
    assert (out / RUN / "metrics.json").is_file()


def test_workers_run_the_drivers_code_when_the_grid_starts_in_another_checkout(data_dir, cmcs_cache, tmp_path):
    """The driver imports this checkout's cmcs_core and runs in a second checkout whose cmcs_core refuses
    to be imported; Ray would put that working directory first on every worker's sys.path. The run must
    train with the driver's code, and its relative dataset folder must mean the driver's `tiny/`."""
    other = tmp_path / "other_checkout"
    shutil.copytree(Path(cmcs_core.__file__).parent, other / "cmcs_core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with (other / "cmcs_core" / "__init__.py").open("a") as init:
        init.write('\nraise ImportError("the cmcs_core of the second checkout was imported")\n')
    tiny = other / "tiny"
    tiny.mkdir()
    for split in ("train", "dev", "test"):
        lines = (data_dir / "twitter2015" / f"{split}.tsv").read_text().splitlines(keepends=True)
        (tiny / f"{split}.tsv").write_text("".join(lines[:49]))
    shutil.copy(data_dir / "captions" / "twitter2015_images.json", tiny / "captions.json")
    driver_root = str(Path(cmcs_core.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [driver_root, os.environ.get("PYTHONPATH")]))}
    env.pop("RAY_AUTH_MODE", None)  # as in a fresh shell (Ray sets it in this process once a Ray has started here)
    cmd = [sys.executable, "-P", "-m", "cmcs_core", "grid", "--out", "grid", "--methods", "text_only",
           "--datasets", "tiny", "--seeds", "1", "--cpus", "1", *CONFIG]  # -P: the driver never imports cwd's code
    done = subprocess.run(cmd, cwd=other, env=env, capture_output=True, text=True, timeout=600)
    log = other / "grid" / "tiny_minilm_frozen_text_only_s1" / "stdout.txt"
    assert done.returncode == 0 and "second checkout" not in done.stderr, done.stderr[-3000:]
    assert (log.parent / "metrics.json").is_file() and "second checkout" not in log.read_text()
    assert "grid: 1 run to go on a local Ray" in done.stderr
    assert "Token authentication" not in done.stderr  # the embedded Ray's notice, in a fresh process
