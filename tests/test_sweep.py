"""`cmcs grid` on an embedded Ray with 2 CPUs: the plan and its refusals, grid runs
equal to `cmcs train` runs, resume after a stop, a failing run reported while the other finishes
(searches: test_search.py; the folder rule: test_folder_rule.py)."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cmcs_core import cli
from cmcs_core.flags import config_from_args
from cmcs_core.pipeline import torch_threads
from cmcs_core.sweep.cluster import RayOptions
from cmcs_core.sweep.grid import GridOptions, run_grid
from cmcs_core.sweep.spec import parse_sets, plan_grid

# Small runs of the real data: a grid's worth of them costs seconds, not minutes.
CONFIG = ["--max-train-samples", "48", "--max-eval-samples", "32", "--dev-subset-size", "32", "--batch-size", "16",
          "--H", "2", "--epochs", "2"]
TINY = ["--datasets", "twitter2015", "--seeds", "1", "--cpus", "2", *CONFIG]
CPUS = os.cpu_count()


@pytest.fixture(scope="module")
def data_env(data_dir, cmcs_cache, tmp_path_factory):
    """Ray workers are started from this process and inherit its environment (the session's cache)."""
    return data_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_config_and_the_trainer_accept_the_same_selection_rules() -> None:
    from cmcs_core.config import CHOICES
    from cmcs_core.train.trainer import SELECT_ON

    assert set(CHOICES["select_on"]) == set(SELECT_ON)


def test_dry_run_lists_every_run_and_its_folder(tmp_path, capsys) -> None:
    out = tmp_path / "grid"
    assert cli.main(["grid", "--out", str(out), "--dry-run", "--methods", "cmcs", "text_only", "--seeds", "1", "2",
                     "--datasets", "twitter2015", "--set", "head_lr=1e-3,1e-4", "--epochs", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "8 runs"
    assert lines[0] == f"{out}/twitter2015_minilm_frozen_cmcs_s1_head_lr0.001  dataset=twitter2015 method=cmcs seed=1 head_lr=0.001"
    assert lines[6].startswith(f"{out}/twitter2015_minilm_frozen_cmcs_s2_head_lr0.0001  ")  # seed-major
    assert not out.exists()  # nothing started, nothing written


@pytest.mark.parametrize("argv, culprit", [
    (["--set", "head_lrr=1e-3"], "'head_lrr' is not a config field (did you mean head_lr?)"),
    (["--set", "head_lr=1e-3,fast"], "head_lr='fast': not a float"),
    (["--set", "batch_size=16,0"], "batch_size=0: must be a positive integer"),
    (["--set", "select_on=dev_acc,test_acc"], "select_on='test_acc': choose from dev_acc, dev_f1, dev_loss"),
    (["--set", "seed=1,2"], "use --seeds"),
    (["--gpus-per-run", "1", "--cpus", "1"], "--gpus-per-run 1: this machine has 0 GPU(s) that torch can use"),
    (["--gpus-per-run", "0.5"], "--gpus-per-run 0.5: this machine has 0 GPU(s)"),
    (["--cpus-per-run", str(CPUS + 1)], f"--cpus-per-run {CPUS + 1} is more than this machine's {CPUS} CPU(s)"),
    (["--gpus", "4"], "--gpus 4: this machine has 0 GPU(s)"),
    (["--address", "127.0.0.1:{port}"], "--address 127.0.0.1:{port}: no Ray cluster answers there"),
    (["--seeds", "1", "-1"], "seed=-1: must be in 0..2**32-1"),
    (["--seeds", str(2**32)], f"seed={2**32}: must be in 0..2**32-1"),
    (["--datasets", "twitter2015", "twitter2019"], "dataset 'twitter2019' is neither a benchmark"),
    (["--set", "text_model=minilm,no/such-model"], "unknown text model 'no/such-model' (text_model)"),
])
def test_bad_input_is_refused_before_anything_starts(argv, culprit, tmp_path, capsys) -> None:
    """Refused in one line before Ray starts: no --out, no .grid-token, no run folder."""
    port = _free_port()
    argv = [a.format(port=port) for a in argv]
    out = tmp_path / "grid"
    assert cli.main(["grid", "--out", str(out), "--datasets", "twitter2015", "--methods", "cmcs", *argv]) == 2
    err = capsys.readouterr().err
    assert culprit.format(port=port) in err and err.count("\n") == 1, err
    assert not out.exists()


def test_grid_runs_equal_the_same_runs_trained_by_cmcs_train(data_env, tmp_path, capsys) -> None:
    """Two runs one after the other (--cpus-per-run 2 of 2 CPUs) in Ray's pooled workers, where a run
    may follow another in the same process, sent back through the object store (--transfer send):
    still the same runs as `cmcs train`."""
    from run_equality import assert_same_run

    out = tmp_path / "grid"
    assert cli.main(["grid", "--out", str(out), "--methods", "cmcs", "text_only", "--transfer", "send",
                     "--cpus-per-run", "2", *TINY]) == 0
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["twitter2015_minilm_frozen_cmcs_s1", "twitter2015_minilm_frozen_text_only_s1"]
    flags = ["--dataset", "twitter2015", "--seed", "1", *CONFIG]
    for name in names:
        method = name.split("frozen_")[1].rsplit("_s1", 1)[0]
        with torch_threads(2):  # what the grid gives a run of 2 CPUs
            assert cli.main(["train", "--quiet", "--method", method, "--output-dir", str(tmp_path / name), *flags]) == 0
        assert_same_run(out / name, tmp_path / name)
    assert "2/2 done" in capsys.readouterr().err
    assert not list(out.glob(".incoming-*")) and not list(out.glob(".replaced-*"))


class StopAfterFirstRun:
    """A progress stream that presses Ctrl-C as soon as the grid reports its first finished run."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def write(self, text: str) -> None:
        self.text += text
        if "grid: 1/2 done" in text:
            raise KeyboardInterrupt


def test_a_stopped_grid_continues_with_the_runs_it_had_not_finished(data_env, tmp_path) -> None:
    base = config_from_args(cli.build_parser().parse_args(["train", *CONFIG]))
    runs = plan_grid(base, ["twitter2015"], ["text_only", "wo_visual"], [1], parse_sets([]),
                     name_of=lambda cfg: cfg.model.method)
    opts = GridOptions(out=tmp_path / "grid", ray=RayOptions(cpus=1))  # one run at a time
    stream = StopAfterFirstRun()
    first = run_grid(runs, opts, stream)
    assert first.finished == ["text_only"] and first.interrupted == ["wo_visual"] and not first.ok
    assert "stopping 1 running run(s)" in stream.text
    assert not (tmp_path / "grid" / "wo_visual" / "metrics.json").exists()
    kept = (tmp_path / "grid" / "text_only" / "metrics.json").stat().st_mtime_ns

    second = run_grid(runs, opts, io.StringIO())
    assert second.skipped == ["text_only"] and second.finished == ["wo_visual"] and second.ok
    assert (tmp_path / "grid" / "text_only" / "metrics.json").stat().st_mtime_ns == kept
    assert (tmp_path / "grid" / "wo_visual" / "metrics.json").is_file()


HEAD = """
import sys, ray
ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2)
print(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1], flush=True)
sys.stdin.readline()
ray.shutdown()
"""


def test_a_grid_joins_a_running_ray_with_address(data_env, tmp_path, monkeypatch, capsys) -> None:
    """A Ray started by another process stands in for a cluster's head: `--address` joins it (with
    its token, as a cluster needs), the run trains there, and the folder lands in --out."""
    head = subprocess.Popen([sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        address = f"127.0.0.1:{head.stdout.readline().strip()}"
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        out = tmp_path / "grid"
        assert cli.main(["grid", "--out", str(out), "--address", address, "--methods", "text_only",
                         "--datasets", "twitter2015", "--seeds", "1", *CONFIG, "--epochs", "1"]) == 0
        assert f"1 run to go on {address} (2 CPUs" in capsys.readouterr().err
        assert (out / "twitter2015_minilm_frozen_text_only_s1" / "metrics.json").is_file()
    finally:
        head.communicate("\n", timeout=60)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _tree(pid: int) -> list[int]:
    """pid and the processes below it (Ray's GCS and raylet, and through the raylet, its workers)."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                kids.setdefault(int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo += kids.get(out[-1], [])
    return out


def test_ctrl_c_stops_the_workers_and_keeps_the_last_epoch(data_env, tmp_path) -> None:
    """Ctrl-C in a terminal: SIGINT to the driver's process group. The run stops cooperatively
    after its last saved epoch, the grid exits non-zero, and none of Ray's processes stay behind."""
    out = tmp_path / "grid"
    run = out / "twitter2015_minilm_frozen_text_only_s1"
    cmd = [sys.executable, "-m", "cmcs_core", "grid", "--out", str(out), "--datasets", "twitter2015", "--methods",
           "text_only", "--seeds", "1", "--max-train-samples", "640", "--max-eval-samples", "32",
           "--dev-subset-size", "32", "--epochs", "40", "--cpus", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        t0 = time.time()
        while not ((run / "train.log").is_file() and "epoch 1:" in (run / "train.log").read_text()):
            assert proc.poll() is None and time.time() - t0 < 300, "the run did not reach its first epoch"
            time.sleep(0.2)
        ray_processes = [p for p in _tree(proc.pid) if p != proc.pid]
        os.killpg(proc.pid, signal.SIGINT)
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    assert "stopping 1 running run(s)" in err and "0 finished, 0 finished before, 0 failed, 1 not finished" in err
    assert "interrupted" in (run / "stdout.txt").read_text()  # the task ended itself, not killed
    assert (run / "last_state.pt").is_file() and not (run / "metrics.json").exists()
    worker = int((run / "stdout.txt").read_text().split(" pid ", 1)[1].split(",")[0])
    t0 = time.time()
    while any(_alive(p) for p in [worker, *ray_processes]) and time.time() - t0 < 30:
        time.sleep(0.5)
    assert len(ray_processes) >= 2 and not [p for p in [worker, *ray_processes] if _alive(p)]


def test_a_failing_run_is_reported_with_its_log_while_the_other_finishes(data_env, tmp_path, capsys) -> None:
    """A dataset folder that exists but holds a bad row fails in its run (planning does not read rows);
    the summary names the failed run and the path to its log."""
    bad = tmp_path / "badrows"
    bad.mkdir()
    for split in ("train", "dev", "test"):
        lines = (data_env / "twitter2015" / f"{split}.tsv").read_text().splitlines(keepends=True)[:49]
        (bad / f"{split}.tsv").write_text("".join(lines) + ("7\tnot a label\n" if split == "train" else ""))
    shutil.copy(data_env / "captions" / "twitter2015_images.json", bad / "captions.json")
    out = tmp_path / "grid"
    code = cli.main(["grid", "--out", str(out), "--methods", "text_only", "--datasets", "twitter2015", str(bad),
                     "--seeds", "1", "--cpus", "2", *CONFIG])
    err = capsys.readouterr().err
    assert code == 1
    assert (out / "twitter2015_minilm_frozen_text_only_s1" / "metrics.json").is_file()
    assert "FAILED badrows_minilm_frozen_text_only_s1" in err
    assert "TSVFormatError" in err.split("last lines of")[1]  # the log's tail
    assert "1 finished, 0 finished before, 1 failed" in err
    log = out / "badrows_minilm_frozen_text_only_s1" / "stdout.txt"
    summary = err.split("0 finished before, 1 failed")[1]
    assert "grid: FAILED badrows_minilm_frozen_text_only_s1: TSVFormatError" in summary and f"(log: {log})" in summary
    assert log.is_file() and "Token authentication" not in err  # the embedded Ray's notice is not printed
