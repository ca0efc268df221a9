"""Spectrum: audit preference data before post-training. Run with `make app` or `spectrum app`."""

import streamlit as st

st.set_page_config(page_title="Spectrum", page_icon="🌈", layout="wide")

# Pages arrive section by section as the pipeline grows: audit and concept review next, then
# tuning and results. Only working pages are listed.
navigation = st.navigation({
    "Data": [st.Page("pages/dataset.py", title="Dataset", icon="📂", default=True)],
})
navigation.run()
