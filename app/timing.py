"""Server-side timing of every script run, for the class load benchmark (bench/bench_class.py): with
$CMCS_TIMING_LOG naming a file, one JSON line per run — the page, what the run did (`open`: the first run of
a page in a session; `prediction`: the Inspector on a new input; `rerun`: anything else), and the wall and CPU
seconds of the thread that ran the script (torch runs the app's predictions on that thread). Measured on
the server, so the clients' own CPU use cannot distort it. Without the variable nothing is measured or written.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import streamlit as st

TIMING_ENV = "CMCS_TIMING_LOG"
_PAGE, _KIND = "_timing_page", "_timing_run"  # session-state keys: the last page run, this run's line


@st.cache_resource(show_spinner=False)
def _lock() -> threading.Lock:
    return threading.Lock()  # one writer at a time: sessions run their scripts on threads of one process


def mark(kind: str) -> None:
    """Name what this script run does (the Inspector marks a run on a new input as a `prediction`)."""
    run = st.session_state.get(_KIND)
    if run is not None:
        run["kind"] = kind


@contextlib.contextmanager
def script_run(page: str):
    """Time the enclosed script run of `page` and append its line to $CMCS_TIMING_LOG (if set)."""
    path = os.environ.get(TIMING_ENV)
    if not path:
        yield
        return
    # Everything the line needs is taken now: once a page calls st.stop(), Streamlit calls raise again.
    run = {"page": page, "kind": "open" if st.session_state.get(_PAGE) != page else "rerun"}
    st.session_state[_PAGE], st.session_state[_KIND] = page, run
    lock, wall, cpu = _lock(), time.perf_counter(), time.thread_time()
    try:
        yield
    finally:  # st.stop() and st.switch_page() end a run with an exception: still one line
        run.update(wall_s=round(time.perf_counter() - wall, 4), cpu_s=round(time.thread_time() - cpu, 4),
                   at=round(time.time(), 3))
        with lock, open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(run) + "\n")
