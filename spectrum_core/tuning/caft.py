"""Concept ablation during training (CAFT) and its variants: while training, a hook on the SAE's
layer acts on the suppressed concepts' SAE decoder directions (for a family, every member's) in
every forward pass; the saved adapter runs without the hook. Three modes (``caft_mode``):

- **zero**: project the directions out of the residual stream, so the gradient cannot use them;
- **mean**: set the component along them to its mean on the plan's responses instead of zero.
  Zeroing moves every activation to a point the model rarely visits, which can act as hidden
  steering; the mean keeps the ablated stream where the model usually is;
- **steer**: preventative steering (the persona-vectors recipe): add each suppressed concept's
  direction, oriented the way the data pushes (towards the side the audit found had more of it),
  ``caft_strength`` standard deviations of its component on the plan's responses. With the shift
  already supplied by the hook, the gradient has no reason to learn it into the weights.

Mean and scale come from one forward pass over the chosen and rejected responses of the plan's
first train pairs (``REFERENCE_PAIRS``), read as the audit reads them (mean over response tokens).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch

from ..audit.extract.activations import decoder_layers
from ..reward.encoder import ResponseEncoder, orthonormal_basis, project_out
from ..reward.shaped import TOKEN_SAE, load_audit_saes, parts_directions

# Train pairs whose responses give the mean (mean ablation) and the scale (steering): 32 pairs,
# 64 responses, pin a mean of a few thousand tokens for a few seconds of encoding.
REFERENCE_PAIRS = 32


@dataclass
class TrainingIntervention:
    """What the hook does to a residual vector h: h − B·Bᵀ·h (when ``basis``) + ``offset``."""

    mode: str
    basis: torch.Tensor | None
    offset: torch.Tensor | None = None

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        out = project_out(hidden, self.basis)
        if self.offset is not None:
            out = out + self.offset.to(out.device, out.dtype)
        return out


def suppressed_basis(plan, saes: dict) -> torch.Tensor | None:
    directions = [d for choice in plan.suppressed for d in parts_directions(choice.parts(), saes)]
    return orthonormal_basis(directions)


def _reference_pooled(loaded, saes: dict, layer: int, plan_parquet) -> torch.Tensor:
    """Mean-pooled residuals of the chosen and rejected responses of the first train pairs."""
    frame = pd.read_parquet(plan_parquet)
    frame = frame[frame["split"] == "train"].sort_values("pair_id").head(REFERENCE_PAIRS)
    prompts = [list(p) for p in frame["prompt"]] * 2
    responses = [c[-1]["content"] for c in frame["chosen"]] + [r[-1]["content"] for r in frame["rejected"]]
    encoded = ResponseEncoder(loaded, saes[TOKEN_SAE], layer).encode(prompts, responses)
    return torch.from_numpy(encoded.pooled).float()


def training_intervention(saved, audit_folder, loaded, mode: str, strength: float) -> TrainingIntervention | None:
    """The hook's action for a saved plan's suppressed concepts (None: nothing suppressed has a
    direction, e.g. only probes)."""
    plan = saved.plan
    saes = load_audit_saes(audit_folder)
    if mode == "zero":
        basis = suppressed_basis(plan, saes)
        return None if basis is None else TrainingIntervention(mode, basis)
    pooled = None
    if mode == "mean":
        basis = suppressed_basis(plan, saes)
        if basis is None:
            return None
        pooled = _reference_pooled(loaded, saes, plan.layer, saved.parquet)
        mean = pooled.mean(dim=0)
        return TrainingIntervention(mode, basis, offset=basis @ (basis.T @ mean))
    if mode != "steer":
        raise ValueError(f"unknown CAFT mode {mode!r}; choose zero, mean or steer")
    offset = None
    for choice in plan.suppressed:
        directions = [d / d.norm() for d in parts_directions(choice.parts(), saes) if d.norm() > 0]
        sign = {"chosen": 1.0, "rejected": -1.0}.get(choice.direction, 0.0)
        if not directions or sign == 0:
            continue
        direction = torch.stack(directions).sum(dim=0)
        direction = direction / direction.norm()
        if pooled is None:
            pooled = _reference_pooled(loaded, saes, plan.layer, saved.parquet)
        spread = float((pooled @ direction).std())
        step = sign * strength * spread * direction
        offset = step if offset is None else offset + step
    return None if offset is None else TrainingIntervention(mode, None, offset=offset)


@contextmanager
def concept_ablation(model, layer: int, intervention: TrainingIntervention | None):
    """While inside, block ``layer``'s output goes through ``intervention``."""
    if intervention is None:
        yield
        return

    def hook(module, args, output):
        if isinstance(output, tuple):
            return (intervention.apply(output[0]),) + tuple(output[1:])
        return intervention.apply(output)

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
