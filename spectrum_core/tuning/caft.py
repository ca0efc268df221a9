"""Concept ablation during training (CAFT): the suppressed concepts' SAE decoder directions (for a
family, every member's) are projected out of the residual stream at the SAE's layer in every
forward pass while training, so the gradient cannot use them; the saved adapter runs without the
hook."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ..audit.activations import decoder_layers
from ..reward.encoder import orthonormal_basis, project_out
from ..reward.shaped import load_audit_saes, parts_directions


def suppressed_basis(plan, audit_folder) -> torch.Tensor | None:
    saes = load_audit_saes(audit_folder)
    directions = [d for choice in plan.suppressed for d in parts_directions(choice.parts(), saes)]
    return orthonormal_basis(directions)


@contextmanager
def concept_ablation(model, layer: int, basis: torch.Tensor | None):
    """While inside, block ``layer``'s output has no component along ``basis``."""
    if basis is None:
        yield
        return

    def hook(module, args, output):
        if isinstance(output, tuple):
            return (project_out(output[0], basis),) + tuple(output[1:])
        return project_out(output, basis)

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
