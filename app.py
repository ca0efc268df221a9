"""Spectrum: audit preference data before post-training. Run with `make app` or `spectrum app`."""

import streamlit as st

from app_pages.frame import login_gate

st.set_page_config(page_title="Spectrum", page_icon="🌈", layout="wide")
# A shared server shows its login and nothing else, not even the list of pages, until the user has
# logged in (every page's frame asks again, so a page run on its own is gated too).
login_gate()

# Sections follow the pipeline: data → audit and review → interventions → training runs → results.
# The pages live in app_pages/, not pages/: Streamlit serves a pages/ folder as legacy
# auto-discovered pages, and a first request for /concepts (a reload, a shared link) then ran the
# page without this frame and listed every file of the folder as a page.
navigation = st.navigation(
    {
        "Data": [st.Page("app_pages/dataset.py", title="Dataset", icon=":material/dataset:", default=True)],
        "Audit": [
            st.Page("app_pages/audit.py", title="Audit", icon=":material/biotech:"),
            st.Page("app_pages/concepts.py", title="Concepts", icon=":material/lightbulb:"),
            st.Page("app_pages/interventions.py", title="Interventions", icon=":material/tune:"),
        ],
        "Train": [st.Page("app_pages/tuning.py", title="Tuning", icon=":material/model_training:")],
        "Evaluate": [st.Page("app_pages/results.py", title="Results", icon=":material/insights:")],
    }
)
navigation.run()
