"""How much response length the pooled SAE features carry, max pooling against mean pooling.

Max pooling takes each latent's largest activation over a response's tokens, so a longer response
has more chances to fire high on any latent: every pooled feature leans towards length. Mean
pooling divides by the token count. This reads a finished audit (its stored activations and token
SAE), encodes every response once, and reports, for each pooling, over the latents active in at
least 1% of responses: the median |r| between a latent's pooled value and the response's length in
tokens, the share with |r| ≥ 0.3, and the same for the per-pair Δ against the length difference
(what the statistics see).

    .venv/bin/python bench/pooling_length.py --workspace /tmp/hhws [--audit AUDIT_FOLDER]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

MIN_ACTIVE = 0.01  # latents active in fewer responses than this share are too sparse to correlate
ALIKE_R = 0.3  # the audit's family threshold: a latent at least this correlated "moves with length"


def column_r(matrix: sp.spmatrix, target: np.ndarray) -> np.ndarray:
    """Pearson r of every column of ``matrix`` with ``target``."""
    from spectrum_core.audit.families import cross_correlation

    return cross_correlation(sp.csc_matrix(matrix), target[:, None]).ravel()


def length_correlation(chosen: sp.csr_matrix, rejected: sp.csr_matrix, lengths: np.ndarray) -> dict[str, float]:
    responses = sp.vstack([chosen, rejected]).tocsc()
    both = np.concatenate([lengths[0::2], lengths[1::2]])
    active = np.diff(responses.indptr) >= MIN_ACTIVE * responses.shape[0]
    r_response = np.abs(column_r(responses[:, active], both))
    r_delta = np.abs(column_r((chosen - rejected).tocsc()[:, active], lengths[0::2] - lengths[1::2]))
    return {
        "latents": int(active.sum()),
        "median_abs_r_response": float(np.median(r_response)),
        "share_r_at_least_0.3_response": float(np.mean(r_response >= ALIKE_R)),
        "median_abs_r_delta": float(np.median(r_delta)),
        "share_r_at_least_0.3_delta": float(np.mean(r_delta >= ALIKE_R)),
    }


def main(argv: list[str] | None = None) -> int:
    from spectrum_core.audit.extract.activations import ActivationStore
    from spectrum_core.audit.extract.features import encode_responses
    from spectrum_core.audit.sae import load_pretrained_sae

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--audit", type=Path, help="an audit folder (default: the workspace's newest)")
    args = parser.parse_args(argv)
    artifacts = args.workspace / "artifacts"
    audit = args.audit or max(artifacts.glob("audit-*"), key=lambda p: p.stat().st_mtime)
    activations = max(artifacts.glob("activations-*"), key=lambda p: p.stat().st_mtime)
    store = ActivationStore(activations)
    report = json.loads((audit / "report.json").read_text())
    sae = load_pretrained_sae(
        str(audit / "sae"), d_model=store.manifest["d_model"], hook=report["hook_name"], device="cpu"
    )
    features = encode_responses(store, sae, poolings=("max", "mean"))
    lengths = features.response_tokens.astype(float)
    out = {pooling: length_correlation(*features.pooled(pooling), lengths) for pooling in ("max", "mean")}
    print(json.dumps({"audit": str(audit), **out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
