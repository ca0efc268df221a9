"""Spectrum: audit preference data before post-training. Run with `make app` or `spectrum app`."""

import streamlit as st

st.set_page_config(page_title="Spectrum", page_icon="🌈", layout="wide")

# Sections follow the pipeline: data → audit and review → interventions → training runs → results.
navigation = st.navigation({
    "Data": [st.Page("pages/dataset.py", title="Dataset", icon=":material/dataset:", default=True)],
    "Audit": [st.Page("pages/audit.py", title="Audit", icon=":material/biotech:"),
              st.Page("pages/concepts.py", title="Concepts", icon=":material/lightbulb:"),
              st.Page("pages/interventions.py", title="Interventions", icon=":material/tune:")],
    "Train": [st.Page("pages/tuning.py", title="Tuning", icon=":material/model_training:")],
    "Evaluate": [st.Page("pages/results.py", title="Results", icon=":material/insights:")],
})
navigation.run()
