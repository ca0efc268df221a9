"""Tuning runs: weighted DPO, ReSet, Spectrum Tuning, IA2 priming, concept ablation."""
