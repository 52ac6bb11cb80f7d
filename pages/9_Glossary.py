"""Glossary: the lab's words in plain language (app/glossary.py), each with an anchor the other pages
link to, and every stress edit under its plain name with its code name."""
from __future__ import annotations

import streamlit as st

from app import glossary

st.title("Glossary")
st.markdown("The words the pages use, in plain language. The stress tests' edits come last, each under the name the "
            "charts give it and with the code name the files and the command line use.")
for anchor, (term, text) in glossary.TERMS.items():
    st.subheader(term, anchor=anchor)
    st.markdown(text)
st.header("The stress tests' edits", anchor="edits")
for anchor, (term, text) in glossary.edit_entries().items():
    st.subheader(term, anchor=anchor)
    st.markdown(text)
