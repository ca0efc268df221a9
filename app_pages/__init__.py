"""Streamlit pages. A thin face on spectrum_core: no analysis happens here."""
