"""Interpretable probes: named text properties of a response (``text_probes``), tested like SAE
features, and how SAE features relate to them (``correlation``)."""

from .correlation import nearest_probes, probe_correlations
from .text_probes import PROBES, Probe, compute_probes, probe_deltas

__all__ = ["PROBES", "Probe", "compute_probes", "nearest_probes", "probe_correlations", "probe_deltas"]
