"""Spectrum: audit preference data with a language model and a sparse autoencoder."""

__version__ = "0.1.0"
