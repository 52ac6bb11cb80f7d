"""`cmcs grid`: run a planned grid (spec.py) as Ray tasks, one run each, into the driver's --out.

Where a run's files go: a worker that sees --out at the same path (this machine, or a shared file
system mounted alike on every node) trains straight into `--out/<run>`; any other worker trains
into a scratch folder on its node and sends the finished folder back, which the driver unpacks
beside `--out/<run>` and renames into place. A run counts as finished only by its metrics.json
(written last, atomically) beside a config.json of the planned config, so a grid killed at any point
continues where it stopped: finished runs are skipped and an interrupted one resumes from its last
epoch's state. A run folder holding another config is refused before anything starts (--overwrite
moves it aside), so a rerun with other settings never skips or resumes runs of the old ones.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cmcs_core.preflight import check_inputs
from cmcs_core.runs.files import STATE_FILE, epochs_done
from cmcs_core.sweep.cluster import Cluster, RayOptions, check_options, enter_driver_cwd, ray_cluster
from cmcs_core.sweep.progress_line import ProgressLine, clock, count
from cmcs_core.sweep.spec import FINISHED, PlannedRun, claim_run_folders, folder_status, is_finished
from cmcs_core.sweep.transfer import pack_folder, place_folder, scratch_dir, unpack_folder

TOKEN_FILE = ".grid-token"
RUN_LOG = "stdout.txt"  # what a run printed, and its traceback if it failed
TRANSFERS = ("auto", "shared", "send")


@dataclass
class GridOptions:
    out: Path
    ray: RayOptions = field(default_factory=RayOptions)
    stress: bool = False  # stress tests (cmcs_core.stress.run_stress) after each run
    transfer: str = "auto"  # auto: write to --out where workers see it, else send back | shared | send
    log_tail: int = 15  # lines of a failed run's log to print
    deadline: float | None = None  # seconds after which no new run starts (a lent machine's time)
    overwrite: bool = False  # move run folders holding another config aside instead of refusing


@dataclass
class GridReport:
    """How a grid ended: runs finished now, before, failed (with their log tails) or interrupted."""

    total: int
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)  # queued when the deadline passed
    failed: list[dict] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    seconds: float = 0.0
    run_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and not self.not_started


# -- on the worker ----------------------------------------------------------------------------------
def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _close_run_logs() -> None:
    """A Ray worker trains many runs in turn: close the log files the trainer opened for this one."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("cmcs.run.") and isinstance(logger, logging.Logger):
            for handler in list(logger.handlers):
                handler.close()
                logger.removeHandler(handler)


def run_task(cfg_dict: dict, name: str, out: str, token: str, transfer: str, partial: bytes | None,
             threads: int, stress: bool, log_tail: int) -> dict[str, Any]:
    """Train one run (then stress-test it if asked) on a Ray worker; never raises, so one failed run
    is reported while the others go on."""
    from cmcs_core.config import RunConfig
    from cmcs_core.pipeline import torch_threads

    enter_driver_cwd()
    t0 = time.time()
    token_file = Path(out) / TOKEN_FILE
    shared = transfer == "shared" or (transfer == "auto" and token_file.is_file()
                                      and token_file.read_text().strip() == token)
    run_dir = Path(out) / name if shared else scratch_dir(out, name)
    if not shared and partial and not (run_dir / STATE_FILE).is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        unpack_folder(partial, run_dir)  # the driver's unfinished folder: resume it here
    run_dir.mkdir(parents=True, exist_ok=True)
    status, error = "finished", None
    with open(run_dir / RUN_LOG, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()} pid {os.getpid()}, "
              f"{threads} torch thread(s)", flush=True)
        try:
            with torch_threads(threads):
                cfg = RunConfig.from_dict(cfg_dict)
                if folder_status(run_dir, cfg)[0] != FINISHED:
                    from cmcs_core.train.trainer import train

                    train(cfg, run_dir, progress=False)
                if stress and not is_finished(run_dir, stress=True):
                    from cmcs_core.stress import run_stress

                    # on the run's own device: a GPU run's stress tests on one CPU thread take far longer
                    run_stress(run_dir, progress=False, log=print, device=cfg_dict["train"]["device"])
        except KeyboardInterrupt:  # ray.cancel: the last epoch's state stays for a resume
            status, error = "interrupted", "stopped by the driver"
            print("interrupted", flush=True)
        except BaseException as err:  # noqa: BLE001 - reported with the log, the grid goes on
            status, error = "failed", f"{type(err).__name__}: {err}"
            traceback.print_exc()
    _close_run_logs()
    result = {"name": name, "status": status, "error": error, "seconds": time.time() - t0,
              "node": socket.gethostname(), "shared": shared, "log_tail": _tail(run_dir / RUN_LOG, log_tail)}
    if not shared:  # the driver keeps the folder (and sends it back to resume an unfinished run)
        result["folder"] = pack_folder(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


# -- on the driver ----------------------------------------------------------------------------------
def torch_threads_for(cpus_per_run: float) -> int:
    """Torch's intra-op threads follow the CPUs Ray gave the run (oversubscribed cores were up to 10x
    slower here, docs/benchmarks.md)."""
    return max(1, int(cpus_per_run))


def run_grid(runs: list[PlannedRun], opts: GridOptions, stream: TextIO | None = None) -> GridReport:
    """Run every unfinished run of the grid as a Ray task; returns when all have ended (a failed run
    does not stop the others) or after Ctrl-C has stopped the workers."""
    stream = stream or sys.stderr  # read at call time (tests capture it)
    if opts.transfer not in TRANSFERS:
        raise ValueError(f"--transfer {opts.transfer!r}: choose from {', '.join(TRANSFERS)}")
    check_options(opts.ray)  # resources this machine cannot give, before anything is written
    check_inputs(*(run.cfg for run in runs))
    t_start = time.time()
    out = opts.out.expanduser().resolve()
    report = GridReport(total=len(runs))
    todo = []
    for name, moved in claim_run_folders(runs, out, opts.overwrite):
        stream.write(f"grid: {name} held another config; moved to {moved}\n")
    for run in runs:
        if folder_status(out / run.name, run.cfg, opts.stress)[0] == FINISHED:
            report.skipped.append(run.name)
        else:
            todo.append(run)
    if not todo:
        stream.write(f"grid: every run in {out} is finished ({count(len(runs), 'run')})\n")
        return report
    with ray_cluster(opts.ray) as cluster:
        _Driver(cluster, opts, out, report, stream).run(todo)
    report.seconds = time.time() - t_start
    stream.write(f"grid: {len(report.finished)} finished, {len(report.skipped)} finished before, "
                 f"{len(report.failed)} failed, {len(report.interrupted) + len(report.not_started)} not finished, "
                 f"in {clock(report.seconds)}\n")
    for failed in report.failed:
        stream.write(f"grid: FAILED {failed['name']}: {failed['error']} (log: {out / failed['name'] / RUN_LOG})\n")
    if report.interrupted or report.not_started:
        stream.write("grid: run the same command again to continue\n")
    return report



class _Driver:
    """Keeps as many runs in flight as fit on the cluster, collects what they send back, and draws
    the progress line; Ctrl-C (or SIGTERM) stops the runs in flight."""

    def __init__(self, cluster: Cluster, opts: GridOptions, out: Path, report: GridReport, stream: TextIO) -> None:
        import ray

        self.ray, self.opts, self.out, self.report, self.stream = ray, opts, out, report, stream
        self.t_start = time.time()
        self.slots = cluster.slots(opts.ray)
        self.threads = torch_threads_for(opts.ray.cpus_per_run)
        # An embedded Ray's workers all see --out: never pack a folder for them.
        self.transfer = "shared" if cluster.embedded and opts.transfer == "auto" else opts.transfer
        self.token = uuid.uuid4().hex
        out.mkdir(parents=True, exist_ok=True)  # only once Ray has taken the options
        (out / TOKEN_FILE).write_text(self.token)
        self.task = ray.remote(run_task)
        self.inflight: dict[Any, tuple[PlannedRun, float]] = {}
        self.queued: list[PlannedRun] = []
        self.durations: list[float] = []
        self.epochs_at_start: dict[str, int] = {}
        self.line = ProgressLine(stream, report.total, len(report.skipped), self.slots)
        stream.write(f"grid: {count(report.total - len(report.skipped), 'run')} to go on "
                     f"{'a local Ray' if cluster.embedded else cluster.address} "
                     f"({cluster.resources.get('CPU', 0):g} CPUs, {cluster.resources.get('GPU', 0):g} GPUs): "
                     f"{self.slots} at a time, {opts.ray.cpus_per_run:g} CPU + {opts.ray.gpus_per_run:g} GPU each\n")

    def run(self, todo: list[PlannedRun]) -> None:
        self.queued = list(todo)
        on_term = _interrupt_on_sigterm()
        try:
            while self.queued or self.inflight:
                deadline = self.opts.deadline
                if self.queued and deadline is not None and time.time() - self.t_start > deadline:
                    self.line.message(f"grid: deadline of {deadline:g}s passed, {len(self.queued)} run(s) not started")
                    self.report.not_started, self.queued = [r.name for r in self.queued], []
                while self.queued and len(self.inflight) < self.slots:
                    self.submit(self.queued.pop(0))
                self.draw()
                ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=1.0)
                for ref in ready:
                    self.receive(ref, lost="failed")
            self.draw()
        except KeyboardInterrupt:
            self.line.message(f"grid: stopping {len(self.inflight)} running run(s); their last finished epoch is kept")
            self.stop()
        finally:
            if on_term is not None:
                signal.signal(signal.SIGTERM, on_term)
        self.stream.write("\n" if self.line.tty else "")

    def submit(self, run: PlannedRun) -> None:
        dest = self.out / run.name
        partial = pack_folder(dest) if self.transfer != "shared" and dest.is_dir() else None
        ref = self.task.options(name=f"cmcs-{run.name}", num_cpus=self.opts.ray.cpus_per_run,
                                num_gpus=self.opts.ray.gpus_per_run, max_retries=1).remote(
            run.cfg.to_dict(), run.name, str(self.out), self.token, self.transfer, partial, self.threads,
            self.opts.stress, self.opts.log_tail)
        self.epochs_at_start[run.name] = epochs_done(dest)  # a resumed run: only its new epochs time it
        self.inflight[ref] = (run, time.time())

    def receive(self, ref, lost: str) -> None:
        """A finished task's result; `lost` is the status of a task that returned none (its worker
        died, or it was cancelled before it started)."""
        run, _t = self.inflight.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayError as err:
            result = {"name": run.name, "status": lost, "error": f"worker lost: {err}", "node": "?",
                      "log_tail": _tail(self.out / run.name / RUN_LOG, self.opts.log_tail)}
        if "folder" in result:
            place_folder(result["folder"], self.out / run.name)
        status = result["status"]
        if status == "finished":
            self.report.finished.append(run.name)
            self.report.run_seconds[run.name] = result["seconds"]
            self.durations.append(result["seconds"])
        elif status == "interrupted":
            self.report.interrupted.append(run.name)
        else:
            self.report.failed.append({k: v for k, v in result.items() if k != "folder"})
            self.line.message(f"FAILED {run.name} on {result['node']}: {result['error']}\n"
                              f"  last lines of {self.out / run.name / RUN_LOG}:\n"
                              + "\n".join("    " + s for s in result["log_tail"].splitlines()))

    def draw(self) -> None:
        running = {r.name: t for r, t in self.inflight.values()}
        epochs = None
        if self.transfer == "shared":  # the runs write into --out: their epochs can be read as they go
            epochs = {r.name: (epochs_done(self.out / r.name), self.epochs_at_start.get(r.name, 0), r.cfg.train.epochs)
                      for r, _t in self.inflight.values()}
        self.line.show(self.line.text(len(self.report.finished), running, len(self.report.failed),
                                      len(self.queued), self.durations, epochs=epochs))

    def stop(self, grace: float = 20.0) -> None:
        """Interrupt the running tasks (they keep their last epoch's state), wait for them a little,
        then end those that did not stop; queued runs are not started."""
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None  # a second Ctrl-C waits too
        try:
            for ref in self.inflight:
                self.ray.cancel(ref, force=False)
            deadline = time.time() + grace
            while self.inflight and time.time() < deadline:
                ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=1.0)
                for ref in ready:
                    self.receive(ref, lost="interrupted")
            for ref, (run, _t) in list(self.inflight.items()):
                self.ray.cancel(ref, force=True)
                self.inflight.pop(ref)
                self.report.interrupted.append(run.name)
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        self.report.interrupted += [r.name for r in self.queued]
        self.queued = []


def _interrupt_on_sigterm():
    """A grid told to end (SIGTERM, e.g. by a job scheduler) stops its runs as Ctrl-C does; returns
    the handler to put back (None off the main thread, where signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
