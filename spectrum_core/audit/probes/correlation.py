"""How SAE features relate to the probes: Pearson r of every feature's Δ with every probe's Δ
across pairs, without densifying a sparse Δ, and each feature's nearest probe."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp


def _dense_1d(values: Any) -> np.ndarray:
    """A per-column reduction of a sparse matrix (ndarray, np.matrix or 1-D sparse), flat."""
    if sp.issparse(values):
        values = values.toarray()
    return np.asarray(values, dtype=np.float64).ravel()


def probe_correlations(
    feature_deltas: np.ndarray | sp.spmatrix | sp.sparray, probe_delta: pd.DataFrame
) -> pd.DataFrame:
    """Pearson correlation of every feature's delta with every probe's delta, across pairs.

    `feature_deltas` is (n_pairs, n_features), dense or scipy.sparse; rows align with the rows of
    `probe_delta` (n_pairs, n_probes). Returns (n_features, n_probes), NaN where either column is
    constant. A sparse input is never densified: with centred probe columns P', the covariance
    numerator is X^T P' (sparse times dense) and a feature's sum of squares is sum(x^2) - n*mean^2.
    """
    probes = probe_delta.to_numpy(dtype=np.float64)
    if probes.ndim != 2:
        raise ValueError("probe_delta must be a 2-D table (pairs x probes)")
    n = probes.shape[0]
    sparse = sp.issparse(feature_deltas)
    if sparse:
        x = sp.csc_array(feature_deltas, dtype=np.float64)
    else:
        x = np.asarray(feature_deltas, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"feature_deltas has shape {x.shape}, expected ({n}, n_features)")
    n_features = x.shape[1]
    out = np.full((n_features, probes.shape[1]), np.nan)
    if n < 2 or n_features == 0 or probes.shape[1] == 0:
        return pd.DataFrame(out, columns=probe_delta.columns)

    p_centred = probes - probes.mean(axis=0)
    p_ss = np.einsum("ij,ij->j", p_centred, p_centred)
    p_constant = np.ptp(probes, axis=0) == 0

    if sparse:
        # max == min (implicit zeros included) is an exact constancy test without densifying.
        x_constant = _dense_1d(x.max(axis=0)) == _dense_1d(x.min(axis=0))
        x_mean = _dense_1d(x.sum(axis=0)) / n
        x_ss = _dense_1d(x.multiply(x).sum(axis=0)) - n * x_mean**2
        cross = np.asarray(x.T @ p_centred)
    else:
        x_constant = np.ptp(x, axis=0) == 0
        x_centred = x - x.mean(axis=0)
        x_ss = np.einsum("ij,ij->j", x_centred, x_centred)
        cross = x_centred.T @ p_centred

    x_ss = np.maximum(x_ss, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cross / np.sqrt(np.outer(x_ss, p_ss))
    corr = np.clip(corr, -1.0, 1.0)
    corr[x_constant, :] = np.nan
    corr[:, p_constant] = np.nan
    return pd.DataFrame(corr, columns=probe_delta.columns)


def nearest_probes(
    feature_deltas: np.ndarray | sp.spmatrix | sp.sparray, probe_delta: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """For each feature, the probe whose delta moves most with its delta: (names, signed Pearson r).

    Chosen by the largest |r|; constant columns are skipped. A feature with no qualifying probe
    (or a constant delta) gets ("", nan).
    """
    corr = probe_correlations(feature_deltas, probe_delta)
    values = corr.to_numpy()
    if not len(values):
        return np.zeros(0, dtype=object), np.zeros(0)
    best = np.argmax(np.where(np.isnan(values), -1, np.abs(values)), axis=1)
    r = values[np.arange(len(values)), best]
    return np.where(np.isnan(r), "", np.array(corr.columns, dtype=object)[best]), r
