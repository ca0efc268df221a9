"""Text → reward inputs: SAE features and the pooled residual stream of each response, with the
suppressed concepts' directions projected out of the residual stream first.

The residual stream is read at the audit's layer with the audit's model (the same hook as the
audit); each response token is projected, P = I − U·Uᵀ with U an orthonormal basis of the
suppressed concepts' SAE decoder directions, then encoded by the audit's token SAE and max-pooled
per response. The mean of the projected residual over the response is the second block of inputs.
Projecting before encoding means a correlated feature cannot carry a suppressed direction back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ..audit.extract.activations import ActivationConfig, residuals, tokenize_responses
from ..models import LoadedModel


def orthonormal_basis(directions: list[torch.Tensor]) -> torch.Tensor | None:
    """(d_model, r) orthonormal columns spanning the directions (None for none)."""
    if not directions:
        return None
    matrix = torch.stack([d.float() for d in directions], dim=1)
    q, r = torch.linalg.qr(matrix)
    keep = r.diagonal().abs() > 1e-6 * r.diagonal().abs().max()
    return q[:, keep]


def project_out(x: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    if basis is None:
        return x
    basis = basis.to(x.device, x.dtype)
    return x - (x @ basis) @ basis.T


@dataclass
class EncodedResponses:
    features: sp.csr_matrix  # (n, d_sae) max-pooled SAE activations
    pooled: np.ndarray  # (n, d_model) mean residual over the response tokens
    lengths: np.ndarray  # response tokens


class ResponseEncoder:
    def __init__(
        self,
        loaded: LoadedModel,
        sae,
        layer: int,
        basis: torch.Tensor | None = None,
        config: ActivationConfig | None = None,
    ):
        self.loaded, self.sae, self.layer, self.basis = loaded, sae, layer, basis
        self.config = config or ActivationConfig(layer=layer)

    @torch.no_grad()
    def encode(self, prompts: list, responses: list[str], progress=None) -> EncodedResponses:
        return self.encode_with(prompts, responses, [self.basis], progress)[0]

    @torch.no_grad()
    def encode_with(
        self, prompts: list, responses: list[str], bases: list[torch.Tensor | None], progress=None
    ) -> list[EncodedResponses]:
        """One forward pass, encoded once per projection basis (e.g. without and with shaping)."""
        records = tokenize_responses(self.loaded.tokenizer, prompts, responses, self.config)
        order = sorted(range(len(records)), key=lambda i: (len(records[i]["ids"]), i))
        total = sum(len(r["ids"]) for r in records)
        done = 0

        def on_batch(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress("reward features", done, total, unit="tokens")

        captured = residuals(self.loaded, records, order, self.layer, self.config, on_batch)
        acts, offsets, owner = captured["acts"], captured["offsets"], captured["responses"]
        device = next(self.sae.parameters()).device
        n, d_sae = len(records), self.sae.cfg.d_sae
        lengths = torch.zeros(n, dtype=torch.long)
        lengths[owner] = offsets[1:] - offsets[:-1]
        results = []
        for basis in bases:
            pooled_features = torch.zeros(n, d_sae)
            pooled_resid = torch.zeros(n, acts.shape[1])
            for row in range(len(owner)):
                x = project_out(acts[offsets[row] : offsets[row + 1]].float(), basis)
                z = self.sae.encode(x.to(device)).float().cpu()
                pooled_features[owner[row]] = z.max(dim=0).values.clamp(min=0)
                pooled_resid[owner[row]] = x.mean(dim=0)
            results.append(
                EncodedResponses(
                    features=sp.csr_matrix(pooled_features.numpy()),
                    pooled=pooled_resid.numpy(),
                    lengths=lengths.numpy(),
                )
            )
        return results
