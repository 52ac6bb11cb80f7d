"""CMCS lab: the Streamlit entry. `streamlit run app/main.py` (or `make app`).

The pages live in the top-level `pages/`; this entry lists them with `st.navigation` and draws
the sidebar (runs folder, run, run to compare) once per rerun, before the page runs. Widgets
drawn here exist on every page, so the selection cannot be lost on a page switch.
"""
from __future__ import annotations

import streamlit as st

from app import common

PAGES = [  # file in pages/, title, icon, url path
    ("0_Home.py", "Home", "🏠", "home"),
    ("1_Training_dynamics.py", "Training dynamics", "📈", "Training_dynamics"),
    ("2_Feature_space.py", "Feature space", "🗺️", "Feature_space"),
    ("3_Masks.py", "Masks", "🎭", "Masks"),
    ("4_Case_studies.py", "Case studies", "🔎", "Case_studies"),
    ("5_Inspector.py", "Inspector", "🧪", "Inspector"),
    ("6_Compare.py", "Compare", "⚖️", "Compare"),
    ("7_Robustness.py", "Robustness", "🛡️", "Robustness"),
]

common.setup()
page = st.navigation([
    st.Page(common.PAGES_DIR / file, title=title, icon=icon, url_path=url, default=(url == "home"))
    for file, title, icon, url in PAGES
])
common.remember_selection(common.sidebar())
page.run()
