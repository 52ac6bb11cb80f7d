"""Training a preset's runs from a page (the Tour's target-aware comparison), outside the demo mode: the
library trains them (cmcs_core.playground_command.make_playground, what `cmcs playground --preset` runs) in a
thread of the server, one job per runs folder, so a page switch does not stop it and every visitor of that
folder sees its progress.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from app import data
from cmcs_core.playground_command import make_playground, preset_arguments
from cmcs_core.playground.story import preset_data_dir


@dataclass
class Job:
    """One training job's progress, written by its thread and read by the pages."""

    preset: str
    done: int = 0
    total: int = 0
    what: str = "starting"
    error: str | None = None
    finished: bool = False
    started: float = field(default_factory=time.time)

    def update(self, done: int, total: int, what: str) -> None:
        self.done, self.total, self.what = done, total, what

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


@st.cache_resource(show_spinner=False)
def _jobs() -> tuple[dict[str, Job], threading.Lock]:
    """The server's jobs by runs folder (one server, one table)."""
    return {}, threading.Lock()


def job_for(runs_dir: str | Path) -> Job | None:
    return _jobs()[0].get(str(Path(runs_dir).resolve()))


def _train(job: Job, runs_dir: Path) -> None:
    try:
        make_playground(preset_arguments(job.preset, runs_dir, preset_data_dir(runs_dir, job.preset)), job.update)
    except Exception as err:  # shown on the page; the server keeps going  # noqa: BLE001
        job.error = f"{type(err).__name__}: {err}"
    finally:
        job.finished = True


def start(runs_dir: str | Path, preset: str) -> Job:
    """Start training a preset's runs into runs_dir, unless a job for that folder is already running."""
    jobs, lock = _jobs()
    key = str(Path(runs_dir).resolve())
    with lock:
        running = jobs.get(key)
        if running is not None and not running.finished:
            return running
        job = jobs[key] = Job(preset)
    threading.Thread(target=_train, args=(job, Path(runs_dir)), daemon=True, name=f"train {preset}").start()
    return job


@st.fragment(run_every=2)
def show_progress(runs_dir: str) -> None:
    """The job's bar, redrawn every 2 s; when it ends the whole page runs again and shows the new runs."""
    job = job_for(runs_dir)
    if job is None:
        return
    minutes, seconds = divmod(int(time.time() - job.started), 60)
    st.progress(job.fraction, text=f"Training the {job.preset} runs: step {job.done} of {job.total or '…'} · "
                                   f"{job.what} · {minutes} min {seconds:02d} s")
    if job.finished:
        data.forget_runs()
        st.rerun(scope="app")
