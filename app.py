"""Spectrum: audit preference data before post-training. Run with `make app` or `spectrum app`."""

import streamlit as st

st.set_page_config(page_title="Spectrum", page_icon="🌈", layout="wide")

# Sections follow the pipeline: data, audit, then (as they are built) concept review and
# interventions, tuning, and results. Only working pages are listed.
navigation = st.navigation({
    "Data": [st.Page("pages/dataset.py", title="Dataset", icon="📂", default=True)],
    "Audit": [st.Page("pages/audit.py", title="Audit", icon="🔬"),
              st.Page("pages/concepts.py", title="Concepts", icon="🧭")],
})
navigation.run()
