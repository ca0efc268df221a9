"""The SAE-seed check: retrain the audit's SAEs with other seeds and ask, per family, whether
each new SAE has a latent that moves with it (``stats/robustness.seed_stability``)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .config import AuditConfig
from .extract.features import difference_vectors, encode_differences, encode_side
from .families import cross_correlation
from .sae import SAETrainingConfig, train_sae, training_samples
from .stats.robustness import StreamedDeltaCorrelation, best_member_correlation, seed_stability


def add_seed_stability(
    concepts: pd.DataFrame,
    mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]],
    retrained: dict[str, SAETrainingConfig],
    store,
    pooled,
    config: AuditConfig,
    *,
    hook: str,
    device: str,
    progress,
) -> pd.DataFrame:
    """Retrain the audit's SAEs (same activations, same settings) with ``config.sae_seeds`` other
    seeds and add ``seed_stability`` to the families: the share of seeds whose SAE has a latent
    about as aligned with the family as its best member (robustness.seed_stability). ``pooled`` is
    the difference mode's pooled residuals, computed once by the audit (None without that mode)."""
    sae_modes = [m for m in retrained if m in mode_data]
    families = concepts[concepts["kind"] == "family"]
    reference, members = _member_reference(concepts, families, mode_data, sae_modes)
    family_chosen, family_rejected = mode_data["family"]
    family_delta = (family_chosen - family_rejected).tocsc()[:, families["feature"].to_numpy(dtype=np.int64)]
    best_own = best_member_correlation(family_delta, reference, members)
    del reference  # read once: the seeds are compared with best_own
    # Read once for every seed: the token SAE's training tokens, the difference SAE's vectors.
    training: dict[str, torch.Tensor] = {}
    if "token" in sae_modes:
        training["token"] = store.training_tokens(seed=config.seed)[0]
    if "difference" in sae_modes:
        training["difference"] = difference_vectors(pooled)
    # One progress bar for the whole check: every retrained SAE's training samples, in order.
    samples = [training_samples(retrained[mode], len(training[mode])) for mode in sae_modes]
    whole = config.sae_seeds * sum(samples)

    def seeds_best():
        """Each seed's best r per family, its SAEs trained and encoded only when the check asks
        for it (one seed's SAEs held at a time)."""
        for index in range(config.sae_seeds):
            seed = config.seed + 1 + index
            retrained_seed = {mode: replace(retrained[mode], seed=seed) for mode in sae_modes}
            starts = index * sum(samples) + np.cumsum([0, *samples[:-1]])
            reports = {mode: _counted(progress, int(start), whole) for mode, start in zip(sae_modes, starts)}
            yield _retrained_best(
                family_delta, retrained_seed, training, store, pooled, config, hook=hook, device=device, reports=reports
            )

    stability = seed_stability(best_own, seeds_best())
    concepts = concepts.copy()
    concepts["seed_stability"] = np.nan
    concepts.loc[families.index, "seed_stability"] = stability
    return concepts


def _member_reference(concepts: pd.DataFrame, families: pd.DataFrame, mode_data, sae_modes: list[str]):
    """(Δ of the families' SAE members, each family's member columns in it): each mode's member
    columns side by side, not every latent of every mode (a copy that grows with pairs × latents
    at 100k pairs, where only the members are read)."""
    by_id = concepts.set_index("concept_id")
    member_features = {
        mode: sorted(
            {int(by_id.at[m, "feature"]) for row in families["members"] for m in row if by_id.at[m, "mode"] == mode}
        )
        for mode in sae_modes
    }
    # Each mode's block as CSC, stacked by concatenation: no coordinate (COO) copy of the whole.
    reference = sp.hstack(
        [(mode_data[m][0][:, member_features[m]] - mode_data[m][1][:, member_features[m]]).tocsc() for m in sae_modes],
        format="csc",
    )
    column = {
        (mode, feature): position
        for position, (mode, feature) in enumerate((m, f) for m in sae_modes for f in member_features[m])
    }
    members = [
        np.array(
            [
                column[(by_id.at[m, "mode"], int(by_id.at[m, "feature"]))]
                for m in row
                if by_id.at[m, "mode"] in sae_modes
            ],
            dtype=np.int64,
        )
        for row in families["members"]
    ]
    return reference, members


def _retrained_best(
    family_delta: sp.csc_matrix,
    retrained: dict[str, SAETrainingConfig],
    training: dict[str, torch.Tensor],
    store,
    pooled,
    config: AuditConfig,
    *,
    hook: str,
    device: str,
    reports: dict,
) -> np.ndarray:
    """Each family's largest Pearson r with the Δ (chosen − rejected) of a latent of SAEs trained
    afresh with these settings, one per mode in ``retrained``; the SAEs are thrown away. The token
    SAE's Δ is never formed: its correlations are summed as each shard's side is encoded
    (StreamedDeltaCorrelation), so the check holds one side's pooled matrix, not both and Δ."""
    best = np.full(family_delta.shape[1], -np.inf)
    with tempfile.TemporaryDirectory() as scratch:
        for mode, sae_config in retrained.items():
            sae, _ = cast(
                tuple[Any, dict],
                train_sae(
                    training[mode],
                    Path(scratch) / mode,
                    sae_config,
                    hook=hook if mode == "token" else hook + ".pooled_difference",
                    device=device,
                    progress=reports.get(mode),
                    evaluate=False,  # the check reads the latents only; scoring the SAE took 20 s a seed on HH
                ),
            )
            if mode == "token":
                correlation = StreamedDeltaCorrelation(family_delta, sae.cfg.d_sae)
                for side, add in enumerate((correlation.add_chosen, correlation.add_rejected)):  # chosen first
                    for pairs, block in encode_side(store, sae, side, pooling=config.pooling):
                        add(pairs, block)
                r = correlation.correlation()
            else:
                chosen, rejected = encode_differences(pooled, sae)
                r = cross_correlation(family_delta, chosen - rejected)
                del chosen, rejected
            del sae
            if r.shape[1]:
                best = np.maximum(best, r.max(axis=1))
    return best


def _counted(progress, start: int, whole: int):
    """A ``train_sae`` progress callback reporting its samples as part of the whole seed check
    (stage ``sae_seeds``, from ``start`` of ``whole``), so the check's bar moves and its time
    left is the whole check's."""
    if progress is None:
        return None

    def report(stage: str, done: int, total: int, **info) -> None:
        progress("sae_seeds", start + done, whole, unit="samples")

    return report
