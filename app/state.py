"""App state: the runs folder, the selected runs, the URL that names them, the hand-off to the
Inspector, the demo mode, and every session-state key the pages share. Drawn once per rerun by
app/main.py before the page runs, so a selection survives page switches and reloads.
"""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from app import data
from cmcs_core.runs.reader import Run, default_runs_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the app never downloads weights
os.environ.setdefault("TQDM_DISABLE", "1")
if Path("/usr/bin/chromium").is_file():
    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")  # kaleido's PNG export


ROOT = Path(__file__).resolve().parents[1]


PAGES_DIR = ROOT / "pages"


NONE = "(none)"


SELECTION = "_selection"  # session-state key: what the entry's sidebar chose on this rerun


def setup() -> None:
    st.set_page_config(page_title="CMCS lab", page_icon=":material/science:", layout="wide")


def runs_root() -> Path:
    """Sidebar setting, defaulting to $CMCS_RUNS_DIR or runs/."""
    st.session_state.setdefault("runs_dir", str(default_runs_dir()))
    st.sidebar.text_input("Runs folder", key="runs_dir", help="env CMCS_RUNS_DIR sets the default")
    return Path(st.session_state.runs_dir).expanduser()


def run_label(run: Run) -> str:
    """Menu label: the run's name (its folder under the runs folder), method and visual source."""
    return f"{run.name} · {run.method_title} · visual: {run.visual_source}"


def seed_matched(run: Run, runs: list[Run]) -> list[Run]:
    """The finished runs of the selected run's grid cell that differ only in method: same folder,
    dataset, seed, text encoder and tuning — CMCS beside its baseline and ablations (Fig. 6)."""
    def cell(r: Run) -> tuple:
        c = r.cfg
        return (r.path.parent, r.dataset, c.train.seed, c.encoder.text_model, c.encoder.finetune_layers,
                c.train.lr, c.train.head_lr)

    return [r for r in runs if r.finished and cell(r) == cell(run)]


def _pick(label: str, key: str, options: list[str], names: dict[str, str]) -> str:
    """A sidebar selectbox whose state is its key; an invalid or missing value falls back to the first."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    return st.sidebar.selectbox(label, options, key=key, format_func=lambda p: names.get(p, p))


def sidebar() -> tuple[list[Run], Run | None, Run | None]:
    """Runs folder, the chosen run and an optional second run to compare (all pages share them).

    `?run=<folder relative to the runs folder>` selects a run (a bare folder name works when it is
    unique), so a page can be linked directly; the URL then follows the selection.
    """
    root = runs_root()
    runs, errors = data.scan(str(root))
    for err in errors:
        st.sidebar.error(f"Skipped an unreadable run folder: {err}")
    if not runs:
        return [], None, None
    ids = {str(r.path): r.name for r in runs}
    names = {str(r.path): run_label(r) for r in runs}
    paths = list(ids)
    wanted = st.query_params.get("run")
    if wanted and st.session_state.get("_applied_query") != wanted:
        match = [p for p in paths if ids[p] == wanted] or [p for p in paths if Path(p).name == wanted]
        if len(match) == 1:
            st.session_state.run_path = match[0]
        elif match:
            st.sidebar.warning(f"`?run={wanted}` names {len(match)} runs; give its path relative to the runs folder.")
        else:
            st.sidebar.warning(f"`?run={wanted}`: no such run under {root}.")
    run_path = _pick("Run", "run_path", paths, names)
    other = _pick("Compare with", "compare_path", [NONE] + [p for p in paths if p != run_path], names)
    st.query_params["run"] = st.session_state._applied_query = ids[run_path]
    by_path = {str(r.path): r for r in runs}
    return runs, by_path[run_path], by_path.get(other)


def remember_selection(selection: tuple[list[Run], Run | None, Run | None]) -> None:
    st.session_state[SELECTION] = selection


def selection() -> tuple[list[Run], Run | None, Run | None]:
    """What the entry's sidebar chose on this rerun (pages run only through app/main.py)."""
    if SELECTION not in st.session_state:
        st.error("Open the app through its entry: `streamlit run app/main.py`.")
        st.stop()
    return st.session_state[SELECTION]
