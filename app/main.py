"""CMCS lab: the Streamlit entry. `streamlit run app/main.py` (or `make app`).

The pages live in the top-level `pages/`; this entry lists them with `st.navigation` and draws
the sidebar (runs folder, run, run to compare) once per rerun, before the page runs. Widgets
drawn here exist on every page, so the selection cannot be lost on a page switch.
"""
from __future__ import annotations

import importlib
import threading

import streamlit as st

from app import data, glossary, state, timing

PAGES = [  # file in pages/, title, icon (Material Symbols ship with Streamlit), url path
    ("0_Home.py", "Home", ":material/home:", "home"),
    ("1_Tour.py", "Tour", ":material/school:", "Tour"),
    ("2_Training_dynamics.py", "Training dynamics", ":material/monitoring:", "Training_dynamics"),
    ("3_Feature_space.py", "Feature space", ":material/scatter_plot:", "Feature_space"),
    ("4_Masks.py", "Masks", ":material/filter_alt:", "Masks"),
    ("5_Case_studies.py", "Case studies", ":material/view_column:", "Case_studies"),
    ("6_Inspector.py", "Inspector", ":material/biotech:", "Inspector"),
    ("7_Compare.py", "Compare", ":material/table_chart:", "Compare"),
    ("8_Robustness.py", "Robustness", ":material/shield:", "Robustness"),
    ("9_Glossary.py", "Glossary", ":material/menu_book:", glossary.PAGE),  # the pages link to its entries
]



@st.cache_resource(show_spinner=False)
def warm_model_imports() -> threading.Thread:
    """Import torch and the model code in the background once per server: most of the Inspector's
    cold start is these imports, and a user usually reads Home or another page first."""
    def warm() -> None:
        importlib.import_module("cmcs_core.inference")
        data.freeze_heap()

    thread = threading.Thread(target=warm, daemon=True)
    thread.start()
    return thread


state.setup()
warm_model_imports()
page = st.navigation([
    st.Page(state.PAGES_DIR / file, title=title, icon=icon, url_path=url, default=(url == "home"))
    for file, title, icon, url in PAGES
])
with timing.script_run(page.title):  # $CMCS_TIMING_LOG: the server's own time per run (bench/bench_class.py)
    state.remember_selection(state.sidebar())
    page.run()
