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
INSPECTOR = PAGES_DIR / "6_Inspector.py"  # the hand-off's destination


NONE = "(none)"


SELECTION = "_selection"  # session-state key: what the entry's sidebar chose on this rerun


def setup() -> None:
    st.set_page_config(page_title="CMCS lab", page_icon=":material/science:", layout="wide")


# -- session-state keys the pages share ------------------------------------------------------------
# The canonical values live in plain keys; the sidebar's widgets have their own keys and are re-seeded
# from these on every run, so a page switch, an st.stop() or a reload never loses a selection.
RUNS_DIR, RUN, COMPARE = "runs_dir", "run_path", "compare_path"
KEPT = "_kept"  # widget values kept across runs in which the widget is not drawn (keep())
HANDOFF = "ins_from"  # the Inspector's banner: where its inputs came from
DEMO_ENV = "CMCS_DEMO"


def demo_mode() -> bool:
    """Read-only demo for a class (`make app HOST=0.0.0.0` sets CMCS_DEMO=1): the runs folder is fixed,
    no path can be typed, and `?run=`/`?runs=` only name runs under it."""
    return os.environ.get(DEMO_ENV, "") == "1"


def keep(key: str, default: object) -> None:
    """Put back a widget's last value when Streamlit dropped it (it drops the state of a widget that a run
    did not draw: an error above it stopped the page); call before drawing the widget, with
    on_change=remember(key)."""
    kept = st.session_state.setdefault(KEPT, {})
    value = st.session_state[key] if key in st.session_state else kept.get(key, default)
    # Written back even when present: a widget the browser unmounted (the page stopped above it) comes back
    # showing its default unless the server pushes its value, and the next rerun would send that default.
    st.session_state[key] = kept[key] = value


def remember(key: str):
    """on_change callback of a keep()-ed widget."""
    return lambda: st.session_state.setdefault(KEPT, {}).__setitem__(key, st.session_state[key])


def _from_url(name: str) -> str | None:
    value = st.query_params.get(name)
    return value if value else None


def runs_root() -> Path:
    """The runs folder: the URL's `?runs=`, else the sidebar setting, else $CMCS_RUNS_DIR or runs/.
    In demo mode it is fixed, and a `?runs=` naming another folder is refused without reading it."""
    fixed = default_runs_dir()
    if demo_mode():
        wanted = _from_url("runs")
        if wanted and Path(wanted).expanduser().resolve() != fixed.resolve():
            st.sidebar.warning("Demo mode: the runs folder is fixed; the link's `runs=` was ignored.")
        st.session_state[RUNS_DIR] = str(fixed)
        st.sidebar.caption(f"Runs folder: `{fixed}` (fixed in demo mode)")
        return fixed
    wanted = _from_url("runs")
    if wanted and st.session_state.get("_applied_runs") != wanted:
        st.session_state[RUNS_DIR] = st.session_state._applied_runs = wanted
    st.session_state.setdefault(RUNS_DIR, str(fixed))
    st.session_state["w_runs_dir"] = st.session_state[RUNS_DIR]

    def typed() -> None:
        st.session_state[RUNS_DIR] = st.session_state["w_runs_dir"]

    st.sidebar.text_input("Runs folder", key="w_runs_dir", on_change=typed,
                          help="env CMCS_RUNS_DIR sets the default; the URL carries it (`?runs=`)")
    return Path(st.session_state[RUNS_DIR]).expanduser()


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
    """A sidebar selectbox over run paths whose canonical value is st.session_state[key]; an invalid or
    missing value falls back to the first option."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    widget = f"w_{key}"
    st.session_state[widget] = st.session_state[key]

    def picked() -> None:
        st.session_state[key] = st.session_state[widget]

    return st.sidebar.selectbox(label, options, key=widget, on_change=picked, format_func=lambda p: names.get(p, p))


def _apply_url_run(param: str, key: str, ids: dict[str, str], root: Path) -> None:
    """`?run=`/`?compare=` names a run by its path under the runs folder (a bare folder name when
    unique); only runs found under the folder can match, so a link never reads a folder outside it."""
    wanted = _from_url(param)
    if not wanted or st.session_state.get(f"_applied_{param}") == wanted:
        return
    st.session_state[f"_applied_{param}"] = wanted
    paths = list(ids)
    match = [p for p in paths if ids[p] == wanted] or [p for p in paths if Path(p).name == wanted]
    if len(match) == 1:
        st.session_state[key] = match[0]
    elif match:
        st.sidebar.warning(f"`?{param}={wanted}` names {len(match)} runs; give its path relative to the runs folder.")
    elif param == "run" or wanted != NONE:
        st.sidebar.warning(f"`?{param}={wanted}`: no such run under {root}.")


def sidebar() -> tuple[list[Run], Run | None, Run | None]:
    """Runs folder, the chosen run and an optional second run to compare (all pages share them).

    The URL names all three (`?runs=…&run=…&compare=…`, run names relative to the runs folder), so a
    link opens the same view and a reload keeps it.
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
    _apply_url_run("run", RUN, ids, root)
    _apply_url_run("compare", COMPARE, ids, root)
    run_path = _pick("Run", RUN, paths, names)
    other = _pick("Compare with", COMPARE, [NONE] + [p for p in paths if p != run_path], names)
    url = {"run": ids[run_path]}
    if not demo_mode():
        url["runs"] = str(root)
    if other != NONE:
        url["compare"] = ids[other]
    for param, value in url.items():
        st.query_params[param] = st.session_state[f"_applied_{param}"] = value
    if other == NONE and "compare" in st.query_params:
        del st.query_params["compare"]
    by_path = {str(r.path): r for r in runs}
    return runs, by_path[run_path], by_path.get(other)


EDITED_PICTURE = "(the edited picture)"  # the Inspector's image menu entry for a picture a stress edit drew
PICTURE_FILE = "ins_picture_file"  # its file, under the run folder (set here only, never from a request)


def open_in_inspector(run_path: str, tweet: str, target: str, caption: str | None, image_id: str | None,
                      source: str, picture: str | None = None) -> None:
    """The hand-off to the Inspector (an on_click callback, so it runs before any widget is drawn): select
    the run and fill the Inspector's inputs; the runs folder stays as it is. `picture` is a file a stress
    edit drew (a recoloured cue), shown as the image to read instead of a dataset image."""
    st.session_state[RUN] = run_path
    st.session_state.ins_tweet = tweet
    st.session_state.ins_target = target
    if caption:
        st.session_state.ins_caption = caption
    st.session_state[PICTURE_FILE] = picture
    if picture:
        st.session_state.ins_dataset_image = EDITED_PICTURE
    elif image_id:
        st.session_state.ins_dataset_image = image_id
    for key in ("ins_tweet", "ins_target", "ins_caption", "ins_dataset_image"):  # keep() puts these back
        if key in st.session_state:
            st.session_state.setdefault(KEPT, {})[key] = st.session_state[key]
    st.session_state[HANDOFF] = source


def remember_selection(selection: tuple[list[Run], Run | None, Run | None]) -> None:
    st.session_state[SELECTION] = selection


def selection() -> tuple[list[Run], Run | None, Run | None]:
    """What the entry's sidebar chose on this rerun (pages run only through app/main.py)."""
    if SELECTION not in st.session_state:
        st.error("Open the app through its entry: `streamlit run app/main.py`.")
        st.stop()
    return st.session_state[SELECTION]
